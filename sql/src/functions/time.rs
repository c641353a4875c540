//! Flink's temporal conversion functions. Text that does not parse gives NULL, as in Flink
//! (a bad value must not fail a job); the session time zone is UTC.
//!
//! | function | result |
//! |---|---|
//! | `TO_TIMESTAMP(s [, format])` | `TIMESTAMP(3)`; `s` by default `yyyy-MM-dd[ HH:mm[:ss[.f]]]` (a date alone is midnight) |
//! | `TO_TIMESTAMP_LTZ(n [, precision])` | `TIMESTAMP_LTZ(3)`: `n` seconds (precision 0) or milliseconds (3, the default) since the epoch |
//! | `TO_TIMESTAMP_LTZ(s [, format [, zone]])` | `TIMESTAMP_LTZ(3)`: `s` read as `TO_TIMESTAMP` does, in `zone` (UTC only); text that does not parse fails the job, as in Flink |
//! | `TO_DATE(s [, format])` | `DATE`; `s` by default `yyyy-MM-dd` |
//! | `FROM_UNIXTIME(n [, format])` | `STRING`: `n` seconds since the epoch, by default `yyyy-MM-dd HH:mm:ss` |
//! | `UNIX_TIMESTAMP()` | `BIGINT`: the wall clock's seconds since the epoch, read per row |
//! | `UNIX_TIMESTAMP(s [, format])` | `BIGINT`: seconds since the epoch of `s` (default format `yyyy-MM-dd HH:mm:ss`); text that does not parse gives `-9223372036854775808` (Flink's `Long.MIN_VALUE`) |
//! | `DATE_FORMAT(ts, format)` | `STRING`: `ts` (a timestamp, or text read as `TO_TIMESTAMP` does) in a Java format |
//!
//! Formats are Java `SimpleDateFormat` patterns, as in Flink ([`java_to_chrono`]).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion_common::{exec_err, Result as DfResult};
use datafusion_expr::Volatility;

use super::{all_strings, is_text_or_null, FlinkFunction};

/// Flink's default timestamp text.
const DEFAULT_TIMESTAMP: &str = "yyyy-MM-dd HH:mm:ss";

pub(crate) static FUNCTIONS: &[&FlinkFunction] = &[
    &TO_TIMESTAMP,
    &TO_TIMESTAMP_LTZ,
    &TO_DATE,
    &FROM_UNIXTIME,
    &UNIX_TIMESTAMP,
    &DATE_FORMAT,
];

/// Converts a Java `SimpleDateFormat` pattern (Flink's) into a chrono format.
pub fn java_to_chrono(pattern: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // `''` is a quote; otherwise quoted literal text up to the next quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                match chars[i] {
                    '%' => out.push_str("%%"),
                    other => out.push(other),
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let mapped = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('D', _) => "%j",
            ('Z', _) => "%z",
            ('%', _) => "%%",
            _ => {
                out.extend(std::iter::repeat_n(c, run));
                i += run;
                continue;
            }
        };
        out.push_str(mapped);
        i += run;
    }
    out
}

/// Parses Flink's default timestamp text `yyyy-M-d[ H:m[:s[.fffffffff]]]` (surrounding
/// whitespace ignored); `None` for anything else (a `T` separator included, as Flink).
pub fn parse_sql_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let (date, time) = match text.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim_start())),
        None => (text, None),
    };
    let number = |s: &str, max_len: usize| -> Option<u32> {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let year = number(parts.next()?, 4)?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    if parts.next().is_some() {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let Some(time) = time else {
        return Some(date.and_time(NaiveTime::MIN));
    };
    let (clock, fraction) = match time.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (time, None),
    };
    let mut parts = clock.split(':');
    let hour = number(parts.next()?, 2)?;
    let minute = number(parts.next()?, 2)?;
    let second = match parts.next() {
        Some(s) => number(s, 2)?,
        None if fraction.is_none() => 0,
        None => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    let nanos = match fraction {
        Some(f) => number(f, 9)? * 10u32.pow(9 - f.len() as u32),
        None => 0,
    };
    date.and_hms_nano_opt(hour, minute, second, nanos)
}

/// Java patterns converted to chrono formats, the last one remembered: a column of formats
/// is nearly always one literal, so a batch converts it once, not once per row.
#[derive(Default)]
struct Patterns {
    java: String,
    chrono: String,
}

impl Patterns {
    /// The chrono format of the Java `pattern`.
    fn chrono(&mut self, pattern: &str) -> &str {
        if self.java != pattern {
            self.java = pattern.to_string();
            self.chrono = java_to_chrono(pattern);
        }
        &self.chrono
    }

    /// `text` in the Java `format` (or Flink's default when `None`); a date-only format gives
    /// midnight.
    fn parse(&mut self, text: &str, format: Option<&str>) -> Option<NaiveDateTime> {
        let Some(format) = format else {
            return parse_sql_timestamp(text);
        };
        let chrono_format = self.chrono(format);
        NaiveDateTime::parse_from_str(text, chrono_format)
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(text, chrono_format)
                    .ok()
                    .map(|d| d.and_time(NaiveTime::MIN))
            })
    }

    /// `at` (UTC) in the Java `format`; `None` if the format cannot print it (never a panic).
    fn format(&mut self, at: NaiveDateTime, format: &str) -> Option<String> {
        use std::fmt::Write as _;
        let mut text = String::new();
        write!(text, "{}", at.and_utc().format(self.chrono(format))).ok()?;
        Some(text)
    }
}

