//! The Nexmark benchmark suite: Flink's Nexmark SQL (`queries/`) over the built-in `nexmark`
//! source, and the `../shared/peers` queries (`scan`, `tumble`, `hop`) over a bid file, each
//! into a `blackhole` sink.
//!
//! ```text
//! cargo bench -p weir-benches --bench nexmark -- q5 --events 10000000 --shards 2
//! cargo bench -p weir-benches --bench nexmark -- all --events 10000000 --shards 1
//! cargo bench -p weir-benches --bench nexmark -- q1 --events 30000000 --rate 1000000      # latency
//! cargo bench -p weir-benches --bench nexmark -- tumble --input bids_10m.csv --format csv
//! ```
//!
//! One query per process, so that peak memory (VmHWM) belongs to it; `all` runs every
//! Nexmark query in a child process each. Each run prints one line: events/s (wall clock,
//! from the start of the process to the end of the job), events/s per core (events over the
//! CPU seconds the process used), peak RSS.
//!
//! With `--rate R` the generator is throttled to R events/s and its event time is the wall
//! clock (`'base-time' = 'now'`, `first-event.rate` = R), as in Flink's Nexmark: the sink
//! records, per row carrying `dateTime`, the time from the event's creation to the sink, and
//! per batch carrying `window_end`, the time from the watermark passing the window's end
//! (`window_end` + the DDL's 4 s delay) to the sink (hdrhistogram, microseconds).

/// The allocator `weir` runs with (`src/main.rs`), so the numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMillisecondType;
use arrow::record_batch::RecordBatch;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use weir::engine::graph::NodeKind;
use weir::engine::message::{CheckpointId, Watermark};
use weir::engine::operator::SubtaskContext;
use weir::engine::sink::{SinkFactory, SinkWriter};
use weir::engine::source::LocalBoxFuture;
use weir::engine::BoxError;
use weir::prelude::RunOptions;
use weir::sql::Session;
use weir_benches::peak_rss_mib;

const NEXMARK_DDL: &str = include_str!("nexmark_ddl.sql");
const BID_FILE_DDL: &str = include_str!("bid_file_ddl.sql");

/// The queries over the `nexmark` source, in suite order.
const NEXMARK_QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("queries/q0.sql")),
    ("q1", include_str!("queries/q1.sql")),
    ("q2", include_str!("queries/q2.sql")),
    ("q3", include_str!("queries/q3.sql")),
    ("q4", include_str!("queries/q4.sql")),
    ("q5", include_str!("queries/q5.sql")),
    ("q7", include_str!("queries/q7.sql")),
    ("q8", include_str!("queries/q8.sql")),
    ("q9", include_str!("queries/q9.sql")),
    ("q10", include_str!("queries/q10.sql")),
    ("q11", include_str!("queries/q11.sql")),
    ("q12", include_str!("queries/q12.sql")),
    ("q13", include_str!("queries/q13.sql")),
    ("q14", include_str!("queries/q14.sql")),
    ("q15", include_str!("queries/q15.sql")),
    ("q16", include_str!("queries/q16.sql")),
    ("q17", include_str!("queries/q17.sql")),
    ("q18", include_str!("queries/q18.sql")),
    ("q19", include_str!("queries/q19.sql")),
    ("q20", include_str!("queries/q20.sql")),
    ("q21", include_str!("queries/q21.sql")),
    ("q22", include_str!("queries/q22.sql")),
    ("ij", include_str!("queries/ij.sql")),
    ("over", include_str!("queries/over.sql")),
];

/// The peers' queries over a bid file.
const FILE_QUERIES: &[(&str, &str)] = &[
    ("scan", include_str!("queries/scan.sql")),
    ("tumble", include_str!("queries/tumble.sql")),
    ("hop", include_str!("queries/hop.sql")),
];

/// Watermark delay of the Nexmark DDL.
const NEXMARK_DELAY_MS: i64 = 4_000;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Csv,
    Json,
}

