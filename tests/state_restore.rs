//! Snapshot and restore of every stateful window operator and of the updating (non-windowed)
//! aggregation, including onto a different parallelism: a run cut by a snapshot at 2 subtasks
//! and resumed at 3 (and at 1) must emit exactly the rows of an uninterrupted run.
//!
//! As in the runtime, a run's subtasks keep their state in a live backend (one here for all
//! of them, each reading and writing its own key groups); a snapshot writes into it and
//! copies it (a checkpoint), and a resumed run starts from a copy of that.

mod common;

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use common::{batch_of, event_schema, Event};
use weir::engine::operator::{Context, Operator, OperatorFactory, SubtaskContext, Timers};
use weir::engine::partition::{partition_by_key, KeyGroupRange, KeyHasher};
use weir::engine::state::{InMemoryStateBackend, OperatorState};
use weir::operators::updating::UpdatingAggregateFactory;
use weir::operators::window::{WindowAggregateConfig, WindowAggregateFactory};
use weir::prelude::*;

const KEY_GROUPS: u16 = 128;

fn factory(window: Window) -> WindowAggregateFactory {
    WindowAggregateFactory::new(WindowAggregateConfig {
        window,
        time_column: "ts".into(),
        keys: vec!["k".into()],
        aggregates: vec![
            count_all().alias("c"),
            sum(col("v")).alias("s"),
            max(col("v")).alias("mx"),
            count_distinct(col("v")).alias("d"),
        ],
        processing_time: false,
        early_fire: None,
    })
}

/// The subtasks of one run of an operator and their live state.
struct Run {
    operators: Vec<Box<dyn Operator>>,
    live: InMemoryStateBackend,
}

/// A fresh run at `parallelism`.
fn start(factory: &dyn OperatorFactory, parallelism: usize) -> Run {
    Run {
        operators: subtasks(factory, parallelism),
        live: InMemoryStateBackend::new(),
    }
}

/// A run at `parallelism` resumed from `checkpoint`; `Err` if a subtask's restore failed.
fn resume(
    factory: &dyn OperatorFactory,
    parallelism: usize,
    checkpoint: &InMemoryStateBackend,
) -> Result<Run, String> {
    let mut run = Run {
        operators: subtasks(factory, parallelism),
        live: checkpoint.clone(),
    };
    for (index, operator) in run.operators.iter_mut().enumerate() {
        let range = KeyGroupRange::for_subtask(index, parallelism, KEY_GROUPS);
        operator
            .restore_state(&OperatorState::new(&mut run.live, "window", range))
            .map_err(|e| e.to_string())?;
    }
    Ok(run)
}

fn subtasks(factory: &dyn OperatorFactory, parallelism: usize) -> Vec<Box<dyn Operator>> {
    (0..parallelism)
        .map(|index| {
            let context = SubtaskContext {
                operator_id: "window".into(),
                uid: "window".into(),
                index,
                parallelism,
                key_groups: KeyGroupRange::for_subtask(index, parallelism, KEY_GROUPS),
                max_key_groups: KEY_GROUPS,
                ..SubtaskContext::standalone(vec![event_schema()])
            };
            factory.create(&context).unwrap()
        })
        .collect()
}

impl Run {
    /// Calls `call` on subtask `index` with a context over its state.
    fn call(
        &mut self,
        index: usize,
        out: &mut Vec<RecordBatch>,
        call: impl FnOnce(
            &mut Box<dyn Operator>,
            &mut Context<'_>,
        ) -> Result<(), weir::engine::BoxError>,
    ) -> Result<(), String> {
        let range = KeyGroupRange::for_subtask(index, self.operators.len(), KEY_GROUPS);
        let mut timers = Timers::default();
        let state = OperatorState::new(&mut self.live, "window", range);
        let mut ctx = Context::new(0, None, range, &mut timers).with_state(state);
        let operator = &mut self.operators[index];
        let mut result = call(operator, &mut ctx);
        // A long result comes in parts (as the runtime calls, after each went downstream).
        while result.is_ok() && ctx.take_continue() {
            out.extend(ctx.take_batches());
            result = operator.on_continue(&mut ctx);
        }
        out.extend(ctx.take_batches());
        result.map_err(|e| e.to_string())
    }

