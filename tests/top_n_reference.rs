//! Top-N and deduplication in SQL against a brute-force reference over random input with
//! out-of-order times, ties and NULLs, at 1, 2 and 4 shards: the rows the changelog ends with
//! (every `-U`/`-D` must retract a row present) equal, per partition, the first N rows of
//! a stable sort of the partition's rows by the order keys (arrival order breaks ties). Also
//! a Top-N over an updating result (a `GROUP BY`'s counts, ties broken by a key).

mod common;

use std::collections::BTreeMap;

use common::reference::events;
use common::Event;
use proptest::prelude::*;
use weir::prelude::*;

/// A result row: k, v, id and the rank (0 where the query does not select it).
type Row = Vec<Option<i64>>;

/// Runs `query` over the table and applies its changelog.
fn run(ddl: &str, query: &str, ranked: bool, shards: usize) -> Vec<Row> {
    let columns: &[&str] = if ranked {
        &["k", "v", "id", "rn"]
    } else {
        &["k", "v", "id"]
    };
    let mut rows = common::query_result(ddl, query, columns, shards);
    for row in &mut rows {
        row.resize(4, Some(0));
    }
    rows.sort();
    rows
}

/// Per key, the first `n` rows of `events` stably sorted by `order` (ties keep arrival
/// order, or the newest first with `newest_first_on_ties`), with their rank when `ranked`.
fn reference(
    events: &[Event],
    n: usize,
    order: impl Fn(&Event) -> (bool, i64),
    newest_first_on_ties: bool,
    ranked: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for key in 0..5 {
        let mut mine: Vec<(usize, &Event)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.key == key)
            .collect();
        if newest_first_on_ties {
            mine.reverse();
        }
        mine.sort_by_key(|(_, e)| order(e));
        for (rank, (id, e)) in mine.iter().take(n).enumerate() {
            let rank = if ranked { rank as i64 + 1 } else { 0 };
            rows.push(vec![Some(e.key), e.v, Some(*id as i64), Some(rank)]);
        }
    }
    rows.sort();
    rows
}

/// Top-N over an updating result: per k, the `n` (k, v) groups with the most rows (then the
/// smallest v, NULL first as Flink's ASC), with their rank when `ranked`: (k, v, count, rank).
fn top_groups(events: &[Event], n: usize, ranked: bool) -> Vec<Row> {
    let mut counts: BTreeMap<(i64, Option<i64>), i64> = BTreeMap::new();
    for e in events {
        *counts.entry((e.key, e.v)).or_default() += 1;
    }
    let mut rows = Vec::new();
    for key in 0..5 {
        let mut groups: Vec<(Option<i64>, i64)> = counts
            .iter()
            .filter(|((k, _), _)| *k == key)
            .map(|((_, v), c)| (*v, *c))
            .collect();
        groups.sort_by_key(|(v, c)| (-c, *v));
        for (rank, (v, c)) in groups.into_iter().take(n).enumerate() {
            let rank = if ranked { rank as i64 + 1 } else { 0 };
            rows.push(vec![Some(key), v, Some(c), Some(rank)]);
        }
    }
    rows.sort();
    rows
}