#[derive(Parser, Debug)]
#[command(about = "Nexmark benchmark: one query (or `all`) per run")]
struct Args {
    /// q0, q1, q2, q3, q5, q7, q8, q11, q14, q15, q16, q17, q20, q22, ij (an interval join),
    /// all; or scan, tumble, hop with --input.
    query: String,
    /// Nexmark events (all kinds: 2% people, 6% auctions, 92% bids).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Event-time spacing of the generator in events per second (Flink's Nexmark default).
    #[arg(long, default_value_t = 10_000_000)]
    tps: u64,
    /// Throttle the generator to this many events per second and measure latency.
    #[arg(long)]
    rate: Option<u64>,
    /// For results without `window_end` (q8's `stime`): `COLUMN:SIZE_MS`, the column holding
    /// the window start and the window size, so window latency can be measured.
    #[arg(long, value_parser = parse_window_start)]
    window_start: Option<(String, i64)>,
    /// Align the generator splits' watermarks with this maximum drift (Flink's
    /// `scan.watermark.alignment.max-drift`, e.g. `1s`).
    #[arg(long)]
    watermark_alignment: Option<String>,
    /// The bid file of `../shared/peers` (for scan, tumble, hop).
    #[arg(long)]
    input: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// The state memory budget (Weir's `state.memory-budget`), e.g. 64mb; default: a quarter
    /// of the machine's memory.
    #[arg(long)]
    state_memory_budget: Option<String>,
    /// `table.exec.state.ttl` for the query, e.g. `1 min`.
    #[arg(long)]
    state_ttl: Option<String>,
    /// Print the SQL and the plan, and do not run.
    #[arg(long)]
    explain: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let args = Args::parse();
    if args.query == "all" {
        return run_all(&args);
    }
    let (mut sql, events) = job_sql(&args)?;
    if let Some(ttl) = &args.state_ttl {
        sql = format!("SET 'table.exec.state.ttl' = '{ttl}';\n{sql}");
    }
    let mut session = Session::new();
    let actions = session
        .execute(&sql, &|_| Arc::new(weir::prelude::PrintSink::default()))
        .with_context(|| format!("planning {}", args.query))?;
    anyhow::ensure!(actions.is_empty(), "the queries are INSERTs");
    let mut job = session.take_insert_job().context("no INSERT")?;
    let mut options = RunOptions::default().shards(args.shards);
    if let Some(budget) = &args.state_memory_budget {
        let bytes = weir::connectors::options::parse_memory_budget(budget)
            .with_context(|| format!("--state-memory-budget: '{budget}' is not a size"))?;
        options = options.state_memory_budget(bytes);
    }
    if args.explain {
        println!(
            "{sql}\n{}",
            weir::engine::runtime::explain(&job.graph, &options)?
        );
        return Ok(());
    }
    let probe = Probe::new(args.rate.is_some(), args.window_start.clone());
    for node in &mut job.graph.nodes {
        if let NodeKind::Sink(inner) = &node.kind {
            node.kind = NodeKind::Sink(Arc::new(MeasuredSink {
                inner: Arc::clone(inner),
                probe: probe.clone(),
            }));
        }
    }
    weir::engine::runtime::run(&job.graph, options).context("the job failed")?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(f64::NAN);
    let events = match events {
        Some(events) => events,
        None => count_lines(args.input.as_deref().context("--input")?)?,
    };
    let mut line = format!(
        "query={} shards={} events={events} elapsed_s={elapsed:.2} events_per_s={:.0} cpu_s={cpu:.2} events_per_cpu_s={:.0} rows_out={} peak_rss_mib={:.0}",
        args.query,
        args.shards,
        events as f64 / elapsed,
        events as f64 / cpu,
        probe.rows(),
        peak_rss_mib().unwrap_or(f64::NAN),
    );
    if let Some(rate) = args.rate {
        line += &format!(" rate={rate} {}", probe.latency());
    }
    println!("{line}");
    Ok(())
}

