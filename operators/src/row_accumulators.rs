//! Row-at-a-time accumulators: one set per group, read after every change.
//!
//! The updating `GROUP BY` ([`crate::updating`]) and OVER aggregations ([`crate::over`]) keep,
//! per group or partition, one DataFusion `Accumulator` per aggregate and read its value
//! whenever the group changes. [`RowAccumulators`] creates those sets (retracting ones where
//! rows are taken back, see [`crate::retract`]), feeds them rows, and turns their partial
//! states into columns for snapshots and back.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use arrow::compute::{filter, take};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use arrow::row::{RowConverter, RowParser, SortField};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;
use weir_engine::state::StateError;

use crate::aggregate::Aggregates;
use crate::error::{OperatorError, Result};

/// One group's accumulators, one per aggregate.
pub type AccumulatorSet = Vec<Box<dyn Accumulator>>;

/// Creates and snapshots the accumulator sets of a list of aggregates.
#[derive(Debug, Clone)]
pub struct RowAccumulators {
    aggregates: Aggregates,
    retracting: bool,
    state_fields: Vec<FieldRef>,
    /// The number of state columns of each aggregate.
    widths: Vec<usize>,
}

impl RowAccumulators {
    /// Accumulators for `aggregates`; with `retracting`, ones that can take rows back (errors
    /// naming the first aggregate that cannot).
    pub fn new(aggregates: Aggregates, retracting: bool) -> Result<Self> {
        let mut planner = RowAccumulators {
            aggregates,
            retracting,
            state_fields: Vec::new(),
            widths: Vec::new(),
        };
        for (i, mut accumulator) in planner.create()?.into_iter().enumerate() {
            // An empty accumulator's state gives the column types.
            let state = accumulator.state()?;
            planner.widths.push(state.len());
            planner
                .state_fields
                .extend(state.iter().enumerate().map(|(j, value)| {
                    Arc::new(Field::new(
                        format!("agg{i}#state{j}"),
                        value.data_type(),
                        true,
                    ))
                }));
        }
        Ok(planner)
    }

    /// The planned aggregates.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// A fresh set of accumulators for one group.
    pub fn create(&self) -> Result<AccumulatorSet> {
        match self.retracting {
            true => self.aggregates.retracting_accumulators(),
            false => self.aggregates.row_accumulators(),
        }
    }

    /// A converter to Arrow's row format for rows of `leading` BIGINT columns (a count, a
    /// session's bounds) followed by a set's partial-state columns.
    pub fn state_rows(&self, leading: usize) -> Result<RowConverter> {
        let mut fields = vec![SortField::new(DataType::Int64); leading];
        fields.extend(
            self.state_fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone())),
        );
        Ok(RowConverter::new(fields)?)
    }

    /// The partial-state columns of a set, in order.
    pub fn state_fields(&self) -> &[FieldRef] {
        &self.state_fields
    }

    /// Adds (or, with `retract`, takes back) rows `rows` of the aggregates' `inputs` (from
    /// [`Aggregates::inputs`] over one batch) to `set`.
    pub fn feed(
        set: &mut AccumulatorSet,
        inputs: &[(Vec<ArrayRef>, Option<BooleanArray>)],
        rows: &[u32],
        retract: bool,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows.to_vec());
        for (accumulator, (values, mask)) in set.iter_mut().zip(inputs) {
            let mut taken: Vec<ArrayRef> = values
                .iter()
                .map(|v| take(v.as_ref(), &indices, None))
                .collect::<std::result::Result<_, _>>()?;
            if let Some(mask) = mask {
                let mask = take(mask, &indices, None)?;
                let mask = mask.as_boolean();
                taken = taken
                    .iter()
                    .map(|v| filter(v.as_ref(), mask))
                    .collect::<std::result::Result<_, _>>()?;
            }
            match retract {
                true => accumulator.retract_batch(&taken)?,
                false => accumulator.update_batch(&taken)?,
            }
        }
        Ok(())
    }

    /// The current value of each aggregate of `set`.
    pub fn evaluate(set: &mut AccumulatorSet) -> Result<Vec<ScalarValue>> {
        Ok(set
            .iter_mut()
            .map(|a| a.evaluate())
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Values collected per aggregate (`values[i]` for aggregate i) as its output columns.
    pub fn value_columns(&self, values: Vec<Vec<ScalarValue>>) -> Result<Vec<ArrayRef>> {
        values
            .into_iter()
            .zip(self.aggregates.output_fields())
            .map(|(column, field)| to_array(column, field))
            .collect()
    }

    /// The partial states of `sets` as columns laid out as [`Self::state_fields`], one row per
    /// set.
    pub fn states<'a>(
        &self,
        sets: impl Iterator<Item = &'a mut AccumulatorSet>,
    ) -> Result<Vec<ArrayRef>> {
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.state_fields.len()];
        for set in sets {
            let mut column = 0;
            for accumulator in set.iter_mut() {
                for value in accumulator.state()? {
                    columns[column].push(value);
                    column += 1;
                }
            }
        }
        columns
            .into_iter()
            .zip(&self.state_fields)
            .map(|(values, field)| to_array(values, field))
            .collect()
    }

    /// Merges row `row` of `states` (columns laid out as [`Self::state_fields`]) into `set`.
    pub fn merge(&self, set: &mut AccumulatorSet, states: &[ArrayRef], row: usize) -> Result<()> {
        let mut column = 0;
        for (accumulator, width) in set.iter_mut().zip(&self.widths) {
            let slice: Vec<ArrayRef> = states[column..column + width]
                .iter()
                .map(|c| c.slice(row, 1))
                .collect();
            accumulator.merge_batch(&slice)?;
            column += width;
        }
        Ok(())
    }
}

