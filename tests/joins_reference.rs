//! Joins against a brute-force reference over random, out-of-order input on both sides, at 1,
//! 2 and 4 shards.
//!
//! Regular joins: the rows left after applying the output changelog (every `-U`/`-D` must
//! retract a row present) equal the batch join of the inputs' final contents, for append-only
//! inputs and for an updating input (a `GROUP BY` result, whose changes retract and re-add
//! matches and outer joins' padded rows).
//!
//! Temporal joins: each left row joins the latest version of its key at or before its time
//! (right rows unique per key and time, so which version is latest does not depend on
//! arrival order), with the same watermark delay, so no row is behind the watermark.
//!
//! Interval joins: the watermark delay of both sources is at least the disorder, so no row reaches the join
//! after the watermark passed its time: then Flink's interval join emits exactly the pairs of
//! the batch join (and, for outer joins, every unmatched row once, padded), whatever the
//! interleaving of the two inputs. Late rows, whose result depends on that interleaving, are
//! covered by the operator's own tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use common::reference::{events, split_into};
use common::{batch_of, column_i64, Event};
use proptest::prelude::*;
use weir::prelude::*;

/// A joined row: left key, time, value, then right key, time, value (None: padded).
type Row = [Option<i64>; 6];

/// The right side's schema: the event schema with every column renamed (`k2`, `ts2`, `v2`).
fn right_schema() -> SchemaRef {
    let fields: Vec<Field> = common::event_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_name(format!("{}2", f.name())))
        .collect();
    Arc::new(Schema::new(fields))
}

fn source(splits: &[Vec<Vec<Event>>], schema: SchemaRef) -> MemorySource {
    let batches = splits
        .iter()
        .map(|split| {
            split
                .iter()
                .map(|events| {
                    RecordBatch::try_new(Arc::clone(&schema), batch_of(events).columns().to_vec())
                        .unwrap()
                })
                .collect()
        })
        .collect();
    MemorySource::new(schema, batches).unwrap()
}

/// The batch join: pairs with equal keys and `left.ts + lower <= right.ts <= left.ts + upper`
/// (and `left.v < right.v` with `filter`), then the unmatched rows an outer join keeps.
fn reference(
    left: &[Event],
    right: &[Event],
    join_type: JoinType,
    (lower, upper): (i64, i64),
    filter: bool,
) -> Vec<Row> {
    let matches = |l: &Event, r: &Event| {
        l.key == r.key
            && l.ts + lower <= r.ts
            && r.ts <= l.ts + upper
            && (!filter || matches!((l.v, r.v), (Some(a), Some(b)) if a < b))
    };
    let side = |e: &Event| [Some(e.key), Some(e.ts), e.v];
    let mut rows = Vec::new();
    for l in left {
        for r in right.iter().filter(|r| matches(l, r)) {
            let (a, b) = (side(l), side(r));
            rows.push([a[0], a[1], a[2], b[0], b[1], b[2]]);
        }
    }
    if matches!(join_type, JoinType::Left | JoinType::Full) {
        for l in left.iter().filter(|l| !right.iter().any(|r| matches(l, r))) {
            let a = side(l);
            rows.push([a[0], a[1], a[2], None, None, None]);
        }
    }
    if matches!(join_type, JoinType::Right | JoinType::Full) {
        for r in right.iter().filter(|r| !left.iter().any(|l| matches(l, r))) {
            let b = side(r);
            rows.push([None, None, None, b[0], b[1], b[2]]);
        }
    }
    rows.sort();
    rows
}

fn rows_of(sink: &CollectSink) -> Vec<Row> {
    let Some(batch) = sink.concat() else {
        return Vec::new();
    };
    let columns: Vec<Vec<Option<i64>>> = ["k", "ts", "v", "k2", "ts2", "v2"]
        .iter()
        .map(|c| column_i64(&batch, c))
        .collect();
    let mut rows: Vec<Row> = (0..batch.num_rows())
        .map(|i| std::array::from_fn(|c| columns[c][i]))
        .collect();
    rows.sort();
    rows
}

