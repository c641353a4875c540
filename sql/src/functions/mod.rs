//! Flink's built-in functions, under Flink's names and with Flink's semantics.
//!
//! Three ways a Flink function reaches a query:
//! - **DataFusion's own function**, where its name, types and NULL rules are Flink's
//!   (`UPPER`, `ABS`, `REPLACE`, ...);
//! - **a function of Weir's** ([`FlinkFunction`]), registered under Flink's name in place of
//!   DataFusion's where they differ (`CONCAT` is NULL if an argument is; `TO_TIMESTAMP`
//!   gives NULL for bad text; `FROM_UNIXTIME` returns a `STRING`) or where DataFusion has none
//!   (`TO_TIMESTAMP_LTZ`, `UNIX_TIMESTAMP`);
//! - **a rewrite** of the syntax tree ([`rewrite`]): `IF` into `CASE`, `MOD` into `%`, ...
//!
//! [`BUILTINS`] lists every function of Flink's "System (Built-in) Functions" page with how
//! Weir provides it, or why not yet; `docs/functions.md` is generated from it (a test keeps it
//! current), and a call of a function that is not supported yet is refused naming it
//! ([`check_calls`]). Casts follow Flink's rules in `weir_operators::cast`, for every
//! expression of every job.

pub mod avg;
pub mod builtins;
pub mod clock;
pub mod rewrite;
pub mod strings;
pub mod time;

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion_common::{plan_err, Result as DfResult};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_sql::sqlparser::ast::{self, Visit};

pub use builtins::{Builtin, Support, BUILTINS};

use crate::error::{user, Location, Result};

/// A scalar function of Weir's with Flink's semantics, described by plain functions: the
/// argument types it accepts (coerced), its result type, and its evaluation over arrays.
/// Arguments arrive as arrays of the coerced types, all `rows` long.
pub struct FlinkFunction {
    /// Flink's name, upper case (also what errors show).
    pub name: &'static str,
    /// Other names it is known by, lower case.
    pub aliases: &'static [&'static str],
    /// Whether it may give another result for the same arguments (the clock functions are
    /// `Volatile`, so the simplifier never folds them).
    pub volatility: Volatility,
    /// The argument types to coerce the given ones to; `None` if it does not take them (the
    /// planner then refuses the call with `takes`).
    pub coerce: fn(&[DataType]) -> Option<Vec<DataType>>,
    /// What the function takes, for the error when `coerce` refuses.
    pub takes: &'static str,
    /// The result type for the coerced argument types.
    pub returns: fn(&[DataType]) -> DataType,
    /// The result for `rows` rows of coerced arguments; an error fails the job.
    pub eval: fn(&[ArrayRef], usize) -> DfResult<ArrayRef>,
}

impl std::fmt::Debug for FlinkFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A [`FlinkFunction`] as a DataFusion UDF.
#[derive(Debug)]
struct Udf {
    function: &'static FlinkFunction,
    lower_name: String,
    aliases: Vec<String>,
    signature: Signature,
}

impl PartialEq for Udf {
    fn eq(&self, other: &Self) -> bool {
        self.function.name == other.function.name
    }
}

impl Eq for Udf {}

impl std::hash::Hash for Udf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.function.name.hash(state);
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        &self.lower_name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match (self.function.coerce)(arg_types) {
            Some(types) => Ok(types),
            None => plan_err!(
                "{}({}) is not defined: {} takes {}",
                self.function.name,
                arg_types
                    .iter()
                    .map(crate::ddl::flink_type_name)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.function.name,
                self.function.takes
            ),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.function.returns)(arg_types))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<Vec<_>>>()?;
        (self.function.eval)(&arrays, rows).map(ColumnarValue::Array)
    }
}

impl FlinkFunction {
    /// This function as a DataFusion scalar UDF.
    pub fn udf(&'static self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(Udf {
            function: self,
            lower_name: self.name.to_ascii_lowercase(),
            aliases: self.aliases.iter().map(|a| a.to_string()).collect(),
            signature: Signature::user_defined(self.volatility),
        }))
    }
}

/// Every function of Weir's, to register over DataFusion's of the same names.
pub fn weir_functions() -> Vec<Arc<ScalarUDF>> {
    [strings::FUNCTIONS, time::FUNCTIONS, clock::FUNCTIONS]
        .into_iter()
        .flatten()
        .map(|f| f.udf())
        .collect()
}

/// Prepares a parsed statement (or expression) for planning: [`check_calls`], then the
/// syntax rewrites ([`rewrite::rewrite`]).
pub fn prepare<T: Visit + ast::VisitMut>(
    statement: &mut T,
    known: &dyn Fn(&str) -> bool,
) -> Result<()> {
    check_calls(statement, known)?;
    rewrite::rewrite(statement);
    Ok(())
}

/// Refuses, before planning, a call of a function Flink has but Weir does not support yet,
/// an `OVER` window of a function that is not an aggregate, and a function neither Flink nor
/// Weir knows (`known` says which names
/// the session has): each with a message naming the function and where it is.
pub fn check_calls<T: Visit>(statement: &T, known: &dyn Fn(&str) -> bool) -> Result<()> {
    let mut error = None;
    let _ = ast::visit_expressions(statement, |expr| {
        let ast::Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string();
        let upper = name.to_ascii_uppercase();
        let location = f
            .name
            .0
            .first()
            .and_then(|p| p.as_ident())
            .map(|i| Location {
                line: i.span.start.line,
                column: i.span.start.column,
            });
        let refused = match builtins::find(&upper) {
            Some(Builtin {
                support: Support::NotYet(why),
                ..
            }) => Some(user(format!(
                "function {upper} is not supported yet: {why}"
            ))),
            // OVER: ROW_NUMBER (Top-N, deduplication) and aggregate functions.
            Some(builtin) if f.over.is_some() && builtin.category != "aggregate" => Some(
                user(format!(
                    "{upper}(...) OVER (...): {upper} is not an aggregate function"
                ))
                .hint("OVER takes aggregate functions (SUM, COUNT, ...) and ROW_NUMBER"),
            ),
            Some(_) => None,
            None if known(&name) => None,
            None => Some(
                user(format!("unknown function {name}"))
                    .hint("the functions Weir supports are listed in docs/functions.md"),
            ),
        };
        match refused {
            Some(e) => {
                error = Some(match location.filter(|l| l.line > 0) {
                    Some(l) => e.at(l),
                    None => e,
                });
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    });
    error.map_or(Ok(()), Err)
}

/// The `i`-th argument types for functions whose arguments are all strings.
pub(crate) fn all_strings(
    types: &[DataType],
    arity: std::ops::RangeInclusive<usize>,
) -> Option<Vec<DataType>> {
    (arity.contains(&types.len()) && types.iter().all(is_text_or_null))
        .then(|| vec![DataType::Utf8; types.len()])
}

/// A string type, or NULL (which coerces to any type).
pub(crate) fn is_text_or_null(t: &DataType) -> bool {
    weir_operators::text::is_string(t) || t.is_null()
}
