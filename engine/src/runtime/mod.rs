//! Running a job: shard threads, their single-threaded runtimes, failure and cancellation.
//!
//! [`start`] validates the graph, builds the physical plan and starts one OS thread per shard.
//! Each shard drives a current-thread Tokio runtime with a `LocalSet` holding its subtasks.
//!
//! Shutdown protocol:
//! 1. A bounded job ends when every source split has ended: end-of-stream flows through every
//!    subtask, sinks finish, each subtask returns, each shard's task set drains, threads exit.
//! 2. A subtask that fails (error or panic) records the first error in the job's shared state
//!    and raises the stop signal.
//! 3. Cancellation raises the same stop signal.
//! 4. Every shard watches the stop signal next to its task set; on stop it drops its tasks,
//!    which drops their channel ends, so no subtask can stay blocked on a peer that is gone.
//!    Hence no hang: every shard thread returns once stop is raised.
//! 5. [`JobHandle::join`] waits for every shard and reports the first error, or
//!    [`EngineError::Cancelled`], or success with the job's metrics.
//! 6. With checkpoints ([`RunOptions::checkpoint`]) a coordinator thread runs next to the
//!    shards (see [`crate::checkpoint`]); a stop with a savepoint raises the stop signal only
//!    after the savepoint is complete, and the job then ends successfully.

mod alignment;
mod durability;
mod input;
mod plan;
pub(crate) mod task;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::checkpoint::coordinator::{
    CheckpointMetrics, Coordinator, Event, JobControl, SavepointRequest, SourceControl,
};
use crate::checkpoint::history::{CheckpointHistory, RestoredCheckpoint};
use crate::checkpoint::CheckpointConfig;
use crate::error::{panic_message, EngineError};
use crate::graph::Graph;
use crate::message::CheckpointId;
use crate::metrics::Metrics;
use crate::partition::DEFAULT_KEY_GROUPS;

use task::{Control, SubtaskRunner};

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Number of shard threads; default: the number of cores.
    pub shards: usize,
    /// Capacity, in messages, of each channel between subtasks.
    pub channel_capacity: usize,
    /// Number of key groups (the maximum useful parallelism of keyed operators).
    pub key_groups: u16,
    /// Checkpoints, recovery and savepoints; `None`: state lives in memory and, past the
    /// memory budget, in a temporary store.
    pub checkpoint: Option<CheckpointConfig>,
    /// Bytes the decoded state of all state tables may use, over all shards
    /// (`state.memory-budget`); `None`: a quarter of the machine's memory
    /// ([`default_state_memory_budget`]).
    pub state_memory_budget: Option<usize>,
    /// The job's name or id, on every log line of its threads (a `job` span).
    pub job: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            channel_capacity: 16,
            key_groups: DEFAULT_KEY_GROUPS,
            checkpoint: None,
            state_memory_budget: None,
            job: None,
        }
    }
}

/// The default state memory budget: a quarter of the machine's memory (`MemTotal` of
/// `/proc/meminfo`), 1 GiB where that cannot be read.
pub fn default_state_memory_budget() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        });
    total_kib.map_or(1 << 30, |kib| kib.saturating_mul(1024) / 4)
}

impl RunOptions {
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity.max(1);
        self
    }

    pub fn key_groups(mut self, key_groups: u16) -> Self {
        self.key_groups = key_groups.max(1);
        self
    }

    pub fn checkpoint(mut self, config: CheckpointConfig) -> Self {
        self.checkpoint = Some(config);
        self
    }

    /// Limits the decoded state of all state tables to `bytes` over all shards (Weir's
    /// `state.memory-budget`); colder entries live in RocksDB.
    pub fn state_memory_budget(mut self, bytes: usize) -> Self {
        self.state_memory_budget = Some(bytes);
        self
    }

    /// The state memory budget in bytes: the one set, or the default.
    pub fn state_memory_budget_bytes(&self) -> usize {
        self.state_memory_budget
            .unwrap_or_else(default_state_memory_budget)
    }
}

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub metrics: Metrics,
    /// Set when the job was stopped with a savepoint: where it is.
    pub savepoint: Option<PathBuf>,
}

