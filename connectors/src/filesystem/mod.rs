//! The `filesystem` connector: files of JSON lines, CSV, raw lines or Parquet (and, to read,
//! Debezium JSON changes).
//!
//! `path` is a file, a directory (read recursively; names starting with `.` or `_` are
//! skipped, as Flink skips in-progress and metadata files) or a glob in its last segment
//! (`data/*.csv`). A file, or a block of a large file, belongs to one split, chosen by a hash
//! of its path, so that it keeps its split when a watched directory is listed again.

pub mod lines;
pub mod sink;
pub mod source;

use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::error::ConnectorError;
use crate::format::csv::CsvOptions;

/// The format of the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Csv(CsvOptions),
    Raw,
    Parquet,
    /// Debezium's JSON envelope, read as a changelog (a source only; see
    /// [`crate::format::debezium`]). `schema_include`: records wrap it in `payload`.
    DebeziumJson {
        schema_include: bool,
    },
}

impl FileFormat {
    /// The file-name extension written by the sink.
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Json | FileFormat::DebeziumJson { .. } => "json",
            FileFormat::Csv(_) => "csv",
            FileFormat::Raw => "txt",
            FileFormat::Parquet => "parquet",
        }
    }
}

fn hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

/// Matches `name` against a pattern with `*` (any run) and `?` (any one character).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The files `path` names, sorted.
pub fn list_files(path: &str) -> Result<Vec<PathBuf>, ConnectorError> {
    let io = |source| ConnectorError::Io {
        connector: format!("filesystem path '{path}'"),
        source,
    };
    let as_path = Path::new(path);
    let name = as_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut files = Vec::new();
    if name.contains(['*', '?']) {
        let dir = as_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let file = entry.map_err(io)?.path();
            let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if file.is_file() && !hidden(&file) && wildcard_match(name, file_name) {
                files.push(file);
            }
        }
    } else if as_path.is_dir() {
        walk(as_path, &mut files).map_err(io)?;
    } else if as_path.is_file() {
        files.push(as_path.to_path_buf());
    } else {
        return Err(ConnectorError::Config {
            connector: "filesystem".into(),
            message: format!("path '{path}' does not exist"),
        });
    }
    files.sort();
    Ok(files)
}

/// The split that reads block `block` of `file` (block 0 for a whole file): consecutive blocks
/// go to consecutive splits, from one chosen by a hash of the path.
pub fn split_of(file: &Path, block: u64, parallelism: usize) -> usize {
    let first = xxh3_64(file.to_string_lossy().as_bytes());
    (first.wrapping_add(block) % parallelism.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.csv", "bids.csv"));
        assert!(wildcard_match("part-?.json", "part-1.json"));
        assert!(!wildcard_match("*.csv", "bids.json"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
    }
}
