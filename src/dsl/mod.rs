//! The Rust DSL: a builder that produces a dataflow [`Graph`].
//!
//! `Pipeline::new(name).source(..)` gives a [`Stream`]; streams filter, project and map batches;
//! `key_by` gives a [`KeyedStream`]; `window` gives a [`WindowedStream`]; `aggregate` gives a
//! [`Stream`] of window results again; keyed streams also aggregate without a window, rank
//! (`top_n`, `deduplicate`) and run OVER aggregations ([`rank`]); two keyed streams `join`
//! into [`JoinedStreams`] ([`join`]); `sink` ends a branch and returns a [`Job`] that can be
//! run, started or explained. The type of each step only offers what is valid there (no
//! `aggregate` without a window, no window without a stream); what depends on column names and
//! types is checked when the graph is validated, before anything runs, with an error that
//! names the node.
//!
//! Streams share one graph, so a stream can be cloned to feed several branches.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::BooleanArray;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion_expr::Expr;
use thiserror::Error;
use weir_engine::graph::{Exchange, Graph, NodeId, NodeKind, OutputPort};
use weir_engine::operator::OperatorFactory;
use weir_engine::runtime::{self, JobHandle, JobResult, RunOptions};
use weir_engine::sink::SinkFactory;
use weir_engine::source::SourceFactory;
use weir_engine::time::WatermarkStrategy;
use weir_engine::{BoxError, EngineError};
use weir_operators::filter::{FilterFactory, Predicate};
use weir_operators::project::{MapFactory, ProjectFactory};
use weir_operators::updating::UpdatingAggregateFactory;
use weir_operators::window::{WindowAggregateConfig, WindowAggregateFactory, WindowSpec};

pub mod join;
pub mod rank;

pub use join::JoinedStreams;
pub use rank::{Deduplicate, OrderKey, OverFrame, TopN};

