//! Top-N over append-only rows, as Flink's `AppendOnlyTopNFunction`: `ROW_NUMBER() OVER
//! (PARTITION BY p ORDER BY o) AS rn ... WHERE rn <= N`, and deduplication (`rn = 1` ordered by
//! a time attribute), which Flink plans as its `Deduplicate` operators and which is the N = 1
//! case here.
//!
//! Per partition the operator keeps at most N rows, sorted by the order keys (Arrow's row
//! format with each key's direction and NULL order, so sorting is comparing bytes). A row
//! that sorts after the N kept ones is dropped: it can never enter the top N of an
//! append-only input. Rows with equal order keys keep their arrival order (a new one goes
//! after them), except for a keep-last deduplication, where the newer row wins ties as in
//! Flink's.
//!
//! Output is a changelog, as Flink's:
//! - without the rank number: a row entering the top N is `+I`, after a `-D` of the row it
//!   pushes out;
//! - with it: every rank from the new row's down gets `-U` of its previous row and `+U` of
//!   its new one (`+I` for a rank that was empty).
//!
//! Over an updating input (a changelog, e.g. a `GROUP BY`'s result) it is Flink's
//! `RetractableTopNFunction`: every row of a partition is kept, because a retraction can bring
//! a row from below the top N back into it (see [`TopN::process_changelog`]).
//!
//! A window Top-N (partitioned by a window's start and end) emits nothing until the
//! watermark passes the window's end, then each partition's top N once as `+I` rows (an
//! append-only result, as Flink's window Top-N), and frees the window.
//!
//! State: the kept rows per partition (all of them over an updating input), checkpointed per
//! key group; with a state TTL
//! (`table.exec.state.ttl`), a partition not written for that long (processing time) is
//! forgotten, as in Flink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::compute::{interleave, SortOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use weir_engine::changelog::{
    data_columns, has_row_kind, kind_array, kind_at, row_kinds, with_row_kind, without_row_kind,
    ChangelogMode, RowKind,
};
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext, TimeDomain};
use weir_engine::partition::{KeyGroup, KeyHasher};
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::time::{event_time_column, event_times_ms};
use weir_engine::BoxError;

use crate::error::{OperatorError, Result};
use crate::late::LateOutput;
use crate::row_format::decode_rows;
use crate::state_codec::{
    put_bytes, refuse_format_0, restore_watermark, snapshot_watermark, Parts,
};
use crate::time_index::TimeIndex;

/// One `ORDER BY` key of a Top-N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// The column ordered by.
    pub column: String,
    /// Largest first.
    pub descending: bool,
    /// NULLs before every value.
    pub nulls_first: bool,
}

impl OrderKey {
    /// `column ASC`, NULLs first (Flink's default for ASC).
    pub fn asc(column: impl Into<String>) -> Self {
        OrderKey {
            column: column.into(),
            descending: false,
            nulls_first: true,
        }
    }

    /// `column DESC`, NULLs last (Flink's default for DESC).
    pub fn desc(column: impl Into<String>) -> Self {
        OrderKey {
            column: column.into(),
            descending: true,
            nulls_first: false,
        }
    }

    /// With NULLs first (`true`) or last.
    pub fn nulls_first(mut self, first: bool) -> Self {
        self.nulls_first = first;
        self
    }
}

/// Describes a Top-N: partition columns, order keys, N, and the name of the rank column
/// when the query selects it.
#[derive(Debug, Clone)]
pub struct TopNFactory {
    partition_by: Vec<String>,
    order_by: Vec<OrderKey>,
    limit: usize,
    rank_column: Option<String>,
    newer_wins_ties: bool,
    by_arrival: bool,
    state_ttl: Option<Duration>,
    window_end: Option<String>,
}

impl TopNFactory {
    /// The first `limit` rows per partition by `order_by`; `rank_column` names the rank
    /// number (from 1; unsigned 64-bit, as DataFusion types `ROW_NUMBER`) the output
    /// carries, if any. Fails for N = 0; planning fails for no order unless
    /// [`TopNFactory::by_arrival`].
    pub fn new(
        partition_by: Vec<String>,
        order_by: Vec<OrderKey>,
        limit: usize,
        rank_column: Option<String>,
    ) -> Result<Self> {
        if limit == 0 {
            return Err(OperatorError::Plan("a Top-N keeps at least one row".into()));
        }
        Ok(TopNFactory {
            partition_by,
            order_by,
            limit,
            rank_column,
            newer_wins_ties: false,
            by_arrival: false,
            state_ttl: None,
            window_end: None,
        })
    }

