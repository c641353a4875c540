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
//! State: a state table ([`weir_engine::state::table`]) keyed by the encoded group key: per
//! group the number of rows it holds and one row accumulator per aggregate (DataFusion's
//! `Accumulator`, which can report its current value without being consumed). Groups beyond
//! the memory budget live in RocksDB; a checkpoint writes the groups changed since the last.
//! With a state TTL (Flink's `table.exec.state.ttl`), a group not updated for that long (wall
//! clock) is forgotten; its next row starts it again with `+I`, as in Flink (and a
//! retraction of a row it held before is then ignored).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;
use datafusion_expr::Expr;
use weir_engine::changelog::{
    has_row_kind, kind_array, kind_at, row_kind_field, row_kinds, ChangelogMode, RowKind,
};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::BoxError;

use crate::aggregate::Aggregates;
use crate::error::{OperatorError, Result};
use crate::group_index::KeyEncoder;
use crate::row_accumulators::{AccumulatorSet, CountedCodec, RowAccumulators};
use crate::state_codec::refuse_format_0;

/// The state table of groups (key: the encoded group key).
const GROUPS_TABLE: &str = "group-state";
/// The format version of [`GROUPS_TABLE`]'s values.
const GROUPS_FORMAT: u16 = 1;
/// The table of the snapshots before state tables (format 0), refused when restoring.
const LEGACY_GROUPS_TABLE: &str = "groups";

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
        format!(
            "updating aggregate, keys [{}]: [{}] -> changelog{}",
            self.keys.join(", "),
            aggregates.join(", "),
            crate::ttl::describe(self.state_ttl)
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let plan = self.plan(context.input_schema())?;
        let keys = KeyEncoder::new(&plan.key_fields)?;
        let key_names: Vec<String> = plan.key_fields.iter().map(|f| f.name().clone()).collect();
        let spec = TableSpec {
            name: GROUPS_TABLE,
            version: GROUPS_FORMAT,
            ttl: self.state_ttl,
        };
        let codec = GroupCodec(CountedCodec::new(plan.accumulators.clone())?);
        Ok(Box::new(UpdatingAggregate {
            hasher: KeyHasher::new(context.input_schema(), &key_names, context.max_key_groups)?,
            keys,
            groups: context.state_table(spec, codec),
            plan,
        }))
    }
}

/// One group's state: its accumulators and row count, and the result last emitted for it.
pub struct Group {
    accumulators: AccumulatorSet,
    /// Rows added less rows retracted.
    rows: i64,
    /// The result emitted last (in memory only: after a group is read back, its
    /// accumulators' value, which is what was emitted).
    emitted: Option<Vec<ScalarValue>>,
}

/// Stores a group as its row count and accumulators ([`CountedCodec`]).
pub struct GroupCodec(CountedCodec);

impl StateCodec for GroupCodec {
    type Value = Group;

    fn encode(&self, groups: &mut [&mut Group]) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        self.0
            .encode(groups.iter_mut().map(|g| (g.rows, &mut g.accumulators)))
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<Group, StateError> {
        let (rows, mut accumulators) = self.0.decode(bytes)?;
        // What was emitted: the accumulators' value.
        let emitted = RowAccumulators::evaluate(&mut accumulators)
            .map_err(|e| StateError::Encoding(e.to_string()))?;
        Ok(Group {
            accumulators,
            rows,
            emitted: Some(emitted),
        })
    }

    fn memory_bytes(&self, group: &Group) -> usize {
        let emitted = group
            .emitted
            .as_ref()
            .map_or(0, |values| values.iter().map(ScalarValue::size).sum());
        std::mem::size_of::<Group>() + CountedCodec::memory_bytes(&group.accumulators) + emitted
    }
}

pub struct UpdatingAggregate {
    plan: Plan,
    keys: KeyEncoder,
    /// Key groups of the encoded keys (those of the hash exchange before the operator).
    hasher: KeyHasher,
    groups: StateTable<GroupCodec>,
}

/// How a batch changed one group's result.
enum Change {
    None,
    Insert(Vec<ScalarValue>),
    Update(Vec<ScalarValue>, Vec<ScalarValue>),
    /// Every row retracted: the result is deleted and the group forgotten.
    Delete(Option<Vec<ScalarValue>>),
}

