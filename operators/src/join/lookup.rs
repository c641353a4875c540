//! Processing-time temporal join against a bounded table (`JOIN t FOR SYSTEM_TIME AS OF
//! left.proc_time`), as Flink's lookup join: each left row joins the rows of `t` with its key
//! as they are when the row arrives. `t` here is a bounded table the planner read whole before
//! the job (as Flink's filesystem lookup source caches its whole file; Weir does not reload it
//! while the job runs), held by every subtask, so the left input needs no exchange. INNER
//! drops a left row without a match (after the residual condition), LEFT pads it with NULLs.
//! The output is append-only like the left input, and the operator keeps no state.

use std::sync::Arc;

use arrow::array::{Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;
use weir_engine::changelog::ChangelogMode;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::BoxError;

use super::{key_is_null, JoinKeys, JoinPlan, JoinSpec, JoinType};
use crate::error::{OperatorError, Result};

/// Describes a lookup join of the input (the left side) with `table` (the right side, its
/// columns named as the join names them).
#[derive(Debug, Clone)]
pub struct LookupJoinFactory {
    spec: JoinSpec,
    table: RecordBatch,
    /// The table's rows by encoded key (a NULL key matches nothing), built once and shared
    /// by every subtask.
    index: Arc<HashMap<Box<[u8]>, Vec<u32>>>,
}

impl LookupJoinFactory {
    /// Fails for join types other than INNER and LEFT (a lookup join is one of those), for a
    /// join without an equality key (as Flink's), for key columns not in `table`, and for a
    /// table of 2^32 rows or more.
    pub fn new(spec: JoinSpec, table: RecordBatch) -> Result<Self> {
        if !matches!(spec.join_type, JoinType::Inner | JoinType::Left) {
            return Err(OperatorError::Plan(format!(
                "a lookup join is INNER or LEFT, not {}",
                spec.join_type.sql()
            )));
        }
        if spec.right_keys.is_empty() {
            return Err(OperatorError::Plan(
                "a lookup join needs an equality condition on the table's columns".into(),
            ));
        }
        let schema = table.schema();
        let key_columns = spec
            .right_keys
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let hasher = KeyHasher::new(&schema, &spec.right_keys, 1)?;
        let keys = JoinKeys::of(&hasher, &key_columns, &table)?;
        let mut index: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for row in 0..table.num_rows() {
            if !key_is_null(&table, &key_columns, row) {
                let position = u32::try_from(row).map_err(|_| {
                    OperatorError::Plan("a lookup table has 2^32 rows or more".into())
                })?;
                index
                    .entry(Box::from(keys.get(row)))
                    .or_default()
                    .push(position);
            }
        }
        Ok(LookupJoinFactory {
            spec,
            table,
            index: Arc::new(index),
        })
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
        let left_hasher = KeyHasher::new(&plan.left, &self.spec.left_keys, 1)?;
        Ok(Box::new(LookupJoin {
            keep_unmatched: self.spec.join_type == JoinType::Left,
            table: self.table.clone(),
            left_hasher,
            index: Arc::clone(&self.index),
            plan,
        }))
    }
}

struct LookupJoin {
    plan: JoinPlan,
    keep_unmatched: bool,
    table: RecordBatch,
    left_hasher: KeyHasher,
    index: Arc<HashMap<Box<[u8]>, Vec<u32>>>,
}

impl Operator for LookupJoin {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        let keys = JoinKeys::of(&self.left_hasher, &self.plan.keys[0], &batch)?;
        // Every (left row, table row) pair with equal keys, in left-row order.
        let (mut left_rows, mut right_rows) = (Vec::new(), Vec::new());
        for row in 0..batch.num_rows() {
            if key_is_null(&batch, &self.plan.keys[0], row) {
                continue;
            }
            for &matched in self.index.get(keys.get(row)).into_iter().flatten() {
                left_rows.push(row as u32);
                right_rows.push(matched);
            }
        }
        let left = take_record_batch(&batch, &UInt32Array::from(left_rows.clone()))?;
        let right = take_record_batch(&self.table, &UInt32Array::from(right_rows.clone()))?;
        let (_, mask) = self.plan.pairs(&left, &right)?;
        // The pairs that pass the residual condition, and (LEFT) each left row without one
        // padded, in the order the left rows came.
        let (mut out_left, mut out_right): (Vec<u32>, Vec<Option<u32>>) = (Vec::new(), Vec::new());
        let mut pair = 0;
        for row in 0..batch.num_rows() as u32 {
            let mut found = false;
            while left_rows.get(pair) == Some(&row) {
                if mask.is_valid(pair) && mask.value(pair) {
                    out_left.push(row);
                    out_right.push(Some(right_rows[pair]));
                    found = true;
                }
                pair += 1;
            }
            if !found && self.keep_unmatched {
                out_left.push(row);
                out_right.push(None);
            }
        }
        let mut columns = take_record_batch(&batch, &UInt32Array::from(out_left))?
            .columns()
            .to_vec();
        columns.extend(
            take_record_batch(&self.table, &UInt32Array::from(out_right))?
                .columns()
                .iter()
                .cloned(),
        );
        ctx.emit(RecordBatch::try_new(
            Arc::clone(&self.plan.output),
            columns,
        )?);
        Ok(())
    }
}
