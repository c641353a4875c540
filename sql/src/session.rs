//! A SQL session: runs the statements of a script in order. DDL and `SET` change the session;
//! `INSERT`s (and statement sets) are collected into one job; a bare `SELECT` becomes a job
//! that prints (or collects) its rows; `EXPLAIN` returns the dataflow graph as text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weir_connectors::materialize::MaterializeSink;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion_common::{DFSchema, DataFusionError};
use datafusion_expr::{ExprSchemable, LogicalPlan};
use datafusion_optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
use datafusion_optimizer::optimize_projections::OptimizeProjections;
use datafusion_optimizer::{Analyzer, Optimizer, OptimizerContext};
use datafusion_sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan};
use weir_connectors::options::parse_duration;
use weir_connectors::registry::{self, TableSpec};
use weir_engine::graph::Graph;
use weir_engine::sink::SinkFactory;

use crate::catalog::{SessionContext, Table};
use crate::ddl::{self, ColumnKind, CreateTable, Cursor};
use crate::error::{user, Location, Result, SqlError, UserError};
use crate::hints::StateTtlHints;
use crate::script::{self, is_word, Statement, DIALECT};
use crate::translate::{GraphBuilder, LateRowsTable, TranslateOptions};
use crate::window_tvf::{self, interval_ms, WindowTvfPlanner};

/// Job options set with `SET 'key' = 'value'` (Flink's keys).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `parallelism.default`: shards.
    pub parallelism: Option<usize>,
    /// `execution.checkpointing.interval`.
    pub checkpoint_interval: Option<Duration>,
    /// `table.exec.source.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `table.exec.state.ttl`: how long updating aggregations, regular joins and Top-N keep
    /// state not written (a `STATE_TTL` hint overrides it per join input or aggregation).
    pub state_ttl: Option<Duration>,
    /// `pipeline.name`.
    pub job_name: Option<String>,
    /// `execution.savepoint.ignore-unclaimed-state`: resume even if the checkpoint holds state
    /// no part of the job claims (Flink's `--allowNonRestoredState`).
    pub allow_non_restored_state: bool,
    /// `sql-client.execution.result-mode` = `table`: a bare SELECT prints the rows its result
    /// holds at the end instead of its changes.
    pub materialize: bool,
    /// `table.exec.late-rows.table`: the table that receives the rows windows, OVER
    /// aggregations and window Top-Ns drop as late (Weir's; Flink has it only in Java).
    pub late_rows_table: Option<String>,
    /// `table.exec.emit.early-fire.enabled`.
    pub early_fire: bool,
    /// `table.exec.emit.early-fire.delay`.
    pub early_fire_delay: Option<Duration>,
    /// `state.memory-budget`: bytes the job's decoded state may use (Weir's).
    pub state_memory_budget: Option<usize>,
    /// Every key set, as written.
    pub raw: BTreeMap<String, String>,
}

/// The `SET` keys Weir knows, with what they do.
pub const SETTINGS: &[(&str, &str)] = &[
    ("parallelism.default", "number of shards the job runs on"),
    (
        "execution.checkpointing.interval",
        "time between checkpoints (needs --state-dir)",
    ),
    (
        "table.exec.source.idle-timeout",
        "a source partition without rows for this long stops holding back the watermark",
    ),
    (
        "table.exec.state.ttl",
        "an updating (non-windowed) aggregation forgets a group not updated for this long",
    ),
    ("pipeline.name", "the job's name (logs, EXPLAIN)"),
    (
        "execution.savepoint.ignore-unclaimed-state",
        "'true': resume even if the checkpoint holds state no operator of the job claims (dropping it)",
    ),
    (
        "execution.runtime-mode",
        "'streaming' (bounded sources end the job either way)",
    ),
    (
        "table.exec.late-rows.table",
        "a table (columns operator STRING, watermark TIMESTAMP(3), row STRING) that receives every row a window, OVER aggregation or window Top-N drops as late",
    ),
    (
        "table.exec.emit.early-fire.enabled",
        "'true': window aggregations (TUMBLE, HOP, CUMULATE) also emit partial results before their windows close, as an updating result",
    ),
    (
        "table.exec.emit.early-fire.delay",
        "the processing time between a window's partial results (0: after every batch)",
    ),
    (
        "state.memory-budget",
        "memory for the job's decoded state over all shards, e.g. 64mb or 2gb (default: a quarter of the machine's); the rest lives in RocksDB",
    ),
    (
        "restart-strategy.type",
        "how weir server restarts a failed job: 'exponential-delay' (default), 'fixed-delay', 'failure-rate' or 'none', with Flink's restart-strategy.<type>.* keys",
    ),
    (
        "sql-client.execution.result-mode",
        "how a bare SELECT prints: 'tableau' or 'changelog' (rows and changes as they come), or 'table' (the rows the result holds at the end, sorted)",
    ),
];

