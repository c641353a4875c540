//! # weir-connectors: sources and sinks
//!
//! For now the connectors that need no external system: [`memory::MemorySource`] (batches
//! given up front), [`generator::BidGenerator`] (a deterministic stream of auction bids),
//! [`collect::CollectSink`] (keeps what it receives, for tests and embedding),
//! [`print::PrintSink`] (stdout) and [`blackhole::BlackholeSink`] (counts and discards).
//! Each is a factory for the engine's source or sink trait. Files and Kafka come next.

pub mod blackhole;
pub mod collect;
pub mod datagen;
pub mod error;
pub mod filesystem;
pub mod format;
pub mod generator;
pub mod kafka;
pub mod materialize;
pub mod memory;
pub mod nexmark;
pub mod options;
pub mod pace;
pub mod print;
pub mod random;
pub mod registry;
mod resume;

/// Names of the connectors' metrics (kept with the engine's, which exposes them all).
pub mod metric_names {
    pub use weir_engine::metrics::names::{
        BAD_RECORDS_DEAD_LETTERED, BAD_RECORDS_SKIPPED, BYTES_READ, PENDING_RECORDS,
    };
}

pub use error::ConnectorError;
