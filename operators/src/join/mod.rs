//! Joins: operators with two inputs, `left` (input 0) and `right` (input 1).
//!
//! Every join here is an equi-join on key columns (a join without keys runs with no key
//! columns on one subtask, as Flink's), behind a hash exchange of each input on its keys, with
//! an optional residual predicate over the joined row (Flink's "non-equi condition"). Output:
//! the left columns, then the right ones (names must differ; the planner renames), the side
//! that an outer join may pad with NULLs made nullable.
//!
//! - [`interval::IntervalJoinFactory`]: Flink's interval join (time-windowed join); its rows
//!   wait in a [`store::SideStore`] until the watermark frees them.
//! - [`regular::RegularJoinFactory`]: Flink's regular join over append-only or updating
//!   inputs, emitting a changelog unless it is an inner join of append-only inputs.
//! - [`window::WindowJoinFactory`]: Flink's window join, per window at the window's end.
//! - [`temporal::TemporalJoinFactory`]: Flink's event-time temporal join (`FOR SYSTEM_TIME AS
//!   OF`): each left row with the version of a versioned table valid at its time.
//! - [`lookup::LookupJoinFactory`]: a processing-time temporal join against a bounded table
//!   read before the job (Flink's lookup join); one input, the table held by every subtask.

pub mod interval;
pub mod lookup;
pub mod regular;
pub mod store;
pub mod temporal;
pub mod window;

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray};
use arrow::compute::{and, is_not_null};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_expr::Expr;
use datafusion_physical_expr::PhysicalExpr;
use weir_engine::changelog::{has_row_kind, without_row_kind, ChangelogMode};
use weir_engine::partition::KeyHasher;

use crate::error::{OperatorError, Result};
use crate::filter::apply_mask;

/// Which rows a join emits, as Flink's `FlinkJoinType` for the outer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinType {
    Inner,
    /// Every left row; unmatched ones padded with NULLs on the right.
    Left,
    /// Every right row; unmatched ones padded with NULLs on the left.
    Right,
    /// Both.
    Full,
    /// Each left row that has a match, once (`EXISTS`, `IN`): left columns only.
    Semi,
    /// Each left row that has no match (`NOT EXISTS`): left columns only.
    Anti,
}

impl JoinType {
    /// Whether unmatched rows of `side` are emitted (padded).
    pub fn keeps_unmatched(self, side: Side) -> bool {
        matches!(
            (self, side),
            (JoinType::Full, _) | (JoinType::Left, Side::Left) | (JoinType::Right, Side::Right)
        )
    }

    /// Semi and anti joins emit left rows only, and whether they have a match decides.
    pub fn is_semi_or_anti(self) -> bool {
        matches!(self, JoinType::Semi | JoinType::Anti)
    }

    /// SQL's name: `INNER`, `LEFT OUTER`, ...
    pub fn sql(self) -> &'static str {
        match self {
            JoinType::Inner => "INNER",
            JoinType::Left => "LEFT OUTER",
            JoinType::Right => "RIGHT OUTER",
            JoinType::Full => "FULL OUTER",
            JoinType::Semi => "LEFT SEMI",
            JoinType::Anti => "LEFT ANTI",
        }
    }
}

/// One of a join's two inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Left = 0,
    Right = 1,
}

