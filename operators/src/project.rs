//! Projection and map: compute a new batch from each input batch.
//!
//! [`ProjectFactory`] evaluates a list of DataFusion expressions (each named by its alias or
//! its text), which is what SQL `SELECT` lists become. [`MapFactory`] runs a Rust closure over
//! the whole batch with a declared output schema, for the DSL. Stateless.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_expr::Expr;
use datafusion_physical_expr::PhysicalExpr;
use weir_engine::changelog::{has_row_kind, kind_array, row_kind_field, ChangelogMode, RowKind};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::BoxError;

use crate::error::{OperatorError, Result};
use crate::expr::physical;

/// Describes a projection node: one output column per expression.
pub struct ProjectFactory {
    exprs: Vec<ProjectedColumn>,
    /// Whether an append-only input's rows come out as a changelog of `+I` rows.
    as_changelog: bool,
}

/// One output column of a projection.
#[derive(Clone)]
pub enum ProjectedColumn {
    /// Named by its alias or its text.
    Expr(Expr),
    /// Already planned against the node's input schema (SQL plans these), with its name.
    Physical(String, Arc<dyn PhysicalExpr>),
}

impl ProjectFactory {
    pub fn new(exprs: Vec<Expr>) -> Self {
        ProjectFactory {
            exprs: exprs.into_iter().map(ProjectedColumn::Expr).collect(),
            as_changelog: false,
        }
    }

    /// Rows of an append-only input come out as a changelog of `+I` rows (so that they can
    /// join updating results in one stream: a `UNION ALL`); a changelog input is unchanged.
    pub fn as_changelog(mut self) -> Self {
        self.as_changelog = true;
        self
    }

    /// A projection of named, already planned expressions.
    pub fn physical(exprs: Vec<(String, Arc<dyn PhysicalExpr>)>) -> Self {
        ProjectFactory {
            exprs: exprs
                .into_iter()
                .map(|(name, expr)| ProjectedColumn::Physical(name, expr))
                .collect(),
            as_changelog: false,
        }
    }

    fn plan(&self, input: &SchemaRef) -> Result<(SchemaRef, Vec<Arc<dyn PhysicalExpr>>)> {
        let mut fields = Vec::new();
        let mut physical_exprs = Vec::new();
        for column in &self.exprs {
            let (name, planned) = match column {
                ProjectedColumn::Expr(expr) => {
                    (expr.schema_name().to_string(), physical(expr, input)?)
                }
                ProjectedColumn::Physical(name, expr) => (name.clone(), Arc::clone(expr)),
            };
            fields.push(Field::new(
                name,
                planned.data_type(input)?,
                planned.nullable(input)?,
            ));
            physical_exprs.push(planned);
        }
        if has_row_kind(input) || self.as_changelog {
            // A changelog stays one: every row keeps its kind.
            fields.push(row_kind_field());
        }
        Ok((Arc::new(Schema::new(fields)), physical_exprs))
    }
}

impl OperatorFactory for ProjectFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        let input = &inputs[0];
        Ok(self.plan(input)?.0)
    }

    fn describe(&self) -> String {
        let exprs: Vec<String> = self
            .exprs
            .iter()
            .map(|c| match c {
                ProjectedColumn::Expr(expr) => expr.to_string(),
                ProjectedColumn::Physical(name, expr) => format!("{expr} AS {name}"),
            })
            .collect();
        format!("project({})", exprs.join(", "))
    }

    fn output_changelog(&self, inputs: &[ChangelogMode]) -> Result<ChangelogMode, BoxError> {
        Ok(match (self.as_changelog, &inputs[0]) {
            (true, ChangelogMode::InsertOnly) => ChangelogMode::All,
            (_, mode) => mode.clone(),
        })
    }

    fn create(&self, context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError> {
        let (schema, exprs) = self.plan(context.input_schema())?;
        Ok(Box::new(ProjectOperator {
            schema,
            exprs,
            inserts: self.as_changelog && !has_row_kind(context.input_schema()),
        }))
    }
}

/// A projection subtask.
pub struct ProjectOperator {
    schema: SchemaRef,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Whether the rows get `+I` kinds (an append-only input made a changelog).
    inserts: bool,
}

impl Operator for ProjectOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let mut columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(OperatorError::from)?;
        if self.inserts {
            columns.push(kind_array(std::iter::repeat_n(
                RowKind::Insert,
                batch.num_rows(),
            )));
        } else if columns.len() < self.schema.fields().len() {
            // The input's row kinds, last (an input without them fails the batch below).
            columns.extend(batch.columns().last().cloned());
        }
        // No columns (e.g. under `COUNT(*)`): the batch still carries its row count.
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        ctx.emit(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?);
        Ok(())
    }
}

/// A closure mapping a batch to a batch of the declared schema.
pub type MapFn = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch, BoxError> + Send + Sync>;

/// Describes a map node: a Rust closure with a declared output schema.
pub struct MapFactory {
    description: String,
    schema: SchemaRef,
    f: MapFn,
}

impl MapFactory {
    pub fn new(description: impl Into<String>, schema: SchemaRef, f: MapFn) -> Self {
        MapFactory {
            description: description.into(),
            schema,
            f,
        }
    }
}

impl OperatorFactory for MapFactory {
    fn output_schema(&self, _inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        Ok(Arc::clone(&self.schema))
    }

    fn describe(&self) -> String {
        format!("map({})", self.description)
    }

    fn create(&self, _context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError> {
        Ok(Box::new(MapOperator {
            schema: Arc::clone(&self.schema),
            f: Arc::clone(&self.f),
        }))
    }
}

/// A map subtask: checks that the closure keeps its promised schema.
pub struct MapOperator {
    schema: SchemaRef,
    f: MapFn,
}

impl Operator for MapOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let mapped = (self.f)(batch)?;
        if mapped.schema().fields() != self.schema.fields() {
            return Err(Box::new(OperatorError::User(format!(
                "map closure returned columns ({}) but declared ({})",
                weir_engine::graph::column_list(&mapped.schema()),
                weir_engine::graph::column_list(&self.schema)
            ))));
        }
        ctx.emit(mapped);
        Ok(())
    }
}
