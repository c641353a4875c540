//! Window join, as Flink's (`WindowJoinOperator`): two inputs whose rows belong to windows
//! (window TVFs or window aggregations of the same windows), joined on `window_start`,
//! `window_end` and keys. Rows wait per window; when the watermark reaches `window_end - 1`
//! the window's rows are joined (a hash join of that window alone), an outer join's unmatched
//! rows come out padded (a semi or anti join emits each left row with, or without, a match
//! once), and the window's rows are freed. Output: append-only, emitted before
//! the watermark that closes the window. A row whose window has already been joined is late:
//! dropped and counted (`late_rows_dropped`), as Flink drops it.
//!
//! State: a state table ([`weir_engine::state::table`]) by join key (which holds the window's
//! start and end): each side's waiting rows in Arrow's row format, and the window's end. An
//! in-memory [`TimeIndex`] of the keys by window end says what a watermark closes (rebuilt
//! from the table at restore); a window over many keys is joined about [`FIRE_PART_ROWS`]
//! rows at a time (complete keys: each part is a join of its own), the runtime calling again
//! for the rest. The watermark is kept per key group.

use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use weir_engine::changelog::ChangelogMode;
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use super::{
    append_only, key_is_null, plan_timed, side_hashers, JoinKeys, JoinPlan, JoinSpec, JoinType,
    Side, JOIN_INPUTS,
};
use crate::error::{OperatorError, Result};
use crate::late::LateOutput;
use crate::row_format::{decode_rows, slices};
use crate::state_codec::{
    put_bytes, refuse_format_0, restore_watermark, snapshot_watermark, Parts,
};
use crate::time_index::TimeIndex;
use crate::FIRE_PART_ROWS;

/// Describes a window join: the equi-join (its keys include the window columns) and each
/// side's `window_end` column.
#[derive(Debug, Clone)]
pub struct WindowJoinFactory {
    spec: JoinSpec,
    window_ends: [String; 2],
}

impl WindowJoinFactory {
    pub fn new(spec: JoinSpec, left_end: impl Into<String>, right_end: impl Into<String>) -> Self {
        WindowJoinFactory {
            spec,
            window_ends: [left_end.into(), right_end.into()],
        }
    }

    fn plan(&self, inputs: &[SchemaRef]) -> Result<(JoinPlan, [usize; 2])> {
        plan_timed(
            &self.spec,
            inputs,
            "a window join",
            &self.window_ends,
            false,
            false,
        )
    }
}

impl OperatorFactory for WindowJoinFactory {
    fn inputs(&self) -> &'static [&'static str] {
        JOIN_INPUTS
    }

    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        Ok(Arc::clone(&self.plan(inputs)?.0.output))
    }

    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        append_only("a window join", inputs)
    }

    /// Late rows of either input, as rows of the late-rows table (one shape for both).
    fn late_schema(&self, _inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        Ok(crate::late::late_rows_schema())
    }

    fn describe(&self) -> String {
        format!(
            "window join {} at left.{} = right.{}",
            self.spec.describe(),
            self.window_ends[0],
            self.window_ends[1]
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let (plan, ends) = self.plan(&context.input_schemas)?;
        let converter = |schema: &SchemaRef| {
            let fields = (schema.fields().iter())
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            RowConverter::new(fields)
        };
        let spec = TableSpec {
            name: ROWS_TABLE,
            version: ROWS_FORMAT,
            ttl: None,
        };
        Ok(Box::new(WindowJoin {
            hashers: side_hashers(&self.spec, &plan, context.max_key_groups)?,
            keeps_unmatched: [
                self.spec.join_type.keeps_unmatched(Side::Left),
                self.spec.join_type.keeps_unmatched(Side::Right),
            ],
            join_type: self.spec.join_type,
            rows: [converter(&plan.left)?, converter(&plan.right)?],
            plan,
            ends,
            windows: context.state_table(spec, WindowKeyCodec),
            due: TimeIndex::new(context),
            watermark: None,
            late: LateOutput::encoded(context),
        }))
    }
}

/// The state table of the waiting rows, and its format (the snapshots before state tables
/// used the sides' names).
const ROWS_TABLE: &str = "window-join-rows";
const ROWS_FORMAT: u16 = 1;

/// One key's waiting rows in one window: its end, and per side the rows' bytes one after
/// another with where each ends.
#[derive(Debug, Default)]
struct WindowKey {
    end: i64,
    sides: [(Vec<u8>, Vec<usize>); 2],
}

/// Stores a [`WindowKey`]: the end (i64), then per side a count (u32) and the rows (length
/// first).
struct WindowKeyCodec;

impl StateCodec for WindowKeyCodec {
    type Value = WindowKey;

