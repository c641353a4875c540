//! The runtime end to end: watermarks over several inputs, idleness, end of stream,
//! backpressure, barriers, and failures that name their operator without hanging.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::BooleanArray;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use common::{batch_of, event_schema, Event};
use weir::engine::error::EngineError;
use weir::engine::operator::SubtaskContext;
use weir::engine::sink::{SinkFactory, SinkWriter};
use weir::engine::source::{
    LocalBoxFuture, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir::engine::time::WatermarkStrategy;
use weir::engine::{BoxError, CheckpointId, Watermark};
use weir::prelude::*;
use weir::WeirError;

/// What one split of a [`ScriptedSource`] does.
#[derive(Clone)]
struct Script {
    batches: Vec<RecordBatch>,
    pause: Duration,
    /// After the batches: end (false) or never produce anything again (true).
    hang: bool,
}

/// A source whose splits follow scripts, to create slow, idle and never-ending inputs.
struct ScriptedSource {
    scripts: Vec<Script>,
    produced: Arc<AtomicUsize>,
}

impl SourceFactory for ScriptedSource {
    fn schema(&self) -> SchemaRef {
        event_schema()
    }

    fn describe(&self) -> String {
        "scripted".into()
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        Ok(Box::new(ScriptedReader {
            script: self.scripts[split.index].clone(),
            next: 0,
            produced: Arc::clone(&self.produced),
        }))
    }
}

struct ScriptedReader {
    script: Script,
    next: usize,
    produced: Arc<AtomicUsize>,
}

impl SourceReader for ScriptedReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            if self.next == self.script.batches.len() {
                if self.script.hang {
                    std::future::pending::<()>().await;
                }
                return Ok(None);
            }
            tokio::time::sleep(self.script.pause).await;
            self.next += 1;
            self.produced.fetch_add(1, Ordering::SeqCst);
            Ok(Some(self.script.batches[self.next - 1].clone().into()))
        })
    }
}

fn events(key: i64, times: impl IntoIterator<Item = i64>) -> Vec<RecordBatch> {
    times
        .into_iter()
        .map(|ts| {
            batch_of(&[Event {
                key,
                ts,
                v: Some(1),
            }])
        })
        .collect()
}

fn tumble_job(source: ScriptedSource, strategy: WatermarkStrategy, sink: &CollectSink) -> Job {
    let splits = source.scripts.len();
    Pipeline::new("test")
        .source(source)
        .parallelism(splits)
        .watermark_strategy(strategy)
        .key_by(["k"])
        .window(Window::tumble(Duration::from_millis(100)))
        .aggregate([count_all().alias("c")])
        .sink(sink.clone())
}

fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn max_event_time_watermark(sink: &CollectSink) -> Option<i64> {
    sink.watermarks()
        .into_iter()
        .filter_map(|w| match w {
            Watermark::EventTime(t) => Some(t),
            Watermark::Idle => None,
        })
        .max()
}

#[test]
fn watermark_is_the_minimum_over_source_splits() {
    let sink = CollectSink::new();
    let source = ScriptedSource {
        scripts: vec![
            Script {
                batches: events(1, (0..50).map(|i| i * 100)),
                pause: Duration::ZERO,
                hang: true,
            },
            Script {
                batches: events(2, [1_000]),
                pause: Duration::ZERO,
                hang: true,
            },
        ],
        produced: Arc::default(),
    };
    let strategy = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO);
    let handle = tumble_job(source, strategy, &sink)
        .start(RunOptions::default().shards(2))
        .unwrap();
    // Windows up to the slow split's watermark (1000) fire; none after it.
    assert!(wait_until(
        Duration::from_secs(10),
        || max_event_time_watermark(&sink) == Some(1_000)
    ));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(max_event_time_watermark(&sink), Some(1_000));
    let ends = common::column_i64(&sink.concat().unwrap(), "window_end");
    assert!(ends.iter().all(|e| e.unwrap() <= 1_001), "{ends:?}");
    assert_eq!(ends.len(), 10, "windows [0,100) .. [900,1000)");
    handle.cancel();
    assert!(matches!(handle.join(), Err(EngineError::Cancelled)));
}

/// Split 0: one row every 100 ms of event time up to 4,900, then nothing; split 1: nothing
/// ever. Neither ends.
fn busy_and_silent_splits() -> ScriptedSource {
    let script = |batches| Script {
        batches,
        pause: Duration::ZERO,
        hang: true,
    };
    ScriptedSource {
        scripts: vec![
            script(events(1, (0..50).map(|i| i * 100))),
            script(Vec::new()),
        ],
        produced: Arc::default(),
    }
}

