//! Event-time temporal join, as Flink's `TemporalRowTimeJoinOperator` (`JOIN versioned FOR
//! SYSTEM_TIME AS OF left.time`): each left row joins the version of its key that was valid
//! at the left row's time in the right input, a versioned table (a changelog keyed by its
//! primary key, with a time attribute).
//!
//! - Right rows are versions: per key, by their time, the last one at a time wins. `+I`/`+U`
//!   start a version, `-D` ends the key's row (no version until the next), `-U` is skipped
//!   (the `+U` that follows replaces it, as Flink drops update-befores here).
//! - Left rows wait until the watermark passes their time; then each joins the latest version
//!   at or before its time, if that version is a row and the residual condition holds. An
//!   INNER join drops the others, a LEFT join pads them with NULLs. A left row arriving behind
//!   the watermark is not dropped: it is joined at the next watermark (as Flink's timers do)
//!   with the versions still kept, which start at the one valid at the watermark.
//! - Output: the left columns then the right ones, with the left row's kind when the left
//!   input is a changelog (append-only otherwise). The output rows' times are the left
//!   rows', which the watermark has only just passed, so the watermark is not held back.
//! - State: left rows until joined, in a state table ([`super::store`]); per key the versions
//!   after the watermark and the last one at or before it (older ones can never be joined
//!   again), in memory and snapshotted per key group.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use weir_engine::changelog::{
    data_columns, kind_at, row_kinds, with_row_kind, ChangelogMode, RowKind,
};
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use super::store::{NewRow, SideStore, KEPT_FORMAT};
use super::JOIN_INPUTS;
use super::{key_is_null, plan_timed, side_hashers, JoinKeys, JoinPlan, JoinSpec, JoinType, Side};
use crate::error::{OperatorError, Result};
use crate::row_format::{decode_rows, slices};
use crate::state_codec::{read_table, refuse_format_0, write_table};

/// Describes an event-time temporal join: INNER or LEFT, with the left input's time
/// attribute (the `AS OF` column) and the versioned table's.
#[derive(Debug, Clone)]
pub struct TemporalJoinFactory {
    spec: JoinSpec,
    time_columns: [String; 2],
}

impl TemporalJoinFactory {
    /// Fails for join types other than INNER and LEFT (Flink's temporal joins are those).
    pub fn new(
        spec: JoinSpec,
        left_time: impl Into<String>,
        right_time: impl Into<String>,
    ) -> Result<Self> {
        if !matches!(spec.join_type, JoinType::Inner | JoinType::Left) {
            return Err(OperatorError::Plan(format!(
                "a temporal join is INNER or LEFT, not {}",
                spec.join_type.sql()
            )));
        }
        Ok(TemporalJoinFactory {
            spec,
            time_columns: [left_time.into(), right_time.into()],
        })
    }

    fn plan(&self, inputs: &[SchemaRef]) -> Result<(JoinPlan, [usize; 2])> {
        plan_timed(
            &self.spec,
            inputs,
            "a temporal join",
            &self.time_columns,
            false,
            true,
        )
    }
}

impl OperatorFactory for TemporalJoinFactory {
    fn inputs(&self) -> &'static [&'static str] {
        JOIN_INPUTS
    }

    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        let (plan, _) = self.plan(inputs)?;
        Ok(match plan.updating[0] {
            true => with_row_kind(&plan.output),
            false => plan.output,
        })
    }

    /// The left input's: each output row has its left row's kind.
    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        Ok(match inputs[0].is_insert_only() {
            true => ChangelogMode::InsertOnly,
            false => ChangelogMode::All,
        })
    }

    fn describe(&self) -> String {
        format!(
            "temporal join {} FOR SYSTEM_TIME AS OF left.{} (versions by right.{})",
            self.spec.describe(),
            self.time_columns[0],
            self.time_columns[1]
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let (plan, time_columns) = self.plan(&context.input_schemas)?;
        let left_input = Arc::clone(&context.input_schemas[0]);
        let fields = plan
            .right
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let mut version_fields: Vec<_> = plan.right.fields().iter().cloned().collect();
        version_fields.push(Arc::new(Field::new(ACCUMULATE, DataType::Boolean, false)));
        Ok(Box::new(TemporalJoin {
            hashers: side_hashers(&self.spec, &plan, context.max_key_groups)?,
            left: SideStore::new(LEFT_TABLE, Arc::clone(&left_input), context)?,
            versions: HashMap::new(),
            to_prune: BTreeMap::new(),
            rows: RowConverter::new(fields)?,
            version_schema: Arc::new(Schema::new(version_fields)),
            output: self.output_schema(&context.input_schemas)?,
            time_columns,
            padded: self.spec.join_type == JoinType::Left,
            plan,
        }))
    }
}

