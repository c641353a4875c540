//! DataFusion `LogicalPlan` -> Weir dataflow [`Graph`].
//!
//! Table scans become sources (with the table's watermark), projections and filters become
//! project and filter operators running DataFusion expressions, a window TVF followed by
//! `GROUP BY window_start, window_end, keys` becomes a window operator behind a hash exchange
//! on the keys, a `GROUP BY` without a window becomes an updating aggregation whose output is
//! a changelog (the engine's row-kind column last: `+I`, `-U`, `+U`, `-D`), `UNION ALL` joins streams into
//! one node, `VALUES` becomes an in-memory source.
//! What a stream cannot do yet is refused with a message naming the construct.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::ArrayRef;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::tree_node::TreeNode;
use datafusion_common::{Column, DFSchema, DFSchemaRef, ScalarValue};
use datafusion_expr::logical_plan::{Aggregate, Join, Projection, TableScan};
use datafusion_expr::utils::{conjunction, split_conjunction};
use datafusion_expr::{col, lit, Expr, LogicalPlan};
use datafusion_functions_aggregate::count::count_all;
use weir_connectors::memory::MemorySource;
use weir_connectors::registry;
use weir_engine::changelog::{has_row_kind, with_row_kind, ChangelogMode};
use weir_engine::graph::{Exchange, Graph, NodeId, OutputPort};
use weir_engine::operator::OperatorFactory;
use weir_engine::sink::SinkFactory;
use weir_engine::source::SourceFactory;
use weir_operators::filter::{FilterFactory, Predicate};
use weir_operators::join::interval::IntervalJoinFactory;
use weir_operators::join::lookup::LookupJoinFactory;
use weir_operators::join::regular::RegularJoinFactory;
use weir_operators::join::temporal::TemporalJoinFactory;
use weir_operators::join::window::WindowJoinFactory;
use weir_operators::join::{JoinSpec, JoinType};
use weir_operators::late::LateRowsFactory;
use weir_operators::normalize::ChangelogNormalizeFactory;
use weir_operators::over::{OverAggregateFactory, OverFrame};
use weir_operators::project::ProjectFactory;
use weir_operators::rank::{OrderKey, TopNFactory};
use weir_operators::updating::UpdatingAggregateFactory;
use weir_operators::window::assign::WindowAssignFactory;
use weir_operators::window::{
    WindowAggregateConfig, WindowAggregateFactory, WindowSpec, WINDOW_END, WINDOW_START,
};

use crate::catalog::{Table, TableRef};
use crate::error::{user, Result};
use crate::hints::{relation_name, StateTtlHints};
use crate::join::Origin;
use crate::names::{physical_names, resolve};
use crate::source::{ColumnSource, ComputedColumnsSource};
use crate::temporal::{temporal_right, TemporalTableNode};
use crate::window_tvf::{WindowTvfNode, WINDOW_TIME};

/// Job-wide settings the translation needs.
#[derive(Debug, Clone, Default)]
pub struct TranslateOptions {
    /// `table.exec.source.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `table.exec.state.ttl`: the state TTL of regular joins, updating aggregations and
    /// Top-N, unless a `STATE_TTL` hint sets one.
    pub state_ttl: Option<Duration>,
    /// `table.exec.late-rows.table`.
    pub late_rows: Option<LateRowsTable>,
    /// `table.exec.emit.early-fire.delay`, when `table.exec.emit.early-fire.enabled`.
    pub early_fire: Option<Duration>,
}

/// The table late rows go to (`table.exec.late-rows.table`): its sink and declared columns,
/// which must be `operator`, `watermark` and `row` (any order; see
/// `weir_operators::late::late_rows_schema`).
#[derive(Clone)]
pub struct LateRowsTable {
    /// The table's name.
    pub name: String,
    /// Its connector's sink.
    pub sink: Arc<dyn SinkFactory>,
    /// Its declared columns.
    pub schema: SchemaRef,
}

impl std::fmt::Debug for LateRowsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LateRowsTable({})", self.name)
    }
}

/// Builds one job's graph from any number of statements (a statement set).
pub struct GraphBuilder {
    pub graph: Graph,
    names: HashSet<String>,
    /// One source node per table, whichever statements read it (Flink's source reuse): its
    /// name, the table's, is also its identity in checkpoints. With whether it reads a
    /// changelog (the node is then the last step of reading, a normalization for upserts).
    sources: HashMap<String, (NodeId, bool)>,
    options: TranslateOptions,
    /// The columns a projection uses of the filter right under it, set while translating
    /// that filter (a Top-N leaves out its rank number when they do not include it).
    used_above_filter: Option<HashSet<String>>,
    /// The sink node of `table.exec.late-rows.table`, once an operator sends it rows.
    late_sink: Option<NodeId>,
    /// The `STATE_TTL` hints of the statement being translated, and the names a join or
    /// aggregation used.
    hints: StateTtlHints,
    hints_used: HashSet<String>,
}

/// The output of a translated plan node.
#[derive(Clone)]
struct Stream {
    node: NodeId,
    /// A changelog (with the engine's row-kind column) rather than appended rows.
    updating: bool,
    /// The columns that are time attributes (Flink's rowtime): a table's watermark column as
    /// long as it passes through unchanged. Interval joins need them.
    times: Vec<String>,
    /// The columns that are processing-time attributes (Flink's proctime): a `PROCTIME()`
    /// computed column or projection, as long as it passes through unchanged.
    proctimes: Vec<String>,
    /// The window properties of windowed rows (a window aggregation's, a window TVF's).
    /// Window joins need them.
    window: Option<WindowColumns>,
}

/// Flink's window properties: the `window_start` and `window_end` columns (under whatever
/// names projections give them) and which windows they are (`WindowSpec::describe`).
#[derive(Clone)]
struct WindowColumns {
    start: String,
    end: String,
    spec: String,
}

impl Stream {
    fn new(node: NodeId) -> Stream {
        Stream {
            node,
            updating: false,
            times: Vec::new(),
            proctimes: Vec::new(),
            window: None,
        }
    }

    /// The stream after a step that renames columns (`renames`: input name -> output names;
    /// columns not there are gone): time attributes and window columns follow their columns.
    fn renamed(&self, node: NodeId, renames: &HashMap<String, Vec<String>>) -> Stream {
        let follow = |name: &String| renames.get(name).cloned().unwrap_or_default();
        Stream {
            node,
            updating: self.updating,
            times: self.times.iter().flat_map(follow).collect(),
            proctimes: self.proctimes.iter().flat_map(follow).collect(),
            window: self.window.as_ref().and_then(|w| {
                Some(WindowColumns {
                    start: follow(&w.start).first()?.clone(),
                    end: follow(&w.end).first()?.clone(),
                    spec: w.spec.clone(),
                })
            }),
        }
    }
}

/// A window TVF's rows, waiting for their `GROUP BY window_start, window_end, ...`.
#[derive(Clone)]
struct Windowed {
    rows: Stream,
    /// Columns of `rows` (the TVF's input after row-wise steps), by name.
    columns: Vec<String>,
    spec: WindowSpec,
    time_column: String,
    partition_by: Vec<String>,
}

enum Flow {
    Rows(Stream),
    Windowed(Windowed),
}

/// `ORDER BY` keys as a Top-N's order keys; each must be a column of `schema` (`what` names
/// the construct in the message otherwise).
fn order_keys(
    sorts: &[datafusion_expr::SortExpr],
    schema: &DFSchema,
    what: &str,
) -> Result<Vec<OrderKey>> {
    sorts
        .iter()
        .map(|sort| match resolve(&sort.expr, schema) {
            Expr::Column(c) => Ok(OrderKey {
                column: c.name,
                descending: !sort.asc,
                nulls_first: sort.nulls_first,
            }),
            other => Err(unsupported(&format!(
                "{what} by an expression ({other}); project it into a column first"
            ))),
        })
        .collect()
}

/// The conjuncts of `join`'s condition: its equalities, its filter and `predicate` (a filter
/// over the join), without the keep-alive marker of `temporal`'s `AS OF` column (always true).
fn join_conjuncts(
    join: &Join,
    predicate: Option<&Expr>,
    temporal: Option<&TemporalTableNode>,
) -> Vec<Expr> {
    let mut conjuncts: Vec<Expr> = join
        .on
        .iter()
        .map(|(l, r)| l.clone().eq(r.clone()))
        .collect();
    for condition in join.filter.iter().chain(predicate) {
        conjuncts.extend(split_conjunction(condition).into_iter().cloned());
    }
    if let Some(node) = temporal {
        let marker = crate::temporal::as_of_marker(node, join.left.schema());
        conjuncts.retain(|c| Some(c) != marker.as_ref());
    }
    conjuncts
}

/// Whether `expr` is a call of `PROCTIME()` (a processing-time attribute).
fn is_proctime(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f) if f.func.name().eq_ignore_ascii_case("proctime"))
}

/// What a condition says about a rank column.
enum Bound {
    /// `rn <= n` (or `< n + 1`, `= 1`, `BETWEEN 1 AND n`).
    AtMost(u64),
    /// `rn >= 1` or `rn > 0`: always true.
    AtLeastOne,
    /// Anything else on the rank.
    Other,
}

/// The bound `conjunct` puts on the column `rank` (`None` if it does not mention it).
fn rank_bound(conjunct: &Expr, rank: &str) -> Option<Bound> {
    use datafusion_expr::{BinaryExpr, Operator};
    // Integers, and decimals without a fraction (the analyzer compares BIGINT UNSIGNED
    // with BIGINT as DECIMAL(20, 0)).
    let integral = |t: &arrow::datatypes::DataType| {
        use arrow::datatypes::DataType::{Decimal128, Decimal256};
        t.is_integer() || matches!(t, Decimal128(_, 0) | Decimal256(_, 0))
    };
    // The rank column, or the analyzer's cast of it to another integral type.
    let is_rank = |e: &Expr| match e {
        Expr::Column(c) => c.name == rank,
        Expr::Cast(cast) => {
            integral(cast.field.data_type())
                && matches!(cast.expr.as_ref(), Expr::Column(c) if c.name == rank)
        }
        _ => false,
    };
    // An integer literal (a fractional one is not a rank bound).
    let number = |e: &Expr| -> Option<i64> {
        let e = match e {
            Expr::Cast(c) => c.expr.as_ref(),
            e => e,
        };
        match e {
            Expr::Literal(value, _) if integral(&value.data_type()) => {
                match value.cast_to(&arrow::datatypes::DataType::Int64).ok()? {
                    ScalarValue::Int64(v) => v,
                    _ => None,
                }
            }
            _ => None,
        }
    };
    if !conjunct.column_refs().iter().any(|c| c.name == rank) {
        return None;
    }
    let bound = |op: Operator, n: i64| -> Bound {
        match op {
            Operator::LtEq if n >= 1 => Bound::AtMost(n as u64),
            Operator::Lt if n >= 2 => Bound::AtMost(n as u64 - 1),
            Operator::Eq if n == 1 => Bound::AtMost(1),
            Operator::GtEq if n <= 1 => Bound::AtLeastOne,
            Operator::Gt if n <= 0 => Bound::AtLeastOne,
            _ => Bound::Other,
        }
    };
    let flip = |op: Operator| match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    };
    Some(match conjunct {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            match (is_rank(left), number(right), is_rank(right), number(left)) {
                (true, Some(n), _, _) => bound(*op, n),
                (_, _, true, Some(n)) => bound(flip(*op), n),
                _ => Bound::Other,
            }
        }
        Expr::Between(b) if !b.negated && is_rank(&b.expr) => {
            match (number(&b.low), number(&b.high)) {
                (Some(low), Some(high)) if low <= 1 && high >= 1 => Bound::AtMost(high as u64),
                _ => Bound::Other,
            }
        }
        _ => Bound::Other,
    })
}