/// The value of row `row` of a string array (coerced arguments are `Utf8`), `None` if NULL.
fn text(array: &ArrayRef, row: usize) -> Option<&str> {
    let strings = array.as_string_opt::<i32>()?;
    (!strings.is_null(row)).then(|| strings.value(row))
}

/// Row `row` of an optional argument; `Err(())` when the argument is given but NULL.
fn optional_text(args: &[ArrayRef], i: usize, row: usize) -> Result<Option<&str>, ()> {
    match args.get(i) {
        None => Ok(None),
        Some(a) => text(a, row).map(Some).ok_or(()),
    }
}

fn millis(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_millis()
}

/// Timestamps (ms) read from text (argument 0) in an optional Java format (argument 1), in
/// `zone`; NULL in gives NULL. Text that does not parse is NULL, or fails the job naming
/// `strict` (the function) when given.
fn timestamps_from_text(
    args: &[ArrayRef],
    rows: usize,
    zone: Option<&str>,
    strict: Option<&str>,
) -> DfResult<ArrayRef> {
    let mut patterns = Patterns::default();
    let mut out = TimestampMillisecondBuilder::with_capacity(rows);
    for row in 0..rows {
        let (Some(s), Ok(format)) = (text(&args[0], row), optional_text(args, 1, row)) else {
            out.append_null();
            continue;
        };
        match (patterns.parse(s, format), strict) {
            (Some(at), _) => out.append_value(millis(at)),
            (None, None) => out.append_null(),
            (None, Some(function)) => {
                return exec_err!(
                    "{function}: '{s}' is not a timestamp in the format '{}'",
                    format.unwrap_or("yyyy-MM-dd HH:mm:ss[.SSS]")
                )
            }
        }
    }
    Ok(Arc::new(
        out.finish().with_timezone_opt(zone.map(Arc::<str>::from)),
    ))
}

pub(crate) static TO_TIMESTAMP: FlinkFunction = FlinkFunction {
    name: "TO_TIMESTAMP",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| all_strings(types, 1..=2),
    takes: "(STRING [, STRING format])",
    returns: |_| DataType::Timestamp(TimeUnit::Millisecond, None),
    eval: |args, rows| timestamps_from_text(args, rows, None, None),
};

