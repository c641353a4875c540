//! Debezium's JSON envelope read as a changelog, as Flink's `debezium-json` format reads it.
//!
//! Each record is `{"before": row|null, "after": row|null, "op": "c"|"r"|"u"|"d", ...}`
//! (inside `{"schema": ..., "payload": {...}}` with `debezium-json.schema-include`): `c`
//! (create) and `r` (snapshot read) are `+I` of `after`, `u` is `-U` of `before` then `+U` of
//! `after`, `d` is `-D` of `before`. Other fields (`source`, `ts_ms`, ...) are ignored. A
//! record with another `op`, or without the image its `op` needs, is a bad record (an update
//! without `before` gets Flink's hint about Postgres' `REPLICA IDENTITY FULL`).
//!
//! The decoder keeps one row per record, so that sources can attach per-record columns
//! (Kafka metadata) and report bad records by position: the row is the record's last image
//! with its kind in [`ROW_KIND_COLUMN`], and an update's `before` image rides along in
//! [`BEFORE_COLUMN`]. [`expand_updates`] then turns each update into its `-U` and `+U` rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array, StructArray};
use arrow::buffer::NullBuffer;
use arrow::compute::interleave;
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use weir_engine::changelog::{row_kind_field, RowKind, ROW_KIND_COLUMN};

use super::json::JsonDecoder;
use super::LineDecoder;

/// Column holding an update's `before` image until [`expand_updates`] (a struct of the
/// value columns, NULL for other records).
pub const BEFORE_COLUMN: &str = "$before";

/// Decodes Debezium JSON records of a table's value columns.
pub struct DebeziumDecoder {
    envelope: JsonDecoder,
    schema_include: bool,
    /// The value columns, then the row kind and the `before` image.
    output: SchemaRef,
    values: SchemaRef,
}

impl DebeziumDecoder {
    /// For rows of `values`; `schema_include` when records carry Debezium's `schema` next to
    /// their `payload`.
    pub fn new(values: SchemaRef, schema_include: bool) -> Self {
        let image = DataType::Struct(image_fields(&values));
        let change = Fields::from(vec![
            Field::new("before", image.clone(), true),
            Field::new("after", image.clone(), true),
            Field::new("op", DataType::Utf8, true),
        ]);
        let envelope = match schema_include {
            false => Schema::new(change),
            true => Schema::new(vec![Field::new("payload", DataType::Struct(change), true)]),
        };
        let mut fields: Vec<Field> = values.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(row_kind_field());
        fields.push(Field::new(BEFORE_COLUMN, image, true));
        DebeziumDecoder {
            envelope: JsonDecoder::new(Arc::new(envelope)),
            schema_include,
            output: Arc::new(Schema::new(fields)),
            values,
        }
    }
}

/// The value columns as fields of an image struct (all nullable: an absent image has none).
fn image_fields(values: &Schema) -> Fields {
    values
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect()
}

impl LineDecoder for DebeziumDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        let envelope = self.envelope.decode(lines)?;
        let change = match self.schema_include {
            false => envelope.columns().to_vec(),
            true => {
                let payload = envelope.column(0).as_struct();
                if payload.null_count() > 0 {
                    return Err(ArrowError::ParseError(
                        "the record has no 'payload' (debezium-json.schema-include is true)".into(),
                    ));
                }
                payload.columns().to_vec()
            }
        };
        let (before, after) = (change[0].as_struct(), change[1].as_struct());
        let ops = change[2].as_string::<i32>();
        let mut kinds = Vec::with_capacity(ops.len());
        for row in 0..ops.len() {
            let op = ops.is_valid(row).then(|| ops.value(row));
            let kind = match op {
                Some("c" | "r") => RowKind::Insert,
                Some("u") => RowKind::UpdateAfter,
                Some("d") => RowKind::Delete,
                Some(other) => {
                    return Err(ArrowError::ParseError(format!(
                        "unknown Debezium operation '{other}' (expected c, r, u or d)"
                    )))
                }
                None => {
                    return Err(ArrowError::ParseError(
                        "the record has no 'op' (is it in Debezium's envelope?)".into(),
                    ))
                }
            };
            if kind != RowKind::Delete && after.is_null(row) {
                return Err(ArrowError::ParseError(format!(
                    "the 'after' field of a Debezium '{}' record is null",
                    op.unwrap_or_default()
                )));
            }
            if matches!(kind, RowKind::Delete | RowKind::UpdateAfter) && before.is_null(row) {
                return Err(ArrowError::ParseError(format!(
                    "the 'before' field of a Debezium '{}' record is null; with Debezium's Postgres connector, set the table's REPLICA IDENTITY to FULL",
                    op.unwrap_or_default()
                )));
            }
            if kind == RowKind::UpdateAfter {
                // The before image becomes a row of its own: it must fit the columns too.
                let null = self
                    .values
                    .fields()
                    .iter()
                    .enumerate()
                    .find(|(i, f)| !f.is_nullable() && before.column(*i).is_null(row));
                if let Some((_, field)) = null {
                    return Err(ArrowError::ParseError(format!(
                        "the 'before' image has no value for the NOT NULL column '{}'",
                        field.name()
                    )));
                }
            }
            kinds.push(kind);
        }
        let deleted: arrow::array::BooleanArray =
            kinds.iter().map(|k| Some(*k == RowKind::Delete)).collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for (i, _) in self.values.fields().iter().enumerate() {
            columns.push(zip(&deleted, before.column(i), after.column(i))?);
        }
        columns.push(Arc::new(Int8Array::from_iter_values(
            kinds.iter().map(|k| *k as i8),
        )));
        let updates: Vec<bool> = kinds.iter().map(|k| *k == RowKind::UpdateAfter).collect();
        columns.push(Arc::new(StructArray::try_new(
            image_fields(&self.values),
            before.columns().to_vec(),
            Some(NullBuffer::from(updates)),
        )?));
        RecordBatch::try_new(SchemaRef::clone(&self.output), columns)
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.output)
    }
}

