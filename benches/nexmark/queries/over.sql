-- OVER aggregation (not a Nexmark query): each bid with the sum and the maximum of its
-- auction's last ten bids by event time. A bid waits for the watermark; each auction's state
-- is its frame's ten rows, its waiting rows and its accumulators.
CREATE TABLE nexmark_over (
  auction  BIGINT,
  price  BIGINT,
  total  BIGINT,
  top  BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_over
SELECT auction, price,
  SUM(price) OVER (PARTITION BY auction ORDER BY `dateTime` ROWS BETWEEN 9 PRECEDING AND CURRENT ROW),
  MAX(price) OVER (PARTITION BY auction ORDER BY `dateTime` ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)
FROM bid;
