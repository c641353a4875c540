//! The `filesystem` source: reads the files a path names, split across subtasks.
//!
//! Line formats are read in chunks of `batch_size` lines and decoded in one pass per chunk;
//! bad records go through the source's [`BadRecordHandler`] with their `file:line`. Parquet
//! files are read with only the declared columns (projection pushdown), cast to the declared
//! types. Bounded by default: a split ends after its last file. With a monitor interval the
//! split keeps listing the path and reads every new file once; it never ends.
//!
//! [`FileReader::position`] tells the file, byte offset and line reached.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use weir_engine::metrics::Counter;
use weir_engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir_engine::BoxError;

use super::{list_files, split_of, FileFormat};
use crate::error::ConnectorError;
use crate::format::bad_records::{BadRecordHandler, BadRecordPolicy};
use crate::format::csv::CsvDecoder;
use crate::format::json::JsonDecoder;
use crate::format::raw::RawDecoder;
use crate::format::{decode_chunk, LineDecoder};

/// Configuration of a filesystem source.
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub path: String,
    pub format: FileFormat,
    pub schema: SchemaRef,
    /// Keep watching `path` for new files at this interval.
    pub monitor_interval: Option<Duration>,
    pub batch_size: usize,
    pub on_error: BadRecordPolicy,
}

/// The filesystem source factory.
#[derive(Debug, Clone)]
pub struct FileSource {
    config: FileSourceConfig,
}

impl FileSource {
    /// Checks that the path exists (bounded sources) and the schema fits the format.
    pub fn new(config: FileSourceConfig) -> Result<Self, ConnectorError> {
        if config.monitor_interval.is_none() {
            list_files(&config.path)?;
        }
        let source = FileSource { config };
        source.line_decoder().map(|_| ())?;
        Ok(source)
    }

    fn line_decoder(&self) -> Result<Option<Box<dyn LineDecoder>>, ConnectorError> {
        let schema = SchemaRef::clone(&self.config.schema);
        let arrow = |source| ConnectorError::Arrow {
            connector: "filesystem".into(),
            source,
        };
        Ok(match &self.config.format {
            FileFormat::Json => Some(Box::new(JsonDecoder::new(schema))),
            FileFormat::Csv(options) => Some(Box::new(
                CsvDecoder::new(schema, options.clone()).map_err(arrow)?,
            )),
            FileFormat::Raw => Some(Box::new(RawDecoder::new(schema).map_err(arrow)?)),
            FileFormat::Parquet => None,
        })
    }
}

impl SourceFactory for FileSource {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.config.schema)
    }

    fn describe(&self) -> String {
        format!(
            "filesystem {} ({}{})",
            self.config.path,
            self.config.format.extension(),
            self.config
                .monitor_interval
                .map(|i| format!(", watching every {i:?}"))
                .unwrap_or_default()
        )
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let counter = |name: &str| split.metrics.counter(&split.source_id, name);
        let handler = BadRecordHandler {
            source: split.source_id.clone(),
            policy: self.config.on_error.clone(),
            skipped: counter(crate::metric_names::BAD_RECORDS_SKIPPED),
            dead_lettered: counter(crate::metric_names::BAD_RECORDS_DEAD_LETTERED),
        };
        Ok(Box::new(FileReader {
            config: self.config.clone(),
            decoder: self.line_decoder()?,
            handler,
            bytes_read: counter(crate::metric_names::BYTES_READ),
            split,
            pending: VecDeque::new(),
            seen: HashSet::new(),
            current: None,
            listed: false,
            chunk: Vec::new(),
            finished: Vec::new(),
        }))
    }
}

/// An open file and how far it has been read.
enum OpenFile {
    Lines {
        path: PathBuf,
        reader: BufReader<File>,
        /// Lines consumed so far (the next line is `line + 1`).
        line: u64,
        offset: u64,
    },
    Parquet {
        path: PathBuf,
        reader: ParquetRecordBatchReader,
        rows: u64,
    },
}

/// Reads the files of one split.
pub struct FileReader {
    config: FileSourceConfig,
    decoder: Option<Box<dyn LineDecoder>>,
    handler: BadRecordHandler,
    bytes_read: Counter,
    split: SplitContext,
    pending: VecDeque<PathBuf>,
    seen: HashSet<PathBuf>,
    current: Option<OpenFile>,
    listed: bool,
    chunk: Vec<u8>,
    /// Files read to the end.
    finished: Vec<PathBuf>,
}

/// Bytes read from a file at a time.
const READ_BUFFER: usize = 1 << 20;

