//! OVER aggregations on event time, as Flink's `OverAggregate`: `agg(..) OVER (PARTITION BY p
//! ORDER BY ts ROWS|RANGE BETWEEN .. PRECEDING AND CURRENT ROW)`.
//!
//! Every input row comes out once, with the value of each aggregate over its frame appended:
//! the rows of its partition up to it in event-time order (ties in arrival order), bounded by
//! [`OverFrame`]. A row waits until the watermark passes its time, so rows are aggregated and
//! emitted in event-time order per partition; the result is append-only. A row whose time is
//! not after the watermark when it arrives is late: counted, and dropped or sent to the
//! late-row output ([`LateOutput`]; Flink's rule for unbounded frames; for bounded ones Flink compares with the last
//! time its key emitted, which only differs for rows already behind the watermark).
//!
//! - `ROWS`: each row's frame is itself and the `n` rows before it (all before it when
//!   unbounded).
//! - `RANGE`: rows with equal time are peers, aggregated together and emitted with the same
//!   values; the frame holds the rows whose time is at most the interval before the row's.
//!
//! State per partition: the rows waiting for the watermark, the accumulators (one per
//! aggregate, retracting for bounded frames, see [`crate::retract`]) and, for bounded frames,
//! the rows of the current frame, which are retracted as the frame moves on. Snapshots store
//! the rows (Arrow's row format, decoded into columns) and the accumulators' partial states,
//! per key group.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::ScalarValue;
use datafusion_expr::Expr;
use weir_engine::changelog::{data_columns, without_row_kind, ChangelogMode};
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::time::{event_time_column, event_times_ms};
use weir_engine::BoxError;

use crate::aggregate::Aggregates;
use crate::error::{OperatorError, Result};
use crate::group_index::{GroupIndex, KeyEncoder};
use crate::late::LateOutput;
use crate::row_accumulators::{AccumulatorSet, RowAccumulators};
use crate::row_format::decode_rows;
use crate::state_codec::{read_table, restore_watermark, snapshot_watermark, write_table};

const ROWS_TABLE: &str = "rows";
const ACCUMULATORS_TABLE: &str = "accumulators";
/// State column: the row belongs to the current frame (else it waits for the watermark).
const IN_FRAME: &str = "$in_frame";

/// The frame of an OVER aggregation, which always ends at the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverFrame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW` (`None`: `UNBOUNDED PRECEDING`).
    Rows(Option<u64>),
    /// `RANGE BETWEEN INTERVAL .. PRECEDING AND CURRENT ROW`, the interval in ms (`None`:
    /// `UNBOUNDED PRECEDING`, also the frame of an `OVER (ORDER BY ts)` without one).
    Range(Option<i64>),
}

impl OverFrame {
    /// Whether rows leave the frame (and must be retracted).
    fn bounded(self) -> bool {
        matches!(self, OverFrame::Rows(Some(_)) | OverFrame::Range(Some(_)))
    }

    fn describe(self) -> String {
        let (units, preceding) = match self {
            OverFrame::Rows(n) => ("ROWS", n.map(|n| n.to_string())),
            OverFrame::Range(ms) => ("RANGE", ms.map(|ms| format!("{ms} ms"))),
        };
        let preceding = preceding.unwrap_or_else(|| "UNBOUNDED".into());
        format!("{units} BETWEEN {preceding} PRECEDING AND CURRENT ROW")
    }
}

/// Describes an OVER aggregation: partition columns, the event-time column it is ordered by,
/// the frame and the aggregates (aliased to their output names).
#[derive(Debug, Clone)]
pub struct OverAggregateFactory {
    partition_by: Vec<String>,
    time_column: String,
    frame: OverFrame,
    aggregates: Vec<Expr>,
    processing_time: bool,
}

impl OverAggregateFactory {
    /// `aggregates` (each aliased to its output column) over `frame` of the rows of each
    /// partition (`partition_by` columns; none: one partition) in the order of `time_column`
    /// (an event-time column, TIMESTAMP or BIGINT ms). Planning errors name a missing column
    /// or an aggregate that cannot retract (bounded frames).
    pub fn new(
        partition_by: Vec<String>,
        time_column: impl Into<String>,
        frame: OverFrame,
        aggregates: Vec<Expr>,
    ) -> Self {
        OverAggregateFactory {
            partition_by,
            time_column: time_column.into(),
            frame,
            aggregates,
            processing_time: false,
        }
    }

