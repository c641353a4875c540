//! `SET 'table.exec.late-rows.table'`: the rows windows and OVER aggregations drop as late go
//! to a table, as (operator, watermark, row as JSON). Which rows are late depends on how the
//! watermarks of parallel subtasks interleave with rows, so at 2 and 4 shards the check is that
//! nothing is lost: every input row is aggregated or in the late table, once. At 1 shard the
//! late rows are exactly the ones behind the watermark.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::reference::events;
use common::Event;
use proptest::prelude::*;
use weir::engine::runtime;
use weir::prelude::*;
use weir::sql::{Action, Session};

/// Runs `query` over table `t` (`ddl`) with a late-rows table writing CSV files under `dir`;
/// returns the query's rows and the late table's lines.
fn run(ddl: &str, dir: &Path, query: &str, shards: usize) -> (Vec<Vec<Option<i64>>>, Vec<String>) {
    let late_dir = dir.join(format!("late-{shards}-{}", query.len()));
    let _ = std::fs::remove_dir_all(&late_dir);
    let sql = format!(
        "{ddl}
        CREATE TABLE late_rows (operator STRING, `watermark` TIMESTAMP(3), `row` STRING)
          WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
        SET 'table.exec.late-rows.table' = 'late_rows';
        {query}",
        late_dir.display()
    );
    let sink = CollectSink::new();
    let mut session = Session::new();
    let actions = session
        .execute(&sql, &|_| Arc::new(sink.clone()))
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let [Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    runtime::run(&job.graph, RunOptions::default().shards(shards)).expect("job runs");
    let mut late = Vec::new();
    for entry in std::fs::read_dir(&late_dir).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with('.') {
            late.extend(
                std::fs::read_to_string(entry.path())
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    (common::apply_changelog(&sink.batches(), &["id", "n"]), late)
}

/// The `id` of each late row (from its JSON).
fn late_ids(late: &[String]) -> Vec<i64> {
    let mut ids: Vec<i64> = late
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let row: serde_json::Value =
                serde_json::from_str(value["row"].as_str().unwrap()).unwrap();
            row["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort();
    ids
}

/// A table over `events` with no watermark delay, one row per batch: rows behind the newest
/// time are late.
fn table(dir: &Path, events: &[Event]) -> String {
    common::events_table(dir, events)
        .replace("ts - INTERVAL '1' SECOND", "ts")
        .replace("'scan.batch-size' = '4'", "'scan.batch-size' = '1'")
}

const WINDOW: &str = "SELECT MIN(id) AS id, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '0.05' SECOND)) GROUP BY window_start, window_end, k";
const OVER: &str = "SELECT id, COUNT(*) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS n FROM t";

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_row_is_aggregated_or_late_once(input in events(80, 120), case in 0usize..1_000_000) {
        let dir = std::env::temp_dir().join(format!("weir-late-{}-{case}", std::process::id()));
        let ddl = table(&dir, &input);
        for shards in [1, 2, 4] {
            let (rows, late) = run(&ddl, &dir, WINDOW, shards);
            let counted: i64 = rows.iter().map(|r| r[1].unwrap()).sum();
            prop_assert_eq!(counted + late.len() as i64, input.len() as i64, "window at {} shards", shards);
            prop_assert!(late.iter().all(|l| l.contains(r#""operator":"window""#)));
            let (rows, late) = run(&ddl, &dir, OVER, shards);
            let mut ids: Vec<i64> = rows.iter().map(|r| r[0].unwrap()).collect();
            ids.extend(late_ids(&late));
            ids.sort();
            prop_assert_eq!(ids, (0..input.len() as i64).collect::<Vec<_>>(), "OVER at {} shards", shards);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// At one shard, with one row per batch, a row is late exactly when it is behind a time read
/// before it (the watermark is the newest time): here rows 2 and 4.
#[test]
fn at_one_shard_the_rows_behind_the_watermark_are_the_late_ones() {
    let at = |ts| Event {
        key: 1,
        ts,
        v: Some(1),
    };
    let input = vec![at(1_000), at(1_200), at(1_100), at(1_300), at(1_250)];
    let dir = std::env::temp_dir().join(format!("weir-late-one-{}", std::process::id()));
    let ddl = table(&dir, &input);
    let (_, late) = run(&ddl, &dir, OVER, 1);
    assert_eq!(late_ids(&late), vec![2, 4]);
    assert!(
        late[0].contains(r#""watermark":"1970-01-01 00:00:01.2"#)
            || late[0].contains(r#""watermark":"1970-01-01 00:00:01.3"#),
        "{late:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
