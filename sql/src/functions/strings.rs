//! Flink's string functions whose rules differ from DataFusion's (PostgreSQL's).
//!
//! | function | Flink's rule |
//! |---|---|
//! | `CONCAT(s1, s2, ...)` | NULL if any argument is NULL (DataFusion skips NULLs, as PostgreSQL) |
//! | `SPLIT_INDEX(s, separator, i)` | the `i`-th field (0-based) of `s` split at `separator`; NULL when there is none or `i` is negative |
//! | `REGEXP_EXTRACT(s, regex [, i])` | group `i` (0: the whole match, the default) of the first match of `regex` in `s`; NULL when nothing matches, the group does not exist or the regex is invalid (as Flink, which logs it; Weir logs it once per batch). The syntax is Rust's `regex` crate's: Java's look-around and back-references are invalid here |
//! | `SUBSTRING(s, start [, length])`, `SUBSTR`, `SUBSTRING(s FROM start [FOR length])` | 1-based in characters; a start of 0 is 1, a negative start counts from the end, past either end gives `''`; a negative length gives NULL (PostgreSQL counts positions before 1 and fails on a negative length) |

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Int64Type};
use datafusion_expr::Volatility;

use super::FlinkFunction;

pub(crate) static FUNCTIONS: &[&FlinkFunction] =
    &[&CONCAT, &SUBSTRING, &SPLIT_INDEX, &REGEXP_EXTRACT];

pub(crate) static CONCAT: FlinkFunction = FlinkFunction {
    name: "CONCAT",
    aliases: &[],
    volatility: Volatility::Immutable,
    // Flink takes character strings; other values are cast to STRING first (Flink's
    // implicit cast in string contexts), with Flink's text for them.
    coerce: |types| (!types.is_empty()).then(|| vec![DataType::Utf8; types.len()]),
    takes: "one or more STRING arguments",
    returns: |_| DataType::Utf8,
    eval: |args, rows| {
        let strings: Vec<_> = args.iter().map(|a| a.as_string::<i32>()).collect();
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        let mut value = String::new();
        for row in 0..rows {
            if strings.iter().any(|s| s.is_null(row)) {
                out.append_null();
                continue;
            }
            value.clear();
            for s in &strings {
                value.push_str(s.value(row));
            }
            out.append_value(&value);
        }
        Ok(Arc::new(out.finish()))
    },
};

/// Flink's `SUBSTRING` of `text` (see the module doc); `None` for a negative length.
pub fn substring(text: &str, start: i64, length: Option<i64>) -> Option<&str> {
    if length.is_some_and(|l| l < 0) {
        return None;
    }
    let chars = text.chars().count() as i64;
    let from = match start {
        0 => 0,
        s if s > 0 => s - 1,
        s => chars + s,
    };
    if from < 0 || from >= chars {
        return Some("");
    }
    let to = length.map_or(chars, |l| from.saturating_add(l).min(chars));
    let byte = |i: i64| {
        text.char_indices()
            .nth(i as usize)
            .map_or(text.len(), |(b, _)| b)
    };
    Some(&text[byte(from)..byte(to)])
}

pub(crate) static SUBSTRING: FlinkFunction = FlinkFunction {
    name: "SUBSTRING",
    aliases: &["substr"],
    volatility: Volatility::Immutable,
    coerce: |types| match types {
        [s, rest @ ..]
            if (1..=2).contains(&rest.len())
                && super::is_text_or_null(s)
                && rest.iter().all(|t| t.is_integer() || t.is_null()) =>
        {
            let mut out = vec![DataType::Utf8];
            out.extend(rest.iter().map(|_| DataType::Int64));
            Some(out)
        }
        _ => None,
    },
    takes: "(STRING, INT start [, INT length])",
    returns: |_| DataType::Utf8,
    eval: |args, rows| {
        let text = args[0].as_string::<i32>();
        let start = args[1].as_primitive::<Int64Type>();
        let length = args.get(2).map(|a| a.as_primitive::<Int64Type>());
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            let length_null = length.is_some_and(|l| l.is_null(row));
            if text.is_null(row) || start.is_null(row) || length_null {
                out.append_null();
                continue;
            }
            let length = length.map(|l| l.value(row));
            out.append_option(substring(text.value(row), start.value(row), length));
        }
        Ok(Arc::new(out.finish()))
    },
};

