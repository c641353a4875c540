//! CSV into Arrow.
//!
//! Decoding has two paths with the same results. Chunks without a quote character, of a
//! schema of scalar columns (integers, floats, booleans, strings, dates, timestamps), are
//! split at delimiters and newlines with one vectorised scan (`memchr2`) and each field is
//! parsed straight into its column's builder; common timestamp text
//! (`yyyy-MM-dd HH:mm:ss[.fff]`) is read without a general date parser. Every other chunk goes
//! through arrow-csv's decoder. Either way an empty field is NULL (unless `csv.null-literal`
//! names the NULL text) and a line with the wrong number of fields is an error.
//!
//! Options (Flink's names): `csv.field-delimiter` (default `,`), `csv.quote-character`
//! (default `"`), `csv.null-literal` (default: an empty field is NULL), header handling is the
//! source's (`csv.header`: skip the first line of every file).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, PrimitiveBuilder, RecordBatch, StringBuilder};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::csv::ReaderBuilder;
use arrow::datatypes::{
    ArrowPrimitiveType, ArrowTimestampType, DataType, Date32Type, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow::error::ArrowError;

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
        Ok(CsvDecoder {
            schema,
            options,
            null_regex,
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
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(SchemaRef::clone(&self.schema))))
    }

    /// The fast path over `text` (no quote character in it).
    fn decode_fast(&mut self, text: &str) -> Result<RecordBatch, ArrowError> {
        let columns = self.fast.as_mut().expect("checked by the caller");
        let result = split_fields(
            text,
            self.options.delimiter,
            columns.len(),
            |column, field| {
                let is_null = match &self.options.null_literal {
                    Some(literal) => field == literal,
                    None => field.is_empty(),
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
        result.map_err(ArrowError::CsvError)?;
        RecordBatch::try_new(SchemaRef::clone(&self.schema), arrays)
    }
}

impl LineDecoder for CsvDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        if self.fast.is_some() && memchr::memchr(self.options.quote, lines).is_none() {
            let text = std::str::from_utf8(lines)
                .map_err(|e| ArrowError::CsvError(format!("text is not UTF-8: {e}")))?;
            return self.decode_fast(text);
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

/// One column of the fast path.
trait FieldColumn: Send {
    /// Parses and appends `text`; on failure names what was expected ("an Int64").
    fn push(&mut self, text: &str) -> Result<(), &'static str>;
    fn push_null(&mut self);
    /// The column so far; the builder starts over.
    fn finish(&mut self) -> ArrayRef;
}

/// The fast-path column for `data_type`, if it has one.
fn field_column(data_type: &DataType) -> Option<Box<dyn FieldColumn>> {
    fn parsed<T: ArrowPrimitiveType + Parser>(
        expected: &'static str,
    ) -> Option<Box<dyn FieldColumn>> {
        Some(Box::new(Parsed::<T> {
            builder: PrimitiveBuilder::new(),
            expected,
        }))
    }
    match data_type {
        DataType::Int8 => parsed::<Int8Type>("a TINYINT"),
        DataType::Int16 => parsed::<Int16Type>("a SMALLINT"),
        DataType::Int32 => parsed::<Int32Type>("an INT"),
        DataType::Int64 => Some(Box::new(PrimitiveBuilder::<Int64Type>::new())),
        DataType::UInt8 => parsed::<UInt8Type>("a UInt8"),
        DataType::UInt16 => parsed::<UInt16Type>("a UInt16"),
        DataType::UInt32 => parsed::<UInt32Type>("a UInt32"),
        DataType::UInt64 => parsed::<UInt64Type>("a UInt64"),
        DataType::Float32 => parsed::<Float32Type>("a FLOAT"),
        DataType::Float64 => parsed::<Float64Type>("a DOUBLE"),
        DataType::Date32 => parsed::<Date32Type>("a DATE"),
        DataType::Timestamp(unit, None) => Some(match unit {
            TimeUnit::Second => Box::new(Timestamp::<TimestampSecondType>::default()),
            TimeUnit::Millisecond => Box::new(Timestamp::<TimestampMillisecondType>::default()),
            TimeUnit::Microsecond => Box::new(Timestamp::<TimestampMicrosecondType>::default()),
            TimeUnit::Nanosecond => Box::new(Timestamp::<TimestampNanosecondType>::default()),
        }),
        DataType::Boolean => Some(Box::new(BooleanBuilder::new())),
        DataType::Utf8 => Some(Box::new(StringBuilder::new())),
        _ => None,
    }
}

/// The column of `builder`, which starts over with room for as many rows.
fn finish_primitive<T: ArrowPrimitiveType>(builder: &mut PrimitiveBuilder<T>) -> ArrayRef {
    let array = builder.finish();
    *builder = PrimitiveBuilder::with_capacity(array.len());
    Arc::new(array)
}

/// An optional sign and 1 to 18 decimal digits (which cannot overflow); `None` otherwise.
fn parse_short_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value = 0i64;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + i64::from(digit);
    }
    Some(if negative { -value } else { value })
}

/// A primitive column parsed by arrow's text parser (as arrow-csv parses it).
struct Parsed<T: ArrowPrimitiveType> {
    builder: PrimitiveBuilder<T>,
    expected: &'static str,
}

impl<T: ArrowPrimitiveType + Parser> FieldColumn for Parsed<T> {
    fn push(&mut self, text: &str) -> Result<(), &'static str> {
        let value = T::parse(text).ok_or(self.expected)?;
        self.builder.append_value(value);
        Ok(())
    }

    fn push_null(&mut self) {
        self.builder.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        finish_primitive(&mut self.builder)
    }
}