/// State shared by the shards of one job.
struct JobShared {
    error: Mutex<Option<EngineError>>,
    cancelled: AtomicBool,
    stop: watch::Sender<bool>,
    savepoint: Mutex<Option<PathBuf>>,
}

impl JobShared {
    fn fail(&self, error: EngineError) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::error!(%error, "job failed");
            *slot = Some(error);
        }
        drop(slot);
        self.stop.send_replace(true);
    }
}

impl JobControl for Arc<JobShared> {
    fn fail(&self, error: EngineError) {
        JobShared::fail(self, error);
    }

    fn stop_after_savepoint(&self, path: PathBuf) {
        *self.savepoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
        self.stop.send_replace(true);
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Stops a running job from anywhere (a Ctrl-C handler, another thread).
#[derive(Clone)]
pub struct JobCanceller(Arc<JobShared>);

impl JobCanceller {
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.stop.send_replace(true);
    }
}

impl std::fmt::Debug for JobCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobCanceller")
    }
}

/// A running job.
pub struct JobHandle {
    shared: Arc<JobShared>,
    threads: Vec<JoinHandle<()>>,
    source_controls: Vec<mpsc::UnboundedSender<Control>>,
    coordinator: Option<(JoinHandle<()>, std::sync::mpsc::Sender<Event>)>,
    metrics: Metrics,
    checkpoints: CheckpointHistory,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("shards", &self.threads.len())
            .finish()
    }
}

impl JobHandle {
    /// The job's live metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The job's checkpoint statistics (empty without checkpoints).
    pub fn checkpoints(&self) -> &CheckpointHistory {
        &self.checkpoints
    }

    pub fn canceller(&self) -> JobCanceller {
        JobCanceller(Arc::clone(&self.shared))
    }

    pub fn cancel(&self) {
        self.canceller().cancel();
    }

    /// Takes a savepoint into `path` (a directory that must not hold one yet) and waits for
    /// it; with `stop`, the job then stops and [`JobHandle::join`] reports the savepoint.
    pub fn savepoint(&self, path: impl Into<PathBuf>, stop: bool) -> Result<PathBuf, EngineError> {
        let requester = self.savepoint_requester().ok_or_else(|| {
            EngineError::Checkpoint(
                "savepoints need a job with checkpoints (a state directory)".into(),
            )
        })?;
        let gone = || EngineError::Checkpoint("the job ended before the savepoint".into());
        let answer = requester.request(path, stop).ok_or_else(gone)?;
        answer.recv().map_err(|_| gone())?
    }

    /// A handle that can request a savepoint from another thread (a signal handler).
    pub fn savepoint_requester(&self) -> Option<SavepointRequester> {
        self.coordinator
            .as_ref()
            .map(|(_, events)| SavepointRequester(events.clone()))
    }

    /// Without checkpoints: asks every source split to inject `Barrier(checkpoint)` before
    /// its next batch (with checkpoints the coordinator does this).
    pub fn inject_barrier(&self, checkpoint: CheckpointId) {
        for control in &self.source_controls {
            // A split that has already ended no longer needs barriers.
            let _ = control.send(Control::Barrier(checkpoint));
        }
    }

    /// Waits for the job to end.
    pub fn join(self) -> Result<JobResult, EngineError> {
        drop(self.source_controls);
        let coordinator = self.coordinator.map(|(thread, events)| {
            drop(events);
            thread
        });
        for thread in self.threads.into_iter().chain(coordinator) {
            if let Err(payload) = thread.join() {
                self.shared.fail(EngineError::Shard {
                    shard: usize::MAX,
                    message: panic_message(payload.as_ref()),
                });
            }
        }
        let error = self
            .shared
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let savepoint = self
            .shared
            .savepoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match error {
            Some(error) => Err(error),
            None if savepoint.is_some() => Ok(JobResult {
                metrics: self.metrics,
                savepoint,
            }),
            None if self.shared.cancelled.load(Ordering::SeqCst) => Err(EngineError::Cancelled),
            None => Ok(JobResult {
                metrics: self.metrics,
                savepoint: None,
            }),
        }
    }
}