impl Side {
    /// The side a batch from engine input `input` belongs to.
    pub fn of_input(input: usize) -> Side {
        if input == 0 {
            Side::Left
        } else {
            Side::Right
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// The input names of every join.
pub const JOIN_INPUTS: &[&str] = &["left", "right"];

/// What every equi-join is given: its kind, the key columns of each side (equal in number and,
/// after the planner's casts, in type) and a residual predicate over the output columns.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub join_type: JoinType,
    pub left_keys: Vec<String>,
    pub right_keys: Vec<String>,
    pub filter: Option<Expr>,
}

impl JoinSpec {
    /// `INNER ON l.k = r.k [AND filter]`, for `describe()`.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .left_keys
            .iter()
            .zip(&self.right_keys)
            .map(|(l, r)| format!("left.{l} = right.{r}"))
            .collect();
        let mut text = format!("{} ON [{}]", self.join_type.sql(), keys.join(", "));
        if let Some(filter) = &self.filter {
            text.push_str(&format!(" AND {filter}"));
        }
        text
    }

    /// Plans the join against its inputs' schemas. An updating input's row kind is not a
    /// column of the join: `left` and `right` of the plan are the inputs without it.
    pub fn plan(&self, left: &SchemaRef, right: &SchemaRef) -> Result<JoinPlan> {
        let updating = [has_row_kind(left), has_row_kind(right)];
        let (left, right) = (&without_row_kind(left), &without_row_kind(right));
        if self.left_keys.len() != self.right_keys.len() {
            return Err(OperatorError::Plan(format!(
                "{} left keys but {} right keys",
                self.left_keys.len(),
                self.right_keys.len()
            )));
        }
        let index = |schema: &SchemaRef, side: Side, name: &String| {
            schema.index_of(name).map_err(|_| {
                OperatorError::Plan(format!(
                    "join key '{name}' is not a column of the {} input ({})",
                    side.name(),
                    weir_engine::graph::column_list(schema)
                ))
            })
        };
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        for (l, r) in self.left_keys.iter().zip(&self.right_keys) {
            let (li, ri) = (index(left, Side::Left, l)?, index(right, Side::Right, r)?);
            let (lt, rt) = (left.field(li).data_type(), right.field(ri).data_type());
            if lt != rt {
                return Err(OperatorError::Plan(format!(
                    "join keys left.{l} ({lt}) and right.{r} ({rt}) have different types; cast one"
                )));
            }
            left_keys.push(li);
            right_keys.push(ri);
        }
        let joined = joined_schema(left, right, self.join_type)?;
        let filter = self
            .filter
            .as_ref()
            .map(|f| crate::expr::physical(f, &joined))
            .transpose()?;
        Ok(JoinPlan {
            left: Arc::clone(left),
            right: Arc::clone(right),
            output: match self.join_type.is_semi_or_anti() {
                true => Arc::clone(left),
                false => Arc::clone(&joined),
            },
            joined,
            keys: [left_keys, right_keys],
            filter,
            updating,
        })
    }
}

/// The left columns then the right ones; a side the join may pad becomes nullable.
pub fn joined_schema(
    left: &SchemaRef,
    right: &SchemaRef,
    join_type: JoinType,
) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = Vec::new();
    for (side, schema) in [(Side::Left, left), (Side::Right, right)] {
        let padded = join_type.keeps_unmatched(side.other());
        for field in schema.fields() {
            if fields.iter().any(|f| f.name() == field.name()) {
                return Err(OperatorError::Plan(format!(
                    "column '{}' is on both sides of the join; rename one",
                    field.name()
                )));
            }
            let nullable = field.is_nullable() || padded;
            fields.push(field.as_ref().clone().with_nullable(nullable));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// A join planned against its inputs.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub left: SchemaRef,
    pub right: SchemaRef,
    /// What the join emits: `joined`, or the left columns for a semi or anti join.
    pub output: SchemaRef,
    /// The left columns then the right ones: what the residual predicate sees.
    pub joined: SchemaRef,
    /// Key column indices of each side.
    pub keys: [Vec<usize>; 2],
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Whether each input is an updating result (it carries row kinds).
    pub updating: [bool; 2],
}

impl JoinPlan {
    pub fn schema(&self, side: Side) -> &SchemaRef {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// Joined rows of `left` and `right` (row i with row i), and which pass the residual
    /// predicate (all when there is none). The batch is not yet filtered.
    pub fn pairs(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
    ) -> Result<(RecordBatch, BooleanArray)> {
        let mut columns: Vec<ArrayRef> = left.columns().to_vec();
        columns.extend(right.columns().iter().cloned());
        let joined = RecordBatch::try_new(Arc::clone(&self.joined), columns)?;
        let mask = match &self.filter {
            None => BooleanArray::from(vec![true; joined.num_rows()]),
            Some(filter) => {
                let value = filter.evaluate(&joined)?.into_array(joined.num_rows())?;
                let mask = value
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| OperatorError::Plan("the join condition is not BOOLEAN".into()))?
                    .clone();
                // NULL is not true.
                and(&mask, &is_not_null(&mask)?)?
            }
        };
        Ok((joined, mask))
    }

    /// `rows` of `side` with NULLs for every column of the other side.
    pub fn padded(&self, side: Side, rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let nulls = |schema: &SchemaRef| -> Vec<ArrayRef> {
            schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), n))
                .collect()
        };
        let mut columns = match side {
            Side::Left => rows.columns().to_vec(),
            Side::Right => nulls(&self.left),
        };
        match side {
            Side::Left => columns.extend(nulls(&self.right)),
            Side::Right => columns.extend(rows.columns().iter().cloned()),
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.joined), columns)?)
    }

    /// The rows of `joined` where `mask` holds.
    pub fn matched(&self, joined: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
        apply_mask(joined, mask)
    }
}

