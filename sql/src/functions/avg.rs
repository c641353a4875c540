//! Flink's `AVG`: over an integer column, the sum divided by the count in integer arithmetic
//! (truncated toward zero), of the column's own type (`AVG` of `INT` values 1 and 2 is `1`), as
//! Flink's `IntAvgAggFunction` and friends. Over floating-point, decimal and interval columns
//! it is DataFusion's `avg`. The integer form keeps an exact 64-bit sum and count and can take
//! rows back (for updating inputs and OVER frames).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion_common::{plan_err, Result, ScalarValue};
use datafusion_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion_expr::utils::format_state_name;
use datafusion_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// `AVG` with Flink's result type (see the module).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FlinkAvg {
    signature: Signature,
}

/// The `avg` aggregate function.
pub fn avg() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(FlinkAvg {
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

/// DataFusion's `avg`, for what is not an integer.
fn datafusion_avg() -> Arc<AggregateUDF> {
    datafusion_functions_aggregate::average::avg_udaf()
}

impl AggregateUDFImpl for FlinkAvg {
    fn name(&self) -> &str {
        "avg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Integers keep their type; other numbers as DataFusion's `avg` takes them.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            // (BIGINT UNSIGNED does not fit the exact 64-bit sum: a DOUBLE average.)
            [t] if t.is_integer() && *t != DataType::UInt64 => Ok(vec![t.clone()]),
            [t] if t.is_floating() || t.is_null() => Ok(vec![DataType::Float64]),
            [DataType::UInt64] => Ok(vec![DataType::Float64]),
            [t @ (DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
            | DataType::Duration(_))] => Ok(vec![t.clone()]),
            [t] => plan_err!("AVG takes a numeric argument, not {t}"),
            _ => plan_err!("AVG takes one argument"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] if t.is_integer() => Ok(t.clone()),
            _ => datafusion_avg().return_type(arg_types),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match integer_input(&args)? {
            Some(output) => Ok(Box::new(IntegerAvg::new(output))),
            None => datafusion_avg().accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match integer_input(&args)? {
            Some(output) => Ok(Box::new(IntegerAvg::new(output))),
            None => datafusion_avg().create_sliding_accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match args.input_fields[0].data_type().is_integer() {
            true => Ok(["count", "sum"]
                .iter()
                .map(|part| {
                    Arc::new(Field::new(
                        format_state_name(args.name, part),
                        DataType::Int64,
                        true,
                    ))
                })
                .collect()),
            false => datafusion_avg().state_fields(args),
        }
    }

    /// Integers go through the row accumulator (DataFusion's adapter groups them).
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.expr_fields[0].data_type().is_integer()
            && datafusion_avg().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn datafusion_expr::GroupsAccumulator>> {
        datafusion_avg().create_groups_accumulator(args)
    }
}

/// The output type of an integer `AVG`, `None` for other inputs. `AVG(DISTINCT)` of integers
/// is refused.
fn integer_input(args: &AccumulatorArgs) -> Result<Option<DataType>> {
    if !args.expr_fields[0].data_type().is_integer() {
        return Ok(None);
    }
    if args.is_distinct {
        return plan_err!(
            "AVG(DISTINCT ..) of an integer column is not supported yet; CAST it to DOUBLE"
        );
    }
    Ok(Some(args.return_type().clone()))
}

/// The exact sum and count of integer values (state: count, sum).
#[derive(Debug)]
struct IntegerAvg {
    count: i64,
    sum: i64,
    output: DataType,
}

impl IntegerAvg {
    fn new(output: DataType) -> Self {
        IntegerAvg {
            count: 0,
            sum: 0,
            output,
        }
    }

    /// Adds (`sign` 1) or takes back (`sign` -1) the non-null values of `values`.
    fn add(&mut self, values: &ArrayRef, sign: i64) -> Result<()> {
        let values = cast(values, &DataType::Int64)?;
        let values = values.as_primitive::<Int64Type>();
        self.count += sign * (values.len() - values.null_count()) as i64;
        let sum = arrow::compute::sum(values).unwrap_or(0);
        self.sum = self.sum.wrapping_add(sign.wrapping_mul(sum));
        Ok(())
    }
}

impl Accumulator for IntegerAvg {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let average = (self.count > 0).then(|| self.sum / self.count);
        ScalarValue::Int64(average).cast_to(&self.output)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Int64(Some(self.sum)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let total = |array: &ArrayRef| -> i64 {
            let values: &Int64Array = array.as_primitive::<Int64Type>();
            values.iter().flatten().fold(0i64, i64::wrapping_add)
        };
        self.count += total(&states[0]);
        self.sum = self.sum.wrapping_add(total(&states[1]));
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;

    #[test]
    fn integer_average_truncates_and_takes_rows_back() {
        let mut avg = IntegerAvg::new(DataType::Int32);
        let values: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(-7)]));
        avg.update_batch(&[values]).unwrap();
        // (1 + 2 - 7) / 3 = -4 / 3, truncated toward zero as Java's long division.
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int32(Some(-1)));
        avg.retract_batch(&[Arc::new(Int32Array::from(vec![-7])) as ArrayRef])
            .unwrap();
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int32(Some(1)));
        avg.retract_batch(&[Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef])
            .unwrap();
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int32(None));
    }
}
