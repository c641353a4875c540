//! Reading a join condition as Flink's planner does: the equalities between a left and a
//! right expression are the join keys; bounds on the difference of the two sides' time
//! attributes, one lower and one upper, make an interval join; everything else is the
//! residual condition, evaluated on each joined row. The time bounds stay in the residual
//! too: the interval join keeps and probes rows by the bounds rounded outwards to whole
//! milliseconds, and the residual decides exactly (strict `<`, sub-millisecond times), so a
//! join that is not an interval join after all loses nothing of its condition.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion_common::DFSchema;
use datafusion_expr::{BinaryExpr, Expr, Operator};

use crate::names::physical_names;
use crate::window_tvf::interval_ms;

/// A join condition, split.
#[derive(Debug, Default)]
pub struct JoinCondition {
    /// Equality keys: (left expression, right expression), each over its own input.
    pub keys: Vec<(Expr, Expr)>,
    /// The interval join's time bounds, if the condition has both.
    pub interval: Option<TimeBounds>,
    /// Every conjunct but the keys, over the join's output (qualified columns).
    pub residual: Vec<Expr>,
}

/// `lower <= left - right <= upper` (ms, inclusive, a superset of the condition's bounds) on
/// the two sides' time attributes, named as in their inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBounds {
    pub left: String,
    pub right: String,
    pub lower: i64,
    pub upper: i64,
}

/// Which input of the join a set of columns is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Left,
    Right,
    /// Both, or neither (a constant).
    Mixed,
}

/// Splits `conjuncts` (the `ON` condition and any `WHERE` conjuncts of an inner join).
/// `left_times` and `right_times` are the inputs' time attributes (stream column names).
pub fn analyze(
    conjuncts: Vec<Expr>,
    left: &DFSchema,
    right: &DFSchema,
    left_times: &[String],
    right_times: &[String],
) -> JoinCondition {
    let origin = |expr: &Expr| origin(expr, left, right);
    let mut condition = JoinCondition::default();
    let mut bounds: Option<(String, String, Option<i64>, Option<i64>)> = None;
    for conjunct in conjuncts {
        if let Expr::BinaryExpr(BinaryExpr {
            left: a,
            op: Operator::Eq,
            right: b,
        }) = &conjunct
        {
            match (origin(a), origin(b)) {
                (Origin::Left, Origin::Right) => {
                    condition.keys.push((*a.clone(), *b.clone()));
                    continue;
                }
                (Origin::Right, Origin::Left) => {
                    condition.keys.push((*b.clone(), *a.clone()));
                    continue;
                }
                _ => {}
            }
        }
        let time = |expr: &Expr| time_term(expr, left, right, left_times, right_times);
        let comparisons = comparisons(&conjunct);
        let mut parsed = Vec::new();
        for (a, op, b) in &comparisons {
            let (Some((sa, ca, oa)), Some((sb, cb, ob))) = (time(a), time(b)) else {
                break;
            };
            // a + oa op b + ob, with one side's time on each side.
            let (op, l, r, d) = match (sa, sb) {
                (Origin::Left, Origin::Right) => (*op, ca, cb, ob - oa),
                (Origin::Right, Origin::Left) => (flip(*op), cb, ca, oa - ob),
                _ => break,
            };
            parsed.push((op, l, r, d));
        }
        condition.residual.push(conjunct);
        if parsed.is_empty() || parsed.len() != comparisons.len() {
            continue;
        }
        for (op, l, r, d) in parsed {
            let entry = bounds.get_or_insert_with(|| (l.clone(), r.clone(), None, None));
            if entry.0 != l || entry.1 != r {
                continue;
            }
            let raise = |b: &mut Option<i64>| *b = Some(b.map_or(d, |x| x.max(d)));
            let lower = |b: &mut Option<i64>| *b = Some(b.map_or(d, |x| x.min(d)));
            match op {
                Operator::GtEq | Operator::Gt => raise(&mut entry.2),
                Operator::LtEq | Operator::Lt => lower(&mut entry.3),
                Operator::Eq => {
                    raise(&mut entry.2);
                    lower(&mut entry.3);
                }
                _ => {}
            }
        }
    }
    // One bound alone is not an interval join: the condition is a plain one.
    if let Some((left, right, Some(lower), Some(upper))) = bounds {
        condition.interval = Some(TimeBounds {
            left,
            right,
            lower,
            upper,
        });
    }
    condition
}

/// Which input `expr`'s columns are all from (`Mixed` for both, or none: a constant).
pub fn origin(expr: &Expr, left: &DFSchema, right: &DFSchema) -> Origin {
    let columns = expr.column_refs();
    if columns.is_empty() {
        Origin::Mixed
    } else if columns.iter().all(|c| left.has_column(c)) {
        Origin::Left
    } else if columns.iter().all(|c| right.has_column(c)) {
        Origin::Right
    } else {
        Origin::Mixed
    }
}

/// The comparisons a conjunct states: `a op b`, or the two of `x BETWEEN lo AND hi`.
fn comparisons(expr: &Expr) -> Vec<(Expr, Operator, Expr)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq
            ) =>
        {
            vec![(*left.clone(), *op, *right.clone())]
        }
        Expr::Between(between) if !between.negated => vec![
            (*between.expr.clone(), Operator::GtEq, *between.low.clone()),
            (*between.expr.clone(), Operator::LtEq, *between.high.clone()),
        ],
        _ => Vec::new(),
    }
}

/// `b op a` for `a op b`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// `expr` as a time attribute plus a constant interval: (its side, its stream column name,
/// offset in ms); `None` for anything else.
fn time_term(
    expr: &Expr,
    left: &DFSchema,
    right: &DFSchema,
    left_times: &[String],
    right_times: &[String],
) -> Option<(Origin, String, i64)> {
    match expr {
        Expr::Column(c) => {
            for (origin, schema, times) in [
                (Origin::Left, left, left_times),
                (Origin::Right, right, right_times),
            ] {
                if let Some(i) = schema.maybe_index_of_column(c) {
                    let name = physical_names(schema).swap_remove(i);
                    return times.contains(&name).then_some((origin, name, 0));
                }
            }
            None
        }
        // A cast that keeps milliseconds (the analyzer's, between timestamp precisions); a
        // cast to a date or to seconds is not a bound on the time attribute itself.
        Expr::Cast(cast)
            if matches!(
                cast.field.data_type(),
                DataType::Timestamp(
                    TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
                    _
                )
            ) =>
        {
            time_term(&cast.expr, left, right, left_times, right_times)
        }
        Expr::BinaryExpr(BinaryExpr {
            left: a,
            op: op @ (Operator::Plus | Operator::Minus),
            right: b,
        }) => {
            let (origin, name, offset) = time_term(a, left, right, left_times, right_times)?;
            let ms = interval_ms(*b.clone()).ok()?;
            let ms = if *op == Operator::Plus { ms } else { -ms };
            Some((origin, name, offset + ms))
        }
        _ => None,
    }
}
