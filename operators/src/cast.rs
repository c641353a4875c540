//! Flink's `CAST` where it differs from Arrow's, applied to every expression before it is
//! planned physically ([`crate::expr::physical`]), so SQL, the DSL, computed columns and the
//! casts a sink adds all behave the same.
//!
//! - To `STRING`: timestamps as `yyyy-MM-dd HH:mm:ss.SSS` (padded to the precision, a space
//!   not a `T`), booleans as `TRUE`/`FALSE`, floats as Java prints them ([`crate::text`]).
//!   Arrow writes `2025-01-01T10:00:00`, `true` and `100`.
//! - From `STRING` to a number, boolean, date, time or timestamp: leading and trailing
//!   whitespace is ignored (FLINK-27368), so `CAST(' 42 ' AS INT)` is 42.
//!
//! Everything else is Arrow's cast, which already matches Flink's (integer and decimal
//! arithmetic, `DATE` to `STRING`, ...). A failed `CAST` fails the job (as in Flink);
//! `TRY_CAST` gives NULL instead.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_common::{exec_datafusion_err, DFSchema, Result as DfResult};
use datafusion_expr::expr::ScalarFunction;
use datafusion_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TryCast, Volatility,
};

use crate::error::{OperatorError, Result};
use crate::text::{is_string, to_text, TimestampStyle};

/// `expr` with every cast that Arrow performs differently from Flink replaced by Flink's.
pub fn lower(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    expr.transform_up(|e| {
        let (inner, to, try_cast) = match &e {
            Expr::Cast(Cast { expr, field }) => (expr, field.data_type().clone(), false),
            Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type().clone(), true),
            _ => return Ok(Transformed::no(e)),
        };
        let from = inner.get_type(schema)?;
        let rebuild = |inner: Expr| match try_cast {
            false => Expr::Cast(Cast::new(Box::new(inner), to.clone())),
            true => Expr::TryCast(TryCast::new(Box::new(inner), to.clone())),
        };
        if is_string(&to) && has_flink_text(&from) {
            let text = Expr::ScalarFunction(ScalarFunction::new_udf(
                cast_to_string(),
                vec![inner.as_ref().clone()],
            ));
            return Ok(Transformed::yes(if to == DataType::Utf8 {
                text
            } else {
                rebuild(text)
            }));
        }
        if is_string(&from) && !is_string(&to) && trims(&to) {
            let trimmed = datafusion_functions::string::btrim().call(vec![inner.as_ref().clone()]);
            return Ok(Transformed::yes(rebuild(trimmed)));
        }
        Ok(Transformed::no(e))
    })
    .map(|t| t.data)
    .map_err(|e| OperatorError::Plan(e.to_string()))
}

/// Types whose Flink text differs from Arrow's cast to a string.
fn has_flink_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Boolean | DataType::Float32 | DataType::Float64
    )
}

/// Targets that Flink parses from trimmed text.
fn trims(t: &DataType) -> bool {
    t.is_numeric()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Date32
                | DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Timestamp(_, _)
        )
}

/// The function `CAST(x AS STRING)` becomes for timestamps, booleans and floats.
pub fn cast_to_string() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(CastToString {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CastToString {
    signature: Signature,
}

impl ScalarUDFImpl for CastToString {
    fn name(&self) -> &str {
        "cast_to_string"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(exec_datafusion_err!("CAST takes one value"));
        };
        let (array, scalar) = match value {
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
            ColumnarValue::Array(a) => (ArrayRef::clone(a), false),
        };
        let text = match to_text(array.as_ref(), TimestampStyle::CAST) {
            Some(text) => text?,
            None => arrow::compute::cast(&array, &DataType::Utf8)?,
        };
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion_common::ScalarValue::try_from_array(&text, 0)?)
        } else {
            ColumnarValue::Array(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Float64Array, Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion_expr::{cast, col, try_cast};

    use super::*;

    fn eval(expr: Expr, batch: &RecordBatch) -> arrow::array::ArrayRef {
        crate::expr::physical(&expr, &batch.schema())
            .unwrap()
            .evaluate(batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap()
    }

    #[test]
    fn casts_behave_as_flinks() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
                    Some(1_735_725_600_000),
                    None,
                ])),
                Arc::new(StringArray::from(vec![Some(" 42 "), Some("abc")])),
                Arc::new(Float64Array::from(vec![Some(100.0), Some(0.5)])),
            ],
        )
        .unwrap();
        let text = eval(cast(col("ts"), DataType::Utf8), &batch);
        assert_eq!(text.as_string::<i32>().value(0), "2025-01-01 10:00:00.000");
        assert!(text.is_null(1));
        let text = eval(cast(col("d"), DataType::Utf8), &batch);
        assert_eq!(text.as_string::<i32>().value(0), "100.0");
        let number = eval(try_cast(col("s"), DataType::Int32), &batch);
        let number = number.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(number.value(0), 42);
        assert!(number.is_null(1), "TRY_CAST of 'abc' is NULL");
    }
}
