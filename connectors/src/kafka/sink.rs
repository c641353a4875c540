//! The Kafka sink: one producer per subtask, at-least-once.
//!
//! Each batch is encoded column-wise (JSON lines or CSV, whole batch at once) and split into
//! one message per row; the key is the `key.fields` columns in `key.format`. All messages of a
//! batch are handed to the producer, then their delivery reports are awaited, so a failed
//! delivery fails the job (naming the topic) and a slow broker slows the job. At a barrier and
//! at the end the producer is flushed. `sink.delivery-guarantee = exactly-once` needs
//! checkpoints (transactions per checkpoint epoch) and is refused until they exist.

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::{BoxError, CheckpointId};

use super::{KafkaConnection, MessageFormat};
use crate::error::ConnectorError;
use crate::format::TIMESTAMP_FORMAT;

/// Configuration of a Kafka sink.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    pub connection: KafkaConnection,
    pub topic: String,
    pub value_format: MessageFormat,
    pub key_fields: Vec<String>,
    pub key_format: Option<MessageFormat>,
    /// Leave the key columns out of the value (`value.fields-include = EXCEPT_KEY`).
    pub value_except_key: bool,
}

/// The Kafka sink factory.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    config: KafkaSinkConfig,
}

impl KafkaSink {
    pub fn new(config: KafkaSinkConfig) -> Self {
        KafkaSink { config }
    }
}

impl SinkFactory for KafkaSink {
    fn describe(&self) -> String {
        format!(
            "kafka {} at {} (at-least-once)",
            self.config.topic,
            self.config.connection.bootstrap_servers()
        )
    }

    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        let schema = &context.input_schema;
        let key_columns = self
            .config
            .key_fields
            .iter()
            .map(|name| {
                schema.index_of(name).map_err(|_| ConnectorError::Config {
                    connector: context.operator_id.clone(),
                    message: format!(
                        "key field '{name}' is not in the sink's input ({})",
                        weir_engine::graph::column_list(schema)
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let producer: FutureProducer = self
            .config
            .connection
            .client_config()
            .set(
                "message.timeout.ms",
                self.config
                    .connection
                    .connect_timeout
                    .as_millis()
                    .max(1000)
                    .to_string(),
            )
            .create()
            .map_err(|e| {
                self.config
                    .connection
                    .unreachable("create a Kafka producer", e)
            })?;
        let value_columns = (0..schema.fields().len())
            .filter(|i| !(self.config.value_except_key && key_columns.contains(i)))
            .collect();
        Ok(Box::new(KafkaWriter {
            config: self.config.clone(),
            name: context.operator_id.clone(),
            key_columns,
            value_columns,
            producer,
        }))
    }
}

struct KafkaWriter {
    config: KafkaSinkConfig,
    name: String,
    key_columns: Vec<usize>,
    value_columns: Vec<usize>,
    producer: FutureProducer,
}

/// One encoded value per row of `batch`.
pub fn encode_rows(batch: &RecordBatch, format: &MessageFormat) -> Result<Vec<Vec<u8>>, BoxError> {
    let mut out = Vec::with_capacity(batch.num_rows());
    match format {
        MessageFormat::Json => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
            writer.write(batch)?;
            writer.finish()?;
            out.extend(
                writer
                    .into_inner()
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        MessageFormat::Csv(options) => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(false)
                .with_delimiter(options.delimiter)
                .with_quote(options.quote)
                .with_null(options.null_literal.clone().unwrap_or_default())
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build(Vec::new());
            writer.write(batch)?;
            let bytes = writer.into_inner();
            out.extend(
                bytes
                    .split(|b| *b == b'\n')
                    .take(batch.num_rows())
                    .map(<[u8]>::to_vec),
            );
        }
        MessageFormat::Raw => {
            let formatter = ArrayFormatter::try_new(batch.column(0), &FormatOptions::default())?;
            for row in 0..batch.num_rows() {
                out.push(formatter.value(row).to_string().into_bytes());
            }
        }
    }
    if out.len() != batch.num_rows() {
        return Err(format!(
            "encoded {} messages for {} rows",
            out.len(),
            batch.num_rows()
        )
        .into());
    }
    Ok(out)
}

impl KafkaWriter {
    async fn send(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        let values = encode_rows(
            &batch.project(&self.value_columns)?,
            &self.config.value_format,
        )?;
        let keys = match (&self.config.key_format, self.key_columns.is_empty()) {
            (_, true) => None,
            (format, false) => {
                let keys = batch.project(&self.key_columns)?;
                Some(encode_rows(
                    &keys,
                    format.as_ref().unwrap_or(&MessageFormat::Raw),
                )?)
            }
        };
        let mut deliveries = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            let mut record = FutureRecord::to(&self.config.topic).payload(value);
            if let Some(keys) = &keys {
                record = record.key(&keys[i]);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    // The producer's queue is full: wait for deliveries, then retry.
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(self.failed(error)),
                }
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(self.failed(error)),
                Err(_) => {
                    return Err(format!(
                        "{}: delivery to topic '{}' was cancelled",
                        self.name, self.config.topic
                    )
                    .into())
                }
            }
        }
        Ok(())
    }

    fn failed(&self, error: rdkafka::error::KafkaError) -> BoxError {
        Box::new(ConnectorError::Config {
            connector: self.name.clone(),
            message: format!(
                "writing to topic '{}' at {}: {error}",
                self.config.topic,
                self.config.connection.bootstrap_servers()
            ),
        })
    }

    fn flush(&self) -> Result<(), BoxError> {
        self.producer
            .flush(self.config.connection.connect_timeout)
            .map_err(|e| self.failed(e))
    }
}

impl SinkWriter for KafkaWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.send(batch))
    }

    fn on_barrier(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<Option<String>, BoxError>> {
        // At least once: everything before the barrier is acknowledged by the broker.
        Box::pin(async move { self.flush().map(|()| None) })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { self.flush() })
    }
}