pub(crate) static TO_TIMESTAMP_LTZ: FlinkFunction = FlinkFunction {
    name: "TO_TIMESTAMP_LTZ",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| {
        let epoch = match types.first() {
            Some(n) if n.is_integer() => Some(DataType::Int64),
            Some(n) if n.is_floating() || matches!(n, DataType::Decimal128(_, _)) => {
                Some(DataType::Float64)
            }
            _ => None,
        };
        match (epoch, types) {
            (Some(epoch), [_]) => Some(vec![epoch]),
            (Some(epoch), [_, p]) if p.is_integer() || p.is_null() => {
                Some(vec![epoch, DataType::Int32])
            }
            (Some(_), _) => None,
            (None, _) => all_strings(types, 1..=3),
        }
    },
    takes: "(numeric epoch [, INT precision 0 or 3]) or (STRING [, STRING format [, STRING time zone]])",
    returns: |_| DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    eval: |args, rows| {
        let utc = Some("UTC");
        if matches!(args[0].data_type(), DataType::Utf8) {
            for row in 0..rows {
                if let Ok(Some(zone)) = optional_text(args, 2, row) {
                    if !matches!(zone.to_ascii_uppercase().as_str(), "UTC" | "Z" | "GMT" | "+00:00" | "UTC+0")
                    {
                        return exec_err!(
                            "TO_TIMESTAMP_LTZ: time zone '{zone}' is not supported yet (Weir's session time zone is UTC)"
                        );
                    }
                }
            }
            // Unlike TO_TIMESTAMP, Flink fails the job on text that does not parse.
            return timestamps_from_text(args, rows, utc, Some("TO_TIMESTAMP_LTZ"));
        }
        let precision = |row: usize| -> DfResult<Option<i32>> {
            match args.get(1) {
                None => Ok(Some(3)),
                Some(p) => {
                    let p = p.as_primitive::<arrow::datatypes::Int32Type>();
                    if p.is_null(row) {
                        return Ok(None);
                    }
                    match p.value(row) {
                        v @ (0 | 3) => Ok(Some(v)),
                        v => exec_err!(
                            "TO_TIMESTAMP_LTZ: precision {v} is not supported, only 0 (seconds) and 3 (milliseconds)"
                        ),
                    }
                }
            }
        };
        let mut out = TimestampMillisecondBuilder::with_capacity(rows);
        for row in 0..rows {
            let value = match (precision(row)?, args[0].is_null(row)) {
                (Some(p), false) => {
                    let scale = if p == 0 { 1000.0 } else { 1.0 };
                    match args[0].data_type() {
                        DataType::Int64 => {
                            let v = args[0]
                                .as_primitive::<arrow::datatypes::Int64Type>()
                                .value(row);
                            if p == 0 {
                                v.checked_mul(1000)
                            } else {
                                Some(v)
                            }
                        }
                        _ => {
                            let v = args[0]
                                .as_primitive::<arrow::datatypes::Float64Type>()
                                .value(row)
                                * scale;
                            v.is_finite().then_some(v as i64)
                        }
                    }
                }
                _ => None,
            };
            out.append_option(value);
        }
        Ok(Arc::new(out.finish().with_timezone("UTC")))
    },
};

pub(crate) static TO_DATE: FlinkFunction = FlinkFunction {
    name: "TO_DATE",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| all_strings(types, 1..=2),
    takes: "(STRING [, STRING format])",
    returns: |_| DataType::Date32,
    eval: |args, rows| {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let mut patterns = Patterns::default();
        let mut out = Date32Builder::with_capacity(rows);
        for row in 0..rows {
            let value = match (text(&args[0], row), optional_text(args, 1, row)) {
                (Some(s), Ok(None)) => parse_sql_timestamp(s)
                    .filter(|_| !s.trim().contains(' '))
                    .map(|t| t.date()),
                (Some(s), Ok(Some(format))) => patterns.parse(s, Some(format)).map(|t| t.date()),
                _ => None,
            };
            out.append_option(value.map(|d| (d - epoch).num_days() as i32));
        }
        Ok(Arc::new(out.finish()))
    },
};

pub(crate) static FROM_UNIXTIME: FlinkFunction = FlinkFunction {
    name: "FROM_UNIXTIME",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| match types {
        [n] if n.is_numeric() || n.is_null() => Some(vec![DataType::Int64]),
        [n, f] if (n.is_numeric() || n.is_null()) && is_text_or_null(f) => {
            Some(vec![DataType::Int64, DataType::Utf8])
        }
        _ => None,
    },
    takes: "(numeric seconds [, STRING format])",
    returns: |_| DataType::Utf8,
    eval: |args, rows| {
        let seconds = args[0].as_primitive::<arrow::datatypes::Int64Type>();
        let mut patterns = Patterns::default();
        let mut out = StringBuilder::with_capacity(rows, rows * 19);
        for row in 0..rows {
            let value = match (seconds.is_null(row), optional_text(args, 1, row)) {
                (false, Ok(format)) => {
                    DateTime::from_timestamp(seconds.value(row), 0).and_then(|at| {
                        patterns.format(at.naive_utc(), format.unwrap_or(DEFAULT_TIMESTAMP))
                    })
                }
                _ => None,
            };
            out.append_option(value);
        }
        Ok(Arc::new(out.finish()))
    },
};