/// q13's side input, written to the temporary directory: `key,value-<key>` for keys 0 to 9999.
fn side_input() -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "weir-nexmark-side_input-{}.csv",
        std::process::id()
    ));
    let text: String = (0..10_000).map(|k| format!("{k},value-{k}\n")).collect();
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The SQL of the run, and its event count if known before running.
fn job_sql(args: &Args) -> anyhow::Result<(String, Option<u64>)> {
    if let Some((_, query)) = NEXMARK_QUERIES.iter().find(|(n, _)| *n == args.query) {
        let (tps, mut extra) = match args.rate {
            Some(rate) => (
                rate,
                format!(",\n    'rows-per-second' = '{rate}',\n    'base-time' = 'now'"),
            ),
            None => (args.tps, String::new()),
        };
        if let Some(drift) = &args.watermark_alignment {
            extra.push_str(&format!(
                ",\n    'scan.watermark.alignment.group' = 'nexmark',\n    'scan.watermark.alignment.max-drift' = '{drift}'"
            ));
        }
        let ddl = NEXMARK_DDL
            .replace("${TPS}", &tps.to_string())
            .replace("${EVENTS}", &args.events.to_string())
            .replace("${EXTRA_OPTIONS}", &extra);
        let query = match query.contains("${SIDE_INPUT}") {
            true => query.replace("${SIDE_INPUT}", &side_input()?.display().to_string()),
            false => query.to_string(),
        };
        return Ok((format!("{ddl}\n{query}"), Some(args.events)));
    }
    if let Some((_, query)) = FILE_QUERIES.iter().find(|(n, _)| *n == args.query) {
        let Some(input) = &args.input else {
            bail!(
                "{} reads the peers' bid file: pass --input FILE",
                args.query
            )
        };
        let path = std::fs::canonicalize(input)
            .with_context(|| format!("input file {}", input.display()))?;
        let (format, options) = match args.format {
            Format::Csv => ("csv", ",\n 'csv.ignore-parse-errors' = 'false'"),
            Format::Json => ("json", ",\n 'json.timestamp-format.standard' = 'SQL'"),
        };
        let ddl = BID_FILE_DDL
            .replace("${PATH}", &path.display().to_string())
            .replace("${FORMAT}", format)
            .replace("${FORMAT_OPTIONS}", options);
        return Ok((format!("{ddl}\n{query}"), None));
    }
    let names: Vec<&str> = NEXMARK_QUERIES
        .iter()
        .chain(FILE_QUERIES)
        .map(|(n, _)| *n)
        .collect();
    bail!(
        "unknown query '{}'; known: {}, all",
        args.query,
        names.join(", ")
    )
}

/// Runs every Nexmark query in a child process with the same options.
fn run_all(args: &Args) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    for (name, _) in NEXMARK_QUERIES {
        let mut command = std::process::Command::new(&me);
        command.arg(name).args([
            "--events",
            &args.events.to_string(),
            "--shards",
            &args.shards.to_string(),
            "--tps",
            &args.tps.to_string(),
        ]);
        if let Some(rate) = args.rate {
            command.args(["--rate", &rate.to_string()]);
        }
        let status = command.status()?;
        anyhow::ensure!(status.success(), "{name} failed: {status}");
    }
    Ok(())
}

fn count_lines(path: &std::path::Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let (mut buffer, mut lines) = (vec![0u8; 1 << 20], 0u64);
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(lines);
        }
        lines += buffer[..read].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// User + system CPU seconds of this process, from /proc/self/stat (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `COLUMN:SIZE_MS` of `--window-start`.
fn parse_window_start(text: &str) -> Result<(String, i64), String> {
    let (column, size) = text
        .split_once(':')
        .ok_or_else(|| format!("expected COLUMN:SIZE_MS, got '{text}'"))?;
    let size = size
        .parse::<i64>()
        .map_err(|_| format!("window size '{size}' is not a number of milliseconds"))?;
    Ok((column.to_string(), size))
}

