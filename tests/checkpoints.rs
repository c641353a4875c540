//! Checkpoints, recovery and savepoints, end to end.
//!
//! - The real `weir` binary is killed with SIGKILL at random moments while it checkpoints,
//!   restarted on the same state directory each time (once with a torn checkpoint left
//!   behind), and its final file-sink output must equal an uninterrupted run's: no row lost,
//!   none duplicated. Once with the DSL demo job, once with a SQL job (`weir run`).
//! - A job stopped with a savepoint at 2 shards and resumed at 1 and at 4 shards gives the
//!   same rows as a job that ran through.
//! - Resuming with a changed window fails and names the operator; a changed sink resumes.
//! - A SQL job whose two INSERTs (windows of the same shape over differently filtered rows)
//!   are swapped at every restart still writes exactly the uninterrupted run's rows: each
//!   window restores its own state (operator identity comes from logic and upstream plan,
//!   not statement order). Removing one is refused unless `--allow-non-restored-state`.
//! - A damaged checkpoint ends the job with an error naming it, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use weir::connectors::filesystem::sink::{FileSink, FileSinkConfig};
use weir::connectors::filesystem::source::{FileSource, FileSourceConfig};
use weir::connectors::filesystem::FileFormat;
use weir::connectors::format::bad_records::BadRecordPolicy;
use weir::engine::checkpoint::CheckpointConfig;
use weir::prelude::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-checkpoints-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every data row of the visible (committed) CSV files under `dir`, sorted; header lines,
/// which start with `header`, are left out.
fn committed_rows(dir: &Path, header: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if !name.starts_with('.') {
                let text = std::fs::read_to_string(&path).unwrap();
                rows.extend(
                    text.lines()
                        .filter(|l| !l.starts_with(header))
                        .map(str::to_string),
                );
            }
        }
    }
    rows.sort();
    rows
}

fn demo(output: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args([
            "demo", "--events", "300000", "--rate", "100000", "--shards", "2",
        ])
        .arg("--output")
        .arg(output)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Starts `job` five times on the same state directory, killing it with SIGKILL at random
/// moments (the seed is printed), and plants a torn checkpoint after the second start; at
/// least three runs must have been killed while running.
fn kill_and_restart(job: &dyn Fn() -> Command, state: &Path) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut random = seed;
    let mut kills = 0;
    for attempt in 0..5 {
        let mut child = job().spawn().unwrap();
        let delay = Duration::from_millis(200 + next(&mut random) % 800);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let ended = child.wait_with_output().unwrap();
        assert!(
            ended.status.success() || ended.status.code().is_none(),
            "a run that was not killed failed: {}",
            String::from_utf8_lossy(&ended.stderr)
        );
        if attempt == 1 {
            // A checkpoint that was being written when the process died: a directory whose
            // manifest is torn. It must be ignored.
            let torn = state.join("checkpoints").join("chk-9999999999");
            std::fs::create_dir_all(&torn).unwrap();
            std::fs::write(torn.join("MANIFEST.json"), "{\"format\": 1, \"checkp").unwrap();
        }
    }
    assert!(
        kills >= 3,
        "the job was killed while running ({kills} kills)"
    );
}

/// `weir run --shards 2 -e sql` with `extra` options, its stderr captured.
fn weir_run(sql: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["run", "--shards", "2", "-e", sql])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Flink's Nexmark table over the generator (300k events, throttled) and its bids.
const NEXMARK_BIDS: &str = "CREATE TABLE nexmark (
    event_type INT,
    bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,
    `dateTime` TIMESTAMP(3),
    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'events.num' = '300000', 'rows-per-second' = '100000',
        'first-event.rate' = '2000');
CREATE VIEW bids AS
  SELECT bid.auction, bid.bidder, bid.price, `dateTime` FROM nexmark WHERE event_type = 2;";

