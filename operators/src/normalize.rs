//! Changelog normalization, as Flink's `ChangelogNormalize`: an upsert stream (each `+I`/`+U`
//! replaces the row with the same key, each `-D`/`-U` deletes its key, as `upsert-kafka`
//! reads them) becomes a full changelog, keeping the last row per key.
//!
//! For each row, by its key: a first row is `+I`; a different row than the one kept is `-U`
//! of the kept row then `+U` of the new one; an equal row is dropped (it changes nothing); a
//! deletion of a kept key is `-D` of the kept row (so a tombstone that carries only the key
//! retracts the whole row); a deletion of an unknown key is dropped. The input arrives behind
//! a hash exchange on the key; the kept rows are a state table by key (beyond the memory
//! budget in RocksDB; checkpoints write the keys that changed). With a state TTL
//! (`table.exec.state.ttl`, as Flink's) a key not written for the TTL is forgotten: its next
//! row is a `+I` again.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::ArrayRef;
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use weir_engine::changelog::{
    data_columns, kind_array, kind_at, row_kinds, with_row_kind, without_row_kind, ChangelogMode,
    RowKind,
};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::state::table::{StateTable, TableSpec};
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use crate::error::{OperatorError, Result};
use crate::row_format::decode_rows;
use crate::state_codec::{refuse_format_0, upsert_row, BytesCodec, Upsert};

/// Describes a normalization keyed by `key` (the table's primary key).
#[derive(Debug, Clone)]
pub struct ChangelogNormalizeFactory {
    key: Vec<String>,
    state_ttl: Option<Duration>,
}

impl ChangelogNormalizeFactory {
    /// Keyed by the columns `key` of the input (its primary key).
    pub fn new(key: Vec<String>) -> Self {
        ChangelogNormalizeFactory {
            key,
            state_ttl: None,
        }
    }

    /// Forgets keys not written for `ttl` (none or zero: keep every key for the job's
    /// lifetime).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.state_ttl = ttl.filter(|t| !t.is_zero());
        self
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
        format!(
            "changelog-normalize by [{}]{}",
            self.key.join(", "),
            crate::ttl::describe(self.state_ttl)
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let data = without_row_kind(context.input_schema());
        let fields = data
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let spec = TableSpec {
            name: ROWS_TABLE,
            version: ROWS_FORMAT,
            ttl: self.state_ttl,
        };
        Ok(Box::new(ChangelogNormalize {
            hasher: KeyHasher::new(&data, &self.key, context.max_key_groups)?,
            rows: RowConverter::new(fields)?,
            output: with_row_kind(&data),
            data,
            kept: context.state_table(spec, BytesCodec),
        }))
    }
}

/// The state table of the kept rows, and its format.
const ROWS_TABLE: &str = "normalize-rows";
const ROWS_FORMAT: u16 = 1;
/// The table of the format before state tables (format 0: Arrow snapshots per key group).
const LEGACY_ROWS_TABLE: &str = "rows";

