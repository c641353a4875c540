//! Late rows: how operators dispose of them, and as rows of a table (what `SET
//! 'table.exec.late-rows.table'` writes).
//!
//! An operator that drops rows as late (a window, an OVER aggregation, a window Top-N) hands
//! them to its [`LateOutput`]: counted, then dropped, or emitted on the late-row output when
//! that output is connected. [`LateRowsFactory`] turns them
//! into rows of one shape, whatever the operator's input was, so the late rows of every
//! operator of a job can go to one sink table ([`late_rows_schema`]): the operator's name,
//! the watermark it had passed (the one it forwarded last; NULL before the first), and the row
//! itself as a JSON object (Arrow's JSON writer: column names as keys, NULL columns left out).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;
use weir_engine::changelog::ChangelogMode;
use weir_engine::metrics::{names, Counter};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::BoxError;

/// Where an operator's late rows go: counted in `late_rows_dropped` and dropped, or, when its
/// late-row output is connected, counted in `late_rows_side_output` and emitted there.
pub struct LateOutput {
    connected: bool,
    dropped: Counter,
    side_output: Counter,
    /// Emit them as late-rows rows ([`late_rows_batch`]) under this operator name: for an
    /// operator with several inputs, whose late output has one shape.
    encoded_as: Option<String>,
}

impl LateOutput {
    /// The late output of the subtask `context` describes (its counters are the operator's).
    pub fn new(context: &SubtaskContext) -> Self {
        let counter = |name| context.counter(name);
        LateOutput {
            connected: context.late_output_connected,
            dropped: counter(names::LATE_ROWS_DROPPED),
            side_output: counter(names::LATE_ROWS_SIDE_OUTPUT),
            encoded_as: None,
        }
    }

    /// A late output that emits late-rows rows ([`late_rows_schema`]) named after the
    /// operator, whatever input a late row came from (the operator's `late_schema` must say
    /// so).
    pub fn encoded(context: &SubtaskContext) -> Self {
        LateOutput {
            encoded_as: Some(context.operator_id.clone()),
            ..LateOutput::new(context)
        }
    }

    /// Disposes of the rows `late` of `batch` (indices in increasing order).
    pub fn emit(
        &self,
        batch: &RecordBatch,
        late: Vec<u32>,
        ctx: &mut Context<'_>,
    ) -> crate::error::Result<()> {
        if late.is_empty() {
            return Ok(());
        }
        if self.connected {
            self.side_output.add(late.len() as u64);
            let rows = take_record_batch(batch, &UInt32Array::from(late))?;
            ctx.emit_late(match &self.encoded_as {
                Some(operator) => late_rows_batch(operator, ctx.watermark(), &rows)?,
                None => rows,
            });
        } else {
            self.dropped.add(late.len() as u64);
        }
        Ok(())
    }
}

/// The columns of a late-rows table: `operator STRING`, `watermark TIMESTAMP(3)` (nullable),
/// `row STRING` (JSON).
pub fn late_rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("operator", DataType::Utf8, false),
        Field::new(
            "watermark",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("row", DataType::Utf8, false),
    ]))
}

/// Encodes the late rows of the operator named `operator` (see the module).
#[derive(Debug, Clone)]
pub struct LateRowsFactory {
    operator: String,
}

impl LateRowsFactory {
    /// Encodes late rows of the operator named `operator` (the name the rows carry).
    pub fn new(operator: impl Into<String>) -> Self {
        LateRowsFactory {
            operator: operator.into(),
        }
    }
}

impl OperatorFactory for LateRowsFactory {
    fn output_schema(&self, _inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        Ok(late_rows_schema())
    }

    fn output_changelog(&self, _inputs: &[ChangelogMode]) -> Result<ChangelogMode, BoxError> {
        Ok(ChangelogMode::InsertOnly)
    }

    fn describe(&self) -> String {
        format!("late rows of {}", self.operator)
    }

    fn create(&self, _context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(LateRows {
            operator: self.operator.clone(),
        }))
    }
}

struct LateRows {
    operator: String,
}

impl Operator for LateRows {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        if batch.num_rows() > 0 {
            let rows = late_rows_batch(&self.operator, ctx.watermark(), &batch)?;
            ctx.emit(rows);
        }
        Ok(())
    }
}

/// `rows` that operator `operator` dropped behind `watermark`, as rows of
/// [`late_rows_schema`]. Errors if Arrow's JSON writer fails on a value.
pub fn late_rows_batch(
    operator: &str,
    watermark: Option<i64>,
    rows: &RecordBatch,
) -> crate::error::Result<RecordBatch> {
    let n = rows.num_rows();
    let mut writer = LineDelimitedWriter::new(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    let text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    let json: StringArray = text.lines().map(Some).collect();
    if json.len() != n {
        return Err(crate::OperatorError::Plan(format!(
            "late rows: {} JSON lines for {n} rows",
            json.len()
        )));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![operator; n])),
        Arc::new(TimestampMillisecondArray::from(vec![watermark; n])),
        Arc::new(json),
    ];
    Ok(RecordBatch::try_new(late_rows_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;

    #[test]
    fn late_rows_become_json_with_the_operator_and_watermark() {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&input),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![Some(7), None])),
            ],
        )
        .unwrap();
        let mut op = LateRowsFactory::new("window")
            .create(&SubtaskContext::standalone(vec![input]))
            .unwrap();
        let mut timers = Timers::default();
        let mut ctx = Context::new(0, Some(1_000), KeyGroupRange::all(128), &mut timers);
        op.process_batch(batch, &mut ctx).unwrap();
        let out = ctx.take_batches();
        let rows = out[0].column(2).as_string::<i32>();
        assert_eq!(rows.value(0), r#"{"k":1,"v":7}"#);
        assert_eq!(rows.value(1), r#"{"k":2}"#);
        assert_eq!(out[0].column(0).as_string::<i32>().value(1), "window");
        let watermark = out[0]
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(watermark.value(0), 1_000);
    }
}
