//! State larger than its memory budget: every stateful operator over many keys gives the
//! same result with a budget far below its state (most entries evicted to RocksDB and read
//! back) as with unlimited memory, at 1, 2 and 4 shards, with and without checkpoints; and at
//! the issue's sizes (a window and an updating aggregation over 5M keys, a regular join of 2M
//! keys per side) at 64 MiB.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use weir::engine::checkpoint::CheckpointConfig;
use weir::engine::metrics::names;
use weir::prelude::*;

const KEYS: i64 = 20_000;

/// Rows `k, v` over `KEYS` keys, each key several times, in batches of 1000.
fn input() -> MemorySource {
    let rows: Vec<(i64, i64)> = (0..4 * KEYS)
        .map(|i| ((i * 7_919) % KEYS, i % 1_000))
        .collect();
    source("", &rows)
}

/// A memory source of `rows` as columns `{prefix}k`, `{prefix}v`, 1000 rows per batch.
fn source(prefix: &str, rows: &[(i64, i64)]) -> MemorySource {
    let schema = Arc::new(Schema::new(vec![
        Field::new(format!("{prefix}k"), DataType::Int64, false),
        Field::new(format!("{prefix}v"), DataType::Int64, false),
    ]));
    let batches = rows
        .chunks(1_000)
        .map(|chunk| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1))),
                ],
            )
            .unwrap()
        })
        .collect();
    MemorySource::new(schema, vec![batches]).unwrap()
}

/// The final (k -> count, sum, max) of the aggregation, and how many entries were evicted.
fn run(options: RunOptions) -> (BTreeMap<i64, Vec<Option<i64>>>, u64) {
    let sink = CollectSink::new();
    let evicted = run_into(options, &sink);
    (groups(&sink), evicted)
}

/// The groups the changelog in `sink` ends with.
fn groups(sink: &CollectSink) -> BTreeMap<i64, Vec<Option<i64>>> {
    let rows = common::apply_changelog(&sink.batches(), &["k", "c", "s", "mx"]);
    rows.into_iter()
        .map(|row| (row[0].unwrap(), row[1..].to_vec()))
        .collect()
}

/// Runs the aggregation into `sink`; returns how many entries were evicted.
fn run_into(options: RunOptions, sink: &CollectSink) -> u64 {
    let result = Pipeline::new("budget")
        .source(input())
        .key_by(["k"])
        .aggregate([
            count_all().alias("c"),
            sum(col("v")).alias("s"),
            max(col("v")).alias("mx"),
        ])
        .sink(sink.clone())
        .run(options)
        .expect("job runs");
    result.metrics.total(names::STATE_ENTRIES_EVICTED)
}

#[test]
fn an_updating_aggregation_over_its_budget_matches_unlimited_memory() {
    let (expected, evicted) = run(RunOptions::default().shards(2));
    assert_eq!(expected.len(), KEYS as usize);
    assert_eq!(evicted, 0, "unlimited memory evicts nothing");
    for shards in [1, 2, 4] {
        // About 200 bytes per group: 1 MiB holds a quarter of them.
        let options = RunOptions::default()
            .shards(shards)
            .state_memory_budget(1 << 20);
        let (got, evicted) = run(options);
        assert!(
            evicted > KEYS as u64,
            "{shards} shards: {evicted} evictions"
        );
        assert!(got == expected, "{shards} shards: results differ");
    }
}

