//! Accumulators that can take rows back: aggregates over an updating input.
//!
//! A `-U` or `-D` row retracts a value an earlier `+I` or `+U` row added, as Flink's
//! `...WithRetractAggFunction`s. `COUNT`, `SUM`, `AVG` (and the other aggregates whose sliding
//! accumulator supports `retract_batch`: DataFusion's, or the SQL layer's integer `AVG`) keep
//! running totals.
//! `MIN`, `MAX` and `COUNT(DISTINCT ..)` must know every value still present, so they keep a
//! [`ValueCounts`]: each distinct value with the number of rows holding it (Flink's MapView).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;
use datafusion_physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{OperatorError, Result};

/// An accumulator for `function` that supports `retract_batch`; `value_type` is the type of
/// its (first) argument. Errors with a plan error naming the aggregate when it cannot retract.
pub fn retracting_accumulator(
    function: &AggregateFunctionExpr,
    value_type: &DataType,
) -> Result<Box<dyn Accumulator>> {
    let name = function.fun().name().to_ascii_lowercase();
    let cannot = |why: &str| {
        OperatorError::Plan(format!(
            "aggregate {} over an updating result: {why}",
            function.name()
        ))
    };
    let extreme = match (name.as_str(), function.is_distinct()) {
        ("min", _) => Some(Extreme::Min),
        ("max", _) => Some(Extreme::Max),
        ("count", true) => None,
        (_, true) => return Err(cannot("only COUNT(DISTINCT ..) can take rows back")),
        _ => {
            let accumulator = function
                .create_sliding_accumulator()
                .map_err(|e| cannot(&e.to_string()))?;
            return match accumulator.supports_retract_batch() {
                true => Ok(accumulator),
                false => Err(cannot("it cannot take rows back (retract)")),
            };
        }
    };
    Ok(Box::new(ValueCounts {
        values: BTreeMap::new(),
        value_type: value_type.clone(),
        extreme,
    }))
}

#[derive(Debug, Clone, Copy)]
enum Extreme {
    Min,
    Max,
}

/// A value ordered as SQL orders values of one type (floats by their total order).
#[derive(Debug, Clone, PartialEq)]
struct Ordered(ScalarValue);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> Ordering {
        // Values of one accumulator share a type, which DataFusion orders totally.
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// The multiset of non-null values of a group: `MIN`, `MAX` or `COUNT(DISTINCT ..)` with
/// retraction. State: two lists, the distinct values and the number of rows of each.
#[derive(Debug)]
pub struct ValueCounts {
    values: BTreeMap<Ordered, i64>,
    value_type: DataType,
    /// The least or greatest value; `None`: the number of distinct values.
    extreme: Option<Extreme>,
}

impl ValueCounts {
    fn add(&mut self, values: &ArrayRef, sign: i64) -> datafusion_common::Result<()> {
        for row in 0..values.len() {
            if values.is_null(row) {
                continue;
            }
            let value = Ordered(ScalarValue::try_from_array(values, row)?);
            self.add_count(value, sign);
        }
        Ok(())
    }

    fn add_count(&mut self, value: Ordered, count: i64) {
        let entry = self.values.entry(value.clone()).or_insert(0);
        *entry += count;
        if *entry <= 0 {
            // A value retracted as often as it was added is gone.
            self.values.remove(&value);
        }
    }
}

impl Accumulator for ValueCounts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion_common::Result<()> {
        self.add(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion_common::Result<()> {
        self.add(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion_common::Result<ScalarValue> {
        let value = match self.extreme {
            Some(Extreme::Min) => self.values.keys().next(),
            Some(Extreme::Max) => self.values.keys().next_back(),
            None => return Ok(ScalarValue::Int64(Some(self.values.len() as i64))),
        };
        match value {
            Some(v) => Ok(v.0.clone()),
            None => ScalarValue::try_from(&self.value_type),
        }
    }

    fn state(&mut self) -> datafusion_common::Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self.values.keys().map(|v| v.0.clone()).collect();
        let counts: Vec<ScalarValue> = self
            .values
            .values()
            .map(|&c| ScalarValue::Int64(Some(c)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.value_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion_common::Result<()> {
        let (values, counts) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let (row_values, row_counts) = (values.value(row), counts.value(row));
            let row_counts: &Int64Array = row_counts.as_primitive::<Int64Type>();
            for i in 0..row_values.len() {
                let value = Ordered(ScalarValue::try_from_array(&row_values, i)?);
                self.add_count(value, row_counts.value(i));
            }
        }
        Ok(())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .values
                .keys()
                .map(|v| v.0.size() + std::mem::size_of::<i64>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use std::sync::Arc;

    fn ints(values: &[Option<i32>]) -> ArrayRef {
        Arc::new(Int32Array::from(values.to_vec()))
    }

    fn counts(extreme: Option<Extreme>) -> ValueCounts {
        ValueCounts {
            values: BTreeMap::new(),
            value_type: DataType::Int32,
            extreme,
        }
    }

    #[test]
    fn min_and_max_come_back_when_the_extreme_is_retracted() {
        let mut min = counts(Some(Extreme::Min));
        let mut max = counts(Some(Extreme::Max));
        for acc in [&mut min, &mut max] {
            acc.update_batch(&[ints(&[Some(3), Some(1), Some(7), None, Some(1)])])
                .unwrap();
        }
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int32(Some(1)));
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int32(Some(7)));
        min.retract_batch(&[ints(&[Some(1)])]).unwrap();
        assert_eq!(
            min.evaluate().unwrap(),
            ScalarValue::Int32(Some(1)),
            "1 was there twice"
        );
        min.retract_batch(&[ints(&[Some(1)])]).unwrap();
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int32(Some(3)));
        max.retract_batch(&[ints(&[Some(7), Some(3), Some(1), Some(1)])])
            .unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int32(None));
    }

    #[test]
    fn distinct_count_survives_a_state_round_trip_with_multiplicities() {
        let mut acc = counts(None);
        acc.update_batch(&[ints(&[Some(5), Some(5), Some(6)])])
            .unwrap();
        let state: Vec<ArrayRef> = acc
            .state()
            .unwrap()
            .iter()
            .map(|v| v.to_array().unwrap())
            .collect();
        let mut restored = counts(None);
        restored.merge_batch(&state).unwrap();
        restored.retract_batch(&[ints(&[Some(5)])]).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        restored.retract_batch(&[ints(&[Some(5)])]).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::Int64(Some(1)));
    }
}