/// One subtask: the last row per key.
pub struct ChangelogNormalize {
    hasher: KeyHasher,
    /// Whole rows in Arrow's row format.
    rows: RowConverter,
    /// The input's columns without the row kind.
    data: SchemaRef,
    output: SchemaRef,
    /// Encoded key -> encoded row.
    kept: StateTable<BytesCodec>,
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
        let state = ctx.state_or_err()?;
        for i in 0..data.num_rows() {
            let key = keys.row(i);
            let group = self.hasher.key_group_of(key.as_ref());
            let row = rows.row(i);
            if kind_at(kinds.as_ref(), i).is_accumulate() {
                match upsert_row(&mut self.kept, state, group, key.as_ref(), row.as_ref())? {
                    Upsert::Inserted => {
                        picks.push((0, i));
                        out_kinds.push(RowKind::Insert);
                    }
                    Upsert::Unchanged => {}
                    Upsert::Replaced(old) => {
                        picks.push((1, retracted.len()));
                        retracted.push(old);
                        out_kinds.push(RowKind::UpdateBefore);
                        picks.push((0, i));
                        out_kinds.push(RowKind::UpdateAfter);
                    }
                }
            } else if let Some(old) = self.kept.take(state, group, key.as_ref())? {
                picks.push((1, retracted.len()));
                retracted.push(old);
                out_kinds.push(RowKind::Delete);
            }
        }
        self.kept.expire(state)?;
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
        self.kept.flush(state)?;
        Ok(())
    }

    /// The kept rows stay in the state backend, read when their keys come. A snapshot of the
    /// format before state tables (format 0) is refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        refuse_format_0(state, LEGACY_ROWS_TABLE, ROWS_TABLE, ROWS_FORMAT)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Int8Type, Schema};
    use weir_engine::changelog::row_kind_field;

    use super::*;

    /// Runs `factory`'s normalization over upserts `(kind, id, value)`, a new subtask
    /// restoring from a snapshot after the first `split` of them (after `pause`), and returns
    /// its output rows.
    fn normalize(
        factory: &ChangelogNormalizeFactory,
        changes: &[(RowKind, i64, Option<&str>)],
        split: usize,
        pause: Duration,
    ) -> Vec<(&'static str, i64, String)> {
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
        let context = SubtaskContext::standalone(vec![schema]);
        let all = context.key_groups;
        let mut backend = weir_engine::state::InMemoryStateBackend::new();
        let mut timers = weir_engine::operator::Timers::default();
        let mut batches = Vec::new();
        let mut operator = factory.create(&context).unwrap();
        for (part, rows) in [
            (0, batch.slice(0, split)),
            (1, batch.slice(split, changes.len() - split)),
        ] {
            if part == 1 {
                std::thread::sleep(pause);
                let state = &mut OperatorState::new(&mut backend, "normalize", all);
                operator.snapshot_state(state).unwrap();
                operator = factory.create(&context).unwrap();
                operator.restore_state(state).unwrap();
            }
            let state = OperatorState::new(&mut backend, "normalize", all);
            let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
            operator.process_batch(rows, &mut ctx).unwrap();
            batches.extend(ctx.take_batches());
        }
        let mut out = Vec::new();
        for batch in batches {
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
        let changes = [
            (Insert, 1, Some("a")),
            (Insert, 1, Some("a")),
            (Insert, 1, Some("b")),
            (Insert, 2, Some("x")),
            (Delete, 1, None),
            (Delete, 3, None),
            (UpdateAfter, 1, Some("c")),
        ];
        let factory = ChangelogNormalizeFactory::new(vec!["id".into()]);
        for split in [0, 3, 5, changes.len()] {
            let out = normalize(&factory, &changes, split, Duration::ZERO);
            assert_eq!(out, expected(), "snapshot after {split}");
        }
    }

    /// Under a state TTL a key not written for it is forgotten: its next row is new again,
    /// and a deletion of it is dropped.
    #[test]
    fn the_state_ttl_forgets_keys() {
        use RowKind::*;
        let factory = ChangelogNormalizeFactory::new(vec!["id".into()])
            .with_state_ttl(Some(Duration::from_millis(30)));
        let changes = [
            (Insert, 1, Some("a")),
            (Insert, 2, Some("x")),
            (Insert, 1, Some("a")),
            (Delete, 2, None),
        ];
        let out = normalize(&factory, &changes, 2, Duration::from_millis(100));
        let expected = [("+I", 1, "a"), ("+I", 2, "x"), ("+I", 1, "a")];
        let expected: Vec<_> = (expected.iter())
            .map(|(k, i, v)| (*k, *i, v.to_string()))
            .collect();
        assert_eq!(out, expected);
    }

    /// The rows [`upserts_become_a_full_changelog`] expects.
    fn expected() -> Vec<(&'static str, i64, String)> {
        let expected = [
            ("+I", 1, "a"),
            ("-U", 1, "a"),
            ("+U", 1, "b"),
            ("+I", 2, "x"),
            ("-D", 1, "b"),
            ("+I", 1, "c"),
        ];
        expected
            .iter()
            .map(|(k, i, v)| (*k, *i, v.to_string()))
            .collect()
    }
}
