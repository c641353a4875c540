//! The connector registry: find a connector by name and build it from a table's options.
//!
//! A table is a name, an Arrow schema, a string map of options (what SQL's `WITH (...)` holds,
//! including `'connector' = '...'`) and its partition columns. [`create_source`] and
//! [`create_sink`] validate the options against the connector's [`OptionSpec`] table first,
//! so every mistake is reported before the job starts, naming the option.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use weir_engine::sink::SinkFactory;
use weir_engine::source::SourceFactory;

use crate::blackhole::BlackholeSink;
use crate::error::ConnectorError;
use crate::filesystem::sink::{FileSink, FileSinkConfig};
use crate::filesystem::source::{FileSource, FileSourceConfig};
use crate::filesystem::FileFormat;
use crate::format::bad_records::{BadRecordPolicy, DeadLetterFile};
use crate::format::csv::CsvOptions;
use crate::options::{OptionKind, OptionSpec, Options};
use crate::print::PrintSink;

/// A table as the SQL layer (or a program) declares it.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub schema: SchemaRef,
    /// All options, including `connector`.
    pub options: BTreeMap<String, String>,
    pub partition_by: Vec<String>,
}

impl TableSpec {
    pub fn new(name: impl Into<String>, schema: SchemaRef, options: &[(&str, &str)]) -> Self {
        TableSpec {
            name: name.into(),
            schema,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            partition_by: Vec::new(),
        }
    }

    fn connector(&self) -> Result<(String, BTreeMap<String, String>), ConnectorError> {
        let mut options = self.options.clone();
        let connector = options
            .remove("connector")
            .ok_or_else(|| ConnectorError::Config {
                connector: format!("table '{}'", self.name),
                message: format!(
                    "missing option 'connector'; known connectors: {}",
                    CONNECTORS.join(", ")
                ),
            })?;
        Ok((connector.trim().to_ascii_lowercase(), options))
    }
}

/// Names of the built-in connectors.
pub const CONNECTORS: &[&str] = &["filesystem", "datagen", "nexmark", "print", "blackhole"];

const FORMAT_ERROR_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "format.on-error",
        OptionKind::Enum(&["fail", "skip", "dead-letter"]),
        "what to do with a record that cannot be decoded (default fail)",
    ),
    OptionSpec::optional(
        "format.dead-letter.path",
        OptionKind::String,
        "file that receives bad records with format.on-error = dead-letter",
    ),
    OptionSpec::optional(
        "json.ignore-parse-errors",
        OptionKind::Boolean,
        "skip bad JSON records",
    ),
    OptionSpec::optional(
        "csv.ignore-parse-errors",
        OptionKind::Boolean,
        "skip bad CSV records",
    ),
];

const FILESYSTEM_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("path", OptionKind::String, "a file, a directory or a glob"),
    OptionSpec::required(
        "format",
        OptionKind::Enum(&["json", "csv", "parquet", "raw"]),
        "the file format",
    ),
    OptionSpec::optional(
        "source.monitor-interval",
        OptionKind::Duration,
        "keep watching the path for new files at this interval",
    ),
    OptionSpec::optional(
        "sink.rolling-policy.file-size",
        OptionKind::MemorySize,
        "roll part files at this size (default 128MB)",
    ),
    OptionSpec::optional(
        "sink.rolling-policy.rollover-interval",
        OptionKind::Duration,
        "roll part files open this long (default 30min)",
    ),
    OptionSpec::optional("csv.field-delimiter", OptionKind::Char, "CSV delimiter (default ,)"),
    OptionSpec::optional("csv.quote-character", OptionKind::Char, "CSV quote (default \")"),
    OptionSpec::optional("csv.null-literal", OptionKind::String, "text that means NULL in CSV"),
    OptionSpec::optional(
        "csv.header",
        OptionKind::Boolean,
        "files start with a header line (skipped when reading, written when writing); default false",
    ),
    OptionSpec::optional("scan.batch-size", OptionKind::Integer, "rows per batch read (default 4096)"),
];

fn validate(
    table: &TableSpec,
    connector: &str,
    specs: &[&[OptionSpec]],
    options: &BTreeMap<String, String>,
) -> Result<Options, ConnectorError> {
    let all: Vec<OptionSpec> = specs.iter().flat_map(|s| s.iter().copied()).collect();
    Options::validate(connector, &all, options).map_err(|e| match e {
        ConnectorError::Config { connector, message } => ConnectorError::Config {
            connector: format!("table '{}' ({connector})", table.name),
            message,
        },
        other => other,
    })
}

