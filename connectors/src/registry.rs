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
use crate::filesystem::source::{FileSource, FileSourceConfig, BLOCK_SIZE};
use crate::filesystem::FileFormat;
use crate::format::bad_records::{BadRecordPolicy, DeadLetterFile};
use crate::format::csv::CsvOptions;
use crate::kafka::sink::{KafkaSink, KafkaSinkConfig};
use crate::kafka::source::{KafkaSource, KafkaSourceConfig, MetadataKey, StartupMode};
use crate::kafka::Changelog;
use crate::kafka::{DeadLetterTopic, KafkaConnection, MessageFormat};
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
    /// Metadata columns: (column, metadata key), e.g. `("part", "partition")` for Kafka.
    pub metadata: Vec<(String, String)>,
    /// `PRIMARY KEY (...) NOT ENFORCED`: the key of an upsert sink.
    pub primary_key: Vec<String>,
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
            metadata: Vec::new(),
            primary_key: Vec::new(),
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
pub const CONNECTORS: &[&str] = &[
    "filesystem",
    "kafka",
    "upsert-kafka",
    "datagen",
    "nexmark",
    "print",
    "blackhole",
];

/// Options every source takes (Flink's names).
pub const SOURCE_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "scan.parallelism",
        OptionKind::Integer,
        "number of source splits (subtasks); default: the job's shard count",
    ),
    OptionSpec::optional(
        "scan.watermark.alignment.group",
        OptionKind::String,
        "watermark alignment: splits of the sources in this group pause while ahead of its slowest",
    ),
    OptionSpec::optional(
        "scan.watermark.alignment.max-drift",
        OptionKind::Duration,
        "how far ahead of its alignment group's slowest split a split may read",
    ),
    OptionSpec::optional(
        "scan.watermark.alignment.update-interval",
        OptionKind::Duration,
        "at most this long between a paused split's checks (default 1s)",
    ),
];

const KAFKA_SOURCE_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "scan.startup.mode",
        OptionKind::Enum(&[
            "earliest-offset",
            "latest-offset",
            "group-offsets",
            "timestamp",
            "specific-offsets",
        ]),
        "where reading starts (default group-offsets, as Flink)",
    ),
    OptionSpec::optional(
        "scan.startup.timestamp-millis",
        OptionKind::Integer,
        "start time for scan.startup.mode = timestamp",
    ),
    OptionSpec::optional(
        "scan.startup.specific-offsets",
        OptionKind::String,
        "'partition:0,offset:42;partition:1,offset:300' for scan.startup.mode = specific-offsets",
    ),
    OptionSpec::optional(
        "scan.bounded.mode",
        OptionKind::Enum(&["unbounded", "latest-offset"]),
        "stop at the end offsets seen at start (latest-offset) or never (default)",
    ),
    OptionSpec::optional(
        "scan.batch-size",
        OptionKind::Integer,
        "messages per batch (default 4096)",
    ),
];

const KAFKA_SINK_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "sink.delivery-guarantee",
        OptionKind::Enum(&["none", "at-least-once", "exactly-once"]),
        "at-least-once (default); exactly-once: one transaction per checkpoint (needs checkpoints)",
    ),
    OptionSpec::optional(
        "sink.transactional-id-prefix",
        OptionKind::String,
        "prefix of the transactional ids of an exactly-once sink (default weir-<table>); \
         unique per job",
    ),
];

const PRINT_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "print-identifier",
        OptionKind::String,
        "prefix of every printed line",
    ),
    OptionSpec::optional(
        "standard-error",
        OptionKind::Boolean,
        "print to standard error",
    ),
];

const FORMAT_ERROR_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "format.on-error",
        OptionKind::Enum(&["fail", "skip", "dead-letter"]),
        "what to do with a record that cannot be decoded (default fail)",
    ),
    OptionSpec::optional(
        "format.dead-letter.path",
        OptionKind::Path,
        "file that receives bad records with format.on-error = dead-letter",
    ),
    OptionSpec::optional(
        "format.dead-letter.topic",
        OptionKind::String,
        "Kafka topic (same brokers) that receives bad records of a Kafka source",
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
    OptionSpec::optional(
        "json.timestamp-format.standard",
        OptionKind::Enum(&["SQL"]),
        "timestamp text of JSON: SQL (yyyy-MM-dd HH:mm:ss.SSS; ISO-8601 text is read too)",
    ),
];

