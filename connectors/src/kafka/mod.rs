//! The `kafka` connector (through rdkafka, with a bundled librdkafka).
//!
//! Options follow Flink's Kafka connector: `topic` (several separated by `;`),
//! `properties.bootstrap.servers`, `properties.group.id`, any other `properties.*` handed to
//! the client unchanged, `scan.startup.mode`, `scan.startup.timestamp-millis`,
//! `scan.startup.specific-offsets`, `scan.bounded.mode`, `format` / `value.format`,
//! `key.format`, `key.fields`, `sink.delivery-guarantee`. Metadata columns (`partition`,
//! `offset`, `timestamp`) come from the table's metadata declarations.

pub mod sink;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use rdkafka::ClientConfig;

use crate::error::ConnectorError;
use crate::format::csv::{CsvDecoder, CsvOptions};
use crate::format::json::JsonDecoder;
use crate::format::raw::RawDecoder;
use crate::format::LineDecoder;
use crate::options::{OptionKind, OptionSpec, Options};

const FORMATS: OptionKind = OptionKind::Enum(&["json", "csv", "raw", "debezium-json"]);

/// How a topic's messages hold a changelog, as the source reads it and the sink writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Changelog {
    /// Appended rows only (the `kafka` connector with a plain format).
    #[default]
    AppendOnly,
    /// `value.format = debezium-json`: each change in Debezium's envelope. The sink writes
    /// `{"before": null, "after": row, "op": "c"}` for `+I`/`+U` and
    /// `{"before": row, "after": null, "op": "d"}` for `-U`/`-D` (as Flink writes it); the
    /// source reads every `op` ([`crate::format::debezium`]) and skips messages without a value
    /// (Debezium's tombstones).
    Debezium,
    /// `upsert-kafka`: keyed by the primary key; `+I`/`+U` write the row, `-D` a tombstone
    /// (no value), `-U` nothing (the `+U` that follows replaces it). The source reads a value
    /// as `+I` and a tombstone as `-D` of its key (an upsert stream, which the planner
    /// normalizes, as Flink's `ChangelogNormalize`).
    Upsert,
}

/// librdkafka properties that load or run programs (a plugin, an OpenSSL engine, a kinit
/// command): refused in jobs submitted to a server.
pub const PROGRAM_PROPERTIES: &[&str] = &[
    "properties.plugin.library.paths",
    "properties.ssl.engine.location",
    "properties.sasl.kerberos.kinit.cmd",
];

/// Options shared by the Kafka source and sink.
pub const COMMON_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(
        "topic",
        OptionKind::String,
        "topic name(s), separated by ';'",
    ),
    OptionSpec::required(
        "properties.bootstrap.servers",
        OptionKind::String,
        "host:port list of brokers",
    ),
    OptionSpec::optional(
        "properties.*",
        OptionKind::String,
        "any librdkafka client property",
    ),
    OptionSpec::optional(
        "format",
        FORMATS,
        "value format (json, csv, raw; debezium-json for a sink of an updating result)",
    ),
    OptionSpec::optional("value.format", FORMATS, "value format (same as format)"),
    OptionSpec::optional("key.format", FORMATS, "format of the message key"),
    OptionSpec::optional(
        "key.fields",
        OptionKind::String,
        "columns forming the key, separated by ';'",
    ),
    OptionSpec::optional(
        "value.fields-include",
        OptionKind::Enum(&["ALL", "EXCEPT_KEY"]),
        "whether the value also holds the key columns (ALL, default) or not (EXCEPT_KEY)",
    ),
    OptionSpec::optional(
        "csv.field-delimiter",
        OptionKind::Char,
        "CSV delimiter (default ,)",
    ),
    OptionSpec::optional(
        "csv.quote-character",
        OptionKind::Char,
        "CSV quote (default \")",
    ),
    OptionSpec::optional(
        "csv.null-literal",
        OptionKind::String,
        "text that means NULL in CSV",
    ),
    OptionSpec::optional(
        "scan.connect-timeout",
        OptionKind::Duration,
        "how long to wait for the brokers (default 10s)",
    ),
];

