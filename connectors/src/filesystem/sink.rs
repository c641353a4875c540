//! The `filesystem` sink: rolling part files, optionally partitioned by columns.
//!
//! Each subtask writes its own part files, `part-<run>-<subtask>-<n>.<ext>`, under
//! `path/<col>=<value>/...` when partitioned (Hive style, as Flink; the partition columns are
//! not repeated inside the files; NULL goes to `__DEFAULT_PARTITION__`).
//!
//! A file is written under a hidden in-progress name (`.part-...inprogress`, which readers
//! skip) and closed when it reaches `sink.rolling-policy.file-size`, when it has been open for
//! `sink.rolling-policy.rollover-interval`, or at end of input. Closing and renaming are two
//! steps ([`PartFile::close`] gives a [`PendingFile`], [`PendingFile::commit`] renames):
//! - without checkpoints a closed file is renamed to its final name at once;
//! - with checkpoints the sink is exactly-once: at a barrier every open file is closed, and
//!   the closed files stay hidden until the checkpoint completes; the commit token lists
//!   them, and [`SinkFactory::commit`] renames them (again on recovery: a file already
//!   renamed is skipped). Before a job with checkpoints starts, hidden files that no completed
//!   checkpoint owns are deleted ([`SinkFactory::abort_uncommitted`]): they hold rows that
//!   will be written again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::{BoxError, CheckpointId};

use super::FileFormat;
use crate::error::ConnectorError;
use crate::format::{writer_text, TIMESTAMP_FORMAT};

/// Flink's name for the partition of NULL values.
pub const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

/// Configuration of a filesystem sink.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The directory to write into.
    pub path: PathBuf,
    pub format: FileFormat,
    pub partition_by: Vec<String>,
    /// Roll a part file once it reaches this many bytes (default 128 MiB, Flink's).
    pub file_size: u64,
    /// Roll a part file once it has been open this long (default 30 min, Flink's).
    pub rollover_interval: Duration,
}

impl FileSinkConfig {
    pub fn new(path: impl Into<PathBuf>, format: FileFormat) -> Self {
        FileSinkConfig {
            path: path.into(),
            format,
            partition_by: Vec::new(),
            file_size: 128 << 20,
            rollover_interval: Duration::from_secs(30 * 60),
        }
    }
}

/// The filesystem sink factory.
#[derive(Debug, Clone)]
pub struct FileSink {
    config: FileSinkConfig,
    run_id: String,
}

impl FileSink {
    pub fn new(config: FileSinkConfig) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        FileSink {
            config,
            run_id: format!("{:x}", nanos & 0xffff_ffff_ffff),
        }
    }
}

