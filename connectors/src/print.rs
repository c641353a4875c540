//! A sink that writes rows to standard output: a table on a terminal, JSON lines otherwise.
//! Flink's options: `print-identifier` prefixes every line, `standard-error` prints to stderr.
//!
//! The table is Flink's tableau result mode (its SQL client's `result-mode = tableau`): the
//! header once, then every row as it arrives, in columns as wide as their type needs, and at
//! the end the bottom border and the number of rows. Each batch is rendered in memory and
//! written with the subtasks' shared table state locked, so output of different subtasks never
//! interleaves within a line and nothing is half-written when a job stops.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
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
    /// The table its subtasks print into, when printing a table.
    tableau: Arc<Mutex<Tableau>>,
}

impl PrintSink {
    pub fn new(format: PrintFormat) -> Self {
        PrintSink {
            format,
            identifier: None,
            standard_error: false,
            tableau: Arc::default(),
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
        if table {
            lock(&self.tableau).writers += 1;
        }
        Ok(Box::new(PrintWriter {
            tableau: table.then(|| Arc::clone(&self.tableau)),
            prefix: self.identifier.as_ref().map(|id| format!("{id}> ")),
            standard_error: self.standard_error,
        }))
    }
}

struct PrintWriter {
    /// The shared table, or `None` for JSON lines.
    tableau: Option<Arc<Mutex<Tableau>>>,
    prefix: Option<String>,
    standard_error: bool,
}

/// The widest a column of a type without a natural width (strings, floating point) is
/// printed (characters), as Flink's `sql-client.display.max-column-width` default.
pub const MAX_COLUMN_WIDTH: usize = 30;

/// How NULL is printed, as Flink's tableau.
const NULL: &str = "<NULL>";

/// A table printed as rows come (see the module doc): its column widths, fixed by the first
/// batch's schema, how many rows it printed and how many writers print into it.
#[derive(Debug, Default)]
pub struct Tableau {
    widths: Option<Vec<usize>>,
    rows: u64,
    writers: usize,
}

/// The characters a value of `data_type` needs at most, capped at [`MAX_COLUMN_WIDTH`]
/// (Flink derives its streaming tableau's widths from the types the same way).
fn type_width(data_type: &DataType) -> usize {
    let width = match data_type {
        DataType::Boolean => 5,
        DataType::Int8 => 4,
        DataType::Int16 => 6,
        DataType::Int32 => 11,
        DataType::Int64 | DataType::UInt64 => 20,
        DataType::UInt8 => 3,
        DataType::UInt16 => 5,
        DataType::UInt32 => 10,
        DataType::Date32 | DataType::Date64 => 10,
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => 19,
            TimeUnit::Millisecond => 23,
            TimeUnit::Microsecond => 26,
            TimeUnit::Nanosecond => 29,
        },
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            *precision as usize + 1 + usize::from(*scale > 0)
        }
        _ => MAX_COLUMN_WIDTH,
    };
    width.min(MAX_COLUMN_WIDTH)
}

/// How a timestamp column prints, as Flink's `TIMESTAMP(p)`: a space between date and time,
/// and the fraction of its precision (`2024-01-01 00:00:01.500` for milliseconds).
fn timestamp_format(data_type: &DataType) -> Option<&'static str> {
    match data_type {
        DataType::Timestamp(TimeUnit::Second, _) => Some("%Y-%m-%d %H:%M:%S"),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Some("%Y-%m-%d %H:%M:%S%.3f"),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some("%Y-%m-%d %H:%M:%S%.6f"),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some("%Y-%m-%d %H:%M:%S%.9f"),
        _ => None,
    }
}

impl Tableau {
    /// Each column's width: its type's, at least its name's and NULL's if it may be NULL.
    fn widths_of(schema: &Schema) -> Vec<usize> {
        (schema.fields().iter())
            .map(|field| {
                let null = if field.is_nullable() { NULL.len() } else { 0 };
                type_width(field.data_type())
                    .max(field.name().chars().count())
                    .max(null)
            })
            .collect()
    }

    fn border(widths: &[usize], out: &mut String) {
        out.push('+');
        for width in widths {
            out.push_str(&"-".repeat(width + 2));
            out.push('+');
        }
        out.push('\n');
    }