/// Options of the `debezium-json` format (Flink's names).
const DEBEZIUM_OPTIONS: &[OptionSpec] = &[OptionSpec::optional(
    "debezium-json.schema-include",
    OptionKind::Boolean,
    "records wrap the change in {\"schema\": ..., \"payload\": ...} (default false)",
)];

const FILESYSTEM_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("path", OptionKind::Path, "a file, a directory or a glob"),
    OptionSpec::required(
        "format",
        OptionKind::Enum(&["json", "csv", "parquet", "raw", "debezium-json"]),
        "the file format (debezium-json: read a changelog)",
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

/// A filesystem `path` option as a local path: Flink's `file://` scheme is accepted.
fn local_path(path: &str) -> String {
    path.strip_prefix("file://").unwrap_or(path).to_string()
}

/// The bad-record policy the options ask for.
pub fn bad_record_policy(options: &Options) -> Result<BadRecordPolicy, ConnectorError> {
    let ignore = options.boolean("json.ignore-parse-errors") == Some(true)
        || options.boolean("csv.ignore-parse-errors") == Some(true);
    match options.word("format.on-error").as_deref() {
        Some("dead-letter") => match (
            options.get("format.dead-letter.path"),
            options.get("format.dead-letter.topic"),
        ) {
            (Some(path), None) => Ok(BadRecordPolicy::DeadLetter(Arc::new(DeadLetterFile::new(path)))),
            (None, Some(topic)) if options.connector() == "kafka" => Ok(BadRecordPolicy::DeadLetter(Arc::new(
                DeadLetterTopic::new(topic, KafkaConnection::from_options(options))?,
            ))),
            _ => Err(ConnectorError::Config {
                connector: options.connector().to_string(),
                message: "format.on-error = dead-letter needs either 'format.dead-letter.path' or, for a Kafka source, 'format.dead-letter.topic'".into(),
            }),
        },
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
        Some("debezium-json") => FileFormat::DebeziumJson {
            schema_include: options.boolean("debezium-json.schema-include") == Some(true),
        },
        _ => FileFormat::Csv(CsvOptions {
            delimiter: options.byte("csv.field-delimiter").unwrap_or(b','),
            quote: options.byte("csv.quote-character").unwrap_or(b'"'),
            null_literal: options.get("csv.null-literal").map(str::to_string),
            header: options.boolean("csv.header").unwrap_or(false),
        }),
    })
}

/// Every option a connector accepts, as a source or a sink.
fn connector_specs(
    table: &TableSpec,
    connector: &str,
) -> Result<&'static [&'static [OptionSpec]], ConnectorError> {
    Ok(match connector {
        "filesystem" => &[
            FILESYSTEM_OPTIONS,
            FORMAT_ERROR_OPTIONS,
            DEBEZIUM_OPTIONS,
            SOURCE_OPTIONS,
        ],
        "kafka" => &[
            crate::kafka::COMMON_OPTIONS,
            KAFKA_SOURCE_OPTIONS,
            KAFKA_SINK_OPTIONS,
            FORMAT_ERROR_OPTIONS,
            DEBEZIUM_OPTIONS,
            SOURCE_OPTIONS,
        ],
        "upsert-kafka" => &[
            crate::kafka::COMMON_OPTIONS,
            KAFKA_SOURCE_OPTIONS,
            KAFKA_SINK_OPTIONS,
            FORMAT_ERROR_OPTIONS,
            SOURCE_OPTIONS,
        ],
        "datagen" => &[crate::datagen::OPTIONS, SOURCE_OPTIONS],
        "nexmark" => &[crate::nexmark::OPTIONS, SOURCE_OPTIONS],
        "print" => &[PRINT_OPTIONS],
        "blackhole" => &[],
        other => return Err(unknown(table, other)),
    })
}

