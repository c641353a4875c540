//! The Kafka source: partitions spread over subtasks, offsets kept by the reader.
//!
//! The factory lists the topics' partitions once (failing within `scan.connect-timeout`, with
//! the brokers named, when they cannot be reached) and gives partition `i` of the sorted list
//! to split `i % P`. Each reader assigns its partitions by hand (no consumer-group
//! rebalancing, no auto-commit: the engine owns offsets and checkpoints store them, as
//! `topic/partition -> next offset` after the rows returned so far), starting as
//! `scan.startup.mode` says, or at the stored offsets when the job resumes. With `scan.bounded.mode = latest-offset` a
//! reader stops at the partitions' end offsets as of its start, which makes a topic a bounded
//! input.
//!
//! Messages are decoded in chunks, like file lines; a message that cannot be decoded (or has
//! no value) is a bad record at `topic/partition/offset`. Each returned batch holds one
//! partition's rows, so the engine keeps a watermark per partition (the split's watermark is
//! the minimum over its partitions, idle ones left out). Metadata columns `partition`,
//! `offset`, `timestamp` and `headers` (`MAP<STRING, BYTES>`) are filled from the messages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, Int32Array, Int64Array, MapBuilder, StringBuilder,
    TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir_engine::BoxError;

use weir_engine::changelog::{kind_array, with_row_kind, ChangelogMode, RowKind, ROW_KIND_COLUMN};

use super::{Changelog, KafkaConnection, MessageFormat};
use crate::error::ConnectorError;
use crate::format::bad_records::{BadRecord, BadRecordHandler, BadRecordPolicy};
use crate::format::debezium::{expand_updates, DebeziumDecoder, BEFORE_COLUMN};
use crate::format::{decode_chunk, Decoded, LineDecoder};

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMode {
    Earliest,
    Latest,
    GroupOffsets,
    Timestamp(i64),
    /// Per partition; partitions not listed start at the earliest offset.
    Specific(HashMap<i32, i64>),
}

/// A metadata column and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataKey {
    Partition,
    Offset,
    Timestamp,
    /// `MAP<STRING, BYTES>` of the message headers.
    Headers,
}

impl MetadataKey {
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "partition" => Some(MetadataKey::Partition),
            "offset" => Some(MetadataKey::Offset),
            "timestamp" => Some(MetadataKey::Timestamp),
            "headers" => Some(MetadataKey::Headers),
            _ => None,
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            MetadataKey::Partition => DataType::Int32,
            MetadataKey::Offset => DataType::Int64,
            MetadataKey::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            MetadataKey::Headers => headers_type(),
        }
    }
}

/// The type of the `headers` metadata column: `MAP<STRING, BYTES>` as Arrow's map builder
/// lays it out.
pub fn headers_type() -> DataType {
    MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new())
        .finish()
        .data_type()
        .clone()
}

/// Configuration of a Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// Brokers and client properties.
    pub connection: KafkaConnection,
    /// Topics read (every partition of each).
    pub topics: Vec<String>,
    /// Format of message values (`debezium-json` is JSON inside Debezium's envelope).
    pub format: MessageFormat,
    /// The table's columns, metadata columns included.
    pub schema: SchemaRef,
    /// Metadata columns by name.
    pub metadata: Vec<(String, MetadataKey)>,
    /// Where reading starts when the job does not resume from stored offsets.
    pub startup: StartupMode,
    /// Stop at the end offsets seen when the reader starts.
    pub bounded: bool,
    /// What a message that cannot be decoded does.
    pub on_error: BadRecordPolicy,
    /// Messages per batch, at most.
    pub batch_size: usize,
    /// Key columns read from the message key, and the key's format (`value.fields-include =
    /// EXCEPT_KEY`, and always for upserts). Otherwise every column comes from the value.
    pub key: Option<(Vec<String>, MessageFormat)>,
    /// Whether the value holds the key columns too (`value.fields-include = ALL` of an
    /// upsert table); they are still read from the key, which a tombstone has alone.
    pub value_includes_key: bool,
    /// How messages hold changes: appended rows, Debezium's envelope, or upserts by key.
    pub changelog: Changelog,
    /// `debezium-json.schema-include`.
    pub debezium_schema_include: bool,
}