    /// One line of `cells`, each right-aligned in its column, cut with `...` when longer.
    fn line<'c>(widths: &[usize], cells: impl Iterator<Item = &'c str>, out: &mut String) {
        out.push('|');
        for (cell, &width) in cells.zip(widths) {
            let cut: String;
            let cell = match cell.chars().count() > width {
                true => {
                    cut = cell
                        .chars()
                        .take(width.saturating_sub(3))
                        .collect::<String>()
                        + "...";
                    &cut
                }
                false => cell,
            };
            out.push_str(&format!(" {cell:>width$} |"));
        }
        out.push('\n');
    }

    /// The lines of `batch` (with an `op` column first if a changelog): the header before the
    /// first rows.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<String, ConnectorError> {
        let arrow_error = |source| ConnectorError::Arrow {
            connector: "print".into(),
            source,
        };
        let changelog = weir_engine::changelog::row_kinds(batch).is_some();
        let batch = with_op_text(batch).map_err(arrow_error)?;
        let mut out = String::new();
        if batch.num_rows() == 0 {
            return Ok(out);
        }
        let schema = batch.schema();
        let widths = match &mut self.widths {
            Some(widths) => widths,
            None => {
                let mut widths = Self::widths_of(&schema);
                if changelog {
                    // The `op` column: `+I`, `-U`, `+U`, `-D`.
                    widths[0] = 2;
                }
                let widths = self.widths.insert(widths);
                Self::border(widths, &mut out);
                let names = schema.fields().iter().map(|f| f.name().as_str());
                Self::line(widths, names, &mut out);
                Self::border(widths, &mut out);
                widths
            }
        };
        let options: Vec<FormatOptions> = (batch.columns().iter())
            .map(|column| {
                let options = FormatOptions::default().with_null(NULL);
                match timestamp_format(column.data_type()) {
                    Some(format) => options
                        .with_timestamp_format(Some(format))
                        .with_timestamp_tz_format(Some(format)),
                    None => options,
                }
            })
            .collect();
        let formatters = (batch.columns().iter().zip(&options))
            .map(|(column, options)| ArrayFormatter::try_new(column.as_ref(), options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_error)?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = (formatters.iter())
                .map(|f| f.value(row).to_string())
                .collect();
            Self::line(widths, cells.iter().map(String::as_str), &mut out);
        }
        self.rows += batch.num_rows() as u64;
        Ok(out)
    }

    /// What ends the table: its bottom border and the number of rows, as Flink's, or
    /// `Empty set`.
    pub fn footer(&self) -> String {
        match &self.widths {
            None => "Empty set\n".to_string(),
            Some(widths) => {
                let mut out = String::new();
                Self::border(widths, &mut out);
                let plural = if self.rows == 1 { "" } else { "s" };
                out.push_str(&format!("Received a total of {} row{plural}\n", self.rows));
                out
            }
        }
    }
}

/// The table, even if a subtask panicked while holding it.
fn lock(tableau: &Mutex<Tableau>) -> std::sync::MutexGuard<'_, Tableau> {
    tableau.lock().unwrap_or_else(|e| e.into_inner())
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

impl PrintWriter {
    /// Writes `bytes` (each line prefixed with the identifier, if any).
    fn write(&self, bytes: &[u8]) -> Result<(), ConnectorError> {
        let prefixed;
        let bytes = match &self.prefix {
            Some(prefix) => {
                prefixed = prefix_lines(bytes, prefix);
                &prefixed
            }
            None => bytes,
        };
        let written = match self.standard_error {
            true => std::io::stderr().lock().write_all(bytes),
            false => std::io::stdout().lock().write_all(bytes),
        };
        match written {
            // A closed pipe (`weir ... | head`) is not a failure of the job.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(|source| ConnectorError::Io {
                connector: "print".into(),
                source,
            }),
        }
    }
}

impl SinkWriter for PrintWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            match &self.tableau {
                // Locked while written: the header first, no subtask's lines in another's.
                Some(tableau) => {
                    let mut tableau = lock(tableau);
                    let text = tableau.rows(&batch)?;
                    self.write(text.as_bytes())?;
                }
                None => self.write(&render(&batch, false)?)?,
            }
            Ok(())
        })
    }

    /// The last subtask to finish ends the table.
    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async {
            if let Some(tableau) = &self.tableau {
                let mut tableau = lock(tableau);
                tableau.writers = tableau.writers.saturating_sub(1);
                if tableau.writers == 0 {
                    let footer = tableau.footer();
                    self.write(footer.as_bytes())?;
                }
            }
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

    /// Flink's tableau: one header, rows appended batch after batch, right-aligned in
    /// columns as wide as their type (BIGINT 20, strings at most 30, longer values cut),
    /// NULL as `<NULL>`, then the bottom border and the count.
    #[test]
    fn a_tableau_prints_its_header_once_and_rows_as_they_come() {
        use arrow::array::StringArray;
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |n: Vec<i64>, s: Vec<Option<&str>>| {
            let columns: Vec<arrow::array::ArrayRef> = vec![
                Arc::new(Int64Array::from(n)),
                Arc::new(StringArray::from(s)),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
        };
        let mut tableau = Tableau::default();
        assert_eq!(tableau.footer(), "Empty set\n");
        let mut out = tableau
            .rows(&batch(vec![1, 2], vec![Some("a"), None]))
            .unwrap();
        let long = "x".repeat(40);
        out += &tableau.rows(&batch(vec![3], vec![Some(&long)])).unwrap();
        out += &tableau.footer();
        let border = format!("+{}+{}+", "-".repeat(22), "-".repeat(32));
        let expected = [
            border.clone(),
            format!("| {:>20} | {:>30} |", "n", "s"),
            border.clone(),
            format!("| {:>20} | {:>30} |", 1, "a"),
            format!("| {:>20} | {:>30} |", 2, "<NULL>"),
            format!("| {:>20} | {}... |", 3, "x".repeat(27)),
            border,
            "Received a total of 3 rows".to_string(),
        ];
        assert_eq!(out, expected.join("\n") + "\n");
    }
}
