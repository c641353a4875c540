//! Non-windowed `GROUP BY`: an updating aggregation that emits a changelog.
//!
//! Each input batch updates the groups it touches; then, per touched group, the operator emits
//! `+I` (first result of a new group) or `-U` (the result emitted before) followed by `+U` (the
//! new result), like Flink's group aggregation with mini-batches: a group touched by several
//! rows of one batch changes once. A group whose result did not change emits nothing.
//! Output: the key columns, the aggregates, then the row kind
//! ([`weir_engine::changelog::ROW_KIND_COLUMN`]): an upsert stream keyed by the group keys.
//!
//! Over an updating input (one with a row-kind column), `-U` and `-D` rows retract what their
//! `+I`/`+U` added, through accumulators that can take rows back ([`crate::retract`]); a group
//! left with no rows emits `-D` of its last result and is forgotten, as Flink's
//! `GroupAggFunction` with its record counter.
//!
//! State: per group, the number of rows it holds and one row accumulator per aggregate
//! (DataFusion's `Accumulator`, which can report its current value without being consumed).
//! Snapshots store, per key group, the keys, the row count and every accumulator's partial
//! state; restore merges them back into fresh accumulators.
//! With a state TTL (Flink's `table.exec.state.ttl`), a group not updated for that long (wall
//! clock) loses its accumulators; its next row starts it again with `+I`, as in Flink (and a
//! retraction of a row it held before is then ignored). The group's encoded key stays in the
//! index (a few bytes per key).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, Int64Array, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;
use datafusion_expr::Expr;
use weir_engine::changelog::{
    has_row_kind, kind_array, kind_at, row_kind_field, row_kinds, ChangelogMode, RowKind,
};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use crate::aggregate::Aggregates;
use crate::error::{OperatorError, Result};
use crate::group_index::{GroupIndex, KeyEncoder};
use crate::row_accumulators::{AccumulatorSet, RowAccumulators};
use crate::state_codec::{decode, encode, split_by_key_group};

const GROUPS_TABLE: &str = "groups";
/// The state column with each group's row count.
const ROWS_COLUMN: &str = "$rows";

/// Describes an updating aggregation: grouping key columns and aggregate expressions.
#[derive(Debug, Clone)]
pub struct UpdatingAggregateFactory {
    keys: Vec<String>,
    aggregates: Vec<Expr>,
    state_ttl: Option<Duration>,
}

impl UpdatingAggregateFactory {
    pub fn new(keys: Vec<String>, aggregates: Vec<Expr>) -> Self {
        UpdatingAggregateFactory {
            keys,
            aggregates,
            state_ttl: None,
        }
    }

    /// Forgets groups not updated for `ttl` (none: keep every group for the job's lifetime).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.state_ttl = ttl.filter(|t| !t.is_zero());
        self
    }
}

/// The aggregation planned against its input.
#[derive(Debug, Clone)]
struct Plan {
    key_columns: Vec<usize>,
    key_fields: Vec<FieldRef>,
    /// Per group; retracting when the input is a changelog.
    accumulators: RowAccumulators,
    output: SchemaRef,
}

