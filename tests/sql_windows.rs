//! SQL window TVFs give the same rows as the DSL and as the brute-force reference of
//! `windows_reference.rs`, for every window kind, over random out-of-order input (read from a
//! JSON file by SQL, from in-memory splits by the DSL), at 1, 2 and 4 shards. The watermark
//! delay covers the disorder, so no row is late and the result is the batch grouping.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::reference::{events, reference, rows_of, run_weir, split_into, time_window, Row};
use common::Event;
use proptest::prelude::*;
use weir::engine::runtime;
use weir::prelude::*;
use weir::sql::{Action, Session};

/// `ms` since the epoch as Flink's timestamp text.
fn timestamp(ms: i64) -> String {
    let (s, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    format!(
        "1970-01-01 {:02}:{:02}:{:02}.{ms:03}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn write_events(dir: &Path, events: &[Event]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::File::create(dir.join("events.json")).unwrap();
    for e in events {
        let v = e.v.map_or("null".to_string(), |v| v.to_string());
        writeln!(
            file,
            r#"{{"k": {}, "ts": "{}", "v": {v}}}"#,
            e.key,
            timestamp(e.ts)
        )
        .unwrap();
    }
}

fn tvf(spec: Window) -> String {
    let ms = |n: i64| format!("INTERVAL '{n}' MILLISECOND");
    match spec {
        Window::Tumble { size_ms } => {
            format!("TUMBLE(TABLE events, DESCRIPTOR(ts), {})", ms(size_ms))
        }
        Window::Hop { size_ms, slide_ms } => format!(
            "HOP(TABLE events, DESCRIPTOR(ts), {}, {})",
            ms(slide_ms),
            ms(size_ms)
        ),
        Window::Cumulate { step_ms, size_ms } => format!(
            "CUMULATE(TABLE events, DESCRIPTOR(ts), {}, {})",
            ms(step_ms),
            ms(size_ms)
        ),
        Window::Session { gap_ms } => format!(
            "SESSION(TABLE events PARTITION BY k, DESCRIPTOR(ts), {})",
            ms(gap_ms)
        ),
        Window::Count { .. } => unreachable!("no count windows in SQL"),
    }
}

fn run_sql(spec: Window, dir: &Path, delay: i64, shards: usize) -> Vec<Row> {
    let sql = format!(
        "CREATE TABLE events (k BIGINT NOT NULL, ts TIMESTAMP(3) NOT NULL, v BIGINT,
           WATERMARK FOR ts AS ts - INTERVAL '{delay}' MILLISECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         SELECT window_start, window_end, k, COUNT(*) AS c, COUNT(v) AS cv, SUM(v) AS s,
                MIN(v) AS mn, MAX(v) AS mx, COUNT(DISTINCT v) AS d
         FROM TABLE({})
         GROUP BY window_start, window_end, k",
        dir.display(),
        tvf(spec)
    );
    let sink = CollectSink::new();
    let mut session = Session::new();
    let actions = session
        .execute(&sql, &|_| Arc::new(sink.clone()))
        .expect("SQL plans");
    let [Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    runtime::run(&job.graph, RunOptions::default().shards(shards)).expect("job runs");
    rows_of(&sink)
}

static CASE: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sql_windows_match_dsl_and_reference(
        spec in time_window(),
        input in events(300, 100),
        splits in 1usize..4,
        sizes in prop::collection::vec(1usize..50, 1..4),
    ) {
        let split_batches = split_into(&input, splits, &sizes);
        let (expected, late) = reference(spec, std::slice::from_ref(&input), 100);
        prop_assert!(late.is_empty());
        let dir = std::env::temp_dir().join(format!(
            "weir-sql-windows-{}-{}",
            std::process::id(),
            CASE.fetch_add(1, Ordering::Relaxed)
        ));
        write_events(&dir, &input);
        for shards in [1, 2, 4] {
            let sql = run_sql(spec, &dir, 100, shards);
            let (dsl, _, _, _) = run_weir(spec, &split_batches, 100, shards, false);
            prop_assert_eq!(&sql, &expected, "SQL vs reference, {:?} at {} shards", spec, shards);
            prop_assert_eq!(&dsl, &expected, "DSL vs reference, {:?} at {} shards", spec, shards);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
