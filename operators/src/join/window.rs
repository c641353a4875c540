//! Window join, as Flink's (`WindowJoinOperator`): two inputs whose rows belong to windows
//! (window TVFs or window aggregations of the same windows), joined on `window_start`,
//! `window_end` and keys. Rows wait per window; when the watermark reaches `window_end - 1`
//! the window's rows are joined (a hash join of that window alone), an outer join's unmatched
//! rows come out padded, and the window's rows are freed. Output: append-only, emitted before
//! the watermark that closes the window. A row whose window has already been joined is late:
//! dropped and counted (`late_rows_dropped`), as Flink drops it.
//!
//! State: each side's waiting rows per key group, as Arrow IPC.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;
use weir_engine::changelog::ChangelogMode;
use weir_engine::message::EventTimeMs;
use weir_engine::metrics::{names, Counter};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use super::{key_is_null, JoinPlan, JoinSpec, Side, JOIN_INPUTS};
use crate::error::{OperatorError, Result};
use crate::state_codec::{decode, encode, split_by_key_group};

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
        if self.spec.join_type.is_semi_or_anti() {
            return Err(OperatorError::Plan(
                "semi and anti window joins are not supported yet".into(),
            ));
        }
        let plan = self.spec.plan(&inputs[0], &inputs[1])?;
        let mut ends = [0; 2];
        for side in [Side::Left, Side::Right] {
            if plan.updating[side as usize] {
                return Err(OperatorError::Plan(format!(
                    "a window join takes append-only inputs, and its {} input is an updating result",
                    side.name()
                )));
            }
            let name = &self.window_ends[side as usize];
            let schema = plan.schema(side);
            let index = schema.index_of(name).map_err(|_| {
                OperatorError::Plan(format!(
                    "window end column '{name}' is not a column of the {} input",
                    side.name()
                ))
            })?;
            if !matches!(schema.field(index).data_type(), DataType::Timestamp(_, _)) {
                return Err(OperatorError::Plan(format!(
                    "window end column '{name}' is not a TIMESTAMP"
                )));
            }
            ends[side as usize] = index;
        }
        Ok((plan, ends))
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
        if inputs.iter().any(|m| !m.is_insert_only()) {
            return Err(Box::new(OperatorError::Plan(
                "a window join takes append-only inputs; one of its inputs is an updating result"
                    .into(),
            )));
        }
        Ok(ChangelogMode::InsertOnly)
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
        let hasher = |side: Side| {
            KeyHasher::new(
                plan.schema(side),
                match side {
                    Side::Left => &self.spec.left_keys,
                    Side::Right => &self.spec.right_keys,
                },
                context.max_key_groups,
            )
        };
        Ok(Box::new(WindowJoin {
            hashers: [hasher(Side::Left)?, hasher(Side::Right)?],
            keeps_unmatched: [
                self.spec.join_type.keeps_unmatched(Side::Left),
                self.spec.join_type.keeps_unmatched(Side::Right),
            ],
            plan,
            ends,
            windows: BTreeMap::new(),
            watermark: None,
            late_rows: context
                .metrics
                .counter(&context.operator_id, names::LATE_ROWS_DROPPED),
        }))
    }
}

/// One subtask of a window join.
pub struct WindowJoin {
    plan: JoinPlan,
    ends: [usize; 2],
    hashers: [KeyHasher; 2],
    keeps_unmatched: [bool; 2],
    /// Window end (ms) -> each side's waiting rows.
    windows: BTreeMap<i64, [Vec<RecordBatch>; 2]>,
    watermark: Option<EventTimeMs>,
    late_rows: Counter,
}

impl WindowJoin {
    /// Files the rows of `batch` under their windows, dropping late ones.
    fn add(&mut self, side: Side, batch: RecordBatch) -> Result<()> {
        let ends = event_times_ms(&batch, self.ends[side as usize])?;
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, end) in ends.iter().enumerate() {
            if self.watermark.is_some_and(|w| end - 1 <= w) {
                self.late_rows.add(1);
            } else {
                rows.entry(*end).or_default().push(i as u32);
            }
        }
        for (end, indices) in rows {
            let part = match indices.len() == batch.num_rows() {
                true => batch.clone(),
                false => take_record_batch(&batch, &UInt32Array::from(indices))?,
            };
            self.windows.entry(end).or_default()[side as usize].push(part);
        }
        Ok(())
    }

    /// Joins the rows of one window.
    fn join(&self, rows: [Vec<RecordBatch>; 2], ctx: &mut Context<'_>) -> Result<()> {
        let [left, right] = rows;
        let left = concat_batches(&self.plan.left, &left)?;
        let right = concat_batches(&self.plan.right, &right)?;
        let keys = |side: Side, batch: &RecordBatch| -> Result<Vec<Box<[u8]>>> {
            if self.plan.keys[side as usize].is_empty() {
                return Ok(vec![Box::default(); batch.num_rows()]);
            }
            let rows = self.hashers[side as usize].rows(batch)?;
            Ok(rows.iter().map(|r| Box::from(r.as_ref())).collect())
        };
        let mut by_key: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for (i, key) in keys(Side::Right, &right)?.into_iter().enumerate() {
            if !key_is_null(&right, &self.plan.keys[1], i) {
                by_key.entry(key).or_default().push(i as u32);
            }
        }
        let (mut left_rows, mut right_rows) = (Vec::new(), Vec::new());
        for (i, key) in keys(Side::Left, &left)?.iter().enumerate() {
            if key_is_null(&left, &self.plan.keys[0], i) {
                continue;
            }
            for &r in by_key.get(key).map_or(&[][..], Vec::as_slice) {
                left_rows.push(i as u32);
                right_rows.push(r);
            }
        }
        let mut matched = [vec![false; left.num_rows()], vec![false; right.num_rows()]];
        if !left_rows.is_empty() {
            let l = take_record_batch(&left, &UInt32Array::from(left_rows.clone()))?;
            let r = take_record_batch(&right, &UInt32Array::from(right_rows.clone()))?;
            let (joined, mask) = self.plan.pairs(&l, &r)?;
            for p in (0..mask.len()).filter(|&p| mask.value(p)) {
                matched[0][left_rows[p] as usize] = true;
                matched[1][right_rows[p] as usize] = true;
            }
            ctx.emit(self.plan.matched(&joined, &mask)?);
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
            self.add(Side::of_input(ctx.input()), batch)?;
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
            let table = side.name();
            state.clear_owned(table)?;
            let batches: Vec<&RecordBatch> = self
                .windows
                .values()
                .flat_map(|w| &w[side as usize])
                .collect();
            if batches.is_empty() {
                continue;
            }
            let all = concat_batches(self.plan.schema(side), batches)?;
            for (group, part) in split_by_key_group(&self.hashers[side as usize], &all)? {
                state.put(table, group, b"", encode(watermark, &part)?)?;
            }
        }
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        let mut watermark = None;
        for side in [Side::Left, Side::Right] {
            let table = side.name();
            for entry in state.scan_owned(table)? {
                let schema = Arc::clone(self.plan.schema(side));
                let (w, batch) = decode(&entry.value, table, entry.group, &schema)?;
                if w > EventTimeMs::MIN {
                    watermark = Some(watermark.map_or(w, |x: i64| x.max(w)));
                }
                let batch = RecordBatch::try_new(schema, batch.columns().to_vec())?;
                self.add(side, batch)?;
            }
        }
        self.watermark = watermark;
        Ok(())
    }
}
