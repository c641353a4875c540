//! CSV into Arrow, through arrow-csv's decoder, and Arrow into CSV.
//!
//! Options (Flink's names): `csv.field-delimiter` (default `,`), `csv.quote-character`
//! (default `"`), `csv.null-literal` (default: empty field is NULL only for non-strings),
//! header handling is the source's (`csv.header`: skip the first line of every file).

use arrow::csv::ReaderBuilder;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::LineDecoder;

/// CSV dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub null_literal: Option<String>,
    /// The first line of each file is a header (skipped when reading, written when writing).
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            null_literal: None,
            header: false,
        }
    }
}

/// Decodes CSV lines of a fixed schema.
pub struct CsvDecoder {
    schema: SchemaRef,
    options: CsvOptions,
    null_regex: Option<regex::Regex>,
}

impl CsvDecoder {
    pub fn new(schema: SchemaRef, options: CsvOptions) -> Result<Self, ArrowError> {
        let null_regex = options
            .null_literal
            .as_ref()
            .map(|literal| regex::Regex::new(&format!("^{}$", regex::escape(literal))))
            .transpose()
            .map_err(|e| ArrowError::InvalidArgumentError(e.to_string()))?;
        Ok(CsvDecoder {
            schema,
            options,
            null_regex,
        })
    }
}

impl LineDecoder for CsvDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        let rows = super::count_lines(lines).max(1);
        let mut builder = ReaderBuilder::new(SchemaRef::clone(&self.schema))
            .with_header(false)
            .with_delimiter(self.options.delimiter)
            .with_quote(self.options.quote)
            .with_batch_size(rows);
        if let Some(regex) = &self.null_regex {
            builder = builder.with_null_regex(regex.clone());
        }
        let mut decoder = builder.build_decoder();
        super::feed(lines, |bytes| decoder.decode(bytes))?;
        decoder.decode(&[])?;
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(SchemaRef::clone(&self.schema))))
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}
