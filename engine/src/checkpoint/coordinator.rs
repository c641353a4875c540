//! The checkpoint coordinator: one thread per job that triggers barriers, collects the
//! subtasks' acknowledgements, completes checkpoints and tells sinks to commit.
//!
//! For checkpoint `n` (at most one in flight):
//! 1. Trigger: when the interval has passed, when every running source split has read all
//!    its input (the final checkpoint of a bounded job), or when a savepoint is requested,
//!    `Barrier(n)` is sent to every source split.
//! 2. Each subtask handles the barrier in its chain: operators write their state into the
//!    shard's store, a source reports its positions, a sink pre-commits and reports a commit
//!    token. Then the subtask acknowledges `n`. A subtask that ends is not waited for.
//! 3. When every running subtask has acknowledged, no store is written until barrier `n + 1`
//!    (which is triggered only after this step), so each shard's store is checkpointed
//!    (hard links), then the manifest is written atomically. Now checkpoint `n` exists.
//! 4. Every sink commits the tokens of `n` (and of earlier checkpoints that failed to
//!    complete). Old checkpoints beyond the retention count are removed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::history::{CheckpointHistory, CheckpointRecord, CheckpointStatus};
use super::store::ShardStore;
use super::{checkpoint_dirs, dir_size, new_bytes, CheckpointConfig, Manifest};
use crate::error::EngineError;
use crate::message::CheckpointId;
use crate::metrics::{names, Counter, Gauge, Metrics, JOB};
use crate::runtime::task::Control;
use crate::sink::SinkFactory;
use crate::source::Positions;

/// What subtasks and the job handle tell the coordinator.
pub(crate) enum Event {
    /// Subtask `task` passed barrier `checkpoint`.
    Ack {
        task: usize,
        checkpoint: u64,
        /// A source split's progress.
        source: Option<SourceProgress>,
        /// A sink subtask's pre-commit: (sink name, commit token).
        sink: Option<(String, Option<String>)>,
    },
    /// Source split `task` has read all its input and waits for a last barrier.
    SourceDone {
        task: usize,
    },
    /// Subtask `task` ended.
    Finished {
        task: usize,
    },
    Savepoint(SavepointRequest),
}

/// Where a source split stands at a barrier.
pub(crate) struct SourceProgress {
    pub(crate) source: String,
    pub(crate) positions: Positions,
    /// The split's watermark (`None` before its first one).
    pub(crate) watermark: Option<i64>,
}

/// Take a savepoint into `path`; stop the job after it when `stop`; answer on `reply`.
pub(crate) struct SavepointRequest {
    pub(crate) path: PathBuf,
    pub(crate) stop: bool,
    pub(crate) reply: Sender<Result<PathBuf, EngineError>>,
}

/// What the coordinator does to the job.
pub(crate) trait JobControl: Send {
    fn fail(&self, error: EngineError);
    /// Stops the job after a savepoint, without error.
    fn stop_after_savepoint(&self, path: PathBuf);
    fn stopping(&self) -> bool;
}

/// A source split and its control channel.
pub(crate) struct SourceControl {
    pub(crate) task: usize,
    pub(crate) control: UnboundedSender<Control>,
}

/// The job's checkpoint metrics (Flink's `numberOfCompletedCheckpoints`,
/// `numberOfFailedCheckpoints`, `lastCheckpointDuration`, `lastCheckpointSize`).
pub(crate) struct CheckpointMetrics {
    completed: Counter,
    failed: Counter,
    last_duration_ms: Gauge,
    last_size_bytes: Gauge,
    history: CheckpointHistory,
}

impl CheckpointMetrics {
    pub(crate) fn new(metrics: &Metrics, history: CheckpointHistory) -> Self {
        CheckpointMetrics {
            history,
            completed: metrics.counter(JOB, 0, names::CHECKPOINTS_COMPLETED),
            failed: metrics.counter(JOB, 0, names::CHECKPOINTS_FAILED),
            last_duration_ms: metrics.gauge(JOB, 0, names::LAST_CHECKPOINT_DURATION_MS, 0),
            last_size_bytes: metrics.gauge(JOB, 0, names::LAST_CHECKPOINT_SIZE_BYTES, 0),
        }
    }
}

pub(crate) struct Coordinator {
    pub(crate) metrics: CheckpointMetrics,
    pub(crate) config: CheckpointConfig,
    pub(crate) stores: Vec<Arc<ShardStore>>,
    pub(crate) sources: Vec<SourceControl>,
    /// Every sink node with its factory (the committer).
    pub(crate) sinks: Vec<(String, Arc<dyn SinkFactory>)>,
    /// Operator identity -> name and logic.
    pub(crate) operators: BTreeMap<String, crate::checkpoint::OperatorEntry>,
    pub(crate) key_groups: u16,
    pub(crate) tasks: usize,
    pub(crate) next_id: u64,
    /// Source positions restored from, reported again until a split acknowledges.
    pub(crate) restored_sources: BTreeMap<String, BTreeMap<String, String>>,
}

