//! A sink that writes rows to standard output: a table on a terminal, JSON lines otherwise.
//!
//! Each batch is rendered in memory and written with stdout locked, so output of different
//! subtasks never interleaves within a line and nothing is half-written when a job stops.

use std::io::{IsTerminal, Write};

use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
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

/// Prints every row to stdout.
#[derive(Debug, Clone, Copy)]
pub struct PrintSink {
    format: PrintFormat,
}

impl PrintSink {
    pub fn new(format: PrintFormat) -> Self {
        PrintSink { format }
    }
}

impl Default for PrintSink {
    fn default() -> Self {
        PrintSink::new(PrintFormat::Auto)
    }
}

impl SinkFactory for PrintSink {
    fn describe(&self) -> String {
        format!("print ({:?})", self.format)
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        let table = match self.format {
            PrintFormat::Auto => std::io::stdout().is_terminal(),
            PrintFormat::Table => true,
            PrintFormat::JsonLines => false,
        };
        Ok(Box::new(PrintWriter { table }))
    }
}

struct PrintWriter {
    table: bool,
}

/// Renders `batch` as text.
pub fn render(batch: &RecordBatch, table: bool) -> Result<Vec<u8>, ConnectorError> {
    let arrow_error = |source| ConnectorError::Arrow {
        connector: "print".into(),
        source,
    };
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

impl SinkWriter for PrintWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        let table = self.table;
        Box::pin(async move {
            let bytes = render(&batch, table)?;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&bytes) {
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
