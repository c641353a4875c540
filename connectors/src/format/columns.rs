//! Scalar columns filled from text, shared by the fast paths of the CSV and JSON decoders:
//! integers, floats, dates and booleans parsed as arrow's text parser parses them (BIGINT and
//! `yyyy-MM-dd HH:mm:ss[.fff]` timestamps read directly first), strings copied.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, PrimitiveBuilder, StringBuilder};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{
    ArrowPrimitiveType, ArrowTimestampType, DataType, Date32Type, Float32Type, Float64Type,
    Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};

/// What JSON value a column of this type takes as text: a number, a string or a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Number,
    String,
    Boolean,
}

impl TextKind {
    pub fn of(data_type: &DataType) -> TextKind {
        match data_type {
            DataType::Boolean => TextKind::Boolean,
            t if t.is_numeric() => TextKind::Number,
            _ => TextKind::String,
        }
    }
}

/// A column being filled from text.
pub trait FieldColumn: Send {
    /// Parses and appends `text`; on failure names what was expected ("an Int64").
    fn push(&mut self, text: &str) -> Result<(), &'static str>;
    fn push_null(&mut self);
    /// The column so far; the builder starts over.
    fn finish(&mut self) -> ArrayRef;
}

/// The column for `data_type`, if it is one of these scalars.
pub fn field_column(data_type: &DataType) -> Option<Box<dyn FieldColumn>> {
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
        let digits = |range: std::ops::Range<usize>| decimal(&text[range]);
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

/// The value of a short run of decimal digits (nothing else), if it is one.
fn decimal(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + i64::from(b - b'0'))
    })
}

/// Days since the epoch of `yyyy-MM-dd`, if it is a valid date.
fn parse_date(text: &[u8; 10]) -> Option<i64> {
    if text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| decimal(&text[range]);
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
    use super::*;

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
