//! Exactly-once from Kafka to Kafka across crashes: bid counts per auction in 10-second
//! tumbling windows, read from an input topic (JSON bids, up to its end as of the start) and
//! written with Kafka transactions, one per checkpoint. Killed at any moment and started again
//! with the same `--state-dir`, it resumes from its last committed checkpoint, and a
//! `read_committed` reader of the output topic sees every window result exactly once.
//!
//! Run (the crash test in `tests/kafka.rs` does this with SIGKILL in between):
//! `cargo run --example exactly_once_kafka -- --input bids --output counts --state-dir /tmp/eo`
//! (`--shards N`, `--interval-ms N`, `--brokers HOST:PORT` are optional.)

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use weir::connectors::registry::{create_sink, create_source, TableSpec};
use weir::engine::checkpoint::CheckpointConfig;
use weir::engine::source::SourceFactory;
use weir::prelude::*;

struct Args {
    input: String,
    output: String,
    state_dir: String,
    brokers: String,
    shards: usize,
    interval_ms: u64,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        input: String::new(),
        output: String::new(),
        state_dir: String::new(),
        brokers: "127.0.0.1:9092".into(),
        shards: 2,
        interval_ms: 200,
    };
    let mut list = std::env::args().skip(1);
    while let Some(flag) = list.next() {
        let value = list.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--input" => args.input = value.clone(),
            "--output" => args.output = value.clone(),
            "--state-dir" => args.state_dir = value.clone(),
            "--brokers" => args.brokers = value.clone(),
            "--shards" => args.shards = number()? as usize,
            "--interval-ms" => args.interval_ms = number()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.input.is_empty() || args.output.is_empty() || args.state_dir.is_empty() {
        return Err("--input, --output and --state-dir are required".into());
    }
    Ok(args)
}

/// The schema of the window results written to the output topic.
fn counts_schema() -> Arc<Schema> {
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
    Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp.clone(), false),
        Field::new("window_end", timestamp, false),
        Field::new("auction", DataType::Int64, false),
        Field::new("bids", DataType::Int64, false),
        Field::new("top_price", DataType::Int64, true),
    ]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let kafka = |topic: &str, extra: &[(&str, &str)]| {
        let mut options: Vec<(String, String)> = vec![
            ("connector".into(), "kafka".into()),
            ("topic".into(), topic.into()),
            ("properties.bootstrap.servers".into(), args.brokers.clone()),
            ("format".into(), "json".into()),
        ];
        options.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        options
    };
    let table = |name: &str, schema, options: Vec<(String, String)>| {
        let options: Vec<(&str, &str)> = options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        TableSpec::new(name, schema, &options)
    };
    let source = create_source(&table(
        "bids",
        // The input topic holds the built-in generator's bids.
        BidGenerator::new(BidGeneratorConfig::default()).schema(),
        kafka(
            &args.input,
            &[
                ("scan.startup.mode", "earliest-offset"),
                ("scan.bounded.mode", "latest-offset"),
                ("scan.batch-size", "500"),
            ],
        ),
    ))?;
    let counts = Pipeline::new("bid-counts")
        .source_arc(source)
        .watermark("date_time", Duration::from_secs(5))
        .key_by(["auction"])
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([
            count_all().alias("bids"),
            max(col("price")).alias("top_price"),
        ]);
    let sink = create_sink(&table(
        "counts",
        counts_schema(),
        kafka(
            &args.output,
            &[
                ("key.fields", "auction"),
                ("key.format", "raw"),
                ("sink.delivery-guarantee", "exactly-once"),
                (
                    "sink.transactional-id-prefix",
                    &format!("weir-{}", args.output),
                ),
            ],
        ),
    ))?;
    let options = RunOptions::default().shards(args.shards).checkpoint(
        CheckpointConfig::new(&args.state_dir).interval(Duration::from_millis(args.interval_ms)),
    );
    let result = counts.sink_arc(sink).run(options)?;
    let written = result
        .metrics
        .total(weir::engine::metrics::names::ROWS_WRITTEN);
    println!("wrote {written} window results to {}", args.output);
    Ok(())
}
