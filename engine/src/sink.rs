//! The sink interface: a factory per node, a writer per subtask.
//!
//! A writer receives batches in order, then `finish` once the input has ended. Writes are
//! asynchronous: a writer that waits (a slow disk, a full broker) holds back its input
//! channel, which is backpressure.
//!
//! Exactly-once output is a two-phase commit driven by checkpoints (when the job has them,
//! [`SubtaskContext::checkpointing`]):
//! 1. pre-commit: at a barrier, [`SinkWriter::on_barrier`] makes everything written before it
//!    durable but invisible (staged files, an open transaction) and returns a commit token;
//! 2. commit: once the checkpoint's manifest is written, the factory's
//!    [`SinkFactory::commit`] makes the tokens' output visible. It must be idempotent: on
//!    recovery the tokens of the restored checkpoint are committed again;
//! 3. abort: before a job starts with checkpoints, [`SinkFactory::abort_uncommitted`] discards
//!    output staged after the restored checkpoint (it will be written again).
//!
//! A sink whose pre-committed output cannot be committed again by a new process (Kafka
//! transactions: a new producer aborts what the old one left open) reports instead which
//! checkpoint it last committed ([`SinkFactory::recover_committed`]); the job then resumes
//! from that checkpoint, which may be older than the newest one. The coordinator commits such
//! sinks before the others, so the others never committed past it.
//!
//! Without checkpoints a writer makes output visible as it goes (at the latest in `finish`).

use arrow::record_batch::RecordBatch;

use crate::error::BoxError;
use crate::message::{CheckpointId, Watermark};
use crate::operator::SubtaskContext;
use crate::source::LocalBoxFuture;

/// Describes a sink node and creates its writers.
pub trait SinkFactory: Send + Sync {
    /// One line for `EXPLAIN`.
    fn describe(&self) -> String;

    /// Whether the sink can take a changelog (an updating result, whose `op` column says
    /// `+I`, `-U`, `+U` or `-D`) rather than only appended rows.
    fn accepts_changelog(&self) -> bool {
        false
    }

    /// Whether the sink writes an upsert stream by its own key (a row replaces the one with the
    /// same key, `-D` deletes it: `upsert-kafka`). Such a sink needs rows unique by key: it
    /// takes append-only rows and upsert streams, not a changelog whose rows can share a key
    /// (a join's), where deleting one row would delete them all.
    fn upserts(&self) -> bool {
        false
    }

    /// Creates the writer of one subtask.
    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError>;

    /// Makes the output behind `tokens` (from [`SinkWriter::on_barrier`], all subtasks)
    /// visible. Called once per completed checkpoint, and again for the restored one.
    fn commit(&self, _checkpoint: u64, _tokens: &[String]) -> Result<(), BoxError> {
        Ok(())
    }

    /// For sinks that cannot finish another process's commit: aborts whatever a previous
    /// run left open and returns the last checkpoint whose output is committed (`Some(0)`:
    /// none). `None`: the sink can always commit again (the default).
    fn recover_committed(&self) -> Result<Option<u64>, BoxError> {
        Ok(None)
    }

    /// Discards output that was pre-committed or staged but belongs to no committed
    /// checkpoint. Called before a job with checkpoints starts (after `commit` of the restored
    /// checkpoint's tokens).
    fn abort_uncommitted(&self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Writes the rows of one sink subtask.
pub trait SinkWriter: Send {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>>;

    /// The input watermark advanced.
    fn on_watermark(&mut self, _watermark: Watermark) {}

    /// A checkpoint barrier passed: pre-commit everything written before it and return the
    /// token [`SinkFactory::commit`] needs to make it visible (`None`: nothing to commit).
    fn on_barrier(
        &mut self,
        _checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<Option<String>, BoxError>> {
        Box::pin(async { Ok(None) })
    }

    /// The input ended: flush and close.
    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>>;
}
