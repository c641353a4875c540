//! Checkpoint cost: duration and size of a checkpoint of window state with many keys, the
//! time to restore it, and the throughput cost of checkpointing every second.
//!
//! ```text
//! cargo run --release -p weir-benches --bin checkpoints -- state --keys 1000000 --shards 2
//! cargo run --release -p weir-benches --bin checkpoints -- state --keys 10000000 --changed-percent 1
//! cargo run --release -p weir-benches --bin checkpoints -- throughput --events 10000000 --keys 1000000 --interval-ms 1000
//! cargo run --release -p weir-benches --bin checkpoints -- throughput --events 10000000 --keys 1000000
//! ```
//!
//! `state`: `2 x keys` rows (every key twice) go into one open 1-day tumbling window
//! (`count(*)`, `sum(price)`, `max(price)` per key) and stay there; the source then idles. A
//! savepoint of that state is timed (barrier to manifest), its directory measured, and a new
//! job started from it is timed until its state is restored (restore runs while the job
//! starts). With `--changed-percent P`, a first savepoint is taken while the job runs, then
//! one more row for each of `P`% of the keys (spread over all key groups) is let in and a
//! second savepoint timed: its new bytes are those of the files the first one does not
//! share (a savepoint is a RocksDB checkpoint, hard-linked like an incremental checkpoint).
//! `throughput`: the bid generator with `keys` auctions through 10 s tumbling windows, with
//! checkpoints every `--interval-ms` or none, in events/s.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
        /// Also time a second savepoint after this percentage of the keys changed.
        #[arg(long)]
        changed_percent: Option<f64>,
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

/// `rows` rows `(key, price, ts)`, key `i % keys`, all in the first day; then, once `more`
/// is released, `extra` rows over `extra` keys spread evenly over all keys; after them the
/// source stays open and idle, so the window state stays.
#[derive(Debug, Clone)]
struct KeyRows {
    rows: u64,
    keys: u64,
    extra: u64,
    more: Arc<AtomicBool>,
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
        // Row ids: `[0, rows)` first, then the extra rows `[rows, rows + extra)`.
        let share = |start: u64, count: u64| start + j * count / p..start + (j + 1) * count / p;
        let (first, extra) = (share(0, self.rows), share(self.rows, self.extra));
        let next = match split.restored.as_ref().and_then(|r| r.get(&format!("{j}"))) {
            Some(next) => next.parse()?,
            None => first.start,
        };
        Ok(Box::new(KeyRowsReader {
            index: j,
            next,
            first,
            extra,
            source: self.clone(),
        }))
    }
}

struct KeyRowsReader {
    index: u64,
    next: u64,
    first: std::ops::Range<u64>,
    extra: std::ops::Range<u64>,
    source: KeyRows,
}

impl KeyRowsReader {
    /// The key of row `id`: `id % keys` for the first rows; the extra rows step over all keys.
    fn key(&self, id: u64) -> i64 {
        let KeyRows {
            rows, keys, extra, ..
        } = self.source;
        match id < rows {
            true => (id % keys) as i64,
            false => ((id - rows) * (keys / extra.max(1)).max(1) % keys) as i64,
        }
    }
}

impl SourceReader for KeyRowsReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            if self.next >= self.first.end && self.next < self.extra.start {
                self.next = self.extra.start;
            }
            while self.next >= self.extra.start && !self.source.more.load(Ordering::SeqCst) {
                // Waiting for the extra rows (cancel-safe: nothing is held).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let end = match self.next < self.first.end {
                true => self.first.end,
                false => self.extra.end,
            };
            if self.next >= end {
                // Idle: the state stays open (cancel-safe: nothing is held).
                std::future::pending::<()>().await;
            }
            let rows = (end - self.next).min(8192);
            let ids = self.next..self.next + rows;
            self.next += rows;
            let batch = RecordBatch::try_new(
                key_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        ids.clone().map(|i| self.key(i)),
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

fn state_job(source: KeyRows) -> Job {
    Pipeline::new("state")
        .source(source)
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

fn state(keys: u64, shards: usize, changed_percent: Option<f64>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("weir-bench-checkpoints-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = RunOptions::default()
        .shards(shards)
        .checkpoint(CheckpointConfig::new(dir.join("state")));
    let extra = changed_percent.map_or(0, |p| (keys as f64 * p / 100.0) as u64);
    let source = KeyRows {
        rows: keys * 2,
        keys,
        extra,
        more: Arc::new(AtomicBool::new(false)),
    };
    let handle = state_job(source.clone()).start(options)?;
    let started = Instant::now();
    while handle.metrics().total(ROWS_IN) < keys * 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ingest = started.elapsed();
    let savepoint = dir.join("savepoint");
    if changed_percent.is_some() {
        let first = dir.join("savepoint-all");
        let taken = Instant::now();
        handle.savepoint(&first, false)?;
        let duration = taken.elapsed();
        source.more.store(true, Ordering::SeqCst);
        while handle.metrics().total(ROWS_IN) < keys * 2 + extra {
            std::thread::sleep(Duration::from_millis(10));
        }
        let taken = Instant::now();
        handle.savepoint(&savepoint, true)?;
        let changed = taken.elapsed();
        handle.join()?;
        let all = dir_mib(&first);
        let new =
            weir::engine::checkpoint::new_bytes(&savepoint, Some(&first)) as f64 / (1 << 20) as f64;
        println!(
            "changed: keys={keys} shards={shards} first={:.0}ms size={all:.1}MiB \
             changed_keys={extra} second={:.0}ms new={new:.2}MiB ({:.2}% of the first)",
            duration.as_secs_f64() * 1e3,
            changed.as_secs_f64() * 1e3,
            new / all * 100.0
        );
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let taken = Instant::now();
    handle.savepoint(&savepoint, true)?;
    let duration = taken.elapsed();
    handle.join()?;
    let size = dir_mib(&savepoint);

    let restored = Instant::now();
    let options = RunOptions::default()
        .shards(shards)
        .checkpoint(CheckpointConfig::new(dir.join("restored")).from_savepoint(&savepoint));
    let handle = state_job(source).start(options)?;
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
        Command::State {
            keys,
            shards,
            changed_percent,
        } => state(keys, shards, changed_percent),
        Command::Throughput {
            events,
            keys,
            shards,
            interval_ms,
        } => throughput(events, keys, shards, interval_ms.map(Duration::from_millis)),
    }
}
