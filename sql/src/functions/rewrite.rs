//! Flink's SQL where it is only syntax over other functions, rewritten in the syntax tree
//! before planning:
//! - `MOD(a, b)` -> `a % b`; `IF(c, a, b)` -> `CASE WHEN c THEN a ELSE b END` (a NULL
//!   condition takes `b`, as Flink); `HOUR(ts)` and friends -> `date_part`;
//!   `SPLIT_INDEX(s, sep, i)` (0-based) -> `split_part(s, sep, i + 1)`, NULL when absent.
//! - A `TIMESTAMP '...'` literal has the precision of the fraction it is written with, as in
//!   Flink (`TIMESTAMP '2025-01-01 10:00:00'` is a `TIMESTAMP(0)`), not always nanoseconds.
//! - Select items are named as Flink names them: a selected field of a ROW column
//!   (`bid.auction`) by the field (`auction`), any other unaliased expression `EXPR$<i>` (its
//!   position), so `SELECT v, CAST(v AS INT)` does not have two columns named `v`, and an
//!   `INSERT`'s select list maps to the table's columns by position as in Flink.

use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    Value, VisitMut,
};

fn function(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn string(s: String) -> Expr {
    Expr::Value(Value::SingleQuotedString(s).into())
}

/// The plain positional arguments of a call, if that is all it has.
fn plain_args(f: &ast::Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn rewrite_call(f: &ast::Function) -> Option<Expr> {
    let name = f.name.to_string().to_ascii_uppercase();
    let args = plain_args(f)?;
    let rewritten = match (name.as_str(), args.as_slice()) {
        ("MOD", [a, b]) => Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(Expr::Nested(Box::new(a.clone()))),
            op: BinaryOperator::Modulo,
            right: Box::new(Expr::Nested(Box::new(b.clone()))),
        })),
        ("IF", [condition, then, otherwise]) => Expr::Case {
            case_token: ast::helpers::attached_token::AttachedToken::empty(),
            end_token: ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![ast::CaseWhen {
                condition: condition.clone(),
                result: then.clone(),
            }],
            else_result: Some(Box::new(otherwise.clone())),
        },
        (
            "HOUR" | "MINUTE" | "SECOND" | "YEAR" | "MONTH" | "DAYOFMONTH" | "DAYOFYEAR"
            | "QUARTER" | "WEEK",
            [ts],
        ) => {
            let part = match name.as_str() {
                "DAYOFMONTH" => "day",
                "DAYOFYEAR" => "doy",
                other => other,
            };
            Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(function(
                    "date_part",
                    vec![string(part.to_ascii_lowercase()), ts.clone()],
                )),
                data_type: ast::DataType::BigInt(None),
                array: false,
                format: None,
            }
        }
        ("SPLIT_INDEX", [s, separator, index]) => function(
            "nullif",
            vec![
                function(
                    "split_part",
                    vec![
                        s.clone(),
                        separator.clone(),
                        Expr::BinaryOp {
                            left: Box::new(index.clone()),
                            op: BinaryOperator::Plus,
                            right: Box::new(Expr::Value(Value::Number("1".into(), false).into())),
                        },
                    ],
                ),
                string(String::new()),
            ],
        ),
        _ => return None,
    };
    Some(rewritten)
}

/// The precision of a timestamp literal: its fraction digits, rounded up to what Arrow has
/// (0, 3, 6, 9).
fn literal_precision(text: &str) -> u64 {
    let digits = text
        .rsplit_once('.')
        .map_or(0, |(_, f)| f.trim().chars().take_while(char::is_ascii_digit).count());
    match digits {
        0 => 0,
        1..=3 => 3,
        4..=6 => 6,
        _ => 9,
    }
}

/// Names select items as Flink does (see the module doc).
struct NameFields;

impl ast::VisitorMut for NameFields {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        name_fields(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_fields(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(select) => {
            for (i, item) in select.projection.iter_mut().enumerate() {
                let ast::SelectItem::UnnamedExpr(expr) = item else {
                    continue;
                };
                let alias = match expr {
                    Expr::Identifier(_) => continue,
                    Expr::CompoundIdentifier(parts) => match parts.last() {
                        Some(last) => last.clone(),
                        None => continue,
                    },
                    _ => Ident::new(format!("EXPR${i}")),
                };
                *item = ast::SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias,
                };
            }
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            name_fields(left);
            name_fields(right);
        }
        _ => {}
    }
}

/// Rewrites Flink's syntax-only functions and names select items in `statement`.
pub fn rewrite<T: VisitMut>(statement: &mut T) {
    let _ = statement.visit(&mut NameFields);
    let _ = ast::visit_expressions_mut(statement, |expr| {
        match expr {
            Expr::Function(f) => {
                if let Some(new) = rewrite_call(f) {
                    *expr = new;
                }
            }
            Expr::TypedString(literal) => {
                if let ast::DataType::Timestamp(precision @ None, _) = &mut literal.data_type {
                    if let Value::SingleQuotedString(text) = &literal.value.value {
                        *precision = Some(literal_precision(text));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}
