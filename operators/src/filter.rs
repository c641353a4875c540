//! Filter: keeps the rows of each batch for which a predicate is true.
//!
//! The predicate is a DataFusion expression (logical, as the DSL writes it, or already
//! physical, as the SQL planner may hand it over) or a Rust closure over the whole batch
//! returning a boolean mask. NULL counts as false, as in
//! SQL. Stateless: no snapshot.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Int8Array};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_expr::Expr;
use datafusion_physical_expr::PhysicalExpr;
use weir_engine::changelog::{row_kinds, RowKind};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::BoxError;

use crate::error::{OperatorError, Result};
use crate::expr::physical;

/// A closure computing a keep-mask for a batch.
pub type PredicateFn = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray, BoxError> + Send + Sync>;

/// What decides whether a row stays.
#[derive(Clone)]
pub enum Predicate {
    Expr(Expr),
    /// An expression already planned against the node's input schema (SQL plans these).
    Physical(Arc<dyn PhysicalExpr>),
    Closure {
        description: String,
        f: PredicateFn,
    },
}

/// Describes a filter node.
pub struct FilterFactory {
    predicate: Predicate,
}

impl FilterFactory {
    pub fn new(predicate: Predicate) -> Self {
        FilterFactory { predicate }
    }

    fn plan(&self, input: &SchemaRef) -> Result<PlannedPredicate> {
        Ok(match &self.predicate {
            Predicate::Expr(expr) => {
                let planned = physical(expr, input)?;
                check_boolean(&planned, input, &expr.to_string())?;
                PlannedPredicate::Expr(planned)
            }
            Predicate::Physical(planned) => {
                check_boolean(planned, input, &planned.to_string())?;
                PlannedPredicate::Expr(Arc::clone(planned))
            }
            Predicate::Closure { f, .. } => PlannedPredicate::Closure(Arc::clone(f)),
        })
    }
}

fn check_boolean(expr: &Arc<dyn PhysicalExpr>, input: &SchemaRef, text: &str) -> Result<()> {
    let data_type = expr.data_type(input)?;
    if data_type != DataType::Boolean {
        return Err(OperatorError::Plan(format!(
            "filter predicate {text} has type {data_type}, not BOOLEAN"
        )));
    }
    Ok(())
}

enum PlannedPredicate {
    Expr(Arc<dyn PhysicalExpr>),
    Closure(PredicateFn),
}

impl OperatorFactory for FilterFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        let input = &inputs[0];
        self.plan(input)?;
        Ok(Arc::clone(input))
    }

    fn describe(&self) -> String {
        match &self.predicate {
            Predicate::Expr(expr) => format!("filter({expr})"),
            Predicate::Physical(expr) => format!("filter({expr})"),
            Predicate::Closure { description, .. } => format!("filter({description})"),
        }
    }

    fn create(&self, context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(FilterOperator {
            predicate: self.plan(context.input_schema())?,
        }))
    }
}

/// A filter subtask.
pub struct FilterOperator {
    predicate: PlannedPredicate,
}

/// Rows of `batch` where `mask` is true (NULL is false).
pub fn apply_mask(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    if mask.true_count() == batch.num_rows() && mask.null_count() == 0 {
        return Ok(batch.clone());
    }
    let mask = if mask.null_count() > 0 {
        prep_null_mask_filter(mask)
    } else {
        mask.clone()
    };
    Ok(filter_record_batch(batch, &mask)?)
}

