//! The server's jobs: submitted SQL scripts, each run by a supervisor thread of its own.
//!
//! ```text
//! <data-dir>/jobs/<id>/job.json      what the job is and its status (rewritten atomically)
//! <data-dir>/jobs/<id>/state/        its live state and checkpoints (the engine's state dir)
//! <data-dir>/jobs/<id>/savepoints/   savepoints of a stop without a target directory
//! ```
//!
//! A supervisor starts the job from its last checkpoint (or, before its first, from the
//! savepoint it was submitted or resumed with), waits for it, and on a failure asks the job's
//! [`RestartStrategy`] whether and when to start it again. A server that starts finds every
//! job whose `job.json` says it runs and resumes it from its last checkpoint, so jobs outlive
//! a crash of the server with exactly-once output (the engine's checkpoints).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::history::{CheckpointHistory, CheckpointStatus};
use weir_engine::checkpoint::CheckpointConfig;
use weir_engine::graph::{Exchange, NodeKind};
use weir_engine::metrics::{names, MetricKey, MetricValue, Metrics};
use weir_engine::runtime::{JobCanceller, RunOptions, SavepointRequester};
use weir_engine::EngineError;
use weir_sql::{FileAccess, Session, SqlError, SqlJob};

use crate::api::{self, ExceptionEntry, JobStatus, PlanInput, PlanNode};
use crate::restart::{RestartStrategy, Restarts};

/// Checkpoint interval of a job that sets none (`execution.checkpointing.interval`).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Failures kept per job (`GET /jobs/:jobid/exceptions`).
const EXCEPTIONS_KEPT: usize = 16;

/// What the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Jobs, their state and checkpoints live under `<data_dir>/jobs`.
    pub data_dir: PathBuf,
    /// Files a script or a savepoint request may name must lie under one of these.
    pub allowed_roots: Vec<PathBuf>,
}

/// Why a request about jobs cannot be done; the REST layer maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The script is wrong (400, with its line and column).
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The request is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// No job has this id (404).
    #[error("no job with id '{0}'")]
    NotFound(String),
    /// The job is not in a state that allows it (409).
    #[error("{0}")]
    Conflict(String),
    /// The server's own files (500).
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Io { what, source }
}

/// A job as stored in its `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    id: String,
    name: String,
    sql: String,
    /// Relative paths of the script are relative to it.
    working_directory: PathBuf,
    /// Shards asked for at submission (else the script's or the server's default).
    parallelism: Option<usize>,
    /// Start from this savepoint while the job has no checkpoint of its own.
    savepoint_path: Option<PathBuf>,
    allow_non_restored_state: bool,
    status: JobStatus,
    start_time: i64,
    end_time: i64,
    restarts: u32,
    /// Where its last stop-with-savepoint went.
    last_savepoint: Option<PathBuf>,
    exceptions: Vec<ExceptionEntry>,
    /// Its dataflow graph at the last start.
    plan: Vec<PlanNode>,
    shards: usize,
}

/// What a running attempt offers to control and watch it.
struct Live {
    canceller: JobCanceller,
    requester: Option<SavepointRequester>,
    metrics: Metrics,
}

/// A stop-with-savepoint's progress (`GET /jobs/:jobid/savepoints/:triggerid`).
#[derive(Debug, Clone)]
pub enum Trigger {
    InProgress,
    Completed(Result<PathBuf, String>),
}

/// The per-operator rates of a job, from two metric samples about a second apart.
#[derive(Default)]
struct Rates {
    at: Option<Instant>,
    previous: BTreeMap<MetricKey, MetricValue>,
    /// (operator, metric) -> per second, summed over subtasks.
    per_second: BTreeMap<(String, &'static str), f64>,
}

struct Job {
    id: String,
    dir: PathBuf,
    record: Mutex<JobRecord>,
    live: Mutex<Option<Live>>,
    /// Raised by cancel; wakes a supervisor waiting to restart.
    cancel: Mutex<bool>,
    cancelled: Condvar,
    triggers: Mutex<BTreeMap<String, Trigger>>,
    rates: Mutex<Rates>,
    /// The checkpoint statistics of the last attempt (kept after it ends).
    checkpoints: Mutex<CheckpointHistory>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    weir_engine::time::now_ms()
}

impl Job {
    fn record(&self) -> JobRecord {
        lock(&self.record).clone()
    }

