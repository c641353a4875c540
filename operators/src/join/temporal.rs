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
//! - State, in two state tables (beyond the memory budget in RocksDB; checkpoints write what
//!   changed): the left rows until joined ([`super::store`]), and per key the versions after
//!   the watermark and the last one at or before it (older ones can never be joined again).
//!   An in-memory index holds each key whose oldest version the watermark can make
//!   unreachable, by the time it does (a key with one version is not in it).

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use weir_engine::changelog::{
    data_columns, kind_at, row_kinds, with_row_kind, ChangelogMode, RowKind,
};
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use super::store::{NewRow, SideStore, KEPT_FORMAT};
use super::JOIN_INPUTS;
use super::{key_is_null, plan_timed, side_hashers, JoinKeys, JoinPlan, JoinSpec, JoinType, Side};
use crate::error::{OperatorError, Result};
use crate::row_format::{decode_rows, slices};
use crate::state_codec::{put_bytes, refuse_format_0, Parts};
use crate::time_index::TimeIndex;
use crate::FIRE_PART_ROWS;

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
        let spec = TableSpec {
            name: VERSIONS_TABLE,
            version: VERSIONS_FORMAT,
            ttl: None,
        };
        Ok(Box::new(TemporalJoin {
            hashers: side_hashers(&self.spec, &plan, context.max_key_groups)?,
            left: SideStore::new(LEFT_TABLE, Arc::clone(&left_input), context)?,
            versions: context.state_table(spec, VersionsCodec),
            to_prune: TimeIndex::new(context),
            joining: None,
            rows: RowConverter::new(fields)?,
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

/// The state table of the versions, and its format (format 0 was one Arrow snapshot per key
/// group in table `right`).
const VERSIONS_TABLE: &str = "temporal-versions";
const VERSIONS_FORMAT: u16 = 1;

/// One version of a key's row: from its time until the next version's.
#[derive(Debug, Clone)]
struct Version {
    /// Event time (ms) from which it is valid.
    time: i64,
    /// The right row (Arrow's row format).
    row: Box<[u8]>,
    /// `false` for a deletion: no row from this time on.
    accumulate: bool,
}

/// One key's versions, ordered by time (one per time: the last one at a time wins).
#[derive(Debug, Default)]
struct KeyVersions(Vec<Version>);

impl KeyVersions {
    fn insert(&mut self, version: Version) {
        match self.0.binary_search_by_key(&version.time, |v| v.time) {
            Ok(at) => self.0[at] = version,
            Err(at) => self.0.insert(at, version),
        }
    }

    /// The version valid at `time`: the latest at or before it.
    fn at(&self, time: i64) -> Option<&Version> {
        let after = self.0.partition_point(|v| v.time <= time);
        after.checked_sub(1).map(|i| &self.0[i])
    }

    /// The watermark at which something can be dropped: the second version's time (the
    /// first is then unreachable), or a lone deletion's own (the key then holds nothing).
    fn prune_time(&self) -> Option<i64> {
        match self.0.as_slice() {
            [_, second, ..] => Some(second.time),
            [only] if !only.accumulate => Some(only.time),
            _ => None,
        }
    }

    /// Drops the versions no left row at or after `watermark` can reach: all before the one
    /// valid at the watermark, and that one too if it is a deletion. Whether any was.
    fn prune(&mut self, watermark: i64) -> bool {
        let valid = self.0.partition_point(|v| v.time <= watermark);
        let mut dropped = valid.saturating_sub(1);
        if self
            .0
            .get(dropped)
            .is_some_and(|v| v.time <= watermark && !v.accumulate)
        {
            dropped += 1;
        }
        self.0.drain(..dropped);
        dropped > 0
    }
}

/// Stores a key's versions: a count (u32, big endian), then per version its row (length
/// first), time (i64) and accumulate flag (one byte).
struct VersionsCodec;

impl StateCodec for VersionsCodec {
    type Value = KeyVersions;

    fn encode(
        &self,
        keys: &mut [&mut KeyVersions],
    ) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        Ok(keys
            .iter()
            .map(|key| {
                let bytes: usize = key.0.iter().map(|v| v.row.len() + 17).sum();
                let mut out = Vec::with_capacity(bytes + 4);
                out.extend_from_slice(&(key.0.len() as u32).to_be_bytes());
                for version in &key.0 {
                    put_bytes(&mut out, &version.row);
                    out.extend_from_slice(&version.time.to_be_bytes());
                    out.push(u8::from(version.accumulate));
                }
                out
            })
            .collect())
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<KeyVersions, StateError> {
        let mut parts = Parts::new(bytes, "a temporal join key's versions");
        let count = parts.u32()? as usize;
        let mut versions = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let row = Box::from(parts.bytes()?);
            let time = parts.i64()?;
            let [accumulate] = parts.array::<1>()?;
            versions.push(Version {
                time,
                row,
                accumulate: accumulate != 0,
            });
        }
        Ok(KeyVersions(versions))
    }

    fn memory_bytes(&self, key: &KeyVersions) -> usize {
        key.0.capacity() * std::mem::size_of::<Version>()
            + key.0.iter().map(|v| v.row.len()).sum::<usize>()
            + std::mem::size_of::<KeyVersions>()
    }
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
    /// Encoded key -> its versions.
    versions: StateTable<VersionsCodec>,
    /// Keys by [`KeyVersions::prune_time`].
    to_prune: TimeIndex,
    /// The watermark whose left rows are being joined in parts.
    joining: Option<EventTimeMs>,
    /// Right rows in Arrow's row format.
    rows: RowConverter,
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
    fn add_versions(
        &mut self,
        batch: &RecordBatch,
        accumulate: &[Option<bool>],
        state: &mut OperatorState<'_>,
    ) -> Result<()> {
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
            let group = self.hashers[1].key_group_of(key);
            let version = Version {
                time: times[i],
                row: Box::from(rows.row(i).as_ref()),
                accumulate,
            };
            let (before, now) =
                self.versions
                    .update(state, group, key, KeyVersions::default, |versions| {
                        let before = versions.prune_time();
                        versions.insert(version);
                        (before, versions.prune_time())
                    })?;
            self.to_prune.reindex(before, now, group, key);
        }
        Ok(())
    }

    /// Joins the left rows the watermark has passed, about [`FIRE_PART_ROWS`] per call (with
    /// more, it asks to be called again, [`Operator::on_continue`]), then forgets versions no
    /// left row can reach any more.
    fn advance(&mut self, watermark: EventTimeMs, ctx: &mut Context<'_>) -> Result<()> {
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        let more = self.left.expire(
            ctx.state_or_err()?,
            watermark,
            FIRE_PART_ROWS,
            &mut |row, _| {
                bytes.extend_from_slice(row);
                ends.push(bytes.len());
            },
        )?;
        if !ends.is_empty() {
            let rows = self.left.decode(slices(&bytes, &ends))?;
            self.join(&rows, ctx)?;
        }
        self.joining = more.then_some(watermark);
        if more {
            // Versions are freed once every left row up to the watermark has joined.
            ctx.continue_later();
            return Ok(());
        }
        let state = ctx.state_or_err()?;
        while let Some((_, group, key)) = self.to_prune.pop_until(watermark) {
            let (pruned, empty, next) = self.versions.update_with(
                state,
                group,
                &key,
                KeyVersions::default,
                |versions| {
                    let pruned = versions.prune(watermark);
                    (
                        (pruned, versions.0.is_empty(), versions.prune_time()),
                        pruned,
                    )
                },
            )?;
            match (pruned && empty, next) {
                (true, _) => self.versions.remove(state, group, &key)?,
                (false, Some(next)) => self.to_prune.reindex(None, Some(next), group, &key),
                (false, None) => {}
            }
        }
        Ok(())
    }

    /// Joins left rows (the left input's columns) with their versions and emits the result.
    fn join(&mut self, rows: &RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        let kinds = row_kinds(rows).cloned();
        let data = data_columns(rows, &self.plan.left)?;
        let times = event_times_ms(&data, self.time_columns[0])?;
        let keys = self.keys(Side::Left, &data)?;
        // Left rows with a version, and their versions (in the same order).
        let mut with_version: Vec<u32> = Vec::new();
        let (mut found, mut ends) = (Vec::new(), Vec::new());
        let state = ctx.state_or_err()?;
        for (i, time) in times.iter().enumerate() {
            if key_is_null(&data, &self.plan.keys[0], i) {
                continue;
            }
            let (key, group) = (keys.get(i), self.hashers[0].key_group_of(keys.get(i)));
            let version = self
                .versions
                .get(state, group, key)?
                .and_then(|v| v.at(*time))
                .filter(|v| v.accumulate);
            if let Some(version) = version {
                with_version.push(i as u32);
                found.extend_from_slice(&version.row);
                ends.push(found.len());
            }
        }
        let versions = RecordBatch::try_new(
            Arc::clone(&self.plan.right),
            decode_rows(&self.rows, slices(&found, &ends))?,
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
                let versions = data_columns(&batch, &self.plan.right)?;
                self.add_versions(&versions, &accumulate, ctx.state_or_err()?)?;
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

    fn on_continue(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        if let Some(watermark) = self.joining {
            self.advance(watermark, ctx)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.left.flush(state)?;
        self.versions.flush(state)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        refuse_format_0(state, Side::Left.name(), LEFT_TABLE, KEPT_FORMAT)?;
        refuse_format_0(state, Side::Right.name(), VERSIONS_TABLE, VERSIONS_FORMAT)?;
        self.left.restore(state)?;
        let to_prune = &mut self.to_prune;
        self.versions
            .visit_stored(state, &mut |group, key, versions| {
                to_prune.reindex(None, versions.prune_time(), group, key);
                Ok(())
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
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

    thread_local! {
        /// How many times the join asked to be called again (per test thread).
        static PARTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Feeds a batch (`Some((input, batch))`) or a watermark, calling the join again while it
    /// asks to; returns (key, left ts, value).
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
        while ctx.take_continue() {
            PARTS.with(|p| p.set(p.get() + 1));
            join.on_continue(&mut ctx).unwrap();
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

    /// Left rows one watermark releases at once are joined in parts of about
    /// `FIRE_PART_ROWS`, and the versions they need are freed only after the last part.
    #[test]
    fn many_released_left_rows_join_in_parts_with_their_versions() {
        use RowKind::*;
        let mut join = operator();
        let backend = &mut InMemoryStateBackend::new();
        call(
            &mut join,
            backend,
            Some((1, right(&[(Insert, 1, 10, 100), (Insert, 1, 20, 101)]))),
            None,
        );
        let n = 3 * FIRE_PART_ROWS;
        let left_rows: Vec<(i64, i64)> = (0..n as i64).map(|i| (1 + i % 8, 15)).collect();
        call(&mut join, backend, Some((0, left(&left_rows))), None);
        PARTS.with(|p| p.set(0));
        let rows = call(&mut join, backend, None, Some(40));
        assert!(PARTS.with(|p| p.get()) >= 2, "joined in parts");
        assert_eq!(rows.len(), n);
        assert!(
            rows.iter().all(|r| match r.0 {
                1 => r.2 == Some(100),
                _ => r.2.is_none(),
            }),
            "every key-1 row at 15 joins the version of 10"
        );
    }
}
