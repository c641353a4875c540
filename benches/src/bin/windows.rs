//! Weir's benchmark driver: windowed aggregations over generated bids.
//!
//! One configuration per process, so that peak memory (VmHWM) belongs to that run alone:
//!
//! ```text
//! cargo run --release -p weir-benches --bin windows -- --query tumble --events 10000000 --shards 1
//! cargo run --release -p weir-benches --bin windows -- --query hop --events 10000000 --shards 2
//! cargo run --release -p weir-benches --bin windows -- --query hop --events 5000000 --rate 1000000   # latency
//! # one 1-hour window over ~4.3M of 5M auctions, state under a 64 MiB budget:
//! cargo run --release -p weir-benches --bin windows -- --query tumble --window-secs 3600 \
//!     --events 10000000 --auctions 5000000 --events-per-ms 3 --shards 2 --state-memory-budget 64mb
//! ```
//!
//! Unthrottled runs measure throughput (events/s, events/s per shard). Throttled runs
//! (`--rate`) measure how long after the watermark passes a window's end its results reach the
//! sink (hdrhistogram percentiles): event `i` is due at `i / rate` seconds after the start, so a
//! window ending at `e` is complete once the event of time `e - 1 + delay` is due.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::AsArray;
use arrow::datatypes::TimestampMillisecondType;
use arrow::record_batch::RecordBatch;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use weir::engine::operator::SubtaskContext;
use weir::engine::sink::{SinkFactory, SinkWriter};
use weir::engine::source::LocalBoxFuture;
use weir::engine::BoxError;
use weir::prelude::*;
use weir_benches::peak_rss_mib;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Query {
    /// count(*), max(price) per auction in 10 s tumbling windows.
    Tumble,
    /// count(*), max(price) per auction in 10 s windows sliding every 2 s.
    Hop,
}

#[derive(Parser, Debug)]
#[command(about = "Windowed aggregation benchmark over generated bids")]
struct Args {
    #[arg(long, value_enum, default_value = "tumble")]
    query: Query,
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Distinct auctions (keys).
    #[arg(long, default_value_t = 10_000)]
    auctions: u64,
    /// Events per second over all splits; omit for an unthrottled throughput run.
    #[arg(long)]
    rate: Option<u64>,
    #[arg(long, default_value_t = 4096)]
    batch_size: usize,
    /// Window size in seconds (the slide of `hop` stays 2 s).
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// Events per millisecond of event time.
    #[arg(long, default_value_t = 1)]
    events_per_ms: u64,
    /// `state.memory-budget` for the job, e.g. `64mb` (default: a quarter of the machine's).
    #[arg(long)]
    state_memory_budget: Option<String>,
}

/// Watermark delay; equal to the generator's disorder, so no row is late.
const DELAY_MS: i64 = 200;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = BidGeneratorConfig {
        events: args.events,
        auctions: args.auctions,
        max_disorder_ms: DELAY_MS,
        batch_size: args.batch_size,
        rate_per_second: args.rate,
        events_per_ms: args.events_per_ms,
        ..BidGeneratorConfig::default()
    };
    let size = Duration::from_secs(args.window_secs);
    let window = match args.query {
        Query::Tumble => Window::tumble(size),
        Query::Hop => Window::hop(size, Duration::from_secs(2)),
    };
    let mut options = RunOptions::default().shards(args.shards);
    if let Some(budget) = &args.state_memory_budget {
        let bytes = weir::connectors::options::parse_memory_budget(budget)
            .with_context(|| format!("--state-memory-budget: '{budget}' is not a size"))?;
        options = options.state_memory_budget(bytes);
    }
    let sink = LatencySink::new(config, args.shards);
    let started = Instant::now();
    *sink.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
    let result = Pipeline::new("bench")
        .source(BidGenerator::new(config))
        .watermark("date_time", Duration::from_millis(DELAY_MS as u64))
        .key_by(["auction"])
        .window(window)
        .aggregate([
            count_all().alias("bids"),
            max(col("price")).alias("top_price"),
        ])
        .sink(sink.clone())
        .run(options)
        .context("benchmark job failed")?;
    let elapsed = started.elapsed().as_secs_f64();
    let rows_in = (result.metrics).operator_total("window", weir::engine::metrics::names::ROWS_IN);
    anyhow::ensure!(
        rows_in == args.events,
        "window saw {rows_in} rows, expected {}",
        args.events
    );
    let events_per_s = args.events as f64 / elapsed;
    println!(
        "query={:?} window_s={} shards={} events={} batch={} elapsed_s={:.2} events_per_s={:.0} events_per_s_per_shard={:.0} windows_out={} peak_rss_mib={:.0}",
        args.query,
        args.window_secs,
        args.shards,
        args.events,
        args.batch_size,
        elapsed,
        events_per_s,
        events_per_s / args.shards as f64,
        sink.rows(),
        peak_rss_mib().unwrap_or(f64::NAN),
    );
    if args.rate.is_some() {
        let histogram = sink.histogram.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "window result latency after watermark (ms): p50={:.1} p99={:.1} p99.9={:.1} max={:.1} fires={} (one per window and subtask)",
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.value_at_quantile(0.99) as f64 / 1000.0,
            histogram.value_at_quantile(0.999) as f64 / 1000.0,
            histogram.max() as f64 / 1000.0,
            histogram.len(),
        );
    }
    Ok(())
}

/// Counts result rows and records, per fired window batch, how late it arrived.
#[derive(Clone)]
struct LatencySink {
    config: BidGeneratorConfig,
    /// Number of source splits (one per shard).
    splits: u64,
    started: Arc<Mutex<Option<Instant>>>,
    histogram: Arc<Mutex<Histogram<u64>>>,
    rows: Arc<Mutex<u64>>,
}

impl LatencySink {
    fn new(config: BidGeneratorConfig, splits: usize) -> Self {
        LatencySink {
            config,
            splits: splits.max(1) as u64,
            started: Arc::default(),
            histogram: Arc::new(Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            )),
            rows: Arc::default(),
        }
    }

    fn rows(&self) -> u64 {
        *self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the window ending at `end_ms` became complete, as an offset from the start: when
    /// the batch holding the event of time `end_ms - 1 + delay` was released by its split
    /// (each of the `splits` splits releases `batch_size` events at once, at its own pace).
    fn due(&self, end_ms: i64) -> Option<Duration> {
        let rate = self.config.rate_per_second? as f64;
        let event = (end_ms - 1 + DELAY_MS - self.config.start_ms).max(0) as u64
            * self.config.events_per_ms;
        let local = event / self.splits;
        let batch = self.config.batch_size as u64;
        let released = (local / batch * batch) as f64 * self.splits as f64;
        Some(Duration::from_secs_f64(released / rate))
    }
}

impl SinkFactory for LatencySink {
    fn describe(&self) -> String {
        "latency (counts rows, records window latency)".into()
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for LatencySink {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        *self.rows.lock().unwrap_or_else(|e| e.into_inner()) += batch.num_rows() as u64;
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(started), Some(ends)) = (started, batch.column_by_name("window_end")) {
            let ends = ends.as_primitive::<TimestampMillisecondType>();
            if !ends.is_empty() {
                if let Some(due) = self.due(ends.value(0)) {
                    let late = started.elapsed().saturating_sub(due);
                    let micros = (late.as_micros() as u64).max(1);
                    let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
                    let high = histogram.high();
                    let _ = histogram.record(micros.min(high));
                }
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}
