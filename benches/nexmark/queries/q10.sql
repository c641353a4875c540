-- Nexmark q10, log to the file system: every bid written to CSV files partitioned by day and
-- minute (`dt=yyyy-MM-dd/hm=HH:mm` directories). ADAPTED: Flink's text also sets its
-- partition-commit options ('sink.partition-commit.trigger' = 'partition-time', '.delay',
-- '.policy.kind' = 'success-file', 'partition.time-extractor.timestamp-pattern' and
-- 'sink.rolling-policy.check-interval'), which Weir's filesystem sink does not have: its part
-- files become visible when a checkpoint (or the end of input) commits them, and no
-- `_SUCCESS` file marks a finished partition. The path is a local directory.
CREATE TABLE fs_sink (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  dateTime  TIMESTAMP(3),
  extra  VARCHAR,
  dt STRING,
  hm STRING
) PARTITIONED BY (dt, hm) WITH (
  'connector' = 'filesystem',
  'path' = 'file:///tmp/weir-nexmark-q10/bid/',
  'format' = 'csv',
  'sink.rolling-policy.rollover-interval' = '1min'
);

INSERT INTO fs_sink
SELECT auction, bidder, price, dateTime, extra, DATE_FORMAT(dateTime, 'yyyy-MM-dd'), DATE_FORMAT(dateTime, 'HH:mm')
FROM bid;
