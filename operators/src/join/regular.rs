//! Regular join, as Flink's `StreamingJoinOperator`: every row of one side joins every row of
//! the other side with an equal key (and a true residual condition), whenever it arrived.
//!
//! Inputs may be updating results: `+I`/`+U` rows add to a side, `-U`/`-D` rows retract an
//! equal row. Output: append-only for an inner join of two append-only inputs; otherwise a
//! changelog of `+I` and `-D` rows (a retract stream): a new match is `+I`, a retracted one
//! `-D`, and an outer join's padded row is retracted (`-D`) when its first match arrives and
//! emitted again (`+I`) when its last match is retracted.
//!
//! State: per side a state table ([`weir_engine::state::table`]) by encoded key: each distinct
//! row (Arrow's row format) with how many times it is present, how many rows of the other side
//! it matches (for a side an outer join pads) and when it was last written. Keys beyond the
//! memory budget live in RocksDB; checkpoints write the keys changed since the last one. With
//! a state TTL (`table.exec.state.ttl`, or per side Flink's `STATE_TTL` hint) a row not written
//! for that long (processing time) is forgotten, as in Flink: never matched again, dropped
//! when its key is next touched or by the sweep (a key not written for the TTL goes whole).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use weir_engine::changelog::{
    kind_array, kind_at, row_kinds, with_row_kind, ChangelogMode, RowKind,
};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext, TimeDomain};
use weir_engine::partition::{KeyGroup, KeyHasher};
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::BoxError;

use super::{key_is_null, JoinKeys, JoinPlan, JoinSpec, JoinType, Side, JOIN_INPUTS};
use crate::error::Result;
use crate::row_format::{decode_rows, slices};
use crate::state_codec::{put_bytes, refuse_format_0, Parts};

/// Describes a regular join.
#[derive(Debug, Clone)]
pub struct RegularJoinFactory {
    spec: JoinSpec,
    /// Per side (left, right).
    state_ttls: [Option<Duration>; 2],
}

impl RegularJoinFactory {
    pub fn new(spec: JoinSpec) -> Self {
        RegularJoinFactory {
            spec,
            state_ttls: [None, None],
        }
    }

    /// Forgets rows of either side not written for `ttl` (none or zero: keep every row for
    /// the job's lifetime).
    pub fn with_state_ttl(self, ttl: Option<Duration>) -> Self {
        self.with_state_ttls([ttl, ttl])
    }

    /// Forgets the left side's rows not written for `ttls[0]` and the right side's not
    /// written for `ttls[1]` (Flink's `STATE_TTL` hint on a join's two inputs).
    pub fn with_state_ttls(mut self, ttls: [Option<Duration>; 2]) -> Self {
        self.state_ttls = ttls.map(|ttl| ttl.filter(|t| !t.is_zero()));
        self
    }

    /// Whether the output is a changelog, as Flink derives it: unless both inputs are
    /// append-only and no emitted row is ever taken back (an inner or a semi join).
    fn emits_changelog(&self, updating: [bool; 2]) -> bool {
        !matches!(self.spec.join_type, JoinType::Inner | JoinType::Semi)
            || updating.iter().any(|u| *u)
    }
}