#[test]
fn spilled_state_is_checkpointed_and_restored_at_another_shard_count() {
    let (expected, _) = run(RunOptions::default().shards(2));
    let dir = std::env::temp_dir().join(format!("weir-budget-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A first run at 2 shards ends with a final checkpoint of its (mostly spilled) state; a
    // second run resumes from it at 3 shards and reads the input again (a memory source has
    // no positions to restore): every group counts its rows twice, and the two runs'
    // changelogs together end with those groups.
    let options = |shards| {
        RunOptions::default()
            .shards(shards)
            .state_memory_budget(1 << 20)
            .checkpoint(CheckpointConfig::new(&dir))
    };
    let sink = CollectSink::new();
    run_into(options(2), &sink);
    let evicted = run_into(options(3), &sink);
    assert!(evicted > 0);
    let got = groups(&sink);
    let doubled: BTreeMap<i64, Vec<Option<i64>>> = expected
        .iter()
        .map(|(k, v)| (*k, vec![v[0].map(|c| 2 * c), v[1].map(|s| 2 * s), v[2]]))
        .collect();
    assert!(got == doubled, "resumed results differ");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pairs of a regular join of `left` (k, v) and `right` (rk, rv) rows, sorted, and how
/// many state entries were evicted.
fn join(options: RunOptions) -> (Vec<Vec<Option<i64>>>, u64) {
    // Two left rows and one right row per key, keys in a scattered order.
    let left: Vec<(i64, i64)> = (0..2 * KEYS).map(|i| ((i * 7_919) % KEYS, i)).collect();
    let right: Vec<(i64, i64)> = (0..KEYS).map(|i| ((i * 104_729) % KEYS, -i)).collect();
    let pipeline = Pipeline::new("budget-join");
    let left = pipeline.source(source("", &left)).key_by(["k"]);
    let right = pipeline.source(source("r", &right)).key_by(["rk"]);
    let sink = CollectSink::new();
    let result = left
        .join(&right)
        .regular()
        .sink(sink.clone())
        .run(options)
        .expect("job runs");
    let rows = common::apply_changelog(&sink.batches(), &["k", "v", "rk", "rv"]);
    (rows, result.metrics.total(names::STATE_ENTRIES_EVICTED))
}

#[test]
fn a_regular_join_over_its_budget_matches_unlimited_memory() {
    let (expected, _) = join(RunOptions::default().shards(2));
    assert_eq!(expected.len(), 2 * KEYS as usize);
    for shards in [1, 2, 4] {
        let options = RunOptions::default()
            .shards(shards)
            .state_memory_budget(1 << 20);
        let (got, evicted) = join(options);
        assert!(
            evicted > KEYS as u64 / 2,
            "{shards} shards: {evicted} evictions"
        );
        assert!(got == expected, "{shards} shards: results differ");
    }
}

/// A regular join of `keys` keys per side (one row per key and side, keys in a scattered
/// order): how many rows it emits, an order-independent digest of them (a sum of row hashes)
/// and how many state entries were evicted.
fn large_join(keys: i64, options: RunOptions) -> (usize, u64, u64) {
    let left: Vec<(i64, i64)> = (0..keys).map(|i| ((i * 7_919) % keys, i)).collect();
    let right: Vec<(i64, i64)> = (0..keys).map(|i| ((i * 104_729) % keys, -i)).collect();
    let pipeline = Pipeline::new("budget-join-large");
    let left = pipeline.source(source("", &left)).key_by(["k"]);
    let right = pipeline.source(source("r", &right)).key_by(["rk"]);
    digest_run(
        left.join(&right).regular(),
        &["k", "v", "rk", "rv"],
        options,
    )
}

/// Runs the job ending in `stream`: how many rows its changelog ends with, an
/// order-independent digest of them over `columns` (BIGINT; a sum of row hashes, retracted
/// rows subtracted) and how many state entries were evicted.
fn digest_run(stream: Stream, columns: &[&str], options: RunOptions) -> (usize, u64, u64) {
    use weir::engine::changelog::{kind_at, row_kinds};
    let sink = CollectSink::new();
    let result = stream.sink(sink.clone()).run(options).expect("job runs");
    let (mut rows, mut digest) = (0i64, 0u64);
    for batch in sink.batches() {
        let values: Vec<Vec<Option<i64>>> = (columns.iter())
            .map(|c| common::column_i64(&batch, c))
            .collect();
        for i in 0..batch.num_rows() {
            let mut hash = 0xcbf2_9ce4_8422_2325u64;
            for column in &values {
                let value = column[i].map_or(u64::MAX, |v| v as u64);
                hash = (hash ^ value).wrapping_mul(0x100_0000_01b3);
            }
            match kind_at(row_kinds(&batch), i).is_accumulate() {
                true => (rows, digest) = (rows + 1, digest.wrapping_add(hash)),
                false => (rows, digest) = (rows - 1, digest.wrapping_sub(hash)),
            }
        }
    }
    let evicted = result.metrics.total(names::STATE_ENTRIES_EVICTED);
    (rows as usize, digest, evicted)
}

/// Rows `k, v, ts` over `keys` keys, each key twice (in two scattered orders), all in the
/// first ten minutes, 1000 rows per batch, `ts` the event time.
fn two_rows_per_key(pipeline: &Pipeline, keys: i64) -> Stream {
    let rows: Vec<(i64, i64, i64)> = (0..2 * keys)
        .map(|i| {
            let key = match i < keys {
                true => (i * 7_919) % keys,
                false => (i * 104_729) % keys,
            };
            (key, i % 1_000, i / (2 * keys / 600_000).max(1))
        })
        .collect();
    timed_source(pipeline, "", &rows)
}

/// The issue's sizes: 5M distinct keys (two rows each).
const MANY_KEYS: i64 = 5_000_000;

/// Runs `job` with unlimited memory and at a 64 MiB budget (2 shards), and asserts that both
/// end with one row per key and the same rows, and that the budget evicts.
fn assert_many_keys_match_at_64_mib(job: &dyn Fn(RunOptions) -> (usize, u64, u64)) {
    let (rows, digest, _) = job(RunOptions::default().shards(2));
    assert_eq!(rows, MANY_KEYS as usize, "one result per key");
    let budget = RunOptions::default()
        .shards(2)
        .state_memory_budget(64 << 20);
    let (got_rows, got_digest, evicted) = job(budget);
    assert!(evicted > 0, "nothing evicted");
    assert_eq!((got_rows, got_digest), (rows, digest), "results differ");
}

#[test]
fn a_window_over_5m_keys_at_64_mib_matches_unlimited_memory() {
    assert_many_keys_match_at_64_mib(&|options| {
        let pipeline = Pipeline::new("budget-window-5m");
        let windowed = two_rows_per_key(&pipeline, MANY_KEYS)
            .key_by(["k"])
            .window(Window::tumble(std::time::Duration::from_secs(3_600)))
            .aggregate([count_all().alias("c"), sum(col("v")).alias("s")]);
        digest_run(windowed, &["k", "c", "s"], options)
    });
}

#[test]
fn an_updating_aggregation_over_5m_keys_at_64_mib_matches_unlimited_memory() {
    assert_many_keys_match_at_64_mib(&|options| {
        let pipeline = Pipeline::new("budget-updating-5m");
        let aggregated = two_rows_per_key(&pipeline, MANY_KEYS)
            .key_by(["k"])
            .aggregate([count_all().alias("c"), sum(col("v")).alias("s")]);
        digest_run(aggregated, &["k", "c", "s"], options)
    });
}

/// The issue's size: 2M keys per side at a 64 MiB budget (4M entries, several times the
/// budget; more entries are evicted than there are keys) give the rows unlimited memory gives.
#[test]
fn a_regular_join_of_2m_keys_per_side_at_64_mib_matches_unlimited_memory() {
    const KEYS: i64 = 2_000_000;
    let (rows, digest, _) = large_join(KEYS, RunOptions::default().shards(2));
    assert_eq!(rows, KEYS as usize, "one pair per key");
    let budget = RunOptions::default()
        .shards(2)
        .state_memory_budget(64 << 20);
    let (got_rows, got_digest, evicted) = large_join(KEYS, budget);
    assert!(evicted > KEYS as u64, "{evicted} evictions");
    assert_eq!((got_rows, got_digest), (rows, digest), "the pairs differ");
}

/// A memory source of `rows` `(k, v, ts ms)` as columns `{prefix}k`, `{prefix}v`,
/// `{prefix}ts`, 1000 rows per batch, with `ts` as its event time (300 ms of disorder).
fn timed_source(pipeline: &Pipeline, prefix: &str, rows: &[(i64, i64, i64)]) -> Stream {
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::TimeUnit;
    let time = format!("{prefix}ts");
    let schema = Arc::new(Schema::new(vec![
        Field::new(format!("{prefix}k"), DataType::Int64, false),
        Field::new(format!("{prefix}v"), DataType::Int64, false),
        Field::new(
            &time,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batches = rows
        .chunks(1_000)
        .map(|chunk| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.0))),
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.1))),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        chunk.iter().map(|r| r.2),
                    )),
                ],
            )
            .unwrap()
        })
        .collect();
    pipeline
        .source(MemorySource::new(schema, vec![batches]).unwrap())
        .watermark(time, std::time::Duration::from_millis(300))
}

