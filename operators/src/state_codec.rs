//! Pieces of operator state encoding shared by the operators: an Arrow batch as bytes behind
//! a format version byte ([`encode`], [`decode`]: the pane windows' runs), length-prefixed
//! parts of a state table value ([`put_bytes`], [`Parts`]), a value kept as its bytes
//! ([`BytesCodec`], [`upsert_row`]), the watermark per key group, and the refusal of
//! snapshots of the format before state tables (format 0: one Arrow IPC snapshot per key
//! group). Restored bytes may be damaged or come from another job: [`decode`] checks them
//! against the layout the operator expects.

use std::io::Cursor;

use arrow::datatypes::{DataType, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use weir_engine::partition::KeyGroup;
use weir_engine::state::table::{StateCodec, StateTable};
use weir_engine::state::{OperatorState, StateError};

use crate::error::{OperatorError, Result};

/// Format version of state written by this build.
/// 2: pane windows store all panes of a key group in one entry.
pub const STATE_FORMAT_VERSION: u8 = 2;

/// `[version][metadata i64 LE][Arrow IPC stream of batch]`.
pub fn encode(metadata: i64, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut bytes = vec![STATE_FORMAT_VERSION];
    bytes.extend_from_slice(&metadata.to_le_bytes());
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(bytes)
}

/// Inverse of [`encode`], for state whose columns have the types of `expected`'s (names
/// aside); `table` and `group` name the entry in errors.
pub fn decode(
    bytes: &[u8],
    table: &str,
    group: KeyGroup,
    expected: &Schema,
) -> Result<(i64, RecordBatch)> {
    let corrupt = |reason: String| StateError::Corrupt {
        table: table.to_string(),
        key_group: group.0,
        reason,
    };
    if bytes.len() < 9 {
        return Err(corrupt("entry shorter than its header".into()).into());
    }
    if bytes[0] != STATE_FORMAT_VERSION {
        return Err(corrupt(format!(
            "state format version {} is not readable by this build (which reads {STATE_FORMAT_VERSION})",
            bytes[0]
        ))
        .into());
    }
    let mut header = [0u8; 8];
    header.copy_from_slice(&bytes[1..9]);
    let metadata = i64::from_le_bytes(header);
    let reader = StreamReader::try_new(Cursor::new(&bytes[9..]), None)
        .map_err(|e| corrupt(e.to_string()))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| corrupt("no batch in entry".into()))?;
    let types = |s: &Schema| -> Vec<DataType> {
        s.fields().iter().map(|f| f.data_type().clone()).collect()
    };
    if types(&schema) != types(expected) {
        return Err(corrupt(format!(
            "its columns ({}) are not the operator's ({})",
            column_types(&schema),
            column_types(expected)
        ))
        .into());
    }
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    Ok((metadata, batch))
}

fn column_types(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// State table holding an operator's watermark per key group.
const WATERMARK_TABLE: &str = "watermark";

/// Appends `bytes` after their length (u32, big endian): one part of a state value.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads the parts of a state value one after another, each read checked: a value cut short
/// is an error naming `what`, never a panic.
pub struct Parts<'b> {
    rest: &'b [u8],
    what: &'static str,
}

impl<'b> Parts<'b> {
    pub fn new(bytes: &'b [u8], what: &'static str) -> Self {
        Parts { rest: bytes, what }
    }

    /// Whether every part was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn short(&self) -> StateError {
        StateError::Encoding(format!("{} cut short", self.what))
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], StateError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.short())?;
        self.rest = tail;
        Ok(*head)
    }

    pub fn u32(&mut self) -> std::result::Result<u32, StateError> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn i64(&mut self) -> std::result::Result<i64, StateError> {
        self.array().map(i64::from_be_bytes)
    }

    /// The next bytes [`put_bytes`] wrote.
    pub fn bytes(&mut self) -> std::result::Result<&'b [u8], StateError> {
        let length = self.u32()? as usize;
        let (head, tail) = self
            .rest
            .split_at_checked(length)
            .ok_or_else(|| self.short())?;
        self.rest = tail;
        Ok(head)
    }
}

/// A state table value kept as its bytes (a row in Arrow's row format). An Arrow row is never
/// empty, so an empty value stands for a key without a row ([`upsert_row`]).
pub struct BytesCodec;

impl StateCodec for BytesCodec {
    type Value = Box<[u8]>;

