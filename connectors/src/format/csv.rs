//! CSV into Arrow.
//!
//! Decoding has two paths with the same results. Chunks without a quote character, of a
//! schema of scalar columns (integers, floats, booleans, strings, dates, timestamps), are
//! split at delimiters and newlines with one vectorised scan (`memchr2`) and each field is
//! parsed straight into its column's builder; common timestamp text
//! (`yyyy-MM-dd HH:mm:ss[.fff]`) is read without a general date parser. Every other chunk goes
//! through arrow-csv's decoder. Either way, as in Flink's `csv` format, an empty field of a
//! `STRING` column (quoted or not) is the empty string, and a line with the wrong number of
//! fields is an error. Without `csv.null-literal` an empty field of any other type is NULL
//! (Flink fails the job there: see "Differences from Flink" in the README); with it, only
//! that text is NULL, in every column.
//!
//! Options (Flink's names): `csv.field-delimiter` (default `,`), `csv.quote-character`
//! (default `"`), `csv.null-literal` (default: an empty field is NULL), header handling is the
//! source's (`csv.header`: skip the first line of every file).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::csv::ReaderBuilder;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use super::columns::{field_column, FieldColumn};
use super::LineDecoder;

/// CSV dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub null_literal: Option<String>,
    /// The first line of each file is a header (skipped when reading, written when writing).
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            null_literal: None,
            header: false,
        }
    }
}

/// Decodes CSV lines of a fixed schema.
pub struct CsvDecoder {
    schema: SchemaRef,
    options: CsvOptions,
    null_regex: Option<regex::Regex>,
    /// Per column: an empty field is NULL (not a string column, and no null literal).
    empty_is_null: Vec<bool>,
    /// The columns of the fast path; `None` if some column type needs arrow-csv.
    fast: Option<Vec<Box<dyn FieldColumn>>>,
}

impl CsvDecoder {
    pub fn new(schema: SchemaRef, options: CsvOptions) -> Result<Self, ArrowError> {
        let null_regex = options
            .null_literal
            .as_ref()
            .map(|literal| regex::Regex::new(&format!("^{}$", regex::escape(literal))))
            .transpose()
            .map_err(|e| ArrowError::InvalidArgumentError(e.to_string()))?;
        let fast = schema
            .fields()
            .iter()
            .map(|f| field_column(f.data_type()))
            .collect();
        let empty_is_null = schema
            .fields()
            .iter()
            .map(|f| {
                options.null_literal.is_none() && !weir_operators::text::is_string(f.data_type())
            })
            .collect();
        Ok(CsvDecoder {
            schema,
            options,
            null_regex,
            empty_is_null,
            fast,
        })
    }

    /// arrow-csv's decoder: quoted fields and every type.
    fn decode_general(&self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        let rows = super::count_lines(lines).max(1);
        let mut builder = ReaderBuilder::new(SchemaRef::clone(&self.schema))
            .with_header(false)
            .with_delimiter(self.options.delimiter)
            .with_quote(self.options.quote)
            .with_batch_size(rows);
        if let Some(regex) = &self.null_regex {
            builder = builder.with_null_regex(regex.clone());
        }
        let mut decoder = builder.build_decoder();
        super::feed(lines, |bytes| decoder.decode(bytes))?;
        decoder.decode(&[])?;
        let batch = decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(SchemaRef::clone(&self.schema)));
        if self.options.null_literal.is_some() {
            return Ok(batch);
        }
        // arrow-csv reads every empty field as NULL: in string columns it is the empty string.
        let columns = batch
            .columns()
            .iter()
            .map(|column| match column.as_string_opt::<i32>() {
                Some(strings) if strings.null_count() > 0 => {
                    let filled: StringArray =
                        strings.iter().map(|v| Some(v.unwrap_or(""))).collect();
                    Arc::new(filled) as ArrayRef
                }
                _ => ArrayRef::clone(column),
            })
            .collect();
        RecordBatch::try_new(batch.schema(), columns)
    }

    /// The fast path over `lines` (no quote character in them), if the schema has one.
    fn decode_fast(&mut self, lines: &[u8]) -> Option<Result<RecordBatch, ArrowError>> {
        let columns = self.fast.as_mut()?;
        let text = match std::str::from_utf8(lines) {
            Ok(text) => text,
            Err(e) => return Some(Err(ArrowError::CsvError(format!("text is not UTF-8: {e}")))),
        };
        let result = split_fields(
            text,
            self.options.delimiter,
            columns.len(),
            |column, field| {
                let is_null = match &self.options.null_literal {
                    Some(literal) => field == literal,
                    None => field.is_empty() && self.empty_is_null[column],
                };
                if is_null {
                    columns[column].push_null();
                    Ok(())
                } else {
                    columns[column].push(field).map_err(|expected| {
                        format!(
                            "value '{field}' of column '{}' is not {expected}",
                            self.schema.field(column).name()
                        )
                    })
                }
            },
        );
        // Finishing also resets the builders after an error.
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(|c| c.finish()).collect();
        Some(
            result
                .map_err(ArrowError::CsvError)
                .and_then(|()| RecordBatch::try_new(SchemaRef::clone(&self.schema), arrays)),
        )
    }
}

