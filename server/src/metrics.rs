//! A job's metrics ([`weir_engine::metrics`]) in Prometheus's text format (OpenMetrics, as
//! `prometheus-client` writes it), named by Prometheus's conventions:
//! `weir_<scope>_<name>[_total|_seconds|_bytes]` with labels `job`, and `operator` and
//! `subtask` for all but the job's own metrics. [`EXPOSED`] maps each engine metric to its
//! name and to Flink's name for the same thing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use std::future::IntoFuture;

use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use weir_engine::metrics::{names, MetricKey, MetricValue, Metrics, JOB};

use crate::ServerError;

/// How an engine metric is exposed.
#[derive(Debug, Clone, Copy)]
pub struct Exposed {
    /// The engine's name ([`weir_engine::metrics::names`], connectors' metric names).
    pub metric: &'static str,
    /// The Prometheus name after `weir_`, before the unit and `_total` suffixes.
    pub name: &'static str,
    pub help: &'static str,
    /// A unit suffix; the engine's milliseconds (gauges) are exposed as seconds.
    pub unit: Option<ExposedUnit>,
    /// Flink's name for the same metric.
    pub flink: &'static str,
}

/// The units metrics are exposed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExposedUnit {
    /// From the engine's milliseconds.
    Seconds,
    /// From the engine's nanoseconds (time counters).
    SecondsFromNanos,
    Bytes,
}

/// Every engine metric with its exposition (others are exposed as
/// `weir_operator_<metric>`).
pub const EXPOSED: &[Exposed] = &[
    Exposed {
        metric: names::ROWS_IN,
        name: "operator_records_in",
        help: "Rows an operator subtask received.",
        unit: None,
        flink: "numRecordsIn",
    },
    Exposed {
        metric: names::ROWS_OUT,
        name: "operator_records_out",
        help: "Rows an operator or source subtask emitted.",
        unit: None,
        flink: "numRecordsOut",
    },
    Exposed {
        metric: names::ROWS_WRITTEN,
        name: "sink_records_written",
        help: "Rows a sink subtask received to write.",
        unit: None,
        flink: "numRecordsSend",
    },
    Exposed {
        metric: names::INPUT_WATERMARK,
        name: "operator_current_input_watermark",
        help: "The last watermark an operator subtask received (absent until the first).",
        unit: Some(ExposedUnit::Seconds),
        flink: "currentInputWatermark",
    },
    Exposed {
        metric: names::LATE_ROWS_DROPPED,
        name: "operator_late_records_dropped",
        help: "Rows dropped because their windows had fired.",
        unit: None,
        flink: "numLateRecordsDropped",
    },
    Exposed {
        metric: names::LATE_ROWS_SIDE_OUTPUT,
        name: "operator_late_records_side_output",
        help: "Late rows sent to the late-row output.",
        unit: None,
        flink: "(side output: no metric)",
    },
    Exposed {
        metric: names::LATE_ROWS_JOINED,
        name: "operator_late_records_joined",
        help: "Rows an interval join received behind the watermark (joined, not kept).",
        unit: None,
        flink: "numLateRecordsDropped (Flink drops them)",
    },
    Exposed {
        metric: names::STATE_ENTRIES_EVICTED,
        name: "operator_state_entries_evicted",
        help: "State entries evicted from memory to RocksDB (the memory budget was full).",
        unit: None,
        flink: "(RocksDB block cache metrics)",
    },
    Exposed {
        metric: names::BAD_RECORDS_SKIPPED,
        name: "source_bad_records_skipped",
        help: "Records a source could not decode and skipped.",
        unit: None,
        flink: "(none; Flink fails or ignores parse errors)",
    },
    Exposed {
        metric: names::BAD_RECORDS_DEAD_LETTERED,
        name: "source_bad_records_dead_lettered",
        help: "Records a source could not decode and wrote to its dead-letter file.",
        unit: None,
        flink: "(none)",
    },
    Exposed {
        metric: names::BYTES_READ,
        name: "source_read",
        help: "Bytes a file source subtask read.",
        unit: Some(ExposedUnit::Bytes),
        flink: "numBytesIn",
    },
    Exposed {
        metric: names::PENDING_RECORDS,
        name: "source_pending_records",
        help: "Records of a Kafka source split's partitions not read yet (consumer lag).",
        unit: None,
        flink: "pendingRecords (records-lag-max per partition)",
    },
    Exposed {
        metric: names::CHECKPOINTS_COMPLETED,
        name: "job_checkpoints_completed",
        help: "Checkpoints (and savepoints) completed.",
        unit: None,
        flink: "numberOfCompletedCheckpoints",
    },
    Exposed {
        metric: names::CHECKPOINTS_FAILED,
        name: "job_checkpoints_failed",
        help: "Checkpoints that failed.",
        unit: None,
        flink: "numberOfFailedCheckpoints",
    },
    Exposed {
        metric: names::LAST_CHECKPOINT_DURATION_MS,
        name: "job_last_checkpoint_duration",
        help: "How long the last completed checkpoint took, barrier to manifest.",
        unit: Some(ExposedUnit::Seconds),
        flink: "lastCheckpointDuration",
    },
    Exposed {
        metric: names::LAST_CHECKPOINT_SIZE_BYTES,
        name: "job_last_checkpoint_size",
        help: "Bytes the last completed checkpoint wrote that the one before did not share.",
        unit: Some(ExposedUnit::Bytes),
        flink: "lastCheckpointSize (checkpointedSize)",
    },
    Exposed {
        metric: names::IDLE_TIME_NS,
        name: "task_idle_time",
        help: "Time a subtask fed by channels waited with no input ready.",
        unit: Some(ExposedUnit::SecondsFromNanos),
        flink: "idleTimeMsPerSecond (its rate)",
    },
    Exposed {
        metric: names::BACKPRESSURED_TIME_NS,
        name: "task_backpressured_time",
        help: "Time a subtask waited for room in a full downstream channel (backpressure).",
        unit: Some(ExposedUnit::SecondsFromNanos),
        flink: "backPressuredTimeMsPerSecond (its rate)",
    },
];