pub(crate) static UNIX_TIMESTAMP: FlinkFunction = FlinkFunction {
    name: "UNIX_TIMESTAMP",
    aliases: &[],
    // The form without arguments reads the wall clock per row.
    volatility: Volatility::Volatile,
    coerce: |types| all_strings(types, 0..=2),
    takes: "() or (STRING [, STRING format])",
    returns: |_| DataType::Int64,
    eval: |args, rows| {
        let mut patterns = Patterns::default();
        let mut out = Int64Builder::with_capacity(rows);
        if args.is_empty() {
            let now = super::clock::now_ms().div_euclid(1000);
            out.append_slice(&vec![now; rows]);
            return Ok(Arc::new(out.finish()));
        }
        for row in 0..rows {
            let value = match (text(&args[0], row), optional_text(args, 1, row)) {
                (Some(s), Ok(format)) => Some(
                    patterns
                        .parse(s, Some(format.unwrap_or(DEFAULT_TIMESTAMP)))
                        .map_or(i64::MIN, |t| t.and_utc().timestamp()),
                ),
                _ => None,
            };
            out.append_option(value);
        }
        Ok(Arc::new(out.finish()))
    },
};

pub(crate) static DATE_FORMAT: FlinkFunction = FlinkFunction {
    name: "DATE_FORMAT",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| match types {
        [DataType::Timestamp(unit, zone), f] if is_text_or_null(f) => Some(vec![
            DataType::Timestamp(*unit, zone.clone()),
            DataType::Utf8,
        ]),
        [DataType::Date32 | DataType::Date64, f] if is_text_or_null(f) => Some(vec![
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::Utf8,
        ]),
        _ => all_strings(types, 2..=2),
    },
    takes: "(TIMESTAMP or STRING, STRING format)",
    returns: |_| DataType::Utf8,
    eval: |args, rows| {
        // Timestamps of any unit as milliseconds, without their zone (the session's is UTC).
        let times: Option<ArrayRef> = match args[0].data_type() {
            DataType::Timestamp(_, _) => Some(arrow::compute::cast(
                &args[0],
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?),
            _ => None,
        };
        let mut patterns = Patterns::default();
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        for row in 0..rows {
            let at = match &times {
                Some(t) => {
                    let t = t.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                    (!t.is_null(row))
                        .then(|| DateTime::from_timestamp_millis(t.value(row)))
                        .flatten()
                        .map(|d| d.naive_utc())
                }
                None => text(&args[0], row).and_then(parse_sql_timestamp),
            };
            let value = match (at, text(&args[1], row)) {
                (Some(at), Some(format)) => patterns.format(at, format),
                _ => None,
            };
            out.append_option(value);
        }
        Ok(Arc::new(out.finish()))
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_become_chrono_ones() {
        assert_eq!(java_to_chrono("yyyy-MM-dd HH:mm:ss"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(
            java_to_chrono("yyyy-MM-dd'T'HH:mm:ss.SSS"),
            "%Y-%m-%dT%H:%M:%S.%3f"
        );
        assert_eq!(java_to_chrono("HH:mm"), "%H:%M");
    }

    #[test]
    fn default_timestamp_text() {
        let at = |s: &str| parse_sql_timestamp(s).map(|t| t.to_string());
        assert_eq!(
            at("2025-01-01 10:00:00").as_deref(),
            Some("2025-01-01 10:00:00")
        );
        assert_eq!(
            at("2025-01-01 10:00:00.5").as_deref(),
            Some("2025-01-01 10:00:00.500")
        );
        assert_eq!(at("2025-01-01").as_deref(), Some("2025-01-01 00:00:00"));
        assert_eq!(at("2025-1-2 3:04").as_deref(), Some("2025-01-02 03:04:00"));
        assert_eq!(at("2025-01-01T10:00:00"), None);
        assert_eq!(at("not a time"), None);
        assert_eq!(at("2025-02-30"), None);
        assert_eq!(at("2025-01-01 25:00:00"), None);
    }

    #[test]
    fn java_formats_parse_with_dates_alone() {
        let mut patterns = Patterns::default();
        let mut at = |s: &str, f: &str| patterns.parse(s, Some(f)).map(|t| t.to_string());
        assert_eq!(
            at("31/12/2024 23:59", "dd/MM/yyyy HH:mm").as_deref(),
            Some("2024-12-31 23:59:00")
        );
        assert_eq!(at("2025-01-01 00:00", "dd/MM/yyyy HH:mm"), None);
        assert_eq!(
            at("20250102", "yyyyMMdd").as_deref(),
            Some("2025-01-02 00:00:00")
        );
    }
}