/// The rows of a full outer interval join (`right.ts` within 2 s of `left.ts`) of two left
/// rows and one right row per key over `KEYS` keys, 10 and 5 rows per ms, up to 300 ms out of
/// order, sorted; and how many state entries were evicted.
fn interval_join(options: RunOptions) -> (Vec<Vec<Option<i64>>>, u64) {
    let left: Vec<(i64, i64, i64)> = (0..2 * KEYS)
        .map(|i| ((i * 7_919) % KEYS, i, i / 10 - (i * 31) % 300))
        .collect();
    let right: Vec<(i64, i64, i64)> = (0..KEYS)
        .map(|i| ((i * 104_729) % KEYS, -i, i / 5 - (i * 17) % 300))
        .collect();
    let pipeline = Pipeline::new("budget-interval-join");
    let left = timed_source(&pipeline, "", &left).key_by(["k"]);
    let right = timed_source(&pipeline, "r", &right).key_by(["rk"]);
    let joined = (left.join(&right).kind(JoinType::Full)).between(-2_000, 2_000);
    sorted_rows(joined, &["k", "v", "rk", "rv"], options)
}

/// Runs the job ending in `stream` with `options`: the rows its changelog ends with (columns
/// `columns`), sorted, and how many state entries were evicted.
fn sorted_rows(
    stream: Stream,
    columns: &[&str],
    options: RunOptions,
) -> (Vec<Vec<Option<i64>>>, u64) {
    let sink = CollectSink::new();
    let result = stream.sink(sink.clone()).run(options).expect("job runs");
    let mut rows = common::apply_changelog(&sink.batches(), columns);
    rows.sort();
    (rows, result.metrics.total(names::STATE_ENTRIES_EVICTED))
}