    /// Changes the record and writes it to `job.json` (temporary file, then rename).
    fn update(&self, change: impl FnOnce(&mut JobRecord)) -> Result<(), JobError> {
        self.transition(|record| {
            change(record);
            Ok(())
        })
    }

    /// Checks and changes the record under one lock (a refused change leaves it as it was),
    /// then writes it to `job.json`.
    fn transition<T>(
        &self,
        change: impl FnOnce(&mut JobRecord) -> Result<T, JobError>,
    ) -> Result<T, JobError> {
        let mut record = lock(&self.record);
        let mut changed = record.clone();
        let answer = change(&mut changed)?;
        let text = serde_json::to_string_pretty(&changed)
            .map_err(|e| JobError::BadRequest(format!("cannot encode the job: {e}")))?;
        let path = self.dir.join("job.json");
        let temporary = self.dir.join("job.json.tmp");
        std::fs::write(&temporary, text)
            .map_err(io(format!("cannot write {}", temporary.display())))?;
        std::fs::rename(&temporary, &path)
            .map_err(io(format!("cannot write {}", path.display())))?;
        *record = changed;
        Ok(answer)
    }

    /// Logs a failure to persist a status (the job goes on; the next update retries).
    fn update_or_log(&self, change: impl FnOnce(&mut JobRecord)) {
        if let Err(error) = self.update(change) {
            tracing::error!(job = %self.id, %error, "cannot record the job's status");
        }
    }

