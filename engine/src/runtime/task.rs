//! A running subtask: an input (a source split or an input gate), a fused chain of operator
//! subtasks, and a tail (routers to other subtasks, or a sink writer).
//!
//! Within a chain, operators call into each other through plain function calls: each message
//! goes through operator 1, whatever it emits through operator 2, and so on. Only the tail
//! and late-row outputs cross channels, and a full channel suspends the whole chain, which is
//! how backpressure reaches the source.

use std::future::poll_fn;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Poll;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use tokio::sync::mpsc;

use crate::checkpoint::coordinator::{Event, SourceProgress};
use crate::error::{panic_message, BoxError, EngineError};
use crate::message::EventTimeMs;
use crate::message::{CheckpointId, Message, Watermark};
use crate::metrics::{names, Counter, Gauge, Metrics};
use crate::operator::{Context, Operator, TimeDomain, Timers};
use crate::partition::{partition_by_key, KeyGroupRange, KeyHasher};
use crate::sink::SinkWriter;
use crate::source::{SourceBatch, SourceReader};
use crate::state::{OperatorState, StateBackend};
use crate::time::now_ms;
use crate::time::WatermarkGenerator;

use super::input::InputGate;

/// The receiving end of one input channel of a subtask (one per upstream subtask and edge).
pub(crate) type Inbox = mpsc::Receiver<Message>;
/// The sending end of one input channel.
pub(crate) type Outbox = mpsc::Sender<Message>;

/// Commands the job sends to source subtasks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// Inject this barrier into the stream now.
    Barrier(CheckpointId),
    /// Inject this barrier of a stop-with-savepoint, then read nothing more until
    /// [`Control::Resume`] (Flink's synchronous savepoint): no row after the savepoint reaches
    /// a sink, so a job resumed from it repeats none, even into a sink that is not
    /// transactional.
    SuspendAfter(CheckpointId),
    /// The stop-with-savepoint failed: read on.
    Resume,
}

impl Control {
    /// The barrier to inject, if this command asks for one.
    fn barrier(self) -> Option<CheckpointId> {
        match self {
            Control::Barrier(id) | Control::SuspendAfter(id) => Some(id),
            Control::Resume => None,
        }
    }
}

/// The sending end of one input channel of a downstream subtask.
#[derive(Debug, Clone)]
pub(crate) struct OutputChannel {
    pub(crate) tx: Outbox,
    /// Time spent waiting for room in the channel ([`names::BACKPRESSURED_TIME_NS`] of the
    /// sending subtask).
    pub(crate) backpressured: Counter,
}

/// The downstream subtask is gone: the job is stopping because something else failed.
#[derive(Debug)]
pub(crate) struct DownstreamGone;

impl OutputChannel {
    async fn send(&self, message: Message) -> Result<(), DownstreamGone> {
        match self.tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(DownstreamGone),
            Err(mpsc::error::TrySendError::Full(message)) => {
                let waiting = Instant::now();
                let sent = self.tx.send(message).await.map_err(|_| DownstreamGone);
                self.backpressured.add(elapsed_ns(waiting));
                sent
            }
        }
    }
}

/// Routes the messages of one edge from one upstream subtask.
pub(crate) enum Router {
    Forward(OutputChannel),
    Hash {
        hasher: KeyHasher,
        targets: Vec<OutputChannel>,
    },
    Broadcast(Vec<OutputChannel>),
    Rebalance {
        targets: Vec<OutputChannel>,
        next: usize,
    },
}

/// Why a chain stopped pushing.
pub(crate) enum PushError {
    Failed(EngineError),
    DownstreamGone,
}

impl From<DownstreamGone> for PushError {
    fn from(_: DownstreamGone) -> Self {
        PushError::DownstreamGone
    }
}

