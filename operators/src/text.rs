//! Flink's text forms of values: what `CAST(x AS STRING)` gives and what the CSV and JSON
//! writers print. One place, so a cast, a sink and a printed result agree.
//!
//! - `TIMESTAMP(p)` / `TIMESTAMP_LTZ(p)`: `yyyy-MM-dd HH:mm:ss` and, for a cast, the fraction
//!   padded to the precision (`.000` for `TIMESTAMP(3)`); writers drop trailing zeros of the
//!   fraction (`2025-01-01 10:00:00`, `...:00.5`), as Flink's `SQL_TIMESTAMP_FORMAT` does.
//!   Arrow keeps no precision, only a unit: seconds, ms, µs and ns stand for 0, 3, 6 and 9.
//!   `TIMESTAMP_LTZ` values are shown in the session time zone, which is UTC.
//! - `BOOLEAN`: `TRUE` / `FALSE` (Flink 1.15+).
//! - `FLOAT` / `DOUBLE`: Java's `Float.toString` / `Double.toString` (`1.0`, `1.5E10`, `NaN`,
//!   `Infinity`).

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type, TimeUnit};
use arrow::error::ArrowError;

/// A character-string type (`STRING`).
pub fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// How the fraction of a second is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// Padded to the type's precision (`CAST(ts AS STRING)`).
    Padded,
    /// Without trailing zeros, and none when zero (Flink's CSV and JSON writers).
    Trimmed,
}

/// How a timestamp is separated and suffixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampStyle {
    /// Padded (casts) or without trailing zeros (writers).
    pub fraction: Fraction,
    /// `T` between date and time (ISO-8601) instead of a space (SQL).
    pub iso: bool,
    /// `Z` after a `TIMESTAMP_LTZ` value (Flink's writers do; casts do not).
    pub zone_suffix: bool,
}

impl TimestampStyle {
    /// `CAST(ts AS STRING)`.
    pub const CAST: TimestampStyle = TimestampStyle {
        fraction: Fraction::Padded,
        iso: false,
        zone_suffix: false,
    };
    /// Flink's CSV and JSON writers in their default (`SQL`) timestamp standard.
    pub const WRITER_SQL: TimestampStyle = TimestampStyle {
        fraction: Fraction::Trimmed,
        iso: false,
        zone_suffix: true,
    };
    /// Flink's JSON writer with `'json.timestamp-format.standard' = 'ISO-8601'`.
    pub const WRITER_ISO: TimestampStyle = TimestampStyle {
        fraction: Fraction::Trimmed,
        iso: true,
        zone_suffix: true,
    };
}

/// Digits of the fraction of a unit (Flink's precision): 0, 3, 6 or 9.
pub fn unit_digits(unit: TimeUnit) -> usize {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// Writes the timestamp `value` (in `unit` since the epoch) into `out`; `false` if it is out
/// of chrono's range.
pub fn write_timestamp(
    out: &mut String,
    value: i64,
    unit: TimeUnit,
    with_zone: bool,
    style: TimestampStyle,
) -> bool {
    let digits = unit_digits(unit);
    let per_second = 10i64.pow(digits as u32);
    let seconds = value.div_euclid(per_second);
    let fraction = value.rem_euclid(per_second);
    let Some(at) = chrono::DateTime::from_timestamp(seconds, 0) else {
        return false;
    };
    let separator = if style.iso { 'T' } else { ' ' };
    let _ = write!(
        out,
        "{}{separator}{}",
        at.format("%Y-%m-%d"),
        at.format("%H:%M:%S")
    );
    if digits > 0 {
        let mut text = format!("{fraction:0digits$}");
        if style.fraction == Fraction::Trimmed {
            text.truncate(text.trim_end_matches('0').len());
        }
        if !text.is_empty() {
            out.push('.');
            out.push_str(&text);
        }
    }
    if with_zone && style.zone_suffix {
        out.push('Z');
    }
    true
}

/// Java's `Double.toString`: the shortest digits that read back as `value`, plain between
/// 10^-3 and 10^7, `d.dddE±n` outside, always with a fraction digit.
pub fn java_double(value: f64) -> String {
    java_float(value, |plain| match plain {
        true => format!("{value}"),
        false => format!("{value:e}"),
    })
}

/// Java's `Float.toString` (as [`java_double`], with a float's shortest digits).
pub fn java_float32(value: f32) -> String {
    java_float(f64::from(value), |plain| match plain {
        true => format!("{value}"),
        false => format!("{value:e}"),
    })
}

/// Java's form of `value`, from Rust's shortest digits: `digits(true)` plain, `digits(false)`
/// scientific (only the one needed is formatted).
fn java_float(value: f64, digits: impl Fn(bool) -> String) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let magnitude = value.abs();
    if value == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let mut plain = digits(true);
        if !plain.contains('.') {
            plain.push_str(".0");
        }
        plain
    } else {
        let scientific = digits(false);
        let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
        let dot = if mantissa.contains('.') { "" } else { ".0" };
        format!("{mantissa}{dot}E{exponent}")
    }
}

