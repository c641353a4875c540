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

/// A two-input operator that counts the rows of each input and, on its first row, registers a
/// processing-time timer 50 ms ahead whose firing emits one row (`k` = -1).
struct TwoInputs {
    rows: Arc<[AtomicUsize; 2]>,
}

impl weir::engine::operator::OperatorFactory for TwoInputs {
    fn inputs(&self) -> &'static [&'static str] {
        &["fast", "slow"]
    }

    fn output_schema(&self, inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        assert_eq!(inputs.len(), 2);
        Ok(Arc::clone(&inputs[0]))
    }

    fn describe(&self) -> String {
        "two inputs".into()
    }

    fn create(
        &self,
        _: &SubtaskContext,
    ) -> Result<Box<dyn weir::engine::operator::Operator>, BoxError> {
        Ok(Box::new(TwoInputsOperator {
            rows: Arc::clone(&self.rows),
            armed: false,
        }))
    }
}

struct TwoInputsOperator {
    rows: Arc<[AtomicUsize; 2]>,
    armed: bool,
}

impl weir::engine::operator::Operator for TwoInputsOperator {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut weir::engine::operator::Context<'_>,
    ) -> Result<(), BoxError> {
        use weir::engine::operator::TimeDomain;
        self.rows[ctx.input()].fetch_add(batch.num_rows(), Ordering::SeqCst);
        if !self.armed {
            self.armed = true;
            let now = weir::engine::time::now_ms();
            ctx.register_timer(TimeDomain::ProcessingTime, now + 50);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        domain: weir::engine::operator::TimeDomain,
        _time: i64,
        ctx: &mut weir::engine::operator::Context<'_>,
    ) -> Result<(), BoxError> {
        assert_eq!(domain, weir::engine::operator::TimeDomain::ProcessingTime);
        ctx.emit(batch_of(&[Event {
            key: -1,
            ts: 0,
            v: None,
        }]));
        Ok(())
    }
}

/// A graph of two scripted sources into [`TwoInputs`] (one subtask) into `sink`.
fn two_input_graph(
    fast: ScriptedSource,
    slow: ScriptedSource,
    rows: &Arc<[AtomicUsize; 2]>,
    sink: &CollectSink,
) -> weir::engine::graph::Graph {
    use weir::engine::graph::{Exchange, Graph};
    let mut graph = Graph::new();
    let fast = graph.add_source("fast", Arc::new(fast), None);
    let slow = graph.add_source("slow", Arc::new(slow), None);
    let join = graph.add_operator(
        "two",
        Arc::new(TwoInputs {
            rows: Arc::clone(rows),
        }),
    );
    for node in [fast, slow, join] {
        graph.set_parallelism(node, 1);
    }
    graph.connect_input(fast, join, 0, Exchange::Forward);
    graph.connect_input(slow, join, 1, Exchange::Forward);
    let out = graph.add_sink("sink", Arc::new(sink.clone()));
    graph.set_parallelism(out, 1);
    graph.connect(join, out, Exchange::Forward);
    graph
}

#[test]
fn a_processing_time_timer_fires_while_the_inputs_are_silent() {
    let rows: Arc<[AtomicUsize; 2]> = Arc::default();
    let sink = CollectSink::new();
    let quiet = |key| ScriptedSource {
        scripts: vec![Script {
            batches: events(key, [1]),
            pause: Duration::ZERO,
            hang: true,
        }],
        produced: Arc::default(),
    };
    let graph = two_input_graph(quiet(1), quiet(2), &rows, &sink);
    let handle = weir::engine::runtime::start(&graph, RunOptions::default().shards(1)).unwrap();
    let fired = wait_until(Duration::from_secs(10), || sink.rows() == 1);
    handle.cancel();
    let _ = handle.join();
    assert!(fired, "the timer fired with no input arriving");
    assert_eq!(
        rows[0].load(Ordering::SeqCst) + rows[1].load(Ordering::SeqCst),
        2
    );
}

/// A sink that never finishes writing its first batch (without blocking its shard).
#[derive(Clone)]
struct StuckSink;

impl SinkFactory for StuckSink {
    fn describe(&self) -> String {
        "stuck".into()
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(StuckSink))
    }
}