    /// Feeds batches (routed by key group) and a watermark after each to the subtasks.
    fn try_feed(
        &mut self,
        batches: &[RecordBatch],
        delay: i64,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), String> {
        let hasher = KeyHasher::new(&event_schema(), &["k".to_string()], KEY_GROUPS).unwrap();
        for batch in batches {
            for (target, part) in partition_by_key(&hasher, batch, self.operators.len()).unwrap() {
                self.call(target, out, |op, ctx| op.process_batch(part, ctx))?;
            }
            let max_ts = common::column_i64(batch, "ts")
                .into_iter()
                .flatten()
                .max()
                .unwrap();
            for index in 0..self.operators.len() {
                self.call(index, out, |op, ctx| op.on_watermark(max_ts - delay, ctx))?;
            }
        }
        Ok(())
    }

    fn feed(&mut self, batches: &[RecordBatch], delay: i64, out: &mut Vec<RecordBatch>) {
        self.try_feed(batches, delay, out).unwrap();
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) {
        for index in 0..self.operators.len() {
            self.call(index, out, |op, ctx| op.on_watermark(i64::MAX, ctx))
                .unwrap();
        }
    }

    /// Writes every subtask's state into the live backend and returns a copy (a checkpoint).
    fn snapshot(&mut self) -> InMemoryStateBackend {
        let parallelism = self.operators.len();
        for (index, operator) in self.operators.iter_mut().enumerate() {
            let range = KeyGroupRange::for_subtask(index, parallelism, KEY_GROUPS);
            operator
                .snapshot_state(&mut OperatorState::new(&mut self.live, "window", range))
                .unwrap();
        }
        self.live.clone()
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<Option<i64>>> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Option<i64>>> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| common::column_i64(batch, f.name()))
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[i]).collect());
        }
    }
    rows.sort();
    rows
}

fn input(seed: u64) -> Vec<RecordBatch> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let events: Vec<Event> = (0..3_000)
        .map(|i| Event {
            key: (next() % 23) as i64,
            ts: i * 3 - (next() % 120) as i64,
            v: Some((next() % 50) as i64),
        })
        .collect();
    events.chunks(97).map(batch_of).collect()
}

fn check(window: Window, before: usize, after: usize) {
    let factory = factory(window);
    let batches = input(7);
    let delay = 60;

    let mut expected = Vec::new();
    let mut whole = start(&factory, 1);
    whole.feed(&batches, delay, &mut expected);
    whole.finish(&mut expected);

    let cut = batches.len() / 2;
    let mut got = Vec::new();
    let mut first = start(&factory, before);
    first.feed(&batches[..cut], delay, &mut got);
    let checkpoint = first.snapshot();
    drop(first);
    let mut second = resume(&factory, after, &checkpoint).unwrap();
    second.feed(&batches[cut..], delay, &mut got);
    second.finish(&mut got);

    let (got, expected) = (rows(&got), rows(&expected));
    assert!(!expected.is_empty());
    if got != expected {
        let missing: Vec<_> = expected
            .iter()
            .filter(|r| !got.contains(r))
            .take(3)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|r| !expected.contains(r))
            .take(3)
            .collect();
        panic!(
            "{window:?}, {before} -> {after} subtasks: {} rows instead of {}; missing {missing:?}, extra {extra:?}",
            got.len(),
            expected.len()
        );
    }
}

fn every_window_kind() -> [Window; 5] {
    [
        Window::tumble(Duration::from_millis(250)),
        Window::hop(Duration::from_millis(300), Duration::from_millis(100)),
        Window::cumulate(Duration::from_millis(100), Duration::from_millis(400)),
        Window::session(Duration::from_millis(40)),
        Window::count(7),
    ]
}

#[test]
fn every_window_kind_restores_onto_more_and_fewer_subtasks() {
    for window in every_window_kind() {
        for (before, after) in [(1, 1), (2, 3), (2, 1), (4, 2)] {
            check(window, before, after);
        }
    }
}