#[test]
fn idle_splits_do_not_hold_back_windows() {
    let sink = CollectSink::new();
    let source = busy_and_silent_splits();
    let strategy = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO)
        .with_idle_timeout(Duration::from_millis(100));
    let handle = tumble_job(source, strategy, &sink)
        .start(RunOptions::default().shards(2))
        .unwrap();
    assert!(wait_until(
        Duration::from_secs(10),
        || max_event_time_watermark(&sink) == Some(4_900)
    ));
    assert!(
        wait_until(Duration::from_secs(10), || sink.rows() == 49),
        "rows: {}",
        sink.rows()
    );
    handle.cancel();
    assert!(matches!(handle.join(), Err(EngineError::Cancelled)));
}

#[test]
fn without_idleness_a_silent_split_holds_back_every_window() {
    let sink = CollectSink::new();
    let source = busy_and_silent_splits();
    let produced = Arc::clone(&source.produced);
    let strategy = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO);
    let handle = tumble_job(source, strategy, &sink)
        .start(RunOptions::default().shards(2))
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || produced
        .load(Ordering::SeqCst)
        == 50));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.rows(), 0);
    handle.cancel();
    assert!(matches!(handle.join(), Err(EngineError::Cancelled)));
}

#[test]
fn end_of_stream_fires_every_open_window() {
    // No watermark strategy at all: only end of stream can fire the windows.
    let sink = CollectSink::new();
    let input: Vec<Event> = (0..1_000)
        .map(|i| Event {
            key: i % 7,
            ts: (i * 37) % 5_000,
            v: Some(i),
        })
        .collect();
    let source =
        MemorySource::new(event_schema(), vec![common::batches_of(&input, &[64])]).unwrap();
    Pipeline::new("eos")
        .source(source)
        .event_time("ts")
        .key_by(["k"])
        .window(Window::session(Duration::from_millis(10)))
        .aggregate([count_all().alias("c")])
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .unwrap();
    let counts = common::column_i64(&sink.concat().unwrap(), "c");
    assert_eq!(counts.iter().map(|c| c.unwrap()).sum::<i64>(), 1_000);
    assert_eq!(sink.finished_subtasks(), 2);
}

/// A sink that sleeps on every batch and checks how far ahead the source runs.
#[derive(Clone)]
struct SlowSink {
    produced: Arc<AtomicUsize>,
    consumed: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    rows: Arc<AtomicUsize>,
}

impl SinkFactory for SlowSink {
    fn describe(&self) -> String {
        "slow".into()
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for SlowSink {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let consumed = self.consumed.fetch_add(1, Ordering::SeqCst) + 1;
            let in_flight = self
                .produced
                .load(Ordering::SeqCst)
                .saturating_sub(consumed);
            self.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
            self.rows.fetch_add(batch.num_rows(), Ordering::SeqCst);
            Ok(())
        })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

#[test]
fn a_slow_sink_slows_the_source_and_loses_nothing() {
    let batches: Vec<RecordBatch> = (0..400)
        .map(|i| {
            batch_of(&[Event {
                key: i,
                ts: i,
                v: Some(i),
            }])
        })
        .collect();
    let source = ScriptedSource {
        scripts: vec![Script {
            batches,
            pause: Duration::ZERO,
            hang: false,
        }],
        produced: Arc::default(),
    };
    let sink = SlowSink {
        produced: Arc::clone(&source.produced),
        consumed: Arc::default(),
        max_in_flight: Arc::default(),
        rows: Arc::default(),
    };
    Pipeline::new("backpressure")
        .source(source)
        .parallelism(1)
        .key_by(["k"])
        .window(Window::count(1))
        .aggregate([sum(col("v")).alias("s")])
        .sink(sink.clone())
        .run(RunOptions::default().shards(2).channel_capacity(4))
        .unwrap();
    assert_eq!(sink.rows.load(Ordering::SeqCst), 400);
    // Two channels of 4 messages, plus what each chain holds: far below 400.
    let max_in_flight = sink.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max_in_flight <= 16,
        "source ran {max_in_flight} batches ahead"
    );
}

#[test]
fn barriers_reach_every_sink_subtask_once() {
    let sink = CollectSink::new();
    let batches = events(1, (0..200).map(|i| i * 10));
    let source = ScriptedSource {
        scripts: vec![
            Script {
                batches: batches.clone(),
                pause: Duration::from_millis(2),
                hang: false,
            },
            Script {
                batches,
                pause: Duration::from_millis(2),
                hang: false,
            },
        ],
        produced: Arc::default(),
    };
    let produced = Arc::clone(&source.produced);
    let strategy = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO);
    let handle = tumble_job(source, strategy, &sink)
        .start(RunOptions::default().shards(2))
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || produced
        .load(Ordering::SeqCst)
        >= 20));
    handle.inject_barrier(CheckpointId(1));
    handle.inject_barrier(CheckpointId(2));
    handle.join().unwrap();
    let barriers = sink.barriers();
    assert_eq!(
        barriers.iter().filter(|b| **b == CheckpointId(1)).count(),
        2
    );
    assert_eq!(
        barriers.iter().filter(|b| **b == CheckpointId(2)).count(),
        2
    );
    assert_eq!(
        common::column_i64(&sink.concat().unwrap(), "c")
            .iter()
            .map(|c| c.unwrap())
            .sum::<i64>(),
        400
    );
}

