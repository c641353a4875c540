//! The streaming-SQL cases of `tests/cases/` (behaviours users reported in public, with Apache
//! Flink 2.3's rows as the expected answer) run on the real `weir` binary: at the job's own
//! shard count, and at 1, 2 and 4 shards except for the case that pins one shard.

use std::path::PathBuf;
use std::process::Command;

/// The case that sets `parallelism.default` = 1 itself (its late rows depend on it).
const PINNED_TO_ONE_SHARD: &str = "21-late-rows-dropped";

fn cases() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cases exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("run.sh").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "the cases are there: {}", cases.len());
    cases
}

/// Runs every case with `weir run <args>`; fails listing each case that did not pass.
fn run_all(args: &str) {
    let mut failures = Vec::new();
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if !args.is_empty() && name == PINNED_TO_ONE_SHARD {
            continue;
        }
        let output = Command::new("bash")
            .arg(case.join("run.sh"))
            .env("WEIR", env!("CARGO_BIN_EXE_weir"))
            .env("WEIR_ARGS", args)
            .env("VERBOSE", "1")
            .output()
            .expect("bash runs");
        if !output.status.success() {
            failures.push(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "with `weir run {args}`:\n{}",
        failures.join("\n")
    );
}

#[test]
fn cases_at_the_jobs_own_shard_count() {
    run_all("");
}

#[test]
fn cases_at_one_shard() {
    run_all("--shards 1");
}

#[test]
fn cases_at_two_shards() {
    run_all("--shards 2");
}

#[test]
fn cases_at_four_shards() {
    run_all("--shards 4");
}