impl SinkFactory for FileSink {
    fn describe(&self) -> String {
        let partitioned = if self.config.partition_by.is_empty() {
            String::new()
        } else {
            format!(", partitioned by {}", self.config.partition_by.join(", "))
        };
        format!(
            "filesystem {} ({}{partitioned})",
            self.config.path.display(),
            self.config.format.extension()
        )
    }

    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        let schema = context.input_schema();
        let mut partition_columns = Vec::new();
        for name in &self.config.partition_by {
            let index = schema.index_of(name).map_err(|_| ConnectorError::Config {
                connector: context.operator_id.clone(),
                message: format!(
                    "partition column '{name}' is not in the sink's input ({})",
                    weir_engine::graph::column_list(schema)
                ),
            })?;
            partition_columns.push(index);
        }
        let data_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition_columns.contains(i))
            .collect();
        let data_schema = Arc::new(schema.project(&data_columns)?);
        if let FileFormat::Raw = self.config.format {
            crate::format::raw::RawDecoder::new(Arc::clone(&data_schema))?;
        }
        Ok(Box::new(FileWriter {
            config: self.config.clone(),
            checkpointing: context.checkpointing,
            closed: Vec::new(),
            name: context.operator_id.clone(),
            prefix: format!("part-{}-{}", self.run_id, context.index),
            counter: 0,
            partition_columns,
            data_columns,
            data_schema,
            open: HashMap::new(),
        }))
    }

    fn commit(&self, _checkpoint: u64, tokens: &[String]) -> Result<(), BoxError> {
        for token in tokens {
            let files: Vec<PendingFile> =
                serde_json::from_str(token).map_err(|e| ConnectorError::Config {
                    connector: self.describe(),
                    message: format!("commit token '{token}' is not a list of files: {e}"),
                })?;
            for file in files {
                // Committed before (recovery commits the restored checkpoint again).
                if !file.in_progress.exists() && file.target.exists() {
                    continue;
                }
                file.commit().map_err(|source| ConnectorError::Io {
                    connector: format!("{}: commit {}", self.describe(), file.target.display()),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn abort_uncommitted(&self) -> Result<(), BoxError> {
        remove_in_progress(&self.config.path).map_err(|source| ConnectorError::Io {
            connector: format!("{}: remove uncommitted files", self.describe()),
            source,
        })?;
        Ok(())
    }
}

/// Deletes hidden in-progress part files under `dir` (recursively, for partitions).
fn remove_in_progress(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            remove_in_progress(&entry.path())?;
        } else if name.starts_with(".part-") && name.ends_with(".inprogress") {
            tracing::info!(file = %entry.path().display(), "removing uncommitted part file");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A written part file waiting to be renamed to its final name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingFile {
    pub in_progress: PathBuf,
    pub target: PathBuf,
}

impl PendingFile {
    /// Makes the file visible under its final name.
    pub fn commit(&self) -> std::io::Result<()> {
        std::fs::rename(&self.in_progress, &self.target)
    }
}

/// Counts bytes on their way to a file (the count is shared with the [`PartFile`], as the
/// CSV writer does not lend its inner writer).
struct Counting<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder {
    Json(arrow::json::LineDelimitedWriter<Counting<BufWriter<File>>>),
    Csv(Box<arrow::csv::Writer<Counting<BufWriter<File>>>>),
    Raw(Counting<BufWriter<File>>),
    Parquet(ArrowWriter<File>),
}

/// One part file being written.
pub struct PartFile {
    pending: PendingFile,
    encoder: Encoder,
    bytes: Arc<AtomicU64>,
    opened: Instant,
}

impl PartFile {
    fn open(
        format: &FileFormat,
        schema: &SchemaRef,
        pending: PendingFile,
    ) -> Result<Self, ConnectorError> {
        let io = |source| ConnectorError::Io {
            connector: format!("filesystem sink file {}", pending.in_progress.display()),
            source,
        };
        if let Some(dir) = pending.in_progress.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = File::create(&pending.in_progress).map_err(io)?;
        let bytes = Arc::new(AtomicU64::new(0));
        let counting = || -> Result<Counting<BufWriter<File>>, ConnectorError> {
            Ok(Counting {
                inner: BufWriter::new(file.try_clone().map_err(io)?),
                bytes: Arc::clone(&bytes),
            })
        };
        let encoder = match format {
            FileFormat::DebeziumJson { .. } => {
                return Err(ConnectorError::Config {
                    connector: "filesystem sink".into(),
                    message: "files are written append-only: 'debezium-json' can only be read"
                        .into(),
                })
            }
            FileFormat::Json => Encoder::Json(
                arrow::json::WriterBuilder::new()
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                    .build(counting()?),
            ),
            FileFormat::Csv(options) => Encoder::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(options.header)
                    .with_delimiter(options.delimiter)
                    .with_quote(options.quote)
                    .with_null(options.null_literal.clone().unwrap_or_default())
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                    .build(counting()?),
            )),
            FileFormat::Raw => Encoder::Raw(counting()?),
            FileFormat::Parquet => Encoder::Parquet(
                ArrowWriter::try_new(file, SchemaRef::clone(schema), None).map_err(|e| {
                    ConnectorError::Config {
                        connector: "filesystem sink".into(),
                        message: e.to_string(),
                    }
                })?,
            ),
        };
        Ok(PartFile {
            pending,
            encoder,
            bytes,
            opened: Instant::now(),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), BoxError> {
        match &mut self.encoder {
            Encoder::Json(writer) => writer.write(&writer_text(batch, false)?)?,
            Encoder::Csv(writer) => writer.write(&writer_text(batch, true)?)?,
            Encoder::Raw(writer) => {
                let formatter =
                    ArrayFormatter::try_new(batch.column(0), &FormatOptions::default())?;
                for row in 0..batch.num_rows() {
                    writeln!(writer, "{}", formatter.value(row))?;
                }
            }
            Encoder::Parquet(writer) => writer.write(batch)?,
        }
        Ok(())
    }

    fn bytes(&self) -> u64 {
        match &self.encoder {
            Encoder::Parquet(writer) => (writer.bytes_written() + writer.in_progress_size()) as u64,
            _ => self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Finishes the file's content; it still has its in-progress name.
    pub fn close(self) -> Result<PendingFile, BoxError> {
        match self.encoder {
            Encoder::Json(mut writer) => {
                writer.finish()?;
                writer.into_inner().inner.into_inner()?.sync_all()?;
            }
            Encoder::Csv(writer) => writer.into_inner().inner.into_inner()?.sync_all()?,
            Encoder::Raw(writer) => writer.inner.into_inner()?.sync_all()?,
            Encoder::Parquet(writer) => writer.close().map(|_| ())?,
        }
        Ok(self.pending)
    }
}

/// One sink subtask's open part files, by partition directory.
struct FileWriter {
    config: FileSinkConfig,
    /// With checkpoints, closed files wait for the checkpoint (in `closed`).
    checkpointing: bool,
    closed: Vec<PendingFile>,
    name: String,
    prefix: String,
    counter: u64,
    partition_columns: Vec<usize>,
    data_columns: Vec<usize>,
    data_schema: SchemaRef,
    open: HashMap<PathBuf, PartFile>,
}

impl FileWriter {
    /// Splits `batch` by partition directory.
    fn partitions(&self, batch: &RecordBatch) -> Result<Vec<(PathBuf, RecordBatch)>, BoxError> {
        let data = batch.project(&self.data_columns)?;
        let data = RecordBatch::try_new(Arc::clone(&self.data_schema), data.columns().to_vec())?;
        if self.partition_columns.is_empty() {
            return Ok(vec![(self.config.path.clone(), data)]);
        }
        let schema: &Schema = batch.schema_ref();
        let options = FormatOptions::default();
        let formatters = self
            .partition_columns
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows: HashMap<PathBuf, Vec<u32>> = HashMap::new();
        for row in 0..batch.num_rows() {
            let mut dir = self.config.path.clone();
            for (formatter, &column) in formatters.iter().zip(&self.partition_columns) {
                let value = if batch.column(column).is_null(row) {
                    DEFAULT_PARTITION.to_string()
                } else {
                    formatter.value(row).to_string()
                };
                dir.push(format!("{}={}", schema.field(column).name(), value));
            }
            rows.entry(dir).or_default().push(row as u32);
        }
        rows.into_iter()
            .map(|(dir, idx)| Ok((dir, take_record_batch(&data, &UInt32Array::from(idx))?)))
            .collect()
    }

    fn new_file(&mut self, dir: &Path) -> Result<PartFile, ConnectorError> {
        let ext = self.config.format.extension();
        let name = format!("{}-{}.{ext}", self.prefix, self.counter);
        self.counter += 1;
        let pending = PendingFile {
            in_progress: dir.join(format!(".{name}.inprogress")),
            target: dir.join(name),
        };
        PartFile::open(&self.config.format, &self.data_schema, pending)
    }

    fn roll(&mut self, dir: &Path) -> Result<(), BoxError> {
        if let Some(file) = self.open.remove(dir) {
            let pending = file.close()?;
            if self.checkpointing {
                self.closed.push(pending);
            } else {
                pending.commit().map_err(|source| ConnectorError::Io {
                    connector: self.name.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn roll_all(&mut self) -> Result<(), BoxError> {
        let dirs: Vec<PathBuf> = self.open.keys().cloned().collect();
        for dir in dirs {
            self.roll(&dir)?;
        }
        Ok(())
    }
}

impl SinkWriter for FileWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            for (dir, part) in self.partitions(&batch)? {
                if !self.open.contains_key(&dir) {
                    let file = self.new_file(&dir)?;
                    self.open.insert(dir.clone(), file);
                }
                let file = self.open.get_mut(&dir).expect("opened above");
                file.write(&part)?;
                if file.bytes() >= self.config.file_size
                    || file.opened.elapsed() >= self.config.rollover_interval
                {
                    self.roll(&dir)?;
                }
            }
            Ok(())
        })
    }

    fn on_barrier(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<Option<String>, BoxError>> {
        Box::pin(async move {
            self.roll_all()?;
            if self.closed.is_empty() {
                return Ok(None);
            }
            let token = serde_json::to_string(&self.closed)?;
            self.closed.clear();
            Ok(Some(token))
        })
    }

    /// With checkpoints, input ends after a last barrier, so nothing is open any more.
    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { self.roll_all() })
    }
}
