//! Orders and shipments: an interval join finds each order's shipment within an hour (LEFT:
//! orders not shipped in time come out with NULLs once the hour has passed), and a regular join
//! of orders with each customer's order count, an updating input, prints a changelog.
//!
//! Run: `cargo run --release --example orders_shipments`

use std::sync::Arc;

use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir::prelude::*;

const MINUTE: i64 = 60_000;

fn table(columns: &[(&str, DataType)], rows: &[(i64, &str, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(*name, t.clone(), false))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .expect("columns match the schema")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let orders = table(
        &[
            ("order_id", DataType::Int64),
            ("customer", DataType::Utf8),
            ("order_time", ts.clone()),
        ],
        &[
            (1, "ana", 0),
            (2, "bo", 5 * MINUTE),
            (3, "ana", 20 * MINUTE),
            (4, "cy", 30 * MINUTE),
        ],
    );
    let shipments = table(
        &[
            ("shipped_order", DataType::Int64),
            ("carrier", DataType::Utf8),
            ("ship_time", ts),
        ],
        &[
            (1, "ups", 40 * MINUTE),
            (2, "dhl", 90 * MINUTE),
            (3, "ups", 50 * MINUTE),
        ],
    );
    let pipeline = Pipeline::new("orders-shipments");
    let orders = pipeline
        .source(MemorySource::new(orders.schema(), vec![vec![orders]])?)
        .watermark("order_time", std::time::Duration::from_secs(60));
    let shipments = pipeline
        .source(MemorySource::new(
            shipments.schema(),
            vec![vec![shipments]],
        )?)
        .watermark("ship_time", std::time::Duration::from_secs(60));

    println!("shipped within an hour (LEFT interval join):");
    orders
        .key_by(["order_id"])
        .join(&shipments.key_by(["shipped_order"]))
        .kind(JoinType::Left)
        .between(0, 60 * MINUTE)
        .sink(PrintSink::default())
        .run(RunOptions::default().shards(2))?;

    println!("orders with their customer's order count so far (a changelog):");
    let pipeline = Pipeline::new("orders-counts");
    let orders = table(
        &[
            ("order_id", DataType::Int64),
            ("customer", DataType::Utf8),
            (
                "order_time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
            ),
        ],
        &[
            (1, "ana", 0),
            (2, "bo", 5 * MINUTE),
            (3, "ana", 20 * MINUTE),
        ],
    );
    let source = pipeline.source(MemorySource::new(orders.schema(), vec![vec![orders]])?);
    let counts = source
        .key_by(["customer"])
        .aggregate([count_all().alias("orders")])
        .select([col("customer").alias("who"), col("orders")]);
    source
        .key_by(["customer"])
        .join(&counts.key_by(["who"]))
        .regular()
        .sink(PrintSink::default())
        .run(RunOptions::default().shards(2))?;
    Ok(())
}
