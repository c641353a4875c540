-- ../shared/peers "tumble" over the bid file: 10 s tumbling windows, COUNT(*) and MAX(price)
-- per auction.
CREATE TABLE sink (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), cnt BIGINT, max_price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT auction, window_start, window_end, COUNT(*) AS cnt, MAX(price) AS max_price
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
