//! The operator interface: one required batch method, and hooks with conservative defaults.
//!
//! An [`OperatorFactory`] describes an operator in the graph (its named inputs, its output
//! schema and changelog mode for given inputs) and creates one [`Operator`] per subtask.
//! Operators are synchronous: the runtime calls them in a fused call chain with a per-call
//! [`Context`] (which input a batch came from, the watermark, timers, outputs) and forwards
//! watermarks, barriers and end-of-stream itself, *after* the hook has run, so anything a hook
//! emits precedes the control message downstream.
//!
//! Timers are Flink's: an event-time timer fires (through [`Operator::on_timer`], in time
//! order, before [`Operator::on_watermark`]) once the watermark reaches its time; a
//! processing-time timer once the wall clock (ms since the epoch) does. Timers are per subtask
//! and not part of snapshots: an operator registers those its restored state needs in
//! [`Operator::open`].

use std::collections::BTreeSet;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::changelog::ChangelogMode;
use crate::error::BoxError;
use crate::message::EventTimeMs;
use crate::metrics::Metrics;
use crate::partition::KeyGroupRange;
use crate::state::table::{MemoryBudget, StateCodec, StateTable, TableSpec};
use crate::state::{OperatorState, StateError};

/// The input names of an operator with one input.
pub const SINGLE_INPUT: &[&str] = &["input"];

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
    /// Schema of the rows this subtask receives, per input (in [`OperatorFactory::inputs`]
    /// order; one for sinks and one-input operators).
    pub input_schemas: Vec<SchemaRef>,
    /// Whether anything consumes the late-row side output; if not, late rows are dropped.
    pub late_output_connected: bool,
    /// Whether the job takes checkpoints: sinks then make output visible only on commit.
    pub checkpointing: bool,
    pub metrics: Metrics,
    /// The memory budget the subtask's state tables share with the rest of its shard.
    pub state_budget: MemoryBudget,
}

impl SubtaskContext {
    /// A subtask running alone (index 0 of 1, every key group of 128, no checkpoints, its own
    /// metrics), with inputs of `input_schemas`: for tests and drivers that call operators
    /// directly.
    pub fn standalone(input_schemas: Vec<SchemaRef>) -> Self {
        SubtaskContext {
            operator_id: "standalone".into(),
            uid: "standalone".into(),
            index: 0,
            parallelism: 1,
            key_groups: KeyGroupRange::all(128),
            max_key_groups: 128,
            input_schemas,
            late_output_connected: false,
            checkpointing: false,
            metrics: Metrics::default(),
            state_budget: MemoryBudget::unlimited(),
        }
    }

    /// A state table of this subtask: its hot entries count against the shard's memory
    /// budget, its evictions in the operator's `state_entries_evicted` metric.
    pub fn state_table<C: StateCodec>(&self, spec: TableSpec, codec: C) -> StateTable<C> {
        let evicted = self.counter(crate::metrics::names::STATE_ENTRIES_EVICTED);
        StateTable::new(spec, codec, self.state_budget.clone()).counting_evictions(evicted)
    }

    /// This subtask's counter `name` (see [`crate::metrics::names`]).
    pub fn counter(&self, name: &'static str) -> crate::metrics::Counter {
        self.metrics.counter(&self.operator_id, self.index, name)
    }

    /// Schema of the first (for most operators, the only) input.
    pub fn input_schema(&self) -> &SchemaRef {
        &self.input_schemas[0]
    }
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// The watermark.
    EventTime,
    /// The wall clock, in ms since the Unix epoch.
    ProcessingTime,
}

/// The timers of one operator subtask (times in ms).
#[derive(Debug, Default)]
pub struct Timers {
    event_time: BTreeSet<EventTimeMs>,
    processing_time: BTreeSet<i64>,
}

impl Timers {
    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<i64> {
        match domain {
            TimeDomain::EventTime => &mut self.event_time,
            TimeDomain::ProcessingTime => &mut self.processing_time,
        }
    }

    /// Removes and returns the earliest timer of `domain` at or before `time`.
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<i64> {
        let set = self.set(domain);
        let first = *set.first()?;
        (first <= time).then(|| {
            set.pop_first();
            first
        })
    }

    /// The earliest processing-time timer, if any.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing_time.first().copied()
    }
}

/// Everything an operator can see and do during one call.
pub struct Context<'a> {
    input: usize,
    watermark: Option<EventTimeMs>,
    key_groups: KeyGroupRange,
    timers: &'a mut Timers,
    state: Option<OperatorState<'a>>,
    hold: Option<EventTimeMs>,
    /// The operator asked to be called again ([`Context::continue_later`]).
    more: bool,
    pub(crate) batches: Vec<RecordBatch>,
    pub(crate) late: Vec<RecordBatch>,
}

