//! Decode throughput of the file formats: writes `--rows` bid rows to one file per format with
//! the Arrow writers (as other tools would), then reads each back through Weir's filesystem
//! source on one shard and reports rows/s and MB/s (= per core).
//!
//! ```text
//! cargo run --release -p weir-benches --bin formats -- --rows 5000000
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use weir::connectors::format::TIMESTAMP_FORMAT;
use weir::connectors::registry::{create_source, TableSpec};
use weir::prelude::*;
use weir_benches::{bids, peak_rss_mib};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5_000_000)]
    rows: u64,
    #[arg(long, default_value = "/tmp/weir-bench-formats")]
    dir: PathBuf,
    #[arg(long, default_value = "json,csv,parquet")]
    formats: String,
}

fn write_file(path: &Path, format: &str, rows: u64) -> anyhow::Result<()> {
    let file = BufWriter::new(File::create(path)?);
    let batches = (0..rows)
        .step_by(8192)
        .map(|first| bids(first as i64, (rows - first).min(8192) as usize));
    match format {
        "json" => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build::<_, arrow::json::writer::LineDelimited>(file);
            for batch in batches {
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
        "csv" => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(false)
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build(file);
            for batch in batches {
                writer.write(&batch)?;
            }
        }
        "parquet" => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, bids(0, 0).schema(), None)?;
            for batch in batches {
                writer.write(&batch)?;
            }
            writer.close()?;
        }
        other => anyhow::bail!("unknown format {other}"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    for format in args.formats.split(',') {
        let path = args.dir.join(format!("bids.{format}"));
        write_file(&path, format, args.rows)
            .with_context(|| format!("writing {}", path.display()))?;
        let bytes = std::fs::metadata(&path)?.len();
        let source = create_source(&TableSpec::new(
            "bids",
            bids(0, 0).schema(),
            &[
                ("connector", "filesystem"),
                ("path", path.to_str().unwrap_or_default()),
                ("format", format),
            ],
        ))?;
        let sink = BlackholeSink::new();
        let started = Instant::now();
        Pipeline::new("decode")
            .source_arc(source)
            .sink(sink.clone())
            .run(RunOptions::default().shards(1))?;
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            sink.rows() == args.rows,
            "read {} rows of {}",
            sink.rows(),
            args.rows
        );
        println!(
            "format={format} rows={} file_mb={:.0} elapsed_s={:.2} rows_per_s={:.0} mb_per_s={:.0} peak_rss_mib={:.0}",
            args.rows,
            bytes as f64 / 1e6,
            elapsed,
            args.rows as f64 / elapsed,
            bytes as f64 / 1e6 / elapsed,
            peak_rss_mib().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