    /// A newer row with the same order keys replaces the kept one: a keep-last
    /// deduplication (N = 1, `ORDER BY time DESC`), as Flink's. Fails for N > 1.
    pub fn newer_wins_ties(mut self) -> Result<Self> {
        if self.limit != 1 {
            return Err(OperatorError::Plan(
                "only a deduplication (N = 1) lets a newer row win ties".into(),
            ));
        }
        self.newer_wins_ties = true;
        Ok(self)
    }

    /// A window Top-N (Flink's, over a window TVF or window aggregation, partitioned by its
    /// window): each window's top N are emitted once, append-only, when the watermark passes
    /// the window's end (column `window_end`), then freed; rows of a closed window are late,
    /// dropped and counted.
    pub fn at_window_end(mut self, window_end: impl Into<String>) -> Self {
        self.window_end = Some(window_end.into());
        self
    }

    /// Ranks rows by their arrival instead of their order keys, as a Top-N ordered by a
    /// processing-time attribute (Flink's `ProcTimeDeduplicateKeepFirstRow` and
    /// `...KeepLastRow` for N = 1): every row ties, so the first N rows stay, an append-only
    /// result; with [`TopNFactory::newer_wins_ties`] each new row replaces the kept one.
    /// The order keys, if any, are not used.
    pub fn by_arrival(mut self) -> Self {
        self.by_arrival = true;
        self
    }

    /// Whether the output is append-only: a window Top-N, or the first rows by arrival.
    fn append_only(&self) -> bool {
        self.window_end.is_some() || (self.by_arrival && !self.newer_wins_ties)
    }

    /// Whether this is a window Top-N (see [`TopNFactory::at_window_end`]).
    pub fn is_window_top_n(&self) -> bool {
        self.window_end.is_some()
    }

    /// Forgets a partition not written for `ttl` (none or zero: keep every partition). Not
    /// used by a window Top-N, whose windows the watermark frees.
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.state_ttl = ttl.filter(|t| !t.is_zero());
        self
    }

    fn data_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        if self.order_by.is_empty() && !self.by_arrival {
            return Err(OperatorError::Plan(
                "a Top-N is ordered by at least one key (or by arrival)".into(),
            ));
        }
        if has_row_kind(input)
            && (self.window_end.is_some() || self.newer_wins_ties || self.by_arrival)
        {
            return Err(OperatorError::Plan(
                "a window Top-N, a keep-last deduplication or a Top-N by processing time over an updating input is not supported (nor in Flink)".into(),
            ));
        }
        for column in self
            .partition_by
            .iter()
            .chain(self.order_by.iter().map(|k| &k.column))
        {
            input.index_of(column).map_err(|_| {
                OperatorError::Plan(format!(
                    "Top-N column '{column}' is not a column of the input ({})",
                    weir_engine::graph::column_list(input)
                ))
            })?;
        }
        Ok(without_row_kind(input))
    }
}

