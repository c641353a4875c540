-- File to file: bids from a CSV file (examples/sql/data/bids.csv), the revenue per auction in
-- 1-minute tumbling windows, written as JSON lines under /tmp/weir-example/revenue.
-- Run from the repository root.
CREATE TABLE bids (
    auction BIGINT,
    bidder BIGINT,
    price DECIMAL(10, 2),
    bid_time TIMESTAMP(3),
    WATERMARK FOR bid_time AS bid_time - INTERVAL '5' SECOND
) WITH (
    'connector' = 'filesystem',
    'path' = 'examples/sql/data/bids.csv',
    'format' = 'csv',
    'csv.header' = 'true'
);

CREATE TABLE revenue (
    window_start TIMESTAMP(3),
    auction BIGINT,
    bids BIGINT,
    revenue DECIMAL(20, 2)
) WITH (
    'connector' = 'filesystem',
    'path' = '/tmp/weir-example/revenue',
    'format' = 'json'
);

INSERT INTO revenue
SELECT window_start, auction, COUNT(*) AS bids, SUM(price) AS revenue
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(bid_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, auction;
