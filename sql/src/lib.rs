//! # weir-sql: the SQL front end (skeleton)
//!
//! This crate will turn Flink-style SQL (DDL with `WATERMARK FOR` and `WITH (...)`, window
//! table-valued functions, `INSERT INTO ... SELECT`) into the same
//! [`weir_engine::graph::Graph`] the Rust DSL builds: sqlparser for the text, DataFusion's
//! planner for `LogicalPlan`s, then a rewrite into Weir nodes (window TVFs become
//! `weir_operators::window::WindowAggregateFactory`, grouping keys become hash exchanges,
//! projections and filters become `ProjectFactory`/`FilterFactory` over DataFusion expressions,
//! tables become connectors from `weir_connectors`).
//!
//! Nothing is implemented yet; the SQL issue owns it. The crate exists so that the dependency
//! direction `engine <- operators <- connectors <- sql <- weir` is fixed from the start.

pub use weir_connectors as connectors;
pub use weir_engine as engine;
pub use weir_operators as operators;
