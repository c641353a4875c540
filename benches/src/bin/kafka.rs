//! Kafka sink and source throughput against the local test broker (`scripts/kafka.sh start`):
//! writes `--rows` bid rows as JSON to a fresh 4-partition topic through Weir's Kafka sink,
//! then reads them back (bounded) through Weir's Kafka source at 1 and 2 shards.
//!
//! ```text
//! cargo run --release -p weir-benches --bin kafka -- --rows 2000000
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use weir::connectors::registry::{create_sink, create_source, TableSpec};
use weir::prelude::*;
use weir_benches::{bids, BidBatches};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "json")]
    format: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = format!("weir-bench-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for result in runtime.block_on(admin.create_topics(
        &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let options = [
        ("connector", "kafka"),
        ("topic", topic.as_str()),
        ("properties.bootstrap.servers", args.bootstrap.as_str()),
        ("format", args.format.as_str()),
        ("properties.linger.ms", "5"),
    ];
    let sink = create_sink(&TableSpec::new("out", bids(0, 0).schema(), &options))?;
    let started = Instant::now();
    Pipeline::new("produce")
        .source(BidBatches { rows: args.rows })
        .sink_arc(sink)
        .run(RunOptions::default().shards(2))?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "kafka sink: rows={} shards=2 format={} elapsed_s={elapsed:.2} rows_per_s={:.0}",
        args.rows,
        args.format,
        args.rows as f64 / elapsed
    );

    for shards in [1, 2] {
        // Extra consumer properties for tuning runs: WEIR_BENCH_CONSUMER="key=value,key=value".
        let extra: Vec<(String, String)> = std::env::var("WEIR_BENCH_CONSUMER")
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (format!("properties.{k}"), v.to_string()))
            .collect();
        let mut read_options = options.to_vec();
        read_options.extend([
            ("scan.startup.mode", "earliest-offset"),
            ("scan.bounded.mode", "latest-offset"),
        ]);
        read_options.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let source = create_source(&TableSpec::new("in", bids(0, 0).schema(), &read_options))?;
        let sink = BlackholeSink::new();
        let started = Instant::now();
        Pipeline::new("consume")
            .source_arc(source)
            .sink(sink.clone())
            .run(RunOptions::default().shards(shards))?;
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            sink.rows() == args.rows,
            "read {} of {} rows",
            sink.rows(),
            args.rows
        );
        println!(
            "kafka source: rows={} shards={shards} format={} elapsed_s={elapsed:.2} rows_per_s={:.0} rows_per_s_per_shard={:.0}",
            args.rows,
            args.format,
            args.rows as f64 / elapsed,
            args.rows as f64 / elapsed / shards as f64
        );
    }
    Ok(())
}