impl Settings {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let duration = |v: &str| {
            parse_duration(v).ok_or_else(|| {
                user(format!(
                    "'{key}': '{v}' is not a duration (e.g. 200ms, 10s, 5m)"
                ))
            })
        };
        match key {
            "parallelism.default" => {
                self.parallelism = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or_else(|| user(format!("'{key}' must be a positive number, not '{value}'")))?,
                )
            }
            "execution.checkpointing.interval" => self.checkpoint_interval = Some(duration(value)?),
            "table.exec.source.idle-timeout" => self.idle_timeout = Some(duration(value)?),
            "pipeline.name" => self.job_name = Some(value.to_string()),
            "execution.savepoint.ignore-unclaimed-state" => {
                self.allow_non_restored_state = match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(user(format!("'{key}' is 'true' or 'false', not '{value}'"))),
                }
            }
            "execution.runtime-mode" if value.eq_ignore_ascii_case("streaming") => {}
            "execution.runtime-mode" => {
                return Err(user(format!("'{key}' = '{value}' is not supported: Weir runs every job in streaming mode (bounded inputs end the job)")))
            }
            "sql-client.execution.result-mode" => {
                self.materialize = match value.to_ascii_lowercase().as_str() {
                    "table" => true,
                    "tableau" | "changelog" => false,
                    _ => return Err(user(format!("'{key}' is 'table', 'tableau' or 'changelog', not '{value}'"))),
                }
            }
            "table.exec.emit.early-fire.enabled" => {
                self.early_fire = match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(user(format!("'{key}' is 'true' or 'false', not '{value}'"))),
                }
            }
            "table.exec.emit.early-fire.delay" => self.early_fire_delay = Some(duration(value)?),
            "state.memory-budget" => {
                let bytes = weir_connectors::options::parse_memory_budget(value).ok_or_else(|| {
                    user(format!(
                        "'{key}' is a positive size such as 64mb or 2gb, not '{value}'"
                    ))
                })?;
                self.state_memory_budget = Some(bytes);
            }
            // Read by the server (weir-server's `restart`), which checks them at submission.
            key if key.starts_with("restart-strategy.") => {}
            "table.exec.late-rows.table" => {
                self.late_rows_table = (!value.is_empty()).then(|| value.to_string())
            }
            "table.exec.state.ttl" => {
                let ttl = duration(value)?;
                self.state_ttl = (!ttl.is_zero()).then_some(ttl);
            }
            _ => {
                return Err(user(format!("unknown or unsupported option '{key}'")).hint(format!(
                    "known options: {}",
                    SETTINGS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                )))
            }
        }
        self.raw.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

/// A job planned from SQL.
#[derive(Clone)]
pub struct SqlJob {
    pub graph: Graph,
    /// Columns of the rows a query prints (for `INSERT` jobs: none).
    pub columns: Option<SchemaRef>,
}

/// What a statement asks for, in script order.
pub enum Action {
    /// Run a bare `SELECT`.
    Query(SqlJob),
    /// `EXPLAIN`: the graph as text (rendered by the caller for a shard count).
    Explain(SqlJob),
}

/// How a bare `SELECT`'s rows leave the job.
pub type QuerySinkFn<'a> = &'a dyn Fn(&SchemaRef) -> Arc<dyn SinkFactory>;

