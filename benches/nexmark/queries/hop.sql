-- ../shared/peers "hop" over the bid file: 10 s windows sliding every 2 s, COUNT(*) per
-- auction (Nexmark q5-like).
CREATE TABLE sink (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), cnt BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT auction, window_start, window_end, COUNT(*) AS cnt
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