/// Starts `graph` on shard threads and returns at once.
pub fn start(graph: &Graph, options: RunOptions) -> Result<JobHandle, EngineError> {
    let info = graph.validate(options.shards)?;
    let metrics = Metrics::default();
    let shards = options.shards.max(1);
    let mut durability = match &options.checkpoint {
        Some(config) => Some(durability::prepare(
            graph,
            &info,
            config,
            shards,
            options.key_groups,
            options.state_memory_budget_bytes(),
        )?),
        None => None,
    };
    let mut plan = plan::build(graph, &info, &options, &metrics, durability.as_ref())?;
    let checkpoints = CheckpointHistory::default();
    if let Some(resume) = durability.as_ref().and_then(|d| d.resume.as_ref()) {
        checkpoints.restored(RestoredCheckpoint {
            id: resume.manifest.checkpoint,
            external_path: resume.path.clone(),
            restore_timestamp_ms: crate::time::now_ms(),
        });
    }
    let (stop, _) = watch::channel(false);
    let shared = Arc::new(JobShared {
        error: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        stop,
        savepoint: Mutex::new(None),
    });
    let coordinator = match durability.as_mut() {
        Some(durability) => Some(start_coordinator(
            durability,
            &mut plan,
            &options,
            &shared,
            CheckpointMetrics::new(&metrics, checkpoints.clone()),
        )?),
        None => None,
    };
    let source_controls = std::mem::take(&mut plan.source_controls)
        .into_iter()
        .map(|(_, control)| control)
        .collect();
    let mut threads = Vec::new();
    for (shard, subtasks) in plan.shards.into_iter().enumerate() {
        let shared_for_thread = Arc::clone(&shared);
        let span = job_span(&options);
        let thread = std::thread::Builder::new()
            .name(format!("weir-shard-{shard}"))
            .spawn(move || span.in_scope(|| run_shard(shard, subtasks, &shared_for_thread)))
            .map_err(|e| EngineError::Shard {
                shard,
                message: format!("cannot start thread: {e}"),
            });
        match thread {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                shared.fail(error);
                break;
            }
        }
    }
    Ok(JobHandle {
        shared,
        threads,
        source_controls,
        coordinator,
        metrics,
        checkpoints,
    })
}

/// The span of a job's threads: its name on their log lines.
fn job_span(options: &RunOptions) -> tracing::Span {
    match &options.job {
        // A root span: not nested in the span of the thread that starts the job.
        Some(job) => tracing::info_span!(parent: None, "job", job = %job),
        None => tracing::Span::none(),
    }
}

/// Starts the checkpoint coordinator thread; it takes over the sources' control channels.
fn start_coordinator(
    durability: &mut durability::Durability,
    plan: &mut plan::PhysicalPlan,
    options: &RunOptions,
    shared: &Arc<JobShared>,
    metrics: CheckpointMetrics,
) -> Result<(JoinHandle<()>, std::sync::mpsc::Sender<Event>), EngineError> {
    let resume = durability.resume.as_ref();
    let coordinator = Coordinator {
        metrics,
        config: durability.config.clone(),
        stores: durability.stores.clone(),
        sources: std::mem::take(&mut plan.source_controls)
            .into_iter()
            .map(|(task, control)| SourceControl { task, control })
            .collect(),
        sinks: durability.sinks.clone(),
        operators: durability.fingerprints.clone(),
        key_groups: options.key_groups,
        tasks: plan.tasks,
        next_id: resume
            .map_or(1, |r| r.manifest.checkpoint + 1)
            .max(next_checkpoint_id(&durability.config)),
        restored_sources: resume
            .map(|r| r.manifest.sources.clone())
            .unwrap_or_default(),
    };
    let events = durability
        .receiver
        .take()
        .ok_or_else(|| EngineError::Checkpoint("coordinator already started".into()))?;
    let job = Arc::clone(shared);
    let span = job_span(options);
    let thread = std::thread::Builder::new()
        .name("weir-checkpoints".into())
        .spawn(move || span.in_scope(|| coordinator.run(events, &job)))
        .map_err(|e| EngineError::Checkpoint(format!("cannot start the coordinator: {e}")))?;
    Ok((thread, durability.events.clone()))
}