impl OperatorFactory for RegularJoinFactory {
    fn inputs(&self) -> &'static [&'static str] {
        JOIN_INPUTS
    }

    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        let plan = self.spec.plan(&inputs[0], &inputs[1])?;
        Ok(match self.emits_changelog(plan.updating) {
            true => with_row_kind(&plan.output),
            false => plan.output,
        })
    }

    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        let updating = [!inputs[0].is_insert_only(), !inputs[1].is_insert_only()];
        Ok(match self.emits_changelog(updating) {
            true => ChangelogMode::All,
            false => ChangelogMode::InsertOnly,
        })
    }

    fn describe(&self) -> String {
        let show = |ttl: Option<Duration>| ttl.map_or("none".to_string(), |t| format!("{t:?}"));
        let ttl = match self.state_ttls {
            [None, None] => String::new(),
            [left, right] if left == right => crate::ttl::describe(left),
            [left, right] => format!(", state TTL left {}, right {}", show(left), show(right)),
        };
        format!("join {}{ttl}", self.spec.describe())
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let plan = self
            .spec
            .plan(&context.input_schemas[0], &context.input_schemas[1])?;
        let side = |side: Side| -> Result<SideRows> {
            let schema = plan.schema(side);
            let keys = match side {
                Side::Left => &self.spec.left_keys,
                Side::Right => &self.spec.right_keys,
            };
            let fields = schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            let spec = TableSpec {
                name: rows_table(side),
                version: ROWS_FORMAT,
                ttl: self.state_ttls[side as usize],
            };
            Ok(SideRows {
                hasher: KeyHasher::new(schema, keys, context.max_key_groups)?,
                rows: RowConverter::new(fields)?,
                by_key: context.state_table(spec, StoredCodec),
            })
        };
        Ok(Box::new(RegularJoin {
            sides: [side(Side::Left)?, side(Side::Right)?],
            changelog: self.emits_changelog(plan.updating),
            join_type: self.spec.join_type,
            output: self.output_schema(&context.input_schemas)?,
            plan,
            state_ttls: self.state_ttls.map(crate::ttl::ttl_ms),
        }))
    }
}

/// The format version of the sides' state tables.
const ROWS_FORMAT: u16 = 1;

/// The state table of a side's rows (the snapshots before state tables used the side's name).
fn rows_table(side: Side) -> &'static str {
    match side {
        Side::Left => "left-rows",
        Side::Right => "right-rows",
    }
}

/// One distinct row of a side.
#[derive(Debug, Clone)]
struct Stored {
    /// The row in Arrow's row format (the side's columns).
    row: Box<[u8]>,
    /// How many times the row is present.
    count: u32,
    /// How many rows of the other side it matches (kept for a side an outer join pads).
    associations: u32,
    /// When it was last written (processing time, ms), for the state TTL.
    written: i64,
}

/// Bytes a stored row costs in memory besides its bytes (the box, the counters).
const STORED_OVERHEAD: usize = 48;

/// The rows under one key, with the memory they use kept up as rows come and go (so a hot
/// key's size is not summed again at every write).
#[derive(Debug, Default)]
struct KeyRows {
    rows: Vec<Stored>,
    bytes: usize,
}

impl KeyRows {
    fn push(&mut self, stored: Stored) {
        self.bytes += stored.row.len() + STORED_OVERHEAD;
        self.rows.push(stored);
    }

    fn swap_remove(&mut self, at: usize) {
        let removed = self.rows.swap_remove(at);
        self.bytes -= removed.row.len() + STORED_OVERHEAD;
    }

    fn retain(&mut self, keep: impl Fn(&Stored) -> bool) {
        let bytes = &mut self.bytes;
        self.rows.retain(|stored| {
            let kept = keep(stored);
            if !kept {
                *bytes -= stored.row.len() + STORED_OVERHEAD;
            }
            kept
        });
    }
}

/// Stores a key's rows: a count (u32, big endian), then per row its length (u32), its bytes,
/// its count and associations (u32 each) and when it was written (i64 ms).
struct StoredCodec;

impl StateCodec for StoredCodec {
    type Value = KeyRows;