/// The Kafka source factory.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    config: KafkaSourceConfig,
    /// Schema of the decoded value columns (the table minus metadata and key columns).
    value_schema: SchemaRef,
    /// Schema of the columns decoded from the key (empty unless EXCEPT_KEY).
    key_schema: SchemaRef,
    partitions: Vec<(String, i32)>,
}

impl KafkaSource {
    /// Checks the schema and lists the partitions of the topics.
    pub fn new(config: KafkaSourceConfig) -> Result<Self, ConnectorError> {
        let config_error = |message: String| ConnectorError::Config {
            connector: "kafka".into(),
            message,
        };
        for (column, key) in &config.metadata {
            let field = config.schema.field_with_name(column).map_err(|_| {
                config_error(format!("metadata column '{column}' is not in the table"))
            })?;
            if field.data_type() != &key.data_type() {
                return Err(config_error(format!(
                    "metadata column '{column}' must have type {}",
                    key.data_type()
                )));
            }
        }
        let key_fields: &[String] = config.key.as_ref().map_or(&[], |(fields, _)| fields);
        for key in key_fields {
            if config.schema.field_with_name(key).is_err() {
                return Err(config_error(format!(
                    "key field '{key}' is not in the table"
                )));
            }
        }
        if config.changelog == Changelog::Upsert && config.key.is_none() {
            return Err(config_error(
                "an upsert table reads its primary key from the message key: set 'key.format'"
                    .into(),
            ));
        }
        let value_fields: Vec<Field> = config
            .schema
            .fields()
            .iter()
            .filter(|f| !config.metadata.iter().any(|(c, _)| c == f.name()))
            .filter(|f| config.value_includes_key || !key_fields.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect();
        let value_schema = Arc::new(Schema::new(value_fields));
        value_decoder(&config, &value_schema)?;
        let key_schema = Arc::new(Schema::new(
            key_fields
                .iter()
                .map(|k| config.schema.field_with_name(k).cloned())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(e.to_string()))?,
        ));
        if let Some((_, format)) = &config.key {
            format.decoder(Arc::clone(&key_schema))?;
        }

        let consumer: BaseConsumer = config
            .connection
            .client_config()
            .set(
                "socket.timeout.ms",
                config
                    .connection
                    .connect_timeout
                    .as_millis()
                    .max(10)
                    .to_string(),
            )
            .create()
            .map_err(|e| config.connection.unreachable("create a Kafka client", e))?;
        let mut partitions = Vec::new();
        for topic in &config.topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), config.connection.connect_timeout)
                .map_err(|e| {
                    config
                        .connection
                        .unreachable(&format!("read the metadata of topic '{topic}'"), e)
                })?;
            let Some(info) = metadata.topics().first() else {
                return Err(config_error(format!("topic '{topic}' does not exist")));
            };
            if let Some(error) = info.error() {
                return Err(config_error(format!("topic '{topic}': {error:?}")));
            }
            if info.partitions().is_empty() {
                return Err(config_error(format!(
                    "topic '{topic}' does not exist or has no partitions"
                )));
            }
            partitions.extend(info.partitions().iter().map(|p| (topic.clone(), p.id())));
        }
        partitions.sort();
        Ok(KafkaSource {
            config,
            value_schema,
            key_schema,
            partitions,
        })
    }

    /// Every (topic, partition) read, in split order.
    pub fn partitions(&self) -> &[(String, i32)] {
        &self.partitions
    }
}

/// The decoder of message values: the format's, or Debezium's envelope around JSON.
fn value_decoder(
    config: &KafkaSourceConfig,
    values: &SchemaRef,
) -> Result<Box<dyn LineDecoder>, ConnectorError> {
    match config.changelog {
        Changelog::Debezium => Ok(Box::new(DebeziumDecoder::new(
            Arc::clone(values),
            config.debezium_schema_include,
        ))),
        _ => config.format.decoder(Arc::clone(values)),
    }
}