    fn cancel_requested(&self) -> bool {
        *lock(&self.cancel)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// The jobs of a server.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Manager>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

struct Manager {
    config: ServerConfig,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    /// Set while the server shuts down: attempts are cancelled but jobs stay `RUNNING` on
    /// disk, to resume at the next start.
    shutting_down: AtomicBool,
    supervisors: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl JobManager {
    /// Opens the data directory and resumes every job recorded as running.
    ///
    /// Errors: the data directory cannot be created or read.
    pub fn open(config: ServerConfig) -> Result<Self, JobError> {
        let jobs_dir = config.data_dir.join("jobs");
        std::fs::create_dir_all(&jobs_dir)
            .map_err(io(format!("cannot create {}", jobs_dir.display())))?;
        let manager = JobManager {
            inner: Arc::new(Manager {
                config,
                jobs: Mutex::new(BTreeMap::new()),
                shutting_down: AtomicBool::new(false),
                supervisors: Mutex::new(Vec::new()),
            }),
        };
        let entries = std::fs::read_dir(&jobs_dir)
            .map_err(io(format!("cannot read {}", jobs_dir.display())))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            let text = match std::fs::read_to_string(dir.join("job.json")) {
                Ok(text) => text,
                Err(_) => continue,
            };
            let record: JobRecord = match serde_json::from_str(&text) {
                Ok(record) => record,
                Err(error) => {
                    tracing::error!(path = %dir.display(), %error, "skipping a job whose job.json cannot be read");
                    continue;
                }
            };
            let resume = !record.status.is_terminal();
            let job = manager.insert(dir, record);
            if resume {
                tracing::info!(job = %job.id, "resuming the job after a server start");
                manager.supervise(job);
            }
        }
        Ok(manager)
    }

    fn insert(&self, dir: PathBuf, record: JobRecord) -> Arc<Job> {
        let job = Arc::new(Job {
            id: record.id.clone(),
            dir,
            record: Mutex::new(record),
            live: Mutex::new(None),
            cancel: Mutex::new(false),
            cancelled: Condvar::new(),
            triggers: Mutex::new(BTreeMap::new()),
            rates: Mutex::new(Rates::default()),
            checkpoints: Mutex::new(CheckpointHistory::default()),
        });
        lock(&self.inner.jobs).insert(job.id.clone(), Arc::clone(&job));
        job
    }

    fn job(&self, id: &str) -> Result<Arc<Job>, JobError> {
        lock(&self.inner.jobs)
            .get(id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// A path a client named, made absolute and checked against the allowed roots.
    /// (Savepoints and the working directory may be in the jobs' directories: a job can
    /// start from another's savepoint.)
    pub fn allowed_path(&self, what: &str, path: &str) -> Result<PathBuf, JobError> {
        let access = FileAccess {
            denied_roots: Vec::new(),
            ..self.file_access(&self.inner.config.data_dir)
        };
        access
            .resolve(what, path)
            .map_err(|e| JobError::BadRequest(SqlError::from(e).to_string()))
    }

    /// Where a script's files may be: under the allowed roots, not in the jobs' own
    /// directories (other jobs' scripts and state).
    fn file_access(&self, base_dir: &Path) -> FileAccess {
        FileAccess {
            base_dir: base_dir.to_path_buf(),
            allowed_roots: self.inner.config.allowed_roots.clone(),
            denied_roots: vec![self.inner.config.data_dir.join("jobs")],
        }
    }

    /// Plans `record`'s script: its `INSERT INTO`s as one job, with the restart strategy its
    /// `SET`s choose.
    fn compile(&self, record: &JobRecord) -> Result<(SqlJob, Session, RestartStrategy), JobError> {
        let mut session = Session::new();
        session.file_access = Some(self.file_access(&record.working_directory));
        let query_sink =
            |_: &arrow::datatypes::SchemaRef| -> Arc<dyn weir_engine::sink::SinkFactory> {
                Arc::new(weir_connectors::blackhole::BlackholeSink::new())
            };
        let actions = session.execute(&record.sql, &query_sink)?;
        if !actions.is_empty() {
            return Err(JobError::BadRequest(
                "a server job is made of INSERT INTO statements; a bare SELECT or EXPLAIN prints \
                 to a terminal (use weir run or weir explain)"
                    .into(),
            ));
        }
        let job = session.take_insert_job().ok_or_else(|| {
            JobError::BadRequest("the script has no INSERT INTO: nothing to run".into())
        })?;
        let strategy =
            RestartStrategy::from_settings(&session.settings.raw).map_err(JobError::BadRequest)?;
        Ok((job, session, strategy))
    }

    /// Accepts a script, checks it plans, and starts it; returns its id.
    ///
    /// Errors: a SQL error (with its location), a path outside the allowed roots, a script
    /// that is not one job of `INSERT INTO`s.
    pub fn submit(&self, request: api::SubmitRequest) -> Result<String, JobError> {
        let data_dir = &self.inner.config.data_dir;
        let working_directory = match &request.working_directory {
            Some(dir) => self.allowed_path("working directory", dir)?,
            None => data_dir.clone(),
        };
        let savepoint_path = (request.savepoint_path.as_deref())
            .map(|p| self.allowed_path("savepoint", p))
            .transpose()?;
        let id = new_id();
        let mut record = JobRecord {
            id: id.clone(),
            name: String::new(),
            sql: request.sql,
            working_directory,
            parallelism: request.parallelism.filter(|&n| n > 0),
            savepoint_path,
            allow_non_restored_state: request.allow_non_restored_state,
            status: JobStatus::Created,
            start_time: now_ms(),
            end_time: -1,
            restarts: 0,
            last_savepoint: None,
            exceptions: Vec::new(),
            plan: Vec::new(),
            shards: 0,
        };
        let (job, session, _) = self.compile(&record)?;
        record.name = session.settings.job_name.clone().unwrap_or_else(|| {
            let sinks: Vec<&str> = (job.graph.nodes.iter())
                .filter(|n| matches!(n.kind, NodeKind::Sink(_)))
                .map(|n| n.name.as_str())
                .collect();
            format!("insert-into_{}", sinks.join(","))
        });
        let dir = data_dir.join("jobs").join(&id);
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let job = self.insert(dir, record);
        job.update(|_| {})?;
        tracing::info!(job = %id, "job submitted");
        self.supervise(job);
        Ok(id)
    }

    /// Starts the supervisor thread of `job`.
    fn supervise(&self, job: Arc<Job>) {
        let manager = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("weir-job-{}", &job.id[..8.min(job.id.len())]))
            .spawn(move || manager.run_job(&job));
        match thread {
            Ok(thread) => lock(&self.inner.supervisors).push(thread),
            Err(error) => tracing::error!(%error, "cannot start a job's supervisor thread"),
        }
    }

    /// Starts one attempt of `job`: plans it and starts it from its last checkpoint.
    fn start_attempt(&self, job: &Job) -> Result<weir_engine::runtime::JobHandle, JobError> {
        let record = job.record();
        let (sql_job, session, _) = self.compile(&record)?;
        let settings = &session.settings;
        let mut options = RunOptions::default();
        if let Some(shards) = record.parallelism.or(settings.parallelism) {
            options = options.shards(shards);
        }
        if let Some(bytes) = settings.state_memory_budget {
            options = options.state_memory_budget(bytes);
        }
        options.job = Some(record.name.clone());
        let mut checkpoint = CheckpointConfig::new(job.state_dir());
        checkpoint.interval = Some(
            settings
                .checkpoint_interval
                .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL),
        );
        checkpoint.allow_non_restored_state =
            record.allow_non_restored_state || settings.allow_non_restored_state;
        // The savepoint counts until the job's first checkpoint of its own.
        if checkpoint.resume_point().map_err(SqlError::from)?.is_none() {
            checkpoint.from_savepoint = record.savepoint_path.clone();
        }
        options.checkpoint = Some(checkpoint);
        let plan = plan_nodes(&sql_job, options.shards)?;
        // Recorded first: once started, nothing may fail before the supervisor holds the job.
        job.update(|r| {
            r.plan = plan;
            r.shards = options.shards;
        })?;
        Ok(weir_engine::runtime::start(&sql_job.graph, options).map_err(SqlError::from)?)
    }

    /// The supervisor of one job: attempts, restarts, and the final status. A panic in it
    /// fails the job (it never leaves a job without a supervisor and not ended).
    fn run_job(&self, job: &Job) {
        let _span = tracing::info_span!("job", job = %job.record().name).entered();
        let supervised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.supervise_attempts(job)
        }));
        if let Err(panic) = supervised {
            let message = weir_engine::error::panic_message(panic.as_ref());
            self.record_failure(job, format!("the job's supervisor panicked: {message}"));
            self.end(job, JobStatus::Failed, None);
        }
    }

