//! Connector options: the string map of a table's `WITH (...)` clause, checked up front.
//!
//! Each connector declares its options as a table of [`OptionSpec`]s (name, kind, required,
//! description). [`Options::validate`] checks a map against that table before anything runs:
//! an unknown option, a missing required one, or a value of the wrong kind is an error that
//! names the connector and the option. Getters then read values that are known to parse.
//! Option names follow Flink's wherever Flink has the same connector. A `#` in a spec's name
//! matches one dotted segment (`fields.#.kind` matches `fields.price.kind`); a trailing `.*`
//! matches any rest (`properties.*` matches `properties.group.id`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::ConnectorError;

/// What kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    String,
    /// A local file, directory or glob (Flink's `file://` scheme accepted); relative paths are
    /// relative to the working directory, or to a server client's
    /// ([`crate::registry::local_paths`]).
    Path,
    /// A whole number (may be negative).
    Integer,
    Boolean,
    /// `200ms`, `10 s`, `5min`, `1h`; a bare number is milliseconds.
    Duration,
    /// `128MB`, `64 kb`, `1gb`; a bare number is bytes.
    MemorySize,
    /// One of the listed words (case-insensitive).
    Enum(&'static [&'static str]),
    /// A single character (CSV delimiter, quote).
    Char,
}

/// One option a connector accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub key: &'static str,
    pub kind: OptionKind,
    pub required: bool,
    pub doc: &'static str,
}

impl OptionSpec {
    pub const fn optional(key: &'static str, kind: OptionKind, doc: &'static str) -> Self {
        OptionSpec {
            key,
            kind,
            required: false,
            doc,
        }
    }

    pub const fn required(key: &'static str, kind: OptionKind, doc: &'static str) -> Self {
        OptionSpec {
            key,
            kind,
            required: true,
            doc,
        }
    }

    fn matches(&self, key: &str) -> bool {
        if let Some(prefix) = self.key.strip_suffix(".*") {
            return key
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'));
        }
        let pattern: Vec<&str> = self.key.split('.').collect();
        let actual: Vec<&str> = key.split('.').collect();
        pattern.len() == actual.len()
            && pattern
                .iter()
                .zip(&actual)
                .all(|(p, a)| *p == "#" || p == a)
    }
}

/// Validated options of one connector.
#[derive(Debug, Clone)]
pub struct Options {
    connector: String,
    values: BTreeMap<String, String>,
}

fn parse_number_with_unit(text: &str) -> Option<(f64, String)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].parse().ok()?;
    Some((number, text[split..].trim().to_ascii_lowercase()))
}

/// Parses `200ms`, `10 s`, `5min`, `1h`, `2d`; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = parse_number_with_unit(text)?;
    let millis = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return None,
    };
    // A number too large for a duration is not one (no panic).
    Duration::try_from_secs_f64(number * millis / 1_000.0).ok()
}

/// Parses `128MB`, `64 kb`, `1gb`, `100b`; a bare number is bytes.
pub fn parse_memory_size(text: &str) -> Option<u64> {
    let (number, unit) = parse_number_with_unit(text)?;
    let bytes = match unit.as_str() {
        "" | "b" | "bytes" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * bytes) as u64)
}

/// A positive memory size in bytes (`state.memory-budget`, `--state-memory-budget`).
pub fn parse_memory_budget(text: &str) -> Option<usize> {
    parse_memory_size(text)
        .filter(|&bytes| bytes > 0)
        .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX))
}

fn check_kind(kind: OptionKind, value: &str) -> Result<(), String> {
    let ok = match kind {
        OptionKind::String | OptionKind::Path => true,
        OptionKind::Integer => value.trim().parse::<i64>().is_ok(),
        OptionKind::Boolean => {
            matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false")
        }
        OptionKind::Duration => parse_duration(value).is_some(),
        OptionKind::MemorySize => parse_memory_size(value).is_some(),
        OptionKind::Enum(words) => words.iter().any(|w| w.eq_ignore_ascii_case(value.trim())),
        OptionKind::Char => value.chars().count() == 1 || value == "\\t",
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        OptionKind::Integer => format!("expected a whole number, got '{value}'"),
        OptionKind::Boolean => format!("expected true or false, got '{value}'"),
        OptionKind::Duration => {
            format!("expected a duration such as 200ms, 10s or 5min, got '{value}'")
        }
        OptionKind::MemorySize => format!("expected a size such as 64kb or 128mb, got '{value}'"),
        OptionKind::Enum(words) => format!("expected one of {}, got '{value}'", words.join(", ")),
        OptionKind::Char => format!("expected a single character, got '{value}'"),
        OptionKind::String | OptionKind::Path => unreachable!("strings always fit"),
    })
}