impl SourceFactory for KafkaSource {
    fn schema(&self) -> SchemaRef {
        match self.config.changelog {
            Changelog::AppendOnly => SchemaRef::clone(&self.config.schema),
            _ => with_row_kind(&self.config.schema),
        }
    }

    /// Debezium changes are a full changelog; upserts are keyed by the primary key (the
    /// key columns).
    fn changelog(&self) -> ChangelogMode {
        match self.config.changelog {
            Changelog::AppendOnly => ChangelogMode::InsertOnly,
            Changelog::Debezium => ChangelogMode::All,
            Changelog::Upsert => ChangelogMode::Upsert {
                key: self
                    .config
                    .key
                    .as_ref()
                    .map(|k| k.0.clone())
                    .unwrap_or_default(),
            },
        }
    }

    fn describe(&self) -> String {
        format!(
            "kafka {} ({} partitions at {}{})",
            self.config.topics.join(";"),
            self.partitions.len(),
            self.config.connection.bootstrap_servers(),
            if self.config.bounded { ", bounded" } else { "" }
        )
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let mine: Vec<(String, i32)> = self
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| i % split.parallelism == split.index)
            .map(|(_, p)| p.clone())
            .collect();
        let mut client = self.config.connection.client_config();
        client
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        if !self.config.connection.properties.contains_key("group.id") {
            client.set("group.id", format!("weir-{}", split.source_id));
        }
        if !self
            .config
            .connection
            .properties
            .contains_key("auto.offset.reset")
        {
            client.set("auto.offset.reset", "earliest");
        }
        // Prefetch deeper than librdkafka's default: measured 3.5x the throughput on one
        // shard (benches/README.md); memory stays capped by queued.max.messages.kbytes.
        if !self
            .config
            .connection
            .properties
            .contains_key("queued.min.messages")
        {
            client.set("queued.min.messages", "1000000");
        }
        // librdkafka's statistics carry each partition's consumer lag (`pendingRecords`).
        if !self
            .config
            .connection
            .properties
            .contains_key("statistics.interval.ms")
        {
            client.set("statistics.interval.ms", "1000");
        }
        let counter =
            |name: &'static str| split.metrics.counter(&split.source_id, split.index, name);
        Ok(Box::new(KafkaReader {
            handler: BadRecordHandler {
                source: split.source_id.clone(),
                policy: self.config.on_error.clone(),
                skipped: counter(crate::metric_names::BAD_RECORDS_SKIPPED),
                dead_lettered: counter(crate::metric_names::BAD_RECORDS_DEAD_LETTERED),
            },
            decoder: value_decoder(&self.config, &self.value_schema)?,
            wants_headers: self
                .config
                .metadata
                .iter()
                .any(|(_, key)| *key == MetadataKey::Headers),
            key_decoder: match &self.config.key {
                Some((_, format)) => Some(format.decoder(Arc::clone(&self.key_schema))?),
                None => None,
            },
            config: self.config.clone(),
            value_schema: Arc::clone(&self.value_schema),
            client,
            consumer: None,
            pending: split.metrics.gauge(
                &split.source_id,
                split.index,
                crate::metric_names::PENDING_RECORDS,
                -1,
            ),
            partitions: mine
                .iter()
                .map(|(topic, partition)| {
                    let t = self
                        .config
                        .topics
                        .iter()
                        .position(|x| x == topic)
                        .unwrap_or(0);
                    ((t, *partition), PartitionState::default())
                })
                .collect(),
            ready: VecDeque::new(),
            chunk: Chunk::default(),
            restored: split.restored.clone(),
            returned: BTreeMap::new(),
        }))
    }
}

/// Sets a split's [`crate::metric_names::PENDING_RECORDS`] from librdkafka's statistics
/// (emitted every `statistics.interval.ms` while the consumer is polled): the sum of its
/// partitions' consumer lag; -1 until the first statistics.
struct LagReporter {
    pending: weir_engine::metrics::Gauge,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        let lag: i64 = (statistics.topics.values())
            .flat_map(|topic| topic.partitions.values())
            // Partition -1 is librdkafka's internal "unassigned" one; -1 lag: not known yet.
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.pending.set(lag);
    }
}