impl Router {
    async fn send(
        &mut self,
        message: Message,
        operator: &str,
        subtask: usize,
    ) -> Result<(), PushError> {
        match (self, message) {
            (Router::Forward(target), message) => target.send(message).await?,
            (Router::Hash { hasher, targets }, Message::Batch(batch)) => {
                let parts = partition_by_key(hasher, &batch, targets.len()).map_err(|e| {
                    PushError::Failed(EngineError::operator(operator, subtask, Box::new(e)))
                })?;
                for (target, part) in parts {
                    targets[target].send(Message::Batch(part)).await?;
                }
            }
            (Router::Rebalance { targets, next }, Message::Batch(batch)) => {
                targets[*next].send(Message::Batch(batch)).await?;
                *next = (*next + 1) % targets.len();
            }
            (
                Router::Hash { targets, .. }
                | Router::Broadcast(targets)
                | Router::Rebalance { targets, .. },
                message,
            ) => {
                for target in targets.iter() {
                    target.send(message.clone()).await?;
                }
            }
        }
        Ok(())
    }
}

async fn send_all(
    routers: &mut [Router],
    message: Message,
    operator: &str,
    subtask: usize,
) -> Result<(), PushError> {
    for router in routers.iter_mut() {
        router.send(message.clone(), operator, subtask).await?;
    }
    Ok(())
}

/// One operator subtask inside a chain.
pub(crate) struct OperatorSlot {
    pub(crate) name: String,
    /// The namespace of its state.
    pub(crate) uid: String,
    pub(crate) operator: Box<dyn Operator>,
    pub(crate) late_routers: Vec<Router>,
    /// The operator's state: the shard's checkpointed RocksDB store when the job
    /// checkpoints, its temporary store otherwise.
    pub(crate) state: Box<dyn StateBackend>,
    /// With checkpoints, the shard's temporary store, where state tables evict between
    /// barriers.
    pub(crate) spill: Option<Box<dyn StateBackend>>,
    pub(crate) key_groups: KeyGroupRange,
    metrics: SlotMetrics,
    pub(crate) timers: Timers,
    /// Whether `open` has run.
    pub(crate) opened: bool,
    /// The last input watermark.
    pub(crate) watermark: Option<EventTimeMs>,
    /// The last watermark forwarded (lower than the input's while the operator holds it).
    pub(crate) forwarded: Option<EventTimeMs>,
    /// The operator asked to be called again ([`Context::continue_later`]).
    pub(crate) continuing: bool,
    /// The control messages to forward once it is done.
    deferred: Vec<Message>,
}

/// The metrics the runtime keeps for an operator subtask (Flink's `numRecordsIn`,
/// `numRecordsOut`, `currentInputWatermark`).
pub(crate) struct SlotMetrics {
    rows_in: Counter,
    rows_out: Counter,
    watermark: Gauge,
}

impl SlotMetrics {
    pub(crate) fn new(metrics: &Metrics, operator: &str, subtask: usize) -> Self {
        SlotMetrics {
            rows_in: metrics.counter(operator, subtask, names::ROWS_IN),
            rows_out: metrics.counter(operator, subtask, names::ROWS_OUT),
            watermark: metrics.gauge(operator, subtask, names::INPUT_WATERMARK, i64::MIN),
        }
    }
}

/// What one call into an operator is about.
enum Call {
    Open,
    Batch(RecordBatch),
    Timer(TimeDomain, i64),
    Watermark(EventTimeMs),
    Continue,
    Snapshot,
}

impl OperatorSlot {
    pub(crate) fn new(
        name: String,
        uid: String,
        operator: Box<dyn Operator>,
        state: Box<dyn StateBackend>,
        key_groups: KeyGroupRange,
        metrics: SlotMetrics,
    ) -> Self {
        OperatorSlot {
            name,
            uid,
            operator,
            late_routers: Vec::new(),
            state,
            spill: None,
            key_groups,
            metrics,
            timers: Timers::default(),
            opened: false,
            watermark: None,
            forwarded: None,
            continuing: false,
            deferred: Vec::new(),
        }
    }

