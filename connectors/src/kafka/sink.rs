//! The Kafka sink: at-least-once with a producer per subtask, or exactly-once with
//! transactions per checkpoint.
//!
//! Each batch is encoded column-wise (JSON lines or CSV, whole batch at once) and split into
//! one message per row; the key is the `key.fields` columns in `key.format`. All messages of a
//! batch are handed to the producer, then their delivery reports are awaited, so a failed
//! delivery fails the job (naming the topic) and a slow broker slows the job.
//!
//! Exactly-once (`sink.delivery-guarantee = exactly-once`, needs checkpoints): the rows
//! between two barriers form one Kafka transaction for the whole sink (all subtasks write into
//! it through one shared producer). Two transactional producers,
//! `<sink.transactional-id-prefix>-0` and `-1`, take turns: epoch `n` (the rows before barrier
//! `n`) uses producer `n % 2`, so subtasks past barrier `n` already write epoch `n + 1` with
//! the other producer while epoch `n` waits for its checkpoint. When checkpoint `n` completes,
//! its transaction commits, together with a marker (the offset `n` of consumer group
//! `<prefix>-commits` on partition 0 of the topic, `send_offsets_to_transaction`). A new process
//! cannot commit a transaction an old one left open (librdkafka cannot resume it); so on
//! recovery the producers abort what is open and the marker says which checkpoint last
//! committed: the job resumes from that one (see `SinkFactory::recover_committed`). Readers
//! use `isolation.level = read_committed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::changelog::{kind_at, row_kinds, RowKind, ROW_KIND_COLUMN};
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::{BoxError, CheckpointId};

use super::{Changelog, KafkaConnection, MessageFormat};
use crate::error::ConnectorError;
use crate::format::{writer_text, TIMESTAMP_FORMAT};

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
    /// Exactly-once with this transactional id prefix (`sink.transactional-id-prefix`);
    /// `None`: at-least-once.
    pub transactional_id_prefix: Option<String>,
    /// How an updating input (a changelog with an `op` column) is written.
    pub changelog: Changelog,
}

/// What one row becomes in the topic.
enum Outgoing {
    Value(Vec<u8>),
    /// A message without a value: the key was deleted (upsert).
    Tombstone,
    /// No message (an upsert's `-U`, replaced by the `+U` that follows).
    Nothing,
}

/// The Kafka sink factory.
#[derive(Debug, Clone)]
pub struct KafkaSink {
    config: KafkaSinkConfig,
    /// Exactly-once: the shared transactional producers, created on first use.
    transactions: Arc<Mutex<Option<Arc<Transactions>>>>,
}

impl KafkaSink {
    pub fn new(config: KafkaSinkConfig) -> Self {
        KafkaSink {
            config,
            transactions: Arc::default(),
        }
    }

    /// The transactional producers (exactly-once only), created and initialised once:
    /// initialising aborts whatever a previous run left open under the same ids.
    fn transactions(&self) -> Result<Option<Arc<Transactions>>, BoxError> {
        let Some(prefix) = &self.config.transactional_id_prefix else {
            return Ok(None);
        };
        let mut slot = self.transactions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(transactions) = slot.as_ref() {
            return Ok(Some(Arc::clone(transactions)));
        }
        let connection = &self.config.connection;
        let producer = |parity: usize| -> Result<FutureProducer, BoxError> {
            let id = format!("{prefix}-{parity}");
            let producer: FutureProducer = connection
                .client_config()
                .set("transactional.id", &id)
                .set("transaction.timeout.ms", "60000")
                .create()
                .map_err(|e| connection.unreachable("create a transactional Kafka producer", e))?;
            producer
                .init_transactions(connection.connect_timeout)
                .map_err(|e| {
                    connection.unreachable(&format!("initialise transactions of '{id}'"), e)
                })?;
            Ok(producer)
        };
        let marker_group = format!("{prefix}-commits");
        let marker: BaseConsumer = connection
            .client_config()
            .set("group.id", &marker_group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| connection.unreachable("create a Kafka consumer", e))?;
        let transactions = Arc::new(Transactions {
            producers: [producer(0)?, producer(1)?],
            open: Mutex::new([false, false]),
            marker,
            topic: self.config.topic.clone(),
            timeout: connection.connect_timeout,
        });
        *slot = Some(Arc::clone(&transactions));
        Ok(Some(transactions))
    }
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions")
            .field("topic", &self.topic)
            .finish()
    }
}