impl OperatorFactory for TopNFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        let data = self.data_schema(&inputs[0])?;
        let mut fields: Vec<_> = data.fields().iter().cloned().collect();
        if let Some(rank) = &self.rank_column {
            if data.index_of(rank).is_ok() {
                return Err(format!(
                    "the rank column '{rank}' is already a column of the input; name it otherwise"
                )
                .into());
            }
            fields.push(Arc::new(Field::new(rank, DataType::UInt64, false)));
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(match self.append_only() {
            true => schema,
            false => with_row_kind(&schema),
        })
    }

    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        // One row per partition and rank at a time (per partition when N = 1): an upsert
        // stream by those columns, as Flink's rank, which an upsert sink keyed so can take.
        let mut key = self.partition_by.clone();
        Ok(match (inputs[0].is_insert_only(), &self.rank_column) {
            (true, _) if self.append_only() => ChangelogMode::InsertOnly,
            (_, Some(rank)) => {
                key.push(rank.clone());
                ChangelogMode::Upsert { key }
            }
            (_, None) if self.limit == 1 => ChangelogMode::Upsert { key },
            (_, None) => ChangelogMode::All,
        })
    }

    fn describe(&self) -> String {
        let order: Vec<String> = self
            .order_by
            .iter()
            .map(|k| {
                format!(
                    "{} {} NULLS {}",
                    k.column,
                    if k.descending { "DESC" } else { "ASC" },
                    if k.nulls_first { "FIRST" } else { "LAST" }
                )
            })
            .collect();
        let mut text = format!(
            "top-{} partition by [{}] order by [{}]",
            self.limit,
            self.partition_by.join(", "),
            order.join(", ")
        );
        if let Some(rank) = &self.rank_column {
            text.push_str(&format!(", rank as {rank}"));
        }
        if self.by_arrival {
            text.push_str(", by arrival");
        }
        if self.newer_wins_ties {
            text.push_str(", newer wins ties");
        }
        if let Some(end) = &self.window_end {
            text.push_str(&format!(", at window end {end}"));
        }
        text.push_str(&crate::ttl::describe(self.state_ttl));
        text
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let data = self.data_schema(context.input_schema())?;
        let sort_fields = self
            .order_by
            .iter()
            .map(|k| {
                let index = data.index_of(&k.column)?;
                Ok(SortField::new_with_options(
                    data.field(index).data_type().clone(),
                    SortOptions {
                        descending: k.descending,
                        nulls_first: k.nulls_first,
                    },
                ))
            })
            .collect::<std::result::Result<Vec<_>, arrow::error::ArrowError>>()?;
        let order_columns = self
            .order_by
            .iter()
            .map(|k| data.index_of(&k.column))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let row_fields = data
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let window_end = match &self.window_end {
            Some(column) => Some(event_time_column(&data, column)?),
            None => None,
        };
        Ok(Box::new(TopN {
            retracting: has_row_kind(context.input_schema()),
            window_end,
            windows: TimeIndex::new(context),
            watermark: None,
            late: LateOutput::new(context),
            hasher: KeyHasher::new(&data, &self.partition_by, context.max_key_groups)?,
            keyed: !self.partition_by.is_empty(),
            sort: RowConverter::new(sort_fields)?,
            order_columns,
            rows: RowConverter::new(row_fields)?,
            output: self.output_schema(&context.input_schemas)?,
            data,
            limit: self.limit,
            ranked: self.rank_column.is_some(),
            newer_wins_ties: self.newer_wins_ties,
            by_arrival: self.by_arrival,
            append_only: self.append_only(),
            // A window's rows live until the window fires, as in Flink's window rank.
            state_ttl: match self.window_end {
                Some(_) => None,
                None => crate::ttl::ttl_ms(self.state_ttl),
            },
            partitions: context.state_table(
                TableSpec {
                    name: PARTITIONS_TABLE,
                    version: PARTITIONS_FORMAT,
                    ttl: match self.window_end {
                        Some(_) => None,
                        None => self.state_ttl,
                    },
                },
                PartitionCodec,
            ),
        }))
    }
}

/// The state table of partitions (key: the encoded partition key; value: the kept rows).
const PARTITIONS_TABLE: &str = "partitions";
/// The format version of [`PARTITIONS_TABLE`]'s values.
const PARTITIONS_FORMAT: u16 = 1;
/// A window Top-N's windows and their partitions, per key group.
const WINDOWS_TABLE: &str = "windows";
/// The table of the snapshots before state tables (format 0), refused when restoring.
const LEGACY_ROWS_TABLE: &str = "rows";

/// A kept row: its order keys and its columns, both in Arrow's row format.
#[derive(Debug, Clone)]
struct Kept {
    order: Box<[u8]>,
    row: Box<[u8]>,
}

/// Stores a partition's kept rows, in rank order, as their lengths and bytes: a count (u32,
/// big endian), then per row its order keys and its columns, each a length (u32) and bytes.
struct PartitionCodec;

impl StateCodec for PartitionCodec {
    type Value = Vec<Kept>;

    fn encode(
        &self,
        partitions: &mut [&mut Vec<Kept>],
    ) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        Ok(partitions
            .iter()
            .map(|kept| {
                let mut out = Vec::with_capacity(self.memory_bytes(kept));
                out.extend_from_slice(&(kept.len() as u32).to_be_bytes());
                for k in kept.iter() {
                    put_bytes(&mut out, &k.order);
                    put_bytes(&mut out, &k.row);
                }
                out
            })
            .collect())
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<Vec<Kept>, StateError> {
        let mut parts = Parts::new(bytes, "a Top-N partition");
        let count = parts.u32()? as usize;
        let mut kept = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let order = Box::from(parts.bytes()?);
            let row = Box::from(parts.bytes()?);
            kept.push(Kept { order, row });
        }
        Ok(kept)
    }

    fn memory_bytes(&self, kept: &Vec<Kept>) -> usize {
        kept.iter()
            .map(|k| k.order.len() + k.row.len() + 40)
            .sum::<usize>()
            + 24
    }
}

