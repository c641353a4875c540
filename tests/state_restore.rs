//! Snapshot and restore of every stateful window operator and of the updating (non-windowed)
//! aggregation, including onto a different parallelism: a run cut by a snapshot at 2 subtasks
//! and resumed at 3 (and at 1) must emit exactly the rows of an uninterrupted run.

mod common;

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use common::{batch_of, event_schema, Event};
use weir::engine::metrics::Metrics;
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
                input_schemas: vec![event_schema()],
                late_output_connected: false,
                checkpointing: false,
                metrics: Metrics::default(),
            };
            factory.create(&context).unwrap()
        })
        .collect()
}

/// Feeds batches (routed by key group) and a watermark after each to the subtasks.
fn feed(
    operators: &mut [Box<dyn Operator>],
    batches: &[RecordBatch],
    delay: i64,
    out: &mut Vec<RecordBatch>,
) {
    let hasher = KeyHasher::new(&event_schema(), &["k".to_string()], KEY_GROUPS).unwrap();
    let mut timers = Timers::default();
    let mut output = Context::new(0, None, KeyGroupRange::all(KEY_GROUPS), &mut timers);
    for batch in batches {
        for (target, part) in partition_by_key(&hasher, batch, operators.len()).unwrap() {
            operators[target].process_batch(part, &mut output).unwrap();
        }
        let max_ts = common::column_i64(batch, "ts")
            .into_iter()
            .flatten()
            .max()
            .unwrap();
        for operator in operators.iter_mut() {
            operator.on_watermark(max_ts - delay, &mut output).unwrap();
        }
        out.extend(output.take_batches());
    }
}

fn finish(operators: &mut [Box<dyn Operator>], out: &mut Vec<RecordBatch>) {
    let mut timers = Timers::default();
    let mut output = Context::new(0, None, KeyGroupRange::all(KEY_GROUPS), &mut timers);
    for operator in operators.iter_mut() {
        operator.on_watermark(i64::MAX, &mut output).unwrap();
    }
    out.extend(output.take_batches());
}

fn snapshot(operators: &mut [Box<dyn Operator>], backend: &mut InMemoryStateBackend) {
    let parallelism = operators.len();
    for (index, operator) in operators.iter_mut().enumerate() {
        let range = KeyGroupRange::for_subtask(index, parallelism, KEY_GROUPS);
        operator
            .snapshot_state(&mut OperatorState::new(backend, "window", range))
            .unwrap();
    }
}

