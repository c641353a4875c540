-- Kafka to Kafka: JSON bids from topic 'bids' (broker on 127.0.0.1:9092), bids and top price
-- per auction in 10-second tumbling windows, to topic 'auction-stats', exactly once
-- (transactions committed with each checkpoint):
--   weir run examples/sql/kafka_to_kafka.sql --state-dir /tmp/weir-kafka-state
SET 'execution.checkpointing.interval' = '2s';

CREATE TABLE bids (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    date_time TIMESTAMP(3),
    part INT METADATA FROM 'partition' VIRTUAL,
    WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND
) WITH (
    'connector' = 'kafka',
    'topic' = 'bids',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'properties.group.id' = 'weir-auction-stats',
    'scan.startup.mode' = 'earliest-offset',
    'format' = 'json'
);

CREATE TABLE auction_stats (
    window_start TIMESTAMP(3),
    window_end TIMESTAMP(3),
    auction BIGINT,
    bids BIGINT,
    top_price BIGINT
) WITH (
    'connector' = 'kafka',
    'topic' = 'auction-stats',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'format' = 'json',
    'sink.delivery-guarantee' = 'exactly-once'
);

INSERT INTO auction_stats
SELECT window_start, window_end, auction, COUNT(*) AS bids, MAX(price) AS top_price
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