    /// Makes one call into the operator with a fresh context; what it emits goes to `next`
    /// and `late`. Returns the watermark the operator held back to, if it did.
    fn call(
        &mut self,
        call: Call,
        input: usize,
        subtask: usize,
        next: &mut Vec<Message>,
        late: &mut Vec<Message>,
    ) -> Result<Option<EventTimeMs>, EngineError> {
        let operator = &mut self.operator;
        let spill: Option<&mut dyn StateBackend> = match self.spill.as_mut() {
            Some(spill) => Some(spill.as_mut()),
            None => None,
        };
        let state =
            OperatorState::new(self.state.as_mut(), &self.uid, self.key_groups).with_spill(spill);
        let mut ctx = Context::new(input, self.watermark, self.key_groups, &mut self.timers)
            .with_state(state);
        let result = guarded(&self.name, subtask, || match call {
            Call::Open => operator.open(&mut ctx),
            Call::Batch(batch) => operator.process_batch(batch, &mut ctx),
            Call::Timer(domain, time) => operator.on_timer(domain, time, &mut ctx),
            Call::Watermark(t) => operator.on_watermark(t, &mut ctx),
            Call::Continue => operator.on_continue(&mut ctx),
            Call::Snapshot => match ctx.state() {
                Some(state) => operator.snapshot_state(state),
                None => Ok(()),
            },
        })?;
        result.map_err(|e| EngineError::operator(&self.name, subtask, e))?;
        self.continuing = ctx.take_continue();
        let rows: usize = ctx.batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 0 {
            self.metrics.rows_out.add(rows as u64);
        }
        next.extend(ctx.batches.drain(..).map(Message::Batch));
        late.extend(ctx.late.drain(..).map(Message::Batch));
        Ok(ctx.held())
    }

    /// Runs one message from operator input `input` through the operator; results go to
    /// `next`, late rows and control messages for the late-row output to `late`.
    fn handle(
        &mut self,
        message: Message,
        input: usize,
        subtask: usize,
        next: &mut Vec<Message>,
        late: &mut Vec<Message>,
    ) -> Result<(), EngineError> {
        if !self.opened {
            self.opened = true;
            self.call(Call::Open, 0, subtask, next, late)?;
        }
        let forward = match message {
            Message::Batch(batch) => {
                self.metrics.rows_in.add(batch.num_rows() as u64);
                self.call(Call::Batch(batch), input, subtask, next, late)?;
                return Ok(());
            }
            Message::Watermark(Watermark::EventTime(t)) => {
                self.watermark = Some(t);
                self.metrics.watermark.set(t);
                while let Some(time) = self.timers.pop_due(TimeDomain::EventTime, t) {
                    let call = Call::Timer(TimeDomain::EventTime, time);
                    self.call(call, 0, subtask, next, late)?;
                    // (Parts of an event-time timer's result are taken at once: the watermark
                    // call must come after them.)
                    while self.continuing {
                        self.call(Call::Continue, 0, subtask, next, late)?;
                    }
                }
                let held = self.call(Call::Watermark(t), 0, subtask, next, late)?;
                let forwarded = held.map_or(t, |h| h.min(t));
                if self.forwarded.is_some_and(|f| f >= forwarded) {
                    return Ok(());
                }
                self.forwarded = Some(forwarded);
                Message::Watermark(Watermark::EventTime(forwarded))
            }
            Message::Barrier(id) => {
                self.call(Call::Snapshot, 0, subtask, next, late)?;
                Message::Barrier(id)
            }
            message @ (Message::Watermark(Watermark::Idle) | Message::EndOfStream) => message,
        };
        match self.continuing {
            true => self.deferred.push(forward),
            false => self.forward(forward, next, late),
        }
        Ok(())
    }

    fn forward(&self, message: Message, next: &mut Vec<Message>, late: &mut Vec<Message>) {
        next.push(message.clone());
        if !self.late_routers.is_empty() {
            late.push(message);
        }
    }

    /// Calls an operator that asked to continue; once it is done, forwards what waited.
    fn resume(
        &mut self,
        subtask: usize,
        next: &mut Vec<Message>,
        late: &mut Vec<Message>,
    ) -> Result<(), EngineError> {
        self.call(Call::Continue, 0, subtask, next, late)?;
        if !self.continuing {
            for message in std::mem::take(&mut self.deferred) {
                self.forward(message, next, late);
            }
        }
        Ok(())
    }

