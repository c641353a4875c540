//! The logical dataflow graph: sources, operators and sinks joined by edges.
//!
//! Both the Rust DSL and the SQL planner build a [`Graph`]. [`Graph::validate`] checks it and
//! derives every node's schema and parallelism; [`Graph::explain`] prints it for `EXPLAIN`.
//! Edges carry an [`Exchange`], which says how rows move from the P subtasks of one node to
//! the Q subtasks of the next.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::error::EngineError;
use crate::operator::OperatorFactory;
use crate::sink::SinkFactory;
use crate::source::SourceFactory;
use crate::time::WatermarkStrategy;

/// Index of a node in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// How rows move along an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// Subtask i to subtask i; both ends need the same parallelism. Fused when possible.
    Forward,
    /// By hash of the key columns into key groups, each owned by one downstream subtask.
    /// No columns sends every row to one subtask.
    Hash(Vec<String>),
    /// Every row to every downstream subtask.
    Broadcast,
    /// Batches dealt round-robin to downstream subtasks.
    Rebalance,
}

/// Which output of a node an edge starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputPort {
    Main,
    /// Rows a window operator found late (every window they belong to had fired).
    Late,
}

/// What a node is.
#[derive(Clone)]
pub enum NodeKind {
    Source {
        factory: Arc<dyn SourceFactory>,
        watermark: Option<WatermarkStrategy>,
    },
    Operator(Arc<dyn OperatorFactory>),
    Sink(Arc<dyn SinkFactory>),
}

impl std::fmt::Debug for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeKind::Source { factory, .. } => write!(f, "Source({})", factory.describe()),
            NodeKind::Operator(factory) => write!(f, "Operator({})", factory.describe()),
            NodeKind::Sink(factory) => write!(f, "Sink({})", factory.describe()),
        }
    }
}

/// A node: a unique name (also the namespace of its state), what it is, and its parallelism
/// (`None`: the job's shard count).
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub parallelism: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    pub port: OutputPort,
    pub exchange: Exchange,
}