/// What the sink saw: rows, and latencies when measuring.
#[derive(Clone)]
struct Probe {
    measure: bool,
    /// A window-start column and the window size (ms), for results without `window_end`.
    window_start: Option<(String, i64)>,
    rows: Arc<Mutex<u64>>,
    /// From event creation to the sink, per row with `dateTime`.
    event: Arc<Mutex<Histogram<u64>>>,
    /// From the watermark passing `window_end` to the sink, per batch with `window_end`.
    window: Arc<Mutex<Histogram<u64>>>,
}

impl Probe {
    fn new(measure: bool, window_start: Option<(String, i64)>) -> Self {
        let histogram = || {
            Arc::new(Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ))
        };
        Probe {
            measure,
            window_start,
            rows: Arc::default(),
            event: histogram(),
            window: histogram(),
        }
    }

    fn rows(&self) -> u64 {
        *self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, batch: &RecordBatch) {
        *self.rows.lock().unwrap_or_else(|e| e.into_inner()) += batch.num_rows() as u64;
        if !self.measure || batch.num_rows() == 0 {
            return;
        }
        let now = now_micros();
        let timestamps = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        };
        let record = |histogram: &Mutex<Histogram<u64>>, micros: i64| {
            let mut histogram = histogram.lock().unwrap_or_else(|e| e.into_inner());
            let value = (micros.max(1) as u64).min(histogram.high());
            let _ = histogram.record(value);
        };
        let end = match (timestamps("window_end"), &self.window_start) {
            (Some(ends), _) => Some(ends.value(0)),
            (None, Some((column, size))) => timestamps(column).map(|s| s.value(0) + size),
            (None, None) => None,
        };
        if let Some(end) = end {
            let due = (end + NEXMARK_DELAY_MS) * 1000;
            record(&self.window, now - due);
        } else if let Some(times) = timestamps("dateTime") {
            for i in 0..times.len() {
                if times.is_valid(i) {
                    record(&self.event, now - times.value(i) * 1000);
                }
            }
        }
    }

    /// The latency percentiles measured, in milliseconds.
    fn latency(&self) -> String {
        let mut out = Vec::new();
        for (name, histogram) in [("event", &self.event), ("window", &self.window)] {
            let h = histogram.lock().unwrap_or_else(|e| e.into_inner());
            if h.is_empty() {
                continue;
            }
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            out.push(format!(
                "{name}_latency_ms: p50={:.1} p99={:.1} p999={:.1} max={:.1} samples={}",
                ms(0.5),
                ms(0.99),
                ms(0.999),
                h.max() as f64 / 1000.0,
                h.len()
            ));
        }
        if out.is_empty() {
            "latency: no rows with dateTime or window_end".into()
        } else {
            out.join(" ")
        }
    }
}

/// The query's sink, with every batch shown to the probe first.
struct MeasuredSink {
    inner: Arc<dyn SinkFactory>,
    probe: Probe,
}

impl SinkFactory for MeasuredSink {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn accepts_changelog(&self) -> bool {
        self.inner.accepts_changelog()
    }

    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(MeasuredWriter {
            inner: self.inner.create_writer(context)?,
            probe: self.probe.clone(),
        }))
    }
}

struct MeasuredWriter {
    inner: Box<dyn SinkWriter>,
    probe: Probe,
}

impl SinkWriter for MeasuredWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        self.probe.record(&batch);
        self.inner.write_batch(batch)
    }

    fn on_watermark(&mut self, watermark: Watermark) {
        self.inner.on_watermark(watermark);
    }

    fn on_barrier(
        &mut self,
        checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<Option<String>, BoxError>> {
        self.inner.on_barrier(checkpoint)
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        self.inner.finish()
    }
}