    fn encode(&self, keys: &mut [&mut KeyRows]) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        Ok(keys
            .iter()
            .map(|key| {
                let rows = &key.rows;
                let mut out = Vec::with_capacity(key.bytes + 4);
                out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
                for stored in rows.iter() {
                    put_bytes(&mut out, &stored.row);
                    out.extend_from_slice(&stored.count.to_be_bytes());
                    out.extend_from_slice(&stored.associations.to_be_bytes());
                    out.extend_from_slice(&stored.written.to_be_bytes());
                }
                out
            })
            .collect())
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<KeyRows, StateError> {
        let mut parts = Parts::new(bytes, "a join key's rows");
        let count = parts.u32()? as usize;
        let mut rows = KeyRows {
            rows: Vec::with_capacity(count.min(1 << 16)),
            bytes: 0,
        };
        for _ in 0..count {
            rows.push(Stored {
                row: Box::from(parts.bytes()?),
                count: parts.u32()?,
                associations: parts.u32()?,
                written: parts.i64()?,
            });
        }
        Ok(rows)
    }

    fn memory_bytes(&self, rows: &KeyRows) -> usize {
        rows.bytes + std::mem::size_of::<KeyRows>()
    }
}

/// The rows of one side, by encoded key.
struct SideRows {
    hasher: KeyHasher,
    rows: RowConverter,
    by_key: StateTable<StoredCodec>,
}

impl SideRows {
    fn keys(&self, batch: &RecordBatch) -> Result<JoinKeys> {
        JoinKeys::of(&self.hasher, self.hasher.key_columns(), batch)
    }

    /// The key group of an encoded key.
    fn group(&self, key: &[u8]) -> KeyGroup {
        self.hasher.key_group_of(key)
    }

    /// Counts one more (`accumulate`) or one fewer match of the other side for the row at
    /// `position` under `key`; returns its count and its matches before, if it is there.
    fn count_match(
        &mut self,
        state: &mut OperatorState<'_>,
        key: &[u8],
        position: usize,
        accumulate: bool,
    ) -> Result<Option<(u32, u32)>> {
        let group = self.group(key);
        Ok(self
            .by_key
            .update_with(state, group, key, KeyRows::default, |rows| {
                let Some(row) = rows.rows.get_mut(position) else {
                    return (None, false);
                };
                let before = row.associations;
                row.associations = match accumulate {
                    true => before + 1,
                    false => before.saturating_sub(1),
                };
                (Some((row.count, before)), row.associations != before)
            })?)
    }

    /// Decodes stored rows into the side's columns.
    fn decode(&self, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        decode_rows(&self.rows, rows.iter().copied())
    }
}

/// One output row: its kind, the input row (of the arriving side) and the stored row of the
/// other side (an index into the decoded candidates), either absent when padded.
type Emitted = (RowKind, Option<u32>, Option<u32>);

/// One subtask of a regular join.
pub struct RegularJoin {
    plan: JoinPlan,
    sides: [SideRows; 2],
    join_type: JoinType,
    changelog: bool,
    output: SchemaRef,
    /// Per side (ms).
    state_ttls: [Option<i64>; 2],
}

