//! A running subtask: an input (a source split or an input gate), a fused chain of operator
//! subtasks, and a tail (routers to other subtasks, or a sink writer).
//!
//! Within a chain, operators call into each other through plain function calls: each message
//! goes through operator 1, whatever it emits through operator 2, and so on. Only the tail
//! and late-row outputs cross channels, and a full channel suspends the whole chain, which is
//! how backpressure reaches the source.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::checkpoint::coordinator::{Event, SourceProgress};
use crate::error::{panic_message, BoxError, EngineError};
use crate::message::{CheckpointId, Message, Watermark};
use crate::metrics::Counter;
use crate::operator::{Operator, Output};
use crate::partition::{partition_by_key, KeyGroupRange, KeyHasher};
use crate::sink::SinkWriter;
use crate::source::{SourceBatch, SourceReader};
use crate::state::{OperatorState, StateBackend};
use crate::time::WatermarkGenerator;

use super::input::InputGate;

/// The receiving end of a subtask's input channel: messages tagged with their input number.
pub(crate) type Inbox = mpsc::Receiver<(u32, Message)>;
/// A sending end of a subtask's input channel.
pub(crate) type Outbox = mpsc::Sender<(u32, Message)>;

/// Commands the job sends to source subtasks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// Inject this barrier into the stream now.
    Barrier(CheckpointId),
}

/// The sending end of one input of a downstream subtask.
#[derive(Debug, Clone)]
pub(crate) struct OutputChannel {
    pub(crate) tx: Outbox,
    /// Index of this channel among the downstream subtask's inputs.
    pub(crate) input: u32,
}

/// The downstream subtask is gone: the job is stopping because something else failed.
#[derive(Debug)]
pub(crate) struct DownstreamGone;