/// Stored position of a file read to the end.
const DONE: &str = "done";

impl FileReader {
    /// Where reading stands, by file: `done`, `<byte offset> <line>` for line formats, or
    /// `<rows>` for Parquet. Files not started yet are not listed.
    pub fn file_positions(&self) -> Positions {
        let mut positions: Positions = self
            .finished
            .iter()
            .map(|p| (p.display().to_string(), DONE.to_string()))
            .collect();
        match &self.current {
            Some(OpenFile::Lines {
                path, line, offset, ..
            }) => positions.insert(path.display().to_string(), format!("{offset} {line}")),
            Some(OpenFile::Parquet { path, rows, .. }) => {
                positions.insert(path.display().to_string(), rows.to_string())
            }
            None => None,
        };
        positions
    }

    /// The stored position of `path` when resuming.
    fn restored(&self, path: &std::path::Path) -> Option<&str> {
        let positions = self.split.restored.as_deref()?;
        positions
            .get(&path.display().to_string())
            .map(String::as_str)
    }

    /// A stored position that is not one this reader writes.
    fn bad_position(&self, path: &std::path::Path, position: &str) -> ConnectorError {
        ConnectorError::Config {
            connector: self.split.source_id.clone(),
            message: format!(
                "stored position '{position}' of file {} is not a file position",
                path.display()
            ),
        }
    }

    fn io(&self, path: &std::path::Path, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io {
            connector: format!("{}: file {}", self.split.source_id, path.display()),
            source,
        }
    }