impl Operator for FilterOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let mask = match &self.predicate {
            PlannedPredicate::Expr(expr) => {
                let value = expr.evaluate(&batch).map_err(OperatorError::from)?;
                let array = value
                    .into_array(batch.num_rows())
                    .map_err(OperatorError::from)?;
                array.as_boolean().clone()
            }
            PlannedPredicate::Closure(f) => f(&batch)?,
        };
        if mask.len() != batch.num_rows() {
            return Err(Box::new(OperatorError::User(format!(
                "filter closure returned {} flags for {} rows",
                mask.len(),
                batch.num_rows()
            ))));
        }
        let batch = match row_kinds(&batch) {
            Some(kinds) => {
                let (mask, kinds) = changelog_mask(&mask, kinds);
                // The row kinds are the last column; the filter's own replace them.
                let mut columns = batch.columns()[..batch.num_columns() - 1].to_vec();
                columns.push(Arc::new(kinds));
                apply_mask(&RecordBatch::try_new(batch.schema(), columns)?, &mask)?
            }
            None => apply_mask(&batch, &mask)?,
        };
        ctx.emit(batch);
        Ok(())
    }
}

/// A filter over a changelog keeps an update whole: where the predicate holds for the `-U` of
/// an update but not its `+U`, the `-U` becomes a `-D` (the row left the result); where it
/// holds for the `+U` only, the `+U` becomes a `+I` (the row entered it). Without this an
/// upsert sink, which ignores `-U`, would keep a row that no longer matches. Updates are
/// recognised as a `-U` directly followed by a `+U`, which is how Weir's operators emit them.
fn changelog_mask(mask: &BooleanArray, kinds: &Int8Array) -> (BooleanArray, Int8Array) {
    let keep: Vec<bool> = (0..mask.len())
        .map(|i| mask.is_valid(i) && mask.value(i))
        .collect();
    let mut kinds: Vec<i8> = kinds.values().to_vec();
    for i in 0..kinds.len().saturating_sub(1) {
        if kinds[i] != RowKind::UpdateBefore as i8 || kinds[i + 1] != RowKind::UpdateAfter as i8 {
            continue;
        }
        match (keep[i], keep[i + 1]) {
            (true, false) => kinds[i] = RowKind::Delete as i8,
            (false, true) => kinds[i + 1] = RowKind::Insert as i8,
            _ => {}
        }
    }
    (BooleanArray::from(keep), Int8Array::from(kinds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::ProjectFactory;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use datafusion_expr::{col, lit};
    use weir_engine::metrics::Metrics;
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::table::MemoryBudget;

    fn context(schema: &SchemaRef) -> SubtaskContext {
        SubtaskContext {
            operator_id: "op".into(),
            uid: "op".into(),
            index: 0,
            parallelism: 1,
            key_groups: KeyGroupRange::all(128),
            max_key_groups: 128,
            input_schemas: vec![Arc::clone(schema)],
            late_output_connected: false,
            checkpointing: false,
            metrics: Metrics::default(),
            state_budget: MemoryBudget::unlimited(),
        }
    }

    #[test]
    fn physical_expressions_filter_and_project_like_logical_ones() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 5, 3]))],
        )
        .unwrap();
        let predicate = physical(&col("a").gt(lit(2)), &schema).unwrap();
        let filter = FilterFactory::new(Predicate::Physical(predicate));
        let mut timers = Timers::default();
        let mut out = Context::new(0, None, KeyGroupRange::all(128), &mut timers);
        filter
            .create(&context(&schema))
            .unwrap()
            .process_batch(batch, &mut out)
            .unwrap();
        let kept = out.take_batches().remove(0);
        let doubled = physical(&(col("a") * lit(2)), &schema).unwrap();
        let project = ProjectFactory::physical(vec![("twice".into(), doubled)]);
        assert_eq!(
            project
                .output_schema(&[Arc::clone(&schema)])
                .unwrap()
                .field(0)
                .name(),
            "twice"
        );
        project
            .create(&context(&schema))
            .unwrap()
            .process_batch(kept, &mut out)
            .unwrap();
        let values = out.take_batches().remove(0);
        assert_eq!(
            values
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            vec![10, 6]
        );
        let not_boolean = physical(&col("a"), &schema).unwrap();
        let error = FilterFactory::new(Predicate::Physical(not_boolean))
            .output_schema(&[schema])
            .unwrap_err();
        assert!(error.to_string().contains("not BOOLEAN"), "{error}");
    }
}