/// `v DESC` with NULLs last (Flink's default for DESC): the sort key of the reference.
fn v_desc(e: &Event) -> (bool, i64) {
    (e.v.is_none(), -e.v.unwrap_or(0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn top_n_and_deduplication_match_the_reference(
        input in events(120, 40),
        n in 1usize..4,
        case in 0usize..1_000_000,
    ) {
        let dir = std::env::temp_dir().join(format!("weir-topn-{}-{case}", std::process::id()));
        let ddl = common::events_table(&dir, &input);
        let top_n = format!(
            "SELECT k, v, id, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= {n}"
        );
        let last = "SELECT k, v, id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS r FROM t) WHERE r = 1";
        let first = "SELECT k, v, id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC) AS r FROM t) WHERE r = 1";
        let unranked = format!(
            "SELECT k, v, id FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= {n}"
        );
        let expected_top = reference(&input, n, v_desc, false, true);
        let expected_unranked = reference(&input, n, v_desc, false, false);
        let expected_last = reference(&input, 1, |e| (false, -e.ts), true, false);
        let expected_first = reference(&input, 1, |e| (false, e.ts), false, false);
        // Over an updating result (a GROUP BY's counts): ties broken by v, so one answer.
        let groups = "SELECT k, v, c FROM t GROUP BY k, v";
        let groups = format!("SELECT k, v, c AS id, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY c DESC, v ASC) AS rn FROM ({})) WHERE rn <= {n}", groups.replace("c FROM", "COUNT(*) AS c FROM"));
        let groups_unranked = groups.replace("c AS id, rn FROM", "c AS id FROM");
        let expected_groups = top_groups(&input, n, true);
        let expected_groups_unranked = top_groups(&input, n, false);
        // The same through the DSL.
        let dsl_top = |s: weir::Stream| s.key_by(["k"]).top_n(TopN::new(n, [OrderKey::desc("v")]).rank_column("rn"));
        let dsl_unranked = |s: weir::Stream| s.key_by(["k"]).top_n(TopN::new(n, [OrderKey::desc("v")]));
        let dsl_last = |s: weir::Stream| s.key_by(["k"]).deduplicate(Deduplicate::keep_last());
        let dsl_first = |s: weir::Stream| s.key_by(["k"]).deduplicate(Deduplicate::keep_first());
        let dsl_groups = |s: weir::Stream| {
            s.key_by(["k", "v"])
                .aggregate([count_all().alias("id")])
                .key_by(["k"])
                .top_n(TopN::new(n, [OrderKey::desc("id"), OrderKey::asc("v")]).rank_column("rn"))
        };
        let dsl_first_arrival = |s: weir::Stream| s.key_by(["k"]).deduplicate(Deduplicate::keep_first().by_arrival());
        let dsl_last_arrival = |s: weir::Stream| s.key_by(["k"]).deduplicate(Deduplicate::keep_last().by_arrival());
        let expected_first_arrival = reference(&input, 1, |_| (false, 0), false, false);
        let expected_last_arrival = reference(&input, 1, |_| (false, 0), true, false);
        // A global Top-N: the n rows with the highest v of all (the first of equals).
        let dsl_global = |s: weir::Stream| s.top_n(TopN::new(n, [OrderKey::desc("v")]).rank_column("rn"));
        let mut by_v: Vec<(usize, &Event)> = input.iter().enumerate().collect();
        by_v.sort_by_key(|(_, e)| v_desc(e));
        let mut expected_global: Vec<Row> = by_v
            .iter()
            .take(n)
            .enumerate()
            .map(|(rank, (id, e))| vec![Some(e.key), e.v, Some(*id as i64), Some(rank as i64 + 1)])
            .collect();
        expected_global.sort();
        const RANKED: [&str; 4] = ["k", "v", "id", "rn"];
        // (The reference's rank is 0 where the result has none.)
        let unranked_rows = |rows: Vec<Row>| -> Vec<Row> {
            let mut rows: Vec<Row> = rows.into_iter().map(|mut r| { r.push(Some(0)); r }).collect();
            rows.sort();
            rows
        };
        for shards in [1, 2, 4] {
            prop_assert_eq!(&common::dsl_result(&input, dsl_top, &RANKED, shards), &expected_top, "DSL top {} at {} shards", n, shards);
            prop_assert_eq!(&unranked_rows(common::dsl_result(&input, dsl_unranked, &RANKED[..3], shards)), &expected_unranked, "DSL top {} without rank at {} shards", n, shards);
            prop_assert_eq!(&unranked_rows(common::dsl_result(&input, dsl_last, &RANKED[..3], shards)), &expected_last, "DSL keep last at {} shards", shards);
            prop_assert_eq!(&unranked_rows(common::dsl_result(&input, dsl_first, &RANKED[..3], shards)), &expected_first, "DSL keep first at {} shards", shards);
            prop_assert_eq!(&common::dsl_result(&input, dsl_groups, &RANKED, shards), &expected_groups, "DSL top {} groups at {} shards", n, shards);
            prop_assert_eq!(&unranked_rows(common::dsl_result(&input, dsl_first_arrival, &RANKED[..3], shards)), &expected_first_arrival, "DSL first by arrival at {} shards", shards);
            prop_assert_eq!(&unranked_rows(common::dsl_result(&input, dsl_last_arrival, &RANKED[..3], shards)), &expected_last_arrival, "DSL last by arrival at {} shards", shards);
            prop_assert_eq!(&common::dsl_result(&input, dsl_global, &RANKED, shards), &expected_global, "DSL global top {} at {} shards", n, shards);
            prop_assert_eq!(&run(&ddl, &groups, true, shards), &expected_groups, "top {} groups at {} shards", n, shards);
            prop_assert_eq!(&run(&ddl, &groups_unranked, false, shards), &expected_groups_unranked, "top {} groups without rn at {} shards", n, shards);
            prop_assert_eq!(&run(&ddl, &top_n, true, shards), &expected_top, "top {} at {} shards", n, shards);
            prop_assert_eq!(&run(&ddl, &unranked, false, shards), &expected_unranked, "top {} without rn at {} shards", n, shards);
            prop_assert_eq!(&run(&ddl, last, false, shards), &expected_last, "keep last at {} shards", shards);
            prop_assert_eq!(&run(&ddl, first, false, shards), &expected_first, "keep first at {} shards", shards);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The comparison can fail: breaking ties the other way, or ranking from 0, gives other rows.
#[test]
fn a_wrong_tie_order_fails_the_comparison() {
    let at = |key, ts, v| Event {
        key,
        ts,
        v: Some(v),
    };
    let input = vec![at(1, 1_000, 5), at(1, 1_001, 5), at(1, 1_002, 3)];
    let dir = std::env::temp_dir().join(format!("weir-topn-ties-{}", std::process::id()));
    let ddl = common::events_table(&dir, &input);
    let query = "SELECT k, v, id, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 1";
    let got = run(&ddl, query, true, 2);
    assert_eq!(got, reference(&input, 1, v_desc, false, true));
    assert_ne!(
        got,
        reference(&input, 1, v_desc, true, true),
        "the first of equal rows stays"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