/// The two transactional producers of an exactly-once sink and the commit marker.
struct Transactions {
    producers: [FutureProducer; 2],
    /// Whether each producer has an open transaction.
    open: Mutex<[bool; 2]>,
    /// A consumer of the marker group, for its group metadata and committed offset.
    marker: BaseConsumer,
    topic: String,
    timeout: Duration,
}

impl Transactions {
    /// Opens the transaction of `parity` if it is not open yet.
    fn ensure_open(&self, parity: usize) -> rdkafka::error::KafkaResult<()> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !open[parity] {
            self.producers[parity].begin_transaction()?;
            open[parity] = true;
        }
        Ok(())
    }

    fn marker_partition(&self, offset: Offset) -> rdkafka::error::KafkaResult<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, 0, offset)?;
        Ok(list)
    }

    /// Commits the transaction of `parity` as checkpoint `checkpoint`, with the marker.
    fn commit(&self, parity: usize, checkpoint: u64) -> rdkafka::error::KafkaResult<()> {
        self.ensure_open(parity)?;
        let producer = &self.producers[parity];
        let metadata = self.marker.group_metadata().ok_or_else(|| {
            rdkafka::error::KafkaError::ClientCreation(
                "the marker consumer has no group metadata".into(),
            )
        })?;
        producer.send_offsets_to_transaction(
            &self.marker_partition(Offset::Offset(checkpoint as i64))?,
            &metadata,
            self.timeout,
        )?;
        producer.commit_transaction(self.timeout)?;
        self.open.lock().unwrap_or_else(|e| e.into_inner())[parity] = false;
        Ok(())
    }

    /// The checkpoint the marker says committed last (0: none).
    fn last_committed(&self) -> rdkafka::error::KafkaResult<u64> {
        let committed = self
            .marker
            .committed_offsets(self.marker_partition(Offset::Invalid)?, self.timeout)?;
        Ok(committed
            .elements()
            .first()
            .and_then(|e| match e.offset() {
                Offset::Offset(n) if n > 0 => Some(n as u64),
                _ => None,
            })
            .unwrap_or(0))
    }
}

impl SinkFactory for KafkaSink {
    fn accepts_changelog(&self) -> bool {
        self.config.changelog != Changelog::AppendOnly
    }

    fn upserts(&self) -> bool {
        self.config.changelog == Changelog::Upsert
    }

    fn describe(&self) -> String {
        format!(
            "kafka {} at {} ({})",
            self.config.topic,
            self.config.connection.bootstrap_servers(),
            match self.config.transactional_id_prefix {
                Some(_) => "exactly-once",
                None => "at-least-once",
            }
        )
    }

    fn commit(&self, checkpoint: u64, tokens: &[String]) -> Result<(), BoxError> {
        let Some(transactions) = self.transactions()? else {
            return Ok(());
        };
        // Every subtask reports the parity it wrote the epoch with; they agree.
        let Some(parity) = tokens.first().and_then(|t| t.parse::<usize>().ok()) else {
            return Ok(());
        };
        transactions
            .commit(parity % 2, checkpoint)
            .map_err(|e| self.failed_transaction("commit the transaction", e))
    }

    fn recover_committed(&self) -> Result<Option<u64>, BoxError> {
        match self.transactions()? {
            Some(transactions) => transactions
                .last_committed()
                .map(Some)
                .map_err(|e| self.failed_transaction("read the commit marker", e)),
            None => Ok(None),
        }
    }

    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        let schema = context.input_schema();
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
        // The row kind is not a value column: it decides the kind of message.
        let value_columns = (0..schema.fields().len())
            .filter(|i| !(self.config.value_except_key && key_columns.contains(i)))
            .filter(|i| schema.field(*i).name() != ROW_KIND_COLUMN)
            .collect();
        let delivery = match self.transactions()? {
            Some(_) if !context.checkpointing => {
                return Err(Box::new(ConnectorError::Config {
                    connector: context.operator_id.clone(),
                    message: "sink.delivery-guarantee = exactly-once commits at checkpoints, \
                              and this job has none: give it a state directory (--state-dir) \
                              and a checkpoint interval, or use at-least-once"
                        .into(),
                }))
            }
            Some(transactions) => Delivery::ExactlyOnce {
                transactions,
                parity: 0,
            },
            None => {
                let connection = &self.config.connection;
                let timeout = connection.connect_timeout.as_millis().max(1000);
                Delivery::AtLeastOnce(
                    connection
                        .client_config()
                        .set("message.timeout.ms", timeout.to_string())
                        .create()
                        .map_err(|e| connection.unreachable("create a Kafka producer", e))?,
                )
            }
        };
        Ok(Box::new(KafkaWriter {
            config: self.config.clone(),
            name: context.operator_id.clone(),
            key_columns,
            value_columns,
            delivery,
        }))
    }
}