/// One output row: its kind, where its columns come from (0: the input batch, 1: a kept
/// row), which row, and its rank.
type Change = (RowKind, usize, usize, i64);

/// One subtask of a Top-N.
pub struct TopN {
    /// The input is a changelog: every row of a partition is kept (see
    /// [`TopN::process_changelog`]).
    retracting: bool,
    /// A window Top-N's window-end column.
    window_end: Option<usize>,
    /// A window Top-N's partitions by their window's end (charged to the budget).
    windows: TimeIndex,
    watermark: Option<EventTimeMs>,
    late: LateOutput,
    hasher: KeyHasher,
    /// Whether there are partition columns (else one partition).
    keyed: bool,
    sort: RowConverter,
    order_columns: Vec<usize>,
    rows: RowConverter,
    data: SchemaRef,
    output: SchemaRef,
    limit: usize,
    ranked: bool,
    newer_wins_ties: bool,
    /// Rows rank by arrival: their order keys are ignored (all tie).
    by_arrival: bool,
    /// No row kinds: a window Top-N, or the first rows by arrival.
    append_only: bool,
    state_ttl: Option<i64>,
    /// Partition key -> its kept rows.
    partitions: StateTable<PartitionCodec>,
}

impl TopN {
    fn partition_keys(&self, batch: &RecordBatch) -> Result<Option<arrow::row::Rows>> {
        Ok(match self.keyed {
            true => Some(self.hasher.rows(batch)?),
            false => None,
        })
    }

