//! The DSL's stateless steps and aggregates beyond the basic ones: expressions with implicit
//! casts, projections, closures, `avg`, `approx_distinct` and a user-defined aggregate.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use common::{batches_of, event_schema, Event};
use weir::prelude::*;

fn input() -> Vec<Event> {
    (0..2_000)
        .map(|i| Event {
            key: i % 5,
            ts: i * 10,
            v: Some((i * 7) % 101),
        })
        .collect()
}

fn source(events: &[Event]) -> MemorySource {
    MemorySource::new(event_schema(), vec![batches_of(events, &[128])]).unwrap()
}

#[test]
fn filter_select_and_map_compose() {
    let events = input();
    let sink = CollectSink::new();
    let doubled = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v2", DataType::Int64, true),
        Field::new("v4", DataType::Int64, true),
    ]));
    Pipeline::new("stateless")
        .source(source(&events))
        // An INT literal against a BIGINT column: coerced, not rejected.
        .filter(col("v").gt(lit(50)))
        .select([col("k"), (col("v") * lit(2)).alias("v2")])
        .map(
            "append v4",
            Arc::clone(&doubled),
            move |batch: RecordBatch| {
                let v2 = batch.column(1).as_primitive::<Int64Type>();
                let v4: ArrayRef =
                    Arc::new(Int64Array::from_iter(v2.iter().map(|v| v.map(|v| v * 2))));
                Ok(RecordBatch::try_new(
                    Arc::clone(&doubled),
                    vec![Arc::clone(batch.column(0)), Arc::clone(batch.column(1)), v4],
                )?)
            },
        )
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .unwrap();
    let out = sink.concat().unwrap();
    let mut got: Vec<(i64, i64)> = common::column_i64(&out, "v2")
        .into_iter()
        .zip(common::column_i64(&out, "v4"))
        .map(|(a, b)| (a.unwrap(), b.unwrap()))
        .collect();
    got.sort();
    let mut expected: Vec<(i64, i64)> = events
        .iter()
        .filter_map(|e| e.v)
        .filter(|v| *v > 50)
        .map(|v| (v * 2, v * 4))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// `max(v) - min(v)`, as a user-defined aggregate.
#[derive(Debug, Default)]
struct Spread {
    min: Option<i64>,
    max: Option<i64>,
}

impl Spread {
    fn add(&mut self, value: i64) {
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }
}