/// The format of message values (and keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageFormat {
    Json,
    Csv(CsvOptions),
    Raw,
}

impl MessageFormat {
    pub(crate) fn from_options(options: &Options, key: &str) -> Option<Self> {
        Some(match options.word(key)?.as_str() {
            "json" | "debezium-json" => MessageFormat::Json,
            "raw" => MessageFormat::Raw,
            _ => MessageFormat::Csv(CsvOptions {
                delimiter: options.byte("csv.field-delimiter").unwrap_or(b','),
                quote: options.byte("csv.quote-character").unwrap_or(b'"'),
                null_literal: options.get("csv.null-literal").map(str::to_string),
                header: false,
            }),
        })
    }

    pub(crate) fn decoder(
        &self,
        schema: SchemaRef,
    ) -> Result<Box<dyn LineDecoder>, ConnectorError> {
        let arrow = |source| ConnectorError::Arrow {
            connector: "kafka".into(),
            source,
        };
        Ok(match self {
            MessageFormat::Json => Box::new(JsonDecoder::new(schema)),
            MessageFormat::Csv(options) => {
                Box::new(CsvDecoder::new(schema, options.clone()).map_err(arrow)?)
            }
            MessageFormat::Raw => Box::new(RawDecoder::new(Arc::clone(&schema)).map_err(arrow)?),
        })
    }
}

/// Client settings shared by source and sink.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    /// `properties.*` without the prefix (includes `bootstrap.servers`).
    pub properties: BTreeMap<String, String>,
    pub connect_timeout: Duration,
}

impl KafkaConnection {
    pub(crate) fn from_options(options: &Options) -> Self {
        KafkaConnection {
            properties: options.with_prefix("properties"),
            connect_timeout: options
                .duration("scan.connect-timeout")
                .unwrap_or(Duration::from_secs(10)),
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        self.properties
            .get("bootstrap.servers")
            .map_or("", String::as_str)
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config.set("log_level", "3");
        config
    }

    pub(crate) fn unreachable(&self, what: &str, error: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Config {
            connector: "kafka".into(),
            message: format!(
                "cannot {what} at {} within {:?}: {error}",
                self.bootstrap_servers(),
                self.connect_timeout
            ),
        }
    }
}

/// Splits a `;`-separated option value.
pub(crate) fn list(value: &str) -> Vec<String> {
    value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Dead letters written to a Kafka topic (`format.dead-letter.topic`), keyed by position.
pub struct DeadLetterTopic {
    topic: String,
    connection: KafkaConnection,
    producer: rdkafka::producer::BaseProducer,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterTopic")
            .field("topic", &self.topic)
            .finish()
    }
}

impl DeadLetterTopic {
    pub fn new(
        topic: impl Into<String>,
        connection: KafkaConnection,
    ) -> Result<Self, ConnectorError> {
        let producer = connection
            .client_config()
            .create()
            .map_err(|e| connection.unreachable("create the dead-letter producer", e))?;
        Ok(DeadLetterTopic {
            topic: topic.into(),
            connection,
            producer,
        })
    }
}

impl crate::format::bad_records::DeadLetters for DeadLetterTopic {
    fn write(
        &self,
        source: &str,
        records: &[crate::format::bad_records::BadRecord],
    ) -> Result<(), ConnectorError> {
        use rdkafka::producer::{BaseRecord, Producer};
        let failed = |e: &dyn std::fmt::Display| ConnectorError::Config {
            connector: format!("dead-letter topic '{}'", self.topic),
            message: format!("writing at {}: {e}", self.connection.bootstrap_servers()),
        };
        for record in records {
            let value = crate::format::bad_records::envelope(source, record);
            self.producer
                .send(
                    BaseRecord::to(&self.topic)
                        .payload(&value)
                        .key(&record.position),
                )
                .map_err(|(e, _)| failed(&e))?;
        }
        // Dead letters must be stored before the job moves past them.
        self.producer
            .flush(self.connection.connect_timeout)
            .map_err(|e| failed(&e))
    }
}