    fn shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs attempts until the job ends, or until the server shuts down (then the job keeps
    /// its status on disk and resumes at the next start).
    fn supervise_attempts(&self, job: &Job) {
        let strategy = match self.compile(&job.record()) {
            Ok((_, _, strategy)) => strategy,
            Err(_) => RestartStrategy::None,
        };
        let mut restarts = Restarts::new(strategy);
        loop {
            if self.shutting_down() {
                return;
            }
            if job.cancel_requested() {
                self.end(job, JobStatus::Canceled, None);
                return;
            }
            let error = match self.start_attempt(job) {
                Ok(handle) => {
                    *lock(&job.checkpoints) = handle.checkpoints().clone();
                    *lock(&job.live) = Some(Live {
                        canceller: handle.canceller(),
                        requester: handle.savepoint_requester(),
                        metrics: handle.metrics().clone(),
                    });
                    *lock(&job.rates) = Rates::default();
                    job.update_or_log(|r| r.status = JobStatus::Running);
                    tracing::info!(job = %job.id, "job running");
                    // A cancel (or shutdown) between the check above and now.
                    if job.cancel_requested() {
                        handle.cancel();
                    }
                    let result = handle.join();
                    *lock(&job.live) = None;
                    match result {
                        Ok(result) => {
                            self.end(job, JobStatus::Finished, result.savepoint);
                            return;
                        }
                        Err(_) if self.shutting_down() => {
                            tracing::info!(job = %job.id, "job suspended by the server's shutdown");
                            return;
                        }
                        Err(EngineError::Cancelled) => {
                            self.end(job, JobStatus::Canceled, None);
                            return;
                        }
                        Err(error) => error.to_string(),
                    }
                }
                Err(_) if self.shutting_down() => return,
                Err(error) => error.to_string(),
            };
            self.record_failure(job, error);
            let Some(delay) = restarts.on_failure(Instant::now()) else {
                tracing::error!(job = %job.id, "the restart strategy gave up: job failed");
                self.end(job, JobStatus::Failed, None);
                return;
            };
            tracing::info!(
                job = %job.id,
                delay_ms = delay.as_millis() as u64,
                "job restarting from its last checkpoint"
            );
            job.update_or_log(|r| {
                r.status = JobStatus::Restarting;
                r.restarts += 1;
            });
            let cancel = lock(&job.cancel);
            let (cancel, _) = job
                .cancelled
                .wait_timeout_while(cancel, delay, |cancelled| !*cancelled)
                .unwrap_or_else(|e| e.into_inner());
            drop(cancel);
        }
    }

    /// Logs a failure and keeps it for `GET /jobs/:jobid/exceptions`.
    fn record_failure(&self, job: &Job, error: String) {
        tracing::error!(job = %job.id, %error, "job failed");
        job.update_or_log(|r| {
            r.exceptions.insert(
                0,
                ExceptionEntry {
                    exception_name: "JobFailure".into(),
                    stacktrace: error,
                    timestamp: now_ms(),
                },
            );
            r.exceptions.truncate(EXCEPTIONS_KEPT);
        });
    }

    fn end(&self, job: &Job, status: JobStatus, savepoint: Option<PathBuf>) {
        tracing::info!(job = %job.id, ?status, savepoint = ?savepoint, "job ended");
        job.update_or_log(|r| {
            r.status = status;
            r.end_time = now_ms();
            // Only the savepoint of the stop that ended it can be resumed from.
            r.last_savepoint = savepoint;
        });
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<api::JobSummary> {
        let jobs: Vec<Arc<Job>> = lock(&self.inner.jobs).values().cloned().collect();
        let mut summaries: Vec<api::JobSummary> = jobs
            .iter()
            .map(|job| {
                let r = job.record();
                api::JobSummary {
                    id: r.id,
                    name: r.name,
                    status: r.status,
                    start_time: r.start_time,
                    end_time: r.end_time,
                    duration: duration(r.start_time, r.end_time),
                }
            })
            .collect();
        summaries.sort_by(|a, b| b.start_time.cmp(&a.start_time).then(a.id.cmp(&b.id)));
        summaries
    }

    /// One job with its operators' live metrics.
    pub fn details(&self, id: &str) -> Result<api::JobDetails, JobError> {
        let job = self.job(id)?;
        let r = job.record();
        let metrics = lock(&job.live).as_ref().map(|l| l.metrics.clone());
        let vertices = match metrics {
            Some(metrics) => vertices(&r.plan, &metrics, &mut lock(&job.rates)),
            None => (r.plan.iter())
                .map(|node| api::Vertex {
                    id: node.id.clone(),
                    name: node.id.clone(),
                    parallelism: node.parallelism,
                    metrics: api::VertexMetrics::default(),
                })
                .collect(),
        };
        Ok(api::JobDetails {
            jid: r.id,
            name: r.name,
            state: r.status,
            start_time: r.start_time,
            end_time: r.end_time,
            duration: duration(r.start_time, r.end_time),
            now: now_ms(),
            parallelism: r.shards,
            restarts: r.restarts,
            savepoint: r.last_savepoint.map(|p| p.display().to_string()),
            sql: r.sql,
            vertices,
        })
    }

    /// The job's dataflow graph.
    pub fn plan(&self, id: &str) -> Result<api::PlanResponse, JobError> {
        let job = self.job(id)?;
        let r = job.record();
        Ok(api::PlanResponse {
            plan: api::Plan {
                jid: r.id,
                name: r.name,
                kind: "STREAMING".into(),
                nodes: r.plan,
            },
        })
    }

    /// The job's failures, newest first.
    pub fn exceptions(&self, id: &str) -> Result<api::JobExceptions, JobError> {
        let r = self.job(id)?.record();
        Ok(api::JobExceptions {
            exception_history: api::ExceptionHistory {
                truncated: r.exceptions.len() >= EXCEPTIONS_KEPT,
                entries: r.exceptions,
            },
        })
    }

    /// The job's checkpoint statistics (its current or last attempt's).
    pub fn checkpoints(&self, id: &str) -> Result<api::CheckpointingStatistics, JobError> {
        let job = self.job(id)?;
        let stats = lock(&job.checkpoints).snapshot();
        let details =
            |c: &weir_engine::checkpoint::history::CheckpointRecord| api::CheckpointDetails {
                id: c.id,
                status: match c.status {
                    CheckpointStatus::Completed => "COMPLETED".into(),
                    CheckpointStatus::Failed => "FAILED".into(),
                },
                is_savepoint: c.savepoint,
                trigger_timestamp: c.trigger_timestamp_ms,
                latest_ack_timestamp: c.trigger_timestamp_ms + c.duration_ms as i64,
                state_size: c.state_size_bytes,
                checkpointed_size: c.checkpointed_size_bytes,
                end_to_end_duration: c.duration_ms,
                external_path: c.external_path.as_ref().map(|p| p.display().to_string()),
                failure_message: c.failure.clone(),
            };
        let latest =
            |wanted: &dyn Fn(&weir_engine::checkpoint::history::CheckpointRecord) -> bool| {
                stats.history.iter().find(|c| wanted(c)).map(details)
            };
        Ok(api::CheckpointingStatistics {
            counts: api::CheckpointCounts {
                restored: u64::from(stats.restored.is_some()),
                total: stats.completed + stats.failed,
                in_progress: 0,
                completed: stats.completed,
                failed: stats.failed,
            },
            latest: api::LatestCheckpoints {
                completed: latest(&|c| c.status == CheckpointStatus::Completed && !c.savepoint),
                savepoint: latest(&|c| c.status == CheckpointStatus::Completed && c.savepoint),
                failed: latest(&|c| c.status == CheckpointStatus::Failed),
                restored: stats.restored.as_ref().map(|r| api::RestoredCheckpoint {
                    id: r.id,
                    restore_timestamp: r.restore_timestamp_ms,
                    external_path: r.external_path.display().to_string(),
                }),
            },
            history: stats.history.iter().map(details).collect(),
        })
    }

    /// Cancels the job (Flink's `PATCH /jobs/:jobid?mode=cancel`).
    ///
    /// Errors: unknown id; the job has ended already (409).
    pub fn cancel(&self, id: &str) -> Result<(), JobError> {
        let job = self.job(id)?;
        let status = job.record().status;
        if status.is_terminal() {
            return Err(JobError::Conflict(format!(
                "job {id} has ended ({status:?}): nothing to cancel"
            )));
        }
        *lock(&job.cancel) = true;
        job.cancelled.notify_all();
        if let Some(live) = lock(&job.live).as_ref() {
            live.canceller.cancel();
        }
        tracing::info!(job = %id, "job cancel requested");
        Ok(())
    }

    /// Stops the job with a savepoint into a new directory under `target` (default: the
    /// job's `savepoints/`); returns the trigger id to poll.
    ///
    /// Errors: unknown id; the job is not running (409); a target outside the allowed roots.
    pub fn stop(&self, id: &str, request: api::StopRequest) -> Result<String, JobError> {
        let job = self.job(id)?;
        if request.drain {
            return Err(JobError::BadRequest(
                "drain is not supported: a stop keeps open windows in the savepoint".into(),
            ));
        }
        let target = match &request.target_directory {
            Some(dir) => self.allowed_path("savepoint directory", dir)?,
            None => job.dir.join("savepoints"),
        };
        let trigger = new_id();
        let path = target.join(format!(
            "savepoint-{}-{}",
            &id[..6.min(id.len())],
            &trigger[..12]
        ));
        let answer = {
            let live = lock(&job.live);
            let requester = live
                .as_ref()
                .and_then(|l| l.requester.clone())
                .ok_or_else(|| JobError::Conflict(format!("job {id} is not running")))?;
            std::fs::create_dir_all(&target)
                .map_err(io(format!("cannot create {}", target.display())))?;
            requester
                .request(&path, true)
                .ok_or_else(|| JobError::Conflict(format!("job {id} is ending")))?
        };
        lock(&job.triggers).insert(trigger.clone(), Trigger::InProgress);
        let (job_for_thread, trigger_for_thread) = (Arc::clone(&job), trigger.clone());
        let waiter = std::thread::Builder::new()
            .name("weir-savepoint".into())
            .spawn(move || {
                let result = match answer.recv() {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("the job ended before the savepoint completed".into()),
                };
                lock(&job_for_thread.triggers)
                    .insert(trigger_for_thread, Trigger::Completed(result));
            });
        waiter.map_err(io("cannot start a thread"))?;
        tracing::info!(job = %id, path = %path.display(), "stop with savepoint requested");
        Ok(trigger)
    }

    /// A stop-with-savepoint's progress.
    pub fn savepoint(&self, id: &str, trigger: &str) -> Result<Trigger, JobError> {
        let job = self.job(id)?;
        let triggers = lock(&job.triggers);
        triggers
            .get(trigger)
            .cloned()
            .ok_or_else(|| JobError::NotFound(format!("{id}/savepoints/{trigger}")))
    }

    /// Starts a job stopped with a savepoint again from that savepoint.
    ///
    /// Errors: unknown id; the job runs, or its last end was not a stop with a savepoint
    /// (409).
    pub fn resume(&self, id: &str) -> Result<String, JobError> {
        let job = self.job(id)?;
        // Checked and claimed under one lock: of two resumes, one starts the job.
        job.transition(|r| {
            let savepoint = match (r.status, r.last_savepoint.take()) {
                (JobStatus::Finished, Some(savepoint)) => savepoint,
                (status, _) if !status.is_terminal() => {
                    return Err(JobError::Conflict(format!(
                        "job {id} is {status:?}: stop it first"
                    )))
                }
                _ => {
                    return Err(JobError::Conflict(format!(
                        "job {id} was not stopped with a savepoint: nothing to resume from"
                    )))
                }
            };
            r.savepoint_path = Some(savepoint);
            r.status = JobStatus::Created;
            r.end_time = -1;
            Ok(())
        })?;
        // The savepoint, not an older checkpoint of the state directory, is where it resumes.
        let state = job.state_dir();
        if state.exists() {
            if let Err(error) = std::fs::remove_dir_all(&state) {
                let error = format!("cannot clear {}: {error}", state.display());
                self.record_failure(&job, error.clone());
                self.end(&job, JobStatus::Failed, None);
                return Err(JobError::Conflict(error));
            }
        }
        *lock(&job.cancel) = false;
        tracing::info!(job = %id, "job resumed from its savepoint");
        self.supervise(job);
        Ok(id.to_string())
    }

    /// Each running job's metrics (for `/metrics`).
    pub fn running_metrics(&self) -> Vec<crate::metrics::JobMetrics> {
        let jobs: Vec<Arc<Job>> = lock(&self.inner.jobs).values().cloned().collect();
        jobs.iter()
            .filter_map(|job| {
                let metrics = lock(&job.live).as_ref()?.metrics.clone();
                Some(crate::metrics::JobMetrics {
                    name: job.record().name,
                    id: Some(job.id.clone()),
                    metrics,
                })
            })
            .collect()
    }

    /// Stops every running attempt without ending its job (they resume at the next start)
    /// and waits for the supervisors.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let jobs: Vec<Arc<Job>> = lock(&self.inner.jobs).values().cloned().collect();
        for job in &jobs {
            if let Some(live) = lock(&job.live).as_ref() {
                live.canceller.cancel();
            }
            *lock(&job.cancel) = true;
            job.cancelled.notify_all();
        }
        let supervisors = std::mem::take(&mut *lock(&self.inner.supervisors));
        for supervisor in supervisors {
            let _ = supervisor.join();
        }
    }
}

/// A new 32-hex-digit id (Flink's job id shape).
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(seed.as_bytes()))
}

