//! Record formats: JSON lines, CSV, raw lines (and Parquet, which is file-level).
//!
//! Line formats decode a chunk of complete lines straight into Arrow builders (arrow-json's
//! and arrow-csv's vectorised decoders); there is no per-row intermediate value. When a chunk
//! fails to decode, and only then, it is decoded again line by line to find the bad records,
//! which the source's [`BadRecordPolicy`] then handles; the good lines of the chunk are kept.
//!
//! Encoders write batches as JSON lines or CSV with the text Flink's writers use
//! ([`writer_text`]): timestamps as `yyyy-MM-dd HH:mm:ss[.fff]` without trailing zeros of the
//! fraction and with `Z` after a `TIMESTAMP_LTZ`; in CSV, floats as Java prints them.

pub mod bad_records;
pub mod columns;
pub mod csv;
pub mod debezium;
pub mod json;
pub mod raw;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

pub use bad_records::{BadRecord, BadRecordPolicy};

/// Flink's SQL timestamp text format with milliseconds (what Arrow's writers use for
/// timestamps [`writer_text`] has not already turned into text).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// `batch` with the columns whose written text differs between Flink's writers and Arrow's
/// turned into Flink's text (`STRING` columns): timestamps always, floats when `floats`
/// (CSV; JSON keeps numbers as numbers).
pub fn writer_text(batch: &RecordBatch, floats: bool) -> Result<RecordBatch, ArrowError> {
    use arrow::datatypes::{DataType, Field, Schema};
    use weir_operators::text::{to_text, TimestampStyle};
    let converts = |t: &DataType| {
        matches!(t, DataType::Timestamp(_, _))
            || (floats && matches!(t, DataType::Float32 | DataType::Float64))
    };
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| converts(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match converts(field.data_type()) {
            true => {
                let text = to_text(column.as_ref(), TimestampStyle::WRITER_SQL)
                    .unwrap_or_else(|| arrow::compute::cast(column, &DataType::Utf8))?;
                fields.push(Field::new(
                    field.name(),
                    DataType::Utf8,
                    field.is_nullable(),
                ));
                columns.push(text);
            }
            false => {
                fields.push(field.as_ref().clone());
                columns.push(std::sync::Arc::clone(column));
            }
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}

/// Decodes chunks of complete lines (each ending in `\n`, or the last one without).
pub trait LineDecoder: Send {
    /// Decodes every line of `lines` into one batch, or fails on the first bad one.
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError>;

    /// The schema of the batches.
    fn schema(&self) -> SchemaRef;
}

/// A decoded chunk: the good rows, and the records that could not be decoded.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub bad: Vec<BadRecord>,
    /// Indices (in the chunk) of the bad records, ascending.
    pub bad_indices: Vec<usize>,
}

/// Decodes `chunk`, one record per line; `position(i)` names record `i` (e.g. `file:line`).
/// Bad records are returned with their position instead of failing the chunk.
pub fn decode_chunk(
    decoder: &mut dyn LineDecoder,
    chunk: &[u8],
    position: &dyn Fn(usize) -> String,
) -> Result<Decoded, ArrowError> {
    match decoder.decode(chunk) {
        Ok(batch) => Ok(Decoded {
            batch,
            bad: Vec::new(),
            bad_indices: Vec::new(),
        }),
        Err(_) => {
            let mut good = Vec::with_capacity(chunk.len());
            let mut bad = Vec::new();
            let mut bad_indices = Vec::new();
            for (i, line) in chunk.split_inclusive(|b| *b == b'\n').enumerate() {
                if let Err(error) = decoder.decode(line) {
                    bad.push(BadRecord {
                        position: position(i),
                        error: error.to_string(),
                        raw: line.strip_suffix(b"\n").unwrap_or(line).to_vec(),
                    });
                    bad_indices.push(i);
                } else {
                    good.extend_from_slice(line);
                }
            }
            let batch = if good.is_empty() {
                RecordBatch::new_empty(decoder.schema())
            } else {
                decoder.decode(&good)?
            };
            Ok(Decoded {
                batch,
                bad,
                bad_indices,
            })
        }
    }
}

/// Feeds all of `bytes` to an Arrow streaming decoder's `decode`, which may take less than
/// offered per call.
pub(crate) fn feed(
    bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let read = decode(rest)?;
        if read == 0 {
            break;
        }
        rest = &rest[read..];
    }
    Ok(())
}

/// Number of lines in `chunk` (a last line without `\n` counts).
pub fn count_lines(chunk: &[u8]) -> usize {
    chunk.split_inclusive(|b| *b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Float64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn writers_use_flinks_text() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new(
                "ltz",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("x", DataType::Float64, true),
        ]));
        let at = 1_735_725_600_000; // 2025-01-01 10:00:00
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(at),
                    Some(at + 500),
                    None,
                ])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(at), None, None])
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![Some(1e10), Some(2.0), None])),
            ],
        )
        .unwrap();
        let csv = writer_text(&batch, true).unwrap();
        let text = |i: usize, row: usize| csv.column(i).as_string::<i32>().value(row).to_string();
        assert_eq!(text(0, 0), "2025-01-01 10:00:00");
        assert_eq!(text(0, 1), "2025-01-01 10:00:00.5");
        assert!(csv.column(0).is_null(2));
        assert_eq!(text(1, 0), "2025-01-01 10:00:00Z");
        assert_eq!(
            (text(2, 0), text(2, 1)),
            ("1.0E10".to_string(), "2.0".to_string())
        );
        let json = writer_text(&batch, false).unwrap();
        assert_eq!(
            json.column(2).data_type(),
            &DataType::Float64,
            "JSON numbers stay numbers"
        );
    }
}