impl RegularJoin {
    fn process(&mut self, side: Side, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        let now = weir_engine::time::now_ms();
        let kinds = row_kinds(&batch).cloned();
        let data = match self.plan.updating[side as usize] {
            true => batch.project(&(0..batch.num_columns() - 1).collect::<Vec<_>>())?,
            false => batch,
        };
        let data =
            RecordBatch::try_new(Arc::clone(self.plan.schema(side)), data.columns().to_vec())?;
        let (own, other) = match side {
            Side::Left => (0, 1),
            Side::Right => (1, 0),
        };
        let keys = self.sides[own].keys(&data)?;
        let own_keys = &self.plan.keys[own];

        let state = ctx.state_or_err()?;
        // Each side's rows live under its own TTL.
        let ttls = self.state_ttls;
        let live_in = |side: usize| {
            move |row: &Stored| {
                ttls[side].is_none_or(|ttl| !crate::ttl::expired(row.written, ttl, now))
            }
        };
        let (live, own_live) = (live_in(other), live_in(own));
        // Candidates: (input row, position under its key on the other side, its count and
        // matches), their rows' bytes one after another in `candidate_bytes`.
        let mut candidates: Vec<(u32, usize, u32, u32)> = Vec::new();
        let mut candidate_bytes: Vec<u8> = Vec::new();
        let mut candidate_ends: Vec<usize> = Vec::new();
        for i in 0..data.num_rows() {
            let key = keys.get(i);
            if key_is_null(&data, own_keys, i) {
                continue;
            }
            let group = self.sides[other].group(key);
            if let Some(stored) = self.sides[other].by_key.get(state, group, key)? {
                for (position, row) in stored.rows.iter().enumerate().filter(|(_, r)| live(r)) {
                    candidates.push((i as u32, position, row.count, row.associations));
                    candidate_bytes.extend_from_slice(&row.row);
                    candidate_ends.push(candidate_bytes.len());
                }
            }
        }
        let candidate_refs: Vec<&[u8]> = slices(&candidate_bytes, &candidate_ends).collect();
        let other_rows = RecordBatch::try_new(
            Arc::clone(self.plan.schema(side.other())),
            self.sides[other].decode(&candidate_refs)?,
        )?;
        let mask = if candidates.is_empty() {
            Vec::new()
        } else {
            let input_rows: UInt32Array = candidates.iter().map(|c| Some(c.0)).collect();
            let own_rows = arrow::compute::take_record_batch(&data, &input_rows)?;
            let (_, mask) = match side {
                Side::Left => self.plan.pairs(&own_rows, &other_rows)?,
                Side::Right => self.plan.pairs(&other_rows, &own_rows)?,
            };
            (0..mask.len()).map(|p| mask.value(p)).collect()
        };

        let own_outer = self.join_type.keeps_unmatched(side);
        let other_outer = self.join_type.keeps_unmatched(side.other());
        // In a semi or anti join a left row is in the result by whether it has matches.
        let semi_anti = self.join_type.is_semi_or_anti();
        let in_result = |matches: u32| (self.join_type == JoinType::Semi) == (matches > 0);
        let counts_matches = match semi_anti {
            true => side == Side::Right,
            false => other_outer,
        };
        let full_rows = self.sides[own].rows.convert_columns(data.columns())?;
        let updating = self.plan.updating[own];
        let mut emitted: Vec<Emitted> = Vec::new();
        let mut next = 0;
        for i in 0..data.num_rows() {
            let key = keys.get(i);
            let kind = kind_at(kinds.as_ref(), i);
            let accumulate = kind.is_accumulate();
            let mut matches = 0u32;
            while next < candidates.len() && candidates[next].0 as usize == i {
                let (_, position, listed_count, listed_associations) = candidates[next];
                let candidate = next as u32;
                next += 1;
                if !mask[candidate as usize] {
                    continue;
                }
                // A stored row's matches are kept up only where they are read: the other side
                // is padded (an outer join), or is the left side of a semi or anti join.
                // Elsewhere a probe writes no state, and the count listed above holds (nothing
                // changed the other side since).
                let (count, before) = match counts_matches {
                    true => {
                        match self.sides[other].count_match(state, key, position, accumulate)? {
                            Some(counted) => counted,
                            None => continue,
                        }
                    }
                    false => (listed_count, listed_associations),
                };
                matches += count;
                if semi_anti {
                    if side == Side::Right {
                        // The stored left row enters or leaves the result as its matches do.
                        let after = match accumulate {
                            true => before + 1,
                            false => before.saturating_sub(1),
                        };
                        if in_result(before) != in_result(after) {
                            let kind = match in_result(after) {
                                true => RowKind::Insert,
                                false => RowKind::Delete,
                            };
                            for _ in 0..count {
                                emitted.push((kind, None, Some(candidate)));
                            }
                        }
                    }
                    continue;
                }
                for _ in 0..count {
                    if accumulate {
                        if other_outer && before == 0 {
                            emitted.push((RowKind::Delete, None, Some(candidate)));
                        }
                        emitted.push((RowKind::Insert, Some(i as u32), Some(candidate)));
                    } else {
                        emitted.push((RowKind::Delete, Some(i as u32), Some(candidate)));
                        if other_outer && before == 1 {
                            emitted.push((RowKind::Insert, None, Some(candidate)));
                        }
                    }
                }
            }
            let kind = if accumulate {
                RowKind::Insert
            } else {
                RowKind::Delete
            };
            if own_outer && matches == 0 || semi_anti && side == Side::Left && in_result(matches) {
                emitted.push((kind, Some(i as u32), None));
            }
            let row = full_rows.row(i);
            let group = self.sides[own].group(key);
            let emptied = self.sides[own].by_key.update_with(
                state,
                group,
                key,
                KeyRows::default,
                |entries| {
                    // Expired rows go when their key is touched (with a TTL).
                    let before = entries.rows.len();
                    if ttls[own].is_some() {
                        entries.retain(own_live);
                    }
                    let expired = entries.rows.len() != before;
                    if accumulate {
                        // Equal rows share an entry only where one may be retracted (an updating
                        // input); an append-only side never looks, so a hot key costs no scan.
                        let existing = match updating {
                            true => entries.rows.iter_mut().find(|s| *s.row == *row.as_ref()),
                            false => None,
                        };
                        match existing {
                            Some(stored) => {
                                stored.count += 1;
                                stored.written = now;
                            }
                            None => entries.push(Stored {
                                row: Box::from(row.as_ref()),
                                count: 1,
                                associations: matches,
                                written: now,
                            }),
                        }
                        return (false, true);
                    }
                    // A row that is not there (its state expired) has nothing to remove.
                    let Some(at) = entries.rows.iter().position(|s| *s.row == *row.as_ref()) else {
                        return (entries.rows.is_empty(), expired);
                    };
                    entries.rows[at].count -= 1;
                    if entries.rows[at].count == 0 {
                        entries.swap_remove(at);
                    }
                    (entries.rows.is_empty(), true)
                },
            )?;
            if emptied {
                self.sides[own].by_key.remove(state, group, key)?;
            }
        }
        self.emit(side, &data, &other_rows, &emitted, ctx)
    }

