-- Nexmark q5, hot items, ADAPTED: Flink's q5 counts bids per auction in 10 s windows sliding
-- every 2 s and then joins each window with its maximum count to keep the hottest auctions.
-- Weir has no joins yet, so this is the counting half: the HOP window over every bid.
CREATE TABLE nexmark_q5 (
  auction  BIGINT,
  num  BIGINT,
  window_start  TIMESTAMP(3),
  window_end  TIMESTAMP(3)
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q5
SELECT auction, COUNT(*) AS num, window_start, window_end
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