    /// Ordered by processing time (`time_column` a `PROCTIME()` attribute), as Flink's
    /// `ProcTime...Over` functions: each row's time is the clock when it reaches the operator
    /// (never before an earlier row's), and it is aggregated and emitted at once; the rows of
    /// one batch share a time, so with RANGE they are peers. Never late; watermarks are
    /// ignored.
    pub fn on_processing_time(mut self) -> Self {
        self.processing_time = true;
        self
    }

    /// The output: the input's columns, then one column per aggregate.
    fn plan(&self, input: &SchemaRef) -> Result<(SchemaRef, RowAccumulators)> {
        if matches!(self.frame, OverFrame::Range(Some(ms)) if ms < 0) {
            return Err(OperatorError::Plan(format!(
                "an OVER frame cannot reach forward: {}",
                self.frame.describe()
            )));
        }
        let data = without_row_kind(input);
        for column in self.partition_by.iter().chain([&self.time_column]) {
            if data.index_of(column).is_err() {
                return Err(OperatorError::Plan(format!(
                    "OVER column '{column}' not found; the input has ({})",
                    weir_engine::graph::column_list(&data)
                )));
            }
        }
        let aggregates = Aggregates::plan(&self.aggregates, &data)?;
        let mut fields: Vec<FieldRef> = data.fields().iter().cloned().collect();
        fields.extend(
            aggregates
                .output_fields()
                .iter()
                .map(|f| Arc::new(f.as_ref().clone().with_nullable(true))),
        );
        let accumulators = RowAccumulators::new(aggregates, self.frame.bounded())?;
        Ok((Arc::new(Schema::new(fields)), accumulators))
    }
}

impl OperatorFactory for OverAggregateFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        Ok(self.plan(&inputs[0])?.0)
    }

    /// Append-only, over an append-only input (as Flink's, which refuses an updating one).
    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        if !inputs[0].is_insert_only() {
            return Err(Box::new(OperatorError::Plan(
                "an OVER aggregation over an updating result is not supported (nor in Flink)"
                    .into(),
            )));
        }
        Ok(ChangelogMode::InsertOnly)
    }

    fn describe(&self) -> String {
        let aggregates: Vec<String> = self.aggregates.iter().map(|a| a.to_string()).collect();
        format!(
            "over aggregate, partition [{}], order by {} {}: [{}]",
            self.partition_by.join(", "),
            self.time_column,
            self.frame.describe(),
            aggregates.join(", ")
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let input = context.input_schema();
        let (output, accumulators) = self.plan(input)?;
        let data = without_row_kind(input);
        let key_columns: Vec<usize> = self
            .partition_by
            .iter()
            .map(|k| data.index_of(k))
            .collect::<std::result::Result<_, _>>()?;
        let key_fields: Vec<FieldRef> = key_columns
            .iter()
            .map(|&i| Arc::clone(&data.fields()[i]))
            .collect();
        let keys = KeyEncoder::new(&key_fields)?;
        let sort_fields: Vec<SortField> = data
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let mut row_fields: Vec<FieldRef> = data.fields().iter().cloned().collect();
        row_fields.push(Arc::new(Field::new(IN_FRAME, DataType::Boolean, false)));
        let mut accumulator_fields = key_fields.clone();
        accumulator_fields.extend(accumulators.state_fields().iter().cloned());
        let accumulator_schema = Arc::new(Schema::new(accumulator_fields));
        Ok(Box::new(OverAggregate {
            time_column: event_time_column(&data, &self.time_column)?,
            frame: self.frame,
            processing_time: self.processing_time,
            index: keys.group_index(0),
            row_hasher: KeyHasher::new(&data, &self.partition_by, context.max_key_groups)?,
            accumulator_hasher: KeyHasher::new(
                &accumulator_schema,
                &self.partition_by,
                context.max_key_groups,
            )?,
            keys,
            key_columns,
            rows: RowConverter::new(sort_fields)?,
            partitions: Vec::new(),
            due: BTreeSet::new(),
            watermark: None,
            late: LateOutput::new(context),
            row_schema: Arc::new(Schema::new(row_fields)),
            accumulator_schema,
            accumulators,
            data,
            output,
        }))
    }
}