/// `batch` (with [`ROW_KIND_COLUMN`] and [`BEFORE_COLUMN`]) with each update as two rows: its
/// `before` image as `-U`, then the row as `+U`; other columns (metadata) repeat. The result
/// has no [`BEFORE_COLUMN`]. A batch without it is returned unchanged.
pub fn expand_updates(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let Ok(at) = schema.index_of(BEFORE_COLUMN) else {
        return Ok(batch.clone());
    };
    let before = batch.column(at).as_struct();
    let kinds_at = schema.index_of(ROW_KIND_COLUMN)?;
    // (0 = the row, 1 = its before image, row index)
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if before.is_valid(row) {
            picks.push((1, row));
        }
        picks.push((0, row));
    }
    let mut fields = Vec::with_capacity(schema.fields().len() - 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() - 1);
    for (i, field) in schema.fields().iter().enumerate() {
        if i == at {
            continue;
        }
        let column = batch.column(i);
        let image = before.column_by_name(field.name()).unwrap_or(column);
        let picked = if i == kinds_at {
            let kinds = column.as_primitive::<arrow::datatypes::Int8Type>();
            Arc::new(Int8Array::from_iter_values(picks.iter().map(
                |&(source, row)| match source {
                    1 => RowKind::UpdateBefore as i8,
                    _ => kinds.value(row),
                },
            ))) as ArrayRef
        } else {
            interleave(&[column.as_ref(), image.as_ref()], &picks)?
        };
        fields.push(Arc::clone(field));
        columns.push(picked);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn values() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn kinds(batch: &RecordBatch) -> Vec<&'static str> {
        let kinds = batch
            .column_by_name(ROW_KIND_COLUMN)
            .unwrap()
            .as_primitive::<arrow::datatypes::Int8Type>();
        kinds
            .values()
            .iter()
            .map(|k| RowKind::from_byte(*k).unwrap().short_string())
            .collect()
    }

    #[test]
    fn changes_become_flink_row_kinds() {
        let mut decoder = DebeziumDecoder::new(values(), false);
        let lines = br#"{"before":null,"after":{"id":1,"name":"a"},"op":"c","ts_ms":1}
{"before":{"id":1,"name":"a"},"after":{"id":1,"name":"b"},"op":"u"}
{"before":{"id":1,"name":"b"},"after":null,"op":"d"}
{"before":null,"after":{"id":2,"name":"z"},"op":"r","source":{"db":"x"}}
"#;
        let batch = expand_updates(&decoder.decode(lines).unwrap()).unwrap();
        assert_eq!(kinds(&batch), ["+I", "-U", "+U", "-D", "+I"]);
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.values().to_vec(), vec![1, 1, 1, 1, 2]);
        let names = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let names: Vec<_> = names.iter().map(|n| n.unwrap()).collect();
        assert_eq!(names, ["a", "a", "b", "b", "z"]);
        assert_eq!(batch.num_columns(), 3, "the before image is gone");
    }

    #[test]
    fn bad_envelopes_are_errors() {
        let mut decoder = DebeziumDecoder::new(values(), false);
        for (line, message) in [
            (
                r#"{"before":null,"after":{"id":1},"op":"x"}"#,
                "unknown Debezium operation 'x'",
            ),
            (r#"{"after":{"id":1}}"#, "no 'op'"),
            (
                r#"{"before":null,"after":{"id":1},"op":"u"}"#,
                "REPLICA IDENTITY",
            ),
            (r#"{"before":null,"after":null,"op":"d"}"#, "'before' field"),
        ] {
            let error = decoder.decode(line.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(message), "{line}: {error}");
        }
    }

    #[test]
    fn schema_include_reads_the_payload() {
        let mut decoder = DebeziumDecoder::new(values(), true);
        let line = br#"{"schema":{"type":"struct"},"payload":{"before":null,"after":{"id":7,"name":"q"},"op":"c"}}"#;
        let batch = expand_updates(&decoder.decode(line).unwrap()).unwrap();
        assert_eq!(kinds(&batch), ["+I"]);
    }
}