/// `values` as an array of `field`'s type (DataFusion's scalars may carry a narrower one).
fn to_array(values: Vec<ScalarValue>, field: &Field) -> Result<ArrayRef> {
    let array = match values.is_empty() {
        true => arrow::array::new_empty_array(field.data_type()),
        false => ScalarValue::iter_to_array(values)?,
    };
    Ok(match array.data_type() == field.data_type() {
        true => array,
        false => arrow::compute::cast(&array, field.data_type())?,
    })
}

/// Encodes `(count, accumulator set)` pairs, each as one row of Arrow's row format: the count
/// (i64), then every accumulator's partial state (DataFusion's `Accumulator::state`), encoded
/// column-wise for many sets at once and merged into fresh accumulators when read back. The
/// value of an updating `GROUP BY`'s group (its row count) and of a count window's key (its
/// open window's rows).
pub struct CountedCodec {
    accumulators: RowAccumulators,
    converter: RowConverter,
    parser: RowParser,
}

impl CountedCodec {
    pub fn new(accumulators: RowAccumulators) -> Result<Self> {
        let converter = accumulators.state_rows(1)?;
        Ok(CountedCodec {
            parser: converter.parser(),
            converter,
            accumulators,
        })
    }

    /// The bytes of each pair, in order.
    pub fn encode<'a>(
        &self,
        pairs: impl Iterator<Item = (i64, &'a mut AccumulatorSet)>,
    ) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        let encoding = |e: OperatorError| StateError::Encoding(e.to_string());
        let (counts, sets): (Vec<i64>, Vec<&mut AccumulatorSet>) = pairs.unzip();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(counts))];
        columns.extend(
            self.accumulators
                .states(sets.into_iter())
                .map_err(encoding)?,
        );
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| encoding(e.into()))?;
        Ok(rows.iter().map(|row| row.as_ref().to_vec()).collect())
    }

    /// The pair [`CountedCodec::encode`] wrote as `bytes`.
    pub fn decode(&self, bytes: &[u8]) -> std::result::Result<(i64, AccumulatorSet), StateError> {
        let decode = || -> Result<(i64, AccumulatorSet)> {
            let columns = self.converter.convert_rows([self.parser.parse(bytes)])?;
            let count = columns[0].as_primitive::<Int64Type>().value(0);
            let mut accumulators = self.accumulators.create()?;
            self.accumulators
                .merge(&mut accumulators, &columns[1..], 0)?;
            Ok((count, accumulators))
        };
        decode().map_err(|e| StateError::Encoding(e.to_string()))
    }

    /// Bytes a set holds (an estimate, for the memory budget).
    pub fn memory_bytes(set: &AccumulatorSet) -> usize {
        set.iter().map(|a| a.size()).sum()
    }
}