#[test]
fn an_interval_join_over_its_budget_matches_unlimited_memory() {
    let (expected, _) = interval_join(RunOptions::default().shards(2));
    let padded = expected.iter().filter(|r| r.contains(&None)).count();
    assert!(
        padded > 0 && padded < expected.len() / 2,
        "{padded} of {} rows padded",
        expected.len()
    );
    assert_over_budget_matches("interval join", &expected, &interval_join);
}

/// Runs `job` at a 1 MiB budget at 1, 2 and 4 shards, with and without checkpoints every
/// 5 ms, and asserts that each run evicts state and ends with `expected` rows (what the job
/// gave with unlimited memory).
fn assert_over_budget_matches(name: &str, expected: &[Vec<Option<i64>>], job: &BudgetJob<'_>) {
    let dir = std::env::temp_dir().join(format!(
        "weir-budget-{}-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        std::process::id()
    ));
    for shards in [1, 2, 4] {
        for checkpoints in [false, true] {
            let _ = std::fs::remove_dir_all(&dir);
            let mut options = RunOptions::default()
                .shards(shards)
                .state_memory_budget(1 << 20);
            if checkpoints {
                let config =
                    CheckpointConfig::new(&dir).interval(std::time::Duration::from_millis(5));
                options = options.checkpoint(config);
            }
            let (got, evicted) = job(options);
            let case = format!("{name} at {shards} shards, checkpoints {checkpoints}");
            assert!(evicted > 0, "{case}: nothing evicted");
            if got != expected {
                let missing: Vec<_> = (expected.iter())
                    .filter(|r| !got.contains(r))
                    .take(3)
                    .collect();
                let extra: Vec<_> = (got.iter())
                    .filter(|r| !expected.contains(r))
                    .take(3)
                    .collect();
                panic!(
                    "{case}: {} rows, not {}; missing {missing:?}, extra {extra:?}",
                    got.len(),
                    expected.len()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rows of a LEFT event-time temporal join: two left rows per key of `KEYS` keys against
/// three versions per key (an append-only versioned table: every row a new version), both
/// up to 300 ms out of order, sorted; and how many state entries were evicted. No row is
/// behind the join's watermark (the sources' delay covers their disorder), so the versions
/// each left row sees do not depend on timing.
fn temporal_join(options: RunOptions) -> (Vec<Vec<Option<i64>>>, u64) {
    let left: Vec<(i64, i64, i64)> = (0..2 * KEYS)
        .map(|i| ((i * 7_919) % KEYS, i, i / 10 - (i * 31) % 300))
        .collect();
    let right: Vec<(i64, i64, i64)> = (0..3 * KEYS)
        .map(|i| ((i * 104_729) % KEYS, -i, i / 15 - (i * 17) % 300))
        .collect();
    let pipeline = Pipeline::new("budget-temporal-join");
    let left = timed_source(&pipeline, "", &left).key_by(["k"]);
    let right = timed_source(&pipeline, "r", &right).key_by(["rk"]);
    let joined = left.join(&right).kind(JoinType::Left).temporal();
    sorted_rows(joined, &["k", "v", "rk", "rv"], options)
}

#[test]
fn a_temporal_join_over_its_budget_matches_unlimited_memory() {
    let (expected, _) = temporal_join(RunOptions::default().shards(2));
    let padded = expected.iter().filter(|r| r.contains(&None)).count();
    assert!(
        expected.len() == 2 * KEYS as usize && padded > 0 && padded < expected.len() / 2,
        "{padded} of {} rows padded",
        expected.len()
    );
    assert_over_budget_matches("temporal join", &expected, &temporal_join);
}

/// A job's sorted result rows and how many state entries it evicted.
type BudgetJob<'a> = dyn Fn(RunOptions) -> (Vec<Vec<Option<i64>>>, u64) + 'a;

/// Every row of an OVER aggregation (sum and max of the last three rows of each key, by
/// event time) over four rows per key of `KEYS` keys, 10 per ms, up to 300 ms out of order,
/// sorted; and how many state entries were evicted.
fn over(options: RunOptions) -> (Vec<Vec<Option<i64>>>, u64) {
    let rows: Vec<(i64, i64, i64)> = (0..4 * KEYS)
        .map(|i| ((i * 7_919) % KEYS, i, i / 10 - (i * 31) % 300))
        .collect();
    let pipeline = Pipeline::new("budget-over");
    let over = timed_source(&pipeline, "", &rows).key_by(["k"]).over(
        OverFrame::Rows(Some(2)),
        [sum(col("v")).alias("s"), max(col("v")).alias("mx")],
    );
    sorted_rows(over, &["k", "v", "s", "mx"], options)
}

#[test]
fn an_over_aggregation_over_its_budget_matches_unlimited_memory() {
    let (expected, _) = over(RunOptions::default().shards(2));
    assert_eq!(expected.len(), 4 * KEYS as usize, "every row once");
    assert_over_budget_matches("over", &expected, &over);
}

/// The rows of a full outer window join of two 2 s tumbling-window aggregations over `KEYS`
/// keys (a key's count next to its sum; some keys only on one side), sorted; and how many
/// state entries were evicted.
fn window_join(options: RunOptions) -> (Vec<Vec<Option<i64>>>, u64) {
    let left: Vec<(i64, i64, i64)> = (0..4 * KEYS)
        .map(|i| ((i * 7_919) % KEYS, i, i / 10 - (i * 31) % 300))
        .collect();
    let right: Vec<(i64, i64, i64)> = (0..4 * KEYS)
        .map(|i| ((i * 104_729) % (KEYS + 500), i, i / 10 - (i * 17) % 300))
        .collect();
    let pipeline = Pipeline::new("budget-window-join");
    let window = Window::tumble(std::time::Duration::from_secs(2));
    let counts = timed_source(&pipeline, "", &left)
        .key_by(["k"])
        .window(window)
        .aggregate([count_all().alias("n")]);
    let sums = timed_source(&pipeline, "r", &right)
        .key_by(["rk"])
        .window(window)
        .aggregate([sum(col("rv")).alias("total")])
        .select([
            col("rk"),
            col("window_start").alias("start2"),
            col("window_end").alias("end2"),
            col("total"),
        ]);
    let joined = (counts.key_by(["k"]).join(&sums.key_by(["rk"])))
        .kind(JoinType::Full)
        .window(["window_start", "window_end"], ["start2", "end2"]);
    let columns = ["k", "window_start", "n", "rk", "start2", "total"];
    sorted_rows(joined, &columns, options)
}

#[test]
fn a_window_join_over_its_budget_matches_unlimited_memory() {
    let (expected, _) = window_join(RunOptions::default().shards(2));
    let padded = expected.iter().filter(|r| r.contains(&None)).count();
    assert!(
        padded > 0 && padded < expected.len() / 2,
        "{padded} of {} rows padded",
        expected.len()
    );
    assert_over_budget_matches("window join", &expected, &window_join);
}

/// Every window result of a tumbling, hopping or session window over `KEYS` keys (rows `k, v, ts`,
/// 10 per ms, up to 300 ms out of order), sorted, and how many state entries were evicted.
fn windows(window: Window, options: RunOptions) -> (Vec<Vec<Option<i64>>>, u64) {
    let rows: Vec<(i64, i64, i64)> = (0..4 * KEYS)
        .map(|i| ((i * 7_919) % KEYS, i % 1_000, i / 10 - (i * 31) % 300))
        .collect();
    let pipeline = Pipeline::new("budget-windows");
    let windowed = timed_source(&pipeline, "", &rows)
        .key_by(["k"])
        .window(window)
        .aggregate([
            count_all().alias("c"),
            sum(col("v")).alias("s"),
            max(col("v")).alias("mx"),
        ]);
    let columns = ["window_start", "window_end", "k", "c", "s", "mx"];
    sorted_rows(windowed, &columns, options)
}

#[test]
fn windows_over_their_budget_match_unlimited_memory() {
    use std::time::Duration;
    for window in [
        Window::tumble(Duration::from_secs(2)),
        Window::hop(Duration::from_secs(2), Duration::from_millis(500)),
        // A key's rows come 2 s apart, most within the gap of the one before, in any order.
        Window::session(Duration::from_millis(2_100)),
    ] {
        let (expected, evicted) = windows(window, RunOptions::default().shards(2));
        assert_eq!(evicted, 0, "unlimited memory evicts nothing");
        let name = format!("{window:?}");
        assert_over_budget_matches(&name, &expected, &|options| windows(window, options));
    }
}

/// The (keys, rows) a global window counts over the per-key results of a window over
/// `keys` keys (each once, a third twice more), everything in one 10 s window.
fn window_of_window_results(keys: i64, options: RunOptions) -> Vec<Vec<Option<i64>>> {
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::TimeUnit;
    use std::time::Duration;
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let rows: Vec<i64> = (0..keys + 2 * (keys / 3)).collect();
    let batches = rows
        .chunks(4_096)
        .map(|chunk| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        chunk.iter().map(|&i| (i * 7_919) % keys),
                    )),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        chunk.iter().map(|&i| i % 10_000),
                    )),
                ],
            )
            .unwrap()
        })
        .collect();
    let sink = CollectSink::new();
    Pipeline::new("parts")
        .source(MemorySource::new(schema, vec![batches]).unwrap())
        .watermark("ts", Duration::from_secs(10))
        .key_by(["k"])
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([count_all().alias("c")])
        .event_time("window_end")
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([count_all().alias("keys"), sum(col("c")).alias("rows")])
        .sink(sink.clone())
        .run(options)
        .expect("job runs");
    common::apply_changelog(&sink.batches(), &["keys", "rows"])
}

/// A window over more keys than one part of its result goes out in parts (the runtime calls
/// it again after each went downstream); the watermark that fired it follows the last part,
/// so a window over its results counts every key (a watermark forwarded early would make the
/// later parts late there).
#[test]
fn a_large_window_result_goes_out_in_parts_before_its_watermark() {
    let keys = 300_000;
    for (shards, budget) in [(1, usize::MAX), (2, 4 << 20)] {
        let options = RunOptions::default()
            .shards(shards)
            .state_memory_budget(budget);
        let got = window_of_window_results(keys, options);
        let expected = vec![vec![Some(keys), Some(keys + 2 * (keys / 3))]];
        assert_eq!(got, expected, "{shards} shards");
    }
}