    /// Adds files of this split not seen before to the queue.
    fn list(&mut self) -> Result<(), ConnectorError> {
        let files = match list_files(&self.config.path) {
            Ok(files) => files,
            // A watched directory may not exist yet.
            Err(ConnectorError::Config { .. }) if self.config.monitor_interval.is_some() => {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        for file in files {
            if split_of(&file, self.split.parallelism) == self.split.index
                && self.seen.insert(file.clone())
            {
                if self.restored(&file) == Some(DONE) {
                    self.finished.push(file);
                } else {
                    self.pending.push_back(file);
                }
            }
        }
        Ok(())
    }

    fn open(&self, path: PathBuf) -> Result<OpenFile, ConnectorError> {
        let file = File::open(&path).map_err(|e| self.io(&path, e))?;
        if self.config.format == FileFormat::Parquet {
            let parquet_error = |e: parquet::errors::ParquetError| ConnectorError::Config {
                connector: self.split.source_id.clone(),
                message: format!("file {}: {e}", path.display()),
            };
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
            let file_schema = builder.schema();
            for field in self.config.schema.fields() {
                if file_schema.field_with_name(field.name()).is_err() {
                    return Err(ConnectorError::Config {
                        connector: self.split.source_id.clone(),
                        message: format!(
                            "file {} has no column '{}'",
                            path.display(),
                            field.name()
                        ),
                    });
                }
            }
            let names = self
                .config
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str());
            let mask = ProjectionMask::columns(builder.parquet_schema(), names);
            let skip = match self.restored(&path) {
                Some(rows) => rows.parse().map_err(|_| self.bad_position(&path, rows))?,
                None => 0,
            };
            let reader = builder
                .with_projection(mask)
                .with_offset(skip)
                .with_batch_size(self.config.batch_size)
                .build()
                .map_err(parquet_error)?;
            return Ok(OpenFile::Parquet {
                path,
                reader,
                rows: skip as u64,
            });
        }
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let (mut line, mut offset) = (0, 0);
        if let FileFormat::Csv(options) = &self.config.format {
            if options.header {
                let mut header = Vec::new();
                offset = reader
                    .read_until(b'\n', &mut header)
                    .map_err(|e| self.io(&path, e))? as u64;
                line = 1;
            }
        }
        if let Some(position) = self.restored(&path) {
            let parsed = position
                .split_once(' ')
                .and_then(|(o, l)| Some((o.parse::<u64>().ok()?, l.parse::<u64>().ok()?)));
            (offset, line) = parsed.ok_or_else(|| self.bad_position(&path, position))?;
            reader
                .seek(SeekFrom::Start(offset))
                .map_err(|e| self.io(&path, e))?;
        }
        Ok(OpenFile::Lines {
            path,
            reader,
            line,
            offset,
        })
    }

    /// The next batch of the current file, or `None` at its end.
    fn read(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let batch_size = self.config.batch_size.max(1);
        let Some(current) = self.current.as_mut() else {
            return Ok(None);
        };
        match current {
            OpenFile::Parquet { path, reader, rows } => {
                let Some(batch) = reader.next() else {
                    return Ok(None);
                };
                let path = path.clone();
                let batch = batch.map_err(|e| ConnectorError::Arrow {
                    connector: format!("{}: file {}", self.split.source_id, path.display()),
                    source: e,
                })?;
                *rows += batch.num_rows() as u64;
                self.conform(batch, &path).map(Some)
            }
            OpenFile::Lines {
                path,
                reader,
                line,
                offset,
            } => {
                self.chunk.clear();
                let mut line_numbers = Vec::with_capacity(batch_size);
                let io = |source| ConnectorError::Io {
                    connector: format!("{}: file {}", self.split.source_id, path.display()),
                    source,
                };
                while line_numbers.len() < batch_size {
                    let buffer = reader.fill_buf().map_err(io)?;
                    if buffer.is_empty() {
                        break;
                    }
                    // Whole lines of the buffer, copied in runs between blank lines.
                    let (mut consumed, mut run_start) = (0, 0);
                    for end in memchr::memchr_iter(b'\n', buffer) {
                        *line += 1;
                        if buffer[consumed..end].iter().all(u8::is_ascii_whitespace) {
                            self.chunk.extend_from_slice(&buffer[run_start..consumed]);
                            run_start = end + 1;
                        } else {
                            line_numbers.push(*line);
                        }
                        consumed = end + 1;
                        if line_numbers.len() == batch_size {
                            break;
                        }
                    }
                    self.chunk.extend_from_slice(&buffer[run_start..consumed]);
                    if consumed > 0 {
                        reader.consume(consumed);
                        *offset += consumed as u64;
                        continue;
                    }
                    // No complete line buffered: a line longer than the buffer, or a last
                    // line without `\n`.
                    let before = self.chunk.len();
                    let read = reader.read_until(b'\n', &mut self.chunk).map_err(io)?;
                    *line += 1;
                    *offset += read as u64;
                    if self.chunk[before..].iter().all(u8::is_ascii_whitespace) {
                        self.chunk.truncate(before);
                        continue;
                    }
                    if self.chunk.last() != Some(&b'\n') {
                        self.chunk.push(b'\n');
                    }
                    line_numbers.push(*line);
                }
                self.bytes_read.add(self.chunk.len() as u64);
                if line_numbers.is_empty() {
                    return Ok(None);
                }
                let source = path.display().to_string();
                let decoder = self.decoder.as_mut().expect("line formats have a decoder");
                let position = |i: usize| format!("{source}:{}", line_numbers[i]);
                let decoded =
                    decode_chunk(decoder.as_mut(), &self.chunk, &position).map_err(|e| {
                        ConnectorError::Arrow {
                            connector: format!("{}: file {source}", self.split.source_id),
                            source: e,
                        }
                    })?;
                self.handler.handle(decoded.bad)?;
                Ok(Some(decoded.batch))
            }
        }
    }

    /// Puts Parquet columns in the declared order and types.
    fn conform(
        &self,
        batch: RecordBatch,
        path: &std::path::Path,
    ) -> Result<RecordBatch, ConnectorError> {
        let arrow = |source| ConnectorError::Arrow {
            connector: format!("{}: file {}", self.split.source_id, path.display()),
            source,
        };
        let columns = self
            .config
            .schema
            .fields()
            .iter()
            .map(|field| {
                let column = batch
                    .column_by_name(field.name())
                    .expect("projected columns are present");
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow)?;
        RecordBatch::try_new(SchemaRef::clone(&self.config.schema), columns).map_err(arrow)
    }

    async fn next(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            if self.current.is_none() {
                if !self.listed {
                    self.list()?;
                    self.listed = true;
                }
                match self.pending.pop_front() {
                    Some(path) => self.current = Some(self.open(path)?),
                    None => match self.config.monitor_interval {
                        Some(interval) => {
                            tokio::time::sleep(interval).await;
                            self.list()?;
                            continue;
                        }
                        None => return Ok(None),
                    },
                }
            }
            match self.read()? {
                Some(batch) if batch.num_rows() > 0 => return Ok(Some(batch)),
                Some(_) => continue,
                None => {
                    if let Some(OpenFile::Lines { path, .. } | OpenFile::Parquet { path, .. }) =
                        self.current.take()
                    {
                        self.finished.push(path);
                    }
                }
            }
        }
    }
}

impl SourceReader for FileReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(self.next().await?.map(Into::into))
        })
    }

    fn positions(&self) -> Positions {
        self.file_positions()
    }
}
