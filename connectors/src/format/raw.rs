//! Raw lines: each line is one value of the single STRING or BYTES column.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::LineDecoder;

/// Decodes lines into a one-column batch.
pub struct RawDecoder {
    schema: SchemaRef,
}

impl RawDecoder {
    /// `schema` must have exactly one STRING or BYTES column.
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        match schema
            .fields()
            .iter()
            .map(|f| f.data_type())
            .collect::<Vec<_>>()[..]
        {
            [DataType::Utf8] | [DataType::Binary] => Ok(RawDecoder { schema }),
            _ => Err(ArrowError::SchemaError(
                "the raw format needs exactly one STRING or BYTES column".into(),
            )),
        }
    }
}

impl LineDecoder for RawDecoder {
    fn decode(&mut self, lines: &[u8]) -> Result<RecordBatch, ArrowError> {
        let values = lines
            .split_inclusive(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\n").unwrap_or(l))
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let column: ArrayRef = match self.schema.field(0).data_type() {
            DataType::Utf8 => {
                let mut builder = StringBuilder::new();
                for value in values {
                    let text = std::str::from_utf8(value)
                        .map_err(|e| ArrowError::ParseError(format!("line is not UTF-8: {e}")))?;
                    builder.append_value(text);
                }
                Arc::new(builder.finish())
            }
            _ => {
                let mut builder = BinaryBuilder::new();
                for value in values {
                    builder.append_value(value);
                }
                Arc::new(builder.finish())
            }
        };
        RecordBatch::try_new(SchemaRef::clone(&self.schema), vec![column])
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}