/// A timestamp column without time zone: `yyyy-MM-dd[ T]HH:mm:ss[.f...]` read directly,
/// other text by arrow's timestamp parser.
struct Timestamp<T: ArrowTimestampType> {
    builder: PrimitiveBuilder<T>,
    parser: SqlTimestampParser,
}

impl<T: ArrowTimestampType> Default for Timestamp<T> {
    fn default() -> Self {
        Timestamp {
            builder: PrimitiveBuilder::new(),
            parser: SqlTimestampParser::default(),
        }
    }
}

impl<T: ArrowTimestampType + Parser<Native = i64>> FieldColumn for Timestamp<T> {
    fn push(&mut self, text: &str) -> Result<(), &'static str> {
        let value = match self.parser.parse_nanos(text.as_bytes()) {
            Some(nanos) => match T::UNIT {
                TimeUnit::Second => nanos.div_euclid(1_000_000_000),
                TimeUnit::Millisecond => nanos.div_euclid(1_000_000),
                TimeUnit::Microsecond => nanos.div_euclid(1_000),
                TimeUnit::Nanosecond => nanos,
            },
            None => T::parse(text).ok_or("a TIMESTAMP")?,
        };
        self.builder.append_value(value);
        Ok(())
    }

    fn push_null(&mut self) {
        self.builder.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        finish_primitive(&mut self.builder)
    }
}

/// BIGINT: short decimal numbers read directly, others by arrow's parser.
impl FieldColumn for PrimitiveBuilder<Int64Type> {
    fn push(&mut self, text: &str) -> Result<(), &'static str> {
        let value = parse_short_i64(text.as_bytes())
            .or_else(|| Int64Type::parse(text))
            .ok_or("a BIGINT")?;
        self.append_value(value);
        Ok(())
    }

    fn push_null(&mut self) {
        self.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        finish_primitive(self)
    }
}

