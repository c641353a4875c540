//! The rows of a window TVF without an aggregation, as Flink's window table function
//! operator: each row once per tumbling, hopping or cumulating window it belongs to, with the
//! window's `window_start`, `window_end` and `window_time` (`window_end - 1 ms`) appended.
//!
//! Stateless and append-only. As in Flink, rows are not dropped here when their windows have
//! closed: what consumes them (a window join) decides about late rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir_engine::changelog::ChangelogMode;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::time::{event_time_column, event_times_ms};
use weir_engine::BoxError;

use super::pane::PaneAssigner;
use super::{WindowSpec, WINDOW_END, WINDOW_START};
use crate::error::{OperatorError, Result};

/// Name of the appended time attribute (`window_end - 1 ms`), as Flink names it.
pub const WINDOW_TIME: &str = "window_time";

/// Describes a window assignment over `time_column`.
#[derive(Debug, Clone)]
pub struct WindowAssignFactory {
    spec: WindowSpec,
    time_column: String,
}

impl WindowAssignFactory {
    /// Fails for session and count windows (a row's session is not known when it arrives)
    /// and for invalid windows.
    pub fn new(spec: WindowSpec, time_column: impl Into<String>) -> Result<Self> {
        spec.validate()?;
        if matches!(spec, WindowSpec::Session { .. } | WindowSpec::Count { .. }) {
            return Err(OperatorError::Plan(format!(
                "the rows of a {} window without an aggregation are not supported yet",
                spec.describe()
            )));
        }
        Ok(WindowAssignFactory {
            spec,
            time_column: time_column.into(),
        })
    }
}

impl OperatorFactory for WindowAssignFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        let input = &inputs[0];
        event_time_column(input, &self.time_column)?;
        let mut fields: Vec<_> = input.fields().iter().cloned().collect();
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            if input.field_with_name(name).is_ok() {
                return Err(Box::new(OperatorError::Plan(format!(
                    "the input of a window already has a column '{name}'"
                ))));
            }
            let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
            fields.push(Arc::new(Field::new(name, ts, false)));
        }
        Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
    }

    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        match inputs[0].is_insert_only() {
            true => Ok(ChangelogMode::InsertOnly),
            false => Err(Box::new(OperatorError::Plan(format!(
                "a window TVF takes append-only rows, not an updating result ({})",
                inputs[0].describe()
            )))),
        }
    }

    fn describe(&self) -> String {
        format!(
            "window-assign {} on {}",
            self.spec.describe(),
            self.time_column
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(WindowAssign {
            assigner: PaneAssigner::new(self.spec),
            time_column: event_time_column(context.input_schema(), &self.time_column)?,
            output: self.output_schema(&context.input_schemas)?,
        }))
    }
}

/// One subtask of a window assignment.
pub struct WindowAssign {
    assigner: PaneAssigner,
    time_column: usize,
    output: SchemaRef,
}

impl Operator for WindowAssign {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        let times = event_times_ms(&batch, self.time_column)?;
        let (mut rows, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for (row, time) in times.iter().enumerate() {
            for (start, end) in self.assigner.windows(self.assigner.pane_start(*time)) {
                rows.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let rows = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &rows, None))
            .collect::<std::result::Result<_, _>>()?;
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        for values in [starts, ends, times] {
            columns.push(Arc::new(TimestampMillisecondArray::from(values)));
        }
        ctx.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Schema, TimestampMillisecondType};
    use weir_engine::operator::Timers;

    use super::*;

    /// (window_start, window_end) of each output row for rows at `times`.
    fn windows(spec: WindowSpec, times: &[i64]) -> Vec<(i64, i64)> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(TimestampMillisecondArray::from(times.to_vec()))],
        )
        .unwrap();
        let context = SubtaskContext::standalone(vec![schema]);
        let mut operator = WindowAssignFactory::new(spec, "ts")
            .unwrap()
            .create(&context)
            .unwrap();
        let mut timers = Timers::default();
        let mut ctx = Context::new(0, None, context.key_groups, &mut timers);
        operator.process_batch(batch, &mut ctx).unwrap();
        let out = ctx.take_batches().remove(0);
        let column = |i: usize| {
            out.column(i)
                .as_primitive::<TimestampMillisecondType>()
                .clone()
        };
        let (starts, ends, times) = (column(1), column(2), column(3));
        (0..out.num_rows())
            .map(|r| {
                assert_eq!(times.value(r), ends.value(r) - 1, "window_time");
                (starts.value(r), ends.value(r))
            })
            .collect()
    }

    #[test]
    fn rows_are_repeated_per_window() {
        assert_eq!(
            windows(WindowSpec::Tumble { size_ms: 10 }, &[0, 9, 10, -1]),
            vec![(0, 10), (0, 10), (10, 20), (-10, 0)]
        );
        assert_eq!(
            windows(
                WindowSpec::Hop {
                    size_ms: 10,
                    slide_ms: 5
                },
                &[7]
            ),
            vec![(0, 10), (5, 15)]
        );
        assert_eq!(
            windows(
                WindowSpec::Cumulate {
                    step_ms: 5,
                    size_ms: 15
                },
                &[6]
            ),
            vec![(0, 10), (0, 15)]
        );
        assert!(WindowAssignFactory::new(WindowSpec::Session { gap_ms: 5 }, "ts").is_err());
    }
}
