//! Errors of the runtime.
//!
//! Operators, sources and sinks report failures as a [`BoxError`] (their own crate's error
//! type, boxed); the runtime wraps it into an [`EngineError`] that names the operator and the
//! subtask, which is what a user sees when a job fails.

use thiserror::Error;

/// Error type that operators, sources and sinks hand to the runtime.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job could not be planned or did not finish.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The graph is not a valid job (unknown node, cycle, missing input, ...). A user error.
    #[error("invalid job graph: {0}")]
    InvalidGraph(String),
    /// An operator, source or sink returned an error.
    #[error("operator '{operator}' (subtask {subtask}) failed: {source}")]
    OperatorFailed {
        operator: String,
        subtask: usize,
        #[source]
        source: BoxError,
    },
    /// An operator, source or sink panicked.
    #[error("operator '{operator}' (subtask {subtask}) panicked: {message}")]
    OperatorPanicked {
        operator: String,
        subtask: usize,
        message: String,
    },
    /// The job was cancelled (Ctrl-C or [`crate::runtime::JobHandle::cancel`]).
    #[error("job cancelled")]
    Cancelled,
    /// A checkpoint could not be written or committed.
    #[error("checkpoint failed: {0}")]
    Checkpoint(String),
    /// The job cannot resume from the given checkpoint or savepoint.
    #[error("cannot resume from {path}: {reason}")]
    Restore { path: String, reason: String },
    /// A shard thread could not be started or its runtime could not be built.
    #[error("shard {shard}: {message}")]
    Shard { shard: usize, message: String },
}

impl EngineError {
    /// Wraps an operator's error with its name and subtask.
    pub fn operator(operator: &str, subtask: usize, source: BoxError) -> Self {
        EngineError::OperatorFailed {
            operator: operator.to_string(),
            subtask,
            source,
        }
    }
}

/// Turns a panic payload into readable text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
