//! The `filesystem` source: reads the files a path names, split across subtasks.
//!
//! The unit of work is a file, or for line formats a block (32 MiB by default) of a larger
//! file (its lines are those that start in the block), so one big file is read by every
//! subtask. Units are dealt to splits by a hash of the path (consecutive blocks of a file go
//! to consecutive splits) and keep their split when a watched directory is listed again.
//!
//! Line formats are read in chunks of `batch_size` lines and decoded in one pass per chunk;
//! bad records go through the source's [`BadRecordHandler`] with their `file:line` (in blocks
//! after the first: the line counted from the block's first byte). Parquet files are read
//! whole, with only the declared columns (projection pushdown), cast to the declared types.
//! Bounded by default: a split ends after its last unit. With a monitor interval the split
//! keeps listing the path and reads every new file once; it never ends.
//!
//! [`FileReader::file_positions`] tells, per unit, the byte offset and line reached.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{Seek, SeekFrom};
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

use super::lines::LineReader;
use super::{list_files, split_of, FileFormat};
use crate::error::ConnectorError;
use crate::format::bad_records::{BadRecordHandler, BadRecordPolicy};
use crate::format::csv::CsvDecoder;
use crate::format::debezium::{expand_updates, DebeziumDecoder};
use crate::format::json::JsonDecoder;
use crate::format::raw::RawDecoder;
use crate::format::{decode_chunk, LineDecoder};
use weir_engine::changelog::{with_row_kind, ChangelogMode};

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
    /// Line-format files larger than this are read in blocks of this many bytes, each by one
    /// split ([`BLOCK_SIZE`] by default).
    pub block_size: u64,
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
            FileFormat::DebeziumJson { schema_include } => {
                Some(Box::new(DebeziumDecoder::new(schema, *schema_include)))
            }
        })
    }
}

impl SourceFactory for FileSource {
    fn schema(&self) -> SchemaRef {
        match self.config.format {
            FileFormat::DebeziumJson { .. } => with_row_kind(&self.config.schema),
            _ => SchemaRef::clone(&self.config.schema),
        }
    }

    fn changelog(&self) -> ChangelogMode {
        match self.config.format {
            FileFormat::DebeziumJson { .. } => ChangelogMode::All,
            _ => ChangelogMode::InsertOnly,
        }
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
        let counter =
            |name: &'static str| split.metrics.counter(&split.source_id, split.index, name);
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
            finished: Vec::new(),
        }))
    }
}

/// The default block size: line-format files larger than this are read in blocks of this
/// size, each by one split.
pub const BLOCK_SIZE: u64 = 32 << 20;

/// What one split reads at a time: a whole file, or one block of a large file.
#[derive(Debug, Clone)]
struct FileUnit {
    path: PathBuf,
    /// Block number and its byte range; `None` for a whole file.
    block: Option<(u64, u64, u64)>,
}

impl FileUnit {
    /// The unit's name in stored positions: the path, plus `#block` for blocks.
    fn key(&self) -> String {
        match self.block {
            None => self.path.display().to_string(),
            Some((block, ..)) => format!("{}#{block}", self.path.display()),
        }
    }

    /// Where record `line` of this unit is, for messages.
    fn position(&self, line: u64) -> String {
        match self.block {
            Some((_, start, _)) if start > 0 => {
                format!(
                    "{} (line {line} of the block at byte {start})",
                    self.path.display()
                )
            }
            _ => format!("{}:{line}", self.path.display()),
        }
    }
}

/// An open unit and how far it has been read.
enum OpenFile {
    Lines {
        unit: FileUnit,
        reader: LineReader<File>,
        /// Lines consumed so far (the next line is `line + 1`).
        line: u64,
    },
    Parquet {
        unit: FileUnit,
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
    pending: VecDeque<FileUnit>,
    /// Keys of the units listed so far.
    seen: HashSet<String>,
    current: Option<OpenFile>,
    listed: bool,
    /// Keys of the units read to the end.
    finished: Vec<String>,
}

/// Stored position of a file read to the end.
const DONE: &str = "done";

impl FileReader {
    /// Where reading stands, by unit (file path, `path#block` for blocks): `done`,
    /// `<byte offset> <line>` for line formats, or `<rows>` for Parquet. Units not started yet
    /// are not listed.
    pub fn file_positions(&self) -> Positions {
        let mut positions: Positions = self
            .finished
            .iter()
            .map(|key| (key.clone(), DONE.to_string()))
            .collect();
        match &self.current {
            Some(OpenFile::Lines { unit, reader, line }) => {
                positions.insert(unit.key(), format!("{} {line}", reader.offset()))
            }
            Some(OpenFile::Parquet { unit, rows, .. }) => {
                positions.insert(unit.key(), rows.to_string())
            }
            None => None,
        };
        positions
    }