/// The bad-record policy the options ask for.
pub fn bad_record_policy(options: &Options) -> Result<BadRecordPolicy, ConnectorError> {
    let ignore = options.boolean("json.ignore-parse-errors") == Some(true)
        || options.boolean("csv.ignore-parse-errors") == Some(true);
    match options.word("format.on-error").as_deref() {
        Some("dead-letter") => {
            let path =
                options
                    .get("format.dead-letter.path")
                    .ok_or_else(|| ConnectorError::Config {
                        connector: options.connector().to_string(),
                        message: "format.on-error = dead-letter needs 'format.dead-letter.path'"
                            .into(),
                    })?;
            Ok(BadRecordPolicy::DeadLetter(DeadLetterFile::new(path)))
        }
        Some("skip") => Ok(BadRecordPolicy::Skip),
        Some(_) => Ok(BadRecordPolicy::Fail),
        None if ignore => Ok(BadRecordPolicy::Skip),
        None => Ok(BadRecordPolicy::Fail),
    }
}

fn file_format(options: &Options) -> Result<FileFormat, ConnectorError> {
    Ok(match options.word("format").as_deref() {
        Some("json") => FileFormat::Json,
        Some("parquet") => FileFormat::Parquet,
        Some("raw") => FileFormat::Raw,
        _ => FileFormat::Csv(CsvOptions {
            delimiter: options.byte("csv.field-delimiter").unwrap_or(b','),
            quote: options.byte("csv.quote-character").unwrap_or(b'"'),
            null_literal: options.get("csv.null-literal").map(str::to_string),
            header: options.boolean("csv.header").unwrap_or(false),
        }),
    })
}

/// Builds the source `table` declares.
pub fn create_source(table: &TableSpec) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
    let (connector, options) = table.connector()?;
    match connector.as_str() {
        "filesystem" => {
            let options = validate(
                table,
                "filesystem",
                &[FILESYSTEM_OPTIONS, FORMAT_ERROR_OPTIONS],
                &options,
            )?;
            Ok(Arc::new(FileSource::new(FileSourceConfig {
                path: options.require("path")?.to_string(),
                format: file_format(&options)?,
                schema: SchemaRef::clone(&table.schema),
                monitor_interval: options.duration("source.monitor-interval"),
                batch_size: options.integer("scan.batch-size").unwrap_or(4096).max(1) as usize,
                on_error: bad_record_policy(&options)?,
            })?))
        }
        "datagen" => Ok(Arc::new(crate::datagen::DataGen::from_options(
            SchemaRef::clone(&table.schema),
            &validate(table, "datagen", &[crate::datagen::OPTIONS], &options)?,
        )?)),
        "nexmark" => Ok(Arc::new(crate::nexmark::NexmarkSource::from_options(
            SchemaRef::clone(&table.schema),
            &validate(table, "nexmark", &[crate::nexmark::OPTIONS], &options)?,
        )?)),
        "print" | "blackhole" => Err(ConnectorError::Config {
            connector: format!("table '{}' ({connector})", table.name),
            message: "this connector can only be written to".into(),
        }),
        other => Err(unknown(table, other)),
    }
}

/// Builds the sink `table` declares.
pub fn create_sink(table: &TableSpec) -> Result<Arc<dyn SinkFactory>, ConnectorError> {
    let (connector, options) = table.connector()?;
    match connector.as_str() {
        "filesystem" => {
            let options = validate(table, "filesystem", &[FILESYSTEM_OPTIONS], &options)?;
            let mut config = FileSinkConfig::new(options.require("path")?, file_format(&options)?);
            config.partition_by = table.partition_by.clone();
            if let Some(size) = options.memory_size("sink.rolling-policy.file-size") {
                config.file_size = size;
            }
            if let Some(interval) = options.duration("sink.rolling-policy.rollover-interval") {
                config.rollover_interval = interval;
            }
            Ok(Arc::new(FileSink::new(config)))
        }
        "print" => {
            validate(table, "print", &[], &options)?;
            Ok(Arc::new(PrintSink::default()))
        }
        "blackhole" => {
            validate(table, "blackhole", &[], &options)?;
            Ok(Arc::new(BlackholeSink::new()))
        }
        "datagen" | "nexmark" => Err(ConnectorError::Config {
            connector: format!("table '{}' ({connector})", table.name),
            message: "this connector can only be read from".into(),
        }),
        other => Err(unknown(table, other)),
    }
}

fn unknown(table: &TableSpec, connector: &str) -> ConnectorError {
    ConnectorError::Config {
        connector: format!("table '{}'", table.name),
        message: format!(
            "unknown connector '{connector}'; known connectors: {}",
            CONNECTORS.join(", ")
        ),
    }
}