    /// Fires the processing-time timers due at `now` (ms since the epoch).
    fn fire_processing_timers(
        &mut self,
        now: i64,
        subtask: usize,
        next: &mut Vec<Message>,
        late: &mut Vec<Message>,
    ) -> Result<(), EngineError> {
        // A timer whose result continues stops the loop; the others stay due.
        while !self.continuing {
            let Some(time) = self.timers.pop_due(TimeDomain::ProcessingTime, now) else {
                break;
            };
            let call = Call::Timer(TimeDomain::ProcessingTime, time);
            self.call(call, 0, subtask, next, late)?;
        }
        Ok(())
    }
}

/// Calls into user code, turning a panic into a job failure that names the operator.
pub(crate) fn guarded<T>(
    operator: &str,
    subtask: usize,
    f: impl FnOnce() -> T,
) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| EngineError::OperatorPanicked {
        operator: operator.to_string(),
        subtask,
        message: panic_message(payload.as_ref()),
    })
}

/// Where the chain's output goes.
pub(crate) enum Tail {
    Routers {
        name: String,
        routers: Vec<Router>,
    },
    Sink {
        name: String,
        writer: Box<dyn SinkWriter>,
        rows_written: Counter,
    },
}

/// How a subtask reports to the checkpoint coordinator.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) task: usize,
    pub(crate) events: std::sync::mpsc::Sender<Event>,
}

impl Reporter {
    pub(crate) fn send(&self, event: Event) {
        // The coordinator is gone only when the job is stopping.
        let _ = self.events.send(event);
    }
}

/// The fused operators of one subtask and their tail.
pub(crate) struct Chain {
    pub(crate) subtask: usize,
    pub(crate) operators: Vec<OperatorSlot>,
    pub(crate) tail: Tail,
    /// Set when the job checkpoints.
    pub(crate) reporter: Option<Reporter>,
    /// A source's positions at the barrier being pushed: (source name, positions).
    pub(crate) source_positions: Option<SourceProgress>,
    /// The sink's commit token from the barrier being pushed.
    pub(crate) sink_token: Option<String>,
}

impl Chain {
    /// Pushes one message through every operator and out of the tail.
    async fn push(&mut self, message: Message) -> Result<(), PushError> {
        self.push_input(0, message).await
    }

    /// Pushes one message that arrived on input `input` of the chain's first operator.
    async fn push_input(&mut self, input: usize, message: Message) -> Result<(), PushError> {
        let barrier = match &message {
            Message::Barrier(id) => Some(*id),
            _ => None,
        };
        self.push_from(0, input, vec![message]).await?;
        if let Some(id) = barrier {
            self.acknowledge(id);
        }
        Ok(())
    }

    /// Runs `messages` (for input `input` of operator `start`) through operators `start..` and
    /// out of the tail.
    async fn push_from(
        &mut self,
        start: usize,
        input: usize,
        mut current: Vec<Message>,
    ) -> Result<(), PushError> {
        let subtask = self.subtask;
        let mut late = Vec::new();
        for index in start..self.operators.len() {
            let input = if index == start { input } else { 0 };
            let mut next = Vec::with_capacity(current.len());
            for message in current {
                self.operators[index]
                    .handle(message, input, subtask, &mut next, &mut late)
                    .map_err(PushError::Failed)?;
                self.continue_operator(index, &mut next, &mut late).await?;
            }
            let slot = &mut self.operators[index];
            for message in late.drain(..) {
                send_all(&mut slot.late_routers, message, &slot.name, subtask).await?;
            }
            current = next;
        }
        for message in current {
            self.deliver(message).await?;
        }
        Ok(())
    }

    /// While operator `index` asks to continue ([`Context::continue_later`]), sends what it
    /// emitted on through the rest of the chain and calls it again: a long result goes out
    /// part by part, never held whole.
    async fn continue_operator(
        &mut self,
        index: usize,
        next: &mut Vec<Message>,
        late: &mut Vec<Message>,
    ) -> Result<(), PushError> {
        let subtask = self.subtask;
        while self.operators[index].continuing {
            let slot = &mut self.operators[index];
            for message in late.drain(..) {
                send_all(&mut slot.late_routers, message, &slot.name, subtask).await?;
            }
            let parts = std::mem::take(next);
            Box::pin(self.push_from(index + 1, 0, parts)).await?;
            self.operators[index]
                .resume(subtask, next, late)
                .map_err(PushError::Failed)?;
        }
        Ok(())
    }

