//! The `weir` command-line tool.
//!
//! `weir run job.sql` (or `-e "SQL"`) runs a SQL script; `weir explain` prints its dataflow
//! graph; `weir demo` runs the built-in "hot items" pipeline written with the DSL. A mistake in
//! the SQL exits 2, a failed job 1. `weir server` runs submitted jobs; `weir submit`, `list`,
//! `status`, `cancel`, `stop` and `resume` talk to it ([`client`]).
//! Ctrl-C (or SIGTERM) stops a running job cleanly and exits with code 130; with
//! `--savepoint-dir` it first takes a savepoint there and exits 0 (a second Ctrl-C cancels).

/// mimalloc rather than the system allocator: a join keeps millions of small rows and frees
/// them in another order than it allocated them, and glibc's heap then grows over a long run
/// (interval join, 60M events at 2 shards: 1882 MiB peak with glibc, 1334 MiB with mimalloc,
/// and faster; benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use weir::connectors::filesystem::sink::{FileSink, FileSinkConfig};
use weir::connectors::filesystem::FileFormat;
use weir::engine::checkpoint::CheckpointConfig;

use weir::engine::EngineError;
use weir::prelude::*;
use weir::sql::{Action, Session, SqlError};

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: a stream processing engine")]
struct Cli {
    /// Log lines as text or as JSON objects (one per line), on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Which server the client verbs talk to.
#[derive(clap::Args)]
struct ServerArgs {
    /// The server's URL.
    #[arg(
        long = "server",
        env = "WEIR_SERVER",
        default_value = "http://127.0.0.1:8081"
    )]
    url: String,
    /// The server's token, if it has one.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the answer as text or as the server's JSON.
    #[arg(long, value_enum, default_value_t = client::Output::Text)]
    output: client::Output,
}

