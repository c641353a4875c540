//! The real `weir` binary: help, version, and Ctrl-C stopping a running job cleanly.

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
