//! Checkpoint cost: duration and size of a checkpoint of window state with many keys, the
//! time to restore it, and the throughput cost of checkpointing every second.
//!
//! ```text
//! cargo run --release -p weir-benches --bin checkpoints -- state --keys 1000000 --shards 2
//! cargo run --release -p weir-benches --bin checkpoints -- throughput --events 10000000 --keys 1000000 --interval-ms 1000
//! cargo run --release -p weir-benches --bin checkpoints -- throughput --events 10000000 --keys 1000000
//! ```
//!
//! `state`: `2 x keys` rows (every key twice) go into one open 1-day tumbling window
//! (`count(*)`, `sum(price)`, `max(price)` per key) and stay there; the source then idles. A
//! savepoint of that state is timed (barrier to manifest), its directory measured, and a new
//! job started from it is timed until its state is restored (restore runs while the job
//! starts).
//! `throughput`: the bid generator with `keys` auctions through 10 s tumbling windows, with
//! checkpoints every `--interval-ms` or none, in events/s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use clap::{Parser, Subcommand};
use weir::engine::checkpoint::CheckpointConfig;
use weir::engine::metrics::names::ROWS_IN;
use weir::engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir::engine::BoxError;
use weir::prelude::*;
use weir_benches::peak_rss_mib;

#[derive(Parser, Debug)]
#[command(about = "Checkpoint duration, size, restore time and throughput cost")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checkpoint and restore of `keys` keys of open window state.
    State {
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        #[arg(long, default_value_t = 2)]
        shards: usize,
    },
    /// Events/s with and without periodic checkpoints.
    Throughput {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// Checkpoint interval; none: no checkpoints.
        #[arg(long)]
        interval_ms: Option<u64>,
    },
}

/// `rows` rows `(key, price, ts)`, key `i % keys`, all in the first day; after them the
/// source stays open and idle, so the window state stays.
#[derive(Debug, Clone, Copy)]
struct KeyRows {
    rows: u64,
    keys: u64,
}

fn key_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

impl SourceFactory for KeyRows {
    fn schema(&self) -> SchemaRef {
        key_schema()
    }

    fn describe(&self) -> String {
        format!("{} rows over {} keys, then idle", self.rows, self.keys)
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let (p, j) = (split.parallelism as u64, split.index as u64);
        let end = (j + 1) * self.rows / p;
        let next = match split.restored.as_ref().and_then(|r| r.get(&format!("{j}"))) {
            Some(next) => next.parse()?,
            None => j * self.rows / p,
        };
        Ok(Box::new(KeyRowsReader {
            index: j,
            next,
            end,
            keys: self.keys,
        }))
    }
}

struct KeyRowsReader {
    index: u64,
    next: u64,
    end: u64,
    keys: u64,
}

impl SourceReader for KeyRowsReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            if self.next >= self.end {
                // Idle: the state stays open (cancel-safe: nothing is held).
                std::future::pending::<()>().await;
            }
            let rows = (self.end - self.next).min(8192);
            let ids = self.next..self.next + rows;
            self.next += rows;
            let keys = self.keys;
            let batch = RecordBatch::try_new(
                key_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        ids.clone().map(|i| (i % keys) as i64),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        ids.clone().map(|i| (i % 1000) as i64),
                    )),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        ids.map(|i| (i % 3_600_000) as i64),
                    )),
                ],
            )?;
            Ok(Some(batch.into()))
        })
    }

    fn positions(&self) -> Positions {
        Positions::from([(self.index.to_string(), self.next.to_string())])
    }
}

fn state_job(keys: u64) -> Job {
    Pipeline::new("state")
        .source(KeyRows {
            rows: keys * 2,
            keys,
        })
        .watermark("ts", Duration::from_secs(1))
        .key_by(["key"])
        .window(Window::tumble(Duration::from_secs(86_400)))
        .aggregate([
            count_all().alias("n"),
            sum(col("price")).alias("total"),
            max(col("price")).alias("top"),
        ])
        .sink(BlackholeSink::default())
}

fn dir_mib(dir: &Path) -> f64 {
    weir::engine::checkpoint::dir_size(dir) as f64 / (1 << 20) as f64
}

fn state(keys: u64, shards: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("weir-bench-checkpoints-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = RunOptions::default()
        .shards(shards)
        .checkpoint(CheckpointConfig::new(dir.join("state")));
    let handle = state_job(keys).start(options)?;
    let started = Instant::now();
    while handle.metrics().total(ROWS_IN) < keys * 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ingest = started.elapsed();
    let savepoint = dir.join("savepoint");
    let taken = Instant::now();
    handle.savepoint(&savepoint, true)?;
    let duration = taken.elapsed();
    handle.join()?;
    let size = dir_mib(&savepoint);

    let restored = Instant::now();
    let options = RunOptions::default()
        .shards(shards)
        .checkpoint(CheckpointConfig::new(dir.join("restored")).from_savepoint(&savepoint));
    let handle = state_job(keys).start(options)?;
    let restore = restored.elapsed();
    handle.cancel();
    let _ = handle.join();
    println!(
        "state: keys={keys} shards={shards} ingest={:.2}s checkpoint={:.0}ms size={size:.1}MiB \
         restore={:.0}ms peak_rss={:.0}MiB",
        ingest.as_secs_f64(),
        duration.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e3,
        peak_rss_mib().unwrap_or(0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn throughput(
    events: u64,
    keys: u64,
    shards: usize,
    interval: Option<Duration>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("weir-bench-throughput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = RunOptions::default().shards(shards);
    if let Some(interval) = interval {
        options = options.checkpoint(CheckpointConfig::new(&dir).interval(interval));
    }
    let job = Pipeline::new("throughput")
        .source(BidGenerator::new(BidGeneratorConfig {
            events,
            auctions: keys,
            ..BidGeneratorConfig::default()
        }))
        .watermark("date_time", Duration::from_secs(2))
        .key_by(["auction"])
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([count_all().alias("bids"), max(col("price")).alias("top")])
        .sink(BlackholeSink::default());
    let started = Instant::now();
    job.run(options).context("benchmark job failed")?;
    let seconds = started.elapsed().as_secs_f64();
    let checkpoints = std::fs::read_dir(dir.join("checkpoints")).map_or(0, |d| d.count());
    println!(
        "throughput: events={events} keys={keys} shards={shards} checkpoint_interval={} \
         time={seconds:.2}s events/s={:.0} per_shard={:.0} retained_checkpoints={checkpoints} \
         peak_rss={:.0}MiB",
        interval.map_or("none".to_string(), |i| format!("{}ms", i.as_millis())),
        events as f64 / seconds,
        events as f64 / seconds / shards as f64,
        peak_rss_mib().unwrap_or(0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::State { keys, shards } => state(keys, shards),
        Command::Throughput {
            events,
            keys,
            shards,
            interval_ms,
        } => throughput(events, keys, shards, interval_ms.map(Duration::from_millis)),
    }
}