/// A row in Arrow's row format with its event time.
type TimedRow = (EventTimeMs, Box<[u8]>);

#[derive(Default)]
struct Partition {
    /// Rows not yet passed by the watermark, by time (arrival order within a time).
    pending: BTreeMap<EventTimeMs, Vec<Box<[u8]>>>,
    /// Bounded frames: the rows in the accumulators, oldest first.
    frame: VecDeque<TimedRow>,
    /// Empty until the partition's first row is aggregated.
    accumulators: AccumulatorSet,
}

/// One subtask of an OVER aggregation (see the module).
pub struct OverAggregate {
    data: SchemaRef,
    output: SchemaRef,
    time_column: usize,
    frame: OverFrame,
    processing_time: bool,
    key_columns: Vec<usize>,
    keys: KeyEncoder,
    index: GroupIndex,
    /// Whole input rows.
    rows: RowConverter,
    partitions: Vec<Partition>,
    /// (time, partition) of every pending row's time: what a watermark releases.
    due: BTreeSet<(EventTimeMs, usize)>,
    watermark: Option<EventTimeMs>,
    late: LateOutput,
    accumulators: RowAccumulators,
    row_schema: SchemaRef,
    row_hasher: KeyHasher,
    accumulator_schema: SchemaRef,
    accumulator_hasher: KeyHasher,
}

impl OverAggregate {
    /// The partition of each row of `data`.
    fn partitions_of(&mut self, data: &RecordBatch) -> Result<Vec<usize>> {
        let keys: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| Arc::clone(data.column(i)))
            .collect();
        let encoded = self.keys.encode(&keys, data.num_rows())?;
        let mut partition_of = Vec::with_capacity(data.num_rows());
        self.index.intern(&encoded, &mut partition_of);
        self.partitions
            .resize_with(self.index.len(), Partition::default);
        Ok(partition_of)
    }

    /// Aggregates and emits, per partition, the rows the watermark has passed.
    fn fire(&mut self, watermark: EventTimeMs, ctx: &mut Context<'_>) -> Result<()> {
        let later = self.due.split_off(&(watermark.saturating_add(1), 0));
        let fired: BTreeSet<usize> = std::mem::replace(&mut self.due, later)
            .into_iter()
            .map(|(_, partition)| partition)
            .collect();
        let mut batches = Vec::new();
        for partition in fired {
            batches.push(self.fire_partition(partition, watermark)?);
        }
        if !batches.is_empty() {
            ctx.emit(concat_batches(&self.output, &batches)?);
        }
        Ok(())
    }

    /// The rows of `partition` up to `watermark`, with their aggregates.
    fn fire_partition(&mut self, partition: usize, watermark: EventTimeMs) -> Result<RecordBatch> {
        let state = &mut self.partitions[partition];
        let later = state.pending.split_off(&watermark.saturating_add(1));
        let ready = std::mem::replace(&mut state.pending, later);
        // The frame's rows, then the new ones: one batch, so that rows leaving the frame are
        // retracted by position.
        let mut all: Vec<TimedRow> = std::mem::take(&mut state.frame).into();
        let first_new = all.len();
        for (time, rows) in ready {
            all.extend(rows.into_iter().map(|row| (time, row)));
        }
        let columns = decode_rows(&self.rows, all.iter().map(|(_, row)| &row[..]))?;
        let batch = RecordBatch::try_new(Arc::clone(&self.data), columns)?;
        let inputs = self.accumulators.aggregates().inputs(&batch)?;
        if state.accumulators.is_empty() {
            state.accumulators = self.accumulators.create()?;
        }
        let set = &mut state.accumulators;
        // Each aggregate's value per emitted row.
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(all.len() - first_new); inputs.len()];
        // The first row still in the accumulators.
        let mut start = 0;
        let mut row = first_new;
        while row < all.len() {
            // Peers: rows with this time (RANGE), or this row alone (ROWS).
            let time = all[row].0;
            let end = match self.frame {
                OverFrame::Range(_) => row + all[row..].iter().take_while(|r| r.0 == time).count(),
                OverFrame::Rows(_) => row + 1,
            };
            let added: Vec<u32> = (row as u32..end as u32).collect();
            RowAccumulators::feed(set, &inputs, &added, false)?;
            let keep_from = match self.frame {
                OverFrame::Rows(Some(n)) => {
                    end.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1))
                }
                OverFrame::Range(Some(ms)) => {
                    let lowest = time.saturating_sub(ms);
                    start + all[start..end].iter().take_while(|r| r.0 < lowest).count()
                }
                _ => start,
            };
            if keep_from > start {
                let left: Vec<u32> = (start as u32..keep_from as u32).collect();
                RowAccumulators::feed(set, &inputs, &left, true)?;
                start = keep_from;
            }
            let result = RowAccumulators::evaluate(set)?;
            for (column, value) in values.iter_mut().zip(result) {
                column.extend(std::iter::repeat_n(value, end - row));
            }
            row = end;
        }
        if self.frame.bounded() {
            state.frame = all.drain(start..).collect();
        }
        let emitted = UInt32Array::from_iter_values(first_new as u32..batch.num_rows() as u32);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &emitted, None))
            .collect::<std::result::Result<_, _>>()?;
        columns.extend(self.accumulators.value_columns(values)?);
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }
}