    /// Builds the output rows `emitted` from the input `data` of `side` and the decoded
    /// candidates `other` of the other side.
    fn emit(
        &self,
        side: Side,
        data: &RecordBatch,
        other: &RecordBatch,
        emitted: &[Emitted],
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        if emitted.is_empty() {
            return Ok(());
        }
        let own_index: UInt32Array = emitted.iter().map(|e| e.1).collect();
        let other_index: UInt32Array = emitted.iter().map(|e| e.2).collect();
        let pick = |batch: &RecordBatch, index: &UInt32Array| -> Result<Vec<ArrayRef>> {
            Ok(batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), index, None))
                .collect::<std::result::Result<_, _>>()?)
        };
        let (own, other) = (pick(data, &own_index)?, pick(other, &other_index)?);
        let (mut columns, right) = match side {
            Side::Left => (own, other),
            Side::Right => (other, own),
        };
        if !self.join_type.is_semi_or_anti() {
            columns.extend(right);
        }
        if self.changelog {
            columns.push(kind_array(emitted.iter().map(|e| e.0)));
        }
        ctx.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }

    /// The TTL the sweeps are timed by: the shorter side's (each table sweeps itself at most
    /// twice per its own TTL).
    fn sweep_ttl(&self) -> Option<i64> {
        self.state_ttls.iter().flatten().min().copied()
    }

    /// Forgets keys not written for the state TTL (their rows are all older); an expired row
    /// under a key written since goes when the key is next touched.
    fn expire(&mut self, state: &mut OperatorState<'_>) -> Result<()> {
        for side in &mut self.sides {
            side.by_key.expire(state)?;
        }
        Ok(())
    }
}

