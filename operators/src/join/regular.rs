//! Regular join, as Flink's `StreamingJoinOperator`: every row of one side joins every row of
//! the other side with an equal key (and a true residual condition), whenever it arrived.
//!
//! Inputs may be updating results: `+I`/`+U` rows add to a side, `-U`/`-D` rows retract an
//! equal row. Output: append-only for an inner join of two append-only inputs; otherwise a
//! changelog of `+I` and `-D` rows (a retract stream): a new match is `+I`, a retracted one
//! `-D`, and an outer join's padded row is retracted (`-D`) when its first match arrives and
//! emitted again (`+I`) when its last match is retracted.
//!
//! State: per side, per key, each distinct row (Arrow's row format) with how many times it is
//! present and, for a side an outer join pads, how many rows of the other side it matches.
//! With a state TTL (`table.exec.state.ttl`) a row not written for that long (processing
//! time) is forgotten, as in Flink; restored rows count as written at restore.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use weir_engine::changelog::{
    kind_array, kind_at, row_kinds, with_row_kind, ChangelogMode, RowKind,
};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext, TimeDomain};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use super::{key_is_null, JoinKeys, JoinPlan, JoinSpec, JoinType, Side, JOIN_INPUTS};
use crate::error::Result;
use crate::row_format::decode_rows;
use crate::state_codec::{read_table, write_table};

/// Describes a regular join.
#[derive(Debug, Clone)]
pub struct RegularJoinFactory {
    spec: JoinSpec,
    state_ttl: Option<Duration>,
}

impl RegularJoinFactory {
    pub fn new(spec: JoinSpec) -> Self {
        RegularJoinFactory {
            spec,
            state_ttl: None,
        }
    }

    /// Forgets rows not written for `ttl` (none: keep every row for the job's lifetime).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.state_ttl = ttl.filter(|t| !t.is_zero());
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
        let ttl = self
            .state_ttl
            .map_or(String::new(), |t| format!(", state TTL {t:?}"));
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
            let mut state_fields: Vec<_> = schema.fields().iter().cloned().collect();
            state_fields.push(Arc::new(Field::new(COUNT, DataType::UInt32, false)));
            state_fields.push(Arc::new(Field::new(ASSOCIATIONS, DataType::UInt32, false)));
            Ok(SideRows {
                hasher: KeyHasher::new(schema, keys, context.max_key_groups)?,
                rows: RowConverter::new(fields)?,
                by_key: HashMap::new(),
                state_schema: Arc::new(Schema::new(state_fields)),
            })
        };
        Ok(Box::new(RegularJoin {
            sides: [side(Side::Left)?, side(Side::Right)?],
            changelog: self.emits_changelog(plan.updating),
            join_type: self.spec.join_type,
            output: self.output_schema(&context.input_schemas)?,
            plan,
            state_ttl: crate::ttl::ttl_ms(self.state_ttl),
        }))
    }
}

/// Names of the per-row counters in snapshots.
const COUNT: &str = "$count";
const ASSOCIATIONS: &str = "$associations";

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

/// The rows of one side, by encoded key.
struct SideRows {
    hasher: KeyHasher,
    rows: RowConverter,
    by_key: HashMap<Vec<u8>, Vec<Stored>>,
    state_schema: SchemaRef,
}