impl UpdatingAggregate {
    /// Feeds a group the rows `rows` (in arrival order; a retraction while the group holds
    /// no row is ignored, as Flink's) and says how its result changed.
    fn apply(
        accumulators: &RowAccumulators,
        group: &mut Group,
        inputs: &[(Vec<ArrayRef>, Option<arrow::array::BooleanArray>)],
        kinds: Option<&arrow::array::Int8Array>,
        rows: &[u32],
    ) -> Result<Change> {
        if group.rows <= 0 {
            // New, or emptied before: the group starts over.
            group.accumulators = accumulators.create()?;
            group.rows = 0;
        }
        let (mut adds, mut retracts) = (Vec::new(), Vec::new());
        for &row in rows {
            if kind_at(kinds, row as usize).is_accumulate() {
                group.rows += 1;
                adds.push(row);
            } else if group.rows > 0 {
                group.rows -= 1;
                retracts.push(row);
            }
        }
        RowAccumulators::feed(&mut group.accumulators, inputs, &adds, false)?;
        RowAccumulators::feed(&mut group.accumulators, inputs, &retracts, true)?;
        if group.rows <= 0 {
            return Ok(Change::Delete(group.emitted.take()));
        }
        let new = RowAccumulators::evaluate(&mut group.accumulators)?;
        Ok(match group.emitted.replace(new.clone()) {
            Some(old) if old == new => Change::None,
            Some(old) => Change::Update(old, new),
            None => Change::Insert(new),
        })
    }

    /// The changelog rows of `changes` (per touched group: a row of `keys` with its key).
    fn emit(
        &self,
        changes: Vec<(u32, Change)>,
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
        for (key_row, change) in changes {
            match change {
                Change::None | Change::Delete(None) => {}
                Change::Insert(new) => push(key_row, RowKind::Insert, new),
                Change::Update(old, new) => {
                    push(key_row, RowKind::UpdateBefore, old);
                    push(key_row, RowKind::UpdateAfter, new);
                }
                Change::Delete(Some(old)) => push(key_row, RowKind::Delete, old),
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
        // Rows of each touched group, groups in order of first appearance.
        let touched = crate::group_index::rows_by_key(&encoded);
        let inputs = self.plan.accumulators.aggregates().inputs(&batch)?;
        let kinds = row_kinds(&batch);
        let state = ctx.state_or_err()?;
        let mut changes = Vec::with_capacity(touched.len());
        for (first, group_rows) in touched {
            let key = encoded.row(first as usize);
            let group = self.hasher.key_group_of(key.as_ref());
            let accumulators = &self.plan.accumulators;
            let new_group = || Group {
                accumulators: Vec::new(),
                rows: 0,
                emitted: None,
            };
            let change = self
                .groups
                .update(state, group, key.as_ref(), new_group, |g| {
                    Self::apply(accumulators, g, &inputs, kinds, &group_rows)
                })??;
            if let Change::Delete(_) = change {
                self.groups.remove(state, group, key.as_ref())?;
            }
            changes.push((first, change));
        }
        self.groups.expire(state)?;
        self.emit(changes, &keys, ctx)?;
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.groups.flush(state)?;
        Ok(())
    }

    /// The groups are in the state backend already, read when first touched. A snapshot of
    /// the format before state tables (format 0) is refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        Ok(refuse_format_0(
            state,
            LEGACY_GROUPS_TABLE,
            GROUPS_TABLE,
            GROUPS_FORMAT,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, Int8Array};
    use arrow::datatypes::{DataType, Field, Int64Type};
    use datafusion_expr::col;
    use datafusion_functions_aggregate::count::count_all;
    use datafusion_functions_aggregate::sum::sum;
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::InMemoryStateBackend;

    use super::*;

    /// Feeds changelog rows (kind, k, v); returns the output as (kind, k, count, sum).
    fn step(
        op: &mut Box<dyn Operator>,
        backend: &mut InMemoryStateBackend,
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
        let all = KeyGroupRange::all(128);
        let state = OperatorState::new(backend, "op", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
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
        let backend = &mut InMemoryStateBackend::new();
        let out = step(
            &mut op,
            backend,
            &[(UpdateBefore, 1, 5), (UpdateAfter, 1, 6)],
        );
        assert_eq!(out, vec![(Insert, 1, 1, 6)]);
        let out = step(
            &mut op,
            backend,
            &[(UpdateBefore, 1, 6), (UpdateAfter, 1, 7)],
        );
        assert_eq!(out, vec![(UpdateBefore, 1, 1, 6), (UpdateAfter, 1, 1, 7)]);
        let out = step(&mut op, backend, &[(Delete, 1, 7)]);
        assert_eq!(out, vec![(Delete, 1, 1, 7)]);
    }
}
