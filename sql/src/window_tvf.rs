//! Flink's window table-valued functions: `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`,
//! `HOP(.., slide, size)`, `CUMULATE(.., step, size)`, `SESSION(TABLE t PARTITION BY k, .., gap)`
//! and their named-argument forms (`DATA =>`, `TIMECOL =>`, `SIZE =>`, ...).
//!
//! sqlparser cannot read `TABLE t` as a function argument, so [`rewrite`] replaces each call in
//! the token stream with a placeholder table name and keeps the parsed arguments aside;
//! [`WindowTvfPlanner`] (a DataFusion relation planner) turns the placeholder back into a
//! [`WindowTvfNode`]: the input relation plus `window_start`, `window_end` and `window_time`.
//! The Weir planner then runs `GROUP BY window_start, window_end, ...` over it as a window
//! operator.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion_common::{DFSchema, DFSchemaRef, Result as DfResult, ScalarValue};
use datafusion_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion_sql::sqlparser::ast::{self, SetExpr, TableFactor};
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};
use weir_operators::window::{WindowSpec, WINDOW_END, WINDOW_START};

use crate::error::{user, Result};
use crate::script::{is_word, location, DIALECT};

/// Name of the column Flink adds with the window's time attribute (`window_end - 1 ms`).
pub const WINDOW_TIME: &str = "window_time";

const PLACEHOLDER: &str = "__weir_window_";

/// Which window function, before its durations are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TvfKind {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

impl TvfKind {
    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "TUMBLE" => Some(TvfKind::Tumble),
            "HOP" => Some(TvfKind::Hop),
            "CUMULATE" => Some(TvfKind::Cumulate),
            "SESSION" => Some(TvfKind::Session),
            _ => None,
        }
    }

    /// The function's name, as written in SQL.
    pub fn name(self) -> &'static str {
        match self {
            TvfKind::Tumble => "TUMBLE",
            TvfKind::Hop => "HOP",
            TvfKind::Cumulate => "CUMULATE",
            TvfKind::Session => "SESSION",
        }
    }

    /// Names of the duration arguments, in positional order.
    fn durations(self) -> &'static [&'static str] {
        match self {
            TvfKind::Tumble => &["SIZE"],
            TvfKind::Hop => &["SLIDE", "SIZE"],
            TvfKind::Cumulate => &["STEP", "SIZE"],
            TvfKind::Session => &["GAP"],
        }
    }
}

/// A window TVF call as written, taken out of the token stream.
#[derive(Debug, Clone)]
pub struct WindowCall {
    pub kind: TvfKind,
    pub input: String,
    pub partition_by: Vec<String>,
    pub time_column: String,
    /// Duration arguments in the order of [`TvfKind::durations`].
    pub durations: Vec<ast::Expr>,
}

/// Replaces every window TVF call in `tokens` with a placeholder table name; returns the calls
/// in placeholder order.
pub fn rewrite(tokens: &[TokenWithSpan]) -> Result<(Vec<TokenWithSpan>, Vec<WindowCall>)> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut calls = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // `TABLE ( <window function> (`
        let call = match (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3)) {
            (Some(open), Some(function), Some(args))
                if is_word(&tokens[i].token, "TABLE")
                    && open.token == Token::LParen
                    && args.token == Token::LParen =>
            {
                match &function.token {
                    Token::Word(name) => TvfKind::parse(&name.value).map(|kind| (kind, name)),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((kind, name)) = call else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let at = location(&tokens[i]);
        let close = matching_paren(tokens, i + 3)
            .ok_or_else(|| user(format!("{} call is not closed with ')'", name.value)).at(at))?;
        if !matches!(tokens.get(close + 1).map(|t| &t.token), Some(Token::RParen)) {
            return Err(user("TABLE(...) around a window function is not closed with ')'").at(at));
        }
        let call =
            parse_call(kind, &tokens[i + 4..close]).map_err(|e| e.at(at).hint(usage(kind)))?;
        calls.push(call);
        let mut placeholder = tokens[i].clone();
        placeholder.token = Token::Word(Word {
            value: format!("{PLACEHOLDER}{}", calls.len() - 1),
            quote_style: None,
            keyword: datafusion_sql::sqlparser::keywords::Keyword::NoKeyword,
        });
        out.push(placeholder);
        i = close + 2;
    }
    Ok((out, calls))
}

fn usage(kind: TvfKind) -> &'static str {
    match kind {
        TvfKind::Tumble => "TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))",
        TvfKind::Hop => "TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) (slide, then size)",
        TvfKind::Cumulate => "TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' HOUR)) (step, then size)",
        TvfKind::Session => "TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' MINUTE))",
    }
}

