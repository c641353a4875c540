//! The checkpoints a job took, as Flink's checkpoint statistics report them
//! (`GET /jobs/:jobid/checkpoints`): how many completed and failed, the checkpoint the job
//! restored from, and the last few with their duration and size.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How many recent checkpoints are kept (Flink's `web.checkpoints.history` default).
pub const HISTORY_SIZE: usize = 10;

/// How a checkpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointStatus {
    Completed,
    Failed,
}

/// One checkpoint or savepoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub id: u64,
    pub savepoint: bool,
    pub status: CheckpointStatus,
    /// When its barriers were injected (ms since the epoch).
    pub trigger_timestamp_ms: i64,
    /// Barrier injection to manifest written, or to the failure (ms).
    pub duration_ms: u64,
    /// Bytes of the whole checkpoint (Flink's `state_size`); 0 if it failed.
    pub state_size_bytes: u64,
    /// Bytes it wrote that the checkpoint before it did not share (Flink's
    /// `checkpointed_size`); 0 if it failed.
    pub checkpointed_size_bytes: u64,
    /// Where it is (completed only).
    pub external_path: Option<PathBuf>,
    /// Why it failed.
    pub failure: Option<String>,
}

/// The checkpoint a job resumed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredCheckpoint {
    pub id: u64,
    pub external_path: PathBuf,
    /// When the job restored it (ms since the epoch).
    pub restore_timestamp_ms: i64,
}

/// A copy of a job's checkpoint statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub completed: u64,
    pub failed: u64,
    pub restored: Option<RestoredCheckpoint>,
    /// The last [`HISTORY_SIZE`] checkpoints, newest first.
    pub history: VecDeque<CheckpointRecord>,
}

/// A job's checkpoint statistics, shared by the coordinator (which records) and readers.
#[derive(Debug, Clone, Default)]
pub struct CheckpointHistory(Arc<Mutex<CheckpointStats>>);

impl CheckpointHistory {
    fn lock(&self) -> std::sync::MutexGuard<'_, CheckpointStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The statistics now.
    pub fn snapshot(&self) -> CheckpointStats {
        self.lock().clone()
    }

    pub(crate) fn record(&self, record: CheckpointRecord) {
        let mut stats = self.lock();
        match record.status {
            CheckpointStatus::Completed => stats.completed += 1,
            CheckpointStatus::Failed => stats.failed += 1,
        }
        stats.history.push_front(record);
        stats.history.truncate(HISTORY_SIZE);
    }

    pub(crate) fn restored(&self, restored: RestoredCheckpoint) {
        self.lock().restored = Some(restored);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_counts_and_the_newest_records() {
        let history = CheckpointHistory::default();
        for id in 1..=12 {
            history.record(CheckpointRecord {
                id,
                savepoint: false,
                status: match id % 4 {
                    0 => CheckpointStatus::Failed,
                    _ => CheckpointStatus::Completed,
                },
                trigger_timestamp_ms: 0,
                duration_ms: 1,
                state_size_bytes: 0,
                checkpointed_size_bytes: 0,
                external_path: None,
                failure: None,
            });
        }
        let stats = history.snapshot();
        assert_eq!((stats.completed, stats.failed), (9, 3));
        let ids: Vec<u64> = stats.history.iter().map(|r| r.id).collect();
        assert_eq!(ids, (3..=12).rev().collect::<Vec<_>>());
    }
}
