-- Running totals: orders from the datagen connector, the revenue per product so far in each
-- hour, updated every 10 minutes (CUMULATE windows), as Flink's docs show them.
-- Event time comes from the order sequence number: one order per second from 2024-01-01.
CREATE TABLE orders (
    order_id BIGINT,
    product INT,
    amount DOUBLE,
    order_time AS TO_TIMESTAMP_MILLIS(1704067200000 + order_id * 1000),
    WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH (
    'connector' = 'datagen',
    'number-of-rows' = '20000',
    'fields.order_id.kind' = 'sequence',
    'fields.order_id.start' = '1',
    'fields.order_id.end' = '20000',
    'fields.product.min' = '1',
    'fields.product.max' = '5',
    'fields.amount.min' = '1',
    'fields.amount.max' = '100'
);

SELECT window_start, window_end, product, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue
FROM TABLE(CUMULATE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '10' MINUTE, INTERVAL '1' HOUR))
GROUP BY window_start, window_end, product;