impl Accumulator for Spread {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion_common::Result<()> {
        for value in values[0].as_primitive::<Int64Type>().iter().flatten() {
            self.add(value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion_common::Result<ScalarValue> {
        Ok(ScalarValue::Int64(
            self.max.zip(self.min).map(|(a, b)| a - b),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    fn state(&mut self) -> datafusion_common::Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(self.min),
            ScalarValue::Int64(self.max),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion_common::Result<()> {
        for state in states {
            for value in state.as_primitive::<Int64Type>().iter().flatten() {
                self.add(value);
            }
        }
        Ok(())
    }
}

#[test]
fn avg_approx_distinct_and_a_user_defined_aggregate_per_window() {
    let events = input();
    let spread = create_udaf(
        "spread",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(Spread::default()))),
        Arc::new(vec![DataType::Int64, DataType::Int64]),
    );
    let sink = CollectSink::new();
    Pipeline::new("aggregates")
        .source(source(&events))
        .watermark("ts", Duration::ZERO)
        .key_by(["k"])
        // Hopping, so partial states of the user-defined aggregate are merged across panes.
        .window(Window::hop(
            Duration::from_millis(1_000),
            Duration::from_millis(500),
        ))
        .aggregate([
            avg(col("v")).alias("mean"),
            approx_distinct(col("v")).alias("distinct"),
            spread.call(vec![col("v")]).alias("spread"),
        ])
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .unwrap();

    let mut expected: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for e in &events {
        let last_start = e.ts.div_euclid(500) * 500;
        for start in [last_start - 500, last_start] {
            expected
                .entry((start, e.key))
                .or_default()
                .push(e.v.unwrap());
        }
    }
    let out = sink.concat().unwrap();
    let starts = common::column_i64(&out, "window_start");
    let keys = common::column_i64(&out, "k");
    let means = out
        .column_by_name("mean")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let distinct = common::column_i64(&out, "distinct");
    let spreads = common::column_i64(&out, "spread");
    assert_eq!(out.num_rows(), expected.len());
    for i in 0..out.num_rows() {
        let values = &expected[&(starts[i].unwrap(), keys[i].unwrap())];
        let mean = values.iter().sum::<i64>() as f64 / values.len() as f64;
        assert!((means.value(i) - mean).abs() < 1e-9);
        let exact = values
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len() as i64;
        let estimate = distinct[i].unwrap();
        assert!(
            (estimate - exact).abs() <= exact / 20 + 1,
            "{estimate} vs {exact}"
        );
        let spread = values.iter().max().unwrap() - values.iter().min().unwrap();
        assert_eq!(spreads[i], Some(spread));
    }
}

#[test]
fn two_aggregates_with_the_same_name_are_rejected_with_a_hint() {
    let job = Pipeline::new("dup")
        .source(source(&input()))
        .watermark("ts", Duration::ZERO)
        .window(Window::tumble(Duration::from_secs(1)))
        .aggregate([max(col("v")).alias("x"), min(col("v")).alias("x")])
        .sink(CollectSink::new());
    let error = job.start(RunOptions::default()).unwrap_err().to_string();
    assert!(error.contains("two columns named 'x'"), "{error}");
}

/// A window join in the DSL: per key and 1 s window, the row count of one stream next to the
/// sum of another's, joined on key and window; every window of both is joined once.
#[test]
fn a_window_join_joins_window_results_on_their_windows() {
    let left: Vec<Event> = input();
    let right: Vec<Event> = input().into_iter().filter(|e| e.key != 4).collect();
    let pipeline = Pipeline::new("window-join");
    let counts = pipeline
        .source(source(&left))
        .watermark("ts", Duration::from_millis(100))
        .key_by(["k"])
        .window(Window::tumble(Duration::from_secs(1)))
        .aggregate([count_all().alias("n")]);
    let sums = pipeline
        .source(source(&right))
        .watermark("ts", Duration::from_millis(100))
        .key_by(["k"])
        .window(Window::tumble(Duration::from_secs(1)))
        .aggregate([sum(col("v")).alias("total")])
        .select([
            col("k").alias("k2"),
            col("window_start").alias("start2"),
            col("window_end").alias("end2"),
            col("total"),
        ]);
    let sink = CollectSink::new();
    counts
        .key_by(["k"])
        .join(&sums.key_by(["k2"]))
        .window(["window_start", "window_end"], ["start2", "end2"])
        .sink(sink.clone())
        .run(RunOptions::default().shards(2))
        .unwrap();
    let batch = sink.concat().unwrap();
    let column = |name| common::column_i64(&batch, name);
    let (keys, starts, counts, totals) = (
        column("k"),
        column("window_start"),
        column("n"),
        column("total"),
    );
    let mut got: Vec<(i64, i64, i64, i64)> = (0..batch.num_rows())
        .map(|i| {
            (
                keys[i].unwrap(),
                starts[i].unwrap(),
                counts[i].unwrap(),
                totals[i].unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut expected: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for e in &left {
        expected.entry((e.key, e.ts / 1000 * 1000)).or_default().0 += 1;
    }
    for e in &right {
        expected.entry((e.key, e.ts / 1000 * 1000)).or_default().1 += e.v.unwrap();
    }
    let expected: Vec<(i64, i64, i64, i64)> = expected
        .into_iter()
        .filter(|((k, _), _)| *k != 4)
        .map(|((k, w), (n, t))| (k, w, n, t))
        .collect();
    assert_eq!(got, expected);
}

/// Out-of-order rows for the window rankings: k in 0..4, v in 0..20 or NULL, times up to
/// 40 ms behind the latest.
fn ranked_input() -> Vec<Event> {
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    (0..400)
        .map(|i| Event {
            key: next(4) as i64,
            ts: 1_000 + i * 5 - next(40) as i64,
            v: (next(10) != 0).then(|| next(20) as i64),
        })
        .collect()
}

/// A DSL pipeline's steps after its source.
type Build = dyn Fn(Stream) -> Stream;

/// Window Top-N, window deduplication and a Top-N of window results in the DSL give SQL's
/// rows (each checked against Flink elsewhere), append-only, at 1, 2 and 4 shards.
#[test]
fn window_rankings_equal_their_sql() {
    let events = ranked_input();
    let dir = std::env::temp_dir().join(format!("weir-dsl-window-rank-{}", std::process::id()));
    let ddl = common::events_table(&dir, &events);
    let tumble = "TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '0.1' SECOND))";
    let window = || Window::tumble(Duration::from_millis(100));
    let rows = ["k", "v", "id", "window_start", "window_end", "rn"];
    let top_n = format!(
        "SELECT k, v, id, window_start, window_end, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k ORDER BY v DESC) AS rn FROM {tumble}) WHERE rn <= 2"
    );
    let dsl_top_n = move |s: Stream| {
        s.key_by(["k"])
            .window(window())
            .top_n(TopN::new(2, [OrderKey::desc("v")]).rank_column("rn"))
    };
    let first = format!(
        "SELECT k, v, id, window_start, window_end FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k ORDER BY ts ASC) AS rn FROM {tumble}) WHERE rn = 1"
    );
    let dsl_first = move |s: Stream| {
        s.key_by(["k"])
            .window(window())
            .deduplicate(Deduplicate::keep_first())
    };
    let counts = ["window_start", "window_end", "k", "c", "rn"];
    let top_counts = format!(
        "SELECT window_start, window_end, k, c, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY c DESC, k ASC) AS rn FROM (SELECT window_start, window_end, k, COUNT(*) AS c FROM {tumble} GROUP BY window_start, window_end, k)) WHERE rn <= 2"
    );
    let dsl_top_counts = move |s: Stream| {
        s.key_by(["k"])
            .window(window())
            .aggregate([count_all().alias("c")])
            .key_by(["window_start", "window_end"])
            .top_n(TopN::new(2, [OrderKey::desc("c"), OrderKey::asc("k")]).rank_column("rn"))
    };
    for shards in [1, 2, 4] {
        let cases: [(&str, &Build, &[&str]); 3] = [
            (&top_n, &dsl_top_n, &rows),
            (&first, &dsl_first, &rows[..5]),
            (&top_counts, &dsl_top_counts, &counts),
        ];
        for (sql, dsl, columns) in cases {
            let batches = common::dsl_batches(&events, dsl, shards);
            assert!(
                batches
                    .iter()
                    .all(|b| !weir::engine::changelog::has_row_kind(&b.schema())),
                "append-only: {sql}"
            );
            let expected = common::query_result(&ddl, sql, columns, shards);
            assert!(expected.len() > 20, "{sql}: {} rows", expected.len());
            assert_eq!(
                common::apply_changelog(&batches, columns),
                expected,
                "{sql} at {shards} shards"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rankings built wrong fail before running, naming what is missing.
#[test]
fn rankings_built_wrong_are_refused_with_a_message() {
    let without_time = || Pipeline::new("wrong").source(source(&input()));
    let error = |job: Job| job.start(RunOptions::default()).unwrap_err().to_string();
    let cases = [
        (
            without_time()
                .key_by(["k"])
                .deduplicate(Deduplicate::keep_first())
                .sink(CollectSink::new()),
            "needs an event-time column",
        ),
        (
            without_time()
                .key_by(["k"])
                .over(OverFrame::Rows(None), [count_all().alias("c")])
                .sink(CollectSink::new()),
            "an OVER aggregation needs an event-time column",
        ),
        (
            without_time()
                .top_n(TopN::new(2, []))
                .sink(CollectSink::new()),
            "at least one order key",
        ),
        (
            without_time()
                .key_by(["k"])
                .top_n(TopN::new(0, [OrderKey::asc("v")]))
                .sink(CollectSink::new()),
            "keeps at least one row",
        ),
        (
            without_time()
                .key_by(["nope"])
                .top_n(TopN::new(1, [OrderKey::asc("v")]))
                .sink(CollectSink::new()),
            "'nope'",
        ),
        (
            without_time()
                .watermark("ts", Duration::ZERO)
                .key_by(["k"])
                .window(Window::tumble(Duration::from_secs(1)))
                .deduplicate(Deduplicate::keep_last().by_arrival())
                .sink(CollectSink::new()),
            "by event time, not by arrival",
        ),
        (
            without_time()
                .key_by(["k"])
                .top_n(TopN::new(1, [OrderKey::asc("v")]).rank_column("v"))
                .sink(CollectSink::new()),
            "the rank column 'v' is already a column",
        ),
        (
            without_time()
                .watermark("ts", Duration::ZERO)
                .key_by(["k"])
                .over(OverFrame::Range(Some(-5)), [count_all().alias("c")])
                .sink(CollectSink::new()),
            "cannot reach forward",
        ),
    ];
    for (job, expected) in cases {
        let message = error(job);
        assert!(message.contains(expected), "{message}");
    }
}
