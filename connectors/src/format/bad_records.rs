//! What happens to records that cannot be decoded: fail, skip and count, or dead-letter.
//!
//! `format.on-error` = `fail` (default) | `skip` | `dead-letter`, with Flink's per-format
//! switch `json.ignore-parse-errors` / `csv.ignore-parse-errors` = `true` meaning `skip`.
//! Dead letters go to a file (`format.dead-letter.path`) or, for Kafka sources, to a topic
//! (`format.dead-letter.topic`): one JSON object per record with the source, the position
//! (`file:line` or `topic/partition/offset`), the error and the raw record. Nothing is
//! silently lost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use weir_engine::metrics::Counter;

use crate::error::ConnectorError;

/// A record that could not be decoded, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// `file:line`, or `topic/partition/offset`.
    pub position: String,
    pub error: String,
    pub raw: Vec<u8>,
}

/// The policy for bad records.
#[derive(Debug, Clone)]
pub enum BadRecordPolicy {
    Fail,
    Skip,
    DeadLetter(Arc<dyn DeadLetters>),
}

/// Where dead letters go.
pub trait DeadLetters: Send + Sync + std::fmt::Debug {
    /// Stores `records`, found by `source`, durably enough that the job may go on.
    fn write(&self, source: &str, records: &[BadRecord]) -> Result<(), ConnectorError>;
}

/// One dead letter as a JSON object (no trailing newline).
pub fn envelope(source: &str, record: &BadRecord) -> String {
    format!(
        "{{\"source\":{},\"position\":{},\"error\":{},\"record\":{}}}",
        json_string(source),
        json_string(&record.position),
        json_string(&record.error),
        json_string(&String::from_utf8_lossy(&record.raw)),
    )
}

/// An append-only file of dead letters, shared by the subtasks of a source.
#[derive(Debug, Clone)]
pub struct DeadLetterFile {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
}

impl DeadLetterFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DeadLetterFile {
            path: path.into(),
            file: Arc::default(),
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }
}

impl DeadLetters for DeadLetterFile {
    fn write(&self, source: &str, records: &[BadRecord]) -> Result<(), ConnectorError> {
        let io = |source_error| ConnectorError::Io {
            connector: format!("dead-letter file {}", self.path.display()),
            source: source_error,
        };
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            *slot = Some(file);
        }
        let mut lines = String::new();
        for record in records {
            lines.push_str(&envelope(source, record));
            lines.push('\n');
        }
        let Some(file) = slot.as_mut() else {
            return Ok(());
        };
        file.write_all(lines.as_bytes()).map_err(io)?;
        file.flush().map_err(io)
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Applies a policy to the bad records of one chunk.
#[derive(Debug, Clone)]
pub struct BadRecordHandler {
    pub source: String,
    pub policy: BadRecordPolicy,
    pub skipped: Counter,
    pub dead_lettered: Counter,
}

impl BadRecordHandler {
    /// Handles `bad`; with `fail`, the first bad record becomes the error.
    pub fn handle(&self, bad: Vec<BadRecord>) -> Result<(), ConnectorError> {
        let Some(first) = bad.first() else {
            return Ok(());
        };
        match &self.policy {
            BadRecordPolicy::Fail => Err(ConnectorError::BadRecord {
                source_name: self.source.clone(),
                position: first.position.clone(),
                message: first.error.clone(),
            }),
            BadRecordPolicy::Skip => {
                self.skipped.add(bad.len() as u64);
                Ok(())
            }
            BadRecordPolicy::DeadLetter(letters) => {
                letters.write(&self.source, &bad)?;
                self.dead_lettered.add(bad.len() as u64);
                Ok(())
            }
        }
    }
}