    /// The stored position of the unit named `key` when resuming.
    fn restored(&self, key: &str) -> Option<&str> {
        let positions = self.split.restored.as_deref()?;
        positions.get(key).map(String::as_str)
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
            let size = match self.config.format {
                FileFormat::Parquet => 0,
                _ => std::fs::metadata(&file)
                    .map_err(|e| self.io(&file, e))?
                    .len(),
            };
            let block_size = self.config.block_size.max(1);
            let units: Vec<FileUnit> = if size > block_size {
                (0..size.div_ceil(block_size))
                    .map(|block| FileUnit {
                        path: file.clone(),
                        block: Some((
                            block,
                            block * block_size,
                            ((block + 1) * block_size).min(size),
                        )),
                    })
                    .collect()
            } else {
                vec![FileUnit {
                    path: file.clone(),
                    block: None,
                }]
            };
            for unit in units {
                let block = unit.block.map_or(0, |(block, ..)| block);
                if split_of(&file, block, self.split.parallelism) != self.split.index
                    || !self.seen.insert(unit.key())
                {
                    continue;
                }
                if self.restored(&unit.key()) == Some(DONE) {
                    self.finished.push(unit.key());
                } else {
                    self.pending.push_back(unit);
                }
            }
        }
        Ok(())
    }

    fn open(&self, unit: FileUnit) -> Result<OpenFile, ConnectorError> {
        let path = &unit.path;
        let mut file = File::open(path).map_err(|e| self.io(path, e))?;
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
            let skip = match self.restored(&unit.key()) {
                Some(rows) => rows.parse().map_err(|_| self.bad_position(path, rows))?,
                None => 0,
            };
            let reader = builder
                .with_projection(mask)
                .with_offset(skip)
                .with_batch_size(self.config.batch_size)
                .build()
                .map_err(parquet_error)?;
            return Ok(OpenFile::Parquet {
                unit,
                reader,
                rows: skip as u64,
            });
        }
        let (start, end) = unit
            .block
            .map_or((0, u64::MAX), |(_, start, end)| (start, end));
        let size = file.metadata().map_err(|e| self.io(path, e))?.len();
        // The bytes from `offset` to the end of the unit (and the tail of its last line).
        let expected = |offset: u64| end.min(size).saturating_sub(offset) + 4096;
        let seek = |file: &mut File, offset: u64| {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| self.io(path, e))
        };
        let reader = if let Some(position) = self.restored(&unit.key()) {
            let parsed = position
                .split_once(' ')
                .and_then(|(o, l)| Some((o.parse::<u64>().ok()?, l.parse::<u64>().ok()?)));
            let (offset, line) = parsed.ok_or_else(|| self.bad_position(path, position))?;
            seek(&mut file, offset)?;
            (LineReader::new(file, offset, end, expected(offset)), line)
        } else if start > 0 {
            // The line running into the block belongs to the previous one: start one byte
            // early and skip through the first newline.
            seek(&mut file, start - 1)?;
            let mut reader = LineReader::new(file, start - 1, end, expected(start));
            reader.skip_line().map_err(|e| self.io(path, e))?;
            (reader, 0)
        } else {
            let mut reader = LineReader::new(file, 0, end, expected(0));
            let mut line = 0;
            if matches!(&self.config.format, FileFormat::Csv(options) if options.header) {
                reader.skip_line().map_err(|e| self.io(path, e))?;
                line = 1;
            }
            (reader, line)
        };
        let (reader, line) = reader;
        Ok(OpenFile::Lines { unit, reader, line })
    }

    /// The next batch of the current file, or `None` at its end.
    fn read(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let batch_size = self.config.batch_size.max(1);
        let Some(current) = self.current.as_mut() else {
            return Ok(None);
        };
        match current {
            OpenFile::Parquet { unit, reader, rows } => {
                let Some(batch) = reader.next() else {
                    return Ok(None);
                };
                let path = unit.path.clone();
                let batch = batch.map_err(|e| ConnectorError::Arrow {
                    connector: format!("{}: file {}", self.split.source_id, path.display()),
                    source: e,
                })?;
                *rows += batch.num_rows() as u64;
                self.conform(batch, &path).map(Some)
            }
            OpenFile::Lines { unit, reader, line } => {
                let source = unit.path.display().to_string();
                let chunk =
                    reader
                        .next_chunk(batch_size, line)
                        .map_err(|e| ConnectorError::Io {
                            connector: format!("{}: file {source}", self.split.source_id),
                            source: e,
                        })?;
                let Some(chunk) = chunk else {
                    return Ok(None);
                };
                self.bytes_read.add(chunk.bytes.len() as u64);
                let decoder = self.decoder.as_mut().expect("line formats have a decoder");
                let position = |i: usize| unit.position(chunk.lines[i]);
                let decoded =
                    decode_chunk(decoder.as_mut(), chunk.bytes, &position).map_err(|e| {
                        ConnectorError::Arrow {
                            connector: format!("{}: file {source}", self.split.source_id),
                            source: e,
                        }
                    })?;
                self.handler.handle(decoded.bad)?;
                expand_updates(&decoded.batch)
                    .map(Some)
                    .map_err(|e| ConnectorError::Arrow {
                        connector: format!("{}: file {source}", self.split.source_id),
                        source: e,
                    })
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
                    if let Some(OpenFile::Lines { unit, .. } | OpenFile::Parquet { unit, .. }) =
                        self.current.take()
                    {
                        self.finished.push(unit.key());
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
