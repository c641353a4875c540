//! Job metrics: counters and gauges per operator subtask, shared by every subtask of a job.
//!
//! A metric is an atomic integer; subtasks look theirs up once when they are created, so the
//! hot path only does a relaxed `fetch_add` (or `store`) per batch. Each is known by its
//! operator (a node's name; [`JOB`] for the job as a whole), subtask index and name
//! ([`names`]); [`Metrics::snapshot`] reads them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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

/// A value that is set, not added to (a watermark, the last checkpoint's duration).
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// A gauge at `value`.
    fn new(value: i64) -> Self {
        Gauge(Arc::new(AtomicI64::new(value)))
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The operator name of metrics of the job as a whole (checkpoints).
pub const JOB: &str = "";

/// Names of the metrics the runtime, operators and connectors maintain (counters unless
/// said otherwise).
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
    /// Rows an operator or a source emitted (late-row side output aside).
    pub const ROWS_OUT: &str = "rows_out";
    /// Gauge: the watermark an operator subtask last received (ms since the epoch;
    /// `i64::MIN` until the first, as Flink's `currentInputWatermark`).
    pub const INPUT_WATERMARK: &str = "input_watermark";
    /// State table entries evicted from memory to the state backend (the memory budget was
    /// full).
    pub const STATE_ENTRIES_EVICTED: &str = "state_entries_evicted";
    /// Rows a sink received.
    pub const ROWS_WRITTEN: &str = "rows_written";
    /// Records a source could not decode and skipped (`format.on-error = skip`).
    pub const BAD_RECORDS_SKIPPED: &str = "bad_records_skipped";
    /// Records a source could not decode and wrote to its dead-letter file.
    pub const BAD_RECORDS_DEAD_LETTERED: &str = "bad_records_dead_lettered";
    /// Bytes a file source read.
    pub const BYTES_READ: &str = "bytes_read";
    /// Gauge: records of a Kafka source split's partitions not read yet (the consumer's lag
    /// behind the partitions' ends, from librdkafka's statistics; Flink's `pendingRecords`);
    /// -1 until known.
    pub const PENDING_RECORDS: &str = "pending_records";
    /// Checkpoints completed (job; savepoints included).
    pub const CHECKPOINTS_COMPLETED: &str = "checkpoints_completed";
    /// Checkpoints that failed (job).
    pub const CHECKPOINTS_FAILED: &str = "checkpoints_failed";
    /// Gauge: how long the last completed checkpoint took, barrier to manifest (ms; job).
    pub const LAST_CHECKPOINT_DURATION_MS: &str = "last_checkpoint_duration_ms";
    /// Gauge: the bytes the last completed checkpoint wrote that the one before it did not
    /// share (job).
    pub const LAST_CHECKPOINT_SIZE_BYTES: &str = "last_checkpoint_size_bytes";
    /// Nanoseconds a subtask waited for input with none ready (subtasks fed by channels;
    /// Flink's `idleTimeMsPerSecond` is its rate).
    pub const IDLE_TIME_NS: &str = "idle_time_ns";
    /// Nanoseconds a subtask waited for room in a full downstream channel (Flink's
    /// `backPressuredTimeMsPerSecond` is its rate); kept under the chain's last operator.
    pub const BACKPRESSURED_TIME_NS: &str = "backpressured_time_ns";
}

/// Where a metric is: its operator ([`JOB`] for the job), subtask and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricKey {
    pub operator: String,
    pub subtask: usize,
    pub name: &'static str,
}

/// A metric's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(i64),
}

#[derive(Debug, Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

/// All metrics of a job.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    metrics: Arc<Mutex<BTreeMap<MetricKey, Metric>>>,
}

impl Metrics {
    fn key(operator: &str, subtask: usize, name: &'static str) -> MetricKey {
        MetricKey {
            operator: operator.to_string(),
            subtask,
            name,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<MetricKey, Metric>> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counter `name` of `operator`'s subtask `subtask`, created at zero on first use
    /// (a gauge of that name there is replaced).
    pub fn counter(&self, operator: &str, subtask: usize, name: &'static str) -> Counter {
        let mut metrics = self.lock();
        let metric = metrics
            .entry(Self::key(operator, subtask, name))
            .or_insert_with(|| Metric::Counter(Counter::default()));
        match metric {
            Metric::Counter(counter) => counter.clone(),
            Metric::Gauge(_) => {
                let counter = Counter::default();
                *metric = Metric::Counter(counter.clone());
                counter
            }
        }
    }

    /// The gauge `name` of `operator`'s subtask `subtask`, created at `initial` on first use
    /// (a counter of that name there is replaced).
    pub fn gauge(&self, operator: &str, subtask: usize, name: &'static str, initial: i64) -> Gauge {
        let mut metrics = self.lock();
        let metric = metrics
            .entry(Self::key(operator, subtask, name))
            .or_insert_with(|| Metric::Gauge(Gauge::new(initial)));
        match metric {
            Metric::Gauge(gauge) => gauge.clone(),
            Metric::Counter(_) => {
                let gauge = Gauge::new(initial);
                *metric = Metric::Gauge(gauge.clone());
                gauge
            }
        }
    }

    /// Current values of every metric.
    pub fn snapshot(&self) -> BTreeMap<MetricKey, MetricValue> {
        (self.lock().iter())
            .map(|(key, metric)| {
                let value = match metric {
                    Metric::Counter(c) => MetricValue::Counter(c.get()),
                    Metric::Gauge(g) => MetricValue::Gauge(g.get()),
                };
                (key.clone(), value)
            })
            .collect()
    }

    /// Sum of counter `name` over every operator and subtask.
    pub fn total(&self, name: &str) -> u64 {
        self.sum(|key| key.name == name)
    }

    /// Sum of counter `name` over the subtasks of `operator`.
    pub fn operator_total(&self, operator: &str, name: &str) -> u64 {
        self.sum(|key| key.operator == operator && key.name == name)
    }

    fn sum(&self, counted: impl Fn(&MetricKey) -> bool) -> u64 {
        (self.lock().iter())
            .filter(|(key, _)| counted(key))
            .map(|(_, metric)| match metric {
                Metric::Counter(c) => c.get(),
                Metric::Gauge(_) => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_subtask_and_gauges_hold_the_last_value() {
        let metrics = Metrics::default();
        metrics.counter("a", 0, names::ROWS_IN).add(3);
        metrics.counter("a", 1, names::ROWS_IN).add(4);
        metrics.counter("a", 0, names::ROWS_IN).add(1);
        metrics.counter("b", 0, names::ROWS_IN).add(10);
        let watermark = metrics.gauge("a", 1, names::INPUT_WATERMARK, i64::MIN);
        watermark.set(5);
        watermark.set(7);
        assert_eq!(metrics.total(names::ROWS_IN), 18);
        assert_eq!(metrics.operator_total("a", names::ROWS_IN), 8);
        let snapshot = metrics.snapshot();
        let key = |operator: &str, subtask, name| MetricKey {
            operator: operator.into(),
            subtask,
            name,
        };
        assert_eq!(
            snapshot[&key("a", 0, names::ROWS_IN)],
            MetricValue::Counter(4)
        );
        assert_eq!(
            snapshot[&key("a", 1, names::INPUT_WATERMARK)],
            MetricValue::Gauge(7)
        );
    }
}
