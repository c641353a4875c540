//! # weir-operators: what runs inside the dataflow
//!
//! Stateless operators ([`filter::FilterFactory`], [`project::ProjectFactory`],
//! [`project::MapFactory`]) evaluate DataFusion physical expressions or Rust closures over whole
//! Arrow batches. Window operators ([`window::WindowAggregateFactory`]) group rows by key and
//! event-time window (tumbling, hopping, cumulating, session) or by count, and aggregate them
//! with DataFusion's vectorised `GroupsAccumulator`s. Joins ([`join`]) have two inputs.
//!
//! Every operator here implements the engine's `Operator` trait and is created through an
//! `OperatorFactory`, which the DSL and the SQL planner both use. This crate knows nothing of
//! SQL text or of connectors.

pub mod aggregate;
pub mod cast;
pub mod error;
pub mod expr;
pub mod filter;
pub mod group_index;
pub mod join;
pub mod late;
pub mod normalize;
pub mod over;
pub mod project;
pub mod rank;
pub mod retract;
pub mod row_accumulators;
pub mod row_format;
pub mod state_codec;
pub mod text;
pub mod time_index;
pub mod ttl;
pub mod updating;
pub mod window;

pub use error::OperatorError;

/// Rows per result batch of a large result emitted in parts (about).
pub const OUTPUT_BATCH_ROWS: usize = 8192;
/// Result rows an operator emits per call when a result is large (about): a window firing
/// over many keys, an OVER aggregation releasing many rows; it asks the runtime to call again
/// for the rest (`Context::continue_later`).
pub const FIRE_PART_ROWS: usize = 8 * OUTPUT_BATCH_ROWS;
