//! The REST API's JSON bodies, shared by the server ([`crate::rest`]) and the `weir` CLI
//! (its client). Shapes and field names follow Flink's REST API where it has the same thing
//! (`/jobs`, `/jobs/:jobid`, `/jobs/:jobid/checkpoints`, ...); `openapi.json` describes them.

use serde::{Deserialize, Serialize};

/// A job's state, Flink's `JobStatus` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Accepted, not started yet.
    Created,
    Running,
    /// Failed; waiting to restart from its last checkpoint.
    Restarting,
    /// Failed and not restarted (the restart strategy gave up).
    Failed,
    Canceled,
    /// Its input ended, or it was stopped with a savepoint (`savepoint` says where).
    Finished,
}

impl JobStatus {
    /// Whether the job has ended (it can only be resumed from a savepoint).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Failed | JobStatus::Canceled | JobStatus::Finished
        )
    }
}

/// `POST /jobs`: a SQL script to run (its `INSERT INTO`s form the job).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitRequest {
    /// The script: `CREATE TABLE`, `SET`, `INSERT INTO` statements.
    pub sql: String,
    /// Shards (default: `SET 'parallelism.default'`, else the server's cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// Start from this savepoint directory (Flink's `savepointPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_path: Option<String>,
    /// Resume even if the savepoint holds state the job does not claim.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Relative file paths of the script are relative to this directory (the client's
    /// working directory); default: the server's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
}

/// `POST /jobs` and `POST /jobs/:jobid/resume`: the job's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub jobid: String,
}

/// `GET /jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsOverview {
    pub jobs: Vec<JobSummary>,
}

/// One job in `GET /jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub status: JobStatus,
    /// ms since the epoch.
    pub start_time: i64,
    /// ms since the epoch; -1 while the job runs (as Flink).
    pub end_time: i64,
    /// ms.
    pub duration: i64,
}

/// `GET /jobs/:jobid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobDetails {
    pub jid: String,
    pub name: String,
    pub state: JobStatus,
    pub start_time: i64,
    pub end_time: i64,
    pub duration: i64,
    /// The server's clock (ms since the epoch).
    pub now: i64,
    /// Shards the job runs on.
    pub parallelism: usize,
    /// Times it was restarted after a failure.
    pub restarts: u32,
    /// The last savepoint it was stopped with (what `resume` starts from).
    pub savepoint: Option<String>,
    pub sql: String,
    /// One per operator, in the plan's order.
    pub vertices: Vec<Vertex>,
}

/// An operator of a running job with its live metrics (summed or, for the watermark, the
/// lowest over its subtasks; rates over the last second).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Vertex {
    pub id: String,
    pub name: String,
    pub parallelism: usize,
    pub metrics: VertexMetrics,
}

/// A vertex's metrics (Flink's names where it has them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VertexMetrics {
    pub read_records: u64,
    pub write_records: u64,
    /// Rows in per second, over the last second.
    pub read_records_per_second: f64,
    /// Rows out per second, over the last second.
    pub write_records_per_second: f64,
    /// The lowest input watermark of its subtasks (ms since the epoch); none before every
    /// subtask has one.
    pub current_input_watermark: Option<i64>,
    /// ms per second (0-1000) of its subtasks on average; none for sources.
    pub idle_time_ms_per_second: Option<f64>,
    pub busy_time_ms_per_second: Option<f64>,
    pub back_pressured_time_ms_per_second: f64,
    pub late_records_dropped: u64,
}

/// `GET /jobs/:jobid/plan`: the dataflow graph (Flink's plan shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanResponse {
    pub plan: Plan,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub jid: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub nodes: Vec<PlanNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanNode {
    pub id: String,
    pub parallelism: usize,
    /// `Source`, `Operator` or `Sink`.
    pub operator: String,
    /// The operator's name and logic.
    pub description: String,
    pub inputs: Vec<PlanInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInput {
    pub num: usize,
    pub id: String,
    /// `FORWARD`, `HASH[keys]`, `BROADCAST` or `REBALANCE` (Flink's ship strategies).
    pub ship_strategy: String,
}

/// `GET /jobs/:jobid/checkpoints`, Flink's `CheckpointingStatistics` (no summary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointingStatistics {
    pub counts: CheckpointCounts,
    pub latest: LatestCheckpoints,
    pub history: Vec<CheckpointDetails>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointCounts {
    pub restored: u64,
    pub total: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatestCheckpoints {
    pub completed: Option<CheckpointDetails>,
    pub savepoint: Option<CheckpointDetails>,
    pub failed: Option<CheckpointDetails>,
    pub restored: Option<RestoredCheckpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointDetails {
    pub id: u64,
    /// `COMPLETED` or `FAILED`.
    pub status: String,
    pub is_savepoint: bool,
    /// ms since the epoch.
    pub trigger_timestamp: i64,
    /// ms since the epoch.
    pub latest_ack_timestamp: i64,
    /// Bytes of the whole checkpoint.
    pub state_size: u64,
    /// Bytes it wrote that the one before did not share (incremental size).
    pub checkpointed_size: u64,
    /// ms.
    pub end_to_end_duration: u64,
    pub external_path: Option<String>,
    pub failure_message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoredCheckpoint {
    pub id: u64,
    /// ms since the epoch.
    pub restore_timestamp: i64,
    pub external_path: String,
}

/// `GET /jobs/:jobid/exceptions`, Flink's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExceptions {
    pub exception_history: ExceptionHistory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExceptionHistory {
    /// Newest first.
    pub entries: Vec<ExceptionEntry>,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionEntry {
    pub exception_name: String,
    /// The error and its causes.
    pub stacktrace: String,
    /// ms since the epoch.
    pub timestamp: i64,
}

/// `POST /jobs/:jobid/stop` (Flink's stop-with-savepoint).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopRequest {
    /// The savepoint goes into a new directory under this one (default: the job's directory
    /// under the server's data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_directory: Option<String>,
    /// Accepted for Flink's clients; Weir's stop does not drain (windows stay open in the
    /// savepoint).
    #[serde(default)]
    pub drain: bool,
}

/// The answer to an asynchronous operation (Flink's `TriggerResponse`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerResponse {
    #[serde(rename = "request-id")]
    pub request_id: String,
}

/// `GET /jobs/:jobid/savepoints/:triggerid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavepointInfo {
    pub status: QueueStatus,
    /// Set once completed.
    pub operation: Option<SavepointOperation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueStatus {
    /// `IN_PROGRESS` or `COMPLETED`.
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavepointOperation {
    /// Where the savepoint is (when it succeeded).
    pub location: Option<String>,
    /// Why it failed.
    pub failure_cause: Option<String>,
}

/// Every error: Flink's `{"errors": [...]}` with the HTTP status, and for a SQL error where
/// in the script it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub errors: Vec<String>,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}