/// Errors of building or running a pipeline.
#[derive(Debug, Error)]
pub enum WeirError {
    /// The pipeline was built wrong (e.g. a watermark not directly after its source).
    #[error("pipeline '{pipeline}': {message}")]
    Build { pipeline: String, message: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

struct Builder {
    name: String,
    graph: Graph,
    errors: Vec<String>,
}

impl Builder {
    fn unique_name(&self, base: &str) -> String {
        if !self.graph.nodes.iter().any(|n| n.name == base) {
            return base.to_string();
        }
        let taken = |name: &str| self.graph.nodes.iter().any(|n| n.name == name);
        let mut suffix = 2;
        while taken(&format!("{base}-{suffix}")) {
            suffix += 1;
        }
        format!("{base}-{suffix}")
    }

    /// The edge to use from `from` to a new node with default parallelism.
    fn exchange_after(&self, from: NodeId, requested: Option<Exchange>) -> Exchange {
        requested.unwrap_or_else(|| match self.graph.nodes[from.0].parallelism {
            None => Exchange::Forward,
            Some(_) => Exchange::Rebalance,
        })
    }
}

/// The start of a DSL pipeline.
#[derive(Clone)]
pub struct Pipeline {
    builder: Rc<RefCell<Builder>>,
}

impl Pipeline {
    /// An empty pipeline named `name` (job name in logs and errors).
    pub fn new(name: impl Into<String>) -> Self {
        Pipeline {
            builder: Rc::new(RefCell::new(Builder {
                name: name.into(),
                graph: Graph::new(),
                errors: Vec::new(),
            })),
        }
    }

    /// Adds a source; its splits run on every shard unless `parallelism` says otherwise.
    pub fn source(&self, source: impl SourceFactory + 'static) -> Stream {
        self.source_arc(Arc::new(source))
    }

    /// [`Pipeline::source`] of a shared source factory.
    pub fn source_arc(&self, source: Arc<dyn SourceFactory>) -> Stream {
        let mut builder = self.builder.borrow_mut();
        let name = builder.unique_name("source");
        let node = builder.graph.add_source(name, source, None);
        Stream {
            builder: Rc::clone(&self.builder),
            node,
            port: OutputPort::Main,
            event_time: None,
            next_exchange: None,
            window_results: false,
        }
    }
}

/// A stream of batches: the output of one node.
#[derive(Clone)]
pub struct Stream {
    builder: Rc<RefCell<Builder>>,
    node: NodeId,
    port: OutputPort,
    /// The event-time column, once a watermark or `event_time` named it.
    event_time: Option<String>,
    /// How the next node receives this stream's rows, if the user chose (`rebalance`,
    /// `broadcast`); otherwise forward (same parallelism) or round-robin.
    next_exchange: Option<Exchange>,
    /// The rows are results of time windows, with their `window_start` and `window_end`
    /// (what makes a Top-N partitioned by both a window Top-N).
    window_results: bool,
}

impl Stream {
    fn then(
        &self,
        base: &str,
        factory: Arc<dyn OperatorFactory>,
        exchange: Option<Exchange>,
    ) -> Stream {
        let mut builder = self.builder.borrow_mut();
        let name = builder.unique_name(base);
        let exchange = builder.exchange_after(self.node, exchange.or(self.next_exchange.clone()));
        let node = builder.graph.add_operator(name, factory);
        builder
            .graph
            .connect_port(self.node, self.port, node, exchange);
        Stream {
            builder: Rc::clone(&self.builder),
            node,
            port: OutputPort::Main,
            event_time: self.event_time.clone(),
            next_exchange: None,
            window_results: false,
        }
    }

    /// Watermarks with bounded out-of-orderness on `column`, generated per source split.
    /// Must directly follow `source`.
    pub fn watermark(self, column: impl Into<String>, max_out_of_orderness: Duration) -> Stream {
        self.watermark_strategy(WatermarkStrategy::bounded_out_of_orderness(
            column,
            max_out_of_orderness,
        ))
    }

    /// Like [`Stream::watermark`], with a full strategy (e.g. an idle timeout).
    pub fn watermark_strategy(mut self, strategy: WatermarkStrategy) -> Stream {
        {
            let mut builder = self.builder.borrow_mut();
            match &mut builder.graph.nodes[self.node.0].kind {
                NodeKind::Source { watermark, .. } => *watermark = Some(strategy.clone()),
                _ => {
                    let node = builder.graph.nodes[self.node.0].name.clone();
                    builder.errors.push(format!(
                        "watermark must directly follow a source, not '{node}'"
                    ));
                }
            }
        }
        self.event_time = Some(strategy.column);
        self
    }

    /// Names the event-time column used by time windows downstream (without changing
    /// watermarks), e.g. after a projection renamed it.
    pub fn event_time(mut self, column: impl Into<String>) -> Stream {
        self.event_time = Some(column.into());
        self
    }

    /// Records a build error (reported by [`Job::graph`]); returns this stream, so building
    /// can go on.
    fn fail(&self, message: &str) -> Stream {
        self.builder.borrow_mut().errors.push(message.to_string());
        self.clone()
    }

    /// Renames the last node (its name is also the namespace of its state).
    pub fn name(self, name: impl Into<String>) -> Stream {
        {
            let mut builder = self.builder.borrow_mut();
            let name = builder.unique_name(&name.into());
            builder.graph.nodes[self.node.0].name = name;
        }
        self
    }

    /// Sets the parallelism of the last node.
    pub fn parallelism(self, parallelism: usize) -> Stream {
        self.builder
            .borrow_mut()
            .graph
            .set_parallelism(self.node, parallelism);
        self
    }

    /// Deals the batches of this stream round-robin to the subtasks of the next node (Flink's
    /// `rebalance`): evens out skewed or low-parallelism inputs.
    pub fn rebalance(mut self) -> Stream {
        self.next_exchange = Some(Exchange::Rebalance);
        self
    }

    /// Sends every row of this stream to every subtask of the next node.
    pub fn broadcast(mut self) -> Stream {
        self.next_exchange = Some(Exchange::Broadcast);
        self
    }

    /// Keeps rows where `predicate` (a DataFusion expression) is true.
    pub fn filter(&self, predicate: Expr) -> Stream {
        let factory = FilterFactory::new(Predicate::Expr(predicate));
        Stream {
            window_results: self.window_results,
            ..self.then("filter", Arc::new(factory), None)
        }
    }

    /// Keeps rows where the closure's mask is true.
    pub fn filter_fn(
        &self,
        description: impl Into<String>,
        f: impl Fn(&RecordBatch) -> Result<BooleanArray, BoxError> + Send + Sync + 'static,
    ) -> Stream {
        let predicate = Predicate::Closure {
            description: description.into(),
            f: Arc::new(f),
        };
        self.then("filter", Arc::new(FilterFactory::new(predicate)), None)
    }

    /// Computes one output column per expression (use `.alias()` to name them).
    pub fn select(&self, exprs: impl IntoIterator<Item = Expr>) -> Stream {
        let factory = ProjectFactory::new(exprs.into_iter().collect());
        self.then("select", Arc::new(factory), None)
    }

    /// Maps each batch with a closure that returns batches of `schema`.
    pub fn map(
        &self,
        description: impl Into<String>,
        schema: SchemaRef,
        f: impl Fn(RecordBatch) -> Result<RecordBatch, BoxError> + Send + Sync + 'static,
    ) -> Stream {
        let factory = MapFactory::new(description, schema, Arc::new(f));
        self.then("map", Arc::new(factory), None)
    }

    /// Partitions rows by the key columns (hash into key groups, each owned by one subtask).
    pub fn key_by<S: Into<String>>(&self, keys: impl IntoIterator<Item = S>) -> KeyedStream {
        KeyedStream {
            stream: self.clone(),
            keys: keys.into_iter().map(Into::into).collect(),
            state_ttl: None,
        }
    }

    /// A window over all rows (one group; runs on one subtask).
    pub fn window(&self, window: WindowSpec) -> WindowedStream {
        WindowedStream {
            stream: self.clone(),
            keys: Vec::new(),
            window,
            late_sink: None,
        }
    }

    /// Writes the stream to `sink`; returns the job so far.
    pub fn sink(&self, sink: impl SinkFactory + 'static) -> Job {
        self.sink_arc(Arc::new(sink))
    }

    /// [`Stream::sink`] of a shared sink factory.
    pub fn sink_arc(&self, sink: Arc<dyn SinkFactory>) -> Job {
        {
            let mut builder = self.builder.borrow_mut();
            let name = builder.unique_name("sink");
            let exchange = builder.exchange_after(self.node, self.next_exchange.clone());
            let node = builder.graph.add_sink(name, sink);
            builder
                .graph
                .connect_port(self.node, self.port, node, exchange);
        }
        Job {
            builder: Rc::clone(&self.builder),
        }
    }
}

/// A stream partitioned by key.
#[derive(Clone)]
pub struct KeyedStream {
    stream: Stream,
    keys: Vec<String>,
    state_ttl: Option<Duration>,
}

impl KeyedStream {
    /// Forgets this stream's state not written for `ttl` (processing time) in the next
    /// [`KeyedStream::aggregate`], [`KeyedStream::over`] (keys without rows waiting for the
    /// watermark) or [`JoinedStreams::regular`] (this side's rows), as Flink's `STATE_TTL`
    /// hint on that operator's input. Windows and time-bounded joins free their state by the
    /// watermark and ignore it.
    pub fn state_ttl(mut self, ttl: Duration) -> Self {
        self.state_ttl = Some(ttl);
        self
    }

    /// Joins this stream (left) with `other` (right) on their keys, paired in order: `left.k1
    /// = right.k1`, ... Choose the kind with [`JoinedStreams::kind`] and the join with
    /// [`JoinedStreams::between`] (an interval join).
    pub fn join(&self, other: &KeyedStream) -> JoinedStreams {
        JoinedStreams::new(self.clone(), other.clone())
    }

    /// Aggregates each key's rows without a window, as SQL's `GROUP BY` on a stream: an
    /// updating result (an upsert stream by the keys) with the key columns, the aggregates and
    /// the row kind, one change per key touched by a batch.
    pub fn aggregate(&self, aggregates: impl IntoIterator<Item = Expr>) -> Stream {
        let factory =
            UpdatingAggregateFactory::new(self.keys.clone(), aggregates.into_iter().collect())
                .with_state_ttl(self.state_ttl);
        let mut aggregated = self.stream.then(
            "group-aggregate",
            Arc::new(factory),
            Some(Exchange::Hash(self.keys.clone())),
        );
        aggregated.event_time = None;
        aggregated
    }

    /// Groups each key's rows into windows.
    pub fn window(&self, window: WindowSpec) -> WindowedStream {
        WindowedStream {
            stream: self.stream.clone(),
            keys: self.keys.clone(),
            window,
            late_sink: None,
        }
    }
}

/// A keyed (or global) stream cut into windows, waiting for its aggregates.
#[derive(Clone)]
pub struct WindowedStream {
    stream: Stream,
    keys: Vec<String>,
    window: WindowSpec,
    late_sink: Option<Arc<dyn SinkFactory>>,
}

impl WindowedStream {
    /// Sends late rows (every window they belong to had fired) to `sink` instead of dropping
    /// them. Either way they are counted.
    pub fn late_rows(mut self, sink: impl SinkFactory + 'static) -> Self {
        self.late_sink = Some(Arc::new(sink));
        self
    }

    /// Aggregates each window: one output row per key and window, with `window_start`,
    /// `window_end` (time windows), the key columns, then the aggregates.
    pub fn aggregate(&self, aggregates: impl IntoIterator<Item = Expr>) -> Stream {
        let time_column = match (&self.window, &self.stream.event_time) {
            (WindowSpec::Count { .. }, _) => String::new(),
            (_, Some(column)) => column.clone(),
            (_, None) => {
                self.stream.builder.borrow_mut().errors.push(
                    "a time window needs an event-time column: call .watermark(column, delay) after the source, or .event_time(column)"
                        .into(),
                );
                String::new()
            }
        };
        let config = WindowAggregateConfig {
            window: self.window,
            time_column,
            keys: self.keys.clone(),
            aggregates: aggregates.into_iter().collect(),
            processing_time: false,
            early_fire: None,
        };
        let mut windowed = self.stream.then(
            "window",
            Arc::new(WindowAggregateFactory::new(config)),
            Some(Exchange::Hash(self.keys.clone())),
        );
        windowed.event_time = None;
        windowed.window_results = !matches!(self.window, WindowSpec::Count { .. });
        self.connect_late_rows(&windowed);
        windowed
    }

    /// Sends the late rows of `operator` (a node this windowed stream made) to the late-row
    /// sink, if one was given.
    fn connect_late_rows(&self, operator: &Stream) {
        if let Some(sink) = &self.late_sink {
            let late = Stream {
                port: OutputPort::Late,
                ..operator.clone()
            };
            late.sink_arc(Arc::clone(sink));
        }
    }
}

/// A built pipeline, ready to run.
#[derive(Clone)]
pub struct Job {
    builder: Rc<RefCell<Builder>>,
}

impl Job {
    /// The dataflow graph, or the first build error.
    pub fn graph(&self) -> Result<Graph, WeirError> {
        let builder = self.builder.borrow();
        if let Some(message) = builder.errors.first() {
            return Err(WeirError::Build {
                pipeline: builder.name.clone(),
                message: message.clone(),
            });
        }
        Ok(builder.graph.clone())
    }

    /// Runs the job to completion on the calling thread's behalf.
    pub fn run(&self, options: RunOptions) -> Result<JobResult, WeirError> {
        Ok(runtime::run(&self.graph()?, options)?)
    }

    /// Starts the job and returns a handle to cancel or join it.
    pub fn start(&self, options: RunOptions) -> Result<JobHandle, WeirError> {
        Ok(runtime::start(&self.graph()?, options)?)
    }

    /// The dataflow graph as text.
    pub fn explain(&self, options: &RunOptions) -> Result<String, WeirError> {
        Ok(runtime::explain(&self.graph()?, options)?)
    }
}
