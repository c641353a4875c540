//! Aggregations over updating results (retractions) in SQL against a brute-force reference
//! over random input with out-of-order times and NULLs, at 1, 2 and 4 shards: the rows the
//! changelog ends with (every `-U`/`-D` must retract a row present) equal the aggregates of
//! the inner query's final rows.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::reference::events;
use common::{query_result, Event};
use proptest::prelude::*;

type Row = Vec<Option<i64>>;

/// `SELECT n, COUNT(*) FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) GROUP BY n`.
fn histogram(events: &[Event]) -> Vec<Row> {
    let mut per_key: BTreeMap<i64, i64> = BTreeMap::new();
    for e in events {
        *per_key.entry(e.key).or_default() += 1;
    }
    let mut per_count: BTreeMap<i64, i64> = BTreeMap::new();
    for n in per_key.values() {
        *per_count.entry(*n).or_default() += 1;
    }
    per_count
        .into_iter()
        .map(|(n, c)| vec![Some(n), Some(c)])
        .collect()
}

/// COUNT(*), SUM, MIN, MAX and COUNT(DISTINCT ..) of `values` (SQL's NULL rules).
fn aggregates(values: &[Option<i64>]) -> Row {
    let present: Vec<i64> = values.iter().flatten().copied().collect();
    let distinct: BTreeSet<i64> = present.iter().copied().collect();
    vec![
        Some(values.len() as i64),
        (!present.is_empty()).then(|| present.iter().sum()),
        present.iter().min().copied(),
        present.iter().max().copied(),
        Some(distinct.len() as i64),
    ]
}

/// Per key, the aggregates of the values of its top 3 rows by `v DESC` (NULLs last).
fn over_top_3(events: &[Event]) -> Vec<Row> {
    let mut per_key: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
    for e in events {
        per_key.entry(e.key).or_default().push(e.v);
    }
    per_key
        .into_iter()
        .map(|(k, mut values)| {
            values.sort_by_key(|v| (v.is_none(), -v.unwrap_or(0)));
            values.truncate(3);
            let mut row = vec![Some(k)];
            row.extend(aggregates(&values));
            row
        })
        .collect()
}

/// The aggregates of the per-key sums (one row, none without input).
fn over_sums(events: &[Event]) -> Vec<Row> {
    let mut sums: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    for e in events {
        let sum = sums.entry(e.key).or_default();
        if let Some(v) = e.v {
            *sum = Some(sum.unwrap_or(0) + v);
        }
    }
    match sums.is_empty() {
        true => Vec::new(),
        false => vec![aggregates(&sums.into_values().collect::<Vec<_>>())],
    }
}

const HISTOGRAM: &str =
    "SELECT n, COUNT(*) AS c FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) GROUP BY n";
const OVER_TOP_3: &str = "SELECT k, COUNT(*) AS c, SUM(v) AS s, MIN(v) AS lo, MAX(v) AS hi, COUNT(DISTINCT v) AS d
    FROM (SELECT k, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 3)
    GROUP BY k";
const OVER_SUMS: &str =
    "SELECT COUNT(*) AS c, SUM(s) AS s, MIN(s) AS lo, MAX(s) AS hi, COUNT(DISTINCT s) AS d
    FROM (SELECT k, SUM(v) AS s FROM t GROUP BY k)";

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_over_updating_results_match_the_reference(
        input in events(120, 40),
        case in 0usize..1_000_000,
    ) {
        let dir = std::env::temp_dir().join(format!("weir-retract-{}-{case}", std::process::id()));
        let ddl = common::events_table(&dir, &input);
        for shards in [1, 2, 4] {
            prop_assert_eq!(query_result(&ddl, HISTOGRAM, &["n", "c"], shards), histogram(&input), "histogram at {} shards", shards);
            prop_assert_eq!(
                query_result(&ddl, OVER_TOP_3, &["k", "c", "s", "lo", "hi", "d"], shards),
                over_top_3(&input),
                "aggregates of a Top-N at {} shards", shards
            );
            prop_assert_eq!(
                query_result(&ddl, OVER_SUMS, &["c", "s", "lo", "hi", "d"], shards),
                over_sums(&input),
                "aggregates of sums at {} shards", shards
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The comparison can fail: with the largest value taken out of a Top-N, the reference's
/// MAX differs from the engine's.
#[test]
fn a_wrong_reference_fails_the_comparison() {
    let at = |key, ts, v| Event {
        key,
        ts,
        v: Some(v),
    };
    // Key 1's top 3 end as 9, 8, 7: 2 and 5 entered it first and were pushed out (-D).
    let input = vec![
        at(1, 1_000, 2),
        at(1, 1_001, 5),
        at(1, 1_002, 9),
        at(1, 1_003, 8),
        at(1, 1_004, 7),
    ];
    let dir = std::env::temp_dir().join(format!("weir-retract-wrong-{}", std::process::id()));
    let ddl = common::events_table(&dir, &input);
    let got = query_result(&ddl, OVER_TOP_3, &["k", "c", "s", "lo", "hi", "d"], 2);
    assert_eq!(
        got,
        vec![vec![Some(1), Some(3), Some(24), Some(7), Some(9), Some(3)]]
    );
    assert_ne!(
        got,
        over_top_3(&input[..3]),
        "the rows pushed out are retracted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
