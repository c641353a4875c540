//! Changelog normalization, as Flink's `ChangelogNormalize`: an upsert stream (each `+I`/`+U`
//! replaces the row with the same key, each `-D`/`-U` deletes its key, as `upsert-kafka`
//! reads them) becomes a full changelog, keeping the last row per key.
//!
//! For each row, by its key: a first row is `+I`; a different row than the one kept is `-U`
//! of the kept row then `+U` of the new one; an equal row is dropped (it changes nothing); a
//! deletion of a kept key is `-D` of the kept row (so a tombstone that carries only the key
//! retracts the whole row); a deletion of an unknown key is dropped. The input arrives behind
//! a hash exchange on the key; the kept rows are checkpointed per key group.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use weir_engine::changelog::{
    data_columns, kind_array, kind_at, row_kinds, with_row_kind, without_row_kind, ChangelogMode,
    RowKind,
};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use crate::error::{OperatorError, Result};
use crate::row_format::decode_rows;
use crate::state_codec::{read_table, write_table};

/// Describes a normalization keyed by `key` (the table's primary key).
#[derive(Debug, Clone)]
pub struct ChangelogNormalizeFactory {
    key: Vec<String>,
}

impl ChangelogNormalizeFactory {
    /// Keyed by the columns `key` of the input (its primary key).
    pub fn new(key: Vec<String>) -> Self {
        ChangelogNormalizeFactory { key }
    }
}

impl OperatorFactory for ChangelogNormalizeFactory {
    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        let data = without_row_kind(&inputs[0]);
        for key in &self.key {
            if data.index_of(key).is_err() {
                return Err(Box::new(OperatorError::Plan(format!(
                    "primary key column '{key}' is not a column of the input ({})",
                    weir_engine::graph::column_list(&data)
                ))));
            }
        }
        Ok(with_row_kind(&data))
    }

    fn output_changelog(
        &self,
        _inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        Ok(ChangelogMode::All)
    }

    fn describe(&self) -> String {
        format!("changelog-normalize by [{}]", self.key.join(", "))
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let data = without_row_kind(context.input_schema());
        let fields = data
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Box::new(ChangelogNormalize {
            hasher: KeyHasher::new(&data, &self.key, context.max_key_groups)?,
            rows: RowConverter::new(fields)?,
            output: with_row_kind(&data),
            data,
            kept: HashMap::new(),
        }))
    }
}

/// Name of the state table of kept rows.
const ROWS: &str = "rows";

/// One subtask: the last row per key.
pub struct ChangelogNormalize {
    hasher: KeyHasher,
    /// Whole rows in Arrow's row format.
    rows: RowConverter,
    /// The input's columns without the row kind.
    data: SchemaRef,
    output: SchemaRef,
    /// Encoded key -> encoded row.
    kept: HashMap<Vec<u8>, Box<[u8]>>,
}

impl ChangelogNormalize {
    fn process(&mut self, batch: &RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        let kinds = row_kinds(batch).cloned();
        let data = data_columns(batch, &self.data)?;
        let keys = self.hasher.rows(&data)?;
        let rows = self.rows.convert_columns(data.columns())?;
        // Output rows: (0, input row) or (1, index into `retracted`), with their kinds.
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut out_kinds: Vec<RowKind> = Vec::new();
        let mut retracted: Vec<Box<[u8]>> = Vec::new();
        for i in 0..data.num_rows() {
            let key = keys.row(i);
            let row = rows.row(i);
            if kind_at(kinds.as_ref(), i).is_accumulate() {
                match self.kept.get_mut(key.as_ref()) {
                    None => {
                        self.kept
                            .insert(key.as_ref().to_vec(), Box::from(row.as_ref()));
                        picks.push((0, i));
                        out_kinds.push(RowKind::Insert);
                    }
                    Some(previous) if **previous == *row.as_ref() => {}
                    Some(previous) => {
                        let old = std::mem::replace(previous, Box::from(row.as_ref()));
                        picks.push((1, retracted.len()));
                        retracted.push(old);
                        out_kinds.push(RowKind::UpdateBefore);
                        picks.push((0, i));
                        out_kinds.push(RowKind::UpdateAfter);
                    }
                }
            } else if let Some(old) = self.kept.remove(key.as_ref()) {
                picks.push((1, retracted.len()));
                retracted.push(old);
                out_kinds.push(RowKind::Delete);
            }
        }
        if picks.is_empty() {
            return Ok(());
        }
        let old = self.decode(&retracted)?;
        let mut columns: Vec<ArrayRef> = data
            .columns()
            .iter()
            .zip(&old)
            .map(|(new, old)| interleave(&[new.as_ref(), old.as_ref()], &picks))
            .collect::<std::result::Result<_, _>>()?;
        columns.push(kind_array(out_kinds));
        ctx.emit(RecordBatch::try_new(Arc::clone(&self.output), columns)?);
        Ok(())
    }

