//! The source interface: a factory per node, a reader per split.
//!
//! A source with parallelism `P` is read by `P` split readers, one per subtask; the factory
//! decides which part of the input each split reads. Readers are asynchronous so that I/O
//! (Kafka, files) does not block the shard; a reader returns `None` once its split is done.
//! The runtime applies the node's watermark strategy to every batch a reader returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::BoxError;
use crate::metrics::Metrics;

/// A boxed future that runs on one shard (it need not be `Send`).
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Which split a reader reads, and where it reports.
#[derive(Debug, Clone)]
pub struct SplitContext {
    pub index: usize,
    pub parallelism: usize,
    /// The source node's name (for messages and metrics).
    pub source_id: String,
    pub metrics: Metrics,
    /// Positions to resume from, by partition, as every split of this source stored them
    /// in the checkpoint being restored (a split picks the partitions it reads). `None`: a
    /// fresh start.
    pub restored: Option<Arc<Positions>>,
}

/// Read positions by partition: file path, Kafka `topic/partition`, generator stream.
pub type Positions = BTreeMap<String, String>;

impl SplitContext {
    /// A context for split `index` of `parallelism`, outside a running job (tests, tools).
    pub fn standalone(index: usize, parallelism: usize) -> Self {
        SplitContext {
            index,
            parallelism,
            source_id: "source".into(),
            metrics: Metrics::default(),
            restored: None,
        }
    }
}

/// Describes a source node and creates its split readers.
pub trait SourceFactory: Send + Sync {
    /// Schema of every batch the readers produce.
    fn schema(&self) -> SchemaRef;

    /// One line for `EXPLAIN`.
    fn describe(&self) -> String;

    /// What kinds of rows the source produces: append-only unless it reads a changelog (then
    /// its schema ends with [`crate::changelog::ROW_KIND_COLUMN`]).
    fn changelog(&self) -> crate::changelog::ChangelogMode {
        crate::changelog::ChangelogMode::InsertOnly
    }

    /// Creates the reader of one split.
    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError>;
}

/// A batch read from a split, and the partition of the split it came from.
///
/// A split may read several partitions (Kafka partitions of one subtask); watermarks are
/// generated per partition, so every batch must hold rows of one partition only. Sources
/// without partitions use partition 0 (`From<RecordBatch>`).
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    pub partition: u32,
}

impl From<RecordBatch> for SourceBatch {
    fn from(batch: RecordBatch) -> Self {
        SourceBatch {
            batch,
            partition: 0,
        }
    }
}

/// Reads one split.
///
/// `next_batch` must be cancel-safe: the runtime drops a pending call when a checkpoint
/// barrier arrives and calls again afterwards, so a dropped call must lose nothing (keep
/// partial work in the reader, not in the future), and [`SourceReader::positions`] must
/// cover exactly the batches returned so far.
pub trait SourceReader: Send {
    /// The next batch of the split, or `None` when the split has ended.
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>>;

    /// The partitions this split will read, when known up front (Kafka partitions). Each one
    /// holds back the split's watermark until it has data or has been idle for the idle
    /// timeout. Empty: partitions are learned from the batches.
    fn partitions(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Where the split has read up to, by partition: stored at every checkpoint and handed
    /// back through [`SplitContext::restored`]. Positions are keyed by partition, not by
    /// split, so a job can resume at another parallelism. Empty for sources that cannot
    /// resume (they start over).
    fn positions(&self) -> Positions {
        Positions::new()
    }
}
