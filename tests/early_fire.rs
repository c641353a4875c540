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

/// The changelog of `sql` (after `ddl`) at `shards`: each row's kind and its `n` column.
fn changelog(
    ddl: &str,
    sql: &str,
    shards: usize,
) -> Vec<(weir::engine::changelog::RowKind, Option<i64>)> {
    use weir::engine::changelog::{kind_at, row_kinds};
    let sink = weir::prelude::CollectSink::new();
    let mut session = weir::sql::Session::new();
    let actions = session
        .execute(&format!("{ddl}\n{sql}"), &|_| {
            std::sync::Arc::new(sink.clone())
        })
        .unwrap();
    let [weir::sql::Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    weir::engine::runtime::run(
        &job.graph,
        weir::prelude::RunOptions::default().shards(shards),
    )
    .unwrap();
    sink.batches()
        .iter()
        .flat_map(|b| {
            let n = common::column_i64(b, "n");
            (0..b.num_rows())
                .map(|i| (kind_at(row_kinds(b), i), n[i]))
                .collect::<Vec<_>>()
        })
        .collect()
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
    let sql = format!(
        "{EARLY}SET 'table.exec.emit.early-fire.delay' = '0 s';\n{}",
        windows("tumble")
    );
    let counts: Vec<Option<i64>> = changelog(&ddl, &sql, 1)
        .into_iter()
        .filter(|(kind, _)| kind.is_accumulate())
        .map(|(_, n)| n)
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
    // Windows got rows in several batches (4 rows each): they reported before closing.
    let updates = changelog(&ddl, &early, 1)
        .iter()
        .filter(|(kind, _)| *kind == weir::engine::changelog::RowKind::UpdateBefore)
        .count();
    assert!(updates > 0, "early results were updated");
    let _ = std::fs::remove_dir_all(&dir);
}