fn run_with_timeout(job: Job, options: RunOptions) -> Result<(), WeirError> {
    let handle = job.start(options)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    let result = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the job must end, not hang");
    result.map(|_| ()).map_err(WeirError::from)
}

fn never_ending_source() -> ScriptedSource {
    ScriptedSource {
        scripts: vec![
            Script {
                batches: events(1, 0..100),
                pause: Duration::from_millis(1),
                hang: true,
            },
            Script {
                batches: events(2, 0..100),
                pause: Duration::from_millis(1),
                hang: true,
            },
        ],
        produced: Arc::default(),
    }
}

#[test]
fn an_operator_error_fails_the_job_naming_the_operator() {
    let job = Pipeline::new("failing")
        .source(never_ending_source())
        .parallelism(2)
        .filter_fn("fails on key 2", |batch: &RecordBatch| {
            let keys = common::column_i64(batch, "k");
            if keys.contains(&Some(2)) {
                return Err("key 2 is not welcome".into());
            }
            Ok(BooleanArray::from(vec![true; batch.num_rows()]))
        })
        .name("picky-filter")
        .sink(CollectSink::new());
    let error = run_with_timeout(job, RunOptions::default().shards(2))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("picky-filter") && error.contains("key 2 is not welcome"),
        "{error}"
    );
}

#[test]
fn a_panicking_operator_fails_the_job_naming_the_operator() {
    let schema = event_schema();
    let job = Pipeline::new("panicking")
        .source(never_ending_source())
        .parallelism(2)
        .map("panics on key 1", schema, |batch: RecordBatch| {
            if common::column_i64(&batch, "k").contains(&Some(1)) {
                panic!("unexpected key 1");
            }
            Ok(batch)
        })
        .name("fragile-map")
        .sink(CollectSink::new());
    let error = run_with_timeout(job, RunOptions::default().shards(2))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("fragile-map")
            && error.contains("panicked")
            && error.contains("unexpected key 1"),
        "{error}"
    );
}

#[test]
fn a_wrong_column_is_reported_before_the_job_starts() {
    let job = Pipeline::new("typo")
        .source(never_ending_source())
        .filter(col("prcie").gt(lit(1)))
        .sink(CollectSink::new());
    let error = job.start(RunOptions::default()).unwrap_err().to_string();
    assert!(
        error.contains("filter") && error.contains("prcie"),
        "{error}"
    );
}

#[test]
fn a_watermark_not_after_a_source_is_a_build_error() {
    let job = Pipeline::new("misplaced")
        .source(never_ending_source())
        .filter(col("k").gt(lit(1)))
        .watermark("ts", Duration::ZERO)
        .sink(CollectSink::new());
    let error = job.graph().expect_err("build error").to_string();
    assert!(
        error.contains("watermark must directly follow a source"),
        "{error}"
    );
}

/// Counts rows per sink subtask.
#[derive(Clone, Default)]
struct PerSubtaskSink {
    rows: Arc<std::sync::Mutex<std::collections::BTreeMap<usize, usize>>>,
}

struct PerSubtaskWriter {
    index: usize,
    rows: Arc<std::sync::Mutex<std::collections::BTreeMap<usize, usize>>>,
}

impl SinkFactory for PerSubtaskSink {
    fn describe(&self) -> String {
        "per-subtask counter".into()
    }

    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(PerSubtaskWriter {
            index: context.index,
            rows: Arc::clone(&self.rows),
        }))
    }
}

impl SinkWriter for PerSubtaskWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        *self.rows.lock().unwrap().entry(self.index).or_default() += batch.num_rows();
        Box::pin(async { Ok(()) })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

fn one_split_of(events: usize) -> MemorySource {
    let input: Vec<Event> = (0..events as i64)
        .map(|i| Event {
            key: 1,
            ts: i,
            v: Some(i),
        })
        .collect();
    MemorySource::new(event_schema(), vec![common::batches_of(&input, &[10])]).unwrap()
}

#[test]
fn rebalance_deals_batches_to_every_subtask() {
    let sink = PerSubtaskSink::default();
    Pipeline::new("rebalance")
        .source(one_split_of(1_000))
        .parallelism(1)
        .rebalance()
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .unwrap();
    let rows = sink.rows.lock().unwrap().clone();
    assert_eq!(rows.values().sum::<usize>(), 1_000);
    assert_eq!(rows.len(), 2, "both subtasks get batches: {rows:?}");
    assert!(rows.values().all(|&n| n == 500), "{rows:?}");
}

#[test]
fn broadcast_sends_every_row_to_every_subtask() {
    let sink = PerSubtaskSink::default();
    Pipeline::new("broadcast")
        .source(one_split_of(1_000))
        .parallelism(1)
        .broadcast()
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .unwrap();
    let rows = sink.rows.lock().unwrap().clone();
    assert_eq!(rows, [(0, 1_000), (1, 1_000)].into_iter().collect());
}
