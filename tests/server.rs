//! `weir server` as a real process, driven over real HTTP (the `weir` client verbs and
//! ureq): submit, list, status with moving counters, `/metrics` read by Python's
//! `prometheus_client`, stop with a savepoint and resume, cancel, a server killed with
//! SIGKILL that resumes its job with exactly-once output, a failing job restarted by its
//! strategy and then shown failed, bad requests answered with JSON errors, the token and
//! the allowed paths, and the dashboard in a real headless Chromium.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// A `weir server` process on a free port, killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `weir server --data-dir <dir>/data` with `extra` arguments, in `dir`.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .current_dir(dir)
            .args(["server", "--data-dir", "data", "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("the server exited: {seen}");
            }
            seen.push_str(&line);
            if let Some(rest) = line.strip_prefix("Weir server at ") {
                break rest.split('/').take(3).collect::<Vec<_>>().join("/");
            }
        };
        // The rest of its log goes to a file (read when a test fails).
        let mut file = (std::fs::File::options().create(true).append(true))
            .open(dir.join("server.log"))
            .unwrap();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut file));
        Server {
            child,
            url,
            log: dir.join("server.log"),
        }
    }

    /// Runs a client verb against this server.
    fn weir(&self, args: &[&str], dir: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .current_dir(dir)
            .env("WEIR_SERVER", &self.url)
            .env_remove("WEIR_TOKEN")
            .args(args)
            .output()
            .unwrap()
    }

    /// A client verb that must succeed; its stdout.
    fn ok(&self, args: &[&str], dir: &Path) -> String {
        let output = self.weir(args, dir);
        assert!(
            output.status.success(),
            "weir {args:?}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `weir submit --output json`: the job's id.
    fn submit(&self, script: &str, dir: &Path) -> String {
        std::fs::write(dir.join("job.sql"), script).unwrap();
        let out = self.ok(
            &["submit", "job.sql", "--shards", "2", "--output", "json"],
            dir,
        );
        let answer: Value = serde_json::from_str(&out).unwrap();
        answer["id"].as_str().unwrap().to_string()
    }

    fn job(&self, id: &str) -> Value {
        http(&self.url, "GET", &format!("/jobs/{id}"), None, None).1
    }

    /// Waits until the job's status is `status` (panics after 60 s).
    fn wait_for(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.job(id);
            if job["state"] == status {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {status}: {job}\nserver log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP request; the status and the JSON body (`Null` if none).
fn http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    http_with(base, method, path, body, token, &[])
}

/// [`http`] with extra headers.
fn http_with(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.unwrap_or("").to_string()).unwrap();
    let mut response = agent.run(request).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts that a process succeeded, showing its stderr if not.
fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Sends `head` (a request's line and headers, no body) over a raw connection and returns
/// the whole answer.
fn headers_only(base: &str, head: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Every data row of the committed CSV files under `dir` (hidden in-progress files aside),
/// sorted.
fn committed_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                let text = std::fs::read_to_string(&path).unwrap();
                rows.extend(text.lines().map(str::to_string));
            }
        }
    }
    rows.sort();
    rows
}

/// Flink's Nexmark bids (the generator, `events` events throttled to `rate` per second)
/// counted per auction in 2 s tumbling windows into CSV files under `out` (relative paths:
/// the client's working directory), checkpointing every 300 ms.
fn windows_job(events: u64, rate: u64, extra: &str) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '300ms';
        {extra}
        CREATE TABLE nexmark (
            event_type INT,
            bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,
            `dateTime` TIMESTAMP(3),
            WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
        ) WITH ('connector' = 'nexmark', 'events.num' = '{events}', 'rows-per-second' = '{rate}',
                'first-event.rate' = '2000');
        CREATE TABLE counts (window_start TIMESTAMP(3), auction BIGINT, bids BIGINT, top BIGINT)
          WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'csv');
        INSERT INTO counts
          SELECT window_start, bid.auction, COUNT(*), MAX(bid.price)
          FROM TABLE(TUMBLE(TABLE nexmark, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND))
          WHERE event_type = 2
          GROUP BY window_start, window_end, bid.auction;"
    )
}

