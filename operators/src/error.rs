//! The operators' error type.

use arrow::error::ArrowError;
use datafusion_common::DataFusionError;
use thiserror::Error;
use weir_engine::state::StateError;
use weir_engine::time::TimeError;

/// Why an operator could not be planned or could not process its input.
#[derive(Debug, Error)]
pub enum OperatorError {
    /// The operator does not fit its input (unknown column, wrong type, bad option). User error.
    #[error("{0}")]
    Plan(String),
    /// An expression or aggregate failed while evaluating a batch.
    #[error("evaluation failed: {0}")]
    Evaluation(#[from] DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error(transparent)]
    State(#[from] StateError),
    /// A user closure returned an error.
    #[error("{0}")]
    User(String),
}

/// Result alias of this crate.
pub type Result<T, E = OperatorError> = std::result::Result<T, E>;