impl ConsumerContext for LagReporter {}

/// How long a partly filled batch waits for more messages.
const LINGER: Duration = Duration::from_millis(5);

/// Progress of one assigned partition.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionState {
    /// Next offset to read (`None` until known).
    next: Option<i64>,
    /// End offset of a bounded read.
    end: Option<i64>,
}

/// Reads the partitions of one split.
pub struct KafkaReader {
    config: KafkaSourceConfig,
    value_schema: SchemaRef,
    decoder: Box<dyn LineDecoder>,
    key_decoder: Option<Box<dyn LineDecoder>>,
    /// Whether a metadata column holds the headers (they are copied only then).
    wants_headers: bool,
    handler: BadRecordHandler,
    /// Settings of the consumer, created when reading starts (on the shard).
    client: rdkafka::ClientConfig,
    consumer: Option<BaseConsumer<LagReporter>>,
    /// The split's lag, set by the consumer's statistics.
    pending: weir_engine::metrics::Gauge,
    /// (topic index in `config.topics`, partition) -> progress.
    partitions: BTreeMap<(usize, i32), PartitionState>,
    /// Decoded batches, one partition each, not yet returned, with the next offsets of the
    /// partitions they complete.
    ready: VecDeque<(SourceBatch, Vec<(TopicPartition, i64)>)>,
    /// Messages polled but not decoded yet (kept here, not in the future: cancel-safety).
    chunk: Chunk,
    /// Offsets to resume from, when the job resumes.
    restored: Option<Arc<Positions>>,
    /// Next offset per partition after the batches returned so far: the stored position.
    returned: BTreeMap<(usize, i32), i64>,
}

/// The rows of `batch` (decoded from the records of a chunk of `total` that are not in
/// `own_bad`) whose records are not in `all_bad` either.
fn surviving(
    batch: &RecordBatch,
    total: usize,
    own_bad: &[usize],
    all_bad: &[usize],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if own_bad.len() == all_bad.len() {
        return Ok(batch.clone());
    }
    let rows: Vec<u32> = (0..total)
        .filter(|r| own_bad.binary_search(r).is_err())
        .enumerate()
        .filter(|(_, record)| all_bad.binary_search(record).is_err())
        .map(|(row, _)| row as u32)
        .collect();
    take_record_batch(batch, &UInt32Array::from(rows))
}

/// The `values` of the messages not in `bad` (ascending indices).
fn kept<T: Copy>(values: &[T], bad: &[usize]) -> Vec<T> {
    if bad.is_empty() {
        return values.to_vec();
    }
    values
        .iter()
        .enumerate()
        .filter(|(i, _)| bad.binary_search(i).is_err())
        .map(|(_, v)| *v)
        .collect()
}

/// (topic index in the source's topic list, partition).
type TopicPartition = (usize, i32);

/// The watermark partition of a topic partition: one id per (topic, partition) of the source.
fn partition_id(topic: usize, partition: i32) -> u32 {
    ((topic as u32) << 20) | (partition as u32 & 0xF_FFFF)
}

/// The messages of one chunk, before decoding. Positions are kept as numbers and only
/// formatted for bad records.
#[derive(Default)]
struct Chunk {
    values: Vec<u8>,
    /// Message keys, when key columns are read from them.
    keys: Vec<u8>,
    topics: Vec<usize>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: Vec<i64>,
    /// Headers of every message, when a `headers` column wants them.
    headers: Vec<Vec<(String, Option<Vec<u8>>)>>,
    /// Per message of an upsert topic: whether it is a tombstone (its key was deleted; it
    /// has no value line).
    tombstones: Vec<bool>,
    empty: Vec<BadRecord>,
    /// Next offset per partition after every message of the chunk (good, bad or skipped).
    next: BTreeMap<(usize, i32), i64>,
    /// When the first message arrived.
    first_at: Option<std::time::Instant>,
}

impl Chunk {
    /// Messages taken (decoded later or bad).
    fn next_count(&self) -> usize {
        self.offsets.len() + self.empty.len()
    }