/// Checks `table`'s options against everything its connector accepts as a source or a sink
/// (SQL checks at `CREATE TABLE`, before it knows how the table will be used).
pub fn check_options(table: &TableSpec) -> Result<(), ConnectorError> {
    let (connector, options) = table.connector()?;
    let specs = connector_specs(table, &connector)?;
    validate(table, &connector, specs, &options).map(|_| ())
}

/// The options of `table` that name local files ([`OptionKind::Path`], and Kafka's
/// `properties.*.location` / `*.keytab`): each key with its path (`file://` removed), for a
/// server to resolve and confine them.
pub fn local_paths(table: &TableSpec) -> Result<Vec<(String, String)>, ConnectorError> {
    let (connector, options) = table.connector()?;
    let specs = connector_specs(table, &connector)?;
    let mut paths: Vec<(String, String)> = (specs.iter().flat_map(|s| s.iter()))
        .filter(|spec| matches!(spec.kind, OptionKind::Path))
        .filter_map(|spec| Some((spec.key.to_string(), local_path(options.get(spec.key)?))))
        .collect();
    // librdkafka's properties that name files (certificates, keys, keytabs).
    paths.extend(
        (options.iter())
            .filter(|(key, _)| {
                key.starts_with("properties.")
                    && (key.ends_with(".location") || key.ends_with(".keytab"))
            })
            .map(|(key, value)| (key.clone(), local_path(value))),
    );
    Ok(paths)
}