impl FieldColumn for BooleanBuilder {
    fn push(&mut self, text: &str) -> Result<(), &'static str> {
        let value = if text.eq_ignore_ascii_case("true") {
            true
        } else if text.eq_ignore_ascii_case("false") {
            false
        } else {
            return Err("a BOOLEAN (true or false)");
        };
        self.append_value(value);
        Ok(())
    }

    fn push_null(&mut self) {
        self.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        let array = BooleanBuilder::finish(self);
        *self = BooleanBuilder::with_capacity(array.len());
        Arc::new(array)
    }
}

impl FieldColumn for StringBuilder {
    fn push(&mut self, text: &str) -> Result<(), &'static str> {
        self.append_value(text);
        Ok(())
    }

    fn push_null(&mut self) {
        self.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        let array = StringBuilder::finish(self);
        *self = StringBuilder::with_capacity(array.len(), array.value_data().len());
        Arc::new(array)
    }
}

/// Reads `yyyy-MM-dd[ T]HH:mm:ss[.f{1,9}]` (UTC) to nanoseconds since the epoch, remembering
/// the last date (consecutive rows mostly share it).
#[derive(Debug, Default)]
pub struct SqlTimestampParser {
    last_date: Option<([u8; 10], i64)>,
}

impl SqlTimestampParser {
    /// The timestamp, or `None` for any other text (which the general parser then reads or
    /// rejects).
    pub fn parse_nanos(&mut self, text: &[u8]) -> Option<i64> {
        if text.len() < 19
            || !matches!(text[10], b' ' | b'T')
            || text[13] != b':'
            || text[16] != b':'
        {
            return None;
        }
        let digits = |range: std::ops::Range<usize>| -> Option<i64> {
            text[range].iter().try_fold(0i64, |value, &b| {
                b.is_ascii_digit().then(|| value * 10 + i64::from(b - b'0'))
            })
        };
        let date: [u8; 10] = text[..10].try_into().ok()?;
        let days = match self.last_date {
            Some((last, days)) if last == date => days,
            _ => {
                let days = parse_date(&date)?;
                self.last_date = Some((date, days));
                days
            }
        };
        let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        let fraction = match &text[19..] {
            [] => 0,
            [b'.', rest @ ..] if (1..=9).contains(&rest.len()) => {
                digits(20..text.len())? * 10i64.pow(9 - rest.len() as u32)
            }
            _ => return None,
        };
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
        Some(seconds * 1_000_000_000 + fraction)
    }
}

/// Days since the epoch of `yyyy-MM-dd`, if it is a valid date.
fn parse_date(text: &[u8; 10]) -> Option<i64> {
    if text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        text[range].iter().try_fold(0i64, |value, &b| {
            b.is_ascii_digit().then(|| value * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&day)
        .then(|| days_from_civil(year, month, day))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Field, Schema};

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

    #[test]
    fn sql_timestamps() {
        let mut parser = SqlTimestampParser::default();
        let mut parse = |s: &str| parser.parse_nanos(s.as_bytes());
        assert_eq!(parse("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse("1970-01-01 00:00:01.5"), Some(1_500_000_000));
        assert_eq!(parse("1969-12-31 23:59:59.999"), Some(-1_000_000));
        assert_eq!(
            parse("2024-01-01T00:00:00.000"),
            Some(1_704_067_200_000_000_000)
        );
        assert_eq!(parse("2024-02-30 00:00:00"), None);
        assert_eq!(parse("2023-02-29 00:00:00"), None);
        assert_eq!(
            parse("2024-01-01 00:00:00+01:00"),
            None,
            "left to the general parser"
        );
        assert_eq!(parse("2024-01-01 24:00:00"), None);
        // Every day for 30 years agrees with arrow's parser.
        for day in (-5_000..6_000).step_by(7) {
            let seconds = day * 86_400 + 3_723;
            let text = arrow::array::TimestampSecondArray::from(vec![seconds]);
            let formatted = arrow::util::display::array_value_to_string(&text, 0).unwrap();
            assert_eq!(
                parse(&formatted),
                Some(seconds * 1_000_000_000),
                "{formatted}"
            );
        }
    }
}