/// What the job writes run to its end by `weir run` (no server, no interruption).
fn clean_run(script: &str, dir: &Path) -> Vec<String> {
    let clean = dir.join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    std::fs::write(clean.join("job.sql"), script).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(&clean)
        .args(["run", "job.sql", "--shards", "2", "--quiet"])
        .output()
        .unwrap();
    succeeded(&output);
    let rows = committed_rows(&clean.join("out"));
    assert!(rows.len() > 1000, "the job writes rows: {}", rows.len());
    rows
}

/// Submit, list, status with moving counters, Prometheus metrics, stop with a savepoint,
/// resume, and the output of the whole is exactly that of an uninterrupted run.
#[test]
fn a_job_is_submitted_watched_stopped_with_a_savepoint_and_resumed_exactly_once() {
    let dir = scratch("lifecycle");
    // About 10 s: it is stopped after a few seconds of checks, well before its end.
    let script = windows_job(200_000, 20_000, "");
    let expected = clean_run(&script, &dir);
    let server = Server::start(&dir, &[]);
    let id = server.submit(&script, &dir);
    assert_eq!(id.len(), 32, "Flink's job id shape: {id}");
    server.wait_for(&id, "RUNNING");

    let list = server.ok(&["list"], &dir);
    assert!(list.contains(&id) && list.contains("RUNNING"), "{list}");
    let listed: Value =
        serde_json::from_str(&server.ok(&["list", "--output", "json"], &dir)).unwrap();
    assert_eq!(listed["jobs"][0]["id"], id.as_str());

    // The counters move, per operator.
    let rows_in = |job: &Value| -> u64 {
        job["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["metrics"]["read-records"].as_u64().unwrap())
            .sum()
    };
    std::thread::sleep(Duration::from_millis(500));
    let first = rows_in(&server.job(&id));
    std::thread::sleep(Duration::from_millis(1000));
    let job = server.job(&id);
    assert!(rows_in(&job) > first && first > 0, "{first} then {job}");
    assert!(job["vertices"].as_array().unwrap().len() >= 3, "{job}");
    let status = server.ok(&["status", &id], &dir);
    assert!(
        status.contains("RUNNING") && status.contains("source-nexmark"),
        "{status}"
    );

    // Prometheus's own parser reads /metrics.
    let script_py = r#"
import sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10).read().decode()
families = {f.name: f for f in text_string_to_metric_families(text)}
rows = families["weir_operator_records_in"].samples
assert rows and all(set(s.labels) == {"job", "job_id", "operator", "subtask"} for s in rows), rows
assert sum(s.value for s in rows) > 0, rows
assert "weir_job_checkpoints_completed" in families, sorted(families)
assert "weir_task_idle_time_seconds" in families, sorted(families)
print("ok")
"#;
    let parsed = Command::new("/usr/bin/python3")
        .args(["-c", script_py, &server.url])
        .output()
        .unwrap();
    succeeded(&parsed);

    let (code, checkpoints) = http(
        &server.url,
        "GET",
        &format!("/jobs/{id}/checkpoints"),
        None,
        None,
    );
    assert_eq!(code, 200);
    assert!(
        checkpoints["counts"]["completed"].as_u64().unwrap() > 0,
        "{checkpoints}"
    );
    let (code, plan) = http(&server.url, "GET", &format!("/jobs/{id}/plan"), None, None);
    assert_eq!(code, 200);
    assert!(
        plan["plan"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["operator"] == "Sink"),
        "{plan}"
    );

    let (code, body) = http(
        &server.url,
        "POST",
        &format!("/jobs/{id}/stop"),
        Some(r#"{"drain": true}"#),
        None,
    );
    assert!(
        code == 400 && body["errors"][0].as_str().unwrap().contains("drain"),
        "{body}"
    );
    // Stop with a savepoint into a directory of the client's, then resume from it.
    let stopped = server.ok(&["stop", &id, "--savepoint-dir", "savepoints"], &dir);
    assert!(
        stopped.contains(dir.join("savepoints").to_str().unwrap()),
        "{stopped}"
    );
    let job = server.wait_for(&id, "FINISHED");
    assert!(
        job["savepoint"].as_str().unwrap().contains("savepoints"),
        "{job}"
    );
    let resumed = server.weir(&["resume", &id], &dir);
    succeeded(&resumed);
    // Resumed once: a second resume of the running job is refused.
    let (code, again) = http(
        &server.url,
        "POST",
        &format!("/jobs/{id}/resume"),
        None,
        None,
    );
    assert_eq!(code, 409, "{again}");
    let job = server.wait_for(&id, "FINISHED");
    assert!(job["end-time"].as_i64().unwrap() > 0, "{job}");
    let got = committed_rows(&dir.join("out"));
    assert_eq!(got.len(), expected.len(), "row count after stop and resume");
    assert!(got == expected, "rows differ from the uninterrupted run");

    // A finished job cannot be cancelled; another one can.
    let (code, error) = http(
        &server.url,
        "PATCH",
        &format!("/jobs/{id}?mode=cancel"),
        None,
        None,
    );
    assert_eq!(code, 409, "{error}");
    let other = server.submit(&windows_job(10_000_000, 5_000, ""), &dir);
    server.wait_for(&other, "RUNNING");
    server.ok(&["cancel", &other], &dir);
    server.wait_for(&other, "CANCELED");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server killed with SIGKILL while its job runs and started again resumes the job from
/// its last checkpoint: the output is exactly that of an uninterrupted run.
#[test]
fn a_killed_server_resumes_its_job_with_exactly_once_output() {
    let dir = scratch("kill");
    let script = windows_job(200_000, 20_000, "");
    let expected = clean_run(&script, &dir);
    let mut server = Server::start(&dir, &[]);
    let id = server.submit(&script, &dir);
    server.wait_for(&id, "RUNNING");
    // Past a few checkpoints and some committed output, well before the end (6 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, checkpoints) = http(
            &server.url,
            "GET",
            &format!("/jobs/{id}/checkpoints"),
            None,
            None,
        );
        if checkpoints["counts"]["completed"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoints: {checkpoints}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    assert_ne!(
        server.job_status_on_disk(&dir, &id),
        "FINISHED",
        "killed before the end"
    );
    let server = Server::start(&dir, &[]);
    server.wait_for(&id, "FINISHED");
    let (_, checkpoints) = http(
        &server.url,
        "GET",
        &format!("/jobs/{id}/checkpoints"),
        None,
        None,
    );
    assert!(
        checkpoints["latest"]["restored"]["id"].as_u64().is_some(),
        "{checkpoints}"
    );
    let got = committed_rows(&dir.join("out"));
    assert_eq!(got.len(), expected.len(), "row count after the kill");
    assert!(got == expected, "rows differ from the uninterrupted run");
    let _ = std::fs::remove_dir_all(&dir);
}

impl Server {
    fn job_status_on_disk(&self, dir: &Path, id: &str) -> String {
        let text =
            std::fs::read_to_string(dir.join("data/jobs").join(id).join("job.json")).unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        record["status"].as_str().unwrap().to_string()
    }
}

/// A job that fails is restarted by its strategy (here `fixed-delay`, 2 attempts), then shown
/// failed with its exceptions; the server and its other jobs go on.
#[test]
fn a_failing_job_is_restarted_then_failed_and_the_server_goes_on() {
    let dir = scratch("failing");
    std::fs::write(dir.join("bad.csv"), "1,2\nnot a number,3\n").unwrap();
    let server = Server::start(&dir, &[]);
    let id = server.submit(
        "SET 'restart-strategy.type' = 'fixed-delay';
         SET 'restart-strategy.fixed-delay.attempts' = '2';
         SET 'restart-strategy.fixed-delay.delay' = '100ms';
         CREATE TABLE input (a BIGINT, b BIGINT) WITH ('connector' = 'filesystem', 'path' = 'bad.csv', 'format' = 'csv');
         CREATE TABLE output (a BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO output SELECT a FROM input;",
        &dir,
    );
    let job = server.wait_for(&id, "FAILED");
    assert_eq!(job["restarts"], 2, "{job}");
    let (_, exceptions) = http(
        &server.url,
        "GET",
        &format!("/jobs/{id}/exceptions"),
        None,
        None,
    );
    let entries = exceptions["exceptionHistory"]["entries"]
        .as_array()
        .unwrap();
    assert_eq!(
        entries.len(),
        3,
        "the first run and two restarts: {exceptions}"
    );
    assert!(
        entries[0]["stacktrace"]
            .as_str()
            .unwrap()
            .contains("not a number"),
        "{exceptions}"
    );
    // The server still runs jobs.
    let other = server.submit(&windows_job(2_000, 100_000, ""), &dir);
    server.wait_for(&other, "FINISHED");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad requests get a 4xx with a JSON message: malformed JSON, unknown ids and routes, SQL
/// errors with their line and column, paths outside the allowed roots, bodies too large.
#[test]
fn bad_requests_get_json_errors_and_paths_stay_inside_the_allowed_roots() {
    let dir = scratch("bad");
    let server = Server::start(&dir, &[]);
    let url = &server.url;
    let error = |(code, body): (u16, Value)| -> (u16, String) {
        assert_eq!(body["status"], code, "{body}");
        (code, body["errors"][0].as_str().unwrap().to_string())
    };
    let (code, message) = error(http(url, "POST", "/jobs", Some("{not json"), None));
    assert!(
        code == 400 && message.contains("malformed JSON"),
        "{message}"
    );
    let (code, message) = error(http(url, "GET", "/jobs/0123", None, None));
    assert!(code == 404 && message.contains("0123"), "{message}");
    let (code, _) = error(http(url, "GET", "/nowhere", None, None));
    assert_eq!(code, 404);
    let (code, _) = error(http(url, "DELETE", "/jobs", None, None));
    assert_eq!(code, 405);
    // A body over the limit is refused from its Content-Length, before it is sent (a client
    // that sent it all could meet a closed connection instead of the answer).
    let answer = headers_only(
        url,
        "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 2097152\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than"), "{answer}");

    let submit = |sql: &str| {
        let body = serde_json::json!({ "sql": sql, "workingDirectory": dir.to_str().unwrap() });
        http(url, "POST", "/jobs", Some(&body.to_string()), None)
    };
    let (code, body) = submit("CREATE TABLE t (a BIGINT) WITH ('connector' = 'blackhole');\nINSERT INTO t SELECT nope FROM t;");
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["line"], 2, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("nope"),
        "{body}"
    );
    // Outside the data and working directories of the server (the default roots).
    for path in ["/etc/passwd", "../../outside"] {
        let (code, body) = submit(&format!(
            "CREATE TABLE i (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv');
             CREATE TABLE o (a BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO o SELECT a FROM i;"
        ));
        assert_eq!(code, 400, "{body}");
        assert!(
            body["errors"][0].as_str().unwrap().contains("outside"),
            "{path}: {body}"
        );
    }
    let (code, body) = http(
        url,
        "POST",
        "/jobs",
        Some(r#"{"sql": "SELECT 1", "workingDirectory": "/"}"#),
        None,
    );
    assert!(
        code == 400 && body["errors"][0].as_str().unwrap().contains("outside"),
        "{body}"
    );
    let (code, body) = submit("SELECT 1;");
    assert!(
        code == 400 && body["errors"][0].as_str().unwrap().contains("INSERT INTO"),
        "{body}"
    );
    let (code, body) = submit("SET 'restart-strategy.type' = 'sometimes'; CREATE TABLE t (a BIGINT) WITH ('connector' = 'blackhole'); INSERT INTO t SELECT 1;");
    assert!(
        code == 400 && body["errors"][0].as_str().unwrap().contains("sometimes"),
        "{body}"
    );
    let (code, body) = submit(
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'json',
           'properties.bootstrap.servers' = 'localhost:1', 'properties.plugin.library.paths' = '/tmp/x.so');
         INSERT INTO t SELECT 1;",
    );
    assert!(
        code == 400 && body["errors"][0].as_str().unwrap().contains("program"),
        "{body}"
    );
    let (code, body) = submit(
        "CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'json',
           'properties.bootstrap.servers' = 'localhost:1', 'properties.ssl.ca.location' = '/etc/ssl/private/key.pem');
         INSERT INTO t SELECT 1;",
    );
    assert!(
        code == 400 && body["errors"][0].as_str().unwrap().contains("outside"),
        "{body}"
    );
    // Another job's directory is not a table path, though it is under the data directory.
    let (code, body) = submit(
        "CREATE TABLE i (a BIGINT) WITH ('connector' = 'filesystem', 'path' = 'data/jobs', 'format' = 'csv');
         CREATE TABLE o (a BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO o SELECT a FROM i;",
    );
    assert!(
        code == 400
            && body["errors"][0]
                .as_str()
                .unwrap()
                .contains("job directories"),
        "{body}"
    );
    // A web page of another site, or a name that is not loopback (DNS rebinding), is refused.
    let (code, body) = http_with(
        url,
        "GET",
        "/jobs",
        None,
        None,
        &[("Origin", "http://evil.example")],
    );
    assert!(
        code == 403 && body["errors"][0].as_str().unwrap().contains("evil.example"),
        "{body}"
    );
    let (code, body) = http_with(
        url,
        "GET",
        "/jobs",
        None,
        None,
        &[("Host", "evil.example:8081")],
    );
    assert_eq!(code, 403, "{body}");
    // A rejection of axum's own (a path that is not UTF-8) is JSON too.
    let (code, body) = http(url, "GET", "/jobs/%FF", None, None);
    assert!(code == 400 && body["status"] == 400, "{code} {body}");
    let (code, body) = http(url, "GET", "/openapi.json", None, None);
    assert_eq!(code, 200);
    for path in [
        "/jobs",
        "/jobs/{id}",
        "/jobs/{id}/stop",
        "/jobs/{id}/savepoints/{triggerid}",
        "/metrics",
    ] {
        assert!(body["paths"][path].is_object(), "{path} described");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a token every API request must carry it; without one, only loopback may be bound.
#[test]
fn a_token_is_required_on_every_request_and_beyond_loopback() {
    let dir = scratch("token");
    let refused = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(&dir)
        .args(["server", "--data-dir", "data", "--bind", "0.0.0.0:0"])
        .env_remove("WEIR_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("token"),
        "{refused:?}"
    );

    let server = Server::start(&dir, &["--token", "s3cret"]);
    let (code, body) = http(&server.url, "GET", "/jobs", None, None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = http(&server.url, "GET", "/jobs", None, Some("wrong"));
    assert_eq!(code, 401);
    let (code, _) = http(&server.url, "GET", "/metrics", None, None);
    assert_eq!(code, 401);
    let (code, body) = http(&server.url, "GET", "/jobs", None, Some("s3cret"));
    assert_eq!(code, 200, "{body}");
    // The CLI sends WEIR_TOKEN.
    let without = server.weir(&["list"], &dir);
    assert!(!without.status.success() && String::from_utf8_lossy(&without.stderr).contains("401"));
    let with = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(&dir)
        .env("WEIR_SERVER", &server.url)
        .env("WEIR_TOKEN", "s3cret")
        .arg("list")
        .output()
        .unwrap();
    succeeded(&with);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dashboard in a real headless Chromium (Debian's, driven by Selenium's chromedriver):
/// the page lists a submitted job, draws its graph, a counter moves, and its button stops
/// the job with a savepoint. Leaves a screenshot at `target/dashboard.png`.
#[test]
fn the_dashboard_shows_a_job_its_graph_and_moving_counters_and_stops_it() {
    let dir = scratch("dashboard");
    let server = Server::start(&dir, &[]);
    let id = server.submit(&windows_job(10_000_000, 5_000, ""), &dir);
    server.wait_for(&id, "RUNNING");
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    let script = r##"
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
url, job, screenshot = sys.argv[1], sys.argv[2], sys.argv[3]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
try:
    driver.get(url + "/")
    # The page redraws every second: an element may go stale between finding and reading it.
    wait = WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException])
    row = f'#jobs tr[data-id="{job}"]'
    wait.until(lambda d: "RUNNING" in d.find_element(By.CSS_SELECTOR, row).text)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).click() or True)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#graph .node")) >= 3)
    edges = driver.find_elements(By.CSS_SELECTOR, "#graph .edge")
    assert edges, "the graph has edges"
    def rows_out():
        cells = driver.execute_script(
            "return [...document.querySelectorAll('#vertices td.rows-out')].map(c => c.textContent)")
        return sum(int(c.replace(",", "")) for c in cells)
    first = wait.until(lambda d: rows_out() or None)
    wait.until(lambda d: rows_out() > first)
    wait.until(lambda d: "completed" in d.find_element(By.ID, "checkpoint-counts").text)
    assert "INSERT INTO counts" in driver.find_element(By.ID, "sql").text
    driver.save_screenshot(screenshot)
    driver.find_element(By.ID, "stop").click()
    wait.until(lambda d: "savepoint /" in d.find_element(By.ID, "action-result").text)
    wait.until(lambda d: "FINISHED" in d.find_element(By.ID, "job-status").text)
    print("ok")
finally:
    driver.quit()
"##;
    let checked = Command::new("/usr/bin/python3")
        .args(["-c", script, &server.url, &id, screenshot.to_str().unwrap()])
        .output()
        .expect("Debian's python3 runs");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(server.job(&id)["state"], "FINISHED");
    let _ = std::fs::remove_dir_all(&dir);
}
