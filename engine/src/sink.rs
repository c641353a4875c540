//! The sink interface: a factory per node, a writer per subtask.
//!
//! A writer receives batches in order, then `finish` once the input has ended. `on_barrier`
//! is where a transactional sink will pre-commit (the checkpoint issue adds commit/abort);
//! until then it defaults to doing nothing. Writes are asynchronous: a writer that waits
//! (a slow disk, a full broker) holds back its input channel, which is backpressure.

use arrow::record_batch::RecordBatch;

use crate::error::BoxError;
use crate::message::{CheckpointId, Watermark};
use crate::operator::SubtaskContext;
use crate::source::LocalBoxFuture;

/// Describes a sink node and creates its writers.
pub trait SinkFactory: Send + Sync {
    /// One line for `EXPLAIN`.
    fn describe(&self) -> String;

    /// Creates the writer of one subtask.
    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError>;
}

/// Writes the rows of one sink subtask.
pub trait SinkWriter: Send {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>>;

    /// The input watermark advanced.
    fn on_watermark(&mut self, _watermark: Watermark) {}

    /// A checkpoint barrier passed: everything before it has been written.
    fn on_barrier(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }

    /// The input ended: flush and close.
    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>>;
}