/// Builds the source `table` declares.
pub fn create_source(table: &TableSpec) -> Result<Arc<dyn SourceFactory>, ConnectorError> {
    let (connector, options) = table.connector()?;
    match connector.as_str() {
        "filesystem" => {
            let options = validate(
                table,
                "filesystem",
                &[
                    FILESYSTEM_OPTIONS,
                    FORMAT_ERROR_OPTIONS,
                    DEBEZIUM_OPTIONS,
                    SOURCE_OPTIONS,
                ],
                &options,
            )?;
            Ok(Arc::new(FileSource::new(FileSourceConfig {
                path: local_path(options.require("path")?),
                format: file_format(&options)?,
                schema: SchemaRef::clone(&table.schema),
                monitor_interval: options.duration("source.monitor-interval"),
                batch_size: options.integer("scan.batch-size").unwrap_or(4096).max(1) as usize,
                on_error: bad_record_policy(&options)?,
                block_size: BLOCK_SIZE,
            })?))
        }
        "kafka" => {
            let options = validate(
                table,
                "kafka",
                &[
                    crate::kafka::COMMON_OPTIONS,
                    KAFKA_SOURCE_OPTIONS,
                    FORMAT_ERROR_OPTIONS,
                    DEBEZIUM_OPTIONS,
                    SOURCE_OPTIONS,
                ],
                &options,
            )?;
            let changelog = match debezium(&options) {
                true => Changelog::Debezium,
                false => Changelog::AppendOnly,
            };
            Ok(Arc::new(kafka_source(table, &options, changelog)?))
        }
        "upsert-kafka" => {
            let options = validate(
                table,
                "upsert-kafka",
                &[
                    crate::kafka::COMMON_OPTIONS,
                    KAFKA_SOURCE_OPTIONS,
                    FORMAT_ERROR_OPTIONS,
                    SOURCE_OPTIONS,
                ],
                &options,
            )?;
            Ok(Arc::new(kafka_source(table, &options, Changelog::Upsert)?))
        }
        "datagen" => Ok(Arc::new(crate::datagen::DataGen::from_options(
            SchemaRef::clone(&table.schema),
            &validate(
                table,
                "datagen",
                &[crate::datagen::OPTIONS, SOURCE_OPTIONS],
                &options,
            )?,
        )?)),
        "nexmark" => Ok(Arc::new(crate::nexmark::NexmarkSource::from_options(
            SchemaRef::clone(&table.schema),
            &validate(
                table,
                "nexmark",
                &[crate::nexmark::OPTIONS, SOURCE_OPTIONS],
                &options,
            )?,
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
            let mut config =
                FileSinkConfig::new(local_path(options.require("path")?), file_format(&options)?);
            config.partition_by = table.partition_by.clone();
            if let Some(size) = options.memory_size("sink.rolling-policy.file-size") {
                config.file_size = size;
            }
            if let Some(interval) = options.duration("sink.rolling-policy.rollover-interval") {
                config.rollover_interval = interval;
            }
            Ok(Arc::new(FileSink::new(config)))
        }
        "kafka" | "upsert-kafka" => {
            let options = validate(
                table,
                &connector,
                &[crate::kafka::COMMON_OPTIONS, KAFKA_SINK_OPTIONS],
                &options,
            )?;
            let exactly_once =
                options.word("sink.delivery-guarantee").as_deref() == Some("exactly-once");
            let transactional_id_prefix = exactly_once.then(|| {
                options
                    .get("sink.transactional-id-prefix")
                    .map_or_else(|| format!("weir-{}", table.name), str::to_string)
            });
            let debezium = debezium(&options);
            let (changelog, key_fields, key_format) = if connector == "upsert-kafka" {
                if table.primary_key.is_empty() {
                    return Err(ConnectorError::Config {
                        connector: format!("table '{}' (upsert-kafka)", table.name),
                        message:
                            "upsert-kafka writes by key: declare PRIMARY KEY (...) NOT ENFORCED"
                                .into(),
                    });
                }
                let key_format = MessageFormat::from_options(&options, "key.format")
                    .unwrap_or(MessageFormat::Json);
                (
                    Changelog::Upsert,
                    table.primary_key.clone(),
                    Some(key_format),
                )
            } else {
                let key_fields = options
                    .get("key.fields")
                    .map(crate::kafka::list)
                    .unwrap_or_default();
                let changelog = if debezium {
                    Changelog::Debezium
                } else {
                    Changelog::AppendOnly
                };
                (
                    changelog,
                    key_fields,
                    MessageFormat::from_options(&options, "key.format"),
                )
            };
            Ok(Arc::new(KafkaSink::new(KafkaSinkConfig {
                connection: KafkaConnection::from_options(&options),
                topic: single_topic(&options)?,
                value_format: value_format(&options),
                key_fields,
                key_format,
                value_except_key: except_key(&options),
                transactional_id_prefix,
                changelog,
            })))
        }
        "print" => {
            let options = validate(table, "print", &[PRINT_OPTIONS], &options)?;
            let mut sink = PrintSink::default();
            if let Some(identifier) = options.get("print-identifier") {
                sink = sink.with_identifier(identifier);
            }
            if options.boolean("standard-error") == Some(true) {
                sink = sink.to_standard_error();
            }
            Ok(Arc::new(sink))
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

/// Whether the value format is `debezium-json`.
fn debezium(options: &Options) -> bool {
    ["format", "value.format"]
        .iter()
        .any(|k| options.word(k).as_deref() == Some("debezium-json"))
}

fn except_key(options: &Options) -> bool {
    options.word("value.fields-include").as_deref() == Some("except_key")
}

fn value_format(options: &Options) -> MessageFormat {
    MessageFormat::from_options(options, "value.format")
        .or_else(|| MessageFormat::from_options(options, "format"))
        .unwrap_or(MessageFormat::Json)
}

fn single_topic(options: &Options) -> Result<String, ConnectorError> {
    match crate::kafka::list(options.require("topic")?).as_slice() {
        [topic] => Ok(topic.clone()),
        _ => Err(ConnectorError::Config {
            connector: "kafka".into(),
            message: "a Kafka sink writes to exactly one topic".into(),
        }),
    }
}

fn kafka_source(
    table: &TableSpec,
    options: &Options,
    changelog: Changelog,
) -> Result<KafkaSource, ConnectorError> {
    let upsert = changelog == Changelog::Upsert;
    let error = |message: String| ConnectorError::Config {
        connector: format!(
            "table '{}' ({})",
            table.name,
            if upsert { "upsert-kafka" } else { "kafka" }
        ),
        message,
    };
    if upsert {
        if options.get("scan.startup.mode").is_some() {
            return Err(error(
                "upsert-kafka reads a topic whole, from its earliest offset: leave out 'scan.startup.mode' (Flink's upsert-kafka has none)".into(),
            ));
        }
        if debezium(options) {
            return Err(error(
                "upsert-kafka values are rows, not Debezium changes: read 'debezium-json' with the 'kafka' connector".into(),
            ));
        }
        // A tombstone carries only the key: every other column is NULL in its row.
        if let Some(field) = table.schema.fields().iter().find(|f| {
            !f.is_nullable()
                && !table.primary_key.contains(f.name())
                && !table.metadata.iter().any(|(c, _)| c == f.name())
        }) {
            return Err(error(format!(
                "column '{}' is NOT NULL, but a tombstone's row has only the primary key: declare it nullable",
                field.name()
            )));
        }
    }
    let startup = match options.word("scan.startup.mode").as_deref() {
        // An upsert table is read whole, as Flink's upsert-kafka always does.
        _ if upsert => StartupMode::Earliest,
        Some("earliest-offset") => StartupMode::Earliest,
        Some("latest-offset") => StartupMode::Latest,
        Some("timestamp") => StartupMode::Timestamp(
            options
                .integer("scan.startup.timestamp-millis")
                .ok_or_else(|| {
                    error(
                        "scan.startup.mode = timestamp needs 'scan.startup.timestamp-millis'"
                            .into(),
                    )
                })?,
        ),
        Some("specific-offsets") => {
            let text = options
                .get("scan.startup.specific-offsets")
                .ok_or_else(|| error("scan.startup.mode = specific-offsets needs 'scan.startup.specific-offsets'".into()))?;
            let mut offsets = std::collections::HashMap::new();
            for part in crate::kafka::list(text) {
                let parsed = part
                    .split(',')
                    .map(|kv| kv.split_once(':'))
                    .collect::<Option<Vec<_>>>();
                let (partition, offset) = match parsed.as_deref() {
                    Some([("partition", p), ("offset", o)]) => {
                        (p.trim().parse::<i32>().ok(), o.trim().parse::<i64>().ok())
                    }
                    _ => (None, None),
                };
                match (partition, offset) {
                    (Some(p), Some(o)) => offsets.insert(p, o),
                    _ => {
                        return Err(error(format!(
                            "option 'scan.startup.specific-offsets': '{part}' is not 'partition:N,offset:M'"
                        )))
                    }
                };
            }
            StartupMode::Specific(offsets)
        }
        _ => StartupMode::GroupOffsets,
    };
    let metadata = table
        .metadata
        .iter()
        .map(|(column, key)| {
            MetadataKey::parse(key)
                .map(|k| (column.clone(), k))
                .ok_or_else(|| {
                    error(format!(
                        "unknown metadata key '{key}' (known: partition, offset, timestamp, headers)"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    KafkaSource::new(KafkaSourceConfig {
        connection: KafkaConnection::from_options(options),
        topics: crate::kafka::list(options.require("topic")?),
        format: value_format(options),
        schema: SchemaRef::clone(&table.schema),
        metadata,
        startup,
        bounded: options.word("scan.bounded.mode").as_deref() == Some("latest-offset"),
        on_error: bad_record_policy(options)?,
        batch_size: options.integer("scan.batch-size").unwrap_or(4096).max(1) as usize,
        changelog,
        debezium_schema_include: options.boolean("debezium-json.schema-include") == Some(true),
        value_includes_key: upsert && !except_key(options),
        key: match (except_key(options), options.get("key.fields")) {
            _ if upsert => {
                if table.primary_key.is_empty() {
                    return Err(error(
                        "an upsert-kafka table needs PRIMARY KEY (...) NOT ENFORCED: its message keys"
                            .into(),
                    ));
                }
                Some((
                    table.primary_key.clone(),
                    MessageFormat::from_options(options, "key.format")
                        .ok_or_else(|| error("upsert-kafka needs 'key.format'".into()))?,
                ))
            }
            (true, Some(fields)) => Some((
                crate::kafka::list(fields),
                MessageFormat::from_options(options, "key.format").ok_or_else(|| {
                    error(
                        "key.fields with value.fields-include = EXCEPT_KEY needs 'key.format'"
                            .into(),
                    )
                })?,
            )),
            (true, None) => {
                return Err(error(
                    "value.fields-include = EXCEPT_KEY needs 'key.fields'".into(),
                ))
            }
            (false, _) => None,
        },
    })
    .map_err(|e| match e {
        ConnectorError::Config { message, .. } => error(message),
        other => other,
    })
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
