//! # weir-engine: the dataflow runtime
//!
//! This crate owns everything that moves data: the logical [`graph::Graph`] of sources,
//! operators and sinks; the physical plan that turns each node into subtasks placed on shard
//! threads and fuses forward edges into call chains; the bounded channels between shards;
//! watermarks and idleness; key groups; and the state API that stateful operators snapshot
//! into and restore from.
//!
//! It must not know about SQL, DataFusion, Kafka or any file format: operators, connectors and
//! the SQL front end live in the crates above it and meet the engine through three traits,
//! [`operator::Operator`], [`source::SourceReader`] and [`sink::SinkWriter`], each created per
//! subtask by a factory.
//!
//! The entry point is [`runtime::start`] (or [`runtime::run`]), which takes a [`graph::Graph`]
//! and [`runtime::RunOptions`].

pub mod changelog;
pub mod checkpoint;
pub mod error;
pub mod graph;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod partition;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;

pub use error::{BoxError, EngineError};
pub use message::{CheckpointId, Message, Watermark};
