//! Window join, as Flink's (`WindowJoinOperator`): two inputs whose rows belong to windows
//! (window TVFs or window aggregations of the same windows), joined on `window_start`,
//! `window_end` and keys. Rows wait per window; when the watermark reaches `window_end - 1`
//! the window's rows are joined (a hash join of that window alone), an outer join's unmatched
//! rows come out padded (a semi or anti join emits each left row with, or without, a match
//! once), and the window's rows are freed. Output: append-only, emitted before
//! the watermark that closes the window. A row whose window has already been joined is late:
//! dropped and counted (`late_rows_dropped`), as Flink drops it.
//!
//! State: each side's waiting rows per key group, as Arrow IPC.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;
use weir_engine::changelog::ChangelogMode;
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use super::{
    append_only, key_is_null, plan_timed, side_hashers, JoinKeys, JoinPlan, JoinSpec, JoinType,
    Side, JOIN_INPUTS,
};
use crate::error::Result;
use crate::late::LateOutput;
use crate::state_codec::{read_table, write_table};

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
        Ok(Box::new(WindowJoin {
            hashers: side_hashers(&self.spec, &plan, context.max_key_groups)?,
            keeps_unmatched: [
                self.spec.join_type.keeps_unmatched(Side::Left),
                self.spec.join_type.keeps_unmatched(Side::Right),
            ],
            join_type: self.spec.join_type,
            plan,
            ends,
            windows: BTreeMap::new(),
            watermark: None,
            late: LateOutput::encoded(context),
        }))
    }
}

/// One subtask of a window join.
pub struct WindowJoin {
    join_type: JoinType,
    plan: JoinPlan,
    ends: [usize; 2],
    hashers: [KeyHasher; 2],
    keeps_unmatched: [bool; 2],
    /// Window end (ms) -> each side's waiting rows.
    windows: BTreeMap<i64, [Vec<RecordBatch>; 2]>,
    watermark: Option<EventTimeMs>,
    late: LateOutput,
}

impl WindowJoin {
    /// Files the rows of `batch` under their windows; returns the late ones (their window
    /// has fired), which are not filed.
    fn add(&mut self, side: Side, batch: &RecordBatch) -> Result<Vec<u32>> {
        let ends = event_times_ms(batch, self.ends[side as usize])?;
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        let mut late = Vec::new();
        for (i, end) in ends.iter().enumerate() {
            if self.watermark.is_some_and(|w| end - 1 <= w) {
                late.push(i as u32);
            } else {
                rows.entry(*end).or_default().push(i as u32);
            }
        }
        for (end, indices) in rows {
            let part = match indices.len() == batch.num_rows() {
                true => batch.clone(),
                false => take_record_batch(batch, &UInt32Array::from(indices))?,
            };
            self.windows.entry(end).or_default()[side as usize].push(part);
        }
        Ok(late)
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
            let late = self.add(Side::of_input(ctx.input()), &batch)?;
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
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() - 1 > watermark {
                break;
            }
            let rows = entry.remove();
            self.join(rows, ctx)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        let watermark = self.watermark.unwrap_or(EventTimeMs::MIN);
        for side in [Side::Left, Side::Right] {
            let batches = self.windows.values().flat_map(|w| &w[side as usize]);
            let rows = concat_batches(self.plan.schema(side), batches)?;
            write_table(
                state,
                side.name(),
                &self.hashers[side as usize],
                &rows,
                watermark,
            )?;
        }
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        let mut watermark = None;
        for side in [Side::Left, Side::Right] {
            for (w, rows) in read_table(state, side.name(), &Arc::clone(self.plan.schema(side)))? {
                if w > EventTimeMs::MIN {
                    watermark = Some(watermark.map_or(w, |x: i64| x.max(w)));
                }
                // Filed before the watermark is set: restored rows are not late.
                self.add(side, &rows)?;
            }
        }
        self.watermark = watermark;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;

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
        let mut ctx = Context::new(0, None, KeyGroupRange::all(128), &mut timers);
        op.on_watermark(1_500, &mut ctx).unwrap();
        op.process_batch(rows("", &[1_000, 2_000]), &mut ctx)
            .unwrap();
        let mut ctx = Context::new(1, Some(1_500), KeyGroupRange::all(128), &mut timers);
        op.process_batch(rows("r", &[900]), &mut ctx).unwrap();
        let mut late = ctx.take_late();
        let mut ctx = Context::new(0, Some(1_500), KeyGroupRange::all(128), &mut timers);
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
}