/// Index of the `)` matching the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, token) in tokens.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at top-level commas.
fn split_args(tokens: &[TokenWithSpan]) -> Vec<&[TokenWithSpan]> {
    let mut args = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (j, token) in tokens.iter().enumerate() {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                args.push(&tokens[start..j]);
                start = j + 1;
            }
            _ => {}
        }
    }
    args.push(&tokens[start..]);
    args
}

fn ident(token: Option<&TokenWithSpan>) -> Option<String> {
    match token.map(|t| &t.token) {
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    }
}

fn parse_call(kind: TvfKind, tokens: &[TokenWithSpan]) -> Result<WindowCall> {
    let mut data = None;
    let mut timecol = None;
    let mut durations: Vec<Option<ast::Expr>> = vec![None; kind.durations().len()];
    let mut positional = 0;
    for arg in split_args(tokens) {
        let (name, arg) = match arg {
            [name, arrow, rest @ ..] if matches!(arrow.token, Token::RArrow) => {
                (ident(Some(name)).map(|n| n.to_ascii_uppercase()), rest)
            }
            _ => (None, arg),
        };
        let slot = name.unwrap_or_else(|| {
            let names: Vec<&str> = ["DATA", "TIMECOL"]
                .iter()
                .chain(kind.durations())
                .copied()
                .collect();
            let slot = names.get(positional).copied().unwrap_or("OFFSET");
            positional += 1;
            slot.to_string()
        });
        match slot.as_str() {
            "DATA" => data = Some(parse_data(arg)?),
            "TIMECOL" => timecol = Some(parse_descriptor(arg)?),
            "OFFSET" => {
                return Err(user(
                    "window offsets (the OFFSET argument) are not supported yet",
                ))
            }
            other => {
                let index = kind
                    .durations()
                    .iter()
                    .position(|d| *d == other)
                    .ok_or_else(|| user(format!("unknown window argument {other}")))?;
                let expr = Parser::new(&DIALECT)
                    .with_tokens_with_locations(arg.to_vec())
                    .parse_expr()
                    .map_err(|e| user(format!("cannot read the {other} argument: {e}")))?;
                durations[index] = Some(expr);
            }
        }
    }
    let (input, partition_by) =
        data.ok_or_else(|| user("the window function has no table argument (TABLE t)"))?;
    if kind != TvfKind::Session && !partition_by.is_empty() {
        return Err(user("PARTITION BY is only allowed in SESSION windows"));
    }
    let time_column =
        timecol.ok_or_else(|| user("the window function has no DESCRIPTOR(time column)"))?;
    let durations = durations
        .into_iter()
        .zip(kind.durations())
        .map(|(d, name)| d.ok_or_else(|| user(format!("the window function has no {name}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(WindowCall {
        kind,
        input,
        partition_by,
        time_column,
        durations,
    })
}

/// `TABLE name [PARTITION BY col | PARTITION BY (col, ...)]`, or a subquery in parentheses
/// instead of `TABLE name`. A subquery is returned as its text in parentheses.
fn parse_data(tokens: &[TokenWithSpan]) -> Result<(String, Vec<String>)> {
    let bad =
        || user("expected TABLE <name> or (SELECT ...) as the window function's first argument");
    let (name, rest) = match tokens.first().map(|t| &t.token) {
        Some(Token::LParen) => {
            let close = matching_paren(tokens, 0).ok_or_else(bad)?;
            let text: Vec<String> = tokens[..=close]
                .iter()
                .map(|t| t.token.to_string())
                .collect();
            (text.join(" "), &tokens[close + 1..])
        }
        Some(token) if is_word(token, "TABLE") => {
            let name = ident(tokens.get(1)).ok_or_else(bad)?;
            (name, &tokens[2..])
        }
        _ => return Err(bad()),
    };
    if rest.is_empty() {
        return Ok((name, Vec::new()));
    }
    if !(rest.len() >= 3 && is_word(&rest[0].token, "PARTITION") && is_word(&rest[1].token, "BY")) {
        return Err(user(format!(
            "unexpected '{}' after TABLE {name}",
            rest[0].token
        )));
    }
    let keys = rest[2..]
        .iter()
        .filter_map(|t| match &t.token {
            Token::Word(w) => Some(Ok(w.value.clone())),
            Token::LParen | Token::RParen | Token::Comma => None,
            other => Some(Err(user(format!("unexpected '{other}' in PARTITION BY")))),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((name, keys))
}

/// `DESCRIPTOR(col)`.
fn parse_descriptor(tokens: &[TokenWithSpan]) -> Result<String> {
    match tokens {
        [d, open, column, close]
            if is_word(&d.token, "DESCRIPTOR")
                && matches!(open.token, Token::LParen)
                && matches!(close.token, Token::RParen) =>
        {
            ident(Some(column)).ok_or_else(|| user("DESCRIPTOR needs a column name"))
        }
        _ => Err(user(
            "expected DESCRIPTOR(time column) as the time argument",
        )),
    }
}

/// A window TVF in a logical plan: the input's columns plus `window_start`, `window_end`,
/// `window_time`. Only `GROUP BY window_start, window_end, ...` over it can be run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowTvfNode {
    pub input: LogicalPlan,
    /// The window, in milliseconds (as `WindowSpec`, which is not hashable).
    pub kind: TvfKind,
    pub params_ms: Vec<i64>,
    pub time_column: String,
    pub partition_by: Vec<String>,
    pub schema: DFSchemaRef,
}

impl std::hash::Hash for TvfKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state)
    }
}

