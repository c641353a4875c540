//! Flink's function names where they differ from DataFusion's, rewritten in the SQL syntax
//! tree before planning: `MOD(a, b)` -> `a % b`, `DATE_FORMAT(ts, 'yyyy-MM-dd')` ->
//! `to_char(ts, '%Y-%m-%d')`, `TO_TIMESTAMP(s [, format])` -> a `TIMESTAMP(3)` parsed with the
//! Java-style format, `HOUR(ts)` and friends -> `date_part`, `SPLIT_INDEX(s, sep, i)`
//! (0-based) -> `split_part(s, sep, i + 1)`, `NULL` when absent.
//!
//! Also as in Flink, a selected field of a ROW column (`bid.auction`) is named by the field
//! (`auction`).
//!
//! Everything else is DataFusion's function library, which already has Flink's `CHAR_LENGTH`,
//! `SUBSTRING`, `UPPER`, `CONCAT`, `REPLACE`, `REGEXP_REPLACE`, `ABS`, `FLOOR`, ...

use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    Value, VisitMut,
};

/// Converts a Java `SimpleDateFormat` pattern (Flink's) into a chrono format (DataFusion's).
pub fn java_to_chrono(pattern: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal text.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                out.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let mapped = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%3f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('D', _) => "%j",
            ('Z', _) => "%z",
            ('%', _) => "%%",
            _ => {
                out.extend(std::iter::repeat_n(c, run));
                i += run;
                continue;
            }
        };
        out.push_str(mapped);
        i += run;
    }
    out
}

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

/// A Java format given as a string literal, converted; other expressions are left alone.
fn chrono_format(expr: &Expr) -> Option<Expr> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(string(java_to_chrono(s))),
            _ => None,
        },
        _ => None,
    }
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
        ("DATE_FORMAT", [ts, format]) => {
            function("to_char", vec![ts.clone(), chrono_format(format)?])
        }
        ("TO_TIMESTAMP", [s]) => function(
            "to_timestamp_millis",
            vec![
                s.clone(),
                string("%Y-%m-%d %H:%M:%S%.f".into()),
                string("%Y-%m-%dT%H:%M:%S%.f".into()),
            ],
        ),
        ("TO_TIMESTAMP", [s, format]) => function(
            "to_timestamp_millis",
            vec![s.clone(), chrono_format(format)?],
        ),
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

/// Names selected compound identifiers (`bid.auction`) by their last part, as Flink does.
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
            for item in &mut select.projection {
                if let ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item {
                    if let Some(last) = parts.last().cloned() {
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: Expr::CompoundIdentifier(parts.clone()),
                            alias: last,
                        };
                    }
                }
            }
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            name_fields(left);
            name_fields(right);
        }
        _ => {}
    }
}

/// Rewrites Flink's function names and field names in `statement`.
pub fn rewrite<T: VisitMut>(statement: &mut T) {
    let _ = statement.visit(&mut NameFields);
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let Expr::Function(f) = expr {
            if let Some(new) = rewrite_call(f) {
                *expr = new;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_become_chrono_ones() {
        assert_eq!(java_to_chrono("yyyy-MM-dd HH:mm:ss"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(
            java_to_chrono("yyyy-MM-dd'T'HH:mm:ss.SSS"),
            "%Y-%m-%dT%H:%M:%S.%3f"
        );
        assert_eq!(java_to_chrono("HH:mm"), "%H:%M");
    }
}