fn run_interval_join(
    left: &[Vec<Vec<Event>>],
    right: &[Vec<Vec<Event>>],
    join_type: JoinType,
    (lower, upper): (i64, i64),
    filter: bool,
    delay: Duration,
    shards: usize,
) -> Vec<Row> {
    let pipeline = Pipeline::new("interval-join");
    let left_stream = pipeline
        .source(source(left, common::event_schema()))
        .parallelism(left.len())
        .watermark("ts", delay)
        .key_by(["k"]);
    let right_stream = pipeline
        .source(source(right, right_schema()))
        .parallelism(right.len())
        .watermark("ts2", delay)
        .key_by(["k2"]);
    let mut joined = left_stream.join(&right_stream).kind(join_type);
    if filter {
        joined = joined.filter(col("v").lt(col("v2")));
    }
    let sink = CollectSink::new();
    joined
        .between(lower, upper)
        .sink(sink.clone())
        .run(RunOptions::default().shards(shards).channel_capacity(4))
        .expect("job runs");
    rows_of(&sink)
}

/// The batch join of `left` and `right` rows (column 0 the key) with `left.v < right.v` for
/// `filter` (column 1 of each side), then the unmatched rows an outer join keeps.
fn batch_join(
    left: &[Vec<Option<i64>>],
    right: &[Vec<Option<i64>>],
    join_type: JoinType,
    filter: bool,
) -> Vec<Vec<Option<i64>>> {
    let matches = |l: &[Option<i64>], r: &[Option<i64>]| {
        l[0] == r[0] && (!filter || matches!((l[1], r[1]), (Some(a), Some(b)) if a < b))
    };
    // Both sides have two columns: key and value.
    let nulls = [None, None];
    let mut rows = Vec::new();
    if matches!(join_type, JoinType::Semi | JoinType::Anti) {
        // Each left row, once, by whether it has a match.
        let semi = join_type == JoinType::Semi;
        rows.extend(
            left.iter()
                .filter(|l| right.iter().any(|r| matches(l, r)) == semi)
                .cloned(),
        );
        rows.sort();
        return rows;
    }
    for l in left {
        for r in right.iter().filter(|r| matches(l, r)) {
            rows.push(l.iter().chain(r.iter()).copied().collect());
        }
        if matches!(join_type, JoinType::Left | JoinType::Full)
            && !right.iter().any(|r| matches(l, r))
        {
            rows.push(l.iter().chain(&nulls).copied().collect());
        }
    }
    if matches!(join_type, JoinType::Right | JoinType::Full) {
        for r in right.iter().filter(|r| !left.iter().any(|l| matches(l, r))) {
            rows.push(nulls.iter().chain(r.iter()).copied().collect());
        }
    }
    rows.sort();
    rows
}

/// Runs a regular join of `left` events with `right`: the events themselves, or (`aggregated`)
/// their count and maximum `v` per key, an updating input. Returns the sink's batches.
fn run_regular_join(
    left: &[Vec<Vec<Event>>],
    right: &[Vec<Vec<Event>>],
    join_type: JoinType,
    filter: bool,
    aggregated: bool,
    shards: usize,
) -> Vec<RecordBatch> {
    let pipeline = Pipeline::new("regular-join");
    let left_stream = pipeline
        .source(source(left, common::event_schema()))
        .parallelism(left.len())
        .select([col("k"), col("v")])
        .key_by(["k"]);
    let right_rows = pipeline
        .source(source(right, right_schema()))
        .parallelism(right.len());
    let right_stream = if aggregated {
        right_rows
            .key_by(["k2"])
            .aggregate([max(col("v2")).alias("v2")])
            .key_by(["k2"])
    } else {
        right_rows.select([col("k2"), col("v2")]).key_by(["k2"])
    };
    let mut joined = left_stream.join(&right_stream).kind(join_type);
    if filter {
        joined = joined.filter(col("v").lt(col("v2")));
    }
    let sink = CollectSink::new();
    joined
        .regular()
        .sink(sink.clone())
        .run(RunOptions::default().shards(shards).channel_capacity(4))
        .expect("job runs");
    sink.batches()
}