/// The state table of the waiting left rows (the snapshots before state tables used the
/// side's name).
const LEFT_TABLE: &str = "temporal-left";

/// Name of the snapshot column that tells a version (`true`) from a deletion.
const ACCUMULATE: &str = "$accumulate";

/// One version of a key's row: from its time until the next version's.
#[derive(Debug, Clone)]
struct Version {
    /// The right row (Arrow's row format).
    row: Box<[u8]>,
    /// `false` for a deletion: no row from this time on.
    accumulate: bool,
}

/// One subtask of a temporal join.
pub struct TemporalJoin {
    plan: JoinPlan,
    hashers: [KeyHasher; 2],
    /// Time column index in each input.
    time_columns: [usize; 2],
    /// Left rows (the left input's columns, with its row kinds if a changelog) waiting for
    /// the watermark; each "expires" at its time.
    left: SideStore,
    /// Encoded key -> time -> version.
    versions: HashMap<Vec<u8>, BTreeMap<i64, Version>>,
    /// Version time -> keys that got a version then: where older versions may become
    /// unreachable once the watermark passes.
    to_prune: BTreeMap<i64, Vec<Box<[u8]>>>,
    rows: RowConverter,
    /// The right columns and [`ACCUMULATE`]: how versions are snapshotted.
    version_schema: SchemaRef,
    output: SchemaRef,
    /// Whether left rows without a version are emitted padded (LEFT join).
    padded: bool,
}

impl TemporalJoin {
    fn keys(&self, side: Side, batch: &RecordBatch) -> Result<JoinKeys> {
        JoinKeys::of(
            &self.hashers[side as usize],
            &self.plan.keys[side as usize],
            batch,
        )
    }

    fn add_left(&mut self, batch: &RecordBatch, state: &mut OperatorState<'_>) -> Result<()> {
        let times = event_times_ms(batch, self.time_columns[0])?;
        let keys = self.keys(Side::Left, batch)?;
        let rows = (0..batch.num_rows())
            .map(|i| NewRow {
                row: i as u32,
                key: keys.get(i),
                group: self.hashers[0].key_group_of(keys.get(i)),
                time: times[i],
                expires: times[i],
                matched: false,
            })
            .collect();
        self.left.insert(state, batch, rows)
    }

    /// Keeps the versions in `batch` (right columns, without row kinds); `accumulate[i]` tells
    /// a version from a deletion, `None` skips the row.
    fn add_versions(&mut self, batch: &RecordBatch, accumulate: &[Option<bool>]) -> Result<()> {
        let times = event_times_ms(batch, self.time_columns[1])?;
        let keys = self.keys(Side::Right, batch)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        for (i, accumulate) in accumulate.iter().enumerate() {
            let Some(accumulate) = *accumulate else {
                continue;
            };
            if key_is_null(batch, &self.plan.keys[1], i) {
                continue;
            }
            let key = keys.get(i);
            self.versions.entry_ref(key).or_default().insert(
                times[i],
                Version {
                    row: Box::from(rows.row(i).as_ref()),
                    accumulate,
                },
            );
            self.to_prune
                .entry(times[i])
                .or_default()
                .push(Box::from(key));
        }
        Ok(())
    }

