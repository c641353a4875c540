//! Filter: keeps the rows of each batch for which a predicate is true.
//!
//! The predicate is either a DataFusion expression (what SQL generates; the DSL accepts it too)
//! or a Rust closure over the whole batch returning a boolean mask. NULL counts as false, as in
//! SQL. Stateless: no snapshot.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_expr::Expr;
use datafusion_physical_expr::PhysicalExpr;
use weir_engine::operator::{Operator, OperatorFactory, Output, SubtaskContext};
use weir_engine::BoxError;

use crate::error::{OperatorError, Result};
use crate::expr::physical;

/// A closure computing a keep-mask for a batch.
pub type PredicateFn = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray, BoxError> + Send + Sync>;

/// What decides whether a row stays.
#[derive(Clone)]
pub enum Predicate {
    Expr(Expr),
    Closure { description: String, f: PredicateFn },
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
                let physical = physical(expr, input)?;
                let data_type = physical.data_type(input)?;
                if data_type != DataType::Boolean {
                    return Err(OperatorError::Plan(format!(
                        "filter predicate {expr} has type {data_type}, not BOOLEAN"
                    )));
                }
                PlannedPredicate::Expr(physical)
            }
            Predicate::Closure { f, .. } => PlannedPredicate::Closure(Arc::clone(f)),
        })
    }
}

enum PlannedPredicate {
    Expr(Arc<dyn PhysicalExpr>),
    Closure(PredicateFn),
}

impl OperatorFactory for FilterFactory {
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, BoxError> {
        self.plan(input)?;
        Ok(Arc::clone(input))
    }

    fn describe(&self) -> String {
        match &self.predicate {
            Predicate::Expr(expr) => format!("filter({expr})"),
            Predicate::Closure { description, .. } => format!("filter({description})"),
        }
    }

    fn create(&self, context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(FilterOperator {
            predicate: self.plan(&context.input_schema)?,
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
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), BoxError> {
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
        out.emit(apply_mask(&batch, &mask)?);
        Ok(())
    }
}