/// The table's `scan.watermark.alignment.*` options (Flink's): a group needs a maximum drift,
/// and both need a watermark.
fn watermark_alignment(table: &Table) -> Result<Option<weir_engine::time::WatermarkAlignment>> {
    let option = |key: &str| table.spec.options.get(key).map(|v| v.trim().to_string());
    let duration = |key: &str| -> Result<Option<Duration>> {
        option(key)
            .map(|text| {
                weir_connectors::options::parse_duration(&text).ok_or_else(|| {
                    user(format!(
                        "'{key}' of table '{}' is a duration such as '1s', not '{text}'",
                        table.spec.name
                    ))
                })
            })
            .transpose()
    };
    let group = option("scan.watermark.alignment.group");
    let max_drift = duration("scan.watermark.alignment.max-drift")?;
    let update_interval = duration("scan.watermark.alignment.update-interval")?;
    match (group, max_drift) {
        (None, None) if update_interval.is_none() => Ok(None),
        _ if update_interval.is_some_and(|i| i.is_zero()) => Err(user(format!(
            "'scan.watermark.alignment.update-interval' of table '{}' must be positive",
            table.spec.name
        ))),
        (Some(group), Some(max_drift)) if table.watermark.is_some() => {
            Ok(Some(weir_engine::time::WatermarkAlignment {
                group,
                max_drift,
                update_interval: update_interval.unwrap_or(Duration::from_secs(1)),
            }))
        }
        (Some(_), Some(_)) => Err(user(format!(
            "table '{}' aligns watermarks but declares none",
            table.spec.name
        ))
        .hint("declare WATERMARK FOR <time column> AS ... on the table")),
        _ => Err(user(format!(
            "watermark alignment of table '{}' needs both 'scan.watermark.alignment.group' and 'scan.watermark.alignment.max-drift'",
            table.spec.name
        ))),
    }
}

/// The table a versioned table's plan reads (`None` for a view or subquery).
fn versioned_table(plan: &LogicalPlan) -> Option<Arc<Table>> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let source: &dyn std::any::Any = scan.source.as_ref();
            source
                .downcast_ref::<TableRef>()
                .map(|t| Arc::clone(&t.table))
        }
        LogicalPlan::SubqueryAlias(alias) => versioned_table(&alias.input),
        _ => None,
    }
}

fn unsupported(what: &str) -> crate::error::UserError {
    user(format!("{what} is not supported yet"))
}

/// `expr` named `name` (replacing an alias it has).
fn named(mut expr: Expr, name: &str) -> Expr {
    while let Expr::Alias(alias) = expr {
        expr = *alias.expr;
    }
    expr.alias(name)
}

fn is_window_column(name: &str) -> bool {
    name == WINDOW_START || name == WINDOW_END || name == WINDOW_TIME
}

/// Whether `projection` computes with a window column (rather than passing it through).
fn computes_on_windows(projection: &Projection) -> bool {
    projection
        .expr
        .iter()
        .zip(projection.schema.fields())
        .any(|(expr, field)| {
            let expr = resolve(expr, projection.input.schema());
            let passthrough = matches!(&expr, Expr::Column(c) if c.name == *field.name());
            !passthrough && column_refs(&expr).iter().any(|c| is_window_column(c))
        })
}

fn column_refs(expr: &Expr) -> Vec<String> {
    expr.column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .collect()
}

impl GraphBuilder {
    pub fn new(options: TranslateOptions) -> Self {
        GraphBuilder {
            graph: Graph::new(),
            names: HashSet::new(),
            sources: HashMap::new(),
            options,
            used_above_filter: None,
            late_sink: None,
            hints: StateTtlHints::default(),
            hints_used: HashSet::new(),
        }
    }

    /// The state TTL of a regular join's or an updating aggregation's `input`: its
    /// `STATE_TTL` hint if it is a relation the statement hints, else `table.exec.state.ttl`.
    fn state_ttl_of(&mut self, input: &LogicalPlan) -> Option<Duration> {
        let hinted = relation_name(input).and_then(|name| {
            let ttl = self.hints.get(name)?;
            self.hints_used.insert(name.to_string());
            Some(ttl)
        });
        hinted.or(self.options.state_ttl)
    }

    /// With `table.exec.late-rows.table` set: the rows operator `node` drops as late go to
    /// that table, as (operator, watermark, row as JSON) ([`LateRowsFactory`]; `encoded`: the
    /// operator emits them so already, as a window join does for its two inputs), projected
    /// onto the table's columns by name.
    fn late_rows_of(&mut self, node: NodeId, encoded: bool) -> Result<()> {
        let Some(table) = self.options.late_rows.clone() else {
            return Ok(());
        };
        let produced = weir_operators::late::late_rows_schema();
        let mut exprs = Vec::new();
        for field in table.schema.fields() {
            if produced.index_of(field.name()).is_err() {
                return Err(user(format!(
                    "the late-rows table '{}' has a column '{}'; it takes operator STRING, watermark TIMESTAMP(3) and row STRING",
                    table.name,
                    field.name()
                )));
            }
            exprs.push(
                Expr::Cast(datafusion_expr::expr::Cast::new(
                    Box::new(col(Column::new_unqualified(field.name()))),
                    field.data_type().clone(),
                ))
                .alias(field.name()),
            );
        }
        let sink = match self.late_sink {
            Some(sink) => sink,
            None => {
                let name = self.name(&format!("sink-{}", table.name));
                let sink = self.graph.add_sink(name, Arc::clone(&table.sink));
                *self.late_sink.insert(sink)
            }
        };
        let name = self.name(&format!("late-rows-{}", table.name));
        let project = self
            .graph
            .add_operator(name, Arc::new(ProjectFactory::new(exprs)));
        if encoded {
            self.graph
                .connect_port(node, OutputPort::Late, project, Exchange::Rebalance);
        } else {
            let operator = self.graph.nodes[node.0].name.clone();
            let name = self.name(&format!("late-rows-{operator}"));
            let encode = self
                .graph
                .add_operator(name, Arc::new(LateRowsFactory::new(operator)));
            if let Some(parallelism) = self.graph.nodes[node.0].parallelism {
                self.graph.set_parallelism(encode, parallelism);
            }
            self.graph
                .connect_port(node, OutputPort::Late, encode, Exchange::Forward);
            self.graph.connect(encode, project, Exchange::Rebalance);
        }
        self.graph.connect(project, sink, Exchange::Forward);
        Ok(())
    }