fn duration(start: i64, end: i64) -> i64 {
    match end {
        -1 => now_ms() - start,
        end => end - start,
    }
}

/// The job's operators as Flink's plan nodes, with their parallelism at `shards`.
fn plan_nodes(job: &SqlJob, shards: usize) -> Result<Vec<PlanNode>, JobError> {
    let graph = &job.graph;
    let info = graph.validate(shards).map_err(SqlError::from)?;
    Ok(info
        .order
        .iter()
        .map(|&node| {
            let n = &graph.nodes[node.0];
            let operator = match &n.kind {
                NodeKind::Source { .. } => "Source",
                NodeKind::Operator(_) => "Operator",
                NodeKind::Sink(_) => "Sink",
            };
            let inputs = graph
                .inputs(node)
                .map(|edge| PlanInput {
                    num: edge.input,
                    id: graph.nodes[edge.from.0].name.clone(),
                    ship_strategy: match &edge.exchange {
                        Exchange::Forward => "FORWARD".into(),
                        Exchange::Hash(keys) => format!("HASH[{}]", keys.join(", ")),
                        Exchange::Broadcast => "BROADCAST".into(),
                        Exchange::Rebalance => "REBALANCE".into(),
                    },
                })
                .collect();
            PlanNode {
                id: n.name.clone(),
                parallelism: info.parallelism[node.0],
                operator: operator.into(),
                description: n.name.clone(),
                inputs,
            }
        })
        .collect())
}