/// A SQL job (`weir run`): Flink's Nexmark DDL over the generator (throttled), a statement
/// set with a hopping-window and a session-window aggregation and an OVER aggregation (a
/// RANGE frame, whose result does not depend on the order equal times meet in) into three
/// CSV tables.
fn sql_job(output: &Path, extra: &[&str]) -> Command {
    let sql = format!(
        "{BIDS}
        CREATE TABLE hot (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/hot', 'format' = 'csv');
        CREATE TABLE sessions (bidder BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/sessions', 'format' = 'csv');
        CREATE TABLE running (auction BIGINT, price BIGINT, bids BIGINT, total BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/running', 'format' = 'csv');
        EXECUTE STATEMENT SET BEGIN
          INSERT INTO hot
            SELECT window_start, auction, COUNT(*), MAX(price)
            FROM TABLE(HOP(TABLE bids, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY window_start, window_end, auction;
          INSERT INTO sessions
            SELECT bidder, window_start, window_end, COUNT(*)
            FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(`dateTime`), INTERVAL '1' SECOND))
            GROUP BY bidder, window_start, window_end;
          INSERT INTO running
            SELECT auction, price, COUNT(*) OVER w, SUM(price) OVER w FROM bids
            WINDOW w AS (PARTITION BY auction ORDER BY `dateTime` RANGE BETWEEN INTERVAL '1' SECOND PRECEDING AND CURRENT ROW);
        END;",
        output.display(),
        BIDS = NEXMARK_BIDS,
    );
    weir_run(&sql, extra)
}

#[test]
fn killed_and_restarted_sql_job_writes_exactly_what_an_uninterrupted_run_writes() {
    let dir = scratch("sql-crash");
    let clean = dir.join("clean");
    let status = sql_job(&clean, &[]).output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let expected = committed_rows(&clean, "window_start");
    assert!(
        expected.len() > 1000,
        "the job writes rows: {}",
        expected.len()
    );
    let output = dir.join("out");
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let checkpointed = ["--state-dir", &state_arg, "--checkpoint-interval", "100ms"];
    kill_and_restart(&|| sql_job(&output, &checkpointed), &state);
    let last = sql_job(&output, &checkpointed).output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let got = committed_rows(&output, "window_start");
    assert_eq!(got.len(), expected.len(), "row count");
    assert!(got == expected, "rows differ from the uninterrupted run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small deterministic pseudo-random sequence (the test prints its seed).
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn killed_and_restarted_job_writes_exactly_what_an_uninterrupted_run_writes() {
    let dir = scratch("crash");
    let clean = dir.join("clean");
    let status = demo(&clean, &[]).status().unwrap();
    assert!(status.success());
    let expected = committed_rows(&clean, "auction");
    assert!(
        expected.len() > 100,
        "the demo writes rows: {}",
        expected.len()
    );

    let output = dir.join("out");
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let checkpointed = ["--state-dir", &state_arg, "--checkpoint-interval", "100ms"];
    kill_and_restart(&|| demo(&output, &checkpointed), &state);
    let last = demo(&output, &checkpointed).output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let got = committed_rows(&output, "auction");
    assert_eq!(got.len(), expected.len(), "row count");
    assert!(got == expected, "rows differ from the uninterrupted run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Eight CSV files of (user, amount, ts); file k holds seconds [10k, 10k + 10) in order.
fn write_events(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut random = 7u64;
    for file in 0..8 {
        let mut text = String::new();
        for i in 0..4000u64 {
            let ms = file * 10_000 + i * 10_000 / 4000;
            let user = next(&mut random) % 50;
            let amount = next(&mut random) % 100;
            text.push_str(&format!(
                "{user},{amount},1970-01-01 00:{:02}:{:02}.{:03}\n",
                ms / 60_000,
                ms / 1000 % 60,
                ms % 1000
            ));
        }
        std::fs::write(dir.join(format!("events-{file}.csv")), text).unwrap();
    }
}

fn window_job(input: &Path, output: &Path, window: Duration) -> Job {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Int64, false),
        Field::new("amount", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let csv = weir::connectors::format::csv::CsvOptions {
        header: false,
        ..Default::default()
    };
    let source = FileSource::new(FileSourceConfig {
        path: input.display().to_string(),
        format: FileFormat::Csv(csv),
        schema,
        monitor_interval: None,
        batch_size: 100,
        on_error: BadRecordPolicy::Fail,
        // Small blocks: each file is read by several splits, resumed at other parallelisms.
        block_size: 2_000,
    })
    .unwrap();
    Pipeline::new("spend")
        .source(source)
        .watermark("ts", Duration::from_secs(1))
        .key_by(["user"])
        .window(Window::tumble(window))
        .aggregate([count_all().alias("n"), sum(col("amount")).alias("total")])
        .sink(FileSink::new(FileSinkConfig::new(
            output,
            FileFormat::Csv(Default::default()),
        )))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn savepoint_at_two_shards_resumes_at_one_and_at_four() {
    let dir = scratch("rescale");
    let input = dir.join("in");
    write_events(&input);
    let window = Duration::from_secs(2);

    let clean = dir.join("clean");
    window_job(&input, &clean, window)
        .run(RunOptions::default().shards(2))
        .unwrap();
    let expected = committed_rows(&clean, "user");
    assert!(expected.len() > 100);

    // Stop with a savepoint while the job runs.
    let first = dir.join("first");
    let savepoint = dir.join("savepoint");
    let options = RunOptions::default()
        .shards(2)
        .checkpoint(CheckpointConfig::new(dir.join("state-2")));
    let mut stopped = None;
    for delay_ms in [30, 10, 3, 1] {
        let _ = std::fs::remove_dir_all(&first);
        let _ = std::fs::remove_dir_all(dir.join("state-2"));
        let handle = window_job(&input, &first, window)
            .start(options.clone())
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let taken = handle.savepoint(&savepoint, true);
        let result = handle.join().unwrap();
        if taken.is_ok() && result.savepoint.is_some() {
            stopped = Some(result);
            break;
        }
    }
    assert!(
        stopped.is_some(),
        "a savepoint was taken before the input ended"
    );
    let before = committed_rows(&first, "user");
    assert!(
        before.len() < expected.len(),
        "the job stopped before its end"
    );

    for shards in [1, 4] {
        let output = dir.join(format!("resumed-{shards}"));
        copy_dir(&first, &output);
        let options = RunOptions::default().shards(shards).checkpoint(
            CheckpointConfig::new(dir.join(format!("state-{shards}"))).from_savepoint(&savepoint),
        );
        window_job(&input, &output, window).run(options).unwrap();
        assert!(
            committed_rows(&output, "user") == expected,
            "resumed at {shards} shards: rows differ from the uninterrupted run"
        );
    }

    // A changed window does not fit the saved state; the error names the operator.
    let options = RunOptions::default()
        .shards(2)
        .checkpoint(CheckpointConfig::new(dir.join("state-x")).from_savepoint(&savepoint));
    let error = window_job(&input, &dir.join("x"), Duration::from_secs(5))
        .start(options.clone())
        .unwrap_err()
        .to_string();
    assert!(error.contains("no part of this job claims"), "{error}");
    assert!(error.contains("window"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two INSERTs with tumbling windows of the same shape over the even and the odd bidders'
/// bids, in the given order (`swapped`: odd first).
fn two_window_job(output: &Path, swapped: bool, only_even: bool, extra: &[&str]) -> Command {
    let insert = |table: &str, parity: u32| {
        format!(
            "CREATE VIEW {table}_bids AS SELECT * FROM bids WHERE MOD(bidder, 2) = {parity};
             INSERT INTO {table}
               SELECT window_start, auction, COUNT(*), MAX(price)
               FROM TABLE(TUMBLE(TABLE {table}_bids, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND))
               GROUP BY window_start, window_end, auction;"
        )
    };
    let (even, odd) = (insert("even", 0), insert("odd", 1));
    let statements = match (only_even, swapped) {
        (true, _) => even,
        (false, false) => format!("{even}\n{odd}"),
        (false, true) => format!("{odd}\n{even}"),
    };
    let sql = format!(
        "{BIDS}
        CREATE TABLE even (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/even', 'format' = 'csv');
        CREATE TABLE odd (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/odd', 'format' = 'csv');
        {statements}",
        output.display(),
        BIDS = NEXMARK_BIDS,
    );
    weir_run(&sql, extra)
}

fn assert_success(output: std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `job` until its state directory has a complete checkpoint, then kills it.
fn kill_after_first_checkpoint(mut job: Command, state: &Path) {
    let mut child = job.spawn().unwrap();
    let checkpoints = state.join("checkpoints");
    for _ in 0..200 {
        let complete = std::fs::read_dir(&checkpoints)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("MANIFEST.json").exists());
        if complete {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn reordered_statements_restore_each_operators_own_state() {
    let dir = scratch("reorder");
    let clean = dir.join("clean");
    assert_success(two_window_job(&clean, false, false, &[]).output().unwrap());
    let expected_even = committed_rows(&clean.join("even"), "window_start");
    let expected_odd = committed_rows(&clean.join("odd"), "window_start");
    assert!(expected_even.len() > 1000 && expected_odd.len() > 1000);

    let output = dir.join("out");
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let checkpointed = ["--state-dir", &state_arg, "--checkpoint-interval", "100ms"];
    let starts = std::cell::Cell::new(0);
    kill_and_restart(
        &|| {
            starts.set(starts.get() + 1);
            two_window_job(&output, starts.get() % 2 == 0, false, &checkpointed)
        },
        &state,
    );
    assert_success(
        two_window_job(&output, true, false, &checkpointed)
            .output()
            .unwrap(),
    );
    let even = committed_rows(&output.join("even"), "window_start");
    let odd = committed_rows(&output.join("odd"), "window_start");
    assert_eq!(even.len(), expected_even.len(), "even row count");
    assert_eq!(odd.len(), expected_odd.len(), "odd row count");
    assert!(
        even == expected_even,
        "even rows differ from the uninterrupted run"
    );
    assert!(
        odd == expected_odd,
        "odd rows differ from the uninterrupted run"
    );

    // Without the odd INSERT, its window's state is claimed by nothing: refused, naming it,
    // unless the user allows dropping it.
    let state = dir.join("state-removed");
    let state_arg = state.to_str().unwrap().to_string();
    let checkpointed = ["--state-dir", &state_arg, "--checkpoint-interval", "100ms"];
    kill_after_first_checkpoint(
        two_window_job(&dir.join("removed"), false, false, &checkpointed),
        &state,
    );
    let refused = two_window_job(&dir.join("removed"), false, true, &checkpointed)
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(message.contains("no part of this job claims"), "{message}");
    assert!(
        message.contains("MOD(bidder, 2) = 1") || message.contains("window"),
        "{message}"
    );
    let mut allowed = checkpointed.to_vec();
    allowed.push("--allow-non-restored-state");
    assert_success(
        two_window_job(&dir.join("removed"), false, true, &allowed)
            .output()
            .unwrap(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_checkpoint_is_an_error_naming_it_not_a_panic() {
    let dir = scratch("damaged");
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let checkpointed = ["--state-dir", &state_arg, "--checkpoint-interval", "100ms"];
    kill_after_first_checkpoint(
        two_window_job(&dir.join("out"), false, false, &checkpointed),
        &state,
    );
    let checkpoint = std::fs::read_dir(state.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("MANIFEST.json").exists())
        .expect("a complete checkpoint");
    let resume = |from: &Path| {
        let from = from.to_str().unwrap().to_string();
        let fresh = dir.join("fresh");
        let _ = std::fs::remove_dir_all(&fresh);
        let fresh = fresh.to_str().unwrap().to_string();
        two_window_job(
            &dir.join("out2"),
            false,
            false,
            &["--state-dir", &fresh, "--from-savepoint", &from],
        )
        .output()
        .unwrap()
    };
    // Every file of every shard store cut in half and overwritten with other bytes.
    let damaged = dir.join("damaged");
    copy_dir(&checkpoint, &damaged);
    for shard in std::fs::read_dir(&damaged).unwrap().flatten() {
        if !shard.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let bytes = std::fs::read(file.path()).unwrap();
            let garbage: Vec<u8> = bytes[..bytes.len() / 2].iter().map(|b| b ^ 0x5a).collect();
            std::fs::write(file.path(), garbage).unwrap();
        }
    }
    // A torn manifest.
    let torn = dir.join("torn");
    copy_dir(&checkpoint, &torn);
    std::fs::write(torn.join("MANIFEST.json"), "{\"format\": 2, \"checkp").unwrap();
    for broken in [&damaged, &torn] {
        let result = resume(broken);
        let message = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{message}");
        assert!(!message.contains("panicked"), "{message}");
        assert!(
            message.contains(broken.to_str().unwrap()),
            "the error names the checkpoint: {message}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flink's Nexmark tables over the generator (throttled; two splits at any shard count, as a
/// generator resumes only with the splits it was checkpointed with), and a statement set of joins into
/// three CSV tables: a LEFT interval join of bids with their auction's first 2 s, the q8
/// window join of new sellers, and a regular inner join of bids with category-10 auctions.
fn join_statements(output: &Path, events: u64) -> String {
    format!(
        "{nexmark}
        CREATE VIEW person AS SELECT person.id, person.name, `dateTime` FROM datagen WHERE event_type = 0;
        CREATE VIEW auction AS SELECT auction.id, `dateTime`, auction.seller, auction.category
          FROM datagen WHERE event_type = 1;
        CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, `dateTime` FROM datagen WHERE event_type = 2;
        CREATE TABLE early (auction BIGINT, bidder BIGINT, price BIGINT, seller BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/early', 'format' = 'csv');
        CREATE TABLE sellers (id BIGINT, name STRING, starttime TIMESTAMP(3))
          WITH ('connector' = 'filesystem', 'path' = '{0}/sellers', 'format' = 'csv');
        CREATE TABLE tens (auction BIGINT, price BIGINT, category BIGINT)
          WITH ('connector' = 'filesystem', 'path' = '{0}/tens', 'format' = 'csv');
        EXECUTE STATEMENT SET BEGIN
          INSERT INTO early
            SELECT B.auction, B.bidder, B.price, A.seller FROM bid AS B LEFT JOIN auction AS A
            ON B.auction = A.id AND B.`dateTime` BETWEEN A.`dateTime` AND A.`dateTime` + INTERVAL '2' SECOND;
          INSERT INTO sellers
            SELECT P.id, P.name, P.starttime
            FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
                  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND))
                  GROUP BY id, name, window_start, window_end) P
            JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
                  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND))
                  GROUP BY seller, window_start, window_end) A
            ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
          INSERT INTO tens
            SELECT B.auction, B.price, A.category FROM bid AS B JOIN auction AS A ON B.auction = A.id
            WHERE A.category = 10;
        END;",
        output.display(),
        nexmark = common::nexmark_table(&format!(
            "'events.num' = '{events}', 'rows-per-second' = '100000', \
             'first-event.rate' = '2000', 'scan.parallelism' = '2'"
        )),
    )
}

/// Every committed row of the three join tables, each prefixed with its table.
fn join_rows(output: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["early", "sellers", "tens"] {
        let dir = output.join(table);
        if dir.exists() {
            rows.extend(
                committed_rows(&dir, "\u{0}")
                    .into_iter()
                    .map(|r| format!("{table}: {r}")),
            );
        }
    }
    rows.sort();
    rows
}

#[test]
fn killed_and_restarted_join_job_writes_exactly_what_an_uninterrupted_run_writes() {
    let dir = scratch("join-crash");
    let clean = dir.join("clean");
    assert_success(
        weir_run(&join_statements(&clean, 300_000), &[])
            .output()
            .unwrap(),
    );
    let expected = join_rows(&clean);
    for table in ["early", "sellers", "tens"] {
        let rows = expected.iter().filter(|r| r.starts_with(table)).count();
        assert!(rows > 50, "{table} has rows: {rows}");
    }
    assert!(
        expected
            .iter()
            .any(|r| r.starts_with("early") && r.ends_with(',')),
        "the outer join pads some bids"
    );
    let output = dir.join("out");
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let checkpointed = ["--state-dir", &state_arg, "--checkpoint-interval", "100ms"];
    let job = || weir_run(&join_statements(&output, 300_000), &checkpointed);
    kill_and_restart(&job, &state);
    assert_success(job().output().unwrap());
    let got = join_rows(&output);
    assert_eq!(got.len(), expected.len(), "row count");
    assert!(got == expected, "rows differ from the uninterrupted run");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The join statements as a graph (for `runtime::start`, which takes savepoints on demand).
fn join_graph(output: &Path, events: u64) -> weir::engine::graph::Graph {
    let mut session = weir::sql::Session::new();
    let actions = session
        .execute(&join_statements(output, events), &|_| {
            unreachable!("no bare SELECT")
        })
        .unwrap();
    assert!(actions.is_empty());
    session.take_insert_job().unwrap().graph
}

#[test]
fn join_savepoints_resume_at_other_shard_counts() {
    let dir = scratch("join-rescale");
    let clean = dir.join("clean");
    weir::engine::runtime::run(
        &join_graph(&clean, 200_000),
        RunOptions::default().shards(2),
    )
    .unwrap();
    let expected = join_rows(&clean);
    assert!(expected.len() > 200);
    // Stopped at 2 shards, resumed at 3; stopped at 4, resumed at 2.
    for (from, to) in [(2, 3), (4, 2), (1, 1)] {
        let first = dir.join(format!("first-{from}"));
        let savepoint = dir.join(format!("savepoint-{from}"));
        let options = RunOptions::default()
            .shards(from)
            .checkpoint(CheckpointConfig::new(dir.join(format!("state-{from}"))));
        let handle = weir::engine::runtime::start(&join_graph(&first, 200_000), options).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        handle.savepoint(&savepoint, true).unwrap();
        let stopped = handle.join().unwrap();
        assert!(stopped.savepoint.is_some(), "stopped with a savepoint");
        let before = join_rows(&first);
        assert!(before.len() < expected.len(), "stopped before the end");
        let output = dir.join(format!("resumed-{from}-{to}"));
        copy_dir(&first, &output);
        let options = RunOptions::default().shards(to).checkpoint(
            CheckpointConfig::new(dir.join(format!("state-{from}-{to}")))
                .from_savepoint(&savepoint),
        );
        weir::engine::runtime::run(&join_graph(&output, 200_000), options).unwrap();
        assert!(
            join_rows(&output) == expected,
            "stopped at {from} shards, resumed at {to}: rows differ from the uninterrupted run"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The graph of `query` over Nexmark's bids (150 000 events at a bounded rate, so that a
/// savepoint falls in the middle).
fn bids_graph(query: &str, sink: &CollectSink) -> weir::engine::graph::Graph {
    let sql = format!(
        "{nexmark}
        CREATE VIEW bid AS SELECT bid.auction, bid.price, `dateTime` FROM datagen WHERE event_type = 2;
        {query}",
        nexmark = common::nexmark_table(
            "'events.num' = '150000', 'rows-per-second' = '100000', 'first-event.rate' = '2000', 'scan.parallelism' = '2'"
        ),
    );
    let mut session = weir::sql::Session::new();
    let actions = session.execute(&sql, &|_| Arc::new(sink.clone())).unwrap();
    let [weir::sql::Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    job.graph.clone()
}

/// `query` (an updating result) stopped with a savepoint and resumed at another shard count
/// ends with the rows of an uninterrupted run: its changes before the savepoint and after the
/// resume, together, applied as a changelog of `columns`.
fn assert_savepoints_resume_at_other_shard_counts(name: &str, query: &str, columns: &[&str]) {
    let dir = scratch(name);
    let clean = CollectSink::new();
    weir::engine::runtime::run(&bids_graph(query, &clean), RunOptions::default().shards(2))
        .unwrap();
    let expected = common::apply_changelog(&clean.batches(), columns);
    assert!(expected.len() > 1_000, "{} rows", expected.len());
    for (from, to) in [(2, 3), (4, 2), (1, 1)] {
        let savepoint = dir.join(format!("savepoint-{from}"));
        let before = CollectSink::new();
        let options = RunOptions::default()
            .shards(from)
            .checkpoint(CheckpointConfig::new(dir.join(format!("state-{from}"))));
        let handle = weir::engine::runtime::start(&bids_graph(query, &before), options).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        handle.savepoint(&savepoint, true).unwrap();
        assert!(
            handle.join().unwrap().savepoint.is_some(),
            "stopped with a savepoint"
        );
        let after = CollectSink::new();
        let options = RunOptions::default().shards(to).checkpoint(
            CheckpointConfig::new(dir.join(format!("state-{from}-{to}")))
                .from_savepoint(&savepoint),
        );
        weir::engine::runtime::run(&bids_graph(query, &after), options).unwrap();
        assert!(!after.batches().is_empty(), "resumed before the end");
        let mut changes = before.batches();
        changes.extend(after.batches());
        assert!(
            common::apply_changelog(&changes, columns) == expected,
            "{name}: stopped at {from} shards, resumed at {to}: rows differ from the uninterrupted run"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const TOP_3_BIDS: &str = "SELECT auction, price, rn FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid
) WHERE rn <= 3";

#[test]
fn top_n_savepoints_resume_at_other_shard_counts() {
    assert_savepoints_resume_at_other_shard_counts(
        "top-n-rescale",
        &format!("{TOP_3_BIDS};"),
        &["auction", "price", "rn"],
    );
}

/// Aggregates over an updating result (the Top-N's), whose MIN and MAX keep every value.
#[test]
fn retracting_aggregates_resume_at_other_shard_counts() {
    assert_savepoints_resume_at_other_shard_counts(
        "retract-rescale",
        &format!(
            "SELECT auction, COUNT(*) AS c, MIN(price) AS lo, MAX(price) AS hi, SUM(price) AS s
             FROM ({TOP_3_BIDS}) GROUP BY auction;"
        ),
        &["auction", "c", "lo", "hi", "s"],
    );
}

/// An OVER aggregation (its waiting rows, frames and accumulators) resumes at other shard
/// counts. A RANGE frame: rows with equal times from the two source splits are peers, so the
/// result does not depend on the order they meet in.
#[test]
fn over_aggregations_resume_at_other_shard_counts() {
    assert_savepoints_resume_at_other_shard_counts(
        "over-rescale",
        "SELECT auction, price, SUM(price) OVER w AS s, MAX(price) OVER w AS hi
         FROM bid WINDOW w AS (PARTITION BY auction ORDER BY `dateTime` RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW);",
        &["auction", "price", "s", "hi"],
    );
}

/// Window results with early firing (what each open window emitted is state too) resume at
/// other shard counts: their changelog ends with the rows of an uninterrupted run.
#[test]
fn early_window_results_resume_at_other_shard_counts() {
    assert_savepoints_resume_at_other_shard_counts(
        "early-fire-rescale",
        "SET 'table.exec.emit.early-fire.enabled' = 'true';
         SET 'table.exec.emit.early-fire.delay' = '0 s';
         SELECT auction, CAST(window_start AS BIGINT) AS ws, COUNT(*) AS n, MAX(price) AS hi
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end, auction;",
        &["auction", "ws", "n", "hi"],
    );
}