    /// For each message, its value line (`None` for a tombstone).
    fn value_lines(&self) -> Vec<Option<usize>> {
        let mut line = 0;
        (0..self.offsets.len())
            .map(|i| match self.tombstones.get(i) {
                Some(true) => None,
                _ => {
                    line += 1;
                    Some(line - 1)
                }
            })
            .collect()
    }
}

/// `decoded` (one row per value line, bad lines left out) laid out per message: message `m`
/// is value line `lines[m]`, or a tombstone (every value column NULL) where `None`. Bad
/// indices become message indices.
fn spread(decoded: Decoded, lines: &[Option<usize>]) -> Result<Decoded, arrow::error::ArrowError> {
    if lines.iter().all(Option::is_some) {
        return Ok(decoded);
    }
    let schema = decoded.batch.schema();
    let nullable = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut picks = Vec::with_capacity(lines.len());
    let mut bad_indices = Vec::new();
    for (message, line) in lines.iter().enumerate() {
        match line {
            None => picks.push((1, 0)),
            Some(line) => match decoded.bad_indices.binary_search(line) {
                Ok(_) => bad_indices.push(message),
                Err(bad_before) => picks.push((0, line - bad_before)),
            },
        }
    }
    let columns = decoded
        .batch
        .columns()
        .iter()
        .map(|column| {
            let null = arrow::array::new_null_array(column.data_type(), 1);
            arrow::compute::interleave(&[column.as_ref(), null.as_ref()], &picks)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Decoded {
        batch: RecordBatch::try_new_with_options(
            nullable,
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(picks.len())),
        )?,
        bad: decoded.bad,
        bad_indices,
    })
}

impl KafkaReader {
    /// Next offset to read per (topic, partition) of this split.
    pub fn offsets(&self) -> Vec<(String, i32, Option<i64>)> {
        self.partitions
            .iter()
            .map(|((t, p), s)| (self.config.topics[*t].clone(), *p, s.next))
            .collect()
    }

    fn finished(&self) -> bool {
        self.partitions.is_empty()
            || (self.config.bounded
                && self.consumer.is_some()
                && self
                    .partitions
                    .values()
                    .all(|s| matches!((s.next, s.end), (Some(next), Some(end)) if next >= end)))
    }