struct InFlight {
    id: u64,
    started: Instant,
    /// When it started (ms since the epoch).
    triggered_ms: i64,
    waiting: HashSet<usize>,
    tokens: BTreeMap<String, Vec<String>>,
    savepoint: Option<SavepointRequest>,
}

impl Coordinator {
    /// Runs until every subtask has ended or the job stops.
    pub(crate) fn run(mut self, events: Receiver<Event>, job: &dyn JobControl) {
        let mut finished = HashSet::new();
        let mut sources_done = HashSet::new();
        let mut positions: BTreeMap<usize, SourceProgress> = BTreeMap::new();
        let mut carried: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut in_flight: Option<InFlight> = None;
        let mut requested: Option<SavepointRequest> = None;
        let mut next_due = self.config.interval.map(|i| Instant::now() + i);
        loop {
            let wait = next_due.map_or(Duration::from_millis(100), |due| {
                due.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            });
            match events.recv_timeout(wait) {
                Ok(Event::Ack {
                    task,
                    checkpoint,
                    source,
                    sink,
                }) => {
                    if let Some(source) = source {
                        positions.insert(task, source);
                    }
                    if let Some(flight) = in_flight.as_mut().filter(|f| f.id == checkpoint) {
                        flight.waiting.remove(&task);
                        if let Some((sink, Some(token))) = sink {
                            flight.tokens.entry(sink).or_default().push(token);
                        }
                    }
                }
                Ok(Event::SourceDone { task }) => {
                    sources_done.insert(task);
                }
                Ok(Event::Finished { task }) => {
                    finished.insert(task);
                    if let Some(flight) = in_flight.as_mut() {
                        flight.waiting.remove(&task);
                    }
                }
                Ok(Event::Savepoint(request)) => requested = Some(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if job.stopping() {
                break;
            }
            if let Some(flight) = in_flight.take_if(|f| f.waiting.is_empty()) {
                let mut tokens = std::mem::take(&mut carried);
                for (sink, list) in flight.tokens {
                    tokens.entry(sink).or_default().extend(list);
                }
                let savepoint = flight.savepoint;
                let target = match &savepoint {
                    Some(request) => request.path.clone(),
                    None => self.config.checkpoint_dir(flight.id),
                };
                let previous = checkpoint_dirs(&self.config.checkpoints_dir())
                    .into_iter()
                    .rfind(|dir| *dir != target);
                let completed =
                    self.complete(flight.id, &target, savepoint.is_some(), &positions, &tokens);
                match completed {
                    Ok(()) => {
                        let duration_ms = flight.started.elapsed().as_millis() as u64;
                        if let Err(error) = self.commit(flight.id, &tokens) {
                            job.fail(error);
                            break;
                        }
                        // (Measured after the commit: the sinks' output does not wait for it.)
                        let new_bytes = new_bytes(&target, previous.as_deref());
                        let bytes = dir_size(&target);
                        tracing::info!(
                            checkpoint = flight.id,
                            savepoint = savepoint.is_some(),
                            duration_ms,
                            bytes,
                            new_bytes,
                            path = %target.display(),
                            "checkpoint complete"
                        );
                        self.metrics.history.record(CheckpointRecord {
                            id: flight.id,
                            savepoint: savepoint.is_some(),
                            status: CheckpointStatus::Completed,
                            trigger_timestamp_ms: flight.triggered_ms,
                            duration_ms,
                            state_size_bytes: bytes,
                            checkpointed_size_bytes: new_bytes,
                            external_path: Some(target.clone()),
                            failure: None,
                        });
                        self.metrics.completed.add(1);
                        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                        self.metrics.last_duration_ms.set(gauge(duration_ms));
                        self.metrics.last_size_bytes.set(gauge(new_bytes));
                        if savepoint.is_none() {
                            self.retain();
                        }
                        if let Some(request) = savepoint {
                            let _ = request.reply.send(Ok(request.path.clone()));
                            if request.stop {
                                job.stop_after_savepoint(request.path);
                                break;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(checkpoint = flight.id, %error, "checkpoint failed");
                        self.metrics.failed.add(1);
                        self.metrics.history.record(CheckpointRecord {
                            id: flight.id,
                            savepoint: savepoint.is_some(),
                            status: CheckpointStatus::Failed,
                            trigger_timestamp_ms: flight.triggered_ms,
                            duration_ms: flight.started.elapsed().as_millis() as u64,
                            state_size_bytes: 0,
                            checkpointed_size_bytes: 0,
                            external_path: None,
                            failure: Some(error.to_string()),
                        });
                        // Pre-committed output waits for the next checkpoint.
                        carried = tokens;
                        if let Some(request) = savepoint {
                            if request.stop {
                                for source in &self.sources {
                                    let _ = source.control.send(Control::Resume);
                                }
                            }
                            let _ = request.reply.send(Err(error));
                        }
                    }
                }
                next_due = self.config.interval.map(|i| Instant::now() + i);
            }
            if finished.len() >= self.tasks && in_flight.is_none() {
                break;
            }
            let running_sources: Vec<&SourceControl> = self
                .sources
                .iter()
                .filter(|s| !finished.contains(&s.task))
                .collect();
            let all_done = !running_sources.is_empty()
                && running_sources
                    .iter()
                    .all(|s| sources_done.contains(&s.task));
            let due = next_due.is_some_and(|due| Instant::now() >= due);
            if in_flight.is_none()
                && !running_sources.is_empty()
                && (due || all_done || requested.is_some())
            {
                let id = self.next_id;
                self.next_id += 1;
                let command = match requested.as_ref().is_some_and(|r| r.stop) {
                    true => Control::SuspendAfter(CheckpointId(id)),
                    false => Control::Barrier(CheckpointId(id)),
                };
                for source in &running_sources {
                    // A split that has just ended no longer takes barriers.
                    let _ = source.control.send(command);
                }
                in_flight = Some(InFlight {
                    id,
                    started: Instant::now(),
                    triggered_ms: crate::time::now_ms(),
                    waiting: (0..self.tasks).filter(|t| !finished.contains(t)).collect(),
                    tokens: BTreeMap::new(),
                    savepoint: requested.take(),
                });
                next_due = None;
            }
        }
        if let Some(request) = requested.or(in_flight.and_then(|f| f.savepoint)) {
            let _ = request.reply.send(Err(EngineError::Checkpoint(
                "the job ended before the savepoint completed".into(),
            )));
        }
    }

    /// Step 3: store checkpoints and the manifest.
    fn complete(
        &self,
        id: u64,
        target: &Path,
        savepoint: bool,
        positions: &BTreeMap<usize, SourceProgress>,
        tokens: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), EngineError> {
        let fail = |what: String| EngineError::Checkpoint(format!("checkpoint {id}: {what}"));
        if target.join(super::MANIFEST).exists() {
            return Err(fail(format!(
                "{} already holds a checkpoint",
                target.display()
            )));
        }
        if target.exists() {
            std::fs::remove_dir_all(target)
                .map_err(|e| fail(format!("cannot clear {}: {e}", target.display())))?;
        }
        std::fs::create_dir_all(target)
            .map_err(|e| fail(format!("cannot create {}: {e}", target.display())))?;
        for (shard, store) in self.stores.iter().enumerate() {
            store
                .checkpoint_to(&Manifest::shard_dir(target, shard))
                .map_err(|e| fail(e.to_string()))?;
        }
        let mut manifest = Manifest::new(id, savepoint, self.stores.len(), self.key_groups);
        manifest.operators = self.operators.clone();
        manifest.sources = self.restored_sources.clone();
        for progress in positions.values() {
            manifest
                .sources
                .entry(progress.source.clone())
                .or_default()
                .extend(progress.positions.clone());
        }
        manifest.source_watermark = positions.values().filter_map(|p| p.watermark).min();
        manifest.sinks = tokens.clone();
        manifest.write(target).map_err(|e| {
            fail(format!(
                "cannot write manifest in {}: {e}",
                target.display()
            ))
        })
    }

    /// Step 4: every sink commits its tokens.
    fn commit(&self, id: u64, tokens: &BTreeMap<String, Vec<String>>) -> Result<(), EngineError> {
        for (name, sink) in &self.sinks {
            let list = tokens.get(name).map_or(&[][..], Vec::as_slice);
            sink.commit(id, list).map_err(|e| {
                EngineError::Checkpoint(format!(
                    "sink '{name}' could not commit checkpoint {id}: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// Removes checkpoints beyond the retention count, and incomplete ones older than the
    /// newest complete one.
    fn retain(&self) {
        let dirs = checkpoint_dirs(&self.config.checkpoints_dir());
        let complete: Vec<&PathBuf> = dirs
            .iter()
            .filter(|d| d.join(super::MANIFEST).exists())
            .collect();
        let keep_from = complete.len().saturating_sub(self.config.retained.max(1));
        let Some(oldest_kept) = complete.get(keep_from) else {
            return;
        };
        let keep_from_id = super::checkpoint_id(oldest_kept).unwrap_or(0);
        for dir in dirs
            .iter()
            .filter(|d| super::checkpoint_id(d).is_some_and(|id| id < keep_from_id))
        {
            if let Err(error) = std::fs::remove_dir_all(dir) {
                tracing::warn!(path = %dir.display(), %error, "cannot remove old checkpoint");
            }
        }
    }
}
