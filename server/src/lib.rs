//! Operating Weir jobs: `weir server` ([`Server`]) runs submitted SQL jobs ([`jobs`]),
//! restarts them by Flink's strategies ([`restart`]), and serves a REST API shaped like
//! Flink's ([`rest`], bodies in [`api`], described by `openapi.json`), a web dashboard
//! ([`dashboard`]) and every job's metrics in Prometheus's text format ([`metrics`]; also
//! served alone for `weir run --metrics-addr`).

pub mod api;
pub mod dashboard;
pub mod jobs;
pub mod metrics;
pub mod rest;
pub mod restart;

use std::future::IntoFuture;
use std::net::SocketAddr;

pub use jobs::{JobManager, ServerConfig};
pub use metrics::{prometheus_text, MetricsListener, MetricsServer};

/// What can go wrong starting an HTTP endpoint or the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Jobs(#[from] jobs::JobError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error(
        "binding {0} exposes the server beyond this machine: give a token (--token or WEIR_TOKEN)"
    )]
    TokenRequired(SocketAddr),
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

/// A running `weir server`: its jobs and its HTTP endpoint.
#[derive(Debug)]
pub struct Server {
    jobs: JobManager,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    token: Option<String>,
}

impl Server {
    /// Binds `bind` (a token is required unless it is a loopback address) and opens the data
    /// directory, resuming every job recorded as running.
    ///
    /// Errors: the address is in use, a non-loopback address without a token, the data
    /// directory cannot be used.
    pub fn start(
        config: ServerConfig,
        bind: SocketAddr,
        token: Option<String>,
    ) -> Result<Self, ServerError> {
        let token = token.filter(|t| !t.is_empty());
        if !bind.ip().is_loopback() && token.is_none() {
            return Err(ServerError::TokenRequired(bind));
        }
        let bind_error = |source| ServerError::Bind {
            addr: bind.to_string(),
            source,
        };
        let listener = std::net::TcpListener::bind(bind).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let jobs = JobManager::open(config)?;
        Ok(Server {
            jobs,
            listener,
            addr,
            token,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves HTTP until `shutdown` resolves, then suspends the running jobs (they resume at
    /// the server's next start).
    pub fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()
            .map_err(ServerError::Thread)?;
        let app = rest::router(self.jobs.clone(), self.token);
        let served = runtime.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(self.listener).map_err(ServerError::Http)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .into_future()
                .await
                .map_err(ServerError::Http)
        });
        self.jobs.shutdown();
        served
    }
}