impl PartialOrd for TvfKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (*self as u8).partial_cmp(&(*other as u8))
    }
}

impl PartialOrd for WindowTvfNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (
            &self.input,
            self.kind,
            &self.params_ms,
            &self.time_column,
            &self.partition_by,
        )
            .partial_cmp(&(
                &other.input,
                other.kind,
                &other.params_ms,
                &other.time_column,
                &other.partition_by,
            ))
    }
}

impl WindowTvfNode {
    pub fn spec(&self) -> WindowSpec {
        let p = &self.params_ms;
        match self.kind {
            TvfKind::Tumble => WindowSpec::Tumble { size_ms: p[0] },
            TvfKind::Hop => WindowSpec::Hop {
                slide_ms: p[0],
                size_ms: p[1],
            },
            TvfKind::Cumulate => WindowSpec::Cumulate {
                step_ms: p[0],
                size_ms: p[1],
            },
            TvfKind::Session => WindowSpec::Session { gap_ms: p[0] },
        }
    }

    /// The window columns' type.
    pub fn window_type() -> DataType {
        DataType::Timestamp(TimeUnit::Millisecond, None)
    }

    fn new(
        input: LogicalPlan,
        kind: TvfKind,
        params_ms: Vec<i64>,
        time_column: String,
        partition_by: Vec<String>,
    ) -> DfResult<Self> {
        let window_fields = [WINDOW_START, WINDOW_END, WINDOW_TIME]
            .into_iter()
            .map(|name| (None, Arc::new(Field::new(name, Self::window_type(), false))));
        let fields: Vec<_> = input
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .chain(window_fields)
            .collect();
        let schema = Arc::new(DFSchema::new_with_metadata(fields, Default::default())?);
        Ok(WindowTvfNode {
            input,
            kind,
            params_ms,
            time_column,
            partition_by,
            schema,
        })
    }
}

impl UserDefinedLogicalNodeCore for WindowTvfNode {
    fn name(&self) -> &str {
        "WindowTVF"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WindowTVF: {} on {}",
            self.spec().describe(),
            self.time_column
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        WindowTvfNode::new(
            inputs.swap_remove(0),
            self.kind,
            self.params_ms.clone(),
            self.time_column.clone(),
            self.partition_by.clone(),
        )
    }
}

/// Plans the placeholders of one statement back into [`WindowTvfNode`]s.
#[derive(Debug)]
pub struct WindowTvfPlanner {
    pub calls: Vec<WindowCall>,
}