/// A job's dataflow graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// Facts derived from a valid graph for a given shard count.
#[derive(Debug, Clone)]
pub struct GraphInfo {
    /// Nodes in an order where every edge goes forward.
    pub order: Vec<NodeId>,
    /// Main output schema per node (a sink's is its input schema).
    pub schemas: Vec<SchemaRef>,
    /// Input schema per node (a source's is its output schema).
    pub input_schemas: Vec<SchemaRef>,
    pub parallelism: Vec<usize>,
    /// Each node's stable identity, the key of its state in checkpoints and savepoints
    /// ([`Graph::uids`]).
    pub uids: Vec<String>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, name: impl Into<String>, kind: NodeKind) -> NodeId {
        self.nodes.push(Node {
            name: name.into(),
            kind,
            parallelism: None,
        });
        NodeId(self.nodes.len() - 1)
    }

    pub fn add_source(
        &mut self,
        name: impl Into<String>,
        factory: Arc<dyn SourceFactory>,
        watermark: Option<WatermarkStrategy>,
    ) -> NodeId {
        self.add(name, NodeKind::Source { factory, watermark })
    }

    pub fn add_operator(
        &mut self,
        name: impl Into<String>,
        factory: Arc<dyn OperatorFactory>,
    ) -> NodeId {
        self.add(name, NodeKind::Operator(factory))
    }

    pub fn add_sink(&mut self, name: impl Into<String>, factory: Arc<dyn SinkFactory>) -> NodeId {
        self.add(name, NodeKind::Sink(factory))
    }

    pub fn set_parallelism(&mut self, node: NodeId, parallelism: usize) {
        self.nodes[node.0].parallelism = Some(parallelism);
    }

    /// Connects the main output of `from` to `to`.
    pub fn connect(&mut self, from: NodeId, to: NodeId, exchange: Exchange) {
        self.connect_port(from, OutputPort::Main, to, exchange);
    }

    pub fn connect_port(&mut self, from: NodeId, port: OutputPort, to: NodeId, exchange: Exchange) {
        self.edges.push(Edge {
            from,
            to,
            port,
            exchange,
        });
    }

    pub fn inputs(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == node)
    }

    pub fn outputs(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == node)
    }

    /// Checks the graph and derives schemas and parallelism for `shards` shards.
    pub fn validate(&self, shards: usize) -> Result<GraphInfo, EngineError> {
        let invalid = |m: String| EngineError::InvalidGraph(m);
        if self.nodes.is_empty() {
            return Err(invalid("the job has no nodes".into()));
        }
        let mut names = HashSet::new();
        for node in &self.nodes {
            if !names.insert(node.name.as_str()) {
                return Err(invalid(format!("two nodes are named '{}'", node.name)));
            }
            if node.parallelism == Some(0) {
                return Err(invalid(format!("node '{}' has parallelism 0", node.name)));
            }
        }
        for edge in &self.edges {
            if edge.from.0 >= self.nodes.len() || edge.to.0 >= self.nodes.len() {
                return Err(invalid(
                    "an edge refers to a node that does not exist".into(),
                ));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let id = NodeId(i);
            let ins = self.inputs(id).count();
            let outs = self.outputs(id).count();
            match &node.kind {
                NodeKind::Source { .. } if ins > 0 => {
                    return Err(invalid(format!("source '{}' has an input", node.name)))
                }
                NodeKind::Operator(_) | NodeKind::Sink(_) if ins == 0 => {
                    return Err(invalid(format!("'{}' has no input", node.name)))
                }
                NodeKind::Sink(_) if outs > 0 => {
                    return Err(invalid(format!("sink '{}' has an output", node.name)))
                }
                _ => {}
            }
        }
        let order = self.topological_order()?;
        let parallelism: Vec<usize> = self
            .nodes
            .iter()
            .map(|n| n.parallelism.unwrap_or(shards).max(1))
            .collect();
        let mut schemas: Vec<Option<SchemaRef>> = vec![None; self.nodes.len()];
        let mut input_schemas: Vec<Option<SchemaRef>> = vec![None; self.nodes.len()];
        for &id in &order {
            let node = &self.nodes[id.0];
            let input = self.input_schema(id, &schemas, &input_schemas)?;
            let output = match (&node.kind, &input) {
                (NodeKind::Source { factory, watermark }, _) => {
                    let schema = factory.schema();
                    if let Some(strategy) = watermark {
                        crate::time::event_time_column(&schema, &strategy.column)
                            .map_err(|e| invalid(format!("source '{}': {e}", node.name)))?;
                    }
                    schema
                }
                (NodeKind::Operator(factory), Some(input)) => factory
                    .output_schema(input)
                    .map_err(|e| invalid(format!("operator '{}': {e}", node.name)))?,
                (NodeKind::Sink(_), Some(input)) => Arc::clone(input),
                _ => return Err(invalid(format!("'{}' has no input", node.name))),
            };
            input_schemas[id.0] = Some(input.unwrap_or_else(|| Arc::clone(&output)));
            schemas[id.0] = Some(output);
        }
        for edge in &self.edges {
            let from = &self.nodes[edge.from.0];
            let to = &self.nodes[edge.to.0];
            match &edge.exchange {
                Exchange::Forward if parallelism[edge.from.0] != parallelism[edge.to.0] => {
                    return Err(invalid(format!(
                        "forward edge '{}' -> '{}' joins parallelism {} to {}",
                        from.name, to.name, parallelism[edge.from.0], parallelism[edge.to.0]
                    )))
                }
                Exchange::Hash(keys) => {
                    let schema = edge_schema(edge, &schemas, &input_schemas);
                    for key in keys {
                        if schema.index_of(key).is_err() {
                            return Err(invalid(format!(
                                "key column '{key}' of edge '{}' -> '{}' is not in the schema ({})",
                                from.name,
                                to.name,
                                column_list(&schema)
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        let schemas: Vec<SchemaRef> = schemas
            .into_iter()
            .map(|s| s.expect("every node visited"))
            .collect();
        let input_schemas: Vec<SchemaRef> = input_schemas
            .into_iter()
            .map(|s| s.expect("every node visited"))
            .collect();
        let uids = self.uids(&order, &input_schemas);
        Ok(GraphInfo {
            order,
            schemas,
            input_schemas,
            parallelism,
            uids,
        })
    }

    /// Stable identities, as Flink's operator uids: a source or sink is its name (a SQL
    /// table's), an operator is `op-` and a hash of its logic, its input columns and, for each
    /// input edge in order, the upstream identity, output port and exchange. So an operator
    /// keeps its identity when statements are reordered or added and loses it when its logic
    /// or anything upstream changes; never does it come from the order of nodes. Operators
    /// that are identical in all of that (the same sub-plan twice) get `-2`, `-3`, ... in node
    /// order, which is harmless: their states are interchangeable. The suffix is not part of
    /// what downstream operators hash, so it never makes their identity depend on order.
    pub fn uids(&self, order: &[NodeId], input_schemas: &[SchemaRef]) -> Vec<String> {
        // Identity by content alone: equal for identical sub-plans.
        let mut content = vec![String::new(); self.nodes.len()];
        for &id in order {
            let node = &self.nodes[id.0];
            content[id.0] = match &node.kind {
                NodeKind::Source { .. } | NodeKind::Sink(_) => node.name.clone(),
                NodeKind::Operator(factory) => {
                    let mut logic = operator_logic(factory.as_ref(), &input_schemas[id.0]);
                    for edge in self.inputs(id) {
                        let _ = write!(
                            logic,
                            "\u{0}{}\u{0}{:?}\u{0}{:?}",
                            content[edge.from.0], edge.port, edge.exchange
                        );
                    }
                    format!("op-{:016x}", xxhash_rust::xxh3::xxh3_64(logic.as_bytes()))
                }
            };
        }
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        let mut uids = vec![String::new(); self.nodes.len()];
        for &id in order {
            let count = seen.entry(content[id.0].as_str()).or_insert(0);
            *count += 1;
            uids[id.0] = match *count {
                1 => content[id.0].clone(),
                n => format!("{}-{n}", content[id.0]),
            };
        }
        uids
    }

    fn input_schema(
        &self,
        id: NodeId,
        schemas: &[Option<SchemaRef>],
        input_schemas: &[Option<SchemaRef>],
    ) -> Result<Option<SchemaRef>, EngineError> {
        let mut input: Option<SchemaRef> = None;
        for edge in self.inputs(id) {
            let schema = edge_schema(edge, schemas, input_schemas);
            match &input {
                None => input = Some(schema),
                Some(existing) if existing.fields() != schema.fields() => {
                    return Err(EngineError::InvalidGraph(format!(
                        "inputs of '{}' have different schemas: ({}) and ({})",
                        self.nodes[id.0].name,
                        column_list(existing),
                        column_list(&schema)
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(input)
    }

    fn topological_order(&self) -> Result<Vec<NodeId>, EngineError> {
        let mut in_degree: Vec<usize> = vec![0; self.nodes.len()];
        for edge in &self.edges {
            in_degree[edge.to.0] += 1;
        }
        let mut ready: Vec<NodeId> = (0..self.nodes.len())
            .filter(|&i| in_degree[i] == 0)
            .map(NodeId)
            .collect();
        ready.reverse();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(id) = ready.pop() {
            order.push(id);
            for edge in self.outputs(id) {
                in_degree[edge.to.0] -= 1;
                if in_degree[edge.to.0] == 0 {
                    ready.push(edge.to);
                }
            }
        }
        if order.len() != self.nodes.len() {
            return Err(EngineError::InvalidGraph("the graph has a cycle".into()));
        }
        Ok(order)
    }

    /// The graph as text: one line per node with parallelism and watermark, then its edges.
    pub fn explain(&self, shards: usize) -> Result<String, EngineError> {
        let info = self.validate(shards)?;
        let mut out = String::new();
        for &id in &info.order {
            let node = &self.nodes[id.0];
            let (kind, what) = match &node.kind {
                NodeKind::Source { factory, .. } => ("source", factory.describe()),
                NodeKind::Operator(factory) => ("operator", factory.describe()),
                NodeKind::Sink(factory) => ("sink", factory.describe()),
            };
            let _ = writeln!(
                out,
                "{kind} {} [parallelism {}]: {what}",
                node.name, info.parallelism[id.0]
            );
            if let NodeKind::Source {
                watermark: Some(w), ..
            } = &node.kind
            {
                let _ = writeln!(
                    out,
                    "  watermark: {} - {:?} per split{}",
                    w.column,
                    w.max_out_of_orderness,
                    w.idle_timeout
                        .map(|t| format!(", idle after {t:?}"))
                        .unwrap_or_default()
                );
            }
            let _ = writeln!(out, "  schema: {}", column_list(&info.schemas[id.0]));
            for edge in self.outputs(id) {
                let exchange = match &edge.exchange {
                    Exchange::Forward => "forward".to_string(),
                    Exchange::Hash(keys) => format!("hash({})", keys.join(", ")),
                    Exchange::Broadcast => "broadcast".to_string(),
                    Exchange::Rebalance => "rebalance".to_string(),
                };
                let port = match edge.port {
                    OutputPort::Main => "",
                    OutputPort::Late => " (late rows)",
                };
                let _ = writeln!(
                    out,
                    "  -> {}{port} via {exchange}",
                    self.nodes[edge.to.0].name
                );
            }
        }
        Ok(out)
    }
}

/// Schema of the rows on `edge`: the main output of its source node, or for the late-row port
/// the source node's input schema.
fn edge_schema(
    edge: &Edge,
    schemas: &[Option<SchemaRef>],
    input_schemas: &[Option<SchemaRef>],
) -> SchemaRef {
    let schema = match edge.port {
        OutputPort::Main => &schemas[edge.from.0],
        OutputPort::Late => &input_schemas[edge.from.0],
    };
    Arc::clone(schema.as_ref().expect("upstream nodes are visited first"))
}

/// `name TYPE, ...` for messages.
/// What an operator does to its input, for its identity and for messages about state:
/// `describe() over (input columns)`.
pub fn operator_logic(factory: &dyn OperatorFactory, input: &SchemaRef) -> String {
    format!("{} over ({})", factory.describe(), column_list(input))
}

pub fn column_list(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}