fn restore(operators: &mut [Box<dyn Operator>], backend: &mut InMemoryStateBackend) {
    let parallelism = operators.len();
    for (index, operator) in operators.iter_mut().enumerate() {
        let range = KeyGroupRange::for_subtask(index, parallelism, KEY_GROUPS);
        operator
            .restore_state(&OperatorState::new(backend, "window", range))
            .unwrap();
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
    let mut whole = subtasks(&factory, 1);
    feed(&mut whole, &batches, delay, &mut expected);
    finish(&mut whole, &mut expected);

    let cut = batches.len() / 2;
    let mut got = Vec::new();
    let mut first = subtasks(&factory, before);
    feed(&mut first, &batches[..cut], delay, &mut got);
    let mut backend = InMemoryStateBackend::new();
    snapshot(&mut first, &mut backend);
    drop(first);
    let mut second = subtasks(&factory, after);
    restore(&mut second, &mut backend);
    feed(&mut second, &batches[cut..], delay, &mut got);
    finish(&mut second, &mut got);

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
    let mut operators = subtasks(&factory, 2);
    let mut backend = InMemoryStateBackend::new();
    snapshot(&mut operators, &mut backend);
    assert!(backend.is_empty());
    let mut restored = subtasks(&factory, 3);
    restore(&mut restored, &mut backend);
    let mut out = Vec::new();
    finish(&mut restored, &mut out);
    assert!(out.is_empty());
}

#[test]
fn snapshots_taken_while_running_do_not_change_results() {
    for window in every_window_kind() {
        let factory = factory(window);
        let batches = input(11);
        let mut expected = Vec::new();
        let mut whole = subtasks(&factory, 2);
        feed(&mut whole, &batches, 60, &mut expected);
        finish(&mut whole, &mut expected);

        // A snapshot after every batch, as checkpoints at a short interval do.
        let mut got = Vec::new();
        let mut running = subtasks(&factory, 2);
        for batch in &batches {
            feed(&mut running, std::slice::from_ref(batch), 60, &mut got);
            snapshot(&mut running, &mut InMemoryStateBackend::new());
        }
        finish(&mut running, &mut got);
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
    feed(&mut subtasks(&factory, 1), &batches, 0, &mut expected);
    let expected = changelog_rows(&expected);
    assert!(expected.len() > batches.len());
    for (before, after) in [(1, 1), (2, 3), (2, 1), (4, 2)] {
        let cut = batches.len() / 2;
        let mut got = Vec::new();
        let mut first = subtasks(&factory, before);
        feed(&mut first, &batches[..cut], 0, &mut got);
        let mut backend = InMemoryStateBackend::new();
        snapshot(&mut first, &mut backend);
        drop(first);
        let mut second = subtasks(&factory, after);
        restore(&mut second, &mut backend);
        feed(&mut second, &batches[cut..], 0, &mut got);
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
    let mut operator = subtasks(&factory, 1);
    let event = |key| Event {
        key,
        ts: 0,
        v: Some(1),
    };
    let mut out = Vec::new();
    feed(
        &mut operator,
        &[batch_of(&[event(1), event(2)])],
        0,
        &mut out,
    );
    std::thread::sleep(Duration::from_millis(200));
    feed(&mut operator, &[batch_of(&[event(2)])], 0, &mut out);
    std::thread::sleep(Duration::from_millis(300));
    // Key 1 was last updated 500 ms ago (expired); key 2 300 ms ago (kept). The margins leave
    // 100 ms for a slow machine.
    feed(
        &mut operator,
        &[batch_of(&[event(1), event(2)])],
        0,
        &mut out,
    );
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
    feed(&mut operator, &[batch_of(&[event(3)])], 0, &mut out);
    let mut backend = InMemoryStateBackend::new();
    snapshot(&mut operator, &mut backend);
    let mut restored = subtasks(&factory, 1);
    restore(&mut restored, &mut backend);
    let mut after = Vec::new();
    feed(
        &mut restored,
        &[batch_of(&[event(2), event(3)])],
        0,
        &mut after,
    );
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

/// Restores `backend` into fresh subtasks of `factory`; `Err` if any restore failed. A panic
/// fails the test: damaged state must be an error, never a crash.
fn try_restore(
    factory: &dyn OperatorFactory,
    backend: &mut InMemoryStateBackend,
) -> Result<(), String> {
    let mut operators = subtasks(factory, 2);
    let mut result = Ok(());
    for (index, operator) in operators.iter_mut().enumerate() {
        let range = KeyGroupRange::for_subtask(index, 2, KEY_GROUPS);
        let view = OperatorState::new(backend, "window", range);
        let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            operator.restore_state(&view)
        }));
        match restored {
            Err(_) => panic!("restoring damaged state panicked"),
            Ok(Err(e)) => result = Err(e.to_string()),
            Ok(Ok(())) => {}
        }
    }
    result
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
    for factory in &factories {
        let mut operators = subtasks(factory.as_ref(), 2);
        feed(
            &mut operators,
            &batches[..batches.len() / 2],
            5_000,
            &mut Vec::new(),
        );
        let mut backend = InMemoryStateBackend::new();
        snapshot(&mut operators, &mut backend);
        assert!(!backend.is_empty(), "{} has state", factory.describe());
        try_restore(factory.as_ref(), &mut backend.clone()).expect("intact state restores");
        snapshots.push(backend);
    }
    for (factory, snapshot) in factories.iter().zip(&snapshots) {
        // Every value cut short: an error.
        for keep in [0, 1, 8, 9, 20, 100] {
            let mut damaged = snapshot.clone();
            for value in damaged.values_mut() {
                value.truncate(keep.min(value.len().saturating_sub(1)));
            }
            let error = try_restore(factory.as_ref(), &mut damaged).unwrap_err();
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
            let _ = try_restore(factory.as_ref(), &mut damaged);
        }
        // Another operator's state under this one's name: refused.
        for other in snapshots.iter().filter(|s| !std::ptr::eq(*s, snapshot)) {
            let _ = try_restore(factory.as_ref(), &mut other.clone());
        }
    }
}
