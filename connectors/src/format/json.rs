//! JSON lines into Arrow.
//!
//! Nested objects become structs, arrays become lists; TIMESTAMP columns accept Flink's
//! `yyyy-MM-dd HH:mm:ss.SSS` and ISO-8601 text; numbers must fit their declared type. As in
//! Flink's `json` format, a number, boolean, object or array in a `STRING` column is read as
//! its JSON text (`1002`, `true`, `{"a":1}`), and a number written as a string, with spaces
//! around it or not, is read into a numeric column (`" 8 "`).
//!
//! Two paths with the same results: chunks of flat objects whose values are numbers into
//! numeric columns, strings without escapes into string, date and timestamp columns, booleans
//! and nulls (keys in any order, missing keys NULL, unknown keys with such values ignored) are
//! read by a small scanner straight into the columns' builders. At the first thing outside that
//! (an escape, a nested value, a number in quotes, a value the fast parser rejects...) the
//! whole chunk goes through arrow-json's decoder instead, which also produces the errors; a
//! chunk it refuses only for a value of another JSON type than its column's is decoded again
//! after [`flink_values`] rewrote those values the way Flink reads them.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;

use super::columns::{field_column, FieldColumn, TextKind};
use super::LineDecoder;

/// Decodes JSON lines of a fixed schema.
pub struct JsonDecoder {
    schema: SchemaRef,
    /// The fast path's columns, names and kinds; `None` if a column is not a scalar.
    fast: Option<Vec<FastColumn>>,
}

struct FastColumn {
    name: String,
    kind: TextKind,
    builder: Box<dyn FieldColumn>,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef) -> Self {
        let fast = schema
            .fields()
            .iter()
            .map(|f| {
                Some(FastColumn {
                    name: f.name().clone(),
                    kind: TextKind::of(f.data_type()),
                    builder: field_column(f.data_type())?,
                })
            })
            .collect();
        JsonDecoder { schema, fast }
    }

    /// arrow-json's decoder: every shape and type, and the error messages.
    fn decode_general(&self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        self.decode_arrow(lines)
            .or_else(|error| match flink_values(lines, &self.schema) {
                Some(rewritten) => self.decode_arrow(&rewritten).map_err(|_| error),
                None => Err(error),
            })
    }

    fn decode_arrow(&self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        let rows = super::count_lines(lines).max(1);
        let mut decoder = ReaderBuilder::new(SchemaRef::clone(&self.schema))
            .with_batch_size(rows)
            .with_coerce_primitive(true)
            .build_decoder()?;
        super::feed(lines, |bytes| decoder.decode(bytes))?;
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(SchemaRef::clone(&self.schema))))
    }

    /// The fast path, or `None` where the chunk needs the general decoder.
    fn decode_fast(&mut self, text: &str) -> Option<RecordBatch> {
        let columns = self.fast.as_mut()?;
        let complete = text
            .split_terminator('\n')
            .filter(|line| !line.trim().is_empty())
            .try_for_each(|line| read_object(line, columns));
        // Finishing also resets the builders after giving up.
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(|c| c.builder.finish()).collect();
        complete?;
        RecordBatch::try_new(SchemaRef::clone(&self.schema), arrays).ok()
    }
}

impl LineDecoder for JsonDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        if let Ok(text) = std::str::from_utf8(lines) {
            if let Some(batch) = self.decode_fast(text) {
                return Ok(batch);
            }
        }
        self.decode_general(lines)
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}

/// `lines` with the values Flink reads differently from arrow-json rewritten: an object or
/// array in a `STRING` column becomes its JSON text, a string in a numeric column is trimmed.
/// `None` when nothing needed rewriting or a line is not JSON (the original error stands).
fn flink_values(lines: &[u8], schema: &SchemaRef) -> Option<Vec<u8>> {
    let mut changed = false;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(line);
        } else {
            let mut value: serde_json::Value = serde_json::from_slice(line).ok()?;
            if rewrite_object(&mut value, schema.fields()) {
                changed = true;
                out.extend(serde_json::to_vec(&value).ok()?);
            } else {
                // Unchanged lines keep their bytes (numbers are not rounded through f64).
                out.extend_from_slice(line);
            }
        }
        out.push(b'\n');
    }
    changed.then_some(out)
}

/// Rewrites the fields of `value` (an object) for `fields`; true if anything changed.
fn rewrite_object(value: &mut serde_json::Value, fields: &arrow::datatypes::Fields) -> bool {
    use serde_json::Value;
    let Value::Object(object) = value else {
        return false;
    };
    let mut changed = false;
    for field in fields {
        let Some(v) = object.get_mut(field.name()) else {
            continue;
        };
        match (field.data_type(), &*v) {
            (DataType::Utf8 | DataType::LargeUtf8, Value::Object(_) | Value::Array(_)) => {
                *v = Value::String(v.to_string());
                changed = true;
            }
            (t, Value::String(s)) if t.is_numeric() && s.trim() != s => {
                *v = Value::String(s.trim().to_string());
                changed = true;
            }
            (DataType::Struct(inner), Value::Object(_)) => changed |= rewrite_object(v, inner),
            _ => {}
        }
    }
    changed
}

