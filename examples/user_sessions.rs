//! User sessions: clicks per user grouped into sessions that close after 30 seconds of
//! inactivity, with the session's click count, distinct pages and total dwell time. The input
//! is out of order; clicks that arrive after their session has closed are printed separately
//! as late rows instead of being dropped.
//!
//! Run: `cargo run --release --example user_sessions`

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir::prelude::*;

fn clicks(rows: &[(&str, i64, &str, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("page", DataType::Utf8, false),
        Field::new("dwell_ms", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .expect("columns match the schema")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = 1_000;
    let batches = vec![
        clicks(&[
            ("ana", 0, "/", 3_000),
            ("bo", 2 * s, "/", 1_000),
            ("ana", 10 * s, "/shoes", 9_000),
        ]),
        clicks(&[
            ("ana", 25 * s, "/cart", 4_000),
            ("bo", 5 * s, "/about", 2_000),
        ]),
        clicks(&[("ana", 90 * s, "/", 1_000), ("bo", 70 * s, "/shoes", 5_000)]),
        // Arrives long after bo's first session closed: a late row.
        clicks(&[
            ("bo", 8 * s, "/pricing", 7_000),
            ("ana", 100 * s, "/checkout", 12_000),
        ]),
    ];
    let source = MemorySource::new(batches[0].schema(), vec![batches])?;
    let late_rows = CollectSink::new();
    Pipeline::new("user-sessions")
        .source(source)
        .parallelism(1)
        .watermark("ts", Duration::from_secs(5))
        .key_by(["user"])
        .window(Window::session(Duration::from_secs(30)))
        .late_rows(late_rows.clone())
        .aggregate([
            count_all().alias("clicks"),
            count_distinct(col("page")).alias("pages"),
            sum(col("dwell_ms")).alias("dwell_ms"),
        ])
        .sink(PrintSink::new(PrintFormat::Table))
        .run(RunOptions::default().shards(2))?;
    println!("late rows:");
    for batch in late_rows.batches() {
        print!(
            "{}",
            String::from_utf8_lossy(&weir::connectors::print::render(&batch, true)?)
        );
    }
    Ok(())
}