impl OutputChannel {
    async fn send(&self, message: Message) -> Result<(), DownstreamGone> {
        self.tx
            .send((self.input, message))
            .await
            .map_err(|_| DownstreamGone)
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
    /// Where the operator's state goes at a barrier: the shard's RocksDB store when the job
    /// checkpoints, memory otherwise.
    pub(crate) state: Box<dyn StateBackend>,
    pub(crate) key_groups: KeyGroupRange,
    pub(crate) rows_in: Counter,
}

impl OperatorSlot {
    /// Runs one message through the operator; results go to `next`, late rows and control
    /// messages for the late-row output to `late`.
    fn handle(
        &mut self,
        message: Message,
        subtask: usize,
        next: &mut Vec<Message>,
        late: &mut Vec<Message>,
    ) -> Result<(), EngineError> {
        let mut out = Output::default();
        let operator = &mut self.operator;
        let result: Result<(), BoxError> = match &message {
            Message::Batch(batch) => {
                self.rows_in.add(batch.num_rows() as u64);
                let batch = batch.clone();
                guarded(&self.name, subtask, || {
                    operator.process_batch(batch, &mut out)
                })?
            }
            Message::Watermark(Watermark::EventTime(t)) => {
                let t = *t;
                guarded(&self.name, subtask, || operator.on_watermark(t, &mut out))?
            }
            Message::Barrier(_) => {
                let mut state = OperatorState::new(self.state.as_mut(), &self.uid, self.key_groups);
                guarded(&self.name, subtask, || operator.snapshot_state(&mut state))?
            }
            Message::Watermark(Watermark::Idle) | Message::EndOfStream => Ok(()),
        };
        result.map_err(|e| EngineError::operator(&self.name, subtask, e))?;
        next.extend(out.batches.drain(..).map(Message::Batch));
        late.extend(out.late.drain(..).map(Message::Batch));
        if !matches!(message, Message::Batch(_)) {
            next.push(message.clone());
            if !self.late_routers.is_empty() {
                late.push(message);
            }
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
        let subtask = self.subtask;
        let barrier = match &message {
            Message::Barrier(id) => Some(*id),
            _ => None,
        };
        let mut current = vec![message];
        let mut late = Vec::new();
        for slot in &mut self.operators {
            let mut next = Vec::with_capacity(current.len());
            for message in current {
                slot.handle(message, subtask, &mut next, &mut late)
                    .map_err(PushError::Failed)?;
            }
            for message in late.drain(..) {
                send_all(&mut slot.late_routers, message, &slot.name, subtask).await?;
            }
            current = next;
        }
        for message in current {
            self.deliver(message).await?;
        }
        if let Some(id) = barrier {
            self.acknowledge(id);
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

/// Where a subtask's messages come from.
pub(crate) enum TaskInput {
    Source {
        name: String,
        reader: Box<dyn SourceReader>,
        watermarks: Option<WatermarkGenerator>,
        idle_timeout: Option<Duration>,
        control: mpsc::UnboundedReceiver<Control>,
    },
    Channel {
        rx: Inbox,
        gate: InputGate,
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
                control,
            } => run_source(&name, reader, watermarks, idle_timeout, control, &mut chain).await,
            TaskInput::Channel { rx, gate } => run_channel(rx, gate, &mut chain).await,
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
    Read(Result<Option<SourceBatch>, BoxError>),
}

/// Reads a split until it ends, stamping watermarks and injecting barriers on request.
async fn run_source(
    name: &str,
    mut reader: Box<dyn SourceReader>,
    mut watermarks: Option<WatermarkGenerator>,
    idle_timeout: Option<Duration>,
    mut control: mpsc::UnboundedReceiver<Control>,
    chain: &mut Chain,
) -> Result<(), PushError> {
    let subtask = chain.subtask;
    let fail = |e: BoxError| PushError::Failed(EngineError::operator(name, subtask, e));
    // A year stands for "never" when no idle timeout is set.
    let idle_after = idle_timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut control_open = true;
    if let Some(generator) = &mut watermarks {
        generator.declare_partitions(&reader.partitions());
    }
    loop {
        let step = {
            let read = reader.next_batch();
            tokio::pin!(read);
            let idle = tokio::time::sleep(idle_after);
            tokio::pin!(idle);
            let mut marked_idle = false;
            loop {
                tokio::select! {
                    biased;
                    command = control.recv(), if control_open => match command {
                        // Readers are cancel-safe: the pending read is dropped and started again.
                        Some(Control::Barrier(id)) => break Step::Barrier(id),
                        None => control_open = false,
                    },
                    result = &mut read => break Step::Read(result),
                    () = &mut idle, if !marked_idle => {
                        marked_idle = true;
                        chain.push(Message::Watermark(Watermark::Idle)).await?;
                    }
                }
            }
        };
        let next = match step {
            Step::Barrier(id) => {
                chain.source_positions = Some(progress(name, reader.as_ref(), watermarks.as_ref()));
                chain.push(Message::Barrier(id)).await?;
                continue;
            }
            Step::Read(next) => next,
        };
        let Some(SourceBatch { batch, partition }) = next.map_err(fail)? else {
            break;
        };
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
    }
    chain.push(Message::Watermark(Watermark::MAX)).await?;
    // With checkpoints, a last barrier after all input lets sinks commit everything (and
    // stores the final positions) before the split ends.
    if let Some(reporter) = chain.reporter.clone() {
        reporter.send(Event::SourceDone {
            task: reporter.task,
        });
        if let Some(Control::Barrier(id)) = control.recv().await {
            chain.source_positions = Some(progress(name, reader.as_ref(), watermarks.as_ref()));
            chain.push(Message::Barrier(id)).await?;
        }
    }
    chain.push(Message::EndOfStream).await
}

/// Feeds the chain from its input channels through the gate until every input has ended.
async fn run_channel(
    mut rx: Inbox,
    mut gate: InputGate,
    chain: &mut Chain,
) -> Result<(), PushError> {
    let mut ready = Vec::new();
    while let Some((input, message)) = rx.recv().await {
        gate.accept(input as usize, message, &mut ready);
        for message in ready.drain(..) {
            chain.push(message).await?;
        }
        if gate.is_finished() {
            return Ok(());
        }
    }
    // Every sender is gone without end-of-stream: the job is stopping.
    Err(PushError::DownstreamGone)
}
