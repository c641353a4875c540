//! A sink that writes rows to standard output: a table on a terminal, JSON lines otherwise.
//! Flink's options: `print-identifier` prefixes every line, `standard-error` prints to stderr.
//!
//! Each batch is rendered in memory and written with stdout locked, so output of different
//! subtasks never interleaves within a line and nothing is half-written when a job stops.

use std::io::{IsTerminal, Write};

use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use weir_engine::changelog::with_op_text;
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::BoxError;

use crate::error::ConnectorError;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintFormat {
    /// A table if stdout is a terminal, JSON lines otherwise.
    Auto,
    Table,
    JsonLines,
}

/// Prints every row to stdout (or stderr).
#[derive(Debug, Clone)]
pub struct PrintSink {
    format: PrintFormat,
    /// Prefix of every line, as Flink's `print-identifier` (`id> ...`).
    identifier: Option<String>,
    /// Write to standard error instead (Flink's `standard-error`).
    standard_error: bool,
}

impl PrintSink {
    pub fn new(format: PrintFormat) -> Self {
        PrintSink {
            format,
            identifier: None,
            standard_error: false,
        }
    }

    /// Prefixes every printed line with `identifier> `.
    pub fn with_identifier(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// Prints to standard error instead of standard output.
    pub fn to_standard_error(mut self) -> Self {
        self.standard_error = true;
        self
    }
}

impl Default for PrintSink {
    fn default() -> Self {
        PrintSink::new(PrintFormat::Auto)
    }
}

impl SinkFactory for PrintSink {
    fn accepts_changelog(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("print ({:?})", self.format)
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        let terminal = match self.standard_error {
            true => std::io::stderr().is_terminal(),
            false => std::io::stdout().is_terminal(),
        };
        let table = match self.format {
            PrintFormat::Auto => terminal,
            PrintFormat::Table => true,
            PrintFormat::JsonLines => false,
        };
        Ok(Box::new(PrintWriter {
            table,
            prefix: self.identifier.as_ref().map(|id| format!("{id}> ")),
            standard_error: self.standard_error,
        }))
    }
}

struct PrintWriter {
    table: bool,
    prefix: Option<String>,
    standard_error: bool,
}

/// Renders `batch` as text.
pub fn render(batch: &RecordBatch, table: bool) -> Result<Vec<u8>, ConnectorError> {
    let arrow_error = |source| ConnectorError::Arrow {
        connector: "print".into(),
        source,
    };
    // A changelog is printed as Flink does, with an `op` column first.
    let batch = &with_op_text(batch).map_err(arrow_error)?;
    if table {
        let text = pretty_format_batches(std::slice::from_ref(batch)).map_err(arrow_error)?;
        Ok(format!("{text}\n").into_bytes())
    } else {
        let mut writer = LineDelimitedWriter::new(Vec::new());
        writer.write(batch).map_err(arrow_error)?;
        writer.finish().map_err(arrow_error)?;
        Ok(writer.into_inner())
    }
}

/// `text` with `prefix` before every line.
pub fn prefix_lines(text: &[u8], prefix: &str) -> Vec<u8> {
    text.split_inclusive(|b| *b == b'\n')
        .flat_map(|line| prefix.as_bytes().iter().chain(line))
        .copied()
        .collect()
}

impl SinkWriter for PrintWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let mut bytes = render(&batch, self.table)?;
            if let Some(prefix) = &self.prefix {
                bytes = prefix_lines(&bytes, prefix);
            }
            let written = match self.standard_error {
                true => std::io::stderr().lock().write_all(&bytes),
                false => std::io::stdout().lock().write_all(&bytes),
            };
            match written {
                // A closed pipe (`weir ... | head`) is not a failure of the job.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.map_err(|source| {
                    Box::new(ConnectorError::Io {
                        connector: "print".into(),
                        source,
                    }) as BoxError
                }),
            }
        })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async {
            let _ = std::io::stdout().flush();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn json_lines_with_an_identifier() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let text = prefix_lines(&render(&batch, false).unwrap(), "job");
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "job{\"n\":1}\njob{\"n\":2}\n"
        );
    }
}