impl Options {
    /// Checks `values` against `specs`: every key known, every required key present, every
    /// value of its kind.
    pub fn validate(
        connector: &str,
        specs: &[OptionSpec],
        values: &BTreeMap<String, String>,
    ) -> Result<Options, ConnectorError> {
        let error = |message: String| ConnectorError::Config {
            connector: connector.to_string(),
            message,
        };
        for (key, value) in values {
            let Some(spec) = specs.iter().find(|s| s.matches(key)) else {
                let known: Vec<&str> = specs.iter().map(|s| s.key).collect();
                return Err(error(format!(
                    "unknown option '{key}'; known options: {}",
                    known.join(", ")
                )));
            };
            check_kind(spec.kind, value).map_err(|m| error(format!("option '{key}': {m}")))?;
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !values.keys().any(|k| spec.matches(k)) {
                return Err(error(format!(
                    "missing required option '{}' ({})",
                    spec.key, spec.doc
                )));
            }
        }
        Ok(Options {
            connector: connector.to_string(),
            values: values.clone(),
        })
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A required option (validated to be present).
    pub fn require(&self, key: &str) -> Result<&str, ConnectorError> {
        self.get(key).ok_or_else(|| ConnectorError::Config {
            connector: self.connector.clone(),
            message: format!("missing required option '{key}'"),
        })
    }

    pub fn integer(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    pub fn boolean(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    pub fn duration(&self, key: &str) -> Option<Duration> {
        self.get(key).and_then(parse_duration)
    }

    pub fn memory_size(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(parse_memory_size)
    }

    /// An enum option, lower-cased.
    pub fn word(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.trim().to_ascii_lowercase())
    }

    /// A single-character option as a byte (`\t` for tab).
    pub fn byte(&self, key: &str) -> Option<u8> {
        self.get(key)
            .map(|v| if v == "\\t" { b'\t' } else { v.as_bytes()[0] })
    }

    /// Every option under `prefix.`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
        self.values
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix(prefix)?.strip_prefix('.')?.to_string(),
                    v.clone(),
                ))
            })
            .collect()
    }

    /// Keys matching `prefix.#.suffix`, with the `#` segment.
    pub fn segments(&self, prefix: &str, suffix: &str) -> Vec<String> {
        self.values
            .keys()
            .filter_map(|k| {
                let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                let name = rest.strip_suffix(suffix)?.strip_suffix('.')?;
                (!name.contains('.')).then(|| name.to_string())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec::required("path", OptionKind::String, "where the files are"),
        OptionSpec::optional("rows-per-second", OptionKind::Integer, "rate"),
        OptionSpec::optional("format", OptionKind::Enum(&["json", "csv"]), "format"),
        OptionSpec::optional(
            "fields.#.kind",
            OptionKind::Enum(&["random", "sequence"]),
            "kind",
        ),
        OptionSpec::optional("interval", OptionKind::Duration, "interval"),
    ];

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn errors_name_the_option() {
        let unknown =
            Options::validate("x", SPECS, &map(&[("path", "/"), ("pth", "/")])).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown option 'pth'"),
            "{unknown}"
        );
        let missing = Options::validate("x", SPECS, &map(&[])).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("missing required option 'path'"),
            "{missing}"
        );
        let wrong = Options::validate(
            "x",
            SPECS,
            &map(&[("path", "/"), ("rows-per-second", "fast")]),
        )
        .unwrap_err();
        assert!(
            wrong
                .to_string()
                .contains("'rows-per-second': expected a whole number, got 'fast'"),
            "{wrong}"
        );
        let word =
            Options::validate("x", SPECS, &map(&[("path", "/"), ("format", "xml")])).unwrap_err();
        assert!(word.to_string().contains("one of json, csv"), "{word}");
    }

    #[test]
    fn patterns_durations_and_segments() {
        let options = Options::validate(
            "x",
            SPECS,
            &map(&[
                ("path", "/"),
                ("fields.price.kind", "random"),
                ("interval", "1.5 s"),
            ]),
        )
        .unwrap();
        assert_eq!(
            options.segments("fields", "kind"),
            vec!["price".to_string()]
        );
        assert_eq!(
            options.duration("interval"),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(parse_duration("5min"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("99999999999999999999999d"),
            None,
            "too large"
        );
        assert_eq!(parse_duration(&"9".repeat(400)), None, "infinite");
        assert_eq!(parse_memory_size("128MB"), Some(128 << 20));
        assert!(Options::validate(
            "x",
            SPECS,
            &map(&[("path", "/"), ("fields.a.b.kind", "random")])
        )
        .is_err());
    }
}
