//! # Weir: a stream processing engine
//!
//! This crate is the public face of Weir: the `weir` command-line tool and the Rust DSL for
//! building pipelines. A pipeline is built with [`Pipeline`], which produces the same dataflow
//! graph ([`weir_engine::graph::Graph`]) that the SQL front end produces, and runs it on the
//! engine's shards.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::prelude::*;
//!
//! let sink = CollectSink::new();
//! Pipeline::new("hot-items")
//!     .source(BidGenerator::new(BidGeneratorConfig::default()))
//!     .watermark("date_time", Duration::from_secs(2))
//!     .key_by(["auction"])
//!     .window(Window::hop(Duration::from_secs(10), Duration::from_secs(2)))
//!     .aggregate([count_all().alias("bids"), max(col("price")).alias("top_price")])
//!     .sink(sink.clone())
//!     .run(RunOptions::default().shards(2))?;
//! # Ok::<(), weir::WeirError>(())
//! ```
//!
//! Crates: `weir-engine` (runtime) <- `weir-operators` (windows, aggregates, expressions) <-
//! `weir-connectors` (sources, sinks) <- `weir-sql` <- `weir` (this crate).

pub mod dsl;

pub use dsl::{
    Deduplicate, Job, JoinedStreams, KeyedStream, OrderKey, OverFrame, Pipeline, Stream, TopN,
    WeirError, WindowedStream,
};
pub use weir_connectors as connectors;
pub use weir_engine as engine;
pub use weir_operators as operators;
pub use weir_sql as sql;

/// Everything a DSL pipeline usually needs.
pub mod prelude {
    pub use crate::dsl::{
        Deduplicate, Job, JoinedStreams, KeyedStream, OrderKey, OverFrame, Pipeline, Stream, TopN,
        WeirError, WindowedStream,
    };
    pub use datafusion_common::ScalarValue;
    pub use datafusion_expr::{
        col, create_udaf, lit, Accumulator, AggregateUDF, Expr, ExprFunctionExt, Volatility,
    };
    pub use datafusion_functions_aggregate::count::count_all;
    pub use datafusion_functions_aggregate::expr_fn::{
        approx_distinct, avg, count, count_distinct, max, min, sum,
    };
    pub use weir_connectors::blackhole::BlackholeSink;
    pub use weir_connectors::collect::CollectSink;
    pub use weir_connectors::generator::{BidGenerator, BidGeneratorConfig};
    pub use weir_connectors::memory::MemorySource;
    pub use weir_connectors::print::{PrintFormat, PrintSink};
    pub use weir_engine::runtime::{JobHandle, JobResult, RunOptions};
    pub use weir_operators::join::JoinType;
    pub use weir_operators::window::WindowSpec as Window;
}
