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
//! State per partition, one entry of a state table ([`weir_engine::state::table`]) by
//! encoded partition key: the rows waiting for the watermark, the accumulators (one per
//! aggregate, retracting for bounded frames, see [`crate::retract`]) and, for bounded frames,
//! the rows of the current frame, which are retracted as the frame moves on (rows in Arrow's
//! row format; accumulators as their partial states). An index of each partition's earliest
//! waiting time stays in memory (counted against the budget) and is rebuilt from the table at
//! restore; the watermark is kept per key group.
//!
//! With a state TTL (`table.exec.state.ttl`), a partition not written for the TTL is
//! forgotten (its frame and accumulators: its next row starts it again), unless rows of it
//! wait for the watermark, as Flink's OVER functions clean up only a partition without
//! pending rows (a stalled watermark must not lose them).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion_common::ScalarValue;
use datafusion_expr::Expr;
use weir_engine::changelog::{data_columns, without_row_kind, ChangelogMode};
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::time::{event_time_column, event_times_ms};
use weir_engine::BoxError;

use crate::aggregate::Aggregates;
use crate::error::{OperatorError, Result};
use crate::group_index::KeyEncoder;
use crate::late::LateOutput;
use crate::row_accumulators::{AccumulatorSet, CountedCodec, RowAccumulators};
use crate::row_format::decode_rows;
use crate::state_codec::{
    put_bytes, refuse_format_0, restore_watermark, snapshot_watermark, Parts,
};
use crate::time_index::TimeIndex;
use crate::{FIRE_PART_ROWS, OUTPUT_BATCH_ROWS};