    /// Creates the consumer, assigns the split's partitions at their start offsets, and for a
    /// bounded read records where each partition starts and ends.
    fn connect(&mut self) -> Result<(), ConnectorError> {
        let connection = &self.config.connection;
        let lag = LagReporter {
            pending: self.pending.clone(),
        };
        let consumer: BaseConsumer<LagReporter> = self
            .client
            .create_with_context(lag)
            .map_err(|e| connection.unreachable("create a Kafka consumer", e))?;
        let timeout = connection.connect_timeout;
        let mut assignment = TopicPartitionList::new();
        let mut low = HashMap::new();
        for ((t, partition), state) in self.partitions.iter_mut() {
            let topic = &self.config.topics[*t];
            let stored = self
                .restored
                .as_ref()
                .and_then(|r| r.get(&format!("{topic}/{partition}")))
                .and_then(|o| o.parse::<i64>().ok());
            let offset = match (&self.config.startup, stored) {
                (_, Some(offset)) => Offset::Offset(offset),
                (startup, None) => match startup {
                    StartupMode::Earliest => Offset::Beginning,
                    StartupMode::Latest => Offset::End,
                    StartupMode::GroupOffsets => Offset::Stored,
                    StartupMode::Specific(offsets) => offsets
                        .get(partition)
                        .map_or(Offset::Beginning, |o| Offset::Offset(*o)),
                    StartupMode::Timestamp(millis) => Offset::Offset(*millis),
                },
            };
            // Where reading starts, when known now, is the position until rows are returned
            // (a checkpoint before the first row must not fall back to the startup mode).
            let known = match (&self.config.startup, stored) {
                (_, Some(offset)) => Some(offset),
                (StartupMode::Specific(offsets), None) => offsets.get(partition).copied(),
                _ => None,
            };
            if let Some(offset) = known {
                self.returned.entry((*t, *partition)).or_insert(offset);
            }
            assignment
                .add_partition_offset(topic, *partition, offset)
                .map_err(|e| connection.unreachable(&format!("assign {topic}/{partition}"), e))?;
            if self.config.bounded {
                let (first, end) = consumer
                    .fetch_watermarks(topic, *partition, timeout)
                    .map_err(|e| {
                        connection
                            .unreachable(&format!("read the end offset of {topic}/{partition}"), e)
                    })?;
                state.end = Some(end);
                low.insert((topic.clone(), *partition), (first, end));
            }
        }
        if let StartupMode::Timestamp(_) = self.config.startup {
            assignment = consumer
                .offsets_for_times(assignment, timeout)
                .map_err(|e| connection.unreachable("look up offsets by timestamp", e))?;
        }
        if self.config.bounded {
            // Where a bounded read starts decides when it is done: a partition whose start is
            // at or past its end offset has nothing to read.
            for element in assignment.elements() {
                let Some(t) = self.config.topics.iter().position(|t| t == element.topic()) else {
                    continue;
                };
                let (first, end) = low
                    .get(&(element.topic().to_string(), element.partition()))
                    .copied()
                    .unwrap_or((0, 0));
                let start = match element.offset() {
                    Offset::Offset(n) => n.max(first),
                    Offset::End => end,
                    _ => first,
                };
                if let Some(state) = self.partitions.get_mut(&(t, element.partition())) {
                    state.next = Some(start);
                    self.returned
                        .entry((t, element.partition()))
                        .or_insert(start);
                }
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|e| connection.unreachable("assign partitions", e))?;
        self.consumer = Some(consumer);
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        if !self.partitions.is_empty() && self.consumer.is_none() {
            self.connect()?;
        }
        loop {
            if let Some((batch, completes)) = self.ready.pop_front() {
                self.returned.extend(completes);
                return Ok(Some(batch));
            }
            if self.finished() {
                return Ok(None);
            }
            let chunk = self.poll().await?;
            self.decode(chunk)?;
        }
    }

    /// Takes messages until a batch is full or, once it has some, until [`LINGER`] has passed.
    /// Waiting sleeps 1 ms at a time so the shard's other subtasks run meanwhile.
    async fn poll(&mut self) -> Result<Chunk, ConnectorError> {
        while self.chunk.next_count() < self.config.batch_size {
            let consumer = self.consumer.as_ref().expect("connected");
            let chunk = &mut self.chunk;
            let Some(message) = consumer.poll(Duration::ZERO) else {
                let lingered = chunk
                    .first_at
                    .is_some_and(|t: std::time::Instant| t.elapsed() >= LINGER);
                if lingered || self.finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            chunk.first_at.get_or_insert_with(std::time::Instant::now);
            let message = message.map_err(|e| ConnectorError::Config {
                connector: self.handler.source.clone(),
                message: format!("reading from kafka: {e}"),
            })?;
            let Some(t) = self.config.topics.iter().position(|t| t == message.topic()) else {
                continue;
            };
            let (partition, offset) = (message.partition(), message.offset());
            let state = self.partitions.entry((t, partition)).or_default();
            if state.end.is_some_and(|end| offset >= end) {
                state.next = Some(offset);
                continue;
            }
            state.next = Some(offset + 1);
            chunk.next.insert((t, partition), offset + 1);
            let key = match (&self.key_decoder, message.key()) {
                (None, _) => Some(&[][..]),
                (Some(_), Some(key)) if !key.iter().all(u8::is_ascii_whitespace) => Some(key),
                (Some(_), _) => None,
            };
            let payload = message
                .payload()
                .filter(|p| !p.iter().all(u8::is_ascii_whitespace));
            if payload.is_none() && self.config.changelog == Changelog::Debezium {
                // Debezium follows a delete with a tombstone for compaction: nothing to read.
                continue;
            }
            let upsert = self.config.changelog == Changelog::Upsert;
            match (payload, key) {
                (payload, Some(key)) if payload.is_some() || upsert => {
                    if let Some(payload) = payload {
                        chunk.values.extend_from_slice(payload);
                        chunk.values.push(b'\n');
                    }
                    if upsert {
                        chunk.tombstones.push(payload.is_none());
                    }
                    if self.key_decoder.is_some() {
                        chunk.keys.extend_from_slice(key);
                        chunk.keys.push(b'\n');
                    }
                    chunk.topics.push(t);
                    chunk.partitions.push(partition);
                    chunk.offsets.push(offset);
                    chunk
                        .timestamps
                        .push(message.timestamp().to_millis().unwrap_or(0));
                    if self.wants_headers {
                        chunk
                            .headers
                            .push(message.headers().map_or_else(Vec::new, |headers| {
                                headers
                                    .iter()
                                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            }));
                    }
                }
                (_, key) => chunk.empty.push(BadRecord {
                    position: format!("{}/{partition}/{offset}", self.config.topics[t]),
                    error: if key.is_none() {
                        "message has no key"
                    } else {
                        "message has no value"
                    }
                    .into(),
                    raw: message.payload().unwrap_or_default().to_vec(),
                }),
            }
            if self.finished() {
                break;
            }
        }
        Ok(std::mem::take(&mut self.chunk))
    }

    /// Decodes a chunk into one batch per partition, queued in `ready`.
    fn decode(&mut self, chunk: Chunk) -> Result<(), ConnectorError> {
        let lines = chunk.value_lines();
        self.handler.handle(chunk.empty)?;
        let mut completes = chunk.next;
        if chunk.offsets.is_empty() {
            self.returned.extend(completes);
            return Ok(());
        }
        let arrow = |source| ConnectorError::Arrow {
            connector: self.handler.source.clone(),
            source,
        };
        let topics = &self.config.topics;
        let position = |i: usize| {
            format!(
                "{}/{}/{}",
                topics[chunk.topics[i]], chunk.partitions[i], chunk.offsets[i]
            )
        };
        let value_position = |line: usize| {
            let message = lines.iter().position(|l| *l == Some(line)).unwrap_or(line);
            position(message)
        };
        let value = decode_chunk(self.decoder.as_mut(), &chunk.values, &value_position)
            .and_then(|decoded| spread(decoded, &lines))
            .map_err(arrow)?;
        let key = match &mut self.key_decoder {
            Some(decoder) => {
                Some(decode_chunk(decoder.as_mut(), &chunk.keys, &position).map_err(arrow)?)
            }
            None => None,
        };
        // A record is bad if its value or its key is; each is reported once.
        let mut bad = value.bad_indices.clone();
        let mut reports = value.bad;
        if let Some(key) = &key {
            for (i, report) in key.bad_indices.iter().zip(&key.bad) {
                if bad.binary_search(i).is_err() {
                    reports.push(report.clone());
                }
            }
            bad.extend(&key.bad_indices);
            bad.sort_unstable();
            bad.dedup();
        }
        self.handler.handle(reports)?;
        let total = chunk.offsets.len();
        let value_batch =
            surviving(&value.batch, total, &value.bad_indices, &bad).map_err(arrow)?;
        let key_batch = match &key {
            Some(key) => Some(surviving(&key.batch, total, &key.bad_indices, &bad).map_err(arrow)?),
            None => None,
        };
        let keep = |values: &[i64]| kept(values, &bad);
        let partitions: Vec<i64> = chunk.partitions.iter().map(|p| *p as i64).collect();
        let key_fields: &[String] = self.config.key.as_ref().map_or(&[], |(k, _)| k);
        let mut fields: Vec<Arc<Field>> = self.config.schema.fields().iter().cloned().collect();
        let mut columns = Vec::with_capacity(self.config.schema.fields().len() + 2);
        for field in self.config.schema.fields() {
            let column: ArrayRef =
                match self.config.metadata.iter().find(|(c, _)| c == field.name()) {
                    Some((_, MetadataKey::Partition)) => Arc::new(Int32Array::from_iter_values(
                        keep(&partitions).into_iter().map(|p| p as i32),
                    )),
                    Some((_, MetadataKey::Offset)) => {
                        Arc::new(Int64Array::from(keep(&chunk.offsets)))
                    }
                    Some((_, MetadataKey::Timestamp)) => {
                        Arc::new(TimestampMillisecondArray::from(keep(&chunk.timestamps)))
                    }
                    Some((_, MetadataKey::Headers)) => {
                        let mut builder =
                            MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
                        for (i, headers) in chunk.headers.iter().enumerate() {
                            if bad.binary_search(&i).is_ok() {
                                continue;
                            }
                            for (key, value) in headers {
                                builder.keys().append_value(key);
                                builder.values().append_option(value.as_deref());
                            }
                            builder.append(true).map_err(arrow)?;
                        }
                        Arc::new(builder.finish())
                    }
                    None => match &key_batch {
                        Some(keys) if key_fields.contains(field.name()) => {
                            let index = keys.schema().index_of(field.name()).map_err(arrow)?;
                            Arc::clone(keys.column(index))
                        }
                        _ => {
                            let index = self.value_schema.index_of(field.name()).map_err(arrow)?;
                            Arc::clone(value_batch.column(index))
                        }
                    },
                };
            columns.push(column);
        }
        match self.config.changelog {
            Changelog::AppendOnly => {}
            Changelog::Upsert => {
                fields.push(Arc::new(weir_engine::changelog::row_kind_field()));
                let tombstones = kept(&chunk.tombstones, &bad);
                columns.push(kind_array(tombstones.into_iter().map(|t| match t {
                    true => RowKind::Delete,
                    false => RowKind::Insert,
                })));
            }
            Changelog::Debezium => {
                // The row kinds and update images the decoder added, expanded per partition.
                for name in [ROW_KIND_COLUMN, BEFORE_COLUMN] {
                    let index = value_batch.schema().index_of(name).map_err(arrow)?;
                    fields.push(Arc::new(value_batch.schema().field(index).clone()));
                    columns.push(Arc::clone(value_batch.column(index)));
                }
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow)?;
        // Split by partition, so that watermarks are tracked per partition.
        let mut rows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let kept = (0..chunk.offsets.len()).filter(|i| bad.binary_search(i).is_err());
        for (row, i) in kept.enumerate() {
            rows.entry(partition_id(chunk.topics[i], chunk.partitions[i]))
                .or_default()
                .push(row as u32);
        }
        let with_rows: Vec<u32> = rows.keys().copied().collect();
        for (partition, indices) in rows {
            let part = if indices.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(indices)).map_err(arrow)?
            };
            let part = expand_updates(&part).map_err(arrow)?;
            // Each batch completes its partition's offsets; the first also those of
            // partitions whose messages of this chunk were all bad.
            let (t, p) = ((partition >> 20) as usize, (partition & 0xF_FFFF) as i32);
            let mut done: Vec<(TopicPartition, i64)> = completes
                .remove(&(t, p))
                .map(|o| ((t, p), o))
                .into_iter()
                .collect();
            if self.ready.is_empty() {
                let without_rows: Vec<TopicPartition> = completes
                    .keys()
                    .filter(|(t, p)| !with_rows.contains(&partition_id(*t, *p)))
                    .copied()
                    .collect();
                for key in without_rows {
                    if let Some(offset) = completes.remove(&key) {
                        done.push((key, offset));
                    }
                }
            }
            self.ready.push_back((
                SourceBatch {
                    batch: part,
                    partition,
                },
                done,
            ));
        }
        self.returned.extend(completes);
        Ok(())
    }
}

impl SourceReader for KafkaReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move { Ok(self.next().await?) })
    }

    fn partitions(&self) -> Vec<u32> {
        self.partitions
            .keys()
            .map(|(t, p)| partition_id(*t, *p))
            .collect()
    }

    /// `topic/partition` -> the next offset after the rows returned so far.
    fn positions(&self) -> Positions {
        self.returned
            .iter()
            .map(|((t, p), offset)| {
                (
                    format!("{}/{p}", self.config.topics[*t]),
                    offset.to_string(),
                )
            })
            .collect()
    }
}