#[test]
fn a_snapshot_without_a_live_job_is_empty_and_harmless() {
    let factory = factory(Window::tumble(Duration::from_millis(100)));
    let checkpoint = start(&factory, 2).snapshot();
    assert!(checkpoint.is_empty());
    let mut restored = resume(&factory, 3, &checkpoint).unwrap();
    let mut out = Vec::new();
    restored.finish(&mut out);
    assert!(out.is_empty());
}

#[test]
fn snapshots_taken_while_running_do_not_change_results() {
    // Windows longer than the input too: every snapshot adds runs to their panes, which are
    // merged when there are too many.
    let long = [
        Window::tumble(Duration::from_secs(20)),
        Window::hop(Duration::from_secs(20), Duration::from_secs(5)),
    ];
    for window in every_window_kind().into_iter().chain(long) {
        let factory = factory(window);
        let batches = input(11);
        let mut expected = Vec::new();
        let mut whole = start(&factory, 2);
        whole.feed(&batches, 60, &mut expected);
        whole.finish(&mut expected);

        // A snapshot after every batch, as checkpoints at a short interval do.
        let mut got = Vec::new();
        let mut running = start(&factory, 2);
        for batch in &batches {
            running.feed(std::slice::from_ref(batch), 60, &mut got);
            running.snapshot();
        }
        running.finish(&mut got);
        assert!(
            rows(&got) == rows(&expected),
            "{window:?}: snapshots changed the results"
        );
    }
}

/// The updating aggregation's changelog, the row kind as a number (Flink's bytes: +I 0, -U 1,
/// +U 2, -D 3) so rows compare as integers.
fn changelog_rows(batches: &[RecordBatch]) -> Vec<Vec<Option<i64>>> {
    assert!(batches
        .iter()
        .all(|b| weir_engine::changelog::row_kinds(b).is_some()));
    rows(batches)
}

#[test]
fn the_updating_aggregation_restores_onto_more_and_fewer_subtasks() {
    let factory = UpdatingAggregateFactory::new(
        vec!["k".into()],
        vec![
            count_all().alias("c"),
            sum(col("v")).alias("s"),
            max(col("v")).alias("mx"),
            count_distinct(col("v")).alias("d"),
        ],
    );
    let batches = input(11);
    let mut expected = Vec::new();
    start(&factory, 1).feed(&batches, 0, &mut expected);
    let expected = changelog_rows(&expected);
    assert!(expected.len() > batches.len());
    for (before, after) in [(1, 1), (2, 3), (2, 1), (4, 2)] {
        let cut = batches.len() / 2;
        let mut got = Vec::new();
        let mut first = start(&factory, before);
        first.feed(&batches[..cut], 0, &mut got);
        let checkpoint = first.snapshot();
        drop(first);
        let mut second = resume(&factory, after, &checkpoint).unwrap();
        second.feed(&batches[cut..], 0, &mut got);
        assert_eq!(
            changelog_rows(&got),
            expected,
            "{before} -> {after} subtasks"
        );
    }
}