    /// Encoded rows as the input's columns.
    fn decode(&self, rows: &[Box<[u8]>]) -> Result<Vec<ArrayRef>> {
        decode_rows(&self.rows, rows.iter().map(|r| &**r))
    }
}

impl Operator for ChangelogNormalize {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        Ok(self.process(&batch, ctx)?)
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        let rows: Vec<Box<[u8]>> = self.kept.values().cloned().collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.data), self.decode(&rows)?)?;
        write_table(state, ROWS, &self.hasher, &batch, 0)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        for (_, batch) in read_table(state, ROWS, &self.data)? {
            let keys = self.hasher.rows(&batch)?;
            let rows = self.rows.convert_columns(batch.columns())?;
            for i in 0..batch.num_rows() {
                self.kept.insert(
                    keys.row(i).as_ref().to_vec(),
                    Box::from(rows.row(i).as_ref()),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Int8Type, Schema};
    use weir_engine::changelog::row_kind_field;

    use super::*;

    /// Runs the normalization over upserts `(kind, id, value)` and returns its output rows.
    fn normalize(changes: &[(RowKind, i64, Option<&str>)]) -> Vec<(&'static str, i64, String)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            row_kind_field(),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(changes.iter().map(|c| c.1))),
                Arc::new(StringArray::from_iter(changes.iter().map(|c| c.2))),
                kind_array(changes.iter().map(|c| c.0)),
            ],
        )
        .unwrap();
        let factory = ChangelogNormalizeFactory::new(vec!["id".into()]);
        let context = SubtaskContext::standalone(vec![schema]);
        let mut operator = factory.create(&context).unwrap();
        let mut timers = weir_engine::operator::Timers::default();
        let mut ctx = Context::new(0, None, context.key_groups, &mut timers);
        operator.process_batch(batch, &mut ctx).unwrap();
        let mut out = Vec::new();
        for batch in ctx.take_batches() {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let values = batch.column(1).as_string::<i32>();
            let kinds = batch.column(2).as_primitive::<Int8Type>();
            for i in 0..batch.num_rows() {
                out.push((
                    RowKind::from_byte(kinds.value(i)).unwrap().short_string(),
                    ids.value(i),
                    values.value(i).to_string(),
                ));
            }
        }
        out
    }

    #[test]
    fn upserts_become_a_full_changelog() {
        use RowKind::*;
        let out = normalize(&[
            (Insert, 1, Some("a")),
            (Insert, 1, Some("a")),
            (Insert, 1, Some("b")),
            (Insert, 2, Some("x")),
            (Delete, 1, None),
            (Delete, 3, None),
            (UpdateAfter, 1, Some("c")),
        ]);
        let expected = [
            ("+I", 1, "a"),
            ("-U", 1, "a"),
            ("+U", 1, "b"),
            ("+I", 2, "x"),
            ("-D", 1, "b"),
            ("+I", 1, "c"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, i, v)| (*k, *i, v.to_string()))
            .collect();
        assert_eq!(out, expected);
    }
}
