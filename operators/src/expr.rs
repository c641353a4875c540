//! Turning DataFusion logical expressions into physical expressions over a known schema.
//!
//! The DSL and the SQL planner both describe projections, predicates and aggregate arguments
//! as DataFusion `Expr`s. Before evaluation they are type-coerced against the input schema
//! (so `price > 100` works for a BIGINT column and an INT literal) and lowered to
//! `PhysicalExpr`s that evaluate a whole `RecordBatch` at once.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion_common::tree_node::TreeNode;
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::simplify::SimplifyContext;
use datafusion_expr::Expr;
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion_optimizer::simplify_expressions::ExprSimplifier;
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};

use crate::error::{OperatorError, Result};

/// The DataFusion view of an Arrow schema.
pub fn df_schema(schema: &Schema) -> Result<DFSchema> {
    DFSchema::try_from(schema.clone()).map_err(|e| OperatorError::Plan(e.to_string()))
}

/// `expr` with implicit casts added so its operands agree with `schema`.
pub fn coerce(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let mut rewriter = TypeCoercionRewriter::new(schema);
    expr.rewrite(&mut rewriter)
        .map(|t| t.data)
        .map_err(|e| OperatorError::Plan(format!("{e}")))
}

/// Lowers `expr` to a physical expression over `schema`.
pub fn physical(expr: &Expr, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    let df = Arc::new(df_schema(schema)?);
    let coerced = coerce(expr.clone(), &df)?;
    let lowered = crate::cast::lower(coerced, &df)?;
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::clone(&df))
            .build(),
    );
    let simplified = simplifier
        .simplify(lowered)
        .map_err(|e| OperatorError::Plan(format!("cannot plan expression {expr}: {e}")))?;
    create_physical_expr(
        &simplified,
        &df,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .map_err(|e| OperatorError::Plan(format!("cannot plan expression {expr}: {e}")))
}