    fn encode(&self, keys: &mut [&mut WindowKey]) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        Ok(keys
            .iter()
            .map(|key| {
                let mut out = Vec::with_capacity(12 + self.memory_bytes(key));
                out.extend_from_slice(&key.end.to_be_bytes());
                for (bytes, ends) in &key.sides {
                    out.extend_from_slice(&(ends.len() as u32).to_be_bytes());
                    for row in slices(bytes, ends) {
                        put_bytes(&mut out, row);
                    }
                }
                out
            })
            .collect())
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<WindowKey, StateError> {
        let mut parts = Parts::new(bytes, "a window join key's rows");
        let mut key = WindowKey {
            end: parts.i64()?,
            ..WindowKey::default()
        };
        for (data, ends) in &mut key.sides {
            for _ in 0..parts.u32()? {
                data.extend_from_slice(parts.bytes()?);
                ends.push(data.len());
            }
        }
        Ok(key)
    }

    fn memory_bytes(&self, key: &WindowKey) -> usize {
        let sides: usize = (key.sides.iter())
            .map(|(bytes, ends)| bytes.capacity() + 8 * ends.capacity())
            .sum();
        sides + std::mem::size_of::<WindowKey>()
    }
}

/// One subtask of a window join.
pub struct WindowJoin {
    join_type: JoinType,
    plan: JoinPlan,
    ends: [usize; 2],
    hashers: [KeyHasher; 2],
    keeps_unmatched: [bool; 2],
    /// Each side's rows in Arrow's row format.
    rows: [RowConverter; 2],
    /// Join key (window columns included) -> its waiting rows.
    windows: StateTable<WindowKeyCodec>,
    /// The keys with waiting rows, by window end.
    due: TimeIndex,
    watermark: Option<EventTimeMs>,
    late: LateOutput,
}

impl WindowJoin {
    /// Files the rows of `batch` under their keys; returns the late ones (their window has
    /// been joined), which are not filed.
    fn add(
        &mut self,
        side: Side,
        batch: &RecordBatch,
        state: &mut OperatorState<'_>,
    ) -> Result<Vec<u32>> {
        let ends = event_times_ms(batch, self.ends[side as usize])?;
        let keys = JoinKeys::of(
            &self.hashers[side as usize],
            &self.plan.keys[side as usize],
            batch,
        )?;
        let rows = self.rows[side as usize].convert_columns(batch.columns())?;
        let mut late = Vec::new();
        for (i, &end) in ends.iter().enumerate() {
            if self.watermark.is_some_and(|w| end.saturating_sub(1) <= w) {
                late.push(i as u32);
                continue;
            }
            let key = keys.get(i);
            let group = self.hashers[side as usize].key_group_of(key);
            let new = self
                .windows
                .update(state, group, key, WindowKey::default, |window| {
                    let new = window.sides.iter().all(|(_, ends)| ends.is_empty());
                    window.end = end;
                    let (data, ends) = &mut window.sides[side as usize];
                    data.extend_from_slice(rows.row(i).as_ref());
                    ends.push(data.len());
                    new
                })?;
            if new {
                self.due.reindex(None, Some(end), group, key);
            }
        }
        Ok(late)
    }

    /// Joins the keys of the windows the watermark has closed, about [`FIRE_PART_ROWS`] rows
    /// per call; with more, asks to be called again.
    fn fire(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        let Some(watermark) = self.watermark else {
            return Ok(());
        };
        // A window closes when the watermark reaches its end - 1.
        let closed = watermark.saturating_add(1);
        let mut parts: [(Vec<u8>, Vec<usize>); 2] = Default::default();
        let state = ctx.state_or_err()?;
        while self.due.first_time().is_some_and(|end| end <= closed) {
            if parts.iter().map(|(_, ends)| ends.len()).sum::<usize>() >= FIRE_PART_ROWS {
                ctx.continue_later();
                break;
            }
            let Some((_, group, key)) = self.due.pop_until(closed) else {
                break;
            };
            let Some(window) = self.windows.take(state, group, &key)? else {
                continue;
            };
            for ((data, ends), (rows, row_ends)) in parts.iter_mut().zip(window.sides) {
                let base = data.len();
                data.extend_from_slice(&rows);
                ends.extend(row_ends.into_iter().map(|end| base + end));
            }
        }
        if parts.iter().all(|(_, ends)| ends.is_empty()) {
            return Ok(());
        }
        let [left, right] = [Side::Left, Side::Right].map(|side| {
            let (data, ends) = &parts[side as usize];
            let columns = decode_rows(&self.rows[side as usize], slices(data, ends))?;
            Ok::<_, OperatorError>(RecordBatch::try_new(
                Arc::clone(self.plan.schema(side)),
                columns,
            )?)
        });
        self.join([vec![left?], vec![right?]], ctx)
    }

