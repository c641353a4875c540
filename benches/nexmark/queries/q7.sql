-- Nexmark q7, highest bid, ADAPTED: Flink's q7 joins each bid with the maximum price of its
-- 10 s tumbling window. Weir has no joins yet, so this is the window half: the maximum price
-- (and the bid count) per 10 s window.
CREATE TABLE nexmark_q7 (
  window_start  TIMESTAMP(3),
  window_end  TIMESTAMP(3),
  maxprice  BIGINT,
  bids  BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q7
SELECT window_start, window_end, MAX(price) AS maxprice, COUNT(*) AS bids
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