impl Operator for RegularJoin {
    fn open(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        if let Some(ttl) = self.sweep_ttl() {
            let now = weir_engine::time::now_ms();
            crate::ttl::arm_sweep(ctx, ttl, now);
        }
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        Ok(self.process(Side::of_input(ctx.input()), batch, ctx)?)
    }

    fn on_timer(
        &mut self,
        _domain: TimeDomain,
        time: i64,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.expire(ctx.state_or_err()?)?;
        if let Some(ttl) = self.sweep_ttl() {
            crate::ttl::arm_sweep(ctx, ttl, time);
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        for side in &mut self.sides {
            side.by_key.flush(state)?;
        }
        Ok(())
    }

    /// The rows are in the state backend already, read when their keys come. A snapshot of
    /// the format before state tables (format 0) is refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        for side in [Side::Left, Side::Right] {
            refuse_format_0(state, side.name(), rows_table(side), ROWS_FORMAT)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::InMemoryStateBackend;

    use super::*;

    fn side(prefix: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(format!("{prefix}k"), DataType::Int64, false),
            Field::new(format!("{prefix}v"), DataType::Int64, false),
        ]))
    }

    /// Feeds rows `(k, v)` to input `input`; returns how many rows came out.
    fn feed(
        join: &mut Box<dyn Operator>,
        backend: &mut InMemoryStateBackend,
        input: usize,
        rows: &[(i64, i64)],
    ) -> usize {
        let schema = side(if input == 0 { "" } else { "r" });
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let mut timers = Timers::default();
        let all = KeyGroupRange::all(128);
        let state = OperatorState::new(backend, "join", all);
        let mut ctx = Context::new(input, None, all, &mut timers).with_state(state);
        join.process_batch(batch, &mut ctx).unwrap();
        ctx.take_batches().iter().map(|b| b.num_rows()).sum()
    }

    fn inner_on_k() -> JoinSpec {
        JoinSpec {
            join_type: JoinType::Inner,
            left_keys: vec!["k".into()],
            right_keys: vec!["rk".into()],
            filter: None,
        }
    }

    /// With a state TTL, a row not written for the TTL matches nothing more (as Flink's);
    /// a row written since does.
    #[test]
    fn rows_past_the_state_ttl_match_nothing() {
        let factory =
            RegularJoinFactory::new(inner_on_k()).with_state_ttl(Some(Duration::from_millis(50)));
        let context = SubtaskContext::standalone(vec![side(""), side("r")]);
        let mut join = factory.create(&context).unwrap();
        let backend = &mut InMemoryStateBackend::new();
        assert_eq!(feed(&mut join, backend, 0, &[(1, 10), (2, 20)]), 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(feed(&mut join, backend, 0, &[(2, 21)]), 0);
        // Key 1's row expired; key 2 has an expired row and a live one.
        assert_eq!(feed(&mut join, backend, 1, &[(1, 100), (2, 200)]), 1);
    }

    /// Each side's rows live under their own TTL (the `STATE_TTL` hint's per-input TTLs).
    #[test]
    fn each_side_keeps_its_rows_for_its_own_ttl() {
        let factory = RegularJoinFactory::new(inner_on_k())
            .with_state_ttls([Some(Duration::from_millis(50)), None]);
        let context = SubtaskContext::standalone(vec![side(""), side("r")]);
        let mut join = factory.create(&context).unwrap();
        let backend = &mut InMemoryStateBackend::new();
        assert_eq!(feed(&mut join, backend, 0, &[(1, 10)]), 0);
        assert_eq!(feed(&mut join, backend, 1, &[(2, 20)]), 0);
        std::thread::sleep(Duration::from_millis(100));
        // The left row has expired; the right one has not.
        assert_eq!(feed(&mut join, backend, 1, &[(1, 100)]), 0);
        assert_eq!(feed(&mut join, backend, 0, &[(2, 200)]), 1);
    }
}
