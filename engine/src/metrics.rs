//! Job metrics: named counters per operator, shared by every subtask of a job.
//!
//! A counter is an atomic integer; subtasks look theirs up once when they are created, so the
//! hot path only does a relaxed `fetch_add` per batch. [`Metrics::snapshot`] reads them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A counter that subtasks add to.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Names of the counters the runtime and operators maintain.
pub mod names {
    /// Rows dropped because every window they belong to had already fired.
    pub const LATE_ROWS_DROPPED: &str = "late_rows_dropped";
    /// Late rows sent to the late-row side output instead.
    pub const LATE_ROWS_SIDE_OUTPUT: &str = "late_rows_side_output";
    /// Rows an interval join received after the watermark had passed the last time a later
    /// row of the other side could match them: joined with the kept rows, not kept themselves.
    pub const LATE_ROWS_JOINED: &str = "late_rows_joined";
    /// Rows an operator received.
    pub const ROWS_IN: &str = "rows_in";
    /// State table entries evicted from memory to the state backend (the memory budget was
    /// full).
    pub const STATE_ENTRIES_EVICTED: &str = "state_entries_evicted";
    /// Rows a sink received.
    pub const ROWS_WRITTEN: &str = "rows_written";
}

/// All counters of a job, keyed by `(operator, metric)`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    counters: Arc<Mutex<BTreeMap<(String, String), Counter>>>,
}

impl Metrics {
    /// The counter `metric` of `operator`, created at zero on first use.
    pub fn counter(&self, operator: &str, metric: &str) -> Counter {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters
            .entry((operator.to_string(), metric.to_string()))
            .or_default()
            .clone()
    }

    /// Current values of every counter.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.iter().map(|(k, c)| (k.clone(), c.get())).collect()
    }

    /// Sum of `metric` over every operator.
    pub fn total(&self, metric: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, m), _)| m == metric)
            .map(|(_, v)| v)
            .sum()
    }
}
