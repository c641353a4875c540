//! Changelogs: Flink's row kinds and changelog modes, modelled once for every operator and sink.
//!
//! An append-only stream carries plain rows. An updating stream (the result of a `GROUP BY`
//! without a window, of a regular join, ...) carries one more column, [`ROW_KIND_COLUMN`], last,
//! of type `Int8`, holding each row's [`RowKind`] with Flink's byte values (`+I` 0, `-U` 1,
//! `+U` 2, `-D` 3). The name starts with `$`, which no SQL column can without quotes, so it
//! never collides with a user's column. Sinks render it as Flink does (an `op` field of `+I`,
//! `-U`, ...). Every node's [`ChangelogMode`] is derived with its schema
//! ([`crate::graph::Graph::validate`]).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

/// Name of the row-kind column of an updating stream (always its last column).
pub const ROW_KIND_COLUMN: &str = "$row_kind";

/// The kind of change a row is, as Flink's `RowKind` (same byte values and short strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the previous content of an updated row (retracts it).
    UpdateBefore = 1,
    /// `+U`: the new content of an updated row.
    UpdateAfter = 2,
    /// `-D`: a deleted row (retracts it).
    Delete = 3,
}

impl RowKind {
    /// Flink's short string: `+I`, `-U`, `+U` or `-D`.
    pub fn short_string(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind stored as `byte`; `None` for a byte no kind has.
    pub fn from_byte(byte: i8) -> Option<RowKind> {
        match byte {
            0 => Some(RowKind::Insert),
            1 => Some(RowKind::UpdateBefore),
            2 => Some(RowKind::UpdateAfter),
            3 => Some(RowKind::Delete),
            _ => None,
        }
    }

    /// `+I` and `+U` add a row; `-U` and `-D` retract one.
    pub fn is_accumulate(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// What kinds of rows a stream may carry, as Flink's `ChangelogMode`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChangelogMode {
    /// Only `+I`, and no row-kind column.
    #[default]
    InsertOnly,
    /// `+I`, `+U`, `-D` keyed by `key` (a row replaces the previous one with the same key);
    /// `-U` rows may be present and carry nothing a consumer needs.
    Upsert { key: Vec<String> },
    /// Every kind, `-U` before each `+U` (a retract stream).
    All,
}

impl ChangelogMode {
    pub fn is_insert_only(&self) -> bool {
        *self == ChangelogMode::InsertOnly
    }

    /// For messages: `append-only`, `upsert (k1, k2)` or `changelog`.
    pub fn describe(&self) -> String {
        match self {
            ChangelogMode::InsertOnly => "append-only".into(),
            ChangelogMode::Upsert { key } => format!("upsert ({})", key.join(", ")),
            ChangelogMode::All => "changelog".into(),
        }
    }

    /// The more general of two modes (a union of both streams).
    pub fn union(&self, other: &ChangelogMode) -> ChangelogMode {
        match (self, other) {
            (ChangelogMode::InsertOnly, other) | (other, ChangelogMode::InsertOnly) => {
                other.clone()
            }
            (a, b) if a == b => a.clone(),
            _ => ChangelogMode::All,
        }
    }
}

/// The row-kind field: `$row_kind Int8`, not nullable.
pub fn row_kind_field() -> Field {
    Field::new(ROW_KIND_COLUMN, DataType::Int8, false)
}

/// Whether `schema` is that of an updating stream (its last column is the row kind).
pub fn has_row_kind(schema: &Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == ROW_KIND_COLUMN)
}

/// `schema` with the row-kind column appended (unchanged if it has one).
pub fn with_row_kind(schema: &SchemaRef) -> SchemaRef {
    if has_row_kind(schema) {
        return Arc::clone(schema);
    }
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(row_kind_field()));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `schema` without its row-kind column.
pub fn without_row_kind(schema: &SchemaRef) -> SchemaRef {
    if !has_row_kind(schema) {
        return Arc::clone(schema);
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .take(schema.fields().len() - 1)
        .cloned()
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The first columns of `batch` as `data` (its columns without what follows them: the row
/// kind of a changelog, or an operator's per-row flags). Fails if `batch` has fewer columns
/// or they do not match `data`.
pub fn data_columns(
    batch: &RecordBatch,
    data: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let width = data.fields().len();
    let columns = batch.columns().get(..width).ok_or_else(|| {
        arrow::error::ArrowError::SchemaError(format!(
            "a batch of {} columns has no {width} data columns",
            batch.num_columns()
        ))
    })?;
    RecordBatch::try_new(Arc::clone(data), columns.to_vec())
}

/// The row kinds of `batch`, or `None` for an append-only batch (every row `+I`).
pub fn row_kinds(batch: &RecordBatch) -> Option<&Int8Array> {
    if !has_row_kind(batch.schema_ref()) {
        return None;
    }
    batch
        .columns()
        .last()
        .and_then(|c| c.as_any().downcast_ref::<Int8Array>())
}

/// The kind of row `row` of `kinds` (`+I` where there are no kinds or the byte is unknown).
pub fn kind_at(kinds: Option<&Int8Array>, row: usize) -> RowKind {
    kinds
        .and_then(|k| RowKind::from_byte(k.value(row)))
        .unwrap_or(RowKind::Insert)
}

/// A row-kind column of `kinds`.
pub fn kind_array(kinds: impl IntoIterator<Item = RowKind>) -> ArrayRef {
    Arc::new(Int8Array::from_iter_values(
        kinds.into_iter().map(|k| k as i8),
    ))
}

/// Name of the column Flink shows the row kind in (`+I`, `-U`, `+U`, `-D`).
pub const OP_COLUMN: &str = "op";

/// `batch` as Flink prints a changelog: the row kind as a first column `op` of short strings
/// (`+I`, ...). An append-only batch is returned unchanged.
pub fn with_op_text(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let Some(kinds) = row_kinds(batch) else {
        return Ok(batch.clone());
    };
    let text: arrow::array::StringArray = (0..kinds.len())
        .map(|i| Some(kind_at(Some(kinds), i).short_string()))
        .collect();
    let schema = batch.schema();
    let last = schema.fields().len() - 1;
    let mut fields = vec![Arc::new(Field::new(OP_COLUMN, DataType::Utf8, false))];
    fields.extend(schema.fields().iter().take(last).cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(text)];
    columns.extend(batch.columns().iter().take(last).cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// The rows a changelog leaves: `+I`/`+U` add a row, `-U`/`-D` remove an equal one (Flink's
/// SQL client's `table` result mode). Rows come out sorted (by Arrow's row format).
pub struct Materialized {
    schema: SchemaRef,
    converter: arrow::row::RowConverter,
    rows: std::collections::BTreeMap<Vec<u8>, i64>,
}

impl Materialized {
    /// For batches of `schema` (with or without the row-kind column).
    pub fn new(schema: &SchemaRef) -> Result<Self, arrow::error::ArrowError> {
        let schema = without_row_kind(schema);
        let fields = schema
            .fields()
            .iter()
            .map(|f| arrow::row::SortField::new(f.data_type().clone()))
            .collect();
        Ok(Materialized {
            converter: arrow::row::RowConverter::new(fields)?,
            schema,
            rows: std::collections::BTreeMap::new(),
        })
    }

    /// Applies one batch of changes. A retraction of a row not present is kept as a negative
    /// count (it cancels a later insertion), so the order of changes to one row across
    /// subtasks does not matter.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError> {
        let kinds = row_kinds(batch);
        let width = self.schema.fields().len();
        let rows = self.converter.convert_columns(&batch.columns()[..width])?;
        for (i, row) in rows.iter().enumerate() {
            let delta = if kind_at(kinds, i).is_accumulate() {
                1
            } else {
                -1
            };
            match self.rows.get_mut(row.as_ref()) {
                Some(count) if *count + delta == 0 => {
                    self.rows.remove(row.as_ref());
                }
                Some(count) => *count += delta,
                None => {
                    self.rows.insert(row.as_ref().to_vec(), delta);
                }
            }
        }
        Ok(())
    }

    /// The rows present (each as often as its count), without the row-kind column.
    pub fn rows(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let parser = self.converter.parser();
        let rows: Vec<_> = self
            .rows
            .iter()
            .flat_map(|(row, count)| std::iter::repeat_n(row, (*count).max(0) as usize))
            .map(|row| parser.parse(row))
            .collect();
        let columns = self.converter.convert_rows(rows)?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &arrow::record_batch::RecordBatchOptions::new()
                .with_row_count(Some(self.rows.values().map(|c| (*c).max(0) as usize).sum())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_values_and_short_strings_are_flinks() {
        for (byte, text) in [(0, "+I"), (1, "-U"), (2, "+U"), (3, "-D")] {
            let kind = RowKind::from_byte(byte).unwrap();
            assert_eq!(kind as i8, byte);
            assert_eq!(kind.short_string(), text);
        }
        assert_eq!(RowKind::from_byte(4), None);
    }

    #[test]
    fn a_materialized_changelog_keeps_what_was_not_retracted() {
        let schema = with_row_kind(&Arc::new(Schema::new(vec![Field::new(
            "v",
            DataType::Int64,
            false,
        )])));
        let batch = |values: Vec<i64>, kinds: Vec<RowKind>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(arrow::array::Int64Array::from(values)),
                    kind_array(kinds),
                ],
            )
            .unwrap()
        };
        let mut table = Materialized::new(&schema).unwrap();
        use RowKind::*;
        table
            .apply(&batch(
                vec![1, 2, 2, 1],
                vec![Insert, Insert, Insert, UpdateBefore],
            ))
            .unwrap();
        // A retraction arriving before its insertion cancels it.
        table
            .apply(&batch(vec![3, 3, 2], vec![Delete, Insert, Delete]))
            .unwrap();
        let rows = table.rows().unwrap();
        assert_eq!(rows.num_columns(), 1);
        let values = rows
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(values.values().to_vec(), vec![2]);
    }

    #[test]
    fn union_of_modes_is_the_more_general() {
        let upsert = ChangelogMode::Upsert {
            key: vec!["k".into()],
        };
        assert_eq!(ChangelogMode::InsertOnly.union(&upsert), upsert);
        assert_eq!(upsert.union(&ChangelogMode::All), ChangelogMode::All);
        assert_eq!(
            ChangelogMode::InsertOnly.union(&ChangelogMode::InsertOnly),
            ChangelogMode::InsertOnly
        );
    }
}