/// Each plan node's metrics now, with rates against the sample before (kept in `rates`,
/// replaced once it is a second old).
fn vertices(plan: &[PlanNode], metrics: &Metrics, rates: &mut Rates) -> Vec<api::Vertex> {
    let snapshot = metrics.snapshot();
    let now = Instant::now();
    let elapsed = rates.at.map(|at| now.duration_since(at));
    if elapsed.is_none_or(|e| e >= Duration::from_secs(1)) {
        if let Some(elapsed) = elapsed {
            let mut per_second = BTreeMap::new();
            for (key, value) in &snapshot {
                let (MetricValue::Counter(now), Some(MetricValue::Counter(before))) =
                    (value, rates.previous.get(key))
                else {
                    continue;
                };
                let rate = now.saturating_sub(*before) as f64 / elapsed.as_secs_f64();
                *per_second
                    .entry((key.operator.clone(), key.name))
                    .or_insert(0.0) += rate;
            }
            rates.per_second = per_second;
        }
        rates.at = Some(now);
        rates.previous = snapshot.clone();
    }
    plan.iter()
        .map(|node| {
            let op = node.id.as_str();
            let total = |name: &str| -> u64 {
                (snapshot.iter())
                    .filter(|(k, _)| k.operator == op && k.name == name)
                    .map(|(_, v)| match v {
                        MetricValue::Counter(n) => *n,
                        MetricValue::Gauge(_) => 0,
                    })
                    .sum()
            };
            let has = |name: &str| snapshot.keys().any(|k| k.operator == op && k.name == name);
            let rate = |name: &'static str| {
                rates
                    .per_second
                    .get(&(op.to_string(), name))
                    .copied()
                    .unwrap_or(0.0)
            };
            let watermarks: Vec<i64> = (snapshot.iter())
                .filter(|(k, _)| k.operator == op && k.name == names::INPUT_WATERMARK)
                .filter_map(|(_, v)| match v {
                    MetricValue::Gauge(w) => Some(*w),
                    MetricValue::Counter(_) => None,
                })
                .collect();
            let watermark = watermarks.iter().min().copied().filter(|w| *w != i64::MIN);
            // ns per second summed over subtasks, as ms per second per subtask.
            let per_subtask =
                |ns_per_second: f64| ns_per_second / 1e6 / node.parallelism.max(1) as f64;
            let backpressured = per_subtask(rate(names::BACKPRESSURED_TIME_NS)).min(1000.0);
            let idle = has(names::IDLE_TIME_NS)
                .then(|| per_subtask(rate(names::IDLE_TIME_NS)).min(1000.0));
            api::Vertex {
                id: node.id.clone(),
                name: node.description.clone(),
                parallelism: node.parallelism,
                metrics: api::VertexMetrics {
                    read_records: total(names::ROWS_IN) + total(names::ROWS_WRITTEN),
                    write_records: total(names::ROWS_OUT),
                    read_records_per_second: rate(names::ROWS_IN) + rate(names::ROWS_WRITTEN),
                    write_records_per_second: rate(names::ROWS_OUT),
                    current_input_watermark: watermark,
                    idle_time_ms_per_second: idle,
                    busy_time_ms_per_second: idle
                        .map(|idle| (1000.0 - idle - backpressured).max(0.0)),
                    back_pressured_time_ms_per_second: backpressured,
                    late_records_dropped: total(names::LATE_ROWS_DROPPED),
                },
            }
        })
        .collect()
}
