//! The real `weir` binary: help, version, Ctrl-C stopping a running job cleanly, and the exit
//! codes of SQL jobs (0 done, 1 failed, 2 a mistake in the SQL).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

#[test]
fn help_and_version() {
    let version = weir().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("weir "));
    let help = weir().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("demo"));
}

#[test]
fn ctrl_c_stops_the_job_with_code_130_and_nothing_half_written() {
    let mut child = weir()
        .args([
            "demo",
            "--events",
            "1000000000",
            "--auctions",
            "10",
            "--rate",
            "50000",
            "--shards",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(
        first.starts_with('{') && first.ends_with("}\n"),
        "{first:?}"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "weir did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    for line in rest.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "half-written line: {line:?}"
        );
    }
    assert!(rest.is_empty() || rest.ends_with('\n'));
}

#[test]
fn a_finished_demo_exits_zero() {
    let output = weir()
        .args(["demo", "--events", "100000", "--auctions", "5"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("done: 100000 bids"));
}

#[test]
fn sql_exit_codes_say_what_went_wrong() {
    let run = |args: &[&str]| weir().args(args).output().unwrap();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let ok = run(&["run", "-e", "SELECT 1 + 1 AS two"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), r#"{"two":2}"#);

    // A mistake in the SQL: exit 2, one message with line and column, no panic or backtrace.
    let mistake = run(&["run", "-e", "SELECT 1;\nSELECT nope FROM missing"]);
    assert_eq!(mistake.status.code(), Some(2));
    let message = stderr(&mistake);
    assert!(
        message.starts_with("error: line 2, column 18: table or view 'missing' does not exist"),
        "{message}"
    );
    assert!(
        !message.contains("panicked") && !message.contains("backtrace"),
        "{message}"
    );

    // A job that fails while running (a bad record under the default 'fail' policy): exit 1.
    let dir = std::env::temp_dir().join(format!("weir-cli-sql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.csv"), "1\nnot a number\n").unwrap();
    let sql = format!(
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv'); SELECT a FROM t",
        dir.join("bad.csv").display()
    );
    let failed = run(&["run", "-e", &sql]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("bad.csv:2"),
        "names the file and line: {}",
        stderr(&failed)
    );

    // An expression that fails on a value: exit 1, the value named, each cause once.
    std::fs::write(dir.join("words.csv"), "12\nabc\n").unwrap();
    let sql = format!(
        "CREATE TABLE w (s STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv'); SELECT CAST(s AS INT) AS n FROM w",
        dir.join("words.csv").display()
    );
    let failed = run(&["run", "-e", &sql]);
    let message = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{message}");
    let line = message
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    assert!(line.contains("'abc'"), "names the value: {message}");
    assert_eq!(line.matches("abc").count(), 1, "each cause once: {line}");

    // A function Flink has but Weir does not yet, and an unknown one: refused by name.
    let later = run(&["run", "-e", "SELECT RANK() OVER (ORDER BY 1) AS r"]);
    assert_eq!(later.status.code(), Some(2));
    assert!(
        stderr(&later).contains("function RANK is not supported yet"),
        "{}",
        stderr(&later)
    );
    let later = run(&["run", "-e", "SELECT FROM_BASE64('YQ==') AS h"]);
    assert!(
        stderr(&later).contains("function FROM_BASE64 is not supported yet"),
        "{}",
        stderr(&later)
    );
    let unknown = run(&["run", "-e", "SELECT NO_SUCH_FN(1) AS x"]);
    assert!(
        stderr(&unknown).contains("unknown function NO_SUCH_FN"),
        "{}",
        stderr(&unknown)
    );
    assert!(
        !stderr(&unknown).contains("Did you mean"),
        "{}",
        stderr(&unknown)
    );

    // One state directory holds one job's checkpoints.
    let state = dir.join("state");
    let two = run(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "-e",
        "SELECT 1 AS a; SELECT 2 AS b",
    ]);
    assert_eq!(two.status.code(), Some(2));
    assert!(stderr(&two).contains("runs 2 jobs"), "{}", stderr(&two));
    let _ = std::fs::remove_dir_all(&dir);
}

/// On a terminal (a pseudo-terminal, through util-linux's `script`), a bare SELECT prints
/// Flink's tableau: one header, then the rows, then the bottom border and the row count.
#[test]
fn a_select_on_a_terminal_prints_one_header_then_its_rows() {
    let command = format!(
        "{} run --shards 2 -e \"SELECT n, s FROM (VALUES (1, 'a'), (2, 'b'), (3, CAST(NULL AS VARCHAR))) AS t(n, s)\"",
        env!("CARGO_BIN_EXE_weir")
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("util-linux's script runs");
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    assert!(output.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(['|', '+'])).collect();
    let header: Vec<&&str> = lines.iter().filter(|l| l.ends_with(" s |")).collect();
    assert_eq!(header.len(), 1, "one header:\n{text}");
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with('|') && !l.ends_with(" s |"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().any(|r| r.ends_with(" <NULL> |")), "{text}");
    assert!(text.contains("Received a total of 3 rows"), "{text}");
}

/// `weir run --metrics-addr` serves the running job's metrics, which a real Prometheus
/// (OpenMetrics) parser, Python's `prometheus_client` (Debian's python3-prometheus-client),
/// reads: labelled per operator subtask, and moving while the job runs. Another path is a
/// 404 saying where the metrics are.
#[test]
fn metrics_are_served_for_prometheus_while_the_job_runs() {
    let mut child = weir()
        .args([
            "run",
            "examples/sql/hot_items.sql",
            "--shards",
            "2",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("metrics at ")
        .unwrap_or_else(|| panic!("no metrics address: {line:?}"))
        .to_string();
    // The rest of stderr is drained, so the job never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let script = r#"
import sys, time, urllib.error, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
url = sys.argv[1]
def scrape():
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}
def rows(families):
    return sum(s.value for s in families["weir_operator_records_in"].samples)
first = scrape()
time.sleep(1)
second = scrape()
assert rows(second) > rows(first) > 0, (rows(first), rows(second))
for sample in second["weir_operator_records_in"].samples:
    assert sample.name == "weir_operator_records_in_total", sample
    assert set(sample.labels) == {"job", "operator", "subtask"}, sample.labels
    assert sample.labels["job"] == "hot_items", sample.labels
watermarks = second["weir_operator_current_input_watermark_seconds"].samples
assert any(s.labels["operator"] == "window" and s.value > 1.7e9 for s in watermarks), watermarks
try:
    urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=10)
    raise AssertionError("no 404")
except urllib.error.HTTPError as e:
    assert e.code == 404 and b"/metrics" in e.read(), e
print("ok")
"#;
    let checked = Command::new("/usr/bin/python3")
        .args(["-c", script, &url])
        .output()
        .expect("Debian's python3 runs");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// On a terminal `weir run` shows the job's progress on one redrawn line of stderr (rows
/// read and rows/s, the watermark); not with `--quiet`, and not when stderr is piped.
#[test]
fn a_long_job_shows_its_progress_on_a_terminal_only() {
    let dir = std::env::temp_dir().join(format!("weir-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sql = dir.join("job.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE g (x BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH \
         ('connector' = 'datagen', 'number-of-rows' = '1500000', 'rows-per-second' = '1000000');
         CREATE TABLE s (x BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO s SELECT x FROM g;",
    )
    .unwrap();
    let on_terminal = |extra: &str| {
        let command = format!(
            "{} run {} --shards 2 {extra}",
            env!("CARGO_BIN_EXE_weir"),
            sql.display()
        );
        let output = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("util-linux's script runs");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let shown = on_terminal("");
    assert!(
        shown.contains(" rows read (") && shown.contains("/s)") && shown.contains("watermark "),
        "{shown:?}"
    );
    let quiet = on_terminal("--quiet");
    assert!(!quiet.contains("rows read"), "{quiet:?}");
    let piped = weir()
        .args(["run", &sql.display().to_string(), "--shards", "2"])
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("rows read"),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A metrics port in use is an error naming it, before the job starts.
#[test]
fn a_metrics_port_in_use_is_an_error_before_the_job_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = weir()
        .args(["run", "-e", "SELECT 1 AS one", "--metrics-addr", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "the job did not run");
}