/// A JSON scalar as the fast path sees it.
enum Scalar<'a> {
    Null,
    Number(&'a str),
    String(&'a str),
    Boolean(&'a str),
}

/// Reads one flat object into one row of `columns`; `None` if it is not one the fast path
/// reads (nothing is appended to any column then... except what the caller discards).
fn read_object(line: &str, columns: &mut [FastColumn]) -> Option<()> {
    let mut scanner = Scanner { text: line, at: 0 };
    scanner.expect(b'{')?;
    // Which columns got a value; keys usually come in column order.
    let mut filled = 0u64;
    let mut expected_column = 0;
    if columns.len() > 64 {
        return None;
    }
    if scanner.peek()? == b'}' {
        scanner.at += 1;
    } else {
        loop {
            let key = scanner.string()?;
            scanner.expect(b':')?;
            let value = scanner.scalar()?;
            let column = if columns.get(expected_column).is_some_and(|c| c.name == key) {
                Some(expected_column)
            } else {
                columns.iter().position(|c| c.name == key)
            };
            if let Some(column) = column {
                if filled & (1 << column) != 0 {
                    return None;
                }
                filled |= 1 << column;
                expected_column = column + 1;
                let target = &mut columns[column];
                match (value, target.kind) {
                    (Scalar::Null, _) => target.builder.push_null(),
                    (Scalar::Number(text), TextKind::Number)
                    | (Scalar::String(text), TextKind::String)
                    | (Scalar::Boolean(text), TextKind::Boolean) => {
                        target.builder.push(text).ok()?
                    }
                    _ => return None,
                }
            }
            match scanner.next_byte()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    if !scanner.rest().trim().is_empty() {
        return None;
    }
    for (i, column) in columns.iter_mut().enumerate() {
        if filled & (1 << i) == 0 {
            column.builder.push_null();
        }
    }
    Some(())
}

/// A cursor over one line.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    /// The next byte that is not JSON whitespace.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next_byte()? == byte).then_some(())
    }

    /// A string without escapes, without its quotes.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        let end = start + memchr::memchr2(b'"', b'\\', &bytes[start..])?;
        if bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(&self.text[start..end])
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        let first = self.peek()?;
        if first == b'"' {
            return self.string().map(Scalar::String);
        }
        let start = self.at;
        let bytes = self.text.as_bytes();
        let end = bytes[start..]
            .iter()
            .position(|b| matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n'))
            .map_or(bytes.len(), |n| start + n);
        self.at = end;
        let token = &self.text[start..end];
        match first {
            b'-' | b'0'..=b'9' => Some(Scalar::Number(token)),
            b't' if token == "true" => Some(Scalar::Boolean(token)),
            b'f' if token == "false" => Some(Scalar::Boolean(token)),
            b'n' if token == "null" => Some(Scalar::Null),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    #[test]
    fn values_of_other_json_types_are_read_as_flink_reads_them() {
        let lines = concat!(
            r#"{"id": "6", "name": 1002, "score": " 8 ", "ok": true}"#,
            "\n",
            r#"{"id": 2, "name": {"a":1,"b":[true,null]}, "score": 1}"#,
            "\n",
            r#"{"id": 3, "name": true}"#,
            "\n",
            r#"{"id": 4, "name": 12.5, "score": null}"#,
            "\n",
        );
        let mut decoder = JsonDecoder::new(schema());
        let batch = decoder.decode(lines.as_bytes()).unwrap();
        let names = batch.column(1).as_string::<i32>();
        let names: Vec<&str> = names.iter().map(|n| n.unwrap_or("NULL")).collect();
        assert_eq!(
            names,
            ["1002", r#"{"a":1,"b":[true,null]}"#, "true", "12.5"]
        );
        let ids = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.value(0), 6);
        let scores = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!((scores.value(0), scores.value(1)), (8.0, 1.0));
        // Not a number at all is still an error.
        assert!(decoder.decode(br#"{"id": "x"}"#).is_err());
    }

    #[test]
    fn fast_path_equals_arrow_json() {
        let lines = concat!(
            r#"{"id": 1, "name": "ann", "score": 1.5, "ok": true, "at": "2024-01-01 00:00:00.123"}"#,
            "\n",
            r#"{"at":"2024-01-01T00:00:01","ok":false,"score":-2e3,"name":"dé","id":-2}"#,
            "\n\n",
            r#"{"id": 3, "unknown": 5, "name": null}"#,
            "\n",
            r#"  { }  "#,
            "\n",
        );
        let mut decoder = JsonDecoder::new(schema());
        let fast = decoder
            .decode_fast(lines)
            .expect("the fast path reads these");
        assert_eq!(fast, decoder.decode_general(lines.as_bytes()).unwrap());
        assert_eq!(fast.num_rows(), 4);
    }

    #[test]
    fn anything_else_goes_to_arrow_json() {
        let mut decoder = JsonDecoder::new(schema());
        for line in [
            r#"{"id": 1, "name": "a\"b"}"#,
            r#"{"id": "7"}"#,
            r#"{"id": 1, "nested": {"a": 1}}"#,
            r#"{"id": 1, "at": 1700000000000}"#,
            r#"{"id": 1, "id": 2}"#,
            r#"{"id": 1.0}"#,
        ] {
            assert!(decoder.decode_fast(line).is_none(), "{line}");
            let general = decoder.decode_general(line.as_bytes());
            assert_eq!(decoder.decode(line.as_bytes()).ok(), general.ok(), "{line}");
        }
        // The builders are clean after giving up.
        let good = r#"{"id": 5}"#;
        assert_eq!(decoder.decode_fast(good).unwrap().num_rows(), 1);
        let error = decoder.decode(br#"{"id": "x"}"#).unwrap_err().to_string();
        assert!(error.contains("x"), "{error}");
    }
}