/// The state table of the partitions, and its format.
const PARTITIONS_TABLE: &str = "over_partitions";
const PARTITIONS_FORMAT: u16 = 1;
/// The tables of the format before state tables (format 0: Arrow snapshots per key group).
const LEGACY_TABLES: [&str; 2] = ["rows", "accumulators"];
/// Bytes a kept row costs besides its bytes (the box, its time, the map's share).
const ROW_OVERHEAD: usize = 40;

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
    state_ttl: Option<Duration>,
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
            state_ttl: None,
        }
    }

    /// Forgets partitions not written for `ttl` that have no rows waiting for the watermark
    /// (none or zero: keep every partition for the job's lifetime).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.state_ttl = ttl.filter(|t| !t.is_zero());
        self
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
            "over aggregate, partition [{}], order by {} {}: [{}]{}",
            self.partition_by.join(", "),
            self.time_column,
            self.frame.describe(),
            aggregates.join(", "),
            crate::ttl::describe(self.state_ttl)
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
        let spec = TableSpec {
            name: PARTITIONS_TABLE,
            version: PARTITIONS_FORMAT,
            ttl: self.state_ttl,
        };
        let codec = PartitionCodec {
            counted: CountedCodec::new(accumulators.clone())?,
        };
        Ok(Box::new(OverAggregate {
            time_column: event_time_column(&data, &self.time_column)?,
            frame: self.frame,
            processing_time: self.processing_time,
            hasher: KeyHasher::new(&data, &self.partition_by, context.max_key_groups)?,
            keys,
            key_columns,
            rows: RowConverter::new(sort_fields)?,
            partitions: context.state_table(spec, codec),
            due: TimeIndex::new(context),
            watermark: None,
            firing: None,
            late: LateOutput::new(context),
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
    /// Bytes of the rows held (with their overhead), for the budget.
    bytes: usize,
}

impl Partition {
    fn add_pending(&mut self, time: EventTimeMs, row: &[u8]) {
        self.bytes += row.len() + ROW_OVERHEAD;
        self.pending.entry(time).or_default().push(Box::from(row));
    }

    fn measure(&mut self) {
        let rows = self
            .frame
            .iter()
            .map(|(_, r)| r)
            .chain(self.pending.values().flatten());
        self.bytes = rows.map(|r| r.len() + ROW_OVERHEAD).sum();
    }
}

/// Stores a partition: whether it has accumulators (one byte) and then their partial states
/// ([`CountedCodec`], length first), then its frame rows and its pending rows, each list a
/// count (u32) followed by (time i64, row bytes length first).
struct PartitionCodec {
    counted: CountedCodec,
}

impl StateCodec for PartitionCodec {
    type Value = Partition;

    fn encode(
        &self,
        values: &mut [&mut Partition],
    ) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        // The accumulators of those that have them, encoded together (column-wise).
        let sets = values
            .iter_mut()
            .filter(|p| !p.accumulators.is_empty())
            .map(|p| (0, &mut p.accumulators));
        let mut states = self.counted.encode(sets)?.into_iter();
        let mut out = Vec::with_capacity(values.len());
        for partition in values.iter() {
            let mut bytes = Vec::with_capacity(partition.bytes + 16);
            match partition.accumulators.is_empty() {
                true => bytes.push(0),
                false => {
                    bytes.push(1);
                    let state = states.next().ok_or_else(|| {
                        StateError::Encoding("an OVER partition's accumulators are missing".into())
                    })?;
                    put_bytes(&mut bytes, &state);
                }
            }
            let mut list = |rows: &mut dyn ExactSizeIterator<Item = (EventTimeMs, &[u8])>| {
                bytes.extend_from_slice(&(rows.len() as u32).to_be_bytes());
                for (time, row) in rows {
                    bytes.extend_from_slice(&time.to_be_bytes());
                    put_bytes(&mut bytes, row);
                }
            };
            list(&mut partition.frame.iter().map(|(t, r)| (*t, &r[..])));
            let pending: Vec<(EventTimeMs, &[u8])> = (partition.pending.iter())
                .flat_map(|(t, rows)| rows.iter().map(move |r| (*t, &r[..])))
                .collect();
            list(&mut pending.into_iter());
            out.push(bytes);
        }
        Ok(out)
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<Partition, StateError> {
        let mut parts = Parts::new(bytes, "an OVER partition");
        let mut partition = Partition::default();
        let [has_accumulators] = parts.array::<1>()?;
        if has_accumulators != 0 {
            partition.accumulators = self.counted.decode(parts.bytes()?)?.1;
        }
        for _ in 0..parts.u32()? {
            let time = parts.i64()?;
            let row = parts.bytes()?;
            partition.bytes += row.len() + ROW_OVERHEAD;
            partition.frame.push_back((time, Box::from(row)));
        }
        for _ in 0..parts.u32()? {
            let time = parts.i64()?;
            partition.add_pending(time, parts.bytes()?);
        }
        Ok(partition)
    }

    fn memory_bytes(&self, partition: &Partition) -> usize {
        partition.bytes
            + CountedCodec::memory_bytes(&partition.accumulators)
            + std::mem::size_of::<Partition>()
    }

    /// Rows waiting for the watermark keep their partition past the TTL.
    fn keeps_alive(&self, partition: &Partition) -> bool {
        !partition.pending.is_empty()
    }
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
    hasher: KeyHasher,
    /// Whole input rows.
    rows: RowConverter,
    partitions: StateTable<PartitionCodec>,
    /// Every partition with rows waiting for the watermark, by its earliest: what a watermark
    /// releases.
    due: TimeIndex,
    watermark: Option<EventTimeMs>,
    /// The time being fired while a large result goes out in parts.
    firing: Option<EventTimeMs>,
    late: LateOutput,
    accumulators: RowAccumulators,
}

/// What firing a partition needs of the operator.
struct Firing<'a> {
    rows: &'a RowConverter,
    data: &'a SchemaRef,
    output: &'a SchemaRef,
    accumulators: &'a RowAccumulators,
    frame: OverFrame,
}

impl OverAggregate {
    /// Aggregates and emits, per partition, the rows `watermark` has passed, about
    /// [`FIRE_PART_ROWS`] per call: with more, it asks to be called again
    /// ([`Operator::on_continue`]) and fires the rest then.
    fn fire(&mut self, watermark: EventTimeMs, ctx: &mut Context<'_>) -> Result<()> {
        let firing = Firing {
            rows: &self.rows,
            data: &self.data,
            output: &self.output,
            accumulators: &self.accumulators,
            frame: self.frame,
        };
        let state = ctx.state_or_err()?;
        let mut batches = Vec::new();
        let mut rows = 0;
        self.firing = None;
        while let Some((_, group, key)) = self.due.pop_until(watermark) {
            let (batch, next) = self.partitions.update_with(
                state,
                group,
                &key,
                Partition::default,
                |partition| {
                    // Nothing to release (an index entry left behind): nothing written.
                    if partition.pending.range(..=watermark).next().is_none() {
                        return ((None, partition.pending.keys().next().copied()), false);
                    }
                    let batch = firing.fire(partition, watermark);
                    (
                        (Some(batch), partition.pending.keys().next().copied()),
                        true,
                    )
                },
            )?;
            if let Some(batch) = batch.transpose()? {
                rows += batch.num_rows();
                batches.push(batch);
            }
            // Its rows after this watermark wait on.
            self.due.reindex(None, next, group, &key);
            if rows >= FIRE_PART_ROWS && self.due.first_time().is_some_and(|t| t <= watermark) {
                self.firing = Some(watermark);
                ctx.continue_later();
                break;
            }
        }
        if !batches.is_empty() {
            let all = concat_batches(&self.output, &batches)?;
            for offset in (0..all.num_rows()).step_by(OUTPUT_BATCH_ROWS) {
                ctx.emit(all.slice(offset, OUTPUT_BATCH_ROWS.min(all.num_rows() - offset)));
            }
        }
        Ok(())
    }
}

impl Firing<'_> {
    /// The rows of `partition` up to `watermark`, with their aggregates.
    fn fire(&self, state: &mut Partition, watermark: EventTimeMs) -> Result<RecordBatch> {
        let later = state.pending.split_off(&watermark.saturating_add(1));
        let ready = std::mem::replace(&mut state.pending, later);
        // The frame's rows, then the new ones: one batch, so that rows leaving the frame are
        // retracted by position.
        let mut all: Vec<TimedRow> = std::mem::take(&mut state.frame).into();
        let first_new = all.len();
        for (time, rows) in ready {
            all.extend(rows.into_iter().map(|row| (time, row)));
        }
        let columns = decode_rows(self.rows, all.iter().map(|(_, row)| &row[..]))?;
        let batch = RecordBatch::try_new(Arc::clone(self.data), columns)?;
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
        state.measure();
        let emitted = UInt32Array::from_iter_values(first_new as u32..batch.num_rows() as u32);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &emitted, None))
            .collect::<std::result::Result<_, _>>()?;
        columns.extend(self.accumulators.value_columns(values)?);
        Ok(RecordBatch::try_new(Arc::clone(self.output), columns)?)
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
        let keys: Vec<ArrayRef> = (self.key_columns.iter())
            .map(|&i| Arc::clone(data.column(i)))
            .collect();
        let encoded = self.keys.encode(&keys, data.num_rows())?;
        let rows = self.rows.convert_columns(data.columns())?;
        let mut late = Vec::new();
        let state = ctx.state_or_err()?;
        for (first, partition_rows) in crate::group_index::rows_by_key(&encoded) {
            let key = encoded.row(first as usize);
            let group = self.hasher.key_group_of(key.as_ref());
            let (before, now) = self.partitions.update_with(
                state,
                group,
                key.as_ref(),
                Partition::default,
                |partition| {
                    let before = partition.pending.keys().next().copied();
                    let mut added = false;
                    for &i in &partition_rows {
                        let time = times[i as usize];
                        if !self.processing_time && self.watermark.is_some_and(|w| time <= w) {
                            late.push(i);
                            continue;
                        }
                        partition.add_pending(time, rows.row(i as usize).as_ref());
                        added = true;
                    }
                    ((before, partition.pending.keys().next().copied()), added)
                },
            )?;
            self.due.reindex(before, now, group, key.as_ref());
        }
        self.partitions.expire(state)?;
        late.sort_unstable();
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
        self.partitions.expire(ctx.state_or_err()?)?;
        Ok(())
    }

    fn on_continue(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        if let Some(time) = self.firing {
            self.fire(time, ctx)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.partitions.flush(state)?;
        snapshot_watermark(state, self.watermark)?;
        Ok(())
    }

    /// The partitions stay in the state backend, read when their keys come; the index of
    /// waiting rows is rebuilt from them. A snapshot of the format before state tables
    /// (format 0) is refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        for legacy in LEGACY_TABLES {
            refuse_format_0(state, legacy, PARTITIONS_TABLE, PARTITIONS_FORMAT)?;
        }
        // Rows at or behind it stay late after a restore.
        self.watermark = restore_watermark(state)?;
        let due = &mut self.due;
        self.partitions
            .visit_stored(state, &mut |group, key, partition| {
                due.reindex(None, partition.pending.keys().next().copied(), group, key);
                Ok(())
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field};
    use arrow::datatypes::{Int64Type, TimeUnit};
    use datafusion_expr::col;
    use datafusion_functions_aggregate::sum::sum;
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::InMemoryStateBackend;

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
        backend: &mut InMemoryStateBackend,
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
        let all = KeyGroupRange::all(128);
        let mut ctx = Context::new(0, None, all, &mut timers)
            .with_state(OperatorState::new(backend, "over", all));
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
        let backend = &mut InMemoryStateBackend::new();
        // Out of order: emitted in time order once the watermark passes them.
        let out = step(
            &mut op,
            backend,
            &[(1, 2, 2_000), (1, 1, 1_000), (1, 3, 3_000)],
            2_000,
        );
        assert_eq!(out, vec![(1, 1), (2, 3)]);
        // 1500 is behind the watermark: late. 2500 is not, and follows 2000 in the frame.
        let out = step(&mut op, backend, &[(1, 10, 1_500), (1, 4, 2_500)], i64::MAX);
        assert_eq!(out, vec![(4, 6), (3, 7)]);
        assert_eq!(
            context
                .metrics
                .total(weir_engine::metrics::names::LATE_ROWS_DROPPED),
            1
        );
    }

    /// Under a state TTL a partition idle for it is forgotten (its next row starts a new
    /// frame), but not one whose rows wait for the watermark, as Flink's OVER functions.
    #[test]
    fn the_state_ttl_forgets_idle_partitions_but_not_waiting_rows() {
        let factory = OverAggregateFactory::new(
            vec!["k".into()],
            "ts",
            OverFrame::Rows(None),
            vec![sum(col("v")).alias("s")],
        )
        .with_state_ttl(Some(std::time::Duration::from_millis(50)));
        let context = SubtaskContext::standalone(vec![schema()]);
        let mut op = factory.create(&context).unwrap();
        let backend = &mut InMemoryStateBackend::new();
        // Key 1 is aggregated; key 2's row waits (the watermark stalls at 1000).
        let out = step(&mut op, backend, &[(1, 1, 1_000), (2, 20, 5_000)], 1_000);
        assert_eq!(out, vec![(1, 1)]);
        std::thread::sleep(std::time::Duration::from_millis(150));
        let mut out = step(&mut op, backend, &[(1, 2, 2_000)], 6_000);
        out.sort();
        assert_eq!(
            out,
            vec![(2, 2), (20, 20)],
            "key 1 starts again; key 2's waiting row outlived the TTL"
        );
    }

    /// Rows the watermark releases at once leave in parts of about `FIRE_PART_ROWS`, the
    /// operator asking to be called again until all have.
    #[test]
    fn a_large_release_goes_out_in_parts() {
        let factory = OverAggregateFactory::new(
            vec!["k".into()],
            "ts",
            OverFrame::Rows(None),
            vec![sum(col("v")).alias("s")],
        );
        let context = SubtaskContext::standalone(vec![schema()]);
        let mut op = factory.create(&context).unwrap();
        let backend = &mut InMemoryStateBackend::new();
        let rows = 3 * FIRE_PART_ROWS as i64;
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i % 1_000))),
                Arc::new(Int64Array::from_iter_values((0..rows).map(|_| 1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(0..rows)),
            ],
        )
        .unwrap();
        let mut timers = Timers::default();
        let all = KeyGroupRange::all(128);
        let mut ctx = Context::new(0, None, all, &mut timers)
            .with_state(OperatorState::new(backend, "over", all));
        op.process_batch(batch, &mut ctx).unwrap();
        op.on_watermark(i64::MAX, &mut ctx).unwrap();
        let mut parts = vec![ctx.take_batches()];
        while ctx.take_continue() {
            op.on_continue(&mut ctx).unwrap();
            parts.push(ctx.take_batches());
        }
        let sizes: Vec<usize> = (parts.iter())
            .map(|p| p.iter().map(|b| b.num_rows()).sum())
            .collect();
        assert!(sizes.len() >= 3, "parts: {sizes:?}");
        // A part ends after the partition that passes the limit (here 197 rows at most).
        assert!(
            sizes.iter().all(|&n| n <= FIRE_PART_ROWS + 200),
            "{sizes:?}"
        );
        assert_eq!(sizes.iter().sum::<usize>(), rows as usize);
        let max = (parts.iter().flatten())
            .map(|b| arrow::compute::max(b.column(3).as_primitive::<Int64Type>()).unwrap())
            .max();
        assert_eq!(
            max,
            Some(rows / 1_000 + 1),
            "the busiest key's running count"
        );
    }
}