    /// Order keys of `batch`'s rows (none when ranking by arrival: every row ties).
    fn order_keys(&self, batch: &RecordBatch) -> Result<Option<arrow::row::Rows>> {
        if self.by_arrival {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = self
            .order_columns
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        Ok(Some(self.sort.convert_columns(&columns)?))
    }

    /// Over an updating input, as Flink's `RetractableTopNFunction`: every row of a partition
    /// is kept, since a retraction can bring a row from below the top N back into it. The
    /// changes of a batch are applied (`+I`/`+U` inserted after their equals, `-U`/`-D`
    /// removing the same row; one never seen is ignored), then each touched partition's top N
    /// is compared with what it was: with the rank, per rank `-U`/`+U` (or `+I`, `-D` where a
    /// rank fills or empties); without it, `-D` for the rows that left and `+I` for those that
    /// entered.
    fn process_changelog(&mut self, batch: &RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        let data = data_columns(batch, &self.data)?;
        let kinds = row_kinds(batch);
        let keys = self.partition_keys(&data)?;
        let orders = self.order_keys(&data)?;
        let rows = self.rows.convert_columns(data.columns())?;
        let state = ctx.state_or_err()?;
        let limit = self.limit;
        // Touched partitions, in order, with their top N before the batch.
        let mut before: HashMap<Vec<u8>, Vec<Box<[u8]>>> = HashMap::new();
        let mut touched: Vec<Vec<u8>> = Vec::new();
        for i in 0..data.num_rows() {
            let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
            // (Never by arrival over an updating input: refused when planned.)
            let order: &[u8] = orders.as_ref().map_or(&[], |o| o.row(i).data());
            let row = rows.row(i);
            let group = self.hasher.key_group_of(key);
            self.partitions
                .update(state, group, key, Vec::new, |kept| {
                    if !before.contains_key(key) {
                        let top = kept.iter().take(limit).map(|k| k.row.clone()).collect();
                        before.insert(key.to_vec(), top);
                        touched.push(key.to_vec());
                    }
                    let after_equals = kept.partition_point(|k| *k.order <= *order);
                    if kind_at(kinds, i).is_accumulate() {
                        let new = Kept {
                            order: Box::from(order),
                            row: Box::from(row.as_ref()),
                        };
                        kept.insert(after_equals, new);
                    } else {
                        let equals = kept.partition_point(|k| *k.order < *order);
                        if let Some(at) = (equals..after_equals)
                            .rev()
                            .find(|&j| *kept[j].row == *row.as_ref())
                        {
                            kept.remove(at);
                        }
                    }
                })?;
        }
        let mut moved: Vec<Box<[u8]>> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        for key in touched {
            let old = before.remove(&key).unwrap_or_default();
            let group = self.hasher.key_group_of(&key);
            let Some(partition) = self.partitions.get(state, group, &key)? else {
                continue;
            };
            let new: Vec<&Box<[u8]>> = partition.iter().take(limit).map(|k| &k.row).collect();
            let mut change = |kind: RowKind, row: &[u8], rank: usize| {
                changes.push((kind, 1, moved.len(), rank as i64 + 1));
                moved.push(Box::from(row));
            };
            if self.ranked {
                for rank in 0..old.len().max(new.len()) {
                    match (old.get(rank), new.get(rank)) {
                        (Some(o), Some(n)) if o == *n => {}
                        (Some(o), Some(n)) => {
                            change(RowKind::UpdateBefore, o, rank);
                            change(RowKind::UpdateAfter, n, rank);
                        }
                        (Some(o), None) => change(RowKind::Delete, o, rank),
                        (None, Some(n)) => change(RowKind::Insert, n, rank),
                        (None, None) => {}
                    }
                }
            } else {
                // Multisets: each old row matched by an equal new one stays.
                let mut entered: Vec<Option<&Box<[u8]>>> = new.iter().map(|n| Some(*n)).collect();
                for (rank, o) in old.iter().enumerate() {
                    match entered.iter_mut().find(|n| n.is_some_and(|n| n == o)) {
                        Some(matched) => *matched = None,
                        None => change(RowKind::Delete, o, rank),
                    }
                }
                for (rank, n) in entered.into_iter().enumerate() {
                    if let Some(n) = n {
                        change(RowKind::Insert, n, rank);
                    }
                }
            }
            if partition.is_empty() {
                self.partitions.remove(state, group, &key)?;
            }
        }
        self.partitions.expire(state)?;
        let empty = RecordBatch::new_empty(Arc::clone(&self.data));
        self.emit(&empty, &moved, &changes, ctx)
    }

    fn process(&mut self, batch: &RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        if self.retracting {
            return self.process_changelog(batch, ctx);
        }
        let data = data_columns(batch, &self.data)?;
        let keys = self.partition_keys(&data)?;
        let orders = self.order_keys(&data)?;
        let rows = self.rows.convert_columns(data.columns())?;
        let mut changes: Vec<Change> = Vec::new();
        // Kept rows that leave or move, decoded at the end.
        let mut moved: Vec<Box<[u8]>> = Vec::new();
        let ends = match self.window_end {
            Some(column) => Some(event_times_ms(&data, column)?),
            None => None,
        };
        let (limit, ranked, newer_wins_ties) = (self.limit, self.ranked, self.newer_wins_ties);
        let state = ctx.state_or_err()?;
        let mut late = Vec::new();
        for i in 0..data.num_rows() {
            let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
            let order: &[u8] = orders.as_ref().map_or(&[], |o| o.row(i).data());
            let end = ends.as_ref().map(|ends| ends[i]);
            // A window Top-N: rows of a closed window are late; others wait for its end.
            if end.is_some_and(|end| self.watermark.is_some_and(|w| end - 1 <= w)) {
                late.push(i as u32);
                continue;
            }
            let group = self.hasher.key_group_of(key);
            // Written (for the state TTL) only when the row is kept, as Flink writes state.
            let new_partition =
                self.partitions
                    .update_with(state, group, key, Vec::new, |kept| {
                        let new_partition = kept.is_empty();
                        let position = match newer_wins_ties {
                            true => kept.partition_point(|k| *k.order < *order),
                            false => kept.partition_point(|k| *k.order <= *order),
                        };
                        if position >= limit {
                            return (false, false);
                        }
                        let new = Kept {
                            order: Box::from(order),
                            row: Box::from(rows.row(i).as_ref()),
                        };
                        if newer_wins_ties
                            && kept.get(position).is_some_and(|k| k.order == new.order)
                        {
                            // The newer row replaces the kept one with the same order keys.
                            let old = std::mem::replace(&mut kept[position], new);
                            if end.is_some() {
                                return (false, true);
                            }
                            let rank = position as i64 + 1;
                            match ranked {
                                true => changes.push((RowKind::UpdateBefore, 1, moved.len(), rank)),
                                false => changes.push((RowKind::Delete, 1, moved.len(), rank)),
                            }
                            moved.push(old.row);
                            let kind = match ranked {
                                true => RowKind::UpdateAfter,
                                false => RowKind::Insert,
                            };
                            changes.push((kind, 0, i, rank));
                            return (false, true);
                        }
                        kept.insert(position, new);
                        let dropped = (kept.len() > limit).then(|| kept.pop()).flatten();
                        if end.is_some() {
                            // A window Top-N emits at the window's end.
                            return (new_partition, true);
                        }
                        if !ranked {
                            if let Some(dropped) = dropped {
                                changes.push((RowKind::Delete, 1, moved.len(), limit as i64));
                                moved.push(dropped.row);
                            }
                            changes.push((RowKind::Insert, 0, i, position as i64 + 1));
                            return (new_partition, true);
                        }
                        // Every rank from the new row's down changes: the previous row at each rank
                        // is the one now a rank lower (or the dropped one at the last rank).
                        for rank in position..kept.len() {
                            let previous = match kept.get(rank + 1) {
                                Some(k) => Some(k.row.clone()),
                                None => dropped.as_ref().map(|d| d.row.clone()),
                            };
                            let number = rank as i64 + 1;
                            match previous {
                                Some(previous) => {
                                    changes.push((RowKind::UpdateBefore, 1, moved.len(), number));
                                    moved.push(previous);
                                    changes.push((RowKind::UpdateAfter, 1, moved.len(), number));
                                    moved.push(kept[rank].row.clone());
                                }
                                None => {
                                    changes.push((RowKind::Insert, 1, moved.len(), number));
                                    moved.push(kept[rank].row.clone());
                                }
                            }
                        }
                        (new_partition, true)
                    })?;
            // A new partition of a window Top-N is fired with its window.
            if let (true, Some(end)) = (new_partition, end) {
                self.windows.reindex(None, Some(end), group, key);
            }
        }
        if self.window_end.is_none() {
            self.partitions.expire(state)?;
        }
        self.late.emit(batch, late, ctx)?;
        self.emit(&data, &moved, &changes, ctx)
    }

    fn emit(
        &self,
        data: &RecordBatch,
        moved: &[Box<[u8]>],
        changes: &[Change],
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let moved = decode_rows(&self.rows, moved.iter().map(|r| &**r))?;
        let picks: Vec<(usize, usize)> = changes.iter().map(|c| (c.1, c.2)).collect();
        let mut columns: Vec<ArrayRef> = data
            .columns()
            .iter()
            .zip(&moved)
            .map(|(new, kept)| interleave(&[new.as_ref(), kept.as_ref()], &picks))
            .collect::<std::result::Result<_, _>>()?;
        if self.ranked {
            columns.push(Arc::new(UInt64Array::from_iter_values(
                changes.iter().map(|c| c.3 as u64),
            )));
        }
        if !self.append_only {
            columns.push(kind_array(changes.iter().map(|c| c.0)));
        }
        ctx.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }

    /// A window Top-N: emits the top N of every window the watermark closed, then frees them.
    fn fire(&mut self, watermark: EventTimeMs, ctx: &mut Context<'_>) -> Result<()> {
        let mut rows: Vec<Box<[u8]>> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        let state = ctx.state_or_err()?;
        // A window closes once the watermark reaches its end - 1.
        while let Some((_, group, key)) = self.windows.pop_until(watermark.saturating_add(1)) {
            let Some(kept) = self.partitions.take(state, group, &key)? else {
                continue;
            };
            for (rank, kept) in kept.into_iter().enumerate() {
                changes.push((RowKind::Insert, 1, rows.len(), rank as i64 + 1));
                rows.push(kept.row);
            }
        }
        let empty = RecordBatch::new_empty(Arc::clone(&self.data));
        self.emit(&empty, &rows, &changes, ctx)
    }

    /// Writes the window index (window end and partition key of every open window's
    /// partitions) into [`WINDOWS_TABLE`], one entry per key group: per partition its end
    /// (i64, big endian), its key's length (u32) and the key.
    fn snapshot_windows(&self, state: &mut OperatorState<'_>) -> Result<()> {
        state.clear_owned(WINDOWS_TABLE)?;
        let mut by_group: BTreeMap<KeyGroup, Vec<u8>> = BTreeMap::new();
        for (end, group, key) in self.windows.entries() {
            let out = by_group.entry(group).or_default();
            out.extend_from_slice(&end.to_be_bytes());
            put_bytes(out, key);
        }
        for (group, bytes) in by_group {
            state.put(WINDOWS_TABLE, group, b"", bytes)?;
        }
        Ok(())
    }

    /// Reads back what [`TopN::snapshot_windows`] wrote for this subtask's key groups.
    fn restore_windows(&mut self, state: &OperatorState<'_>) -> Result<()> {
        for entry in state.scan_owned(WINDOWS_TABLE)? {
            let mut parts = Parts::new(&entry.value, "a window Top-N's window index");
            while !parts.is_empty() {
                let end = parts.i64()?;
                let key = parts.bytes()?;
                self.windows.reindex(None, Some(end), entry.group, key);
            }
        }
        Ok(())
    }
}

impl Operator for TopN {
    fn open(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        if let Some(ttl) = self.state_ttl {
            let now = weir_engine::time::now_ms();
            crate::ttl::arm_sweep(ctx, ttl, now);
        }
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() > 0 {
            self.process(&batch, ctx)?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: EventTimeMs,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.watermark = Some(watermark);
        if self.window_end.is_some() {
            self.fire(watermark, ctx)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _domain: TimeDomain,
        time: i64,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if let Some(ttl) = self.state_ttl {
            self.partitions.expire(ctx.state_or_err()?)?;
            crate::ttl::arm_sweep(ctx, ttl, time);
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.partitions.flush(state)?;
        if self.window_end.is_some() {
            self.snapshot_windows(state)?;
        }
        snapshot_watermark(state, self.watermark)?;
        Ok(())
    }

    /// The partitions are in the state backend already, read when first touched; a window
    /// Top-N reads back its window index. A snapshot of the format before state tables
    /// (format 0) is refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        refuse_format_0(
            state,
            LEGACY_ROWS_TABLE,
            PARTITIONS_TABLE,
            PARTITIONS_FORMAT,
        )?;
        // A window Top-N's rows of closed windows stay late after a restore.
        self.watermark = restore_watermark(state)?;
        if self.window_end.is_some() {
            self.restore_windows(state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Int64Type, Int8Type, UInt64Type};
    use weir_engine::operator::Timers;
    use weir_engine::state::InMemoryStateBackend;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new("id", DataType::Int64, false),
        ]))
    }