/// One job's metrics, as exposed.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    /// The `job` label (`pipeline.name`, or the script's name).
    pub name: String,
    /// The `job_id` label: a server's jobs may share a name.
    pub id: Option<String>,
    pub metrics: Metrics,
}

/// Exposes jobs' [`Metrics`] at each scrape.
#[derive(Debug)]
struct JobsCollector {
    jobs: Vec<JobMetrics>,
}

impl Collector for JobsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots: Vec<(&JobMetrics, _)> = (self.jobs.iter())
            .map(|job| (job, job.metrics.snapshot()))
            .collect();
        // One descriptor per metric name, then its samples by job, operator and subtask.
        type Sample<'a> = (&'a JobMetrics, &'a MetricKey, MetricValue);
        let mut by_name: Vec<(&'static str, Vec<Sample>)> = Vec::new();
        for (job, snapshot) in &snapshots {
            for (key, value) in snapshot {
                match by_name.iter_mut().find(|(name, _)| *name == key.name) {
                    Some((_, samples)) => samples.push((job, key, *value)),
                    None => by_name.push((key.name, vec![(job, key, *value)])),
                }
            }
        }
        for (metric, samples) in by_name {
            let exposed = EXPOSED.iter().find(|e| e.metric == metric);
            let generic = format!("operator_{metric}");
            let name = exposed.map_or(generic.as_str(), |e| e.name);
            let help = exposed.map_or("A Weir metric.", |e| e.help);
            let unit = exposed.and_then(|e| e.unit);
            let prometheus_unit = unit.map(|u| match u {
                ExposedUnit::Seconds | ExposedUnit::SecondsFromNanos => Unit::Seconds,
                ExposedUnit::Bytes => Unit::Bytes,
            });
            let scale = |value: f64| match unit {
                Some(ExposedUnit::Seconds) => value / 1e3,
                Some(ExposedUnit::SecondsFromNanos) => value / 1e9,
                _ => value,
            };
            let metric_type = match samples[0].2 {
                MetricValue::Counter(_) => ConstCounter::new(0u64).metric_type(),
                MetricValue::Gauge(_) => ConstGauge::new(0.0f64).metric_type(),
            };
            let mut metric_encoder =
                encoder.encode_descriptor(name, help, prometheus_unit.as_ref(), metric_type)?;
            for (job, key, value) in samples {
                let subtask = key.subtask.to_string();
                let mut labels = vec![("job", job.name.as_str())];
                if let Some(id) = &job.id {
                    labels.push(("job_id", id.as_str()));
                }
                if key.operator != JOB {
                    labels.push(("operator", key.operator.as_str()));
                    labels.push(("subtask", subtask.as_str()));
                }
                match value {
                    MetricValue::Counter(n) if unit.is_some() => ConstCounter::new(scale(n as f64))
                        .encode(metric_encoder.encode_family(&labels)?)?,
                    MetricValue::Counter(n) => {
                        ConstCounter::new(n).encode(metric_encoder.encode_family(&labels)?)?
                    }
                    // No watermark yet, or the end of input's: no value.
                    MetricValue::Gauge(i64::MIN | i64::MAX)
                        if key.name == names::INPUT_WATERMARK => {}
                    // Not known yet.
                    MetricValue::Gauge(-1) if key.name == names::PENDING_RECORDS => {}
                    MetricValue::Gauge(v) => ConstGauge::new(scale(v as f64))
                        .encode(metric_encoder.encode_family(&labels)?)?,
                }
            }
        }
        Ok(())
    }
}