/// One past the highest checkpoint number in the state directory, so a new checkpoint never
/// reuses the directory of an old (possibly incomplete) one.
fn next_checkpoint_id(config: &CheckpointConfig) -> u64 {
    crate::checkpoint::checkpoint_dirs(&config.checkpoints_dir())
        .last()
        .and_then(|d| crate::checkpoint::checkpoint_id(d))
        .map_or(1, |id| id + 1)
}

/// Requests a savepoint from any thread; see [`JobHandle::savepoint`].
#[derive(Clone)]
pub struct SavepointRequester(std::sync::mpsc::Sender<Event>);

impl std::fmt::Debug for SavepointRequester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SavepointRequester")
    }
}

impl SavepointRequester {
    /// Asks for a savepoint into `path` (a directory that must not hold one yet), followed by
    /// a stop when `stop`, without waiting: its path or error arrives on the returned
    /// receiver. `None` when the job has already ended.
    pub fn request(
        &self,
        path: impl Into<PathBuf>,
        stop: bool,
    ) -> Option<std::sync::mpsc::Receiver<Result<PathBuf, EngineError>>> {
        let (reply, answer) = std::sync::mpsc::channel();
        let request = Event::Savepoint(SavepointRequest {
            path: path.into(),
            stop,
            reply,
        });
        self.0.send(request).ok().map(|()| answer)
    }

    /// Asks for a savepoint into `path` followed by a stop, without waiting. Returns false
    /// when the job has already ended.
    pub fn stop_with_savepoint(&self, path: impl Into<PathBuf>) -> bool {
        self.request(path, true).is_some()
    }
}

/// Runs `graph` to completion.
pub fn run(graph: &Graph, options: RunOptions) -> Result<JobResult, EngineError> {
    start(graph, options)?.join()
}

/// The plan of `graph` as text (chains and their placement), for `EXPLAIN`.
pub fn explain(graph: &Graph, options: &RunOptions) -> Result<String, EngineError> {
    let info = graph.validate(options.shards)?;
    let mut text = graph.explain(options.shards)?;
    text.push_str("chains (fused into one call chain per subtask):\n");
    for chain in plan::chains(graph, &info) {
        let names: Vec<&str> = chain
            .iter()
            .map(|n| graph.nodes[n.0].name.as_str())
            .collect();
        text.push_str(&format!(
            "  {} x{}\n",
            names.join(" -> "),
            info.parallelism[chain[0].0]
        ));
    }
    Ok(text)
}

/// Body of one shard thread: see the shutdown protocol in the module doc.
fn run_shard(shard: usize, subtasks: Vec<SubtaskRunner>, shared: &Arc<JobShared>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            shared.fail(EngineError::Shard {
                shard,
                message: format!("cannot build runtime: {e}"),
            });
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut stop = shared.stop.subscribe();
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        for subtask in subtasks {
            let name = (subtask.name.clone(), subtask.chain.subtask);
            let handle = tasks.spawn_local(subtask.run());
            names.insert(handle.id(), name);
        }
        loop {
            tokio::select! {
                joined = tasks.join_next_with_id() => match joined {
                    None => break,
                    Some(Ok((_, Ok(())))) => {}
                    Some(Ok((_, Err(error)))) => shared.fail(error),
                    Some(Err(error)) => {
                        let (operator, subtask) = names.get(&error.id()).cloned().unwrap_or_default();
                        if error.is_panic() {
                            let message = panic_message(error.into_panic().as_ref());
                            shared.fail(EngineError::OperatorPanicked { operator, subtask, message });
                        }
                    }
                },
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        tasks.abort_all();
    });
}
