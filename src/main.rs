//! The `weir` command-line tool.
//!
//! `weir demo` runs the built-in "hot items" pipeline (bids from the embedded generator,
//! counted per auction in hopping windows) and prints its results. SQL subcommands
//! (`run`, `explain`) arrive with the SQL front end.
//! Ctrl-C stops a running job cleanly and exits with code 130.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir::engine::EngineError;
use weir::prelude::*;

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: a stream processing engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Print the dataflow graph instead of running it.
        #[arg(long)]
        explain: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo {
            events,
            auctions,
            shards,
            rate,
            explain,
        } => {
            let mut options = RunOptions::default();
            if let Some(shards) = shards {
                options = options.shards(shards);
            }
            let generator = BidGenerator::new(BidGeneratorConfig {
                events,
                auctions,
                rate_per_second: rate,
                ..BidGeneratorConfig::default()
            });
            let job = Pipeline::new("hot-items")
                .source(generator)
                .watermark("date_time", Duration::from_secs(2))
                .key_by(["auction"])
                .window(Window::hop(Duration::from_secs(10), Duration::from_secs(2)))
                .aggregate([
                    count_all().alias("bids"),
                    max(col("price")).alias("top_price"),
                ])
                .filter(col("bids").gt_eq(lit(20)))
                .sink(PrintSink::default());
            if explain {
                print!("{}", job.explain(&options)?);
                return Ok(ExitCode::SUCCESS);
            }
            let handle = job.start(options).context("cannot start the demo job")?;
            let canceller = handle.canceller();
            ctrlc::set_handler(move || canceller.cancel())
                .context("cannot install Ctrl-C handler")?;
            match handle.join() {
                Ok(result) => {
                    let late = result
                        .metrics
                        .total(weir::engine::metrics::names::LATE_ROWS_DROPPED);
                    eprintln!("done: {events} bids, {late} late rows dropped");
                    Ok(ExitCode::SUCCESS)
                }
                Err(EngineError::Cancelled) => {
                    eprintln!("cancelled");
                    Ok(ExitCode::from(130))
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}