    /// The earliest processing-time timer of the chain's operators (ms since the epoch).
    fn next_processing_timer(&self) -> Option<i64> {
        self.operators
            .iter()
            .filter_map(|slot| slot.timers.next_processing_time())
            .min()
    }

    /// Fires the processing-time timers due now, operator by operator (an operator's stop at
    /// one whose result continues; the rest fire at the next wake-up); what a timer emits goes
    /// through the operators after it.
    async fn fire_processing_timers(&mut self) -> Result<(), PushError> {
        let now = now_ms();
        for index in 0..self.operators.len() {
            let (mut next, mut late) = (Vec::new(), Vec::new());
            let slot = &mut self.operators[index];
            slot.fire_processing_timers(now, self.subtask, &mut next, &mut late)
                .map_err(PushError::Failed)?;
            self.continue_operator(index, &mut next, &mut late).await?;
            let slot = &mut self.operators[index];
            for message in late {
                send_all(&mut slot.late_routers, message, &slot.name, self.subtask).await?;
            }
            if !next.is_empty() {
                self.push_from(index + 1, 0, next).await?;
            }
        }
        Ok(())
    }

    /// The barrier has passed the whole chain: operators' state is stored, the sink has
    /// pre-committed.
    fn acknowledge(&mut self, id: CheckpointId) {
        let Some(reporter) = &self.reporter else {
            return;
        };
        let sink = match &self.tail {
            Tail::Sink { name, .. } => Some((name.clone(), self.sink_token.take())),
            Tail::Routers { .. } => None,
        };
        reporter.send(Event::Ack {
            task: reporter.task,
            checkpoint: id.0,
            source: self.source_positions.take(),
            sink,
        });
    }

    async fn deliver(&mut self, message: Message) -> Result<(), PushError> {
        let subtask = self.subtask;
        match &mut self.tail {
            Tail::Routers { name, routers } => send_all(routers, message, name, subtask).await,
            Tail::Sink {
                name,
                writer,
                rows_written,
            } => {
                let result = match message {
                    Message::Batch(batch) => {
                        rows_written.add(batch.num_rows() as u64);
                        writer.write_batch(batch).await
                    }
                    Message::Watermark(w) => {
                        writer.on_watermark(w);
                        Ok(())
                    }
                    Message::Barrier(id) => writer.on_barrier(id).await.map(|token| {
                        self.sink_token = token;
                    }),
                    Message::EndOfStream => writer.finish().await,
                };
                result.map_err(|e| PushError::Failed(EngineError::operator(name, subtask, e)))
            }
        }
    }
}

/// Nanoseconds since `start`, for the idle and backpressure counters.
fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Where a subtask's messages come from.
pub(crate) enum TaskInput {
    Source {
        name: String,
        reader: Box<dyn SourceReader>,
        watermarks: Option<WatermarkGenerator>,
        idle_timeout: Option<Duration>,
        /// The split's watermark-alignment group, if any.
        alignment: Option<super::alignment::AlignedSplit>,
        control: mpsc::UnboundedReceiver<Control>,
        /// Rows the split read (the source's `rows_out`).
        rows_out: Counter,
    },
    Channel {
        /// One receiver per input channel, in the gate's numbering.
        rx: Vec<Inbox>,
        gate: InputGate,
        /// Time waiting with no input ready ([`names::IDLE_TIME_NS`] of the chain's head).
        idle: Counter,
    },
}

/// One subtask of a chain, ready to run on a shard.
pub(crate) struct SubtaskRunner {
    /// The chain's node names, for messages.
    pub(crate) name: String,
    pub(crate) input: TaskInput,
    pub(crate) chain: Chain,
}

