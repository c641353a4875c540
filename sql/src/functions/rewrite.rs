//! Flink's SQL where it is only syntax over other functions, rewritten in the syntax tree
//! before planning:
//! - `MOD(a, b)` -> `a % b`; `IF(c, a, b)` -> `CASE WHEN c THEN a ELSE b END` (a NULL
//!   condition takes `b`, as Flink); `GREATEST`/`LEAST` -> NULL if an argument is, else
//!   DataFusion's; `HOUR(ts)` and friends -> `date_part` (`DAYOFWEEK` 1 = Sunday);
//!   `STARTSWITH`, `ENDSWITH`, `INSTR`, `TRUNCATE`, `E()`; `IS_DIGIT`/`IS_ALPHA` (FALSE for
//!   NULL); `LEFT`/`RIGHT` (`''` for a negative length); `SHA224`...`SHA512` and `SHA2(s, bits)` -> hex of DataFusion's `digest`;
//!   `REGEXP_REPLACE` replaces every match; `FLOOR(ts TO unit)` -> `date_trunc`,
//!   `CEIL(ts TO unit)` -> the next boundary unless `ts` is on one;
//!   `LOG(x)` -> `ln(x)` (Flink's one-argument `LOG` is natural).
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

fn number(n: i64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).into())
}

fn case(condition: Expr, then: Expr, otherwise: Expr) -> Expr {
    Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![ast::CaseWhen {
            condition,
            result: then,
        }],
        else_result: Some(Box::new(otherwise)),
    }
}

/// `date_trunc(unit, ts)`: `FLOOR(ts TO unit)`.
fn date_trunc(unit: &str, ts: &Expr) -> Expr {
    function(
        "date_trunc",
        vec![string(unit.to_ascii_lowercase()), ts.clone()],
    )
}

/// `date_part(part, ts)` as a BIGINT.
fn date_part(part: &str, ts: Expr) -> Expr {
    Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(function("date_part", vec![string(part.into()), ts])),
        data_type: ast::DataType::BigInt(None),
        array: false,
        format: None,
    }
}

