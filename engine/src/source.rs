//! The source interface: a factory per node, a reader per split.
//!
//! A source with parallelism `P` is read by `P` split readers, one per subtask; the factory
//! decides which part of the input each split reads. Readers are asynchronous so that I/O
//! (Kafka, files) does not block the shard; a reader returns `None` once its split is done.
//! The runtime applies the node's watermark strategy to every batch a reader returns.

use std::future::Future;
use std::pin::Pin;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::BoxError;

/// A boxed future that runs on one shard (it need not be `Send`).
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Which split a reader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitContext {
    pub index: usize,
    pub parallelism: usize,
}

/// Describes a source node and creates its split readers.
pub trait SourceFactory: Send + Sync {
    /// Schema of every batch the readers produce.
    fn schema(&self) -> SchemaRef;

    /// One line for `EXPLAIN`.
    fn describe(&self) -> String;

    /// Creates the reader of one split.
    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError>;
}

/// Reads one split. `next_batch` must be cancel-safe only in the sense that the runtime
/// never drops a pending call except when the whole job stops.
pub trait SourceReader: Send {
    /// The next batch of the split, or `None` when the split has ended.
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<RecordBatch>, BoxError>>;
}