/// With a state TTL, a group not updated for longer than the TTL starts over (`+I`), as in
/// Flink; one updated in time is updated (`-U`/`+U`); expired groups are left out of snapshots.
#[test]
fn the_updating_aggregation_forgets_groups_after_the_state_ttl() {
    let factory = UpdatingAggregateFactory::new(vec!["k".into()], vec![count_all().alias("c")])
        .with_state_ttl(Some(Duration::from_millis(400)));
    let mut operator = start(&factory, 1);
    let event = |key| Event {
        key,
        ts: 0,
        v: Some(1),
    };
    let mut out = Vec::new();
    operator.feed(&[batch_of(&[event(1), event(2)])], 0, &mut out);
    std::thread::sleep(Duration::from_millis(200));
    operator.feed(&[batch_of(&[event(2)])], 0, &mut out);
    std::thread::sleep(Duration::from_millis(300));
    // Key 1 was last updated 500 ms ago (expired); key 2 300 ms ago (kept). The margins leave
    // 100 ms for a slow machine.
    operator.feed(&[batch_of(&[event(1), event(2)])], 0, &mut out);
    let rows = changelog_rows(&out);
    // (k, c, op): +I 0, -U 1, +U 2.
    let expected = vec![
        vec![Some(1), Some(1), Some(0)],
        vec![Some(1), Some(1), Some(0)],
        vec![Some(2), Some(1), Some(0)],
        vec![Some(2), Some(1), Some(1)],
        vec![Some(2), Some(2), Some(1)],
        vec![Some(2), Some(2), Some(2)],
        vec![Some(2), Some(3), Some(2)],
    ];
    assert_eq!(rows, expected);
    // Only live groups are snapshotted.
    std::thread::sleep(Duration::from_millis(450));
    operator.feed(&[batch_of(&[event(3)])], 0, &mut out);
    let checkpoint = operator.snapshot();
    let mut restored = resume(&factory, 1, &checkpoint).unwrap();
    let mut after = Vec::new();
    restored.feed(&[batch_of(&[event(2), event(3)])], 0, &mut after);
    // Key 2 expired before the snapshot (+I again); key 3 was live (-U/+U).
    assert_eq!(
        changelog_rows(&after),
        vec![
            vec![Some(2), Some(1), Some(0)],
            vec![Some(3), Some(1), Some(1)],
            vec![Some(3), Some(2), Some(2)],
        ]
    );
}

/// Resumes fresh subtasks of `factory` from `checkpoint` and feeds them `batches` (state
/// tables read their entries as keys come); `Err` if the restore or an entry read failed. A
/// panic fails the test: damaged state must be an error, never a crash.
fn try_restore(
    factory: &dyn OperatorFactory,
    checkpoint: &InMemoryStateBackend,
    batches: &[RecordBatch],
) -> Result<(), String> {
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut run = resume(factory, 2, checkpoint)?;
        run.try_feed(batches, 5_000, &mut Vec::new())
    }));
    resumed.unwrap_or_else(|_| panic!("restoring damaged state panicked"))
}

#[test]
fn damaged_or_foreign_state_is_an_error_not_a_panic() {
    let updating = UpdatingAggregateFactory::new(
        vec!["k".into()],
        vec![count_all().alias("c"), sum(col("v")).alias("s")],
    );
    let mut factories: Vec<Box<dyn OperatorFactory>> = every_window_kind()
        .into_iter()
        .map(|w| Box::new(factory(w)) as Box<dyn OperatorFactory>)
        .collect();
    factories.push(Box::new(updating));
    let batches = input(7);
    let mut snapshots = Vec::new();
    let (first, second) = batches.split_at(batches.len() / 2);
    for factory in &factories {
        let mut run = start(factory.as_ref(), 2);
        run.feed(first, 5_000, &mut Vec::new());
        let backend = run.snapshot();
        assert!(!backend.is_empty(), "{} has state", factory.describe());
        try_restore(factory.as_ref(), &backend, second).expect("intact state restores");
        snapshots.push(backend);
    }
    for (factory, snapshot) in factories.iter().zip(&snapshots) {
        // Every value cut short: an error.
        for keep in [0, 1, 8, 9, 20, 100] {
            let mut damaged = snapshot.clone();
            for value in damaged.values_mut() {
                value.truncate(keep.min(value.len().saturating_sub(1)));
            }
            let error = try_restore(factory.as_ref(), &damaged, second).unwrap_err();
            assert!(!error.is_empty());
        }
        // Bytes flipped through the value: an error or (if the damage happens to decode) a
        // restore; never a panic.
        for step in [3, 17, 61] {
            let mut damaged = snapshot.clone();
            for value in damaged.values_mut() {
                for i in (9..value.len()).step_by(step) {
                    value[i] ^= 0x5a;
                }
            }
            let _ = try_restore(factory.as_ref(), &damaged, second);
        }
        // Another operator's state under this one's name: refused.
        for other in snapshots.iter().filter(|s| !std::ptr::eq(*s, snapshot)) {
            let _ = try_restore(factory.as_ref(), other, second);
        }
    }
}