/// `array` as Flink's text (a `STRING` column), for the types whose text differs from Arrow's
/// own cast: timestamps, booleans, floats. Other types: `None` (Arrow's cast is Flink's).
pub fn to_text(array: &dyn Array, style: TimestampStyle) -> Option<Result<ArrayRef, ArrowError>> {
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 8);
    match array.data_type() {
        DataType::Timestamp(unit, zone) => {
            // The raw values (a timestamp array reinterpreted, no copy of the text).
            let values = match arrow::compute::cast(array, &DataType::Int64) {
                Ok(values) => values,
                Err(e) => return Some(Err(e)),
            };
            let mut text = String::new();
            for value in values.as_primitive::<Int64Type>() {
                let Some(v) = value else {
                    builder.append_null();
                    continue;
                };
                text.clear();
                if !write_timestamp(&mut text, v, *unit, zone.is_some(), style) {
                    return Some(Err(ArrowError::CastError(format!(
                        "timestamp {v} ({unit:?} since the epoch) is out of range"
                    ))));
                }
                builder.append_value(&text);
            }
        }
        DataType::Boolean => {
            for value in array.as_boolean() {
                builder.append_option(value.map(|b| if b { "TRUE" } else { "FALSE" }));
            }
        }
        DataType::Float64 => {
            for value in array.as_primitive::<Float64Type>() {
                builder.append_option(value.map(java_double));
            }
        }
        DataType::Float32 => {
            for value in array.as_primitive::<Float32Type>() {
                builder.append_option(value.map(java_float32));
            }
        }
        _ => return None,
    }
    Some(Ok(Arc::new(builder.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Float64Array, StringArray};

    fn text(value: i64, unit: TimeUnit, style: TimestampStyle) -> String {
        let mut out = String::new();
        assert!(write_timestamp(&mut out, value, unit, false, style));
        out
    }

    #[test]
    fn timestamps_as_flink_writes_them() {
        let ms = 1_735_725_600_000; // 2025-01-01 10:00:00
        assert_eq!(
            text(ms, TimeUnit::Millisecond, TimestampStyle::CAST),
            "2025-01-01 10:00:00.000"
        );
        assert_eq!(
            text(ms + 120, TimeUnit::Millisecond, TimestampStyle::CAST),
            "2025-01-01 10:00:00.120"
        );
        assert_eq!(
            text(ms, TimeUnit::Millisecond, TimestampStyle::WRITER_SQL),
            "2025-01-01 10:00:00"
        );
        assert_eq!(
            text(ms + 500, TimeUnit::Millisecond, TimestampStyle::WRITER_ISO),
            "2025-01-01T10:00:00.5"
        );
        assert_eq!(
            text(ms / 1000, TimeUnit::Second, TimestampStyle::CAST),
            "2025-01-01 10:00:00"
        );
        // Before the epoch: the fraction is still positive.
        assert_eq!(
            text(-1, TimeUnit::Millisecond, TimestampStyle::CAST),
            "1969-12-31 23:59:59.999"
        );
        let mut zoned = String::new();
        write_timestamp(
            &mut zoned,
            ms,
            TimeUnit::Millisecond,
            true,
            TimestampStyle::WRITER_SQL,
        );
        assert_eq!(zoned, "2025-01-01 10:00:00Z");
    }

    #[test]
    fn doubles_as_java_prints_them() {
        assert_eq!(java_double(1.5), "1.5");
        assert_eq!(java_double(100.0), "100.0");
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(-0.001), "-0.001");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.25e10), "1.25E10");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(java_float32(0.1), "0.1");
    }

    #[test]
    fn arrays_to_text() {
        let doubles = Float64Array::from(vec![Some(2.0), None]);
        let out = to_text(&doubles, TimestampStyle::CAST).unwrap().unwrap();
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(out.value(0), "2.0");
        assert!(out.is_null(1));
        let booleans = BooleanArray::from(vec![true, false]);
        let out = to_text(&booleans, TimestampStyle::CAST).unwrap().unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "TRUE");
        assert!(to_text(&StringArray::from(vec!["a"]), TimestampStyle::CAST).is_none());
    }
}