    /// Joins the rows of one window.
    fn join(&self, rows: [Vec<RecordBatch>; 2], ctx: &mut Context<'_>) -> Result<()> {
        let [left, right] = rows;
        let left = concat_batches(&self.plan.left, &left)?;
        let right = concat_batches(&self.plan.right, &right)?;
        let keys = |side: Side, batch: &RecordBatch| {
            let side = side as usize;
            JoinKeys::of(&self.hashers[side], &self.plan.keys[side], batch)
        };
        let right_keys = keys(Side::Right, &right)?;
        let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for i in 0..right.num_rows() {
            if !key_is_null(&right, &self.plan.keys[1], i) {
                by_key.entry(right_keys.get(i)).or_default().push(i as u32);
            }
        }
        let left_keys = keys(Side::Left, &left)?;
        let (mut left_rows, mut right_rows) = (Vec::new(), Vec::new());
        for i in 0..left.num_rows() {
            if key_is_null(&left, &self.plan.keys[0], i) {
                continue;
            }
            for &r in by_key.get(left_keys.get(i)).map_or(&[][..], Vec::as_slice) {
                left_rows.push(i as u32);
                right_rows.push(r);
            }
        }
        let mut matched = [vec![false; left.num_rows()], vec![false; right.num_rows()]];
        let semi_or_anti = self.join_type.is_semi_or_anti();
        if !left_rows.is_empty() {
            let l = take_record_batch(&left, &UInt32Array::from(left_rows.clone()))?;
            let r = take_record_batch(&right, &UInt32Array::from(right_rows.clone()))?;
            let (joined, mask) = self.plan.pairs(&l, &r)?;
            for p in (0..mask.len()).filter(|&p| mask.value(p)) {
                matched[0][left_rows[p] as usize] = true;
                matched[1][right_rows[p] as usize] = true;
            }
            if !semi_or_anti {
                ctx.emit(self.plan.matched(&joined, &mask)?);
            }
        }
        if semi_or_anti {
            // Each left row once: with a match (semi) or without one (anti).
            let semi = self.join_type == JoinType::Semi;
            let rows: Vec<u32> = (0..left.num_rows() as u32)
                .filter(|&i| matched[0][i as usize] == semi)
                .collect();
            if !rows.is_empty() {
                ctx.emit(take_record_batch(&left, &UInt32Array::from(rows))?);
            }
            return Ok(());
        }
        for (side, batch) in [(Side::Left, &left), (Side::Right, &right)] {
            if !self.keeps_unmatched[side as usize] {
                continue;
            }
            let unmatched: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&i| !matched[side as usize][i as usize])
                .collect();
            if !unmatched.is_empty() {
                let rows = take_record_batch(batch, &UInt32Array::from(unmatched))?;
                ctx.emit(self.plan.padded(side, &rows)?);
            }
        }
        Ok(())
    }
}

impl Operator for WindowJoin {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() > 0 {
            let side = Side::of_input(ctx.input());
            let late = self.add(side, &batch, ctx.state_or_err()?)?;
            self.late.emit(&batch, late, ctx)?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTimeMs,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.watermark = Some(watermark);
        Ok(self.fire(ctx)?)
    }

    fn on_continue(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        Ok(self.fire(ctx)?)
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.windows.flush(state)?;
        snapshot_watermark(state, self.watermark)?;
        Ok(())
    }