    fn name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}-{i}");
            i += 1;
        }
        name
    }

    fn operator(
        &mut self,
        base: &str,
        factory: Arc<dyn OperatorFactory>,
        input: &Stream,
        exchange: Exchange,
    ) -> Stream {
        let name = self.name(base);
        let node = self.graph.add_operator(name, factory);
        self.graph.connect(input.node, node, exchange);
        Stream {
            node,
            updating: input.updating,
            times: input.times.clone(),
            proctimes: input.proctimes.clone(),
            window: input.window.clone(),
        }
    }

    /// Adds `plan`'s rows to the graph, ending in `sink`; `hints` are the statement's
    /// `STATE_TTL` hints, each of which must name an input of a join or aggregation.
    pub fn sink(
        &mut self,
        plan: &LogicalPlan,
        hints: &StateTtlHints,
        name: &str,
        sink: Arc<dyn SinkFactory>,
        columns: Option<&SchemaRef>,
    ) -> Result<()> {
        self.hints = hints.clone();
        self.hints_used.clear();
        let mut stream = self.rows(plan)?;
        let unused: Vec<&str> = (self.hints.names())
            .filter(|name| !self.hints_used.contains(*name))
            .collect();
        if !unused.is_empty() {
            return Err(user(format!(
                "STATE_TTL names {}, which no regular join or GROUP BY aggregation reads",
                unused.join(", ")
            ))
            .hint("the hint sets the state TTL of regular joins and GROUP BY aggregations by the name of their input, as Flink's; windows and interval joins free their state by the watermark"));
        }
        if stream.updating && !sink.accepts_changelog() {
            return Err(user(format!(
                "'{name}' cannot take an updating result (the changelog of a GROUP BY without a window): its connector only appends rows"
            ))
            .hint("write it to an 'upsert-kafka' table with a PRIMARY KEY, a 'kafka' table with 'value.format' = 'debezium-json', or a 'print' or 'blackhole' table; or group by a window TVF for final, append-only rows"));
        }
        if let Some(columns) = columns {
            // Only the connector's columns go to a table sink, cast to its types.
            let exprs = columns
                .fields()
                .iter()
                .map(|f| {
                    Expr::Cast(datafusion_expr::Cast::new(
                        Box::new(col(Column::new_unqualified(f.name()))),
                        f.data_type().clone(),
                    ))
                    .alias(f.name())
                })
                .collect();
            stream = self.operator(
                "sink-columns",
                Arc::new(ProjectFactory::new(exprs)),
                &stream,
                Exchange::Forward,
            );
        }
        let sink_name = self.name(&format!("sink-{name}"));
        let node = self.graph.add_sink(sink_name, sink);
        self.graph.connect(stream.node, node, Exchange::Forward);
        Ok(())
    }

    fn rows(&mut self, plan: &LogicalPlan) -> Result<Stream> {
        match self.translate(plan)? {
            Flow::Rows(stream) => Ok(stream),
            Flow::Windowed(windowed) => self.window_rows(windowed, plan.schema()),
        }
    }

    /// A window TVF's rows as a stream of their own (each row once per window, with
    /// `window_start`, `window_end` and `window_time`), in the columns of `schema`, the plan
    /// node they are the rows of.
    fn window_rows(&mut self, windowed: Windowed, schema: &DFSchema) -> Result<Stream> {
        if let WindowSpec::Session { .. } = windowed.spec {
            return Err(unsupported(
                "the rows of a SESSION window TVF other than through its GROUP BY window_start, window_end (a join, a sink, or a filter or expression on its window columns)",
            ));
        }
        if windowed.rows.proctimes.contains(&windowed.time_column) {
            return Err(unsupported(
                "the rows of a window TVF on processing time other than through its GROUP BY window_start, window_end",
            ));
        }
        let factory = WindowAssignFactory::new(windowed.spec, &windowed.time_column)
            .map_err(|e| user(e.to_string()))?;
        let mut assigned = self.operator(
            "window-assign",
            Arc::new(factory),
            &windowed.rows,
            Exchange::Forward,
        );
        // window_time is the rows' time attribute (the TVF's time column becomes a plain
        // timestamp, as in Flink), window_start and window_end their window.
        assigned.times = match windowed.rows.times.contains(&windowed.time_column) {
            true => vec![WINDOW_TIME.to_string()],
            false => Vec::new(),
        };
        assigned.window = Some(WindowColumns {
            start: WINDOW_START.to_string(),
            end: WINDOW_END.to_string(),
            spec: windowed.spec.describe(),
        });
        let names = physical_names(schema);
        let mut produced = windowed.columns.clone();
        produced.extend([WINDOW_START, WINDOW_END, WINDOW_TIME].map(String::from));
        if names == produced {
            return Ok(assigned);
        }
        // The plan's columns in its order (the window needed columns the query may not).
        let renames = names.iter().map(|n| (n.clone(), vec![n.clone()])).collect();
        let columns = names
            .iter()
            .map(|n| col(Column::new_unqualified(n)))
            .collect();
        let node = self.operator(
            "window-rows",
            Arc::new(ProjectFactory::new(columns)),
            &assigned,
            Exchange::Forward,
        );
        Ok(assigned.renamed(node.node, &renames))
    }

    fn translate(&mut self, plan: &LogicalPlan) -> Result<Flow> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan).map(Flow::Rows),
            LogicalPlan::SubqueryAlias(alias) => self.translate(&alias.input),
            LogicalPlan::Projection(projection) => self.projection(projection),
            LogicalPlan::Filter(filter) => {
                let subquery = filter.predicate.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_)
                    ))
                });
                if subquery.unwrap_or(false) {
                    return Err(unsupported(
                        "this subquery in WHERE (a scalar subquery, or one that is not a plain IN or EXISTS)",
                    )
                    .hint("write it as a JOIN"));
                }
                if let Some(stream) = self.top_n(filter)? {
                    return Ok(Flow::Rows(stream));
                }
                // `FROM a, b WHERE ...` or `JOIN ... WHERE` (under the optimizer's column
                // pruning): one condition, as Flink.
                let (pruning, under) = match filter.input.as_ref() {
                    LogicalPlan::Projection(p)
                        if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
                    {
                        (Some(p), p.input.as_ref())
                    }
                    other => (None, other),
                };
                if let LogicalPlan::Join(join) = under {
                    if join.join_type == datafusion_expr::JoinType::Inner {
                        let joined = self.join(join, Some(&filter.predicate))?;
                        return Ok(Flow::Rows(match pruning {
                            Some(p) => self.project(&joined, &p.expr, p.input.schema(), &p.schema),
                            None => joined,
                        }));
                    }
                }
                let predicate = resolve(&filter.predicate, filter.input.schema());
                match self.translate(&filter.input)? {
                    Flow::Rows(input) => Ok(Flow::Rows(self.filter(&input, predicate))),
                    Flow::Windowed(mut windowed) => {
                        if column_refs(&predicate).iter().any(|c| is_window_column(c)) {
                            // A condition on the windows: the TVF's rows, filtered.
                            let rows = self.window_rows(windowed, filter.input.schema())?;
                            return Ok(Flow::Rows(self.filter(&rows, predicate)));
                        }
                        windowed.rows = self.filter(&windowed.rows, predicate);
                        Ok(Flow::Windowed(windowed))
                    }
                }
            }
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate).map(Flow::Rows),
            LogicalPlan::Window(window) => self.over(window).map(Flow::Rows),
            LogicalPlan::Extension(extension) => {
                if let Some(node) = extension.node.as_any().downcast_ref::<TemporalTableNode>() {
                    return Err(user(format!(
                        "FOR SYSTEM_TIME AS OF {} reads a versioned table as the right side of a JOIN, and only there",
                        node.as_of.join(".")
                    ))
                    .hint("FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency"));
                }
                let Some(tvf) = extension.node.as_any().downcast_ref::<WindowTvfNode>() else {
                    return Err(unsupported(&format!("plan node {}", extension.node.name())));
                };
                let rows = self.rows(&tvf.input)?;
                if rows.updating {
                    return Err(unsupported(&format!(
                        "{} windows over an updating input (the result of a GROUP BY without a window)",
                        tvf.kind.name()
                    )));
                }
                Ok(Flow::Windowed(Windowed {
                    rows,
                    columns: tvf
                        .input
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect(),
                    spec: tvf.spec(),
                    time_column: tvf.time_column.clone(),
                    partition_by: tvf.partition_by.clone(),
                }))
            }
            LogicalPlan::Union(union) => {
                let names: Vec<String> = union
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let factory = Arc::new(ProjectFactory::new(
                    names
                        .iter()
                        .map(|n| col(Column::new_unqualified(n)))
                        .collect(),
                ));
                let node_name = self.name("union");
                let node = self.graph.add_operator(node_name, factory);
                let streams = union
                    .inputs
                    .iter()
                    .map(|input| self.rows(input))
                    .collect::<Result<Vec<_>>>()?;
                // With an updating input the union is a changelog: appended rows become +I.
                let updating = streams.iter().any(|s| s.updating);
                for (input, stream) in union.inputs.iter().zip(streams) {
                    // Inputs take the union's column names and types.
                    let exprs = input
                        .schema()
                        .fields()
                        .iter()
                        .zip(union.schema.fields())
                        .map(|(from, to)| {
                            let column = col(Column::new_unqualified(from.name()));
                            let column = if from.data_type() == to.data_type() {
                                column
                            } else {
                                Expr::Cast(datafusion_expr::Cast::new(
                                    Box::new(column),
                                    to.data_type().clone(),
                                ))
                            };
                            column.alias(to.name())
                        })
                        .collect();
                    let project = match updating {
                        true => ProjectFactory::new(exprs).as_changelog(),
                        false => ProjectFactory::new(exprs),
                    };
                    let renamed =
                        self.operator("union-input", Arc::new(project), &stream, Exchange::Forward);
                    self.graph.connect(renamed.node, node, Exchange::Forward);
                }
                let mut stream = Stream::new(node);
                stream.updating = updating;
                Ok(Flow::Rows(stream))
            }
            LogicalPlan::Values(values) => {
                self.values(&values.values, &values.schema).map(Flow::Rows)
            }
            LogicalPlan::EmptyRelation(empty) => {
                // `SELECT 1`: one row of a placeholder column the projection above ignores.
                let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
                    "__row",
                    arrow::datatypes::DataType::Int32,
                    true,
                )]));
                let rows =
                    arrow::array::Int32Array::from(vec![1; usize::from(empty.produce_one_row)]);
                let batch = RecordBatch::try_new(SchemaRef::clone(&schema), vec![Arc::new(rows)])
                    .map_err(|e| user(e.to_string()))?;
                self.memory(schema, batch).map(Flow::Rows)
            }
            LogicalPlan::Join(join) => self.join(join, None).map(Flow::Rows),
            LogicalPlan::Sort(_) => Err(unsupported("ORDER BY without LIMIT on a stream").hint(
                "ORDER BY ... LIMIT n keeps the first n rows; or sort the output where it is read",
            )),
            LogicalPlan::Limit(limit) => self.sorted_limit(limit).map(Flow::Rows),
            // SELECT DISTINCT: a GROUP BY of every column without aggregates (as Flink plans it),
            // an updating result whose rows are each distinct row once.
            LogicalPlan::Distinct(datafusion_expr::logical_plan::Distinct::All(input)) => {
                let group = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let aggregate = Aggregate::try_new(Arc::clone(input), group, Vec::new())
                    .map_err(|e| user(e.to_string()))?;
                self.aggregate(&aggregate).map(Flow::Rows)
            }
            LogicalPlan::Distinct(_) => Err(unsupported("SELECT DISTINCT ON")),
            other => Err(unsupported(&format!("'{}'", other.display()))),
        }
    }

    /// A join of `join`'s inputs (with `predicate`, a `WHERE` over an inner join, as part of
    /// its condition): each input renamed to the join's stream names (computed keys added as
    /// `$key<i>`) and hashed on its keys into an interval join, when the condition bounds the
    /// two sides' time attributes from both sides and both inputs are append-only, or else a
    /// regular join; a join without equality keys runs on one subtask, as Flink's.
    fn join(&mut self, join: &Join, predicate: Option<&Expr>) -> Result<Stream> {
        use datafusion_expr::JoinType as Df;
        let join_type =
            match join.join_type {
                Df::Inner => JoinType::Inner,
                Df::Left => JoinType::Left,
                Df::Right => JoinType::Right,
                Df::Full => JoinType::Full,
                Df::LeftSemi => JoinType::Semi,
                Df::LeftAnti if join.null_aware => return Err(unsupported(
                    "NOT IN (subquery) (a NULL-aware anti join)",
                )
                .hint("write NOT EXISTS (SELECT ... WHERE ...), which has no NULL special case")),
                Df::LeftAnti => JoinType::Anti,
                other => return Err(unsupported(&format!("{other} JOIN"))),
            };
        // A versioned table read AS OF: its whole rows (the join needs its time and key
        // columns, which the query may not select), named as the join's right input.
        let temporal = temporal_right(&join.right);
        let right_plan = temporal.as_ref().map(|(_, plan)| plan);
        let left = self.rows(&join.left)?;
        if let Some((node, plan)) = &temporal {
            let as_of = crate::temporal::as_of_column(node)
                .and_then(|c| join.left.schema().maybe_index_of_column(&c))
                .map(|i| physical_names(join.left.schema())[i].clone());
            if as_of.is_some_and(|c| left.proctimes.contains(&c)) {
                return self.lookup_join(join, node, plan, left, join_type, predicate);
            }
        }
        let right = match &temporal {
            Some((node, _)) => self.rows(&node.input)?,
            None => self.rows(&join.right)?,
        };
        let (left_schema, right_schema) = (
            join.left.schema(),
            right_plan.map_or(join.right.schema(), |p| p.schema()),
        );
        let conjuncts = join_conjuncts(join, predicate, temporal.as_ref().map(|(n, _)| n));
        let condition = crate::join::analyze(
            conjuncts,
            left_schema,
            right_schema,
            &left.times,
            &right.times,
        );
        // Conditions on one input alone are evaluated before the join where that keeps its
        // result (Flink pushes them down too): then the join keeps only rows that can match.
        // Not into a versioned table (filtering versions changes which is valid when).
        let (push_left, push_right) = match join_type {
            JoinType::Inner => (true, temporal.is_none()),
            JoinType::Semi => (true, true),
            JoinType::Anti => (false, true),
            JoinType::Left => (false, temporal.is_none()),
            JoinType::Right => (true, false),
            JoinType::Full => (false, false),
        };
        let (mut left_only, mut right_only, mut residual) = (Vec::new(), Vec::new(), Vec::new());
        for conjunct in condition.residual {
            match crate::join::origin(&conjunct, left_schema, right_schema) {
                Origin::Left if push_left => left_only.push(conjunct),
                Origin::Right if push_right => right_only.push(conjunct),
                _ => residual.push(conjunct),
            }
        }
        let left = match conjunction(left_only) {
            Some(predicate) => self.filter(&left, resolve(&predicate, left_schema)),
            None => left,
        };
        let right = match conjunction(right_only) {
            Some(predicate) => self.filter(&right, resolve(&predicate, right_schema)),
            None => right,
        };
        // Both inputs' columns (a semi or anti join outputs the left ones only).
        let both = left_schema
            .join(right_schema)
            .map_err(|e| user(e.to_string()))?;
        let names = physical_names(&both);
        let (left_names, right_names) = names.split_at(left_schema.fields().len());
        let (left_keys, right_keys): (Vec<&Expr>, Vec<&Expr>) =
            condition.keys.iter().map(|(l, r)| (l, r)).unzip();
        let (left_in, left_keys, computed_left) =
            self.join_input(&left, left_schema, left_names, &left_keys, "$lkey")?;
        let (right_in, right_keys, computed_right) =
            self.join_input(&right, right_schema, right_names, &right_keys, "$rkey")?;
        let spec = JoinSpec {
            join_type,
            left_keys: left_keys.clone(),
            right_keys: right_keys.clone(),
            filter: conjunction(residual).map(|e| resolve(&e, &both)),
        };
        let renamed = |name: &String, own: &DFSchema, to: &[String]| -> Result<String> {
            let position = physical_names(own).iter().position(|n| n == name);
            position.map(|p| to[p].clone()).ok_or_else(|| {
                user(format!(
                    "column '{name}' is not a column of the join's input"
                ))
            })
        };
        let append_only = !left.updating && !right.updating;
        // Keys that are plain columns, by their inputs' names, to spot the window columns.
        let key_columns: Vec<(String, String)> = condition
            .keys
            .iter()
            .filter_map(
                |(l, r)| match (resolve(l, left_schema), resolve(r, right_schema)) {
                    (Expr::Column(l), Expr::Column(r)) => Some((l.name, r.name)),
                    _ => None,
                },
            )
            .collect();
        // Windows of one kind joined on both window columns: a window join. Windows of
        // different kinds make a regular join (as Flink plans them).
        let windows = match (&left.window, &right.window) {
            (Some(l), Some(r))
                if append_only
                    && l.spec == r.spec
                    && key_columns.contains(&(l.start.clone(), r.start.clone()))
                    && key_columns.contains(&(l.end.clone(), r.end.clone())) =>
            {
                Some((l.end.clone(), r.end.clone()))
            }
            _ => None,
        };
        // A side an outer join pads has NULL times and windows: they stop being attributes.
        let keeps_left = !join_type.keeps_unmatched(weir_operators::join::Side::Right);
        let keeps_right = !join_type.keeps_unmatched(weir_operators::join::Side::Left);
        let interval = condition.interval.filter(|b| {
            append_only && !join_type.is_semi_or_anti() && windows.is_none() && b.lower <= b.upper
        });
        let (factory, base, times, window): (Arc<dyn OperatorFactory>, &str, _, _) =
            match (temporal.as_ref(), interval, windows) {
                (Some((node, _)), _, _) => {
                    let [left_time, right_time] =
                        self.temporal_times(node, join_type, &key_columns, &left, left_schema)?;
                    let left_time = renamed(&left_time, left_schema, left_names)?;
                    let right_time = renamed(&right_time, right_schema, right_names)?;
                    let factory = TemporalJoinFactory::new(spec, left_time.clone(), right_time)
                        .map_err(|e| user(e.to_string()))?;
                    (
                        Arc::new(factory) as _,
                        "temporal-join",
                        vec![left_time],
                        None,
                    )
                }
                (None, _, Some((left_end, right_end))) => {
                    // Both inputs are windowed the same way and joined on their windows.
                    let factory = WindowJoinFactory::new(
                        spec,
                        renamed(&left_end, left_schema, left_names)?,
                        renamed(&right_end, right_schema, right_names)?,
                    );
                    let window = match left.window.as_ref().filter(|_| keeps_left) {
                        Some(w) => Some(WindowColumns {
                            start: renamed(&w.start, left_schema, left_names)?,
                            end: renamed(&w.end, left_schema, left_names)?,
                            spec: w.spec.clone(),
                        }),
                        None => None,
                    };
                    (Arc::new(factory) as _, "window-join", Vec::new(), window)
                }
                (None, Some(bounds), None) => {
                    let left_time = renamed(&bounds.left, left_schema, left_names)?;
                    let right_time = renamed(&bounds.right, right_schema, right_names)?;
                    let times = [(keeps_left, &left_time), (keeps_right, &right_time)]
                        .into_iter()
                        .filter(|(kept, _)| *kept)
                        .map(|(_, t)| t.clone())
                        .collect();
                    let factory = IntervalJoinFactory::new(
                        spec,
                        left_time,
                        right_time,
                        bounds.lower,
                        bounds.upper,
                    )
                    .map_err(|e| user(e.to_string()))?;
                    (Arc::new(factory) as _, "interval-join", times, None)
                }
                // Bounds that admit no pair included: the residual decides, nothing matches.
                (None, None, None) => {
                    let factory = RegularJoinFactory::new(spec).with_state_ttls([
                        self.state_ttl_of(&join.left),
                        self.state_ttl_of(&join.right),
                    ]);
                    (Arc::new(factory) as _, "join", Vec::new(), None)
                }
            };
        let name = self.name(base);
        let node = self.graph.add_operator(name, factory);
        self.graph
            .connect_input(left_in.node, node, 0, Exchange::Hash(left_keys.clone()));
        if base == "window-join" {
            // Its late rows, of either input, come out as late-rows rows already.
            self.late_rows_of(node, true)?;
        }
        self.graph
            .connect_input(right_in.node, node, 1, Exchange::Hash(right_keys));
        // An interval join is append-only; a regular join unless inner or semi over
        // append-only inputs.
        let updating = match base {
            "join" => !(matches!(join_type, JoinType::Inner | JoinType::Semi) && append_only),
            "temporal-join" => left.updating,
            _ => false,
        };
        let mut output = Stream {
            node,
            updating,
            times,
            proctimes: Vec::new(),
            window,
        };
        // The join's columns, in order (without computed keys, and without the versioned
        // table's columns the query does not use).
        let output_names: Vec<String> = match right_plan {
            Some(_) => {
                let mut output = left_names.to_vec();
                for (qualifier, field) in join.right.schema().iter() {
                    let column = Column::new(qualifier.cloned(), field.name());
                    let index = right_schema
                        .index_of_column(&column)
                        .map_err(|e| user(e.to_string()))?;
                    output.push(right_names[index].clone());
                }
                output
            }
            None => names[..join.schema.fields().len()].to_vec(),
        };
        let pruned = output_names.len() < names.len() && temporal.is_some();
        // Named as the plan names the join's columns (which, once the versioned table's
        // columns are pruned, may number repeated names differently).
        let columns: Vec<Expr> = output_names
            .iter()
            .zip(physical_names(&join.schema))
            .map(|(n, out)| match *n == out {
                true => col(Column::new_unqualified(n)),
                false => col(Column::new_unqualified(n)).alias(out),
            })
            .collect();
        if left_keys.is_empty() {
            // No equality key: one subtask, as Flink's; its rows are then spread again, each
            // row's changes to one subtask when they are a changelog.
            self.graph.set_parallelism(node, 1);
            let spread = match updating {
                true => Exchange::Hash(output_names.clone()),
                false => Exchange::Rebalance,
            };
            output = self.operator(
                "join-spread",
                Arc::new(ProjectFactory::new(columns)),
                &output,
                spread,
            );
        } else if computed_left || computed_right || pruned {
            output = self.operator(
                "join-columns",
                Arc::new(ProjectFactory::new(columns)),
                &output,
                Exchange::Forward,
            );
        }
        Ok(output)
    }

    /// `WHERE rn <= N` (or `rn < N`, `rn = 1`, `rn BETWEEN 1 AND N`) over `ROW_NUMBER() OVER
    /// (PARTITION BY .. ORDER BY ..) AS rn`: a Top-N, as Flink plans it (a deduplication
    /// when N = 1 and the order is a time attribute). `None` when `filter` is not one. The
    /// projections between the filter and the window are applied over the Top-N's rows, and
    /// the filter's other conditions after it.
    fn top_n(&mut self, filter: &datafusion_expr::logical_plan::Filter) -> Result<Option<Stream>> {
        // What the projection above uses: for this filter only.
        let used_above = self.used_above_filter.take();
        // Down to the window, through aliases and projections.
        let mut chain: Vec<&Projection> = Vec::new();
        let mut plan = filter.input.as_ref();
        let window = loop {
            match plan {
                LogicalPlan::SubqueryAlias(alias) => plan = &alias.input,
                LogicalPlan::Projection(projection) => {
                    chain.push(projection);
                    plan = &projection.input;
                }
                LogicalPlan::Window(window) => break window,
                _ => return Ok(None),
            }
        };
        let [Expr::WindowFunction(function)] = window.window_expr.as_slice() else {
            return Ok(None);
        };
        if !function.fun.name().eq_ignore_ascii_case("row_number") {
            return Ok(None);
        }
        // The rank column, followed up from the window to the filter's input (its name at
        // the output of each projection, bottom up).
        let window_names = physical_names(&window.schema);
        let mut rank = window_names.last().cloned().unwrap_or_default();
        let mut rank_names = Vec::new();
        for projection in chain.iter().rev() {
            let next = projection
                .expr
                .iter()
                .zip(physical_names(&projection.schema))
                .find(|(e, _)| {
                    matches!(resolve(e, projection.input.schema()).unalias(), Expr::Column(c) if c.name == rank)
                })
                .map(|(_, name)| name);
            match next {
                Some(name) => rank = name,
                None => return Ok(None),
            }
            rank_names.push(rank.clone());
        }
        // The bound on the rank; other conditions filter the Top-N's rows.
        let predicate = resolve(&filter.predicate, filter.input.schema());
        let mut limit: Option<u64> = None;
        let mut rest = Vec::new();
        for conjunct in split_conjunction(&predicate) {
            match rank_bound(conjunct, &rank) {
                Some(Bound::AtMost(n)) => limit = Some(limit.map_or(n, |l| l.min(n))),
                Some(Bound::AtLeastOne) => {}
                Some(Bound::Other) => {
                    return Err(unsupported(
                        "a Top-N whose ranks do not start at 1 (a lower bound on ROW_NUMBER above 1, or a comparison it cannot be read as)",
                    ))
                }
                None => rest.push(conjunct.clone()),
            }
        }
        let Some(limit) = limit.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let params = &function.params;
        let input_schema = window.input.schema();
        let column_of = |expr: &Expr, what: &str| match resolve(expr, input_schema) {
            Expr::Column(c) => Ok(c.name),
            other => Err(unsupported(&format!(
                "a Top-N {what} by an expression ({other}); project it into a column first"
            ))),
        };
        let partition_by = params
            .partition_by
            .iter()
            .map(|e| column_of(e, "partitioned"))
            .collect::<Result<Vec<_>>>()?;
        let order_by = order_keys(&params.order_by, input_schema, "a Top-N ordered")?;
        if order_by.is_empty() {
            return Err(user("ROW_NUMBER() OVER (...) of a Top-N needs an ORDER BY")
                .hint("ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC)"));
        }
        let input = self.rows(&window.input)?;
        // Partitioned by its rows' windows: a window Top-N, append-only at each window's end.
        let window = input
            .window
            .clone()
            .filter(|w| partition_by.contains(&w.start) && partition_by.contains(&w.end));
        // The rank number comes out only if the query uses it (Flink's outputRankNumber):
        // otherwise a row entering the top N is +I and the one it pushes out -D.
        let rest_uses_rank = rest.iter().any(|c| column_refs(c).contains(&rank));
        let ranked = rest_uses_rank || used_above.is_none_or(|used| used.contains(&rank));
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let rank_name = window_names.last().cloned().unwrap_or_default();
        let mut factory = TopNFactory::new(
            partition_by.clone(),
            order_by.clone(),
            limit,
            ranked.then(|| rank_name.clone()),
        )
        .map_err(|e| user(e.to_string()))?
        .with_state_ttl(self.options.state_ttl);
        // Ordered by a processing-time attribute: by arrival (Flink's processing-time
        // deduplication when N = 1: keep-first is append-only, keep-last replaces).
        let by_proctime =
            matches!(order_by.as_slice(), [key] if input.proctimes.contains(&key.column));
        if by_proctime {
            factory = factory.by_arrival();
            if order_by[0].descending {
                if limit != 1 || ranked {
                    return Err(unsupported(
                        "a Top-N by processing time DESC other than a deduplication (N = 1, without the rank)",
                    ));
                }
                factory = factory.newer_wins_ties().map_err(|e| user(e.to_string()))?;
            }
        }
        // Deduplication keeping the last row by a time attribute: the newer row wins ties.
        let by_time = matches!(order_by.as_slice(), [key] if input.times.contains(&key.column));
        // (Flink's Deduplicate, which it plans only when the rank number is not used, over an
        // append-only input.)
        if limit == 1 && by_time && order_by[0].descending && !ranked && !input.updating {
            factory = factory.newer_wins_ties().map_err(|e| user(e.to_string()))?;
        }
        if let Some(w) = &window {
            factory = factory.at_window_end(w.end.clone());
        }
        let kept = match ranked {
            true => window_names.clone(),
            false => window_names[..window_names.len() - 1].to_vec(),
        };
        let mut stream = self.add_top_n(
            &input,
            factory,
            &partition_by,
            &kept,
            ranked.then_some(&rank_name),
        )?;
        if by_proctime && !order_by[0].descending {
            // The first rows by arrival are never replaced: append-only.
            stream.updating = false;
        }
        if window.is_some() {
            // Final rows with the input's window and time attributes.
            stream.updating = false;
            stream.window = window;
            stream.times = input.times.clone();
        }
        // The projections between the filter and the window, over the Top-N's rows (without
        // the rank column where it is left out).
        let mut below = rank_name.clone();
        for (projection, above) in chain.iter().rev().zip(&rank_names) {
            let exprs: Vec<(&Expr, String)> = projection
                .expr
                .iter()
                .zip(physical_names(&projection.schema))
                .filter(|(e, _)| {
                    ranked
                        || !matches!(resolve(e, projection.input.schema()).unalias(), Expr::Column(c) if c.name == below)
                })
                .collect();
            stream = self.project_named(&stream, &exprs, projection.input.schema());
            below = above.clone();
        }
        if let Some(rest) = conjunction(rest) {
            stream = self.filter(&stream, rest);
        }
        Ok(Some(stream))
    }

    /// `agg(..) OVER (PARTITION BY .. ORDER BY ts ROWS|RANGE BETWEEN .. PRECEDING AND CURRENT
    /// ROW)`: an OVER aggregation, as Flink's (ordered by a time attribute ascending, the
    /// frame ending at the current row). DataFusion plans one `Window` per PARTITION BY and
    /// ORDER BY, each an operator here (Flink allows only one window per SELECT).
    fn over(&mut self, window: &datafusion_expr::logical_plan::Window) -> Result<Stream> {
        use datafusion_expr::expr::{AggregateFunction, WindowFunctionDefinition};
        use datafusion_expr::{WindowFrameBound, WindowFrameUnits};
        let input_schema = window.input.schema();
        let names = physical_names(&window.schema);
        let output_names = &names[names.len() - window.window_expr.len()..];
        let mut params: Option<datafusion_expr::expr::WindowFunctionParams> = None;
        let mut aggregates = Vec::new();
        for (expr, name) in window.window_expr.iter().zip(output_names) {
            let Expr::WindowFunction(function) = expr.clone().unalias() else {
                return Err(unsupported(&format!("the window expression {expr}")));
            };
            let WindowFunctionDefinition::AggregateUDF(udaf) = &function.fun else {
                return Err(unsupported(&format!(
                    "{}() OVER (...) without a condition on it that keeps the first N rows (a Top-N: WHERE rn <= N)",
                    function.fun.name().to_ascii_uppercase()
                ))
                .hint("SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t) WHERE rn <= 3"));
            };
            let p = &function.params;
            match &params {
                Some(first)
                    if first.partition_by != p.partition_by
                        || first.order_by != p.order_by
                        || first.window_frame != p.window_frame =>
                {
                    return Err(unsupported(
                        "OVER aggregations with the same PARTITION BY and ORDER BY but different frames in one SELECT",
                    ))
                }
                Some(_) => {}
                None => params = Some(p.clone()),
            }
            // COUNT(*): the analyzer leaves the wildcard in window functions.
            #[allow(deprecated)]
            let args = p
                .args
                .iter()
                .map(|a| match a {
                    Expr::Wildcard { .. } => lit(1i64),
                    a => resolve(a, input_schema),
                })
                .collect();
            let filter = p
                .filter
                .as_ref()
                .map(|f| Box::new(resolve(f, input_schema)));
            let call = AggregateFunction::new_udf(
                Arc::clone(udaf),
                args,
                p.distinct,
                filter,
                Vec::new(),
                p.null_treatment,
            );
            aggregates.push(Expr::AggregateFunction(call).alias(name));
        }
        let Some(params) = params else {
            return Err(unsupported("a window without functions"));
        };
        let input = self.rows(&window.input)?;
        if input.updating {
            return Err(unsupported(
                "an OVER aggregation over an updating result (nor does Flink support it)",
            ));
        }
        let time = match params.order_by.as_slice() {
            [sort] if sort.asc => match resolve(&sort.expr, input_schema) {
                Expr::Column(c)
                    if input.times.contains(&c.name) || input.proctimes.contains(&c.name) =>
                {
                    Some(c.name)
                }
                _ => None,
            },
            _ => None,
        };
        let Some(time) = time else {
            return Err(user(
                "an OVER window must be ordered by one time attribute, ascending (as in Flink)",
            )
            .hint("SUM(price) OVER (PARTITION BY item ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), ts having a WATERMARK"));
        };
        let frame = &params.window_frame;
        let preceding = match (&frame.start_bound, &frame.end_bound) {
            (WindowFrameBound::Preceding(value), WindowFrameBound::CurrentRow) => value,
            _ => {
                return Err(unsupported(&format!(
                    "the OVER frame {frame} (Flink supports BETWEEN .. PRECEDING AND CURRENT ROW)"
                )))
            }
        };
        let frame = match frame.units {
            WindowFrameUnits::Rows if preceding.is_null() => OverFrame::Rows(None),
            WindowFrameUnits::Rows => {
                let n = match preceding.cast_to(&arrow::datatypes::DataType::UInt64) {
                    Ok(datafusion_common::ScalarValue::UInt64(Some(n))) => n,
                    _ => {
                        return Err(user(format!(
                            "ROWS {preceding} PRECEDING: expected a number of rows"
                        )))
                    }
                };
                OverFrame::Rows(Some(n))
            }
            WindowFrameUnits::Range if preceding.is_null() => OverFrame::Range(None),
            WindowFrameUnits::Range => {
                let ms = crate::window_tvf::interval_ms(Expr::Literal(preceding.clone(), None))
                    .map_err(|e| user(format!("RANGE {preceding} PRECEDING: {e}")))?;
                OverFrame::Range(Some(ms))
            }
            WindowFrameUnits::Groups => return Err(unsupported("GROUPS frames (nor in Flink)")),
        };
        let partition_by = params
            .partition_by
            .iter()
            .map(|e| match resolve(e, input_schema) {
                Expr::Column(c) => Ok(c.name),
                other => Err(unsupported(&format!(
                    "an OVER window partitioned by an expression ({other}); project it into a column first"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let processing_time = input.proctimes.contains(&time);
        let mut factory = OverAggregateFactory::new(partition_by.clone(), time, frame, aggregates)
            .with_state_ttl(self.options.state_ttl);
        if processing_time {
            factory = factory.on_processing_time();
        }
        let stream = self.operator(
            "over-aggregate",
            Arc::new(factory),
            &input,
            Exchange::Hash(partition_by.clone()),
        );
        if partition_by.is_empty() {
            self.graph.set_parallelism(stream.node, 1);
        }
        self.late_rows_of(stream.node, false)?;
        if partition_by.is_empty() {
            // One partition: one subtask, as Flink's; its rows are dealt out again.
            let exprs = names
                .iter()
                .map(|n| col(Column::new_unqualified(n)))
                .collect();
            return Ok(self.operator(
                "over-aggregate-rebalance",
                Arc::new(ProjectFactory::new(exprs)),
                &stream,
                Exchange::Rebalance,
            ));
        }
        Ok(stream)
    }

    /// Adds a Top-N over `input` behind a hash exchange on `partition_by`; without a partition
    /// it runs on one subtask, as Flink's, and its changes are spread again by `rank` (each
    /// rank's changes stay in order) or, without it, by the whole row (`columns`, the output's
    /// columns).
    fn add_top_n(
        &mut self,
        input: &Stream,
        factory: TopNFactory,
        partition_by: &[String],
        columns: &[String],
        rank: Option<&String>,
    ) -> Result<Stream> {
        let windowed = factory.is_window_top_n();
        let name = self.name("top-n");
        let node = self.graph.add_operator(name, Arc::new(factory));
        self.graph
            .connect(input.node, node, Exchange::Hash(partition_by.to_vec()));
        let stream = Stream {
            node,
            updating: true,
            times: Vec::new(),
            proctimes: Vec::new(),
            window: None,
        };
        if partition_by.is_empty() {
            self.graph.set_parallelism(node, 1);
        }
        if windowed {
            self.late_rows_of(node, false)?;
        }
        if !partition_by.is_empty() {
            return Ok(stream);
        }
        let exprs: Vec<Expr> = columns
            .iter()
            .map(|n| col(Column::new_unqualified(n)))
            .collect();
        let spread = match rank {
            Some(rank) => vec![rank.clone()],
            None => columns.to_vec(),
        };
        Ok(self.operator(
            "top-n-spread",
            Arc::new(ProjectFactory::new(exprs)),
            &stream,
            Exchange::Hash(spread),
        ))
    }

    /// `ORDER BY ... LIMIT n` over a stream: the first n rows by the order, an updating
    /// result (a global Top-N without the rank number, as Flink's streaming sort-limit).
    fn sorted_limit(&mut self, limit: &datafusion_expr::logical_plan::Limit) -> Result<Stream> {
        use datafusion_expr::logical_plan::{FetchType, SkipType};
        let fetch = match (limit.get_skip_type(), limit.get_fetch_type()) {
            (Ok(SkipType::Literal(0)), Ok(FetchType::Literal(Some(n)))) if n > 0 => n,
            (Ok(SkipType::Literal(0)), _) => {
                return Err(unsupported(
                    "LIMIT other than a positive number on a stream",
                ))
            }
            _ => return Err(unsupported("OFFSET on a stream")),
        };
        let mut chain: Vec<&Projection> = Vec::new();
        let mut plan = limit.input.as_ref();
        let sort = loop {
            match plan {
                LogicalPlan::Projection(projection) => {
                    chain.push(projection);
                    plan = &projection.input;
                }
                LogicalPlan::Sort(sort) if sort.fetch.is_none() => break sort,
                _ => {
                    return Err(unsupported("LIMIT without ORDER BY on a stream")
                        .hint("ORDER BY ... LIMIT n keeps the first n rows by the order"))
                }
            }
        };
        let input = self.rows(&sort.input)?;
        if input.updating {
            return Err(unsupported("ORDER BY ... LIMIT over an updating result"));
        }
        let order_by = order_keys(
            &sort.expr,
            sort.input.schema(),
            "ORDER BY ... LIMIT on a stream",
        )?;
        let factory = TopNFactory::new(Vec::new(), order_by, fetch, None)
            .map_err(|e| user(e.to_string()))?
            .with_state_ttl(self.options.state_ttl);
        let columns = physical_names(sort.input.schema());
        let mut stream = self.add_top_n(&input, factory, &[], &columns, None)?;
        for projection in chain.iter().rev() {
            stream = self.project(
                &stream,
                &projection.expr,
                projection.input.schema(),
                &projection.schema,
            );
        }
        Ok(stream)
    }

    /// `JOIN t FOR SYSTEM_TIME AS OF left.p` with `p` a processing-time attribute: a lookup
    /// join against `t`, a bounded filesystem table read whole now, before the job (see
    /// `LookupJoinFactory`; as Flink's filesystem lookup source, which caches its file).
    fn lookup_join(
        &mut self,
        join: &Join,
        node: &TemporalTableNode,
        right_plan: &LogicalPlan,
        left: Stream,
        join_type: JoinType,
        predicate: Option<&Expr>,
    ) -> Result<Stream> {
        let as_of = node.as_of.join(".");
        let table = versioned_table(&node.input).ok_or_else(|| {
            unsupported(&format!(
                "FOR SYSTEM_TIME AS OF {as_of} (processing time) of a view or a subquery"
            ))
        })?;
        let name = table.spec.name.clone();
        let options = &table.spec.options;
        let bounded = options.get("connector").is_some_and(|c| c == "filesystem")
            && !options.contains_key("source.monitor-interval");
        if !bounded {
            return Err(unsupported(&format!(
                "a processing-time temporal join (FOR SYSTEM_TIME AS OF {as_of}) against '{name}', which is not a bounded filesystem table"
            ))
            .hint("a lookup into a database or a changing table is not supported yet; an event-time temporal join (AS OF an event-time attribute) reads a versioned table"));
        }
        if !self.source_factory(&table)?.changelog().is_insert_only() {
            return Err(unsupported(&format!(
                "a processing-time temporal join against '{name}', a changelog (its rows are changes, not a table)"
            )));
        }
        let (left_schema, right_schema) = (join.left.schema(), right_plan.schema());
        let conjuncts = join_conjuncts(join, predicate, Some(node));
        let condition =
            crate::join::analyze(conjuncts, left_schema, right_schema, &left.times, &[]);
        let both = left_schema
            .join(right_schema)
            .map_err(|e| user(e.to_string()))?;
        let names = physical_names(&both);
        let (left_names, right_names) = names.split_at(left_schema.fields().len());
        if condition.keys.is_empty() {
            return Err(user(format!(
                "FOR SYSTEM_TIME AS OF {as_of}: a processing-time temporal join needs an equality condition on '{name}' (as in Flink)"
            )));
        }
        let (left_keys, right_keys): (Vec<&Expr>, Vec<&Expr>) =
            condition.keys.iter().map(|(l, r)| (l, r)).unzip();
        let (left_in, left_keys, _) =
            self.join_input(&left, left_schema, left_names, &left_keys, "$lkey")?;
        // The table: its rows now, the plan's columns named as the join names them, then the
        // right key expressions computed into columns.
        let rows = self.read_bounded_table(&table)?;
        let (mut own, mut fields, mut columns) = (Vec::new(), Vec::new(), Vec::new());
        for (field, name) in right_schema.fields().iter().zip(right_names) {
            let index = rows
                .schema()
                .index_of(field.name())
                .map_err(|e| user(e.to_string()))?;
            own.push(rows.schema().field(index).clone().with_name(field.name()));
            fields.push(rows.schema().field(index).clone().with_name(name));
            columns.push(Arc::clone(rows.column(index)));
        }
        // The table under the plan's own names, which the key expressions use.
        let own = RecordBatch::try_new(Arc::new(Schema::new(own)), columns.clone())
            .map_err(|e| user(e.to_string()))?;
        let mut key_names = Vec::new();
        for (i, key) in right_keys.iter().enumerate() {
            let key = resolve(key, right_schema);
            let value = weir_operators::expr::physical(&key, own.schema_ref())
                .and_then(|e| Ok(e.evaluate(&own)?.into_array(own.num_rows())?))
                .map_err(|e| user(format!("the lookup key {key}: {e}")))?;
            let key_name = format!("$rkey{i}");
            fields.push(arrow::datatypes::Field::new(
                &key_name,
                value.data_type().clone(),
                true,
            ));
            columns.push(value);
            key_names.push(key_name);
        }
        let table_rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| user(e.to_string()))?;
        let spec = JoinSpec {
            join_type,
            left_keys,
            right_keys: key_names,
            filter: conjunction(condition.residual).map(|e| resolve(&e, &both)),
        };
        let factory = LookupJoinFactory::new(spec, table_rows).map_err(|e| user(e.to_string()))?;
        let joined = self.operator(
            "lookup-join",
            Arc::new(factory),
            &left_in,
            Exchange::Forward,
        );
        // The join's columns, named as the plan names them.
        let mut output = left_names.to_vec();
        for (qualifier, field) in join.right.schema().iter() {
            let column = Column::new(qualifier.cloned(), field.name());
            let index = right_schema
                .index_of_column(&column)
                .map_err(|e| user(e.to_string()))?;
            output.push(right_names[index].clone());
        }
        let exprs: Vec<Expr> = output
            .iter()
            .zip(physical_names(&join.schema))
            .map(|(n, out)| col(Column::new_unqualified(n)).alias(out))
            .collect();
        let mut stream = self.operator(
            "lookup-join-columns",
            Arc::new(ProjectFactory::new(exprs)),
            &joined,
            Exchange::Forward,
        );
        stream.window = None;
        Ok(stream)
    }

    /// The rows of the bounded table `table`, read to its end now (a job of its own).
    fn read_bounded_table(&self, table: &Table) -> Result<RecordBatch> {
        let reading = |e: &dyn std::fmt::Display| {
            user(format!(
                "reading the table '{}' of a processing-time temporal join: {e}",
                table.spec.name
            ))
        };
        let mut graph = Graph::new();
        let source = graph.add_source("lookup-table", self.source_factory(table)?, None);
        let collect = weir_connectors::collect::CollectSink::new();
        let sink = graph.add_sink("collect", Arc::new(collect.clone()));
        graph.connect(source, sink, Exchange::Forward);
        weir_engine::runtime::run(&graph, weir_engine::runtime::RunOptions::default())
            .map_err(|e| reading(&e))?;
        match collect.concat() {
            Some(rows) => Ok(rows),
            None => Ok(RecordBatch::new_empty(Arc::clone(&table.schema))),
        }
    }

    /// Checks a temporal join as Flink's planner does (INNER or LEFT; a versioned table with a
    /// primary key, all of it equated with the left side, and a watermark; `AS OF` the left
    /// input's time attribute) and returns the two time columns as named in their inputs.
    fn temporal_times(
        &self,
        node: &TemporalTableNode,
        join_type: JoinType,
        key_columns: &[(String, String)],
        left: &Stream,
        left_schema: &DFSchema,
    ) -> Result<[String; 2]> {
        let as_of = node.as_of.join(".");
        if !matches!(join_type, JoinType::Inner | JoinType::Left) {
            return Err(user(format!(
                "FOR SYSTEM_TIME AS OF {as_of}: a temporal join is INNER or LEFT, not {}",
                join_type.sql()
            ))
            .hint("put the stream that looks up versions on the left: FROM orders AS o LEFT JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON ..."));
        }
        let table = versioned_table(&node.input).ok_or_else(|| {
            unsupported("FOR SYSTEM_TIME AS OF a view or a subquery (a versioned view)")
                .hint("read a table with a PRIMARY KEY and a WATERMARK, such as an upsert-kafka table or a debezium-json one")
        })?;
        let name = &table.spec.name;
        if table.primary_key.is_empty() {
            return Err(user(format!(
                "the versioned table '{name}' of FOR SYSTEM_TIME AS OF has no primary key; an event-time temporal join needs one"
            ))
            .hint("declare PRIMARY KEY (...) NOT ENFORCED on the table"));
        }
        let Some(watermark) = &table.watermark else {
            return Err(user(format!(
                "the versioned table '{name}' of FOR SYSTEM_TIME AS OF has no watermark; an event-time temporal join needs its time attribute"
            ))
            .hint("declare WATERMARK FOR <time column> AS ... on the table"));
        };
        let missing: Vec<&String> = table
            .primary_key
            .iter()
            .filter(|k| !key_columns.iter().any(|(_, r)| r == *k))
            .collect();
        if !missing.is_empty() {
            return Err(user(format!(
                "the primary key ({}) of the versioned table '{name}' must be in the temporal join's equality condition; missing: {}",
                table.primary_key.join(", "),
                missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .hint("join on every primary key column: ON o.k = r.k"));
        }
        let column = crate::temporal::as_of_column(node)
            .ok_or_else(|| user("FOR SYSTEM_TIME AS OF needs a column"))?;
        let index = left_schema.maybe_index_of_column(&column).ok_or_else(|| {
            user(format!(
                "FOR SYSTEM_TIME AS OF {as_of}: no such column on the left side of the join"
            ))
        })?;
        let left_time = physical_names(left_schema)[index].clone();
        if !left.times.contains(&left_time) {
            return Err(user(format!(
                "FOR SYSTEM_TIME AS OF {as_of}: it is not a time attribute of the left side (a column with a WATERMARK, passed through unchanged)"
            ))
            .hint("an event-time temporal join looks versions up at the left row's event time; processing-time temporal joins (PROCTIME()) are not supported yet"));
        }
        Ok([left_time, watermark.column.clone()])
    }

    /// One input of a join: its columns renamed to `names` (the join's names for them) and
    /// the key expressions that are not plain columns computed into `<prefix><i>` columns.
    /// Returns the stream, the key column names, and whether any key was computed.
    fn join_input(
        &mut self,
        input: &Stream,
        schema: &DFSchema,
        names: &[String],
        keys: &[&Expr],
        prefix: &str,
    ) -> Result<(Stream, Vec<String>, bool)> {
        let own = physical_names(schema);
        let mut exprs: Vec<Expr> = own
            .iter()
            .zip(names)
            .map(|(from, to)| col(Column::new_unqualified(from)).alias(to))
            .collect();
        let mut key_names = Vec::new();
        let mut computed = false;
        for (i, key) in keys.iter().enumerate() {
            match resolve(key, schema) {
                Expr::Column(c) => {
                    let position = own.iter().position(|n| *n == c.name).ok_or_else(|| {
                        user(format!(
                            "join key '{}' is not a column of its input",
                            c.name
                        ))
                    })?;
                    key_names.push(names[position].clone());
                }
                expr => {
                    let name = format!("{prefix}{i}");
                    exprs.push(expr.alias(&name));
                    key_names.push(name);
                    computed = true;
                }
            }
        }
        if !computed && own == names {
            return Ok((input.clone(), key_names, false));
        }
        let stream = self.operator(
            "join-input",
            Arc::new(ProjectFactory::new(exprs)),
            input,
            Exchange::Forward,
        );
        let renames = own
            .iter()
            .zip(names)
            .map(|(from, to)| (from.clone(), vec![to.clone()]))
            .collect();
        Ok((input.renamed(stream.node, &renames), key_names, computed))
    }

    fn filter(&mut self, input: &Stream, predicate: Expr) -> Stream {
        self.operator(
            "filter",
            Arc::new(FilterFactory::new(Predicate::Expr(predicate))),
            input,
            Exchange::Forward,
        )
    }

    /// Projects `exprs` (over `input_schema`) into columns named after `schema`'s fields; a
    /// time attribute passed through unchanged stays one.
    fn project(
        &mut self,
        input: &Stream,
        exprs: &[Expr],
        input_schema: &DFSchema,
        schema: &DFSchemaRef,
    ) -> Stream {
        let named_exprs: Vec<(&Expr, String)> = exprs.iter().zip(physical_names(schema)).collect();
        self.project_named(input, &named_exprs, input_schema)
    }

    /// A projection of `exprs` (over `input_schema`), each under its name.
    fn project_named(
        &mut self,
        input: &Stream,
        exprs: &[(&Expr, String)],
        input_schema: &DFSchema,
    ) -> Stream {
        let mut renames: HashMap<String, Vec<String>> = HashMap::new();
        let mut proctimes = Vec::new();
        let exprs = exprs
            .iter()
            .map(|(e, name)| {
                let expr = resolve(e, input_schema);
                match expr.clone().unalias() {
                    Expr::Column(c) => renames.entry(c.name).or_default().push(name.clone()),
                    e if is_proctime(&e) => proctimes.push(name.clone()),
                    _ => {}
                }
                named(expr, name)
            })
            .collect();
        let stream = self.operator(
            "project",
            Arc::new(ProjectFactory::new(exprs)),
            input,
            Exchange::Forward,
        );
        let mut stream = input.renamed(stream.node, &renames);
        stream.proctimes.extend(proctimes);
        stream
    }

    fn projection(&mut self, projection: &Projection) -> Result<Flow> {
        if let LogicalPlan::Filter(_) = projection.input.as_ref() {
            // What the query uses of a filter's rows (a Top-N drops an unused rank).
            let used = projection
                .expr
                .iter()
                .flat_map(|e| column_refs(&resolve(e, projection.input.schema())))
                .collect();
            self.used_above_filter = Some(used);
        }
        let input = self.translate(&projection.input);
        self.used_above_filter = None;
        match input? {
            Flow::Rows(input) => Ok(Flow::Rows(self.project(
                &input,
                &projection.expr,
                projection.input.schema(),
                &projection.schema,
            ))),
            Flow::Windowed(windowed) if computes_on_windows(projection) => {
                // Computing with the windows: the TVF's rows, projected.
                let rows = self.window_rows(windowed, projection.input.schema())?;
                Ok(Flow::Rows(self.project(
                    &rows,
                    &projection.expr,
                    projection.input.schema(),
                    &projection.schema,
                )))
            }
            Flow::Windowed(mut windowed) => {
                // Row-wise columns pass through; window columns must stay as they are.
                let mut exprs = Vec::new();
                let mut names = Vec::new();
                for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
                    let expr = resolve(expr, projection.input.schema());
                    // Window columns pass through (computing with them took the branch above).
                    if column_refs(&expr).iter().any(|c| is_window_column(c)) {
                        continue;
                    }
                    names.push(field.name().clone());
                    exprs.push(named(expr, field.name()));
                }
                // The window needs its time column and partition keys even if the query does not.
                for needed in std::iter::once(&windowed.time_column).chain(&windowed.partition_by) {
                    if !names.contains(needed) {
                        if !windowed.columns.contains(needed) {
                            return Err(user(format!(
                                "the window's column '{needed}' was projected away before the window aggregation"
                            )));
                        }
                        names.push(needed.clone());
                        exprs.push(col(Column::new_unqualified(needed)));
                    }
                }
                windowed.rows = self.operator(
                    "project",
                    Arc::new(ProjectFactory::new(exprs)),
                    &windowed.rows,
                    Exchange::Forward,
                );
                windowed.columns = names;
                Ok(Flow::Windowed(windowed))
            }
        }
    }

    fn aggregate(&mut self, aggregate: &Aggregate) -> Result<Stream> {
        let windowed = match self.translate(&aggregate.input)? {
            Flow::Windowed(windowed) => windowed,
            Flow::Rows(rows) => {
                let grouped = |name: &str| {
                    aggregate.group_expr.iter().any(|e| {
                        matches!(resolve(e, aggregate.input.schema()), Expr::Column(c) if c.name == name)
                    })
                };
                return match rows.window.clone() {
                    Some(window)
                        if !rows.updating && grouped(&window.start) && grouped(&window.end) =>
                    {
                        self.attached_window_aggregate(aggregate, rows, window)
                    }
                    _ => self.updating_aggregate(aggregate, rows),
                };
            }
        };
        let window_columns: Vec<String> = aggregate
            .group_expr
            .iter()
            .filter_map(|e| match resolve(e, aggregate.input.schema()) {
                Expr::Column(c) if is_window_column(&c.name) => Some(c.name),
                _ => None,
            })
            .collect();
        if !(window_columns.iter().any(|c| c == WINDOW_START)
            && window_columns.iter().any(|c| c == WINDOW_END))
        {
            return Err(
                user("a window TVF aggregation must GROUP BY window_start and window_end")
                    .hint("GROUP BY window_start, window_end, <keys>"),
            );
        }
        let (rows, keys, aggregates) =
            self.grouping(aggregate, windowed.rows.clone(), &windowed.columns, &|c| {
                is_window_column(c)
            })?;
        if let WindowSpec::Session { .. } = windowed.spec {
            let partition: HashSet<&String> = windowed.partition_by.iter().collect();
            let grouped: HashSet<&String> = keys.iter().collect();
            if partition != grouped {
                return Err(unsupported(&format!(
                    "a SESSION window grouped by other columns than its PARTITION BY ({})",
                    windowed.partition_by.join(", ")
                ))
                .hint("partition the session by exactly the GROUP BY keys: SESSION(TABLE t PARTITION BY k, ...) ... GROUP BY window_start, window_end, k"));
            }
        }
        let mut aggregates = aggregates;
        if aggregates.is_empty() {
            // `GROUP BY window_start, window_end, keys` alone (the distinct keys per window):
            // the window operator counts, and the projection below leaves the count out.
            aggregates.push(count_all().alias("$count"));
        }
        let processing_time = windowed.rows.proctimes.contains(&windowed.time_column);
        let config = WindowAggregateConfig {
            window: windowed.spec,
            time_column: windowed.time_column.clone(),
            keys: keys.clone(),
            aggregates,
            processing_time,
            early_fire: self.options.early_fire,
        };
        let output = self.operator(
            "window",
            Arc::new(WindowAggregateFactory::new(config)),
            &rows,
            Exchange::Hash(keys.clone()),
        );
        self.late_rows_of(output.node, false)?;
        // The window operator emits window_start, window_end, keys, aggregates; the plan
        // expects the GROUP BY order, then the aggregates.
        let mut exprs = Vec::new();
        let mut key_iter = keys.iter();
        // `grouping` returned one key per group expression that is not a window column.
        for expr in &aggregate.group_expr {
            let expr = resolve(expr, aggregate.input.schema());
            match &expr {
                Expr::Column(c) if c.name == WINDOW_TIME => exprs.push(
                    (col(WINDOW_END) - lit(ScalarValue::new_interval_mdn(0, 0, 1_000_000)))
                        .alias(WINDOW_TIME),
                ),
                Expr::Column(c) if is_window_column(&c.name) => {
                    exprs.push(col(Column::new_unqualified(&c.name)))
                }
                _ => {
                    if let Some(key) = key_iter.next() {
                        exprs.push(col(Column::new_unqualified(key)));
                    }
                }
            }
        }
        let mut stream = self.window_columns(aggregate, exprs, &output);
        // window_time is the result's time attribute, window_start and window_end its window
        // properties, as in Flink.
        let has = |name| aggregate.schema.has_column_with_unqualified_name(name);
        stream.times = match has(WINDOW_TIME) {
            true => vec![WINDOW_TIME.to_string()],
            false => Vec::new(),
        };
        if processing_time || self.options.early_fire.is_some() {
            // Processing-time windows have no event time for later windows or joins; early
            // results are an updating result.
            stream.times = Vec::new();
            stream.updating = self.options.early_fire.is_some();
            return Ok(stream);
        }
        stream.window = (has(WINDOW_START) && has(WINDOW_END)).then(|| WindowColumns {
            start: WINDOW_START.to_string(),
            end: WINDOW_END.to_string(),
            spec: windowed.spec.describe(),
        });
        Ok(stream)
    }

    /// `GROUP BY` the window columns of rows that carry their windows (the result of a window
    /// aggregation, a window TVF's rows): a window aggregation over those same windows, each
    /// result emitted once when the watermark passes the window's end, as Flink's cascaded
    /// window aggregation (Nexmark q5's maximum per window). Each window is a group of its
    /// own (its start and end are keys), closed by a 1 ms tumbling window at `end - 1 ms`.
    fn attached_window_aggregate(
        &mut self,
        aggregate: &Aggregate,
        rows: Stream,
        window: WindowColumns,
    ) -> Result<Stream> {
        const START: &str = "$window_start";
        const END: &str = "$window_end";
        const TIME: &str = "$window_time";
        let rows_times = rows.times.clone();
        let mut columns = physical_names(aggregate.input.schema());
        let one_ms = lit(ScalarValue::new_interval_mdn(0, 0, 1_000_000));
        let mut exprs: Vec<Expr> = columns
            .iter()
            .map(|c| col(Column::new_unqualified(c)))
            .collect();
        exprs.push(col(Column::new_unqualified(&window.start)).alias(START));
        exprs.push(col(Column::new_unqualified(&window.end)).alias(END));
        exprs.push((col(Column::new_unqualified(&window.end)) - one_ms).alias(TIME));
        columns.extend([START, END, TIME].map(String::from));
        let rows = self.operator(
            "window-attach",
            Arc::new(ProjectFactory::new(exprs)),
            &rows,
            Exchange::Forward,
        );
        let is_window = |c: &str| c == window.start || c == window.end;
        let (rows, mut keys, mut aggregates) =
            self.grouping(aggregate, rows, &columns, &is_window)?;
        keys.extend([START, END].map(String::from));
        if aggregates.is_empty() {
            aggregates.push(count_all().alias("$count"));
        }
        let config = WindowAggregateConfig {
            window: WindowSpec::Tumble { size_ms: 1 },
            time_column: TIME.to_string(),
            keys: keys.clone(),
            aggregates,
            processing_time: false,
            early_fire: None,
        };
        let output = self.operator(
            "window",
            Arc::new(WindowAggregateFactory::new(config)),
            &rows,
            Exchange::Hash(keys.clone()),
        );
        self.late_rows_of(output.node, false)?;
        // The plan's columns: the group expressions in order, then the aggregates.
        let mut key_iter = keys.iter();
        let mut exprs = Vec::new();
        let mut window_names = (None, None);
        let mut times = Vec::new();
        for (expr, field) in aggregate.group_expr.iter().zip(aggregate.schema.fields()) {
            let resolved = resolve(expr, aggregate.input.schema());
            // A grouped time attribute (the input's window_time) stays one.
            if matches!(&resolved, Expr::Column(c) if rows_times.contains(&c.name)) {
                times.push(field.name().clone());
            }
            let source = match resolved {
                Expr::Column(c) if c.name == window.start => {
                    window_names.0 = Some(field.name().clone());
                    START.to_string()
                }
                Expr::Column(c) if c.name == window.end => {
                    window_names.1 = Some(field.name().clone());
                    END.to_string()
                }
                _ => key_iter.next().cloned().unwrap_or_default(),
            };
            exprs.push(col(Column::new_unqualified(&source)).alias(field.name()));
        }
        let mut stream = self.window_columns(aggregate, exprs, &output);
        stream.times = times;
        stream.window = match window_names {
            (Some(start), Some(end)) => Some(WindowColumns {
                start,
                end,
                spec: window.spec,
            }),
            _ => None,
        };
        Ok(stream)
    }

    /// A window operator's `output` in the plan's columns: `group` (one expression per group
    /// expression, over the operator's columns), then the aggregates by name.
    fn window_columns(
        &mut self,
        aggregate: &Aggregate,
        group: Vec<Expr>,
        output: &Stream,
    ) -> Stream {
        let mut exprs = group;
        exprs.extend(
            aggregate.schema.fields()[aggregate.group_expr.len()..]
                .iter()
                .map(|f| col(Column::new_unqualified(f.name()))),
        );
        self.operator(
            "window-columns",
            Arc::new(ProjectFactory::new(exprs)),
            output,
            Exchange::Forward,
        )
    }

    /// `GROUP BY` without a window: an updating aggregation, then the plan's column order
    /// (the row kind stays last).
    fn updating_aggregate(&mut self, aggregate: &Aggregate, rows: Stream) -> Result<Stream> {
        let (rows, keys, aggregates) = self.grouping(aggregate, rows, &[], &|_| false)?;
        let state_ttl = self.state_ttl_of(&aggregate.input);
        let output = self.operator(
            "group-aggregate",
            Arc::new(
                UpdatingAggregateFactory::new(keys.clone(), aggregates).with_state_ttl(state_ttl),
            ),
            &rows,
            Exchange::Hash(keys.clone()),
        );
        let output = Stream {
            updating: true,
            times: Vec::new(),
            window: None,
            ..output
        };
        let exprs: Vec<Expr> = aggregate
            .schema
            .fields()
            .iter()
            .map(|f| col(Column::new_unqualified(f.name())))
            .collect();
        Ok(self.operator(
            "changelog-columns",
            Arc::new(ProjectFactory::new(exprs)),
            &output,
            Exchange::Forward,
        ))
    }

    /// The grouping keys (computed into columns of `rows` when they are expressions) and the
    /// aggregates, named as `aggregate`'s output. `window_columns` are skipped group columns.
    fn grouping(
        &mut self,
        aggregate: &Aggregate,
        rows: Stream,
        columns: &[String],
        is_window_column: &dyn Fn(&str) -> bool,
    ) -> Result<(Stream, Vec<String>, Vec<Expr>)> {
        let group_fields = &aggregate.schema.fields()[..aggregate.group_expr.len()];
        let mut keys = Vec::new();
        let mut key_exprs = Vec::new();
        for (expr, field) in aggregate.group_expr.iter().zip(group_fields) {
            let expr = resolve(expr, aggregate.input.schema());
            match &expr {
                Expr::Column(c) if is_window_column(&c.name) => {}
                _ if column_refs(&expr).iter().any(|c| is_window_column(c)) => {
                    return Err(unsupported(
                        "grouping by an expression of window_start, window_end or window_time",
                    ))
                }
                Expr::Column(c) => keys.push(c.name.clone()),
                _ => {
                    keys.push(field.name().clone());
                    key_exprs.push(named(expr, field.name()));
                }
            }
        }
        let mut rows = rows;
        if !key_exprs.is_empty() {
            // Computed grouping keys become columns before the exchange.
            let input_columns: Vec<String> = if columns.is_empty() {
                aggregate
                    .input
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            } else {
                columns.to_vec()
            };
            let exprs: Vec<Expr> = input_columns
                .iter()
                .map(|c| col(Column::new_unqualified(c)))
                .chain(key_exprs)
                .collect();
            rows = self.operator(
                "group-keys",
                Arc::new(ProjectFactory::new(exprs)),
                &rows,
                Exchange::Forward,
            );
        }
        let aggregate_fields = &aggregate.schema.fields()[aggregate.group_expr.len()..];
        let aggregates = aggregate
            .aggr_expr
            .iter()
            .zip(aggregate_fields)
            .map(|(e, f)| {
                let e = resolve(e, aggregate.input.schema());
                if column_refs(&e).iter().any(|c| is_window_column(c)) {
                    return Err(unsupported(
                        "aggregating window_start, window_end or window_time",
                    ));
                }
                Ok(named(e, f.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, keys, aggregates))
    }

    fn scan(&mut self, scan: &TableScan) -> Result<Stream> {
        let source: &dyn std::any::Any = scan.source.as_ref();
        let Some(table) = source.downcast_ref::<TableRef>() else {
            return Err(unsupported(&format!("reading '{}'", scan.table_name)));
        };
        let table = &table.table;
        let (node, updating) = match self.sources.get(&table.spec.name) {
            Some(read) => *read,
            None => {
                let factory = self.source_factory(table)?;
                let changelog = factory.changelog();
                let alignment = watermark_alignment(table)?;
                let watermark = table.watermark.as_ref().map(|w| {
                    let mut w = w.clone();
                    if let Some(timeout) = self.options.idle_timeout {
                        w = w.with_idle_timeout(timeout);
                    }
                    match alignment.clone() {
                        Some(alignment) => w.with_alignment(alignment),
                        None => w,
                    }
                });
                let name = self.name(&format!("source-{}", table.spec.name));
                let mut node = self.graph.add_source(name, factory, watermark);
                if let Some(parallelism) = table.spec.options.get("scan.parallelism") {
                    let parallelism = parallelism
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            user(format!(
                                "'scan.parallelism' of table '{}' is a positive number, not '{parallelism}'",
                                table.spec.name
                            ))
                        })?;
                    self.graph.set_parallelism(node, parallelism);
                    // Its rows are dealt to the job's parallelism, as a VALUES source's are;
                    // a changelog's by its key, so that each key's changes stay in order.
                    let exchange = match &changelog {
                        ChangelogMode::InsertOnly => Exchange::Rebalance,
                        _ if !table.primary_key.is_empty() => {
                            Exchange::Hash(table.primary_key.clone())
                        }
                        _ => {
                            return Err(user(format!(
                                "'scan.parallelism' of table '{}': its changelog is spread by its primary key, and it has none",
                                table.spec.name
                            ))
                            .hint("declare PRIMARY KEY (...) NOT ENFORCED, or leave 'scan.parallelism' out"))
                        }
                    };
                    let spread = self.name(&format!("source-{}-rebalance", table.spec.name));
                    let columns = self.graph_schema_columns(node);
                    let spread = self
                        .graph
                        .add_operator(spread, Arc::new(ProjectFactory::new(columns)));
                    self.graph.connect(node, spread, exchange);
                    node = spread;
                }
                if let ChangelogMode::Upsert { key } = &changelog {
                    // Upserts become a full changelog, keyed by the primary key (Flink's
                    // ChangelogNormalize).
                    let name = self.name(&format!("source-{}-normalize", table.spec.name));
                    let normalize = self.graph.add_operator(
                        name,
                        Arc::new(
                            ChangelogNormalizeFactory::new(key.clone())
                                .with_state_ttl(self.options.state_ttl),
                        ),
                    );
                    self.graph
                        .connect(node, normalize, Exchange::Hash(key.clone()));
                    node = normalize;
                }
                let read = (node, !changelog.is_insert_only());
                self.sources.insert(table.spec.name.clone(), read);
                read
            }
        };
        let mut stream = Stream::new(node);
        stream.updating = updating;
        if let Some(watermark) = &table.watermark {
            stream.times.push(watermark.column.clone());
        }
        for (name, expr) in &table.computed {
            if is_proctime(expr) {
                stream.proctimes.push(name.clone());
            }
        }
        match &scan.projection {
            Some(indices)
                if indices.len() != table.schema.fields().len()
                    || indices.iter().enumerate().any(|(i, &j)| i != j) =>
            {
                let exprs = indices
                    .iter()
                    .map(|&i| col(Column::new_unqualified(table.schema.field(i).name())))
                    .collect();
                Ok(self.operator(
                    "read-columns",
                    Arc::new(ProjectFactory::new(exprs)),
                    &stream,
                    Exchange::Forward,
                ))
            }
            _ => Ok(stream),
        }
    }

    fn source_factory(&self, table: &Table) -> Result<Arc<dyn SourceFactory>> {
        let inner = registry::create_source(&table.spec).map_err(|e| user(e.to_string()))?;
        if table.computed.is_empty() {
            return Ok(inner);
        }
        let read = table.spec.schema.as_ref();
        let columns = table
            .schema
            .fields()
            .iter()
            .map(|f| match read.index_of(f.name()) {
                Ok(i) => Ok(ColumnSource::Read(i)),
                Err(_) => {
                    let (_, expr) = table
                        .computed
                        .iter()
                        .find(|(name, _)| name == f.name())
                        .ok_or_else(|| user(format!("column '{}' has no source", f.name())))?;
                    weir_operators::expr::physical(expr, read)
                        .map(ColumnSource::Computed)
                        .map_err(|e| user(format!("computed column '{}': {e}", f.name())))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut schema = SchemaRef::clone(&table.schema);
        let mut columns = columns;
        // A changelog's row kinds pass through, last.
        let read_kinds = inner.schema();
        if has_row_kind(&read_kinds) {
            schema = with_row_kind(&schema);
            columns.push(ColumnSource::Read(read_kinds.fields().len() - 1));
        }
        let description = table
            .computed
            .iter()
            .map(|(name, expr)| format!("{name} AS {expr}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Arc::new(ComputedColumnsSource::new(
            inner,
            schema,
            columns,
            description,
        )))
    }

    fn values(&mut self, rows: &[Vec<Expr>], schema: &DFSchemaRef) -> Result<Stream> {
        let schema: SchemaRef = Arc::new(schema.as_arrow().clone());
        let empty = Arc::new(Schema::empty());
        let one_row = RecordBatch::try_new_with_options(
            SchemaRef::clone(&empty),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|e| user(e.to_string()))?;
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); schema.fields().len()];
        for row in rows {
            for (i, expr) in row.iter().enumerate() {
                let physical = weir_operators::expr::physical(expr, &empty)
                    .map_err(|e| user(format!("VALUES: {e}")))?;
                let value = physical
                    .evaluate(&one_row)
                    .and_then(|v| v.into_array(1))
                    .map_err(|e| user(format!("VALUES: {e}")))?;
                let value = arrow::compute::cast(&value, schema.field(i).data_type())
                    .map_err(|e| user(format!("VALUES: {e}")))?;
                columns[i].push(value);
            }
        }
        let arrays = columns
            .iter()
            .map(|parts| {
                let parts: Vec<&dyn arrow::array::Array> =
                    parts.iter().map(|a| a.as_ref()).collect();
                arrow::compute::concat(&parts)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| user(e.to_string()))?;
        // VALUES columns are nullable as far as the stream is concerned.
        let schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(SchemaRef::clone(&schema), arrays)
            .map_err(|e| user(e.to_string()))?;
        self.memory(schema, batch)
    }

    fn memory(&mut self, schema: SchemaRef, batch: RecordBatch) -> Result<Stream> {
        // Named by its rows, not by statement order: a source's name is its identity in
        // checkpoints, and so part of every downstream operator's.
        let content = xxhash_rust::xxh3::xxh3_64(format!("{batch:?}").as_bytes());
        let source =
            MemorySource::new(schema, vec![vec![batch]]).map_err(|e| user(e.to_string()))?;
        let name = self.name(&format!("values-{content:016x}"));
        let node = self.graph.add_source(name, Arc::new(source), None);
        self.graph.set_parallelism(node, 1);
        // One split; spread its rows to the default parallelism downstream.
        let spread = self.name("values-rebalance");
        let spread = self.graph.add_operator(
            spread,
            Arc::new(ProjectFactory::new(self.graph_schema_columns(node))),
        );
        self.graph.connect(node, spread, Exchange::Rebalance);
        Ok(Stream::new(spread))
    }

    fn graph_schema_columns(&self, node: NodeId) -> Vec<Expr> {
        match &self.graph.nodes[node.0].kind {
            // The row kind of a changelog travels by itself.
            weir_engine::graph::NodeKind::Source { factory, .. } => factory
                .schema()
                .fields()
                .iter()
                .filter(|f| f.name() != weir_engine::changelog::ROW_KIND_COLUMN)
                .map(|f| col(Column::new_unqualified(f.name())))
                .collect(),
            _ => Vec::new(),
        }
    }
}