impl SubtaskRunner {
    pub(crate) async fn run(self) -> Result<(), EngineError> {
        let SubtaskRunner {
            input, mut chain, ..
        } = self;
        let result = match input {
            TaskInput::Source {
                name,
                reader,
                watermarks,
                idle_timeout,
                alignment,
                control,
                rows_out,
            } => {
                let source = SourceInput {
                    reader,
                    watermarks,
                    idle_timeout,
                    alignment,
                    control,
                    rows_out,
                };
                run_source(&name, source, &mut chain).await
            }
            TaskInput::Channel { rx, gate, idle } => run_channel(rx, gate, idle, &mut chain).await,
        };
        if let Some(reporter) = &chain.reporter {
            reporter.send(Event::Finished {
                task: reporter.task,
            });
        }
        match result {
            Ok(()) | Err(PushError::DownstreamGone) => Ok(()),
            Err(PushError::Failed(e)) => Err(e),
        }
    }
}

/// A source split's positions and watermark, for the checkpoint.
fn progress(
    name: &str,
    reader: &dyn SourceReader,
    watermarks: Option<&WatermarkGenerator>,
) -> SourceProgress {
    SourceProgress {
        source: name.to_string(),
        positions: reader.positions(),
        watermark: watermarks.and_then(WatermarkGenerator::current),
    }
}

/// What woke a source subtask up.
enum Step {
    Barrier(CheckpointId),
    /// A stop-with-savepoint's barrier: inject it, then wait.
    SuspendAfter(CheckpointId),
    Read(Result<Option<SourceBatch>, BoxError>),
    /// A paused split's time to look at its alignment group again.
    Recheck,
}

/// What a source subtask reads and how it makes watermarks.
struct SourceInput {
    reader: Box<dyn SourceReader>,
    watermarks: Option<WatermarkGenerator>,
    idle_timeout: Option<Duration>,
    alignment: Option<super::alignment::AlignedSplit>,
    control: mpsc::UnboundedReceiver<Control>,
    rows_out: Counter,
}

