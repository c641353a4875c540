//! Early results of window aggregations (`table.exec.emit.early-fire.*`) over random input
//! with out-of-order times and NULLs, at 1, 2 and 4 shards: the rows the changelog ends with
//! (every `-U` retracting a row present) are the windows' final results without early firing,
//! and with a delay of 0 a window that got rows in several batches reports before it closes.

mod common;

use common::query_result;
use common::reference::events;
use proptest::prelude::*;

const EARLY: &str = "SET 'table.exec.emit.early-fire.enabled' = 'true';\n";

fn windows(kind: &str) -> String {
    let tvf = match kind {
        "tumble" => "TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '0.1' SECOND)",
        _ => "HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '0.05' SECOND, INTERVAL '0.15' SECOND)",
    };
    format!(
        "SELECT k, CAST(window_start AS BIGINT) AS ws, COUNT(*) AS n, SUM(v) AS s, MAX(v) AS m
         FROM TABLE({tvf}) GROUP BY window_start, window_end, k"
    )
}

const COLUMNS: [&str; 5] = ["k", "ws", "n", "s", "m"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn early_results_end_as_the_final_ones(
        input in events(120, 40),
        hop in any::<bool>(),
        case in 0usize..1_000_000,
    ) {
        let dir = std::env::temp_dir().join(format!("weir-early-{}-{case}", std::process::id()));
        let ddl = common::events_table(&dir, &input);
        let query = windows(if hop { "hop" } else { "tumble" });
        let expected = query_result(&ddl, &query, &COLUMNS, 1);
        for delay in ["0 s", "1 ms"] {
            let early = format!("{EARLY}SET 'table.exec.emit.early-fire.delay' = '{delay}';\n{query}");
            for shards in [1, 2, 4] {
                prop_assert_eq!(
                    &query_result(&ddl, &early, &COLUMNS, shards),
                    &expected,
                    "delay {} at {} shards", delay, shards
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// With a delay of 0 a window reports after every batch: the count of a key whose rows come
/// in separate batches goes 1, 2, 3 before the window closes.
#[test]
fn a_window_reports_before_it_closes() {
    let at = |ts| common::Event {
        key: 1,
        ts,
        v: Some(1),
    };
    // Four rows per batch: the first window (1000-1100 ms) gets rows in two batches.
    let input: Vec<_> = (0..8).map(|i| at(1_000 + i * 10)).collect();
    let dir = std::env::temp_dir().join(format!("weir-early-one-{}", std::process::id()));
    let ddl = common::events_table(&dir, &input);
    let sink = weir::prelude::CollectSink::new();
    let mut session = weir::sql::Session::new();
    let sql = format!(
        "{ddl}\n{EARLY}SET 'table.exec.emit.early-fire.delay' = '0 s';\n{}",
        windows("tumble")
    );
    let actions = session
        .execute(&sql, &|_| std::sync::Arc::new(sink.clone()))
        .unwrap();
    let [weir::sql::Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    weir::engine::runtime::run(&job.graph, weir::prelude::RunOptions::default().shards(1)).unwrap();
    let counts: Vec<Option<i64>> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            let kinds = weir::engine::changelog::row_kinds(b).cloned();
            let n = common::column_i64(b, "n");
            (0..b.num_rows())
                .filter(move |&i| {
                    weir::engine::changelog::kind_at(kinds.as_ref(), i).is_accumulate()
                })
                .map(move |i| n[i])
        })
        .collect();
    assert_eq!(
        counts,
        vec![Some(4), Some(8)],
        "a partial count, then the final one"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A window without group keys (one result per window) reports early too.
#[test]
fn a_global_window_ends_as_without_early_results() {
    let at = |key, ts| common::Event {
        key,
        ts,
        v: Some(key),
    };
    let input: Vec<_> = (0..40).map(|i| at(i % 3, 1_000 + i * 7)).collect();
    let dir = std::env::temp_dir().join(format!("weir-early-global-{}", std::process::id()));
    let ddl = common::events_table(&dir, &input);
    let query = "SELECT CAST(window_start AS BIGINT) AS ws, COUNT(*) AS n, SUM(v) AS s
        FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '0.1' SECOND)) GROUP BY window_start, window_end";
    let expected = query_result(&ddl, query, &["ws", "n", "s"], 1);
    let early = format!("{EARLY}SET 'table.exec.emit.early-fire.delay' = '0 s';\n{query}");
    for shards in [1, 2] {
        assert_eq!(
            query_result(&ddl, &early, &["ws", "n", "s"], shards),
            expected
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
