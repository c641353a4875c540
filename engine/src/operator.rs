//! The operator interface: one required batch method, and hooks with conservative defaults.
//!
//! An [`OperatorFactory`] describes an operator in the graph (its output schema for a given
//! input schema) and creates one [`Operator`] per subtask. Operators are synchronous: the
//! runtime calls them in a fused call chain and forwards watermarks, barriers and
//! end-of-stream itself, *after* the hook has run, so anything a hook emits precedes the
//! control message downstream.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::BoxError;
use crate::message::EventTimeMs;
use crate::metrics::Metrics;
use crate::partition::KeyGroupRange;
use crate::state::OperatorState;

/// What a subtask knows about where it runs.
#[derive(Debug, Clone)]
pub struct SubtaskContext {
    /// The node's unique name (logs, metrics, errors).
    pub operator_id: String,
    /// The node's stable identity ([`crate::graph::Graph::uids`]): the namespace of its state
    /// in checkpoints and savepoints.
    pub uid: String,
    /// This subtask's index in `0..parallelism`.
    pub index: usize,
    pub parallelism: usize,
    /// The key groups this subtask owns (meaningful after a hash exchange).
    pub key_groups: KeyGroupRange,
    /// Total number of key groups of the job.
    pub max_key_groups: u16,
    /// Schema of the rows this subtask receives.
    pub input_schema: SchemaRef,
    /// Whether anything consumes the late-row side output; if not, late rows are dropped.
    pub late_output_connected: bool,
    /// Whether the job takes checkpoints: sinks then make output visible only on commit.
    pub checkpointing: bool,
    pub metrics: Metrics,
}

/// Where an operator puts its results while handling one message.
#[derive(Debug, Default)]
pub struct Output {
    pub(crate) batches: Vec<RecordBatch>,
    pub(crate) late: Vec<RecordBatch>,
}

impl Output {
    /// Emits a batch on the main output. Empty batches are not forwarded.
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.batches.push(batch);
        }
    }

    /// Emits late rows on the late-row side output.
    pub fn emit_late(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.late.push(batch);
        }
    }

    /// Takes what was emitted on the main output (for tests and drivers).
    pub fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }

    /// Takes what was emitted on the late-row output.
    pub fn take_late(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.late)
    }
}

/// One subtask of an operator.
///
/// Contract: `process_batch` may emit any number of batches; hooks default to doing nothing.
/// Returning an error fails the job, naming the operator. An operator must not panic on user
/// data; if it does, the runtime turns the panic into the same kind of failure.
pub trait Operator: Send {
    /// Handles one batch of input rows.
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), BoxError>;

    /// The input watermark advanced to `watermark` (the minimum over all inputs).
    /// End of stream arrives here first as `EventTimeMs::MAX`.
    fn on_watermark(&mut self, _watermark: EventTimeMs, _out: &mut Output) -> Result<(), BoxError> {
        Ok(())
    }

    /// Writes all state into `state` (called at every barrier, before it is forwarded).
    fn snapshot_state(&mut self, _state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Replaces in-memory state with what `state` holds for this subtask's key groups.
    fn restore_state(&mut self, _state: &OperatorState<'_>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Describes an operator node and creates its subtasks.
pub trait OperatorFactory: Send + Sync {
    /// Schema of the main output for the given input schema, or why the input does not fit.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, BoxError>;

    /// One line for `EXPLAIN`: what the operator does, e.g. `tumble(10s) [count(*)]`.
    fn describe(&self) -> String;

    /// Creates the operator of one subtask.
    fn create(&self, context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError>;
}