/// Reads a split until it ends, stamping watermarks and injecting barriers on request.
async fn run_source(name: &str, source: SourceInput, chain: &mut Chain) -> Result<(), PushError> {
    let SourceInput {
        mut reader,
        mut watermarks,
        idle_timeout,
        alignment,
        mut control,
        rows_out,
    } = source;
    let subtask = chain.subtask;
    let fail = |e: BoxError| PushError::Failed(EngineError::operator(name, subtask, e));
    // A year stands for "never" when no idle timeout is set.
    let idle_after = idle_timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut control_open = true;
    if let Some(generator) = &mut watermarks {
        generator.declare_partitions(&reader.partitions());
    }
    loop {
        let current = watermarks.as_ref().and_then(WatermarkGenerator::current);
        // A split too far ahead of its alignment group waits (but answers barriers).
        let paused = alignment.as_ref().is_some_and(|a| a.paused(current));
        let recheck = alignment
            .as_ref()
            .map_or(Duration::from_millis(1), |a| a.recheck);
        let step = {
            let read = reader.next_batch();
            tokio::pin!(read);
            let idle = tokio::time::sleep(idle_after);
            tokio::pin!(idle);
            let mut marked_idle = false;
            loop {
                // Processing-time timers of the chain's operators (none: wait for the idle timeout).
                let timer_wait = chain.next_processing_timer().map_or(idle_after, |due| {
                    Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64)
                });
                tokio::select! {
                    biased;
                    command = control.recv(), if control_open => match command {
                        // Readers are cancel-safe: the pending read is dropped and started again.
                        Some(Control::Barrier(id)) => break Step::Barrier(id),
                        Some(Control::SuspendAfter(id)) => break Step::SuspendAfter(id),
                        Some(Control::Resume) => {}
                        None => control_open = false,
                    },
                    result = &mut read, if !paused => break Step::Read(result),
                    () = tokio::time::sleep(recheck), if paused => break Step::Recheck,
                    () = &mut idle, if !marked_idle && !paused => {
                        marked_idle = true;
                        if let Some(alignment) = &alignment {
                            alignment.report(None);
                        }
                        chain.push(Message::Watermark(Watermark::Idle)).await?;
                    }
                    () = tokio::time::sleep(timer_wait) => chain.fire_processing_timers().await?,
                }
            }
        };
        let next = match step {
            Step::Barrier(id) => {
                chain.source_positions = Some(progress(name, reader.as_ref(), watermarks.as_ref()));
                chain.push(Message::Barrier(id)).await?;
                continue;
            }
            Step::SuspendAfter(id) => {
                chain.source_positions = Some(progress(name, reader.as_ref(), watermarks.as_ref()));
                chain.push(Message::Barrier(id)).await?;
                // The job stops once the savepoint completes (dropping this task), or resumes
                // if it failed. The coordinator closes the channel as it stops the job: the
                // split must not read on then, so it waits to be dropped.
                loop {
                    match control.recv().await {
                        Some(Control::Resume) => break,
                        Some(command) => {
                            if let Some(id) = command.barrier() {
                                chain.push(Message::Barrier(id)).await?;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
                continue;
            }
            Step::Read(next) => next,
            Step::Recheck => continue,
        };
        let Some(SourceBatch { batch, partition }) = next.map_err(fail)? else {
            break;
        };
        rows_out.add(batch.num_rows() as u64);
        let watermark = match &mut watermarks {
            Some(generator) => generator
                .on_batch(partition, &batch)
                .map_err(|e| fail(Box::new(e)))?,
            None => None,
        };
        chain.push(Message::Batch(batch)).await?;
        if let Some(watermark) = watermark {
            chain.push(Message::Watermark(watermark)).await?;
        }
        if let Some(alignment) = &alignment {
            alignment.report(watermarks.as_ref().and_then(WatermarkGenerator::current));
        }
    }
    // A finished split no longer holds its group back.
    drop(alignment);
    chain.push(Message::Watermark(Watermark::MAX)).await?;
    // With checkpoints, a last barrier after all input lets sinks commit everything (and
    // stores the final positions) before the split ends.
    if let Some(reporter) = chain.reporter.clone() {
        reporter.send(Event::SourceDone {
            task: reporter.task,
        });
        if let Some(id) = control.recv().await.and_then(Control::barrier) {
            chain.source_positions = Some(progress(name, reader.as_ref(), watermarks.as_ref()));
            chain.push(Message::Barrier(id)).await?;
        }
    }
    chain.push(Message::EndOfStream).await
}

/// Feeds the chain from its input channels through the gate until every input has ended.
/// A channel blocked at a barrier is not read until the barrier is aligned (its messages wait
/// in the channel, whose capacity bounds them), and processing-time timers wake the subtask.
async fn run_channel(
    mut rx: Vec<Inbox>,
    mut gate: InputGate,
    idle: Counter,
    chain: &mut Chain,
) -> Result<(), PushError> {
    let mut ready = Vec::new();
    let mut next_channel = 0;
    let mut closed = vec![false; rx.len()];
    loop {
        let waiting = Instant::now();
        let received = {
            let receive = poll_fn(|cx| {
                let n = rx.len();
                for offset in 0..n {
                    let channel = (next_channel + offset) % n;
                    if closed[channel] || gate.is_blocked(channel) {
                        continue;
                    }
                    match rx[channel].poll_recv(cx) {
                        Poll::Ready(Some(message)) => {
                            next_channel = (channel + 1) % n;
                            return Poll::Ready(Some((channel, message)));
                        }
                        Poll::Ready(None) => closed[channel] = true,
                        Poll::Pending => {}
                    }
                }
                if closed.iter().all(|c| *c) {
                    return Poll::Ready(None);
                }
                Poll::Pending
            });
            match chain.next_processing_timer() {
                Some(due) => {
                    let wait = Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64);
                    tokio::select! {
                        received = receive => received.map(Some),
                        () = tokio::time::sleep(wait) => Some(None),
                    }
                }
                None => receive.await.map(Some),
            }
        };
        idle.add(elapsed_ns(waiting));
        match received {
            // Every sender is gone without end-of-stream: the job is stopping.
            None => return Err(PushError::DownstreamGone),
            Some(None) => chain.fire_processing_timers().await?,
            Some(Some((channel, message))) => {
                gate.accept(channel, message, &mut ready);
                for (input, message) in ready.drain(..) {
                    chain.push_input(input, message).await?;
                }
                if gate.is_finished() {
                    return Ok(());
                }
            }
        }
    }
}
