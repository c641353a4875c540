//! Aggregates: DataFusion aggregate functions driven through `GroupsAccumulator`.
//!
//! [`Aggregates`] is the planned list of aggregate expressions of a window (logical `Expr`s
//! such as `count(*)`, `max(price) AS top`, `count(DISTINCT bidder)`, or any user-defined
//! `AggregateUDF`). [`Accumulators`] is one set of vectorised accumulators: rows are fed with a
//! group index per row; partial state can be taken out as Arrow arrays and merged back, which
//! is how panes are combined into windows and how state is snapshotted.
//! Aggregates without a native `GroupsAccumulator` run through DataFusion's adapter.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{EmitTo, Expr, GroupsAccumulator};
use datafusion_physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion_physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use crate::error::{OperatorError, Result};
use crate::expr::{coerce, df_schema};

/// One planned aggregate.
#[derive(Debug, Clone)]
struct PlannedAggregate {
    function: Arc<AggregateFunctionExpr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    state_width: usize,
    /// The type of the first argument (`Null` without arguments).
    value_type: DataType,
}

/// The aggregate columns of a window, planned against its input schema.
#[derive(Debug, Clone)]
pub struct Aggregates {
    planned: Vec<PlannedAggregate>,
    output_fields: Vec<FieldRef>,
    state_fields: Vec<FieldRef>,
}

impl Aggregates {
    /// Plans `exprs` (aggregate function calls, optionally aliased) over `input`.
    pub fn plan(exprs: &[Expr], input: &SchemaRef) -> Result<Self> {
        let df = df_schema(input)?;
        let mut planned = Vec::new();
        let mut output_fields = Vec::new();
        let mut state_fields = Vec::new();
        for expr in exprs {
            // Flink's casts in arguments and FILTER, as for every expression.
            let coerced = crate::cast::lower(coerce(expr.clone(), &df)?, &df)?;
            let lowered = LoweredAggregateBuilder::new(
                &coerced,
                &df,
                input.as_ref(),
                &datafusion_expr::execution_props::ExecutionProps::new(),
                &PhysicalPlanningContext::default(),
            )
            .build()
            .map_err(|e| OperatorError::Plan(format!("cannot plan aggregate {expr}: {e}")))?;
            if !lowered.order_bys.is_empty() {
                return Err(OperatorError::Plan(format!(
                    "aggregate {expr}: ORDER BY inside an aggregate is not supported in windows"
                )));
            }
            let function = lowered.aggregate;
            let value_type = match function.expressions().first() {
                Some(argument) => argument.data_type(input)?,
                None => DataType::Null,
            };
            let states = function.state_fields()?;
            output_fields.push(function.field());
            state_fields.extend(states.iter().enumerate().map(|(i, f)| {
                let name = format!("{}#state{i}", function.name());
                Arc::new(f.as_ref().clone().with_name(name).with_nullable(true))
            }));
            planned.push(PlannedAggregate {
                state_width: states.len(),
                function,
                filter: lowered.filter,
                value_type,
            });
        }
        Ok(Aggregates {
            planned,
            output_fields,
            state_fields,
        })
    }

    /// The output column of each aggregate.
    pub fn output_fields(&self) -> &[FieldRef] {
        &self.output_fields
    }

    /// The partial-state columns of all aggregates, in order.
    pub fn state_fields(&self) -> &[FieldRef] {
        &self.state_fields
    }

    /// A fresh set of accumulators with no groups.
    pub fn accumulators(&self) -> Result<Accumulators> {
        let accumulators = self
            .planned
            .iter()
            .map(|p| -> Result<Box<dyn GroupsAccumulator>> {
                if p.function.groups_accumulator_supported() {
                    Ok(p.function.create_groups_accumulator()?)
                } else {
                    let function = Arc::clone(&p.function);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        function.create_accumulator()
                    })))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Accumulators {
            accumulators,
            groups: 0,
        })
    }

    /// Names of the aggregates, for `EXPLAIN`.
    pub fn describe(&self) -> String {
        self.planned
            .iter()
            .map(|p| p.function.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One row-at-a-time accumulator per aggregate (for updating aggregations, which read a
    /// group's current value after every batch).
    pub fn row_accumulators(&self) -> Result<Vec<Box<dyn datafusion_expr::Accumulator>>> {
        self.planned
            .iter()
            .map(|p| Ok(p.function.create_accumulator()?))
            .collect()
    }

    /// One accumulator per aggregate that can also take rows back (for updating inputs);
    /// errors naming the first aggregate that cannot (see [`crate::retract`]).
    pub fn retracting_accumulators(&self) -> Result<Vec<Box<dyn datafusion_expr::Accumulator>>> {
        self.planned
            .iter()
            .map(|p| crate::retract::retracting_accumulator(&p.function, &p.value_type))
            .collect()
    }

    /// Each aggregate's argument columns over `batch`, and its `FILTER (WHERE ...)` mask.
    pub fn inputs(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(Vec<ArrayRef>, Option<BooleanArray>)>> {
        let rows = batch.num_rows();
        self.planned
            .iter()
            .map(|p| {
                let values = p
                    .function
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(rows))
                    .collect::<Result<Vec<_>, _>>()?;
                let filter = match &p.filter {
                    Some(f) => Some(f.evaluate(batch)?.into_array(rows)?.as_boolean().clone()),
                    None => None,
                };
                Ok((values, filter))
            })
            .collect()
    }
}

/// One set of group accumulators, one per aggregate.
pub struct Accumulators {
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: usize,
}

impl Accumulators {
    /// Number of groups seen.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Adds the rows of `batch`; row i belongs to group `group_indices[i]` (< `total_groups`).
    pub fn update(
        &mut self,
        aggregates: &Aggregates,
        batch: &RecordBatch,
        group_indices: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_groups);
        for (accumulator, (values, filter)) in
            self.accumulators.iter_mut().zip(aggregates.inputs(batch)?)
        {
            accumulator.update_batch(&values, group_indices, filter.as_ref(), total_groups)?;
        }
        Ok(())
    }

    /// Merges partial states (columns laid out as [`Aggregates::state_fields`]).
    pub fn merge(
        &mut self,
        aggregates: &Aggregates,
        states: &[ArrayRef],
        group_indices: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.groups = self.groups.max(total_groups);
        let mut offset = 0;
        for (accumulator, planned) in self.accumulators.iter_mut().zip(&aggregates.planned) {
            let columns = &states[offset..offset + planned.state_width];
            accumulator.merge_batch(columns, group_indices, total_groups)?;
            offset += planned.state_width;
        }
        Ok(())
    }

    /// Takes the partial state of every group out (the accumulators are left empty).
    pub fn take_state(&mut self) -> Result<Vec<ArrayRef>> {
        let mut columns = Vec::new();
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        self.groups = 0;
        Ok(columns)
    }

    /// Takes the final value of every group out, one array per aggregate.
    pub fn evaluate(&mut self) -> Result<Vec<ArrayRef>> {
        let columns = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<Vec<_>, _>>()?;
        self.groups = 0;
        Ok(columns)
    }

    /// Approximate memory held, in bytes.
    pub fn size(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum()
    }
}

/// The schema `fields` as an Arrow schema.
pub fn schema_of(fields: Vec<FieldRef>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}