/// The metrics of `jobs` in Prometheus's text format.
pub fn prometheus_text(jobs: &[JobMetrics]) -> String {
    let mut registry = Registry::with_prefix("weir");
    registry.register_collector(Box::new(JobsCollector {
        jobs: jobs.to_vec(),
    }));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// An HTTP response with the metrics of `jobs` (OpenMetrics text).
pub fn metrics_response(jobs: &[JobMetrics]) -> impl axum::response::IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        prometheus_text(jobs),
    )
}

/// The address the metrics will be served at, bound (so a port in use is an error before
/// any job starts) but not serving yet: [`MetricsListener::serve`].
#[derive(Debug)]
pub struct MetricsListener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr` (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> Result<Self, ServerError> {
        let bind = |source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        Ok(MetricsListener { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the metrics of the job `job` at `/metrics` on a thread of its own (its runtime
    /// and listener ready before this returns) until the returned server is dropped.
    pub fn serve(self, job: &str, metrics: Metrics) -> Result<MetricsServer, ServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(ServerError::Thread)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(self.listener).map_err(|source| {
                ServerError::Bind {
                    addr: self.addr.to_string(),
                    source,
                }
            })?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let jobs = Arc::new([JobMetrics {
            name: job.to_string(),
            id: None,
            metrics,
        }]);
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let jobs = Arc::clone(&jobs);
                    async move { metrics_response(&jobs[..]) }
                }),
            )
            .fallback(|uri: Uri| async move {
                (
                    StatusCode::NOT_FOUND,
                    format!("nothing at {uri}: the metrics are at /metrics\n"),
                )
            });
        std::thread::Builder::new()
            .name("weir-metrics-http".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let served = runtime.block_on(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .into_future(),
                );
                if let Err(error) = served {
                    tracing::error!(%error, "the metrics endpoint stopped");
                }
            })
            .map_err(ServerError::Thread)?;
        tracing::info!(addr = %self.addr, "serving metrics at /metrics");
        Ok(MetricsServer {
            addr: self.addr,
            stop: Some(stop),
        })
    }
}

/// The HTTP endpoint serving a job's metrics; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_and_labelled_by_prometheus_conventions() {
        let metrics = Metrics::default();
        metrics.counter("window", 1, names::ROWS_IN).add(42);
        let watermark = metrics.gauge("window", 1, names::INPUT_WATERMARK, i64::MIN);
        metrics.gauge("window", 0, names::INPUT_WATERMARK, i64::MIN);
        metrics
            .gauge("window", 2, names::INPUT_WATERMARK, i64::MIN)
            .set(i64::MAX);
        watermark.set(1_500);
        metrics
            .gauge(JOB, 0, names::LAST_CHECKPOINT_DURATION_MS, 0)
            .set(250);
        metrics.counter(JOB, 0, names::CHECKPOINTS_COMPLETED).add(3);
        metrics.counter("join", 0, "something_new").add(1);
        metrics
            .counter("window", 1, names::IDLE_TIME_NS)
            .add(2_500_000_000);
        let other = Metrics::default();
        other.counter("window", 0, names::ROWS_IN).add(7);
        let job = |name: &str, id: Option<&str>, metrics: Metrics| JobMetrics {
            name: name.into(),
            id: id.map(str::to_string),
            metrics,
        };
        let text = prometheus_text(&[
            job("hot-items", None, metrics),
            job("other", Some("ab12"), other),
        ]);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(
                r#"weir_operator_records_in_total{job="hot-items",operator="window",subtask="1"} 42"#
            ),
            "{text}"
        );
        assert!(
            has(
                r#"weir_operator_current_input_watermark_seconds{job="hot-items",operator="window",subtask="1"} 1.5"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"subtask="0"} -"#) && !text.contains(r#"subtask="2"}"#),
            "no watermark yet, or the end of input's: no sample\n{text}"
        );
        assert!(
            has(r#"weir_job_last_checkpoint_duration_seconds{job="hot-items"} 0.25"#),
            "{text}"
        );
        assert!(
            has(r#"weir_job_checkpoints_completed_total{job="hot-items"} 3"#),
            "{text}"
        );
        assert!(has("# TYPE weir_operator_records_in counter"), "{text}");
        assert_eq!(
            text.matches("# TYPE weir_operator_records_in counter")
                .count(),
            1,
            "one family over jobs\n{text}"
        );
        assert!(
            has(
                r#"weir_operator_records_in_total{job="other",job_id="ab12",operator="window",subtask="0"} 7"#
            ),
            "{text}"
        );
        assert!(
            has(
                r#"weir_task_idle_time_seconds_total{job="hot-items",operator="window",subtask="1"} 2.5"#
            ),
            "{text}"
        );
        assert!(
            has(
                r#"weir_operator_something_new_total{job="hot-items",operator="join",subtask="0"} 1"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
