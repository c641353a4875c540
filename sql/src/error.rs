//! Errors of the SQL front end: a user mistake (exit code 2) names the statement, its line and
//! column, and a hint where one exists; a failure while running names the engine's error.

use std::fmt;

use thiserror::Error;
use weir_engine::EngineError;

/// A position in the SQL text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A mistake in the SQL: what is wrong, where, and what would work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    pub message: String,
    pub location: Option<Location>,
    /// The statement's text (first line shown in messages).
    pub statement: Option<String>,
    pub hint: Option<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            location: None,
            statement: None,
            hint: None,
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location.get_or_insert(location);
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(location) => write!(f, "{location}: {}", self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        if let Some(statement) = &self.statement {
            let first = statement.trim().lines().next().unwrap_or_default();
            let more = if statement.trim().lines().nth(1).is_some() {
                " ..."
            } else {
                ""
            };
            write!(f, "\n  in statement: {first}{more}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Errors of planning or running SQL.
#[derive(Debug, Error)]
pub enum SqlError {
    /// The SQL is wrong or asks for something unsupported (exit code 2).
    #[error("{0}")]
    User(Box<UserError>),
    /// The job failed while running.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl SqlError {
    /// The process exit code for this error: 2 for a user mistake, 1 for a failed job.
    pub fn exit_code(&self) -> u8 {
        match self {
            SqlError::User(_) => 2,
            SqlError::Engine(_) => 1,
        }
    }
}

impl From<UserError> for SqlError {
    fn from(error: UserError) -> Self {
        SqlError::User(Box::new(error))
    }
}

/// Shorthand for a user error without location (the caller adds the statement's).
pub(crate) fn user(message: impl Into<String>) -> UserError {
    UserError::new(message)
}

pub(crate) type Result<T, E = UserError> = std::result::Result<T, E>;