impl RelationPlanner for WindowTvfPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let Some((call, alias)) = placeholder(&relation, PLACEHOLDER, &self.calls) else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let input = context.plan(table_factor(&call.input)?)?;
        let time = input
            .schema()
            .iter()
            .find(|(_, f)| f.name() == &call.time_column)
            .map(|(_, f)| f.data_type().clone());
        match time {
            Some(DataType::Timestamp(_, _)) => {}
            Some(other) => {
                return datafusion_common::plan_err!(
                    "the window time column '{}' of '{}' is {other}, not a TIMESTAMP",
                    call.time_column,
                    call.input
                )
            }
            None => {
                return datafusion_common::plan_err!(
                    "the window time column '{}' is not a column of '{}'",
                    call.time_column,
                    call.input
                )
            }
        }
        for key in &call.partition_by {
            if input.schema().iter().all(|(_, f)| f.name() != key) {
                return datafusion_common::plan_err!(
                    "PARTITION BY column '{key}' is not a column of '{}'",
                    call.input
                );
            }
        }
        let empty = DFSchema::empty();
        let params_ms = call
            .durations
            .iter()
            .map(|d| interval_ms(context.sql_to_expr(d.clone(), &empty)?))
            .collect::<DfResult<Vec<_>>>()?;
        let node = WindowTvfNode::new(
            input,
            call.kind,
            params_ms,
            call.time_column.clone(),
            call.partition_by.clone(),
        )?;
        let spec = node.spec();
        if let Err(e) = spec.validate() {
            return datafusion_common::plan_err!("{e}");
        }
        let plan = LogicalPlan::Extension(datafusion_expr::Extension {
            node: Arc::new(node),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// The call a placeholder table name (`<prefix><index>`, put in the tokens by a rewrite)
/// stands for, and the alias written after it; `None` for any other relation.
pub(crate) fn placeholder<'a, T>(
    relation: &TableFactor,
    prefix: &str,
    calls: &'a [T],
) -> Option<(&'a T, Option<ast::TableAlias>)> {
    let TableFactor::Table { name, alias, .. } = relation else {
        return None;
    };
    let call = name
        .to_string()
        .strip_prefix(prefix)
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| calls.get(n))?;
    Some((call, alias.clone()))
}

/// `name` (or a parenthesized subquery) as a table factor, by parsing `SELECT * FROM name`.
pub(crate) fn table_factor(name: &str) -> DfResult<TableFactor> {
    let sql = if name.starts_with('(') {
        format!("SELECT * FROM {name} AS __weir_window_input")
    } else {
        format!("SELECT * FROM {}", quote(name))
    };
    let mut statement = Parser::new(&DIALECT)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_statement())
        .map_err(|e| datafusion_common::DataFusionError::Plan(e.to_string()))?;
    // The subquery gets Flink's functions and names like the rest of the statement.
    crate::functions::rewrite::rewrite(&mut statement);
    if let ast::Statement::Query(query) = statement {
        if let SetExpr::Select(select) = *query.body {
            if let Some(from) = select.from.into_iter().next() {
                return Ok(from.relation);
            }
        }
    }
    datafusion_common::plan_err!("cannot refer to table '{name}'")
}

/// Quotes an identifier for re-parsing (keeps its case).
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A constant interval (or a number of milliseconds) in milliseconds.
pub fn interval_ms(expr: Expr) -> DfResult<i64> {
    let value = match &expr {
        Expr::Literal(value, _) => value.clone(),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Literal(value, _) => value.clone(),
            _ => ScalarValue::Null,
        },
        _ => ScalarValue::Null,
    };
    let ms = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)
        }
        ScalarValue::IntervalYearMonth(_) | ScalarValue::IntervalMonthDayNano(Some(_)) => {
            return datafusion_common::plan_err!(
                "window durations in months or years are not supported (months have no fixed length): {expr}"
            )
        }
        _ => {
            return datafusion_common::plan_err!(
                "expected a constant INTERVAL such as INTERVAL '10' SECOND, got {expr}"
            )
        }
    };
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::split;

    fn calls(sql: &str) -> Vec<WindowCall> {
        let statement = split(sql).unwrap().remove(0);
        rewrite(&statement.tokens).unwrap().1
    }

    #[test]
    fn reads_positional_and_named_arguments() {
        let c = calls("SELECT * FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))");
        assert_eq!(
            (c[0].kind, c[0].input.as_str(), c[0].time_column.as_str()),
            (TvfKind::Hop, "bids", "ts")
        );
        assert_eq!(c[0].durations[1].to_string(), "INTERVAL '10' SECOND");
        let c = calls("SELECT * FROM TABLE(SESSION(DATA => TABLE bids PARTITION BY (a, b), TIMECOL => DESCRIPTOR(ts), GAP => INTERVAL '5' MINUTE)) AS w");
        assert_eq!(c[0].partition_by, vec!["a", "b"]);
        assert_eq!(c[0].durations[0].to_string(), "INTERVAL '5' MINUTE");
    }

    #[test]
    fn bad_calls_name_the_problem() {
        let statement = split("SELECT * FROM TABLE(TUMBLE(TABLE t, ts, INTERVAL '1' SECOND))")
            .unwrap()
            .remove(0);
        let error = rewrite(&statement.tokens).unwrap_err();
        assert!(error.message.contains("DESCRIPTOR"), "{error}");
        assert_eq!(error.location.unwrap().column, 15);
        assert!(error.hint.unwrap().contains("TUMBLE(TABLE t"));
    }
}