impl SinkWriter for StuckSink {
    fn write_batch(&mut self, _batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(std::future::pending())
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

#[test]
fn an_input_blocked_at_a_barrier_is_not_read_until_the_others_align() {
    use weir::engine::graph::Exchange;
    let rows: Arc<[AtomicUsize; 2]> = Arc::default();
    let sink = CollectSink::new();
    let source = |key, batches, pause| ScriptedSource {
        scripts: vec![Script {
            batches: events(key, 0..batches),
            pause,
            hang: false,
        }],
        produced: Arc::default(),
    };
    let fast = source(1, 3_000, Duration::from_micros(300));
    let fast_produced = Arc::clone(&fast.produced);
    // The other input's source also feeds a sink that never takes its first batch: the source
    // soon waits on that sink's full channel, and so does the barrier it is asked to send.
    let mut graph = two_input_graph(fast, source(2, 200, Duration::ZERO), &rows, &sink);
    let stuck = graph.add_sink("stuck", Arc::new(StuckSink));
    graph.set_parallelism(stuck, 1);
    graph.connect(weir::engine::graph::NodeId(1), stuck, Exchange::Forward);
    let options = RunOptions::default().shards(1).channel_capacity(4);
    let handle = weir::engine::runtime::start(&graph, options).unwrap();
    assert!(wait_until(Duration::from_secs(10), || fast_produced
        .load(Ordering::SeqCst)
        >= 50));
    handle.inject_barrier(CheckpointId(1));
    // The fast input delivers the barrier at once and is then not read while the other one
    // cannot send its barrier: its source stops within its channel's capacity
    // (backpressure) instead of being buffered without bound.
    std::thread::sleep(Duration::from_millis(20));
    let at_barrier = fast_produced.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    let while_blocked = fast_produced.load(Ordering::SeqCst) - at_barrier;
    handle.cancel();
    let _ = handle.join();
    assert!(
        while_blocked < 10,
        "the fast source went on: {while_blocked} batches"
    );
}

/// Runs a fast split (key 0) and a slow one (key 1) over the same event times, with or
/// without watermark alignment (50 ms drift), and returns how far ahead of the slow split's
/// rows the fast split's rows ever reached the sink (ms).
fn lead_of_fast_split(aligned: bool) -> i64 {
    let times: Vec<i64> = (0..150).map(|i| i * 10).collect();
    let script = |key, pause| Script {
        batches: events(key, times.clone()),
        pause,
        hang: false,
    };
    let source = ScriptedSource {
        scripts: vec![
            script(0, Duration::from_millis(1)),
            script(1, Duration::from_millis(4)),
        ],
        produced: Arc::new(AtomicUsize::new(0)),
    };
    let mut strategy = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO);
    if aligned {
        strategy = strategy.with_alignment(weir::engine::time::WatermarkAlignment {
            group: "splits".into(),
            max_drift: Duration::from_millis(50),
            update_interval: Duration::from_secs(1),
        });
    }
    let sink = CollectSink::new();
    Pipeline::new("aligned")
        .source(source)
        .parallelism(2)
        .watermark_strategy(strategy)
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .expect("job runs");
    let mut slow_seen = i64::MIN;
    let mut lead = i64::MIN;
    for batch in sink.batches() {
        let keys = common::column_i64(&batch, "k");
        let ts = common::column_i64(&batch, "ts");
        for (key, time) in keys.iter().zip(&ts) {
            let (key, time) = (key.unwrap(), time.unwrap());
            match key {
                1 => slow_seen = slow_seen.max(time),
                // Before the slow split's first row it has no watermark to be ahead of.
                _ if slow_seen > i64::MIN && slow_seen < *times.last().unwrap() => {
                    lead = lead.max(time - slow_seen)
                }
                _ => {}
            }
        }
    }
    lead
}

/// Flink's watermark alignment: a split whose watermark runs more than the group's maximum
/// drift ahead of the slowest split waits; without alignment the fast split runs far ahead.
#[test]
fn aligned_splits_do_not_run_ahead_of_their_group() {
    // The fast split reads its next row (10 ms later) only while at most 50 ms ahead.
    let lead = lead_of_fast_split(true);
    assert!(
        (0..=60).contains(&lead),
        "aligned: the fast split led by {lead} ms"
    );
    let lead = lead_of_fast_split(false);
    assert!(
        lead > 500,
        "unaligned: the fast split led by only {lead} ms"
    );
}

/// The runtime keeps Flink's basic metrics per operator subtask (rows in and out, the
/// current input watermark) and for the job (completed checkpoints, the last one's duration
/// and size).
#[test]
fn metrics_count_rows_per_subtask_watermarks_and_checkpoints() {
    use weir::engine::checkpoint::CheckpointConfig;
    use weir::engine::metrics::{names, MetricKey, MetricValue, JOB};
    let dir = std::env::temp_dir().join(format!("weir-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let batches: Vec<RecordBatch> = (0..20)
        .map(|b| {
            let events: Vec<Event> = (0..50)
                .map(|i| Event {
                    key: i % 7,
                    ts: b * 50 + i,
                    v: Some(1),
                })
                .collect();
            batch_of(&events)
        })
        .collect();
    let sink = CollectSink::new();
    let result = Pipeline::new("metrics")
        .source(MemorySource::new(event_schema(), vec![batches]).unwrap())
        .watermark("ts", Duration::ZERO)
        .key_by(["k"])
        .window(Window::tumble(Duration::from_millis(100)))
        .aggregate([count_all().alias("c")])
        .sink(sink.clone())
        .run(
            RunOptions::default()
                .shards(2)
                .checkpoint(CheckpointConfig::new(&dir)),
        )
        .unwrap();
    let metrics = &result.metrics;
    let snapshot = metrics.snapshot();
    let value = |operator: &str, subtask: usize, name: &'static str| {
        let key = MetricKey {
            operator: operator.to_string(),
            subtask,
            name,
        };
        snapshot.get(&key).copied()
    };
    assert!(metrics.total(names::ROWS_OUT) >= 1_000);
    let window = snapshot
        .keys()
        .find(|k| k.operator.starts_with("window") && k.name == names::ROWS_IN)
        .map(|k| k.operator.clone())
        .expect("the window's rows_in");
    assert_eq!(metrics.operator_total(&window, names::ROWS_IN), 1_000);
    let windows_out = metrics.operator_total(&window, names::ROWS_OUT);
    assert_eq!(
        windows_out,
        10 * 7,
        "one row per key and 100 ms window (1 s of input)"
    );
    for subtask in 0..2 {
        assert!(
            value(&window, subtask, names::ROWS_IN).is_some(),
            "subtask {subtask}"
        );
        assert_eq!(
            value(&window, subtask, names::INPUT_WATERMARK),
            Some(MetricValue::Gauge(i64::MAX)),
            "the end of input's watermark reached subtask {subtask}"
        );
    }
    match value(JOB, 0, names::CHECKPOINTS_COMPLETED) {
        Some(MetricValue::Counter(n)) => assert!(n >= 1, "{n} checkpoints"),
        other => panic!("checkpoints completed: {other:?}"),
    }
    assert!(matches!(
        value(JOB, 0, names::LAST_CHECKPOINT_SIZE_BYTES),
        Some(MetricValue::Gauge(bytes)) if bytes > 0
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