    fn encode(
        &self,
        values: &mut [&mut Box<[u8]>],
    ) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        Ok(values.iter().map(|value| value.to_vec()).collect())
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<Box<[u8]>, StateError> {
        Ok(Box::from(bytes))
    }

    fn memory_bytes(&self, value: &Box<[u8]>) -> usize {
        value.len() + std::mem::size_of::<Box<[u8]>>()
    }
}

/// What [`upsert_row`] did to a key's row.
pub enum Upsert {
    /// The key had none: the row is kept.
    Inserted,
    /// The key had this row already (nothing written).
    Unchanged,
    /// The key's row was replaced; the old one.
    Replaced(Box<[u8]>),
}

/// Makes `row` the row of `key` (in key group `group`) in `table`.
pub fn upsert_row(
    table: &mut StateTable<BytesCodec>,
    state: &mut OperatorState<'_>,
    group: KeyGroup,
    key: &[u8],
    row: &[u8],
) -> std::result::Result<Upsert, StateError> {
    table.update_with(state, group, key, Box::default, |kept| {
        if kept.is_empty() {
            *kept = Box::from(row);
            (Upsert::Inserted, true)
        } else if **kept == *row {
            (Upsert::Unchanged, false)
        } else {
            (
                Upsert::Replaced(std::mem::replace(kept, Box::from(row))),
                true,
            )
        }
    })
}

/// Refuses a snapshot that holds `legacy`, a table of the format before state tables
/// (format 0: one Arrow snapshot per key group), which this build reads as state table
/// `table` of format `version`.
pub fn refuse_format_0(
    state: &weir_engine::state::OperatorState<'_>,
    legacy: &str,
    table: &str,
    version: u16,
) -> Result<()> {
    if state.has_entries(legacy)? {
        return Err(OperatorError::Plan(format!(
            "its '{legacy}' state is in format 0 (one snapshot per key group), which this build does not read (it reads table '{table}' format {version}); resume with the Weir version that wrote the checkpoint, or start without it"
        )));
    }
    Ok(())
}

/// Records an operator's watermark in every key group this subtask owns, so that a restored
/// subtask (at any parallelism) knows which windows have fired and which rows are late before
/// the first watermark after recovery arrives.
pub fn snapshot_watermark(
    state: &mut weir_engine::state::OperatorState<'_>,
    watermark: Option<i64>,
) -> Result<()> {
    state.clear_owned(WATERMARK_TABLE)?;
    if let Some(watermark) = watermark {
        let range = state.key_groups();
        for group in range.start..range.end {
            state.put(
                WATERMARK_TABLE,
                KeyGroup(group),
                b"",
                watermark.to_le_bytes().to_vec(),
            )?;
        }
    }
    Ok(())
}

/// The smallest watermark (ms) recorded by [`snapshot_watermark`] for the key groups this
/// subtask owns; errors on an entry that is not 8 bytes.
pub fn restore_watermark(state: &weir_engine::state::OperatorState<'_>) -> Result<Option<i64>> {
    let mut restored: Option<i64> = None;
    for entry in state.scan_owned(WATERMARK_TABLE)? {
        let bytes: [u8; 8] = entry.value.as_slice().try_into().map_err(|_| {
            weir_engine::state::StateError::Corrupt {
                table: WATERMARK_TABLE.into(),
                key_group: entry.group.0,
                reason: "watermark entry is not 8 bytes".into(),
            }
        })?;
        let watermark = i64::from_le_bytes(bytes);
        restored = Some(restored.map_or(watermark, |w| w.min(watermark)));
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn round_trip_and_version_check() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let mut bytes = encode(42, &batch).unwrap();
        let (meta, back) = decode(&bytes, "t", KeyGroup(0), &schema).unwrap();
        assert_eq!(meta, 42);
        assert_eq!(back, batch);
        let other = Schema::new(vec![Field::new("k", DataType::Utf8, false)]);
        let err = decode(&bytes, "t", KeyGroup(3), &other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("are not the operator's"), "{err}");
        // Every truncation of the bytes decodes or is an error, never a panic; one inside
        // the header or the first message is an error.
        for cut in 0..bytes.len() {
            let decoded = decode(&bytes[..cut], "t", KeyGroup(0), &schema);
            if cut < 16 {
                assert!(decoded.is_err(), "cut at {cut}");
            }
        }
        bytes[0] = 99;
        let err = decode(&bytes, "t", KeyGroup(7), &schema)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 99") && err.contains("t/7"), "{err}");
    }
}
