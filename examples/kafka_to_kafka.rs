//! Kafka to Kafka: bid counts and top prices per auction in 10-second tumbling windows, read
//! from topic `weir-example-bids` (JSON) and written to `weir-example-counts` (JSON, keyed by
//! auction). To be runnable as is, it creates both topics if needed and first fills the input
//! topic with 100,000 Nexmark-style bids from the built-in generator; the job then reads the
//! topic up to its current end (`scan.bounded.mode = latest-offset`) and exits.
//!
//! Run: `scripts/kafka.sh start && cargo run --release --example kafka_to_kafka`

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use weir::connectors::registry::{create_sink, create_source, TableSpec};
use weir::engine::source::SourceFactory;
use weir::prelude::*;

const BROKERS: &str = "127.0.0.1:9092";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topics = [
        NewTopic::new("weir-example-bids", 4, TopicReplication::Fixed(1)),
        NewTopic::new("weir-example-counts", 4, TopicReplication::Fixed(1)),
    ];
    // "Already exists" is fine; anything else (no broker) surfaces when the job starts.
    let _ = runtime.block_on(admin.create_topics(
        &topics,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ));

    let bids = BidGenerator::new(BidGeneratorConfig {
        events: 100_000,
        auctions: 100,
        ..BidGeneratorConfig::default()
    });
    let kafka = |topic: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut options = vec![
            ("connector", "kafka"),
            ("topic", topic),
            ("properties.bootstrap.servers", BROKERS),
            ("format", "json"),
        ];
        options.extend_from_slice(extra);
        options
    };
    Pipeline::new("fill-input")
        .source(bids.clone())
        .sink_arc(create_sink(&TableSpec::new(
            "bids",
            bids.schema(),
            &kafka("weir-example-bids", &[]),
        ))?)
        .run(RunOptions::default())?;

    let source = create_source(&TableSpec::new(
        "bids",
        bids.schema(),
        &kafka(
            "weir-example-bids",
            &[
                ("scan.startup.mode", "earliest-offset"),
                ("scan.bounded.mode", "latest-offset"),
            ],
        ),
    ))?;
    let counts = Pipeline::new("bid-counts")
        .source_arc(source)
        .watermark("date_time", Duration::from_secs(1))
        .key_by(["auction"])
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([
            count_all().alias("bids"),
            max(col("price")).alias("top_price"),
        ]);
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
    let counts_schema = Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp.clone(), false),
        Field::new("window_end", timestamp, false),
        Field::new("auction", DataType::Int64, false),
        Field::new("bids", DataType::Int64, false),
        Field::new("top_price", DataType::Int64, true),
    ]));
    let sink = create_sink(&TableSpec::new(
        "counts",
        counts_schema,
        &kafka(
            "weir-example-counts",
            &[("key.fields", "auction"), ("key.format", "raw")],
        ),
    ))?;
    let result = counts.sink_arc(sink).run(RunOptions::default())?;
    let written = result
        .metrics
        .total(weir::engine::metrics::names::ROWS_WRITTEN);
    println!("wrote {written} window results to weir-example-counts");
    Ok(())
}
