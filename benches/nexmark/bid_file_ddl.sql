-- The bid table of ../shared/peers/flink_bench.py (filesystem connector); the path, format
-- and format options are filled in by the benchmark driver.
CREATE TABLE bid (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel STRING,
    url STRING,
    date_time TIMESTAMP(3),
    extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH (
 'connector' = 'filesystem',
 'path' = 'file://${PATH}',
 'format' = '${FORMAT}'${FORMAT_OPTIONS}
);
