//! JSON lines into Arrow, through arrow-json's decoder.
//!
//! Nested objects become structs, arrays become lists; TIMESTAMP columns accept Flink's
//! `yyyy-MM-dd HH:mm:ss.SSS` and ISO-8601 text; numbers must fit their declared type.

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;

use super::LineDecoder;

/// Decodes JSON lines of a fixed schema.
pub struct JsonDecoder {
    schema: SchemaRef,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef) -> Self {
        JsonDecoder { schema }
    }
}

impl LineDecoder for JsonDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        let rows = super::count_lines(lines).max(1);
        let mut decoder = ReaderBuilder::new(SchemaRef::clone(&self.schema))
            .with_batch_size(rows)
            .build_decoder()?;
        super::feed(lines, |bytes| decoder.decode(bytes))?;
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(SchemaRef::clone(&self.schema))))
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}