    /// Joins the left rows the watermark has passed, then forgets versions no left row can
    /// reach any more.
    fn advance(&mut self, watermark: EventTimeMs, ctx: &mut Context<'_>) -> Result<()> {
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        self.left
            .expire(ctx.state_or_err()?, watermark, &mut |row, _| {
                bytes.extend_from_slice(row);
                ends.push(bytes.len());
            })?;
        if !ends.is_empty() {
            let rows = self.left.decode(slices(&bytes, &ends))?;
            self.join(&rows, ctx)?;
        }
        while let Some(entry) = self.to_prune.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let Some(versions) = self.versions.get_mut(&*key) else {
                    continue;
                };
                let Some(&current) = versions.range(..=watermark).next_back().map(|(t, _)| t)
                else {
                    continue;
                };
                *versions = versions.split_off(&current);
                let deleted = versions.len() == 1 && versions.values().all(|v| !v.accumulate);
                if deleted {
                    self.versions.remove(&*key);
                }
            }
        }
        Ok(())
    }

    /// Joins left rows (the left input's columns) with their versions and emits the result.
    fn join(&self, rows: &RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        let kinds = row_kinds(rows).cloned();
        let data = data_columns(rows, &self.plan.left)?;
        let times = event_times_ms(&data, self.time_columns[0])?;
        let keys = self.keys(Side::Left, &data)?;
        // Left rows with a version, and their versions (in the same order).
        let mut with_version: Vec<u32> = Vec::new();
        let mut found: Vec<&[u8]> = Vec::new();
        for (i, time) in times.iter().enumerate() {
            if key_is_null(&data, &self.plan.keys[0], i) {
                continue;
            }
            let version = self
                .versions
                .get(keys.get(i))
                .and_then(|v| v.range(..=*time).next_back())
                .map(|(_, v)| v)
                .filter(|v| v.accumulate);
            if let Some(version) = version {
                with_version.push(i as u32);
                found.push(&version.row);
            }
        }
        let versions = RecordBatch::try_new(
            Arc::clone(&self.plan.right),
            decode_rows(&self.rows, found.iter().copied())?,
        )?;
        let left_with_version = take_record_batch(&data, &UInt32Array::from(with_version.clone()))?;
        let (_, mask) = self.plan.pairs(&left_with_version, &versions)?;
        // Each left row's version where the condition holds.
        let mut matched: Vec<Option<u32>> = vec![None; data.num_rows()];
        for (pair, &row) in with_version.iter().enumerate() {
            if mask.value(pair) {
                matched[row as usize] = Some(pair as u32);
            }
        }
        let emitted: Vec<u32> = (0..data.num_rows() as u32)
            .filter(|&i| self.padded || matched[i as usize].is_some())
            .collect();
        if emitted.is_empty() {
            return Ok(());
        }
        let left_index = UInt32Array::from(emitted.clone());
        let right_index: UInt32Array = emitted.iter().map(|&i| matched[i as usize]).collect();
        let pick = |columns: &[ArrayRef], index: &UInt32Array| -> Result<Vec<ArrayRef>> {
            Ok(columns
                .iter()
                .map(|c| take(c.as_ref(), index, None))
                .collect::<std::result::Result<_, _>>()?)
        };
        let mut columns = pick(data.columns(), &left_index)?;
        columns.extend(pick(versions.columns(), &right_index)?);
        if let Some(kinds) = kinds {
            columns.extend(pick(&[Arc::new(kinds) as ArrayRef], &left_index)?);
        }
        ctx.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }
}

impl Operator for TemporalJoin {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match Side::of_input(ctx.input()) {
            Side::Left => self.add_left(&batch, ctx.state_or_err()?)?,
            Side::Right => {
                let kinds = row_kinds(&batch).cloned();
                let accumulate: Vec<Option<bool>> = (0..batch.num_rows())
                    .map(|i| match kind_at(kinds.as_ref(), i) {
                        RowKind::UpdateBefore => None,
                        kind => Some(kind.is_accumulate()),
                    })
                    .collect();
                self.add_versions(&data_columns(&batch, &self.plan.right)?, &accumulate)?;
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTimeMs,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        Ok(self.advance(watermark, ctx)?)
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.left.flush(state)?;
        let versions: Vec<&Version> = self.versions.values().flat_map(|v| v.values()).collect();
        let mut columns = decode_rows(&self.rows, versions.iter().map(|v| &*v.row))?;
        columns.push(Arc::new(BooleanArray::from_iter(
            versions.iter().map(|v| Some(v.accumulate)),
        )));
        let right = RecordBatch::try_new(Arc::clone(&self.version_schema), columns)?;
        write_table(state, Side::Right.name(), &self.hashers[1], &right, 0)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        refuse_format_0(state, Side::Left.name(), LEFT_TABLE, KEPT_FORMAT)?;
        self.left.restore(state)?;
        for (_, batch) in read_table(state, Side::Right.name(), &Arc::clone(&self.version_schema))?
        {
            let flags = batch.column(batch.num_columns() - 1).as_boolean();
            let accumulate: Vec<Option<bool>> = flags.iter().collect();
            self.add_versions(&data_columns(&batch, &self.plan.right)?, &accumulate)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{Int64Type, TimeUnit};
    use weir_engine::changelog::{kind_array, row_kind_field};
    use weir_engine::operator::Timers;
    use weir_engine::state::InMemoryStateBackend;

    use super::*;

    fn left_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    /// The versioned table: key, time, value and row kinds.
    fn right_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("rk", DataType::Int64, false),
            Field::new(
                "rts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("rv", DataType::Int64, true),
            row_kind_field(),
        ]))
    }