/// A SQL session.
#[derive(Debug, Default)]
pub struct Session {
    context: SessionContext,
    pub settings: Settings,
    /// The `INSERT`s so far: one job.
    inserts: Option<GraphBuilder>,
    /// The `STATE_TTL` hints of the views that have any.
    view_hints: BTreeMap<String, StateTtlHints>,
    /// Where relative file paths point and which files tables may name (a server's
    /// scripts); `None`: the process's working directory, any file.
    pub file_access: Option<crate::file_access::FileAccess>,
}

impl std::fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphBuilder").finish_non_exhaustive()
    }
}

/// Flink's: identifiers keep their case, and NULL sorts as the smallest value (first in
/// `ASC`, last in `DESC`, Calcite's `NullCollation.LOW` as Flink configures it).
fn parser_options() -> ParserOptions {
    ParserOptions {
        enable_ident_normalization: false,
        collect_spans: true,
        default_null_ordering: datafusion_sql::planner::NullOrdering::NullsMin,
        ..ParserOptions::new()
    }
}

/// A DataFusion error as a user error, with the location DataFusion found if any.
fn plan_error(error: DataFusionError) -> UserError {
    let location = error.diagnostic().and_then(|d| d.span).map(|s| Location {
        line: s.start.line,
        column: s.start.column,
    });
    let mut message = error.strip_backtrace();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "This feature is not implemented: ",
        "Optimizer rule 'type_coercion' failed\ncaused by\n",
        "type_coercion\ncaused by\n",
    ] {
        while let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    let message = message
        .replace("Error during planning: ", "")
        .replace('\n', " ");
    let mut error = user(message.trim_end_matches('.').to_string());
    if let Some(location) = location.filter(|l| l.line > 0) {
        error = error.at(location);
    }
    error
}

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// Runs the statements of `text`; returns the queries and explains to run or print, in
    /// order. `INSERT`s accumulate into [`Session::take_insert_job`].
    pub fn execute(
        &mut self,
        text: &str,
        query_sink: QuerySinkFn,
    ) -> Result<Vec<Action>, SqlError> {
        let statements = script::split(text)?;
        let mut actions = Vec::new();
        for statement in &statements {
            let action = self.statement(statement, query_sink).map_err(|mut e| {
                e.location.get_or_insert(statement.location());
                e.statement = Some(statement.text.clone());
                SqlError::from(e)
            })?;
            actions.extend(action);
        }
        Ok(actions)
    }

    /// The job formed by the `INSERT`s executed so far, if any.
    pub fn take_insert_job(&mut self) -> Option<SqlJob> {
        self.inserts.take().map(|b| SqlJob {
            graph: b.graph,
            columns: None,
        })
    }

    fn translate_options(&self) -> Result<TranslateOptions> {
        let late_rows = match &self.settings.late_rows_table {
            Some(name) => {
                let table = self.context.tables.get(name).ok_or_else(|| {
                    user(format!(
                        "'table.exec.late-rows.table': '{name}' is not a table"
                    ))
                })?;
                Some(LateRowsTable {
                    name: name.clone(),
                    sink: registry::create_sink(&table.spec).map_err(|e| user(e.to_string()))?,
                    schema: Arc::clone(&table.spec.schema),
                })
            }
            None => None,
        };
        let early_fire = match (self.settings.early_fire, self.settings.early_fire_delay) {
            (true, Some(delay)) => Some(delay),
            (true, None) => {
                return Err(user(
                    "'table.exec.emit.early-fire.enabled' needs 'table.exec.emit.early-fire.delay' (as in Flink)",
                ))
            }
            (false, _) => None,
        };
        Ok(TranslateOptions {
            idle_timeout: self.settings.idle_timeout,
            state_ttl: self.settings.state_ttl,
            late_rows,
            early_fire,
        })
    }

    fn statement(
        &mut self,
        statement: &Statement,
        query_sink: QuerySinkFn,
    ) -> Result<Option<Action>> {
        let tokens = &statement.tokens;
        let first = |i: usize, w: &str| tokens.get(i).is_some_and(|t| is_word(&t.token, w));
        let temporary = usize::from(first(1, "TEMPORARY"));
        if first(0, "CREATE") && first(1 + temporary, "TABLE") {
            let table = ddl::parse_create_table(&mut Cursor::new(tokens))?;
            self.create_table(table)?;
            return Ok(None);
        }
        if first(0, "CREATE") && first(1 + temporary, "VIEW") {
            self.create_view(tokens)?;
            return Ok(None);
        }
        if first(0, "DROP") && (first(1 + temporary, "TABLE") || first(1 + temporary, "VIEW")) {
            let mut cursor = Cursor::new(tokens);
            cursor.expect_word("DROP")?;
            cursor.word("TEMPORARY");
            let view = cursor.word("VIEW");
            if !view {
                cursor.expect_word("TABLE")?;
            }
            let if_exists = cursor.words(&["IF", "EXISTS"]);
            let name = cursor.object_name("a name")?;
            cursor.expect_end()?;
            let removed = if view {
                self.view_hints.remove(&name);
                self.context.views.remove(&name).is_some()
            } else {
                self.context.tables.remove(&name).is_some()
            };
            if !removed && !if_exists {
                return Err(user(format!(
                    "{} '{name}' does not exist",
                    if view { "view" } else { "table" }
                )));
            }
            return Ok(None);
        }
        if first(0, "SET") || first(0, "RESET") {
            self.set(tokens)?;
            return Ok(None);
        }
        if first(0, "EXPLAIN") {
            let skip = if first(1, "PLAN") && first(2, "FOR") {
                3
            } else {
                1
            };
            let inner = Statement {
                tokens: tokens[skip..].to_vec(),
                text: statement.text.clone(),
            };
            // Explain plans into a fresh builder: the session's INSERT job is not touched.
            let saved = self.inserts.take();
            let result = self.dml(&inner, query_sink);
            let explained = std::mem::replace(&mut self.inserts, saved);
            let job = match result? {
                Some(Action::Query(job)) => job,
                _ => match explained {
                    Some(builder) => SqlJob {
                        graph: builder.graph,
                        columns: None,
                    },
                    None => return Err(user("EXPLAIN needs a SELECT, INSERT or statement set")),
                },
            };
            return Ok(Some(Action::Explain(job)));
        }
        self.dml(statement, query_sink)
    }

    /// `INSERT`, statement sets and queries.
    fn dml(&mut self, statement: &Statement, query_sink: QuerySinkFn) -> Result<Option<Action>> {
        let tokens = &statement.tokens;
        let first = |i: usize, w: &str| tokens.get(i).is_some_and(|t| is_word(&t.token, w));
        // `EXECUTE STATEMENT SET BEGIN ...` or `BEGIN STATEMENT SET; ...`: four tokens, then INSERTs.
        let is_set =
            (first(0, "EXECUTE") && first(1, "STATEMENT") && first(2, "SET") && first(3, "BEGIN"))
                || (first(0, "BEGIN") && first(1, "STATEMENT") && first(2, "SET"));
        let set_body = is_set.then_some(4);
        if let Some(start) = set_body {
            let end = tokens.len().saturating_sub(1);
            if !tokens.last().is_some_and(|t| is_word(&t.token, "END")) {
                return Err(user("a statement set ends with END"));
            }
            for insert in tokens[start.min(end)..end].split(|t| t.token == Token::SemiColon) {
                if insert.is_empty() {
                    continue;
                }
                if !is_word(&insert[0].token, "INSERT") {
                    return Err(user("a statement set holds only INSERT statements")
                        .at(script::location(&insert[0])));
                }
                let (plan, hints) = self.plan(insert)?;
                self.insert(&plan, &hints)?;
            }
            return Ok(None);
        }
        let (plan, hints) = self.plan(tokens)?;
        if let LogicalPlan::Dml(_) = &plan {
            self.insert(&plan, &hints)?;
            return Ok(None);
        }
        match &plan {
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Extension(_) => {}
            _ => {
                return Err(user(format!(
                    "unsupported statement: {}",
                    statement.text.trim()
                )))
            }
        }
        let columns: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let mut builder = GraphBuilder::new(self.translate_options()?);
        let sink = match self.settings.materialize {
            true => Arc::new(MaterializeSink::new(query_sink(&columns))),
            false => query_sink(&columns),
        };
        builder.sink(&plan, &hints, "print", sink, None)?;
        Ok(Some(Action::Query(SqlJob {
            graph: builder.graph,
            columns: Some(columns),
        })))
    }

    fn insert(&mut self, plan: &LogicalPlan, hints: &StateTtlHints) -> Result<()> {
        let LogicalPlan::Dml(dml) = plan else {
            return Err(user("expected INSERT INTO"));
        };
        if !matches!(dml.op, datafusion_expr::WriteOp::Insert(_)) {
            return Err(user(format!(
                "{} is not supported: streams are append-only",
                dml.op
            )));
        }
        let name = dml.table_name.table();
        let table = self
            .context
            .tables
            .get(name)
            .ok_or_else(|| user(format!("cannot INSERT INTO '{name}': it is not a table")))?;
        let sink = registry::create_sink(&table.spec).map_err(|e| user(e.to_string()))?;
        let options = self.translate_options()?;
        let builder = self
            .inserts
            .get_or_insert_with(|| GraphBuilder::new(options));
        builder.sink(&dml.input, hints, name, sink, Some(&table.spec.schema))
    }

    /// Plans a query or INSERT statement into an analysed DataFusion plan, with its
    /// `STATE_TTL` hints (and those of the views it reads).
    fn plan(&mut self, tokens: &[TokenWithSpan]) -> Result<(LogicalPlan, StateTtlHints)> {
        let (tokens, calls) = window_tvf::rewrite(tokens)?;
        let (tokens, temporal_calls) = crate::temporal::rewrite(&tokens)?;
        let mut parser = Parser::new(&DIALECT).with_tokens_with_locations(tokens.clone());
        let mut ast = parser
            .parse_statement()
            .map_err(|e| ddl::parse_error(&e, &tokens))?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(
                user(format!("unexpected '{}' after the statement", next.token))
                    .at(script::location(&next)),
            );
        }
        let hints = StateTtlHints::of_statement(&ast, &|name| self.view_hints.get(name).cloned())?;
        crate::functions::prepare(&mut ast, &|name| self.context.has_function(name))?;
        self.context.relation_planners = vec![
            Arc::new(WindowTvfPlanner { calls }),
            Arc::new(crate::temporal::TemporalTablePlanner {
                calls: temporal_calls,
            }),
        ];
        let planned = SqlToRel::new_with_options(&self.context, parser_options())
            .sql_statement_to_plan(ast)
            .map_err(plan_error);
        self.context.relation_planners.clear();
        let plan = crate::temporal::mark_as_of(planned?).map_err(plan_error)?;
        let analyzed = Analyzer::new()
            .execute_and_check(plan, self.context.options(), |_, _| {})
            .map_err(plan_error)?;
        // Two optimizer rules run: `IN`/`EXISTS` subqueries become semi and anti joins, and
        // column pruning (scans keep only the columns the query uses, so operators neither
        // copy nor carry the others).
        let optimized = Optimizer::with_rules(vec![
            Arc::new(DecorrelatePredicateSubquery::new()),
            Arc::new(OptimizeProjections::new()),
        ])
        .optimize(analyzed, &OptimizerContext::new(), |_, _| {})
        .map_err(plan_error)?;
        Ok((optimized, hints))
    }

    fn create_view(&mut self, tokens: &[TokenWithSpan]) -> Result<()> {
        let mut cursor = Cursor::new(tokens);
        cursor.expect_word("CREATE")?;
        cursor.word("TEMPORARY");
        cursor.expect_word("VIEW")?;
        let if_not_exists = cursor.words(&["IF", "NOT", "EXISTS"]);
        let name = cursor.object_name("a view name")?;
        cursor.expect_word("AS")?;
        let query = cursor.rest().to_vec();
        if self.context.exists(&name) {
            return if if_not_exists {
                Ok(())
            } else {
                Err(user(format!("'{name}' already exists")))
            };
        }
        let (plan, hints) = self.plan(&query)?;
        if let LogicalPlan::Dml(_) = plan {
            return Err(user("a view is defined by a SELECT"));
        }
        if !hints.is_empty() {
            self.view_hints.insert(name.clone(), hints);
        }
        self.context.views.insert(name, plan);
        Ok(())
    }

    fn set(&mut self, tokens: &[TokenWithSpan]) -> Result<()> {
        let mut cursor = Cursor::new(tokens);
        if cursor.word("RESET") {
            if cursor.at_end() {
                self.settings = Settings::default();
            } else {
                let key = cursor.string("an option key in quotes")?;
                let mut settings = Settings::default();
                for (k, v) in self.settings.raw.iter().filter(|(k, _)| **k != key) {
                    settings.set(k, v)?;
                }
                self.settings = settings;
            }
            return Ok(());
        }
        cursor.expect_word("SET")?;
        let key = match cursor.peek() {
            Some(Token::SingleQuotedString(_)) => cursor.string("an option key")?,
            // SET a.b.c = value (unquoted, as Flink's SQL client also accepts).
            _ => {
                let mut key = cursor.ident("an option key")?;
                while cursor.peek() == Some(&Token::Period) {
                    key.push_str(&cursor.dot()?);
                    key.push_str(&cursor.ident("an option key")?);
                }
                key
            }
        };
        if cursor.peek() != Some(&Token::Eq) {
            return Err(cursor.error("expected SET 'key' = 'value'"));
        }
        let value = match cursor.rest().get(1).map(|t| &t.token) {
            Some(Token::SingleQuotedString(s)) | Some(Token::Number(s, _)) => s.clone(),
            Some(Token::Word(w)) => w.value.clone(),
            _ => return Err(cursor.error("expected SET 'key' = 'value'")),
        };
        if cursor.rest().len() > 2 {
            return Err(user(format!(
                "unexpected '{}' after the value",
                cursor.rest()[2].token
            ))
            .at(script::location(&cursor.rest()[2])));
        }
        self.settings.set(&key, &value)
    }

    fn create_table(&mut self, table: CreateTable) -> Result<()> {
        if self.context.exists(&table.name) {
            return if table.if_not_exists {
                Ok(())
            } else {
                Err(user(format!("table '{}' already exists", table.name))
                    .hint("use CREATE TABLE IF NOT EXISTS, or DROP TABLE first"))
            };
        }
        // The connector's columns: physical and metadata ones.
        let read_fields: Vec<Field> = table
            .columns
            .iter()
            .filter(|c| !matches!(c.kind, ColumnKind::Computed(_)))
            .filter_map(|c| c.field.clone())
            .collect();
        let read_schema = Arc::new(Schema::new(read_fields));
        let df_read = DFSchema::try_from(read_schema.as_ref().clone()).map_err(plan_error)?;
        let planner = SqlToRel::new_with_options(&self.context, parser_options());
        let mut computed = Vec::new();
        let mut fields = Vec::new();
        for column in &table.columns {
            match (&column.kind, &column.field) {
                (ColumnKind::Computed(sql), _) => {
                    let mut sql = sql.clone();
                    crate::functions::prepare(sql.as_mut(), &|name| {
                        self.context.has_function(name)
                    })?;
                    let expr = planner
                        .sql_to_expr(*sql, &df_read, &mut PlannerContext::new())
                        .map_err(|e| {
                            plan_error(e).hint(format!("computed column '{}'", column.name))
                        })?;
                    let expr = weir_operators::expr::coerce(expr, &df_read)
                        .map_err(|e| user(e.to_string()))?;
                    let (_, field) = expr.to_field(&df_read).map_err(|e| {
                        plan_error(e).hint(format!("computed column '{}'", column.name))
                    })?;
                    fields.push(Field::new(
                        &column.name,
                        field.data_type().clone(),
                        field.is_nullable(),
                    ));
                    computed.push((column.name.clone(), expr));
                }
                (_, Some(field)) => fields.push(field.clone()),
                (_, None) => return Err(user(format!("column '{}' has no type", column.name))),
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let mut seen = std::collections::HashSet::new();
        for f in schema.fields() {
            if !seen.insert(f.name()) {
                return Err(user(format!("column '{}' is declared twice", f.name())));
            }
        }
        let watermark = match &table.watermark {
            None => None,
            Some(w) => {
                let field = schema.field_with_name(&w.column).map_err(|_| {
                    user(format!(
                        "WATERMARK FOR '{}': no such column in '{}'",
                        w.column, table.name
                    ))
                })?;
                if !matches!(
                    field.data_type(),
                    arrow::datatypes::DataType::Timestamp(_, _)
                ) {
                    return Err(user(format!(
                        "WATERMARK FOR '{}': the column is {}, not a TIMESTAMP(3) or TIMESTAMP_LTZ(3)",
                        w.column,
                        field.data_type()
                    )));
                }
                let delay = self.watermark_delay(&w.column, &w.expr)?;
                Some(
                    weir_engine::time::WatermarkStrategy::bounded_out_of_orderness(
                        &w.column, delay,
                    ),
                )
            }
        };
        for key in table.primary_key.iter().chain(&table.partitioned_by) {
            if schema.index_of(key).is_err() {
                return Err(user(format!(
                    "key column '{key}' is not a column of '{}'",
                    table.name
                )));
            }
        }
        let mut spec = TableSpec::new(&table.name, read_schema, &[]);
        spec.options = table.options.iter().cloned().collect();
        spec.partition_by = table.partitioned_by.clone();
        spec.primary_key = table.primary_key.clone();
        spec.metadata = table
            .columns
            .iter()
            .filter_map(|c| match &c.kind {
                ColumnKind::Metadata { key } => Some((c.name.clone(), key.clone())),
                _ => None,
            })
            .collect();
        // Check the options now (as a source or as a sink, whichever the connector is).
        registry::check_options(&spec).map_err(|e| user(e.to_string()))?;
        if let Some(access) = &self.file_access {
            let programs = weir_connectors::kafka::PROGRAM_PROPERTIES;
            if let Some(key) = spec.options.keys().find(|k| programs.contains(&k.as_str())) {
                return Err(user(format!(
                    "table '{}': option '{key}' loads or runs a program: not allowed in a job submitted to a server",
                    table.name
                )));
            }
            for (key, path) in registry::local_paths(&spec).map_err(|e| user(e.to_string()))? {
                let what = format!("table '{}': option '{key}'", table.name);
                let resolved = access.resolve(&what, &path)?;
                spec.options
                    .insert(key, resolved.to_string_lossy().into_owned());
            }
        }
        self.context.tables.insert(
            table.name.clone(),
            Arc::new(Table {
                spec,
                schema,
                computed,
                watermark,
                primary_key: table.primary_key,
            }),
        );
        Ok(())
    }

    /// The delay of `WATERMARK FOR c AS c - INTERVAL ...` (or `AS c`: no delay).
    fn watermark_delay(&self, column: &str, expr: &ast::Expr) -> Result<Duration> {
        let same_column =
            |e: &ast::Expr| matches!(e, ast::Expr::Identifier(i) if i.value == column);
        let unsupported = || {
            user(format!("unsupported watermark expression '{expr}'"))
                .hint(format!("Weir supports WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND (bounded out-of-orderness) or AS {column}"))
        };
        if same_column(expr) {
            return Ok(Duration::ZERO);
        }
        let ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } = expr
        else {
            return Err(unsupported());
        };
        if !same_column(left) {
            return Err(unsupported());
        }
        let planner = SqlToRel::new_with_options(&self.context, parser_options());
        let delay = planner
            .sql_to_expr(
                right.as_ref().clone(),
                &DFSchema::empty(),
                &mut PlannerContext::new(),
            )
            .and_then(interval_ms)
            .map_err(|e| plan_error(e).hint("e.g. INTERVAL '5' SECOND"))?;
        u64::try_from(delay)
            .map(Duration::from_millis)
            .map_err(|_| user("the watermark delay must not be negative"))
    }
}
