-- Interval join (not a Nexmark query): each bid with its auction when the bid came within
-- 10 s of the auction's opening. Both inputs are kept until the watermark passes their
-- bound, so state stays flat however long the stream runs.
CREATE TABLE nexmark_ij (
  auction  BIGINT,
  price  BIGINT,
  seller  BIGINT,
  bid_time  TIMESTAMP(3)
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_ij
SELECT B.auction, B.price, A.seller, B.`dateTime`
FROM bid AS B
JOIN auction AS A
  ON B.auction = A.id
  AND B.`dateTime` BETWEEN A.`dateTime` AND A.`dateTime` + INTERVAL '10' SECOND;
