-- Nexmark q13, bounded side input join: every bid enriched with the value of its auction's
-- row (auction mod 10000) in a bounded table, looked up at processing time (a
-- processing-time temporal join: the table is read whole before the job, as Flink's
-- filesystem lookup source caches its file). ADAPTED: Flink's text declares the side input
-- with the legacy options ('connector.type', 'connector.path', 'format.type'); here with
-- today's ('connector' = 'filesystem', 'path', 'format'). The driver writes the file: keys
-- 0 to 9999, value 'value-<key>'.
CREATE TABLE side_input (
  key BIGINT,
  `value` VARCHAR
) WITH (
  'connector' = 'filesystem',
  'path' = '${SIDE_INPUT}',
  'format' = 'csv'
);

CREATE TABLE nexmark_q13 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  dateTime  TIMESTAMP(3),
  `value`  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q13
SELECT
    B.auction,
    B.bidder,
    B.price,
    B.dateTime,
    S.`value`
FROM (SELECT *, PROCTIME() as p_time FROM bid) B
JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
ON mod(B.auction, 10000) = S.key;