impl SideRows {
    fn keys(&self, batch: &RecordBatch) -> Result<JoinKeys> {
        JoinKeys::of(&self.hasher, self.hasher.key_columns(), batch)
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
    state_ttl: Option<i64>,
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

        // Candidates: (input row, position under its key on the other side).
        let mut candidates: Vec<(u32, usize)> = Vec::new();
        let mut candidate_rows: Vec<&[u8]> = Vec::new();
        for i in 0..data.num_rows() {
            let key = keys.get(i);
            if key_is_null(&data, own_keys, i) {
                continue;
            }
            if let Some(stored) = self.sides[other].by_key.get(key) {
                for (position, row) in stored.iter().enumerate() {
                    candidates.push((i as u32, position));
                    candidate_rows.push(&row.row);
                }
            }
        }
        let other_rows = RecordBatch::try_new(
            Arc::clone(self.plan.schema(side.other())),
            self.sides[other].decode(&candidate_rows)?,
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
                let (_, position) = candidates[next];
                let candidate = next as u32;
                next += 1;
                if !mask[candidate as usize] {
                    continue;
                }
                let Some(stored) = self.sides[other]
                    .by_key
                    .get_mut(key)
                    .and_then(|rows| rows.get_mut(position))
                else {
                    continue;
                };
                matches += stored.count;
                if semi_anti {
                    if side == Side::Right {
                        // The stored left row enters or leaves the result as its matches do.
                        let before = stored.associations;
                        let after = match accumulate {
                            true => before + 1,
                            false => before.saturating_sub(1),
                        };
                        stored.associations = after;
                        if in_result(before) != in_result(after) {
                            let kind = match in_result(after) {
                                true => RowKind::Insert,
                                false => RowKind::Delete,
                            };
                            for _ in 0..stored.count {
                                emitted.push((kind, None, Some(candidate)));
                            }
                        }
                    }
                    continue;
                }
                for _ in 0..stored.count {
                    if accumulate {
                        if other_outer && stored.associations == 0 {
                            emitted.push((RowKind::Delete, None, Some(candidate)));
                        }
                        emitted.push((RowKind::Insert, Some(i as u32), Some(candidate)));
                    } else {
                        emitted.push((RowKind::Delete, Some(i as u32), Some(candidate)));
                        if other_outer && stored.associations == 1 {
                            emitted.push((RowKind::Insert, None, Some(candidate)));
                        }
                    }
                }
                if accumulate {
                    stored.associations += 1;
                } else {
                    stored.associations = stored.associations.saturating_sub(1);
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
            let map = &mut self.sides[own].by_key;
            if accumulate {
                let entries = map.entry_ref(key).or_default();
                // Equal rows share an entry only where one may be retracted (an updating
                // input); an append-only side never looks, so a hot key costs no scan.
                let existing = match updating {
                    true => entries.iter_mut().find(|s| *s.row == *row.as_ref()),
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
            } else if let Some(entries) = map.get_mut(key) {
                // A row that is not there (its state expired) has nothing to remove.
                if let Some(at) = entries.iter().position(|s| *s.row == *row.as_ref()) {
                    entries[at].count -= 1;
                    if entries[at].count == 0 {
                        entries.swap_remove(at);
                    }
                }
                if entries.is_empty() {
                    map.remove(key);
                }
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

    /// Forgets rows not written for the state TTL.
    fn expire(&mut self, now: i64) {
        let Some(ttl) = self.state_ttl else {
            return;
        };
        for side in &mut self.sides {
            side.by_key.retain(|_, rows| {
                rows.retain(|r| !crate::ttl::expired(r.written, ttl, now));
                !rows.is_empty()
            });
        }
    }
}

impl Operator for RegularJoin {
    fn open(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        if let Some(ttl) = self.state_ttl {
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
        self.expire(time);
        if let Some(ttl) = self.state_ttl {
            crate::ttl::arm_sweep(ctx, ttl, time);
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        for side in [Side::Left, Side::Right] {
            let rows = &self.sides[side as usize];
            let stored: Vec<&Stored> = rows.by_key.values().flatten().collect();
            let encoded: Vec<&[u8]> = stored.iter().map(|s| &*s.row).collect();
            let mut columns = rows.decode(&encoded)?;
            columns.push(Arc::new(UInt32Array::from_iter_values(
                stored.iter().map(|s| s.count),
            )));
            columns.push(Arc::new(UInt32Array::from_iter_values(
                stored.iter().map(|s| s.associations),
            )));
            let batch = RecordBatch::try_new(Arc::clone(&rows.state_schema), columns)?;
            write_table(state, side.name(), &rows.hasher, &batch, 0)?;
        }
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        let now = weir_engine::time::now_ms();
        for side in [Side::Left, Side::Right] {
            let rows = &mut self.sides[side as usize];
            for (_, batch) in read_table(state, side.name(), &rows.state_schema)? {
                let width = batch.num_columns() - 2;
                let data = RecordBatch::try_new(
                    Arc::clone(self.plan.schema(side)),
                    batch.columns()[..width].to_vec(),
                )?;
                let counts = batch.column(width).as_primitive::<UInt32Type>();
                let associations = batch.column(width + 1).as_primitive::<UInt32Type>();
                let keys = rows.keys(&data)?;
                let encoded = rows.rows.convert_columns(data.columns())?;
                for i in 0..data.num_rows() {
                    rows.by_key
                        .entry_ref(keys.get(i))
                        .or_default()
                        .push(Stored {
                            row: Box::from(encoded.row(i).as_ref()),
                            count: counts.value(i),
                            associations: associations.value(i),
                            written: now,
                        });
                }
            }
        }
        Ok(())
    }
}
