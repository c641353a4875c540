//! # weir-sql: Flink-style SQL jobs
//!
//! A script (`CREATE TABLE`, `CREATE VIEW`, `SET`, `INSERT INTO`, `SELECT`, `EXPLAIN`, statement
//! sets) is split into statements ([`script`]); Flink's DDL is read by [`ddl`]; window
//! table-valued functions are taken out of the token stream ([`window_tvf`]) so sqlparser can
//! read the rest; DataFusion's `SqlToRel` plans each query into a `LogicalPlan` over the
//! session's tables ([`catalog`]) and Flink's built-in functions ([`functions`]);
//! [`translate`] turns that plan into Weir's dataflow graph, with the `STATE_TTL` hints
//! [`hints`] read.
//! [`session::Session`] drives it all.

pub mod catalog;
pub mod ddl;
pub mod error;
pub mod file_access;
pub mod functions;
pub mod hints;
pub mod join;
pub mod names;
pub mod script;
pub mod session;
pub mod source;
pub mod temporal;
pub mod translate;
pub mod window_tvf;

pub use error::{Location, SqlError, UserError};
pub use file_access::FileAccess;
pub use session::{Action, Session, Settings, SqlJob};
