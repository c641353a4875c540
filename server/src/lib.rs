//! Operating Weir jobs over HTTP. Today: a job's metrics in Prometheus's text format
//! ([`metrics`], served by [`serve_metrics`], `weir run --metrics-addr`); the server with its
//! REST API and dashboard (issue 16) is to come here.

pub mod metrics;

use std::net::SocketAddr;

pub use metrics::{prometheus_text, MetricsListener, MetricsServer};

/// What can go wrong starting an HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// Serves `metrics` of the job `job` at `http://{addr}/metrics` on a thread of its own until
/// the returned [`MetricsServer`] is dropped (port 0 picks a free one:
/// [`MetricsServer::local_addr`]). To refuse a port in use before starting a job, bind first
/// ([`MetricsListener::bind`]) and serve once the job runs.
pub fn serve_metrics(
    addr: SocketAddr,
    job: &str,
    metrics: weir_engine::metrics::Metrics,
) -> Result<MetricsServer, ServerError> {
    MetricsListener::bind(addr)?.serve(job, metrics)
}