impl Operator for OverAggregate {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        let data = data_columns(&batch, &self.data)?;
        if data.num_rows() == 0 {
            return Ok(());
        }
        let times = match self.processing_time {
            // The clock, never behind the rows already emitted.
            true => {
                let now = weir_engine::time::now_ms();
                let now = self.watermark.map_or(now, |w| now.max(w));
                vec![now; data.num_rows()].into()
            }
            false => event_times_ms(&data, self.time_column)?,
        };
        let partition_of = self.partitions_of(&data)?;
        let rows = self.rows.convert_columns(data.columns())?;
        let mut late = Vec::new();
        for (i, (&time, &partition)) in times.iter().zip(&partition_of).enumerate() {
            if !self.processing_time && self.watermark.is_some_and(|w| time <= w) {
                late.push(i as u32);
                continue;
            }
            self.partitions[partition]
                .pending
                .entry(time)
                .or_default()
                .push(Box::from(rows.row(i).as_ref()));
            self.due.insert((time, partition));
        }
        self.late.emit(&batch, late, ctx)?;
        if self.processing_time {
            // Aggregated and emitted as they arrive.
            let now = times.first().copied().unwrap_or(EventTimeMs::MIN);
            self.watermark = Some(now);
            self.fire(now, ctx)?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTimeMs,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if !self.processing_time {
            self.watermark = Some(watermark);
            self.fire(watermark, ctx)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        // Rows: each partition's frame, then its pending rows in time order.
        let mut rows: Vec<&[u8]> = Vec::new();
        let mut in_frame: Vec<bool> = Vec::new();
        for partition in &self.partitions {
            for (_, row) in &partition.frame {
                rows.push(row);
                in_frame.push(true);
            }
            for row in partition.pending.values().flatten() {
                rows.push(row);
                in_frame.push(false);
            }
        }
        let mut columns = decode_rows(&self.rows, rows)?;
        columns.push(Arc::new(BooleanArray::from(in_frame)));
        let batch = RecordBatch::try_new(Arc::clone(&self.row_schema), columns)?;
        write_table(state, ROWS_TABLE, &self.row_hasher, &batch, 0)?;
        // Accumulators of the partitions that have them.
        let live: Vec<u32> = (0..self.partitions.len() as u32)
            .filter(|&p| !self.partitions[p as usize].accumulators.is_empty())
            .collect();
        let mut columns: Vec<ArrayRef> = self
            .keys
            .decode(self.index.keys())?
            .iter()
            .map(|k| take(k.as_ref(), &UInt32Array::from(live.clone()), None))
            .collect::<std::result::Result<_, _>>()?;
        let sets = self
            .partitions
            .iter_mut()
            .filter(|p| !p.accumulators.is_empty())
            .map(|p| &mut p.accumulators);
        columns.extend(self.accumulators.states(sets)?);
        let batch = RecordBatch::try_new(Arc::clone(&self.accumulator_schema), columns)?;
        write_table(
            state,
            ACCUMULATORS_TABLE,
            &self.accumulator_hasher,
            &batch,
            0,
        )?;
        snapshot_watermark(state, self.watermark)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        // Rows at or behind it stay late after a restore.
        self.watermark = restore_watermark(state)?;
        for (_, batch) in read_table(state, ROWS_TABLE, &Arc::clone(&self.row_schema))? {
            let in_frame = batch.column(batch.num_columns() - 1).as_boolean().clone();
            let data = RecordBatch::try_new(
                Arc::clone(&self.data),
                batch.columns()[..batch.num_columns() - 1].to_vec(),
            )?;
            let times = event_times_ms(&data, self.time_column)?;
            let partition_of = self.partitions_of(&data)?;
            let rows = self.rows.convert_columns(data.columns())?;
            for (i, (&time, &partition)) in times.iter().zip(&partition_of).enumerate() {
                let row: Box<[u8]> = Box::from(rows.row(i).as_ref());
                let target = &mut self.partitions[partition];
                match in_frame.value(i) {
                    true => target.frame.push_back((time, row)),
                    false => {
                        target.pending.entry(time).or_default().push(row);
                        self.due.insert((time, partition));
                    }
                }
            }
        }
        let key_count = self.key_columns.len();
        for (_, batch) in read_table(
            state,
            ACCUMULATORS_TABLE,
            &Arc::clone(&self.accumulator_schema),
        )? {
            let keys = &batch.columns()[..key_count];
            let encoded = self.keys.encode(keys, batch.num_rows())?;
            let mut partition_of = Vec::new();
            self.index.intern(&encoded, &mut partition_of);
            self.partitions
                .resize_with(self.index.len(), Partition::default);
            for (row, &partition) in partition_of.iter().enumerate() {
                let target = &mut self.partitions[partition];
                if target.accumulators.is_empty() {
                    target.accumulators = self.accumulators.create()?;
                }
                self.accumulators.merge(
                    &mut target.accumulators,
                    &batch.columns()[key_count..],
                    row,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{Int64Type, TimeUnit};
    use datafusion_expr::col;
    use datafusion_functions_aggregate::sum::sum;
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    /// Feeds `rows` (k, v, ts) then `watermark`; returns (v, sum) of the rows emitted.
    fn step(
        op: &mut Box<dyn Operator>,
        rows: &[(i64, i64, i64)],
        watermark: i64,
    ) -> Vec<(i64, i64)> {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
        )
        .unwrap();
        let mut timers = Timers::default();
        let mut ctx = Context::new(0, None, KeyGroupRange::all(128), &mut timers);
        op.process_batch(batch, &mut ctx).unwrap();
        op.on_watermark(watermark, &mut ctx).unwrap();
        ctx.take_batches()
            .iter()
            .flat_map(|b| {
                let v = b.column(1).as_primitive::<Int64Type>().clone();
                let s = b.column(3).as_primitive::<Int64Type>().clone();
                (0..b.num_rows()).map(move |i| (v.value(i), s.value(i)))
            })
            .collect()
    }

    #[test]
    fn rows_wait_for_the_watermark_and_late_ones_are_dropped_and_counted() {
        let factory = OverAggregateFactory::new(
            vec!["k".into()],
            "ts",
            OverFrame::Rows(Some(1)),
            vec![sum(col("v")).alias("s")],
        );
        let context = SubtaskContext::standalone(vec![schema()]);
        let mut op = factory.create(&context).unwrap();
        // Out of order: emitted in time order once the watermark passes them.
        let out = step(
            &mut op,
            &[(1, 2, 2_000), (1, 1, 1_000), (1, 3, 3_000)],
            2_000,
        );
        assert_eq!(out, vec![(1, 1), (2, 3)]);
        // 1500 is behind the watermark: late. 2500 is not, and follows 2000 in the frame.
        let out = step(&mut op, &[(1, 10, 1_500), (1, 4, 2_500)], i64::MAX);
        assert_eq!(out, vec![(4, 6), (3, 7)]);
        assert_eq!(
            context
                .metrics
                .total(weir_engine::metrics::names::LATE_ROWS_DROPPED),
            1
        );
    }
}