impl KafkaSink {
    fn failed_transaction(&self, what: &str, error: rdkafka::error::KafkaError) -> BoxError {
        Box::new(ConnectorError::Config {
            connector: self.describe(),
            message: format!("cannot {what}: {error}"),
        })
    }
}

struct KafkaWriter {
    config: KafkaSinkConfig,
    name: String,
    key_columns: Vec<usize>,
    value_columns: Vec<usize>,
    /// The `op` column of a changelog input, for a sink that writes changelogs.
    delivery: Delivery,
}

/// How a writer delivers.
enum Delivery {
    /// Its own producer; everything before a barrier is acknowledged at the barrier.
    AtLeastOnce(FutureProducer),
    /// The sink's shared transactional producers; the current epoch uses `parity`.
    ExactlyOnce {
        transactions: Arc<Transactions>,
        parity: usize,
    },
}

/// One encoded value per row of `batch`.
pub fn encode_rows(batch: &RecordBatch, format: &MessageFormat) -> Result<Vec<Vec<u8>>, BoxError> {
    let mut out = Vec::with_capacity(batch.num_rows());
    match format {
        MessageFormat::Json => {
            let mut writer = arrow::json::WriterBuilder::new()
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
            writer.write(&writer_text(batch, false)?)?;
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
            writer.write(&writer_text(batch, true)?)?;
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
    /// What each row of `batch` becomes.
    fn messages(&self, batch: &RecordBatch) -> Result<Vec<Outgoing>, BoxError> {
        let encoded = encode_rows(
            &batch.project(&self.value_columns)?,
            &self.config.value_format,
        )?;
        let Some(kinds) = row_kinds(batch) else {
            return Ok(encoded.into_iter().map(Outgoing::Value).collect());
        };
        Ok(encoded
            .into_iter()
            .enumerate()
            .map(
                |(i, row)| match (self.config.changelog, kind_at(Some(kinds), i)) {
                    (Changelog::Debezium, RowKind::UpdateBefore | RowKind::Delete) => {
                        let row = String::from_utf8_lossy(&row);
                        Outgoing::Value(
                            format!(r#"{{"before":{row},"after":null,"op":"d"}}"#).into_bytes(),
                        )
                    }
                    (Changelog::Debezium, _) => {
                        let row = String::from_utf8_lossy(&row);
                        Outgoing::Value(
                            format!(r#"{{"before":null,"after":{row},"op":"c"}}"#).into_bytes(),
                        )
                    }
                    (Changelog::Upsert, RowKind::UpdateBefore) => Outgoing::Nothing,
                    (Changelog::Upsert, RowKind::Delete) => Outgoing::Tombstone,
                    _ => Outgoing::Value(row),
                },
            )
            .collect())
    }

    async fn send(&mut self, batch: RecordBatch) -> Result<(), BoxError> {
        let messages = self.messages(&batch)?;
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
        let producer = match &self.delivery {
            Delivery::ExactlyOnce {
                transactions,
                parity,
            } => {
                transactions
                    .ensure_open(*parity)
                    .map_err(|e| self.failed(e))?;
                &transactions.producers[*parity]
            }
            Delivery::AtLeastOnce(producer) => producer,
        };
        let mut deliveries = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.config.topic);
            match message {
                Outgoing::Value(value) => record = record.payload(value.as_slice()),
                Outgoing::Tombstone => {}
                Outgoing::Nothing => continue,
            }
            if let Some(keys) = &keys {
                record = record.key(keys[i].as_slice());
            }
            loop {
                match producer.send_result(record) {
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

    /// At-least-once: waits until the broker has everything (exactly-once writers have
    /// awaited every delivery already; their transactions commit with checkpoints).
    fn flush(&self) -> Result<(), BoxError> {
        match &self.delivery {
            Delivery::AtLeastOnce(producer) => producer
                .flush(self.config.connection.connect_timeout)
                .map_err(|e| self.failed(e)),
            Delivery::ExactlyOnce { .. } => Ok(()),
        }
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
        Box::pin(async move {
            // Every batch's deliveries were awaited: all rows before the barrier are in the
            // broker (at-least-once: acknowledged; exactly-once: in the open transaction).
            match &mut self.delivery {
                Delivery::AtLeastOnce(_) => self.flush().map(|()| None),
                Delivery::ExactlyOnce { parity, .. } => {
                    let token = parity.to_string();
                    *parity ^= 1;
                    Ok(Some(token))
                }
            }
        })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { self.flush() })
    }
}
