//! Processing-time temporal join against a bounded table (`JOIN t FOR SYSTEM_TIME AS OF
//! left.proc_time`), as Flink's lookup join: each left row joins the rows of `t` with its key
//! as they are when the row arrives. `t` here is a bounded table the planner read whole before
//! the job (as Flink's filesystem lookup source caches its whole file; Weir does not reload it
//! while the job runs), held by every subtask, so the left input needs no exchange. INNER
//! drops a left row without a match (after the residual condition), LEFT pads it with NULLs.
//! The output is append-only like the left input, and the operator keeps no state.

use std::sync::Arc;

use arrow::array::{BooleanArray, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;
use weir_engine::changelog::ChangelogMode;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::BoxError;

use super::{key_is_null, JoinKeys, JoinPlan, JoinSpec, JoinType, Side};
use crate::error::{OperatorError, Result};

/// Describes a lookup join of the input (the left side) with `table` (the right side, its
/// columns named as the join names them).
#[derive(Debug, Clone)]
pub struct LookupJoinFactory {
    spec: JoinSpec,
    table: RecordBatch,
}

impl LookupJoinFactory {
    /// Fails for join types other than INNER and LEFT (a lookup join is one of those).
    pub fn new(spec: JoinSpec, table: RecordBatch) -> Result<Self> {
        if !matches!(spec.join_type, JoinType::Inner | JoinType::Left) {
            return Err(OperatorError::Plan(format!(
                "a lookup join is INNER or LEFT, not {}",
                spec.join_type.sql()
            )));
        }
        Ok(LookupJoinFactory { spec, table })
    }

    fn plan(&self, left: &SchemaRef) -> Result<JoinPlan> {
        self.spec.plan(left, self.table.schema_ref())
    }
}

impl OperatorFactory for LookupJoinFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        Ok(Arc::clone(&self.plan(&inputs[0])?.output))
    }

    /// Append-only, over an append-only input.
    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        match inputs[0].is_insert_only() {
            true => Ok(ChangelogMode::InsertOnly),
            false => Err(Box::new(OperatorError::Plan(
                "a processing-time temporal join of an updating result is not supported yet".into(),
            ))),
        }
    }

    fn describe(&self) -> String {
        format!(
            "lookup join {} with a table of {} rows",
            self.spec.describe(),
            self.table.num_rows()
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let plan = self.plan(context.input_schema())?;
        let left_hasher = KeyHasher::new(&plan.left, &self.spec.left_keys, context.max_key_groups)?;
        let right_hasher =
            KeyHasher::new(&plan.right, &self.spec.right_keys, context.max_key_groups)?;
        // The table's rows by key (a NULL key matches nothing).
        let keys = JoinKeys::of(&right_hasher, &plan.keys[1], &self.table)?;
        let mut rows: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for row in 0..self.table.num_rows() {
            if !key_is_null(&self.table, &plan.keys[1], row) {
                rows.entry(Box::from(keys.get(row)))
                    .or_default()
                    .push(row as u32);
            }
        }
        Ok(Box::new(LookupJoin {
            keep_unmatched: self.spec.join_type == JoinType::Left,
            table: self.table.clone(),
            left_hasher,
            rows,
            plan,
        }))
    }
}

struct LookupJoin {
    plan: JoinPlan,
    keep_unmatched: bool,
    table: RecordBatch,
    left_hasher: KeyHasher,
    rows: HashMap<Box<[u8]>, Vec<u32>>,
}

impl Operator for LookupJoin {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        let keys = JoinKeys::of(&self.left_hasher, &self.plan.keys[0], &batch)?;
        let (mut left_rows, mut right_rows) = (Vec::new(), Vec::new());
        for row in 0..batch.num_rows() {
            if key_is_null(&batch, &self.plan.keys[0], row) {
                continue;
            }
            for &matched in self.rows.get(keys.get(row)).into_iter().flatten() {
                left_rows.push(row as u32);
                right_rows.push(matched);
            }
        }
        let left = take_record_batch(&batch, &UInt32Array::from(left_rows.clone()))?;
        let right = take_record_batch(&self.table, &UInt32Array::from(right_rows))?;
        let (joined, mask) = self.plan.pairs(&left, &right)?;
        let mut out = vec![self.plan.matched(&joined, &mask)?];
        if self.keep_unmatched {
            let mut matched = vec![false; batch.num_rows()];
            for (&row, pass) in left_rows.iter().zip(mask.iter()) {
                matched[row as usize] |= pass == Some(true);
            }
            let unmatched = BooleanArray::from(matched.iter().map(|m| !m).collect::<Vec<_>>());
            let rows = crate::filter::apply_mask(&batch, &unmatched)?;
            out.push(self.plan.padded(Side::Left, &rows)?);
        }
        ctx.emit(concat_batches(&self.plan.output, &out)?);
        Ok(())
    }
}