pub(crate) static SPLIT_INDEX: FlinkFunction = FlinkFunction {
    name: "SPLIT_INDEX",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| match types {
        [s, separator, index]
            if super::is_text_or_null(s)
                && super::is_text_or_null(separator)
                && (index.is_integer() || index.is_null()) =>
        {
            Some(vec![DataType::Utf8, DataType::Utf8, DataType::Int64])
        }
        _ => None,
    },
    takes: "(STRING, STRING separator, INT index)",
    returns: |_| DataType::Utf8,
    eval: |args, rows| {
        let text = args[0].as_string::<i32>();
        let separator = args[1].as_string::<i32>();
        let index = args[2].as_primitive::<Int64Type>();
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            let field = (!text.is_null(row) && !separator.is_null(row) && !index.is_null(row))
                .then(|| {
                    let i = usize::try_from(index.value(row)).ok()?;
                    text.value(row).split(separator.value(row)).nth(i)
                })
                .flatten();
            out.append_option(field);
        }
        Ok(Arc::new(out.finish()))
    },
};

pub(crate) static REGEXP_EXTRACT: FlinkFunction = FlinkFunction {
    name: "REGEXP_EXTRACT",
    aliases: &[],
    volatility: Volatility::Immutable,
    coerce: |types| match types {
        [s, regex, rest @ ..]
            if rest.len() <= 1
                && super::is_text_or_null(s)
                && super::is_text_or_null(regex)
                && rest.iter().all(|t| t.is_integer() || t.is_null()) =>
        {
            let mut out = vec![DataType::Utf8, DataType::Utf8];
            out.extend(rest.iter().map(|_| DataType::Int64));
            Some(out)
        }
        _ => None,
    },
    takes: "(STRING, STRING regex [, INT group])",
    returns: |_| DataType::Utf8,
    eval: |args, rows| {
        let text = args[0].as_string::<i32>();
        let pattern = args[1].as_string::<i32>();
        let group = args.get(2).map(|a| a.as_primitive::<Int64Type>());
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        // The pattern is nearly always a constant: compiled once while it stays the same.
        let mut compiled: Option<(String, Option<regex::Regex>)> = None;
        for row in 0..rows {
            let group_null = group.is_some_and(|g| g.is_null(row));
            if text.is_null(row) || pattern.is_null(row) || group_null {
                out.append_null();
                continue;
            }
            let source = pattern.value(row);
            if compiled.as_ref().is_none_or(|(p, _)| p != source) {
                let regex = regex::Regex::new(source);
                if let Err(error) = &regex {
                    tracing::warn!(%error, pattern = source, "REGEXP_EXTRACT: invalid regular expression, the result is NULL");
                }
                compiled = Some((source.to_string(), regex.ok()));
            }
            let index = group.map_or(0, |g| g.value(row));
            let extracted = compiled
                .as_ref()
                .and_then(|(_, regex)| regex.as_ref())
                .zip(usize::try_from(index).ok())
                .and_then(|(regex, index)| regex.captures(text.value(row))?.get(index))
                .map(|m| m.as_str());
            out.append_option(extracted);
        }
        Ok(Arc::new(out.finish()))
    },
};

#[cfg(test)]
mod tests {
    use super::substring;

    #[test]
    fn substring_as_flink() {
        assert_eq!(substring("hello", 2, Some(3)), Some("ell"));
        assert_eq!(substring("hello", 0, None), Some("hello"));
        assert_eq!(substring("hello", -3, Some(2)), Some("ll"));
        assert_eq!(substring("hello", 10, None), Some(""));
        assert_eq!(substring("hello", -10, Some(3)), Some(""));
        assert_eq!(substring("hello", 2, Some(-1)), None);
        assert_eq!(substring("héllo", 2, Some(2)), Some("él"));
        assert_eq!(substring("abc", 2, Some(100)), Some("bc"));
        assert_eq!(substring("abc", 2, Some(i64::MAX)), Some("bc"));
        assert_eq!(substring("abc", i64::MIN, None), Some(""));
    }
}