impl LineDecoder for CsvDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        if memchr::memchr(self.options.quote, lines).is_none() {
            if let Some(decoded) = self.decode_fast(lines) {
                return decoded;
            }
        }
        self.decode_general(lines)
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}

/// Calls `field(column, text)` for each field of each line of `text` (lines end in `\n`, the
/// last one may not; a `\r` before `\n` is dropped); fails on a line whose field count is not
/// `columns`, or with `field`'s error.
fn split_fields(
    text: &str,
    delimiter: u8,
    columns: usize,
    mut field: impl FnMut(usize, &str) -> Result<(), String>,
) -> Result<(), String> {
    let bytes = text.as_bytes();
    let (mut column, mut start, mut line) = (0, 0, 1);
    let wrong_count = |line: usize, found: &str| {
        format!("line {line} of the chunk has {found} fields, expected {columns}")
    };
    let mut end_field = |column: usize, start: usize, mut end: usize, line_end: bool| {
        if line_end && end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        field(column, &text[start..end])
    };
    for position in memchr::memchr2_iter(delimiter, b'\n', bytes) {
        let line_end = bytes[position] == b'\n';
        if column >= columns {
            return Err(wrong_count(line, "more than"));
        }
        end_field(column, start, position, line_end)?;
        start = position + 1;
        if line_end {
            if column + 1 != columns {
                return Err(wrong_count(line, &(column + 1).to_string()));
            }
            column = 0;
            line += 1;
        } else {
            column += 1;
        }
    }
    if start < bytes.len() || column > 0 {
        if column + 1 != columns {
            return Err(wrong_count(line, &(column + 1).to_string()));
        }
        end_field(column, start, bytes.len(), true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("small", DataType::Int32, true),
        ]))
    }

    const LINES: &str = "1,ann,1.5,true,2024-02-29,2024-01-01 00:00:00.123,7\n\
        -2,,2e3,FALSE,1969-12-31,1969-12-31T23:59:59.9,\n\
        3,b c,,,,2024-03-01 12:30:45,-8\r\n\
        9223372036854775807,dé,0,true,2000-01-01,2024-01-01T00:00:00Z,0";

    #[test]
    fn fast_path_equals_arrow_csv() {
        let mut decoder = CsvDecoder::new(schema(), CsvOptions::default()).unwrap();
        assert!(decoder.fast.is_some());
        let fast = decoder.decode(LINES.as_bytes()).unwrap();
        let general = decoder.decode_general(LINES.as_bytes()).unwrap();
        assert_eq!(fast, general);
        assert_eq!(fast.num_rows(), 4);
        // A quote anywhere sends the chunk to arrow-csv, which reads it the same way.
        let quoted = LINES.replace("ann", "\"ann\"");
        assert_eq!(decoder.decode(quoted.as_bytes()).unwrap(), general);
    }

    #[test]
    fn empty_strings_are_values_other_empty_fields_null() {
        let mut decoder = CsvDecoder::new(schema(), CsvOptions::default()).unwrap();
        let lines = "1,,,,,,\n2,\"\",1,true,2024-01-01,2024-01-01 00:00:00,3\n";
        // The quote sends this chunk to arrow-csv; without it, the fast path reads it.
        let general = decoder.decode(lines.as_bytes()).unwrap();
        let fast = decoder
            .decode(lines.replace("\"\"", "").as_bytes())
            .unwrap();
        assert_eq!(general, fast);
        let names = general.column(1).as_string::<i32>();
        assert_eq!((names.value(0), names.value(1)), ("", ""));
        assert_eq!(names.null_count(), 0);
        assert_eq!(general.column(2).null_count(), 1, "an empty DOUBLE is NULL");
    }

    #[test]
    fn null_literal() {
        let options = CsvOptions {
            null_literal: Some("N/A".into()),
            ..CsvOptions::default()
        };
        let mut decoder = CsvDecoder::new(schema(), options).unwrap();
        let lines = "1,,N/A,N/A,N/A,N/A,N/A\n";
        let fast = decoder.decode(lines.as_bytes()).unwrap();
        assert_eq!(fast, decoder.decode_general(lines.as_bytes()).unwrap());
        assert_eq!(fast.column(1).null_count(), 0, "an empty string is a value");
        assert_eq!(fast.column(2).null_count(), 1);
    }

    #[test]
    fn errors_name_the_column_and_value() {
        let mut decoder = CsvDecoder::new(schema(), CsvOptions::default()).unwrap();
        let error = decoder.decode(b"1,a,x,true,,,1\n").unwrap_err().to_string();
        assert!(
            error.contains("value 'x' of column 'score' is not a DOUBLE"),
            "{error}"
        );
        let error = decoder.decode(b"1,a\n").unwrap_err().to_string();
        assert!(error.contains("has 2 fields, expected 7"), "{error}");
        let error = decoder
            .decode(b"1,a,1,true,,,1,9\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("more than fields"), "{error}");
        // The decoder is usable after an error.
        assert_eq!(decoder.decode(b"1,a,1,true,,,1\n").unwrap().num_rows(), 1);
    }
}
