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

use crate::changelog::ChangelogMode;
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
    /// Which input of `to` the edge enters (an index into [`OperatorFactory::inputs`]; 0 for
    /// sinks and one-input operators). Several edges may enter one input (a union).
    pub input: usize,
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
    /// Input schemas per node, one per input (a source's: its output schema).
    pub input_schemas: Vec<Vec<SchemaRef>>,
    /// What kinds of rows each node's main output carries (a sink's: its input's).
    pub changelogs: Vec<ChangelogMode>,
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
            input: 0,
            exchange,
        });
    }

    /// Connects the main output of `from` to input `input` of `to` (0 is the first input; a
    /// join's inputs are 0 = left, 1 = right).
    pub fn connect_input(&mut self, from: NodeId, to: NodeId, input: usize, exchange: Exchange) {
        self.edges.push(Edge {
            from,
            to,
            port: OutputPort::Main,
            input,
            exchange,
        });
    }

    /// Names of the inputs of `node` (`["input"]` for sinks and one-input operators).
    pub fn input_names(&self, node: NodeId) -> &'static [&'static str] {
        match &self.nodes[node.0].kind {
            NodeKind::Operator(factory) => factory.inputs(),
            _ => crate::operator::SINGLE_INPUT,
        }
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
        let mut input_schemas: Vec<Vec<SchemaRef>> = vec![Vec::new(); self.nodes.len()];
        let mut changelogs: Vec<ChangelogMode> = vec![ChangelogMode::InsertOnly; self.nodes.len()];
        for &id in &order {
            let node = &self.nodes[id.0];
            let (inputs, modes) = self.node_inputs(id, &schemas, &input_schemas, &changelogs)?;
            let (output, mode) = match &node.kind {
                NodeKind::Source { factory, watermark } => {
                    let schema = factory.schema();
                    if let Some(strategy) = watermark {
                        crate::time::event_time_column(&schema, &strategy.column)
                            .map_err(|e| invalid(format!("source '{}': {e}", node.name)))?;
                    }
                    (schema, factory.changelog())
                }
                NodeKind::Operator(factory) => {
                    let error = |e| invalid(format!("operator '{}': {e}", node.name));
                    (
                        factory.output_schema(&inputs).map_err(error)?,
                        factory.output_changelog(&modes).map_err(error)?,
                    )
                }
                NodeKind::Sink(factory) => {
                    if !modes[0].is_insert_only() && !factory.accepts_changelog() {
                        return Err(invalid(format!(
                            "sink '{}' only appends rows, but its input is an updating result ({}); write it to a sink that takes a changelog (upsert-kafka, print) or make the query append-only",
                            node.name,
                            modes[0].describe()
                        )));
                    }
                    if factory.upserts() && modes[0] == ChangelogMode::All {
                        return Err(invalid(format!(
                            "sink '{}' writes upserts by its key, but its input is a changelog whose rows need not be unique by that key (a join's); write it to a sink that takes retractions (a 'kafka' table with 'debezium-json', print)",
                            node.name
                        )));
                    }
                    (Arc::clone(&inputs[0]), modes[0].clone())
                }
            };
            input_schemas[id.0] = if inputs.is_empty() {
                vec![Arc::clone(&output)]
            } else {
                inputs
            };
            schemas[id.0] = Some(output);
            changelogs[id.0] = mode;
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
                    let schema = self.edge_schema(edge, &schemas, &input_schemas)?;
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
        let uids = self.uids(&order, &input_schemas);
        Ok(GraphInfo {
            order,
            schemas,
            input_schemas,
            changelogs,
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
    pub fn uids(&self, order: &[NodeId], input_schemas: &[Vec<SchemaRef>]) -> Vec<String> {
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
                        if edge.input > 0 {
                            let _ = write!(logic, "\u{0}input {}", edge.input);
                        }
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

    /// Schema of the rows on `edge`: the main output of its source node, or for the late-row
    /// port what the operator says its late rows are ([`OperatorFactory::late_schema`]).
    fn edge_schema(
        &self,
        edge: &Edge,
        schemas: &[Option<SchemaRef>],
        input_schemas: &[Vec<SchemaRef>],
    ) -> Result<SchemaRef, EngineError> {
        let unknown = || {
            EngineError::InvalidGraph("an edge leaves a node whose schema is not known yet".into())
        };
        match (edge.port, &self.nodes[edge.from.0].kind) {
            (OutputPort::Late, NodeKind::Operator(factory)) => factory
                .late_schema(&input_schemas[edge.from.0])
                .map_err(|e| EngineError::InvalidGraph(e.to_string())),
            (OutputPort::Late, _) => input_schemas[edge.from.0]
                .first()
                .cloned()
                .ok_or_else(unknown),
            (OutputPort::Main, _) => schemas[edge.from.0].clone().ok_or_else(unknown),
        }
    }

    /// The schema and changelog mode of each input of `id` (all edges into one input must
    /// agree on the schema; modes of a union are combined). Empty for a source.
    #[allow(clippy::type_complexity)]
    fn node_inputs(
        &self,
        id: NodeId,
        schemas: &[Option<SchemaRef>],
        input_schemas: &[Vec<SchemaRef>],
        changelogs: &[ChangelogMode],
    ) -> Result<(Vec<SchemaRef>, Vec<ChangelogMode>), EngineError> {
        let name = &self.nodes[id.0].name;
        let invalid = |m: String| EngineError::InvalidGraph(m);
        if matches!(self.nodes[id.0].kind, NodeKind::Source { .. }) {
            return Ok((Vec::new(), Vec::new()));
        }
        let names = self.input_names(id);
        let mut inputs: Vec<Option<SchemaRef>> = vec![None; names.len()];
        let mut modes: Vec<ChangelogMode> = vec![ChangelogMode::InsertOnly; names.len()];
        for edge in self.inputs(id) {
            let Some(slot) = inputs.get_mut(edge.input) else {
                return Err(invalid(format!(
                    "an edge enters input {} of '{name}', which has {} input(s) ({})",
                    edge.input,
                    names.len(),
                    names.join(", ")
                )));
            };
            let schema = self.edge_schema(edge, schemas, input_schemas)?;
            match slot {
                None => *slot = Some(schema),
                Some(existing) if existing.fields() != schema.fields() => {
                    return Err(invalid(format!(
                        "edges into input '{}' of '{name}' have different schemas: ({}) and ({})",
                        names[edge.input],
                        column_list(existing),
                        column_list(&schema)
                    )))
                }
                Some(_) => {}
            }
            let mode = match edge.port {
                OutputPort::Main => &changelogs[edge.from.0],
                OutputPort::Late => &ChangelogMode::InsertOnly,
            };
            modes[edge.input] = modes[edge.input].union(mode);
        }
        let inputs = inputs
            .into_iter()
            .zip(names)
            .map(|(schema, input)| {
                schema
                    .ok_or_else(|| invalid(format!("input '{input}' of '{name}' is not connected")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((inputs, modes))
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
            if !info.changelogs[id.0].is_insert_only() {
                let _ = writeln!(out, "  output: {}", info.changelogs[id.0].describe());
            }
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
                let names = self.input_names(edge.to);
                let input = match names.len() {
                    1 => String::new(),
                    _ => format!(" ({} input)", names[edge.input]),
                };
                let _ = writeln!(
                    out,
                    "  -> {}{input}{port} via {exchange}",
                    self.nodes[edge.to.0].name
                );
            }
        }
        Ok(out)
    }
}

/// What an operator does to its inputs, for its identity and for messages about state:
/// `describe() over (input columns)[ and (second input's columns)...]`.
pub fn operator_logic(factory: &dyn OperatorFactory, inputs: &[SchemaRef]) -> String {
    let columns: Vec<String> = inputs
        .iter()
        .map(|s| format!("({})", column_list(s)))
        .collect();
    format!("{} over {}", factory.describe(), columns.join(" and "))
}

/// `name TYPE, ...` for messages.
pub fn column_list(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}