/// The SHA-2 digest of `s` with `bits` bits, as lower-case hex (Flink's `SHA256` and family).
fn sha(s: &Expr, bits: &str) -> Expr {
    function(
        "encode",
        vec![
            function("digest", vec![s.clone(), string(format!("sha{bits}"))]),
            string("hex".into()),
        ],
    )
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
        ("IF", [condition, then, otherwise]) => {
            case(condition.clone(), then.clone(), otherwise.clone())
        }
        // NULL if any argument is NULL (DataFusion's skip NULLs, as PostgreSQL's).
        ("GREATEST" | "LEAST", [_, ..]) => {
            let any_null = args
                .iter()
                .map(|a| Expr::IsNull(Box::new(a.clone())))
                .reduce(|a, b| Expr::BinaryOp {
                    left: Box::new(a),
                    op: BinaryOperator::Or,
                    right: Box::new(b),
                })?;
            let null = Expr::Value(Value::Null.into());
            case(
                any_null,
                null,
                function(&name.to_ascii_lowercase(), args.clone()),
            )
        }
        ("CEILING", [x]) => function("ceil", vec![x.clone()]),
        // Every match, as Java's replaceAll (DataFusion's replaces the first without 'g').
        ("REGEXP_REPLACE", [s, pattern, replacement]) => function(
            "regexp_replace",
            vec![
                s.clone(),
                pattern.clone(),
                replacement.clone(),
                string("g".into()),
            ],
        ),
        // An integer (BIGINT) sign, as Flink's for integers (DataFusion's `signum` is
        // always a DOUBLE).
        ("SIGN", [x]) => {
            let compare = |op: BinaryOperator| Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(x.clone()))),
                op,
                right: Box::new(number(0)),
            };
            Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions: vec![
                    ast::CaseWhen {
                        condition: compare(BinaryOperator::Gt),
                        result: number(1),
                    },
                    ast::CaseWhen {
                        condition: compare(BinaryOperator::Lt),
                        result: number(-1),
                    },
                    ast::CaseWhen {
                        condition: compare(BinaryOperator::Eq),
                        result: number(0),
                    },
                ],
                else_result: None,
            }
        }
        ("STARTSWITH", [s, prefix]) => function("starts_with", vec![s.clone(), prefix.clone()]),
        ("ENDSWITH", [s, suffix]) => function("ends_with", vec![s.clone(), suffix.clone()]),
        ("INSTR", [s, sub]) => function("strpos", vec![s.clone(), sub.clone()]),
        ("TRUNCATE", [x]) => function("trunc", vec![x.clone()]),
        ("TRUNCATE", [x, digits]) => function("trunc", vec![x.clone(), digits.clone()]),
        ("E", []) => Expr::Value(Value::Number(std::f64::consts::E.to_string(), false).into()),
        // Flink: 1 = Sunday ... 7 = Saturday; DataFusion's `dow` is 0 = Sunday.
        ("DAYOFWEEK", [ts]) => Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(date_part("dow", ts.clone())),
            op: BinaryOperator::Plus,
            right: Box::new(number(1)),
        })),
        // FALSE (not NULL) for NULL; letters and digits of any script, as Java's.
        // A negative length is '' (DataFusion's counts from the other end, as PostgreSQL).
        ("LEFT" | "RIGHT", [s, n]) => case(
            Expr::BinaryOp {
                left: Box::new(n.clone()),
                op: BinaryOperator::Lt,
                right: Box::new(number(0)),
            },
            string(String::new()),
            function(&name.to_ascii_lowercase(), vec![s.clone(), n.clone()]),
        ),
        ("IS_DIGIT" | "IS_ALPHA", [s]) => function(
            "coalesce",
            vec![
                function(
                    "regexp_like",
                    vec![
                        s.clone(),
                        string(
                            if name == "IS_DIGIT" {
                                r"^\p{Nd}+$"
                            } else {
                                r"^\p{L}+$"
                            }
                            .into(),
                        ),
                    ],
                ),
                Expr::Value(Value::Boolean(false).into()),
            ],
        ),
        ("SHA224" | "SHA256" | "SHA384" | "SHA512", [s]) => sha(s, &name[3..]),
        ("SHA2", [s, Expr::Value(bits)]) => match &bits.value {
            Value::Number(n, _) if ["224", "256", "384", "512"].contains(&n.as_str()) => sha(s, n),
            _ => return None,
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
            date_part(&part.to_ascii_lowercase(), ts.clone())
        }
        // Flink's LOG(x) is the natural logarithm (DataFusion's is base 10).
        ("LOG", [x]) => function("ln", vec![x.clone()]),
        _ => return None,
    };
    Some(rewritten)
}

/// The precision of a timestamp literal: its fraction digits, rounded up to what Arrow has
/// (0, 3, 6, 9).
fn literal_precision(text: &str) -> u64 {
    let digits = text.rsplit_once('.').map_or(0, |(_, f)| {
        f.trim().chars().take_while(char::is_ascii_digit).count()
    });
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
            Expr::Floor {
                expr: ts,
                field: ast::CeilFloorKind::DateTimeField(unit),
            } if *unit != ast::DateTimeField::NoDateTime => {
                *expr = date_trunc(&unit.to_string(), ts)
            }
            Expr::Ceil {
                expr: ts,
                field: ast::CeilFloorKind::DateTimeField(unit),
            } if *unit != ast::DateTimeField::NoDateTime => {
                // The next unit boundary, unless already on one.
                let floor = date_trunc(&unit.to_string(), ts);
                let on_boundary = Expr::BinaryOp {
                    left: Box::new(floor.clone()),
                    op: BinaryOperator::Eq,
                    right: ts.clone(),
                };
                let next = Expr::BinaryOp {
                    left: Box::new(floor),
                    op: BinaryOperator::Plus,
                    right: Box::new(Expr::Interval(ast::Interval {
                        value: Box::new(string("1".into())),
                        leading_field: Some(unit.clone()),
                        leading_precision: None,
                        last_field: None,
                        fractional_seconds_precision: None,
                    })),
                };
                *expr = case(on_boundary, ts.as_ref().clone(), next);
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
