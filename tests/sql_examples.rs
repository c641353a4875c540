//! Every SQL job in `examples/sql/` runs with the real `weir` binary as a user would run it
//! (with fewer generated events), exits 0 and produces its rows. The Kafka one runs against
//! the test broker in `tests/kafka.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/sql")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("'events.num' = '10000000'", "'events.num' = '100000'")
}

/// Runs `weir <args> -e <sql>` from the repository root; returns stdout.
fn weir(args: &[&str], sql: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args(["--shards", "2", "-e", sql])
        .output()
        .expect("weir runs");
    assert!(
        output.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn every_sql_example_is_tested() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sql");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.ends_with(".sql").then_some(name)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "channel_stats.sql",
            "datagen_cumulate.sql",
            "file_to_file.sql",
            "hot_items.sql",
            "kafka_to_kafka.sql",
            "user_sessions.sql"
        ]
    );
}

#[test]
fn query_examples_print_json_lines() {
    for (name, expected_column) in [
        ("hot_items.sql", "\"top_price\":"),
        ("channel_stats.sql", "\"op\":\"+U\""),
        ("datagen_cumulate.sql", "\"revenue\":"),
    ] {
        let out = weir(&["run"], &example(name));
        let lines: Vec<&str> = out.lines().collect();
        assert!(!lines.is_empty(), "{name} printed nothing");
        assert!(lines.iter().all(|l| l.starts_with('{')), "{name}: {out}");
        assert!(out.contains(expected_column), "{name}: {out}");
    }
}

#[test]
fn insert_examples_run() {
    weir(&["run"], &example("user_sessions.sql"));
    let out_dir: PathBuf =
        std::env::temp_dir().join(format!("weir-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let sql = example("file_to_file.sql")
        .replace("/tmp/weir-example/revenue", &out_dir.to_string_lossy());
    weir(&["run"], &sql);
    // Every one of the 500 bids (disorder 3 s, watermark delay 5 s: none late) is counted once.
    let mut bids = 0;
    for file in std::fs::read_dir(&out_dir).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in text.lines() {
            let count = line
                .split("\"bids\":")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next());
            bids += count
                .and_then(|c| c.parse::<u64>().ok())
                .expect("a bids count");
        }
    }
    assert_eq!(bids, 500);
    let _ = std::fs::remove_dir_all(&out_dir);
}
