//! The connectors' error type.

use thiserror::Error;

/// Why a connector could not be created or failed while running.
#[derive(Debug, Error)]
pub enum ConnectorError {
    /// An option is missing, unknown or has a wrong value. User error.
    #[error("{connector}: {message}")]
    Config { connector: String, message: String },
    /// Reading or writing failed.
    #[error("{connector}: I/O error: {source}")]
    Io {
        connector: String,
        #[source]
        source: std::io::Error,
    },
    /// A record could not be decoded and the policy is `fail`.
    #[error("{source_name}: bad record at {position}: {message}")]
    BadRecord {
        source_name: String,
        position: String,
        message: String,
    },
    #[error("{connector}: {source}")]
    Arrow {
        connector: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}