    fn left(rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            left_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
            ],
        )
        .unwrap()
    }

    fn right(rows: &[(RowKind, i64, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            right_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                kind_array(rows.iter().map(|r| r.0)),
            ],
        )
        .unwrap()
    }

    fn operator() -> Box<dyn Operator> {
        let spec = JoinSpec {
            join_type: JoinType::Left,
            left_keys: vec!["k".into()],
            right_keys: vec!["rk".into()],
            filter: None,
        };
        let context = SubtaskContext::standalone(vec![left_schema(), right_schema()]);
        TemporalJoinFactory::new(spec, "ts", "rts")
            .unwrap()
            .create(&context)
            .unwrap()
    }

    /// Feeds a batch (`Some((input, batch))`) or a watermark; returns (key, left ts, value).
    fn call(
        join: &mut Box<dyn Operator>,
        backend: &mut InMemoryStateBackend,
        input: Option<(usize, RecordBatch)>,
        watermark: Option<i64>,
    ) -> Vec<(i64, i64, Option<i64>)> {
        let mut timers = Timers::default();
        let key_groups = weir_engine::partition::KeyGroupRange::all(128);
        let mut ctx = Context::new(
            input.as_ref().map_or(0, |i| i.0),
            watermark,
            key_groups,
            &mut timers,
        )
        .with_state(OperatorState::new(backend, "join", key_groups));
        match (input, watermark) {
            (Some((_, batch)), _) => join.process_batch(batch, &mut ctx).unwrap(),
            (None, Some(w)) => join.on_watermark(w, &mut ctx).unwrap(),
            (None, None) => {}
        }
        let mut out = Vec::new();
        for batch in ctx.take_batches() {
            let times = event_times_ms(&batch, 1).unwrap();
            let values = batch.column(4).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                let key = batch.column(0).as_primitive::<Int64Type>().value(i);
                out.push((key, times[i], values.is_valid(i).then(|| values.value(i))));
            }
        }
        out
    }

    #[test]
    fn left_rows_take_the_version_valid_at_their_time_across_a_snapshot() {
        use RowKind::*;
        let mut join = operator();
        let backend = &mut InMemoryStateBackend::new();
        call(
            &mut join,
            backend,
            Some((1, right(&[(Insert, 1, 10, 100), (Insert, 2, 10, 200)]))),
            None,
        );
        call(
            &mut join,
            backend,
            Some((0, left(&[(1, 15), (2, 25), (1, 30), (3, 30)]))),
            None,
        );
        // Key 1 changes at 20 (the -U is skipped), key 2 is deleted at 22.
        let changes = right(&[
            (UpdateBefore, 1, 10, 100),
            (UpdateAfter, 1, 20, 101),
            (Delete, 2, 22, 200),
        ]);
        call(&mut join, backend, Some((1, changes)), None);
        assert_eq!(
            call(&mut join, backend, None, Some(16)),
            vec![(1, 15, Some(100))]
        );

        let all = weir_engine::partition::KeyGroupRange::all(128);
        join.snapshot_state(&mut OperatorState::new(backend, "join", all))
            .unwrap();
        let mut restored = operator();
        restored
            .restore_state(&OperatorState::new(backend, "join", all))
            .unwrap();
        let mut rows = call(&mut restored, backend, None, Some(40));
        rows.sort();
        assert_eq!(
            rows,
            vec![(1, 30, Some(101)), (2, 25, None), (3, 30, None)],
            "key 1's second version, key 2 deleted, key 3 never versioned"
        );
        // A left row behind the watermark is joined at the next one, with what is kept: the
        // version valid at the watermark (20), not the one valid at 12, which is gone (as in
        // Flink), so it is padded.
        call(
            &mut restored,
            backend,
            Some((0, left(&[(1, 12), (1, 35)]))),
            None,
        );
        assert_eq!(
            call(&mut restored, backend, None, Some(41)),
            vec![(1, 12, None), (1, 35, Some(101))]
        );
    }
}