    /// The rows stay in the state backend, read when their windows close; the index of
    /// window ends is rebuilt. A snapshot of the format before state tables (format 0) is
    /// refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        for side in [Side::Left, Side::Right] {
            refuse_format_0(state, side.name(), ROWS_TABLE, ROWS_FORMAT)?;
        }
        self.watermark = restore_watermark(state)?;
        let due = &mut self.due;
        self.windows
            .visit_stored(state, &mut |group, key, window| {
                due.reindex(None, Some(window.end), group, key);
                Ok(())
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::InMemoryStateBackend;

    use super::*;

    fn side(prefix: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(format!("{prefix}k"), DataType::Int64, false),
            Field::new(
                format!("{prefix}end"),
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    fn rows(prefix: &str, ends: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            side(prefix),
            vec![
                Arc::new(Int64Array::from(vec![1; ends.len()])),
                Arc::new(TimestampMillisecondArray::from(ends.to_vec())),
            ],
        )
        .unwrap()
    }

    /// A late row of either input goes to the late-row output as a late-rows row (one shape
    /// for both inputs), when that output is connected.
    #[test]
    fn late_rows_of_both_inputs_come_out_encoded() {
        let spec = JoinSpec {
            join_type: JoinType::Inner,
            left_keys: vec!["k".into()],
            right_keys: vec!["rk".into()],
            filter: None,
        };
        let factory = WindowJoinFactory::new(spec, "end", "rend");
        let mut context = SubtaskContext::standalone(vec![side(""), side("r")]);
        context.late_output_connected = true;
        let mut op = factory.create(&context).unwrap();
        let mut timers = Timers::default();
        let mut backend = InMemoryStateBackend::new();
        let all = KeyGroupRange::all(128);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(OperatorState::new(
            &mut backend,
            "join",
            all,
        ));
        op.on_watermark(1_500, &mut ctx).unwrap();
        op.process_batch(rows("", &[1_000, 2_000]), &mut ctx)
            .unwrap();
        let mut ctx = Context::new(1, Some(1_500), all, &mut timers)
            .with_state(OperatorState::new(&mut backend, "join", all));
        op.process_batch(rows("r", &[900]), &mut ctx).unwrap();
        let mut late = ctx.take_late();
        let mut ctx = Context::new(0, Some(1_500), all, &mut timers)
            .with_state(OperatorState::new(&mut backend, "join", all));
        op.process_batch(rows("", &[1_200]), &mut ctx).unwrap();
        late.extend(ctx.take_late());
        let json: Vec<String> = late
            .iter()
            .flat_map(|b| {
                let rows = b.column(2).as_string::<i32>().clone();
                (0..b.num_rows()).map(move |i| rows.value(i).to_string())
            })
            .collect();
        assert_eq!(
            json,
            vec![
                r#"{"rk":1,"rend":"1970-01-01T00:00:00.900"}"#,
                r#"{"k":1,"end":"1970-01-01T00:00:01.200"}"#
            ]
        );
        assert_eq!(late[0].schema(), crate::late::late_rows_schema());
    }

    /// Rows waiting for their window survive a snapshot: a restored subtask joins them when
    /// the watermark closes the window.
    #[test]
    fn waiting_rows_are_joined_after_a_restore() {
        let spec = JoinSpec {
            join_type: JoinType::Full,
            left_keys: vec!["k".into(), "end".into()],
            right_keys: vec!["rk".into(), "rend".into()],
            filter: None,
        };
        let factory = WindowJoinFactory::new(spec, "end", "rend");
        let context = SubtaskContext::standalone(vec![side(""), side("r")]);
        let mut backend = InMemoryStateBackend::new();
        let all = KeyGroupRange::all(128);
        let mut timers = Timers::default();
        let mut op = factory.create(&context).unwrap();
        for (input, batch) in [(0, rows("", &[1_000, 2_000])), (1, rows("r", &[2_000]))] {
            let mut ctx = Context::new(input, None, all, &mut timers)
                .with_state(OperatorState::new(&mut backend, "join", all));
            op.process_batch(batch, &mut ctx).unwrap();
        }
        op.snapshot_state(&mut OperatorState::new(&mut backend, "join", all))
            .unwrap();
        let mut restored = factory.create(&context).unwrap();
        restored
            .restore_state(&OperatorState::new(&mut backend, "join", all))
            .unwrap();
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(OperatorState::new(
            &mut backend,
            "join",
            all,
        ));
        restored.on_watermark(1_999, &mut ctx).unwrap();
        let rows: usize = ctx.take_batches().iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2, "window 1000 padded, window 2000 joined");
    }

    /// A window over more keys than one part joins them over several calls, each key once.
    #[test]
    fn a_large_window_is_joined_in_parts() {
        let spec = JoinSpec {
            join_type: JoinType::Left,
            left_keys: vec!["k".into(), "end".into()],
            right_keys: vec!["rk".into(), "rend".into()],
            filter: None,
        };
        let factory = WindowJoinFactory::new(spec, "end", "rend");
        let context = SubtaskContext::standalone(vec![side(""), side("r")]);
        let mut op = factory.create(&context).unwrap();
        let mut backend = InMemoryStateBackend::new();
        let all = KeyGroupRange::all(128);
        let mut timers = Timers::default();
        let keys = 2 * FIRE_PART_ROWS as i64 + 10;
        let batch = RecordBatch::try_new(
            side(""),
            vec![
                Arc::new(Int64Array::from_iter_values(0..keys)),
                Arc::new(TimestampMillisecondArray::from(vec![1_000; keys as usize])),
            ],
        )
        .unwrap();
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(OperatorState::new(
            &mut backend,
            "join",
            all,
        ));
        op.process_batch(batch, &mut ctx).unwrap();
        op.on_watermark(999, &mut ctx).unwrap();
        let mut parts = vec![ctx.take_batches()];
        while ctx.take_continue() {
            op.on_continue(&mut ctx).unwrap();
            parts.push(ctx.take_batches());
        }
        let sizes: Vec<usize> = (parts.iter())
            .map(|p| p.iter().map(|b| b.num_rows()).sum())
            .collect();
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert_eq!(
            sizes.iter().sum::<usize>(),
            keys as usize,
            "each key once, padded"
        );
    }
}
