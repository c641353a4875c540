//! `versioned FOR SYSTEM_TIME AS OF left.time`: Flink's temporal table syntax.
//!
//! The SQL parser's dialect does not read it, so [`rewrite`] takes it out of the token stream
//! (the table name becomes a placeholder, the `AS OF` column is kept aside) and
//! [`TemporalTablePlanner`] (a DataFusion relation planner) plans the placeholder as a
//! [`TemporalTableNode`] over the table. The Weir planner turns a join whose right input is
//! that node into an event-time temporal join.

use std::fmt;
use std::sync::Arc;

use datafusion_common::tree_node::Transformed;
use datafusion_common::{Column, DFSchema, DFSchemaRef, Result as DfResult};
use datafusion_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion_sql::sqlparser::ast::TableFactor;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

use crate::error::{user, Result};
use crate::script::{is_word, location};

const PLACEHOLDER: &str = "__weir_temporal_";

/// One `table FOR SYSTEM_TIME AS OF column` taken out of a statement.
#[derive(Debug, Clone)]
pub struct TemporalCall {
    /// The versioned table, as written.
    pub table: String,
    /// The `AS OF` column: `[qualifier.]name`, as written.
    pub as_of: Vec<String>,
}

/// Replaces each `name FOR SYSTEM_TIME AS OF column` in `tokens` with a placeholder table
/// name, returning the calls in placeholder order.
pub fn rewrite(tokens: &[TokenWithSpan]) -> Result<(Vec<TokenWithSpan>, Vec<TemporalCall>)> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut calls = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = ["FOR", "SYSTEM_TIME", "AS", "OF"]
            .iter()
            .enumerate()
            .all(|(k, word)| tokens.get(i + k).is_some_and(|t| is_word(&t.token, word)));
        if !starts {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let at = location(&tokens[i]);
        // The table name before: `name` or `a.b.name`.
        let mut name_start = out.len();
        while name_start > 0 {
            match &out[name_start - 1].token {
                Token::Word(_) => name_start -= 1,
                _ => break,
            }
            if name_start > 0 && out[name_start - 1].token == Token::Period {
                name_start -= 1;
            } else {
                break;
            }
        }
        if name_start == out.len() || out[name_start].token == Token::Period {
            return Err(user(
                "FOR SYSTEM_TIME AS OF follows the name of a table with a primary key and a watermark",
            )
            .at(at)
            .hint("FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON o.currency = r.currency"));
        }
        // Flink's alias comes after `AS OF ...`: `rates AS r FOR SYSTEM_TIME ...` is not it.
        let follows_from = name_start > 0
            && match &out[name_start - 1].token {
                Token::Comma => true,
                token => is_word(token, "JOIN") || is_word(token, "FROM"),
            };
        if !follows_from {
            return Err(user(
                "FOR SYSTEM_TIME AS OF follows the table name directly; its alias comes after it",
            )
            .at(at)
            .hint("JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r"));
        }
        let table: String = out[name_start..]
            .iter()
            .map(|t| match &t.token {
                Token::Word(w) => w.value.clone(),
                other => other.to_string(),
            })
            .collect();
        // The column after: `name` or `qualifier.name`.
        let mut j = i + 4;
        let mut as_of = Vec::new();
        while let Some(Token::Word(word)) = tokens.get(j).map(|t| &t.token) {
            as_of.push(word.value.clone());
            j += 1;
            if tokens.get(j).map(|t| &t.token) == Some(&Token::Period) {
                j += 1;
            } else {
                break;
            }
        }
        let ends = tokens.get(j).is_none_or(|t| match &t.token {
            Token::Word(w) => w.quote_style.is_none(),
            Token::Comma | Token::RParen | Token::SemiColon => true,
            _ => false,
        });
        if as_of.is_empty() || !ends {
            return Err(user(
                "FOR SYSTEM_TIME AS OF takes the time attribute of the left table (a column such as o.order_time), not an expression",
            )
            .at(at));
        }
        let mut placeholder = out[name_start].clone();
        placeholder.token = Token::Word(Word {
            value: format!("{PLACEHOLDER}{}", calls.len()),
            quote_style: None,
            keyword: datafusion_sql::sqlparser::keywords::Keyword::NoKeyword,
        });
        out.truncate(name_start);
        out.push(placeholder);
        calls.push(TemporalCall { table, as_of });
        i = j;
    }
    Ok((out, calls))
}

/// A versioned table read `FOR SYSTEM_TIME AS OF` a column of the other side of its join.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct TemporalTableNode {
    /// The table's rows (`SELECT * FROM table`).
    pub input: LogicalPlan,
    /// The `AS OF` column, as written (`[qualifier.]name`).
    pub as_of: Vec<String>,
}

impl UserDefinedLogicalNodeCore for TemporalTableNode {
    fn name(&self) -> &str {
        "TemporalTable"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TemporalTable: FOR SYSTEM_TIME AS OF {}",
            self.as_of.join(".")
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(TemporalTableNode {
            input: inputs.swap_remove(0),
            as_of: self.as_of.clone(),
        })
    }
}

