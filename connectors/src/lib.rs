//! # weir-connectors: sources and sinks
//!
//! For now the connectors that need no external system: [`memory::MemorySource`] (batches
//! given up front), [`generator::BidGenerator`] (a deterministic stream of auction bids),
//! [`collect::CollectSink`] (keeps what it receives, for tests and embedding),
//! [`print::PrintSink`] (stdout) and [`blackhole::BlackholeSink`] (counts and discards).
//! Each is a factory for the engine's source or sink trait. Files and Kafka come next.

pub mod blackhole;
pub mod collect;
pub mod error;
pub mod generator;
pub mod memory;
pub mod print;

pub use error::ConnectorError;