fn join_type() -> impl Strategy<Value = JoinType> {
    prop_oneof![
        Just(JoinType::Inner),
        Just(JoinType::Left),
        Just(JoinType::Right),
        Just(JoinType::Full)
    ]
}

fn regular_join_type() -> impl Strategy<Value = JoinType> {
    prop_oneof![join_type(), Just(JoinType::Semi), Just(JoinType::Anti)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn interval_joins_match_the_batch_join(
        join_type in join_type(),
        lower in -40i64..30,
        width in 0i64..40,
        filter in any::<bool>(),
        left in events(150, 60),
        right in events(150, 60),
        splits in 1usize..3,
        sizes in prop::collection::vec(1usize..30, 1..4),
    ) {
        let bounds = (lower, lower + width);
        let expected = reference(&left, &right, join_type, bounds, filter);
        let (left_splits, right_splits) = (split_into(&left, splits, &sizes), split_into(&right, splits, &sizes));
        for shards in [1, 2, 4] {
            let rows = run_interval_join(&left_splits, &right_splits, join_type, bounds, filter, Duration::from_millis(60), shards);
            prop_assert_eq!(&rows, &expected, "{:?} {:?} filter {} at {} shards", join_type, bounds, filter, shards);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn regular_joins_match_the_batch_join(
        join_type in regular_join_type(),
        filter in any::<bool>(),
        aggregated in any::<bool>(),
        left in events(120, 60),
        right in events(120, 60),
        splits in 1usize..3,
        sizes in prop::collection::vec(1usize..30, 1..4),
    ) {
        let rows = |events: &[Event]| -> Vec<Vec<Option<i64>>> {
            events.iter().map(|e| vec![Some(e.key), e.v]).collect()
        };
        let right_rows = if aggregated {
            let mut max_per_key = std::collections::BTreeMap::<i64, Option<i64>>::new();
            for e in &right {
                let entry = max_per_key.entry(e.key).or_insert(None);
                *entry = (*entry).max(e.v);
            }
            max_per_key.into_iter().map(|(k, v)| vec![Some(k), v]).collect()
        } else {
            rows(&right)
        };
        let expected = batch_join(&rows(&left), &right_rows, join_type, filter);
        let (left_splits, right_splits) = (split_into(&left, splits, &sizes), split_into(&right, splits, &sizes));
        for shards in [1, 2, 4] {
            let batches = run_regular_join(&left_splits, &right_splits, join_type, filter, aggregated, shards);
            let append_only = matches!(join_type, JoinType::Inner | JoinType::Semi) && !aggregated;
            // Every batch carries row kinds exactly when the result is a changelog.
            prop_assert!(batches
                .iter()
                .all(|b| weir::engine::changelog::row_kinds(b).is_none() == append_only));
            let columns: &[&str] = match join_type {
                JoinType::Semi | JoinType::Anti => &["k", "v"],
                _ => &["k", "v", "k2", "v2"],
            };
            let got = common::apply_changelog(&batches, columns);
            prop_assert_eq!(&got, &expected, "{:?} filter {} aggregated {} at {} shards", join_type, filter, aggregated, shards);
        }
    }
}

/// Each left row with the latest right row of its key at or before its time, when there is
/// one and the filter holds for it; an inner join drops the others, a left join pads them.
fn temporal_reference(
    left: &[Event],
    right: &[Event],
    join_type: JoinType,
    filter: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for l in left {
        let version = right
            .iter()
            .filter(|r| r.key == l.key && r.ts <= l.ts)
            .max_by_key(|r| r.ts)
            .filter(|r| !filter || matches!((l.v, r.v), (Some(a), Some(b)) if a < b));
        match version {
            Some(r) => rows.push([Some(l.key), Some(l.ts), l.v, Some(r.key), Some(r.ts), r.v]),
            None if join_type == JoinType::Left => {
                rows.push([Some(l.key), Some(l.ts), l.v, None, None, None])
            }
            None => {}
        }
    }
    rows.sort();
    rows
}

fn run_temporal_join(
    left: &[Vec<Vec<Event>>],
    right: &[Vec<Vec<Event>>],
    join_type: JoinType,
    filter: bool,
    shards: usize,
) -> Vec<Row> {
    let pipeline = Pipeline::new("temporal-join");
    let stream = |events: &[Vec<Vec<Event>>], schema: SchemaRef, time: &str, key: &str| {
        pipeline
            .source(source(events, schema))
            .parallelism(events.len())
            .watermark(time, Duration::from_millis(60))
            .key_by([key])
    };
    let left_stream = stream(left, common::event_schema(), "ts", "k");
    let versions = stream(right, right_schema(), "ts2", "k2");
    let mut joined = left_stream.join(&versions).kind(join_type);
    if filter {
        joined = joined.filter(col("v").lt(col("v2")));
    }
    let sink = CollectSink::new();
    joined
        .temporal()
        .sink(sink.clone())
        .run(RunOptions::default().shards(shards).channel_capacity(4))
        .expect("job runs");
    rows_of(&sink)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn temporal_joins_match_the_latest_version(
        left_join in any::<bool>(),
        filter in any::<bool>(),
        left in events(120, 60),
        right in events(120, 60),
        splits in 1usize..3,
        sizes in prop::collection::vec(1usize..30, 1..4),
    ) {
        let join_type = if left_join { JoinType::Left } else { JoinType::Inner };
        let mut seen = std::collections::HashSet::new();
        let right: Vec<Event> = right.into_iter().filter(|e| seen.insert((e.key, e.ts))).collect();
        let expected = temporal_reference(&left, &right, join_type, filter);
        let (left_splits, right_splits) = (split_into(&left, splits, &sizes), split_into(&right, splits, &sizes));
        for shards in [1, 2, 4] {
            let rows = run_temporal_join(&left_splits, &right_splits, join_type, filter, shards);
            prop_assert_eq!(&rows, &expected, "{:?} filter {} at {} shards", join_type, filter, shards);
        }
    }
}

/// The temporal comparison can fail: joining the earliest version instead of the latest, or
/// versions after the left row, gives other rows.
#[test]
fn a_wrong_version_fails_the_temporal_comparison() {
    let at = |key, ts, v| Event {
        key,
        ts,
        v: Some(v),
    };
    let left = vec![at(1, 1_050, 0), at(2, 1_000, 0)];
    let right = vec![
        at(1, 1_000, 1),
        at(1, 1_040, 2),
        at(1, 1_060, 3),
        at(2, 1_001, 4),
    ];
    let splits = |e: &[Event]| split_into(e, 1, &[2]);
    let rows = run_temporal_join(&splits(&left), &splits(&right), JoinType::Left, false, 2);
    assert_eq!(
        rows,
        temporal_reference(&left, &right, JoinType::Left, false)
    );
    assert_eq!(rows[0][5], Some(2), "the version at 1040, not 1000 or 1060");
    assert_eq!(rows[1][3], None, "key 2 has no version yet at 1000");
}

/// The comparison can fail: a bound one millisecond off changes the expected rows, and Weir's
/// rows equal only the right ones.
#[test]
fn a_wrong_bound_fails_the_comparison() {
    let at = |key, ts| Event {
        key,
        ts,
        v: Some(1),
    };
    let left = vec![at(1, 1_000), at(2, 1_050)];
    // Pairs at both bounds (right - left = 10 and -10) and just outside them (11, -11).
    let right = vec![at(1, 1_010), at(2, 1_040), at(1, 1_011), at(2, 1_039)];
    let splits = |e: &[Event]| split_into(e, 1, &[2]);
    let rows = run_interval_join(
        &splits(&left),
        &splits(&right),
        JoinType::Full,
        (-10, 10),
        false,
        Duration::ZERO,
        2,
    );
    assert_eq!(
        rows,
        reference(&left, &right, JoinType::Full, (-10, 10), false)
    );
    for wrong in [(-10, 9), (-10, 11), (-9, 10), (-11, 10)] {
        assert_ne!(
            rows,
            reference(&left, &right, JoinType::Full, wrong, false),
            "{wrong:?}"
        );
    }
}