/// Plans the placeholders of one statement back into [`TemporalTableNode`]s.
#[derive(Debug)]
pub struct TemporalTablePlanner {
    /// The statement's calls, in placeholder order ([`rewrite`]'s).
    pub calls: Vec<TemporalCall>,
}

impl RelationPlanner for TemporalTablePlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DfResult<RelationPlanning> {
        let Some((call, alias)) =
            crate::window_tvf::placeholder(&relation, PLACEHOLDER, &self.calls)
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let input = context.plan(crate::window_tvf::table_factor(&call.table)?)?;
        let plan = LogicalPlan::Extension(datafusion_expr::Extension {
            node: Arc::new(TemporalTableNode {
                input,
                as_of: call.as_of.clone(),
            }),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// The versioned table under a join's right input (through aliases and the column pruning
/// the optimizer puts above it), and that input rebuilt without the pruning.
pub fn temporal_right(plan: &LogicalPlan) -> Option<(TemporalTableNode, LogicalPlan)> {
    match plan {
        LogicalPlan::Extension(extension) => {
            let node = extension
                .node
                .as_any()
                .downcast_ref::<TemporalTableNode>()?;
            Some((node.clone(), plan.clone()))
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let (node, inner) = temporal_right(&alias.input)?;
            let aliased = datafusion_expr::logical_plan::SubqueryAlias::try_new(
                Arc::new(inner),
                alias.alias.clone(),
            )
            .ok()?;
            Some((node, LogicalPlan::SubqueryAlias(aliased)))
        }
        LogicalPlan::Projection(projection)
            if projection.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
        {
            temporal_right(&projection.input)
        }
        _ => None,
    }
}

/// Adds `left.time IS NOT NULL` to the condition of each join whose right input is read
/// `FOR SYSTEM_TIME AS OF left.time`, so that the optimizer keeps that column on the left
/// (Flink's planner marks temporal joins in their condition the same way). A time attribute
/// is never NULL, so the condition changes nothing; the Weir planner leaves it out.
pub fn mark_as_of(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        let LogicalPlan::Join(join) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some((node, _)) = temporal_right(&join.right) else {
            return Ok(Transformed::no(plan));
        };
        let Some(marker) = as_of_marker(&node, join.left.schema()) else {
            return Ok(Transformed::no(plan));
        };
        let mut join = join.clone();
        join.filter = Some(match join.filter.take() {
            Some(filter) => filter.and(marker),
            None => marker,
        });
        Ok(Transformed::yes(LogicalPlan::Join(join)))
    })
    .map(|t| t.data)
}

/// The `AS OF` column of `node` over `left`, as `column IS NOT NULL` (`None` if `left` has
/// no such column).
pub fn as_of_marker(node: &TemporalTableNode, left: &DFSchema) -> Option<Expr> {
    let column = as_of_column(node)?;
    left.has_column(&column)
        .then(|| Expr::Column(column).is_not_null())
}

/// The `AS OF` column as written (its qualifier kept as is, not parsed: `B.p` is `B`'s).
pub fn as_of_column(node: &TemporalTableNode) -> Option<Column> {
    match node.as_of.as_slice() {
        [name] => Some(Column::new_unqualified(name)),
        [qualifier @ .., name] => {
            use datafusion_common::TableReference;
            let relation = match qualifier {
                [table] => TableReference::bare(table.as_str()),
                [schema, table] => TableReference::partial(schema.as_str(), table.as_str()),
                [catalog, schema, table] => {
                    TableReference::full(catalog.as_str(), schema.as_str(), table.as_str())
                }
                _ => TableReference::bare(qualifier.join(".")),
            };
            Some(Column::new(Some(relation), name))
        }
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(sql: &str) -> Vec<TokenWithSpan> {
        crate::script::split(sql).unwrap().remove(0).tokens
    }

    fn text(tokens: &[TokenWithSpan]) -> String {
        tokens
            .iter()
            .map(|t| t.token.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_clause_becomes_a_placeholder() {
        let (out, calls) = rewrite(&tokens(
            "SELECT * FROM o JOIN db.rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.c = r.c",
        ))
        .unwrap();
        assert_eq!(
            text(&out),
            "SELECT * FROM o JOIN __weir_temporal_0 AS r ON o . c = r . c"
        );
        assert_eq!(calls[0].table, "db.rates");
        assert_eq!(calls[0].as_of, ["o", "ts"]);
    }

    #[test]
    fn an_alias_before_the_clause_is_refused() {
        let error = rewrite(&tokens(
            "SELECT * FROM o JOIN rates AS r FOR SYSTEM_TIME AS OF o.ts ON o.c = r.c",
        ))
        .unwrap_err();
        assert!(
            error.to_string().contains("its alias comes after it"),
            "{error}"
        );
    }

    #[test]
    fn an_expression_is_refused() {
        let error = rewrite(&tokens(
            "SELECT * FROM o JOIN rates FOR SYSTEM_TIME AS OF o.ts - INTERVAL '1' SECOND ON o.c = rates.c",
        ))
        .unwrap_err();
        assert!(error.to_string().contains("not an expression"), "{error}");
    }
}