impl UpdatingAggregateFactory {
    fn plan(&self, input: &SchemaRef) -> Result<Plan> {
        let key_columns = self
            .keys
            .iter()
            .map(|k| {
                input.index_of(k).map_err(|_| {
                    OperatorError::Plan(format!(
                        "group key '{k}' not found; the input has ({})",
                        weir_engine::graph::column_list(input)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let key_fields: Vec<FieldRef> = key_columns
            .iter()
            .map(|&i| Arc::new(input.field(i).clone()))
            .collect();
        let aggregates = Aggregates::plan(&self.aggregates, input)?;
        let mut fields = key_fields.clone();
        fields.extend(
            aggregates
                .output_fields()
                .iter()
                .map(|f| Arc::new(f.as_ref().clone().with_nullable(true))),
        );
        fields.push(Arc::new(row_kind_field()));
        // Over a changelog, planning refuses aggregates that cannot retract.
        let accumulators = RowAccumulators::new(aggregates, has_row_kind(input))?;
        Ok(Plan {
            key_columns,
            key_fields,
            accumulators,
            output: Arc::new(Schema::new(fields)),
        })
    }
}

impl OperatorFactory for UpdatingAggregateFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        let input = &inputs[0];
        Ok(self.plan(input)?.output)
    }

    /// Flink's group aggregation: an upsert stream by the group keys (with `-U` rows, and `-D`
    /// rows when the input is updating).
    fn output_changelog(
        &self,
        _inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        Ok(ChangelogMode::Upsert {
            key: self.keys.clone(),
        })
    }

    fn describe(&self) -> String {
        let aggregates: Vec<String> = self.aggregates.iter().map(|a| a.to_string()).collect();
        let ttl = self
            .state_ttl
            .map_or(String::new(), |t| format!(", state TTL {t:?}"));
        format!(
            "updating aggregate, keys [{}]: [{}] -> changelog{ttl}",
            self.keys.join(", "),
            aggregates.join(", ")
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let plan = self.plan(context.input_schema())?;
        let keys = KeyEncoder::new(&plan.key_fields)?;
        let key_names: Vec<String> = plan.key_fields.iter().map(|f| f.name().clone()).collect();
        let mut state_fields = plan.key_fields.clone();
        state_fields.push(Arc::new(Field::new(ROWS_COLUMN, DataType::Int64, false)));
        state_fields.extend(plan.accumulators.state_fields().iter().cloned());
        let state_schema = Arc::new(Schema::new(state_fields));
        Ok(Box::new(UpdatingAggregate {
            index: keys.group_index(0),
            hasher: KeyHasher::new(&state_schema, &key_names, context.max_key_groups)?,
            keys,
            groups: Vec::new(),
            state_schema,
            plan,
            state_ttl: self.state_ttl,
            last_sweep: Instant::now(),
        }))
    }
}

/// One group's accumulators and the result last emitted for it.
struct Group {
    /// Empty once the group has expired (state TTL) or lost all its rows.
    accumulators: AccumulatorSet,
    /// Rows added less rows retracted; 0 for a group with no state (new, expired or emptied).
    rows: i64,
    emitted: Option<Vec<ScalarValue>>,
    last_update: Instant,
}

pub struct UpdatingAggregate {
    plan: Plan,
    keys: KeyEncoder,
    index: GroupIndex,
    groups: Vec<Group>,
    hasher: KeyHasher,
    state_schema: SchemaRef,
    state_ttl: Option<Duration>,
    last_sweep: Instant,
}

impl UpdatingAggregate {
    /// A group with no state yet (its first row creates the accumulators).
    fn new_group() -> Group {
        Group {
            accumulators: Vec::new(),
            rows: 0,
            emitted: None,
            last_update: Instant::now(),
        }
    }

    /// Drops the state of groups not updated for the state TTL (at most twice per TTL).
    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.state_ttl else {
            return;
        };
        if now.duration_since(self.last_sweep) < ttl / 2 {
            return;
        }
        self.last_sweep = now;
        for group in &mut self.groups {
            if group.rows > 0 && now.duration_since(group.last_update) > ttl {
                group.accumulators = Vec::new();
                group.rows = 0;
                group.emitted = None;
            }
        }
    }

    /// The changelog rows of the touched groups: keys from `key_source` rows.
    fn emit(
        &mut self,
        touched: &[(usize, u32)],
        keys: &[ArrayRef],
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let mut key_rows: Vec<u32> = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::new(); self.plan.accumulators.aggregates().output_fields().len()];
        let mut op: Vec<RowKind> = Vec::new();
        let mut push = |key_row: u32, kind: RowKind, row: Vec<ScalarValue>| {
            key_rows.push(key_row);
            op.push(kind);
            for (column, value) in values.iter_mut().zip(row) {
                column.push(value);
            }
        };
        for &(group, key_row) in touched {
            let state = &mut self.groups[group];
            if state.rows <= 0 {
                // Every row retracted: the group's result is deleted and the group forgotten.
                state.accumulators = Vec::new();
                state.rows = 0;
                if let Some(old) = state.emitted.take() {
                    push(key_row, RowKind::Delete, old);
                }
                continue;
            }
            let new = RowAccumulators::evaluate(&mut state.accumulators)?;
            match state.emitted.replace(new.clone()) {
                Some(old) if old == new => continue,
                Some(old) => {
                    push(key_row, RowKind::UpdateBefore, old);
                    push(key_row, RowKind::UpdateAfter, new);
                }
                None => push(key_row, RowKind::Insert, new),
            }
        }
        if key_rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(key_rows);
        let mut columns: Vec<ArrayRef> = keys
            .iter()
            .map(|k| take(k.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()?;
        columns.extend(self.plan.accumulators.value_columns(values)?);
        columns.push(kind_array(op));
        ctx.emit(RecordBatch::try_new(
            Arc::clone(&self.plan.output),
            columns,
        )?);
        Ok(())
    }
}

impl Operator for UpdatingAggregate {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys: Vec<ArrayRef> = self
            .plan
            .key_columns
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let encoded = self.keys.encode(&keys, rows)?;
        let mut group_of_row = Vec::with_capacity(rows);
        self.index.intern(&encoded, &mut group_of_row);
        self.groups
            .resize_with(self.index.len(), UpdatingAggregate::new_group);
        // Rows of each touched group, groups in order of first appearance.
        let mut order: Vec<(usize, u32)> = Vec::new();
        let mut rows_of: HashMap<usize, Vec<u32>> = HashMap::new();
        for (row, &group) in group_of_row.iter().enumerate() {
            rows_of
                .entry(group)
                .or_insert_with(|| {
                    order.push((group, row as u32));
                    Vec::new()
                })
                .push(row as u32);
        }
        let inputs = self.plan.accumulators.aggregates().inputs(&batch)?;
        let kinds = row_kinds(&batch);
        let now = Instant::now();
        for &(group, _) in &order {
            let state = &mut self.groups[group];
            let expired = self
                .state_ttl
                .is_some_and(|ttl| now.duration_since(state.last_update) > ttl);
            if expired || state.rows <= 0 {
                // Past its TTL (swept or not yet), new, or emptied: the group starts over.
                state.accumulators = self.plan.accumulators.create()?;
                state.rows = 0;
                state.emitted = None;
            }
            state.last_update = now;
            // In arrival order: a retraction while the group holds no row (its state expired,
            // or its row never came) is ignored, as Flink's.
            let (mut adds, mut retracts) = (Vec::new(), Vec::new());
            for row in rows_of.remove(&group).unwrap_or_default() {
                if kind_at(kinds, row as usize).is_accumulate() {
                    state.rows += 1;
                    adds.push(row);
                } else if state.rows > 0 {
                    state.rows -= 1;
                    retracts.push(row);
                }
            }
            RowAccumulators::feed(&mut state.accumulators, &inputs, &adds, false)?;
            RowAccumulators::feed(&mut state.accumulators, &inputs, &retracts, true)?;
        }
        self.emit(&order, &keys, ctx)?;
        self.expire(now);
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        state.clear_owned(GROUPS_TABLE)?;
        if self.groups.is_empty() {
            return Ok(());
        }
        let live: Vec<u32> = (0..self.groups.len() as u32)
            .filter(|&g| self.groups[g as usize].rows > 0)
            .collect();
        let live_indices = UInt32Array::from(live);
        let mut columns: Vec<ArrayRef> = self
            .keys
            .decode(self.index.keys())?
            .iter()
            .map(|k| take(k.as_ref(), &live_indices, None))
            .collect::<std::result::Result<_, _>>()?;
        let live_groups = self.groups.iter_mut().filter(|g| g.rows > 0);
        columns.push(Arc::new(Int64Array::from_iter_values(
            live_groups.map(|g| g.rows),
        )));
        let live_groups = self.groups.iter_mut().filter(|g| g.rows > 0);
        columns.extend(
            self.plan
                .accumulators
                .states(live_groups.map(|g| &mut g.accumulators))?,
        );
        let batch = RecordBatch::try_new(Arc::clone(&self.state_schema), columns)?;
        for (group, part) in split_by_key_group(&self.hasher, &batch)? {
            state.put(GROUPS_TABLE, group, b"", encode(0, &part)?)?;
        }
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        for entry in state.scan_owned(GROUPS_TABLE)? {
            let (_, batch) = decode(&entry.value, GROUPS_TABLE, entry.group, &self.state_schema)?;
            let key_count = self.plan.key_columns.len();
            let keys: Vec<ArrayRef> = batch.columns()[..key_count].to_vec();
            let rows = batch.column(key_count).as_primitive::<Int64Type>();
            let encoded = self.keys.encode(&keys, batch.num_rows())?;
            let mut group_of_row = Vec::new();
            self.index.intern(&encoded, &mut group_of_row);
            for (row, &group) in group_of_row.iter().enumerate() {
                if self.groups.len() <= group {
                    self.groups
                        .resize_with(group + 1, UpdatingAggregate::new_group);
                }
                let target = &mut self.groups[group];
                if target.rows <= 0 {
                    target.accumulators = self.plan.accumulators.create()?;
                }
                target.rows += rows.value(row);
                let states = &batch.columns()[key_count + 1..];
                self.plan
                    .accumulators
                    .merge(&mut target.accumulators, states, row)?;
                // What was emitted before the snapshot is the restored value.
                target.emitted = Some(RowAccumulators::evaluate(&mut target.accumulators)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, Int8Array};
    use datafusion_expr::col;
    use datafusion_functions_aggregate::count::count_all;
    use datafusion_functions_aggregate::sum::sum;
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;

    use super::*;

    /// Feeds changelog rows (kind, k, v); returns the output as (kind, k, count, sum).
    fn step(
        op: &mut Box<dyn Operator>,
        rows: &[(RowKind, i64, i64)],
    ) -> Vec<(RowKind, i64, i64, i64)> {
        let schema = input();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.0 as i8))),
            ],
        )
        .unwrap();
        let mut timers = Timers::default();
        let mut ctx = Context::new(0, None, KeyGroupRange::all(128), &mut timers);
        op.process_batch(batch, &mut ctx).unwrap();
        let mut out = Vec::new();
        for b in ctx.take_batches() {
            let kinds = row_kinds(&b);
            let k = b.column(0).as_primitive::<Int64Type>().clone();
            let n = b.column(1).as_primitive::<Int64Type>().clone();
            let s = b.column(2).as_primitive::<Int64Type>().clone();
            for i in 0..b.num_rows() {
                out.push((kind_at(kinds, i), k.value(i), n.value(i), s.value(i)));
            }
        }
        out
    }

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            row_kind_field(),
        ]))
    }

    /// A retraction reaching a group that holds no row (its state expired, or the row never
    /// came) is ignored, in arrival order, as Flink's: the `+U` after it still counts.
    #[test]
    fn a_retraction_without_state_is_ignored_and_the_group_goes_on() {
        let factory = UpdatingAggregateFactory::new(
            vec!["k".into()],
            vec![count_all().alias("n"), sum(col("v")).alias("s")],
        );
        let mut op = factory
            .create(&SubtaskContext::standalone(vec![input()]))
            .unwrap();
        use RowKind::*;
        let out = step(&mut op, &[(UpdateBefore, 1, 5), (UpdateAfter, 1, 6)]);
        assert_eq!(out, vec![(Insert, 1, 1, 6)]);
        let out = step(&mut op, &[(UpdateBefore, 1, 6), (UpdateAfter, 1, 7)]);
        assert_eq!(out, vec![(UpdateBefore, 1, 1, 6), (UpdateAfter, 1, 1, 7)]);
        let out = step(&mut op, &[(Delete, 1, 7)]);
        assert_eq!(out, vec![(Delete, 1, 1, 7)]);
    }
}