/// For a join on time (interval, window, temporal): plans `spec`, refusing updating inputs
/// unless `updating_ok` (`what` names the join in messages), and finds each side's time
/// column among `columns`, which must be a TIMESTAMP (or BIGINT ms where `bigint_ok`).
pub(crate) fn plan_timed(
    spec: &JoinSpec,
    inputs: &[SchemaRef],
    what: &str,
    columns: &[String; 2],
    bigint_ok: bool,
    updating_ok: bool,
) -> Result<(JoinPlan, [usize; 2])> {
    let plan = spec.plan(&inputs[0], &inputs[1])?;
    let mut found = [0; 2];
    for side in [Side::Left, Side::Right] {
        if plan.updating[side as usize] && !updating_ok {
            return Err(OperatorError::Plan(format!(
                "{what} takes append-only inputs, and its {} input is an updating result",
                side.name()
            )));
        }
        let name = &columns[side as usize];
        let schema = plan.schema(side);
        let index = schema.index_of(name).map_err(|_| {
            OperatorError::Plan(format!(
                "time column '{name}' of {what} is not a column of the {} input ({})",
                side.name(),
                weir_engine::graph::column_list(schema)
            ))
        })?;
        let data_type = schema.field(index).data_type();
        let timestamp = matches!(data_type, DataType::Timestamp(_, _))
            || bigint_ok && *data_type == DataType::Int64;
        if !timestamp {
            return Err(OperatorError::Plan(format!(
                "time column '{name}' of {what} has type {data_type}, not TIMESTAMP"
            )));
        }
        found[side as usize] = index;
    }
    Ok((plan, found))
}

/// The output mode of a join that takes and emits append-only rows (`what` names it).
pub(crate) fn append_only(
    what: &str,
    inputs: &[ChangelogMode],
) -> std::result::Result<ChangelogMode, weir_engine::BoxError> {
    if inputs.iter().any(|m| !m.is_insert_only()) {
        return Err(Box::new(OperatorError::Plan(format!(
            "{what} takes append-only inputs; one of its inputs is an updating result"
        ))));
    }
    Ok(ChangelogMode::InsertOnly)
}

/// Each side's key hasher (the hash of the exchange before the join, so snapshots split by
/// key group as the rows were routed).
pub(crate) fn side_hashers(
    spec: &JoinSpec,
    plan: &JoinPlan,
    key_groups: u16,
) -> Result<[KeyHasher; 2]> {
    Ok([
        KeyHasher::new(&plan.left, &spec.left_keys, key_groups)?,
        KeyHasher::new(&plan.right, &spec.right_keys, key_groups)?,
    ])
}

/// The encoded join key of each row of a batch (Arrow's row format), borrowed per row so a
/// lookup allocates nothing.
pub enum JoinKeys {
    /// A join without keys: every row has the empty key.
    Keyless,
    Rows(arrow::row::Rows),
}

impl JoinKeys {
    /// The key columns `keys` of `batch`, encoded by `hasher` (built over those columns).
    pub fn of(hasher: &KeyHasher, keys: &[usize], batch: &RecordBatch) -> Result<JoinKeys> {
        Ok(match keys.is_empty() {
            true => JoinKeys::Keyless,
            false => JoinKeys::Rows(hasher.rows(batch)?),
        })
    }

    /// The key of row `row`.
    pub fn get(&self, row: usize) -> &[u8] {
        match self {
            JoinKeys::Keyless => &[],
            JoinKeys::Rows(rows) => rows.row(row).data(),
        }
    }
}

/// Whether any key column of row `row` is NULL (SQL's `=` never matches it).
pub fn key_is_null(batch: &RecordBatch, keys: &[usize], row: usize) -> bool {
    keys.iter().any(|&k| batch.column(k).is_null(row))
}