impl<'a> Context<'a> {
    /// A context for a call about input `input` (an index into [`OperatorFactory::inputs`])
    /// at input watermark `watermark`. The runtime makes one per call; tests and drivers that
    /// call operators directly make their own.
    pub fn new(
        input: usize,
        watermark: Option<EventTimeMs>,
        key_groups: KeyGroupRange,
        timers: &'a mut Timers,
    ) -> Self {
        Context {
            input,
            watermark,
            key_groups,
            timers,
            state: None,
            hold: None,
            more: false,
            batches: Vec::new(),
            late: Vec::new(),
        }
    }

    /// The context with the operator's state (the runtime's, or a test's own backend).
    pub fn with_state(mut self, state: OperatorState<'a>) -> Self {
        self.state = Some(state);
        self
    }

    /// Which input the batch of this call came from (0 for one-input operators).
    pub fn input(&self) -> usize {
        self.input
    }

    /// The current input watermark (the minimum over inputs), `None` before the first.
    pub fn watermark(&self) -> Option<EventTimeMs> {
        self.watermark
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The operator's state in the subtask's backend (`None` when called outside the runtime
    /// without [`Context::with_state`]).
    pub fn state(&mut self) -> Option<&mut OperatorState<'a>> {
        self.state.as_mut()
    }

    /// The operator's state, or [`StateError::NoBackend`] (an operator with state tables
    /// called outside the runtime without [`Context::with_state`]).
    pub fn state_or_err(&mut self) -> Result<&mut OperatorState<'a>, StateError> {
        self.state.as_mut().ok_or(StateError::NoBackend)
    }

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

    /// Fires [`Operator::on_timer`] once the clock of `domain` reaches `time` (ms). Registering
    /// the same time twice gives one timer.
    pub fn register_timer(&mut self, domain: TimeDomain, time: i64) {
        self.timers.set(domain).insert(time);
    }

    /// Removes a timer registered for `time`, if any.
    pub fn delete_timer(&mut self, domain: TimeDomain, time: i64) {
        self.timers.set(domain).remove(&time);
    }

    /// Holds back the watermark forwarded after this call to at most `time`: an operator that
    /// emits rows older than its input watermark (an interval join's outer rows, as Flink's
    /// `KeyedCoProcessOperatorWithWatermarkDelay`) keeps downstream windows open for them.
    /// The forwarded watermark never goes back; a held watermark is forwarded at a later one.
    pub fn hold_watermark(&mut self, time: EventTimeMs) {
        self.hold = Some(self.hold.map_or(time, |h| h.min(time)));
    }

    /// The watermark hold set during this call, if any (the runtime forwards at most this).
    pub fn held(&self) -> Option<EventTimeMs> {
        self.hold
    }

    /// Asks for [`Operator::on_continue`] once what this call emitted has gone downstream:
    /// an operator with a long result (a window over millions of keys) emits it in bounded
    /// parts, one per call, instead of building it whole. Until it stops asking, no other
    /// call comes, and a watermark that started the result is forwarded after its last part.
    pub fn continue_later(&mut self) {
        self.more = true;
    }

    /// Whether the operator asked to be called again during this call, clearing the request
    /// (for the runtime, tests and drivers: call [`Operator::on_continue`] while it is true).
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.more)
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
    /// Called once before the first message, after `restore_state`: register the timers the
    /// restored state needs.
    fn open(&mut self, _ctx: &mut Context<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    /// Handles one batch of rows from input `ctx.input()`.
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError>;

    /// The input watermark advanced to `watermark` (the minimum over all inputs), after every
    /// event-time timer at or before it fired. End of stream arrives here first as
    /// `EventTimeMs::MAX`.
    fn on_watermark(
        &mut self,
        _watermark: EventTimeMs,
        _ctx: &mut Context<'_>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// A timer registered with [`Context::register_timer`] is due.
    fn on_timer(
        &mut self,
        _domain: TimeDomain,
        _time: i64,
        _ctx: &mut Context<'_>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Emits the next part of a result, after a call asked with [`Context::continue_later`].
    fn on_continue(&mut self, _ctx: &mut Context<'_>) -> Result<(), BoxError> {
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
    /// Names of the inputs, in order (an edge enters input `i`); one unless overridden.
    fn inputs(&self) -> &'static [&'static str] {
        SINGLE_INPUT
    }

    /// Schema of the main output for the given input schemas (one per input), or why the
    /// inputs do not fit.
    fn output_schema(&self, inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError>;

    /// What kinds of rows the output carries for inputs carrying `inputs`, or why the operator
    /// cannot take such an input. Default: the first input's mode (a row-wise operator).
    fn output_changelog(&self, inputs: &[ChangelogMode]) -> Result<ChangelogMode, BoxError> {
        Ok(inputs[0].clone())
    }

    /// The schema of the rows the operator emits on its late-row output. Default: its first
    /// input's (the late rows as they came); an operator with several inputs may encode them
    /// into one shape instead.
    fn late_schema(&self, inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        inputs
            .first()
            .cloned()
            .ok_or_else(|| "an operator without inputs has no late rows".into())
    }

    /// One line for `EXPLAIN`: what the operator does, e.g. `tumble(10s) [count(*)]`.
    fn describe(&self) -> String;

    /// Creates the operator of one subtask.
    fn create(&self, context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError>;
}