    fn batch(rows: &[(i64, Option<i64>, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn operator(ranked: bool, newer_wins: bool) -> Box<dyn Operator> {
        let order = vec![OrderKey {
            column: "v".into(),
            descending: true,
            nulls_first: false,
        }];
        let rank = ranked.then(|| "rn".to_string());
        let limit = if newer_wins { 1 } else { 2 };
        let mut factory = TopNFactory::new(vec!["k".into()], order, limit, rank).unwrap();
        if newer_wins {
            factory = factory.newer_wins_ties().unwrap();
        }
        factory
            .create(&SubtaskContext::standalone(vec![schema()]))
            .unwrap()
    }

    /// Applies the output changelog: (k, id, rank or 0) -> count.
    fn apply(
        out: &mut BTreeMap<(i64, i64, i64), i64>,
        op: &mut Box<dyn Operator>,
        backend: &mut InMemoryStateBackend,
        rows: &[(i64, Option<i64>, i64)],
    ) {
        let mut timers = Timers::default();
        let all = weir_engine::partition::KeyGroupRange::all(128);
        let state = OperatorState::new(backend, "topn", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        op.process_batch(batch(rows), &mut ctx).unwrap();
        for b in ctx.take_batches() {
            let k = b.column(0).as_primitive::<Int64Type>();
            let id = b.column(2).as_primitive::<Int64Type>();
            let last = b.num_columns() - 1;
            let kinds = b.column(last).as_primitive::<Int8Type>();
            let rank = (last == 4).then(|| b.column(3).as_primitive::<UInt64Type>());
            for i in 0..b.num_rows() {
                let kind = RowKind::from_byte(kinds.value(i)).unwrap();
                let key = (
                    k.value(i),
                    id.value(i),
                    rank.map_or(0, |r| r.value(i) as i64),
                );
                let count = out.entry(key).or_default();
                *count += if kind.is_accumulate() { 1 } else { -1 };
                if *count == 0 {
                    out.remove(&key);
                }
            }
        }
    }

    #[test]
    fn the_top_two_per_partition_across_a_snapshot() {
        let input = [
            (1, Some(5), 1),
            (1, Some(7), 2),
            (2, Some(1), 3),
            (1, Some(6), 4),
            (1, None, 5),
            (1, Some(7), 6),
            (2, Some(3), 7),
            (2, Some(2), 8),
        ];
        for ranked in [false, true] {
            let mut out = BTreeMap::new();
            let mut op = operator(ranked, false);
            let mut live = InMemoryStateBackend::new();
            apply(&mut out, &mut op, &mut live, &input[..4]);
            let all = weir_engine::partition::KeyGroupRange::all(128);
            op.snapshot_state(&mut OperatorState::new(&mut live, "topn", all))
                .unwrap();
            // A new subtask over a copy of the snapshot, as a restored job's.
            let mut restored = live.clone();
            drop(op);
            let mut op = operator(ranked, false);
            op.restore_state(&OperatorState::new(&mut restored, "topn", all))
                .unwrap();
            apply(&mut out, &mut op, &mut restored, &input[4..]);
            let rank = |r: i64| if ranked { r } else { 0 };
            // Partition 1: 7 (id 2) then 7 (id 6, arrived later); partition 2: 3 then 2.
            let expected: BTreeMap<_, _> = [
                ((1, 2, rank(1)), 1),
                ((1, 6, rank(2)), 1),
                ((2, 7, rank(1)), 1),
                ((2, 8, rank(2)), 1),
            ]
            .into_iter()
            .collect();
            assert_eq!(out, expected, "ranked {ranked}");
        }
    }

    #[test]
    fn a_newer_row_wins_ties_when_asked() {
        let mut out = BTreeMap::new();
        let mut op = operator(false, true);
        apply(
            &mut out,
            &mut op,
            &mut InMemoryStateBackend::new(),
            &[(1, Some(7), 1), (1, Some(7), 2), (1, Some(5), 3)],
        );
        // Keep-last: the newest of the rows with the highest v.
        assert_eq!(out, [((1, 2, 0), 1)].into_iter().collect());
    }

    /// A window Top-N keeps a window's rows until the window fires, whatever the state TTL
    /// (as Flink's window rank): the TTL applies to non-window Top-Ns only.
    #[test]
    fn a_window_top_n_ignores_the_state_ttl() {
        let factory = TopNFactory::new(vec!["k".into()], vec![OrderKey::desc("v")], 1, None)
            .unwrap()
            .with_state_ttl(Some(Duration::from_millis(1)))
            .at_window_end("id");
        let mut op = factory
            .create(&SubtaskContext::standalone(vec![schema()]))
            .unwrap();
        let mut timers = Timers::default();
        let all = weir_engine::partition::KeyGroupRange::all(128);
        let mut backend = InMemoryStateBackend::new();
        let state = OperatorState::new(&mut backend, "topn", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        op.open(&mut ctx).unwrap();
        op.process_batch(batch(&[(1, Some(5), 1_000), (2, Some(6), 1_000)]), &mut ctx)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        op.on_timer(
            TimeDomain::ProcessingTime,
            weir_engine::time::now_ms(),
            &mut ctx,
        )
        .unwrap();
        op.on_watermark(2_000, &mut ctx).unwrap();
        let rows: usize = ctx.take_batches().iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2, "both keys' top row at the window's end");
    }

    /// A window Top-N's open windows survive a snapshot: the restored subtask fires each at
    /// its end (the index of windows is written at the barrier and read back).
    #[test]
    fn a_window_top_n_fires_its_windows_after_a_restore() {
        let factory = TopNFactory::new(vec!["k".into()], vec![OrderKey::desc("v")], 1, None)
            .unwrap()
            .at_window_end("id");
        let context = SubtaskContext::standalone(vec![schema()]);
        let all = weir_engine::partition::KeyGroupRange::all(128);
        let mut backend = InMemoryStateBackend::new();
        let mut op = factory.create(&context).unwrap();
        let mut timers = Timers::default();
        let state = OperatorState::new(&mut backend, "topn", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        let rows = [
            (1, Some(5), 1_000),
            (1, Some(8), 1_000),
            (2, Some(6), 2_000),
        ];
        op.process_batch(batch(&rows), &mut ctx).unwrap();
        drop(ctx);
        op.snapshot_state(&mut OperatorState::new(&mut backend, "topn", all))
            .unwrap();
        let mut restored = factory.create(&context).unwrap();
        restored
            .restore_state(&OperatorState::new(&mut backend, "topn", all))
            .unwrap();
        let state = OperatorState::new(&mut backend, "topn", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        let mut fired = |watermark: i64| -> Vec<i64> {
            restored.on_watermark(watermark, &mut ctx).unwrap();
            let batches = ctx.take_batches();
            (batches.iter())
                .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
                .collect()
        };
        assert_eq!(fired(998), Vec::<i64>::new());
        assert_eq!(fired(999), vec![8], "window ending at 1000: key 1's top");
        assert_eq!(fired(1_999), vec![6], "window ending at 2000: key 2's");
    }

    /// A zero TTL means none, as Flink's `table.exec.state.ttl` = 0.
    #[test]
    fn a_zero_state_ttl_keeps_state() {
        let factory = TopNFactory::new(vec!["k".into()], vec![OrderKey::desc("v")], 1, None)
            .unwrap()
            .with_state_ttl(Some(Duration::ZERO));
        assert!(
            !factory.describe().contains("TTL"),
            "{}",
            factory.describe()
        );
    }
}