impl ServerArgs {
    fn client(&self) -> client::Client {
        client::Client::new(&self.url, self.token.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a SQL job: CREATE TABLE / VIEW, SET, then INSERT INTO (all INSERTs form one job)
    /// or a SELECT (its rows are printed). Exits once bounded inputs are done.
    Run {
        #[command(flatten)]
        sql: SqlArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Print the dataflow graph of a SQL job without running it.
    Explain {
        #[command(flatten)]
        sql: SqlArgs,
    },
    /// Run the built-in demo job: top bids per auction in 10 s windows sliding every 2 s,
    /// over generated bids, printed to stdout.
    Demo {
        /// Number of bids to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Number of distinct auctions.
        #[arg(long, default_value_t = 1_000)]
        auctions: u64,
        /// Number of shard threads (default: number of cores).
        #[arg(long)]
        shards: Option<usize>,
        /// Bids per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<u64>,
        /// Write the results as CSV part files into this directory instead of printing them.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Print the dataflow graph instead of running it.
        #[arg(long)]
        explain: bool,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
    },
    /// Run submitted jobs: a REST API (Flink's shapes), a dashboard at /, metrics at /metrics.
    /// Jobs checkpoint every 10 s unless they set execution.checkpointing.interval, and a
    /// server started again resumes the jobs that were running.
    Server {
        /// Jobs, their state and checkpoints live here.
        #[arg(long, default_value = "weir-data")]
        data_dir: PathBuf,
        /// The address to listen on; another than loopback needs a token.
        #[arg(long, default_value = "127.0.0.1:8081")]
        bind: std::net::SocketAddr,
        /// Every request must carry `Authorization: Bearer TOKEN`.
        #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Files a submitted script may read or write must lie under one of these (repeat;
        /// default: the data directory and the working directory).
        #[arg(long)]
        allow_path: Vec<PathBuf>,
    },
    /// Send a SQL script to the server; prints the job's id. Relative paths in the script are
    /// relative to this directory.
    Submit {
        /// The SQL file.
        file: PathBuf,
        /// Number of shards (default: the script's parallelism.default, else the server's cores).
        #[arg(long)]
        shards: Option<usize>,
        /// Start from this savepoint.
        #[arg(long)]
        from_savepoint: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the server's jobs.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a job: status, operators with rows and watermarks.
    Status {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a job (no savepoint).
    Cancel {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a job with a savepoint (waits for it and prints where it is).
    Stop {
        id: String,
        /// The savepoint goes into a new directory under this one (default: the job's own,
        /// under the server's data directory).
        #[arg(long)]
        savepoint_dir: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a job stopped with a savepoint again from that savepoint.
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where a SQL job comes from, and its shards.
#[derive(clap::Args)]
struct SqlArgs {
    /// The SQL file to run.
    #[arg(required_unless_present = "execute", conflicts_with = "execute")]
    file: Option<PathBuf>,
    /// SQL text to run instead of a file.
    #[arg(short = 'e', long = "execute", allow_hyphen_values = true)]
    execute: Option<String>,
    /// Number of shard threads (default: `SET 'parallelism.default'`, else the number of cores).
    #[arg(long)]
    shards: Option<usize>,
    /// Memory for the job's decoded state over all shards, e.g. 64mb (default: `SET
    /// 'state.memory-budget'`, else a quarter of the machine's); colder state lives in RocksDB.
    #[arg(long, value_parser = parse_memory_size)]
    state_memory_budget: Option<usize>,
}

impl SqlArgs {
    fn text(&self) -> anyhow::Result<String> {
        match (&self.execute, &self.file) {
            (Some(text), _) => Ok(text.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read SQL file {}", path.display())),
            (None, None) => anyhow::bail!("give a SQL file or -e \"SQL\""),
        }
    }
}

/// How a running job is watched.
#[derive(clap::Args, Default)]
struct WatchArgs {
    /// Serve the job's metrics in Prometheus's text format at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9249 (port 0: any free port; the address is printed on stderr).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// No progress line on the terminal (none is drawn when stderr is not a terminal, nor
    /// over a query's rows printed to the terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Checkpoint, recovery and savepoint options of a job.
#[derive(clap::Args)]
struct CheckpointArgs {
    /// Keep state and checkpoints here; a job started again with the same directory resumes
    /// from its last complete checkpoint.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Time between checkpoints, e.g. 200ms, 10s, 5m (needs --state-dir).
    #[arg(long, value_parser = parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// Start from this savepoint (or checkpoint) directory.
    #[arg(long)]
    from_savepoint: Option<PathBuf>,
    /// On Ctrl-C or SIGTERM, stop with a savepoint written into this directory.
    #[arg(long)]
    savepoint_dir: Option<PathBuf>,
    /// Resume even if the checkpoint holds state that no operator or source of the job
    /// claims (e.g. a removed INSERT), dropping it (Flink's --allowNonRestoredState).
    #[arg(long)]
    allow_non_restored_state: bool,
}

fn parse_memory_size(text: &str) -> Result<usize, String> {
    weir::connectors::options::parse_memory_budget(text)
        .ok_or_else(|| format!("'{text}' is not a size (e.g. 64mb, 2gb)"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    weir::connectors::options::parse_duration(text)
        .ok_or_else(|| format!("'{text}' is not a duration (e.g. 200ms, 10s, 5m)"))
}

impl CheckpointArgs {
    /// The job's checkpoint configuration; a temporary state directory when only a savepoint
    /// is involved.
    fn config(&self) -> anyhow::Result<Option<CheckpointConfig>> {
        let wanted = self.state_dir.is_some()
            || self.checkpoint_interval.is_some()
            || self.from_savepoint.is_some()
            || self.savepoint_dir.is_some();
        if !wanted {
            return Ok(None);
        }
        let state_dir = match &self.state_dir {
            Some(dir) => dir.clone(),
            None if self.checkpoint_interval.is_some() => {
                anyhow::bail!("--checkpoint-interval needs --state-dir (where checkpoints go)")
            }
            None => std::env::temp_dir().join(format!("weir-state-{}", std::process::id())),
        };
        let mut config = CheckpointConfig::new(state_dir);
        config.interval = self.checkpoint_interval;
        config.from_savepoint = self.from_savepoint.clone();
        config.allow_non_restored_state = self.allow_non_restored_state;
        Ok(Some(config))
    }
}

/// The job Ctrl-C stops: the one running now (a script's queries run one after another,
/// and the process has one signal handler).
struct Running {
    canceller: weir::engine::runtime::JobCanceller,
    requester: Option<weir::engine::runtime::SavepointRequester>,
    savepoint_dir: Option<PathBuf>,
    /// Whether a savepoint was asked for already (a second Ctrl-C cancels).
    asked: bool,
    /// Where messages go (above the progress line, if any).
    notices: progress::Notices,
}

static RUNNING: std::sync::Mutex<Option<Running>> = std::sync::Mutex::new(None);

/// Installs the Ctrl-C / SIGTERM handler once.
fn handle_interrupts() -> anyhow::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                let Some(job) = running.as_mut() else {
                    // Between jobs (planning, connecting): nothing to stop cleanly.
                    std::process::exit(130);
                };
                match (&job.savepoint_dir, &job.requester) {
                    (Some(dir), Some(requester)) if !job.asked => {
                        job.asked = true;
                        job.notices.print(&format!(
                            "stopping with a savepoint in {} (Ctrl-C again to cancel)",
                            dir.display()
                        ));
                        if !requester.stop_with_savepoint(dir.clone()) {
                            job.canceller.cancel();
                        }
                    }
                    _ => job.canceller.cancel(),
                }
            })
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
        .context("cannot install Ctrl-C handler")
}

/// Runs a started job to its end, handling Ctrl-C / SIGTERM (savepoint first when asked);
/// its progress line, if any, is cleared as it ends, before anything else is printed.
fn supervise(
    handle: JobHandle,
    savepoint_dir: Option<PathBuf>,
    progress: Option<progress::Progress>,
) -> anyhow::Result<Option<JobResult>> {
    handle_interrupts()?;
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running {
        canceller: handle.canceller(),
        requester: handle.savepoint_requester(),
        savepoint_dir,
        asked: false,
        notices: progress
            .as_ref()
            .map(progress::Progress::notices)
            .unwrap_or_default(),
    });
    let ended = handle.join();
    if let Some(progress) = progress {
        progress.finish();
    }
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = None;
    match ended {
        Ok(result) => {
            if let Some(path) = &result.savepoint {
                eprintln!("savepoint written to {}", path.display());
            }
            Ok(Some(result))
        }
        Err(EngineError::Cancelled) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its jobs' events (info); a single job only its warnings.
    let level = match cli.command {
        Command::Server { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Run {
            sql,
            checkpoints,
            watch,
        } => run_sql(&sql, Some(&checkpoints), &watch),
        Command::Explain { sql } => run_sql(&sql, None, &WatchArgs::default()),
        command => run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            // A mistake in the SQL exits 2, a failed job 1.
            match error.downcast_ref::<SqlError>() {
                Some(sql) => ExitCode::from(sql.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// The error and its causes, `: `-separated, each once: a cause whose text its parent
/// already shows (many errors print their source) is not repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

/// `weir run` (with checkpoint options) or `weir explain` (without).
fn run_sql(
    args: &SqlArgs,
    checkpoints: Option<&CheckpointArgs>,
    watch: &WatchArgs,
) -> anyhow::Result<ExitCode> {
    let text = args.text()?;
    let mut session = Session::new();
    let actions = session.execute(&text, &|_| Arc::new(PrintSink::default()))?;
    let mut options = RunOptions::default();
    if let Some(shards) = args.shards.or(session.settings.parallelism) {
        options = options.shards(shards);
    }
    if let Some(bytes) = args
        .state_memory_budget
        .or(session.settings.state_memory_budget)
    {
        options = options.state_memory_budget(bytes);
    }
    if let Some(checkpoints) = checkpoints {
        options.checkpoint = checkpoints.config()?;
        if let (Some(config), Some(interval)) = (
            options.checkpoint.as_mut(),
            session.settings.checkpoint_interval,
        ) {
            config.interval = config.interval.or(Some(interval));
        }
        if let Some(config) = options.checkpoint.as_mut() {
            config.allow_non_restored_state |= session.settings.allow_non_restored_state;
        }
    }
    let explain = checkpoints.is_none();
    let insert = session.take_insert_job();
    let jobs = actions
        .into_iter()
        .map(|action| match action {
            Action::Query(job) => (job, explain),
            Action::Explain(job) => (job, true),
        })
        .chain(insert.map(|job| (job, explain)));
    let jobs: Vec<_> = jobs.collect();
    let running = jobs
        .iter()
        .filter(|(_, only_explain)| !only_explain)
        .count();
    let one_job_only = match (options.checkpoint.is_some(), watch.metrics_addr.is_some()) {
        (true, _) => Some("a state directory holds the checkpoints of one job"),
        (false, true) => Some("--metrics-addr serves the metrics of one job"),
        (false, false) => None,
    };
    if let (true, Some(reason)) = (running > 1, one_job_only) {
        return Err(SqlError::from(weir::sql::UserError::new(format!(
            "this script runs {running} jobs (each SELECT is one, all INSERTs together another), \
             but {reason}"
        )))
        .into());
    }
    let job_name = session.settings.job_name.clone().unwrap_or_else(|| {
        (args.file.as_ref())
            .and_then(|f| f.file_stem())
            .map_or("sql".to_string(), |s| s.to_string_lossy().into_owned())
    });
    let mut ran = false;
    for (job, only_explain) in jobs {
        ran = true;
        if only_explain {
            print!(
                "{}",
                weir::engine::runtime::explain(&job.graph, &options).map_err(SqlError::from)?
            );
            continue;
        }
        // Bound before the job starts: a port in use stops nothing half-way.
        let listener = (watch.metrics_addr)
            .map(weir_server::MetricsListener::bind)
            .transpose()?;
        let handle =
            weir::engine::runtime::start(&job.graph, options.clone()).map_err(SqlError::from)?;
        // Served while the job runs (dropped after it).
        let _metrics = match listener {
            Some(listener) => {
                let server = listener.serve(&job_name, handle.metrics().clone())?;
                eprintln!("metrics at http://{}/metrics", server.local_addr());
                Some(server)
            }
            None => None,
        };
        let progress = progress::wanted(watch.quiet, job.columns.is_some()).then(|| {
            let sources = (job.graph.nodes.iter())
                .filter(|n| matches!(n.kind, weir::engine::graph::NodeKind::Source { .. }))
                .map(|n| n.name.clone())
                .collect();
            progress::Progress::start(handle.metrics().clone(), sources)
        });
        let savepoint_dir = checkpoints.and_then(|c| c.savepoint_dir.clone());
        if supervise(handle, savepoint_dir, progress)?.is_none() {
            eprintln!("cancelled");
            return Ok(ExitCode::from(130));
        }
    }
    if !ran {
        eprintln!("nothing to run: the SQL has no INSERT INTO, SELECT or EXPLAIN");
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir server`: serves until Ctrl-C or SIGTERM, then suspends its jobs (they resume when
/// it starts again).
fn serve(
    data_dir: PathBuf,
    bind: std::net::SocketAddr,
    token: Option<String>,
    allow_path: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().context("bad data directory")?;
    let allowed_roots = match allow_path.is_empty() {
        true => vec![data_dir.clone(), std::env::current_dir()?],
        false => allow_path,
    };
    let config = weir_server::ServerConfig {
        data_dir,
        allowed_roots,
    };
    let server = weir_server::Server::start(config, bind, token)?;
    let addr = server.local_addr();
    eprintln!("Weir server at http://{addr}/ (REST API at /jobs, metrics at /metrics)");
    let stop = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&stop);
    ctrlc::set_handler(move || notify.notify_one()).context("cannot install Ctrl-C handler")?;
    server.run(async move { stop.notified().await })?;
    eprintln!("server stopped; running jobs resume at its next start");
    Ok(ExitCode::SUCCESS)
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { .. } | Command::Explain { .. } => unreachable!("handled by run_sql"),
        Command::Server {
            data_dir,
            bind,
            token,
            allow_path,
        } => serve(data_dir, bind, token, allow_path),
        Command::Submit {
            file,
            shards,
            from_savepoint,
            server,
        } => (server.client())
            .submit(&file, shards, from_savepoint.as_deref(), server.output)
            .map(|()| ExitCode::SUCCESS),
        Command::List { server } => server
            .client()
            .list(server.output)
            .map(|()| ExitCode::SUCCESS),
        Command::Status { id, server } => (server.client())
            .status(&id, server.output)
            .map(|()| ExitCode::SUCCESS),
        Command::Cancel { id, server } => (server.client())
            .cancel(&id, server.output)
            .map(|()| ExitCode::SUCCESS),
        Command::Stop {
            id,
            savepoint_dir,
            server,
        } => (server.client())
            .stop(&id, savepoint_dir.as_deref(), server.output)
            .map(|()| ExitCode::SUCCESS),
        Command::Resume { id, server } => (server.client())
            .resume(&id, server.output)
            .map(|()| ExitCode::SUCCESS),
        Command::Demo {
            events,
            auctions,
            shards,
            rate,
            output,
            explain,
            checkpoints,
        } => {
            let mut options = RunOptions::default();
            if let Some(shards) = shards {
                options = options.shards(shards);
            }
            options.checkpoint = checkpoints.config()?;
            let generator = BidGenerator::new(BidGeneratorConfig {
                events,
                auctions,
                rate_per_second: rate,
                ..BidGeneratorConfig::default()
            });
            let stream = Pipeline::new("hot-items")
                .source(generator)
                .watermark("date_time", Duration::from_secs(2))
                .key_by(["auction"])
                .window(Window::hop(Duration::from_secs(10), Duration::from_secs(2)))
                .aggregate([
                    count_all().alias("bids"),
                    max(col("price")).alias("top_price"),
                ])
                .filter(col("bids").gt_eq(lit(20)));
            let job = match output {
                Some(dir) => stream.sink(FileSink::new(FileSinkConfig::new(
                    dir,
                    FileFormat::Csv(Default::default()),
                ))),
                None => stream.sink(PrintSink::default()),
            };
            if explain {
                print!("{}", job.explain(&options)?);
                return Ok(ExitCode::SUCCESS);
            }
            let handle = job.start(options).context("cannot start the demo job")?;
            match supervise(handle, checkpoints.savepoint_dir, None)? {
                Some(result) if result.savepoint.is_some() => Ok(ExitCode::SUCCESS),
                Some(result) => {
                    let late = result
                        .metrics
                        .total(weir::engine::metrics::names::LATE_ROWS_DROPPED);
                    eprintln!("done: {events} bids, {late} late rows dropped");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("cancelled");
                    Ok(ExitCode::from(130))
                }
            }
        }
    }
}
