//! The rows one side of a time-bounded join keeps until the watermark frees them (an interval
//! join's two sides, a temporal join's waiting left rows), in a state table
//! ([`weir_engine::state::table`]) by encoded join key: each row in Arrow's row format with
//! its event time, the watermark at or past which it expires and whether it has matched (an
//! outer join pads the unmatched ones when they expire). Keys beyond the memory budget live
//! in RocksDB; checkpoints write the keys changed since the last one.
//!
//! Each key's earliest expiry is indexed in memory (counted against the budget), so a
//! watermark finds the expired rows without a scan; a restore rebuilds the index from the
//! table.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use weir_engine::operator::SubtaskContext;
use weir_engine::partition::KeyGroup;
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};

use crate::error::Result;
use crate::row_format::decode_rows;
use crate::state_codec::{put_bytes, Parts};
use crate::time_index::TimeIndex;

/// A kept row's time, expiry and matched flag; its bytes are in its key's [`KeyKept`].
#[derive(Debug, Clone, Copy)]
pub struct Kept {
    /// Where the row's bytes end in [`KeyKept::data`] (u32: a kept row is 24 bytes).
    end: u32,
    /// Event time (ms).
    pub time: i64,
    /// The watermark at or past which the row can match nothing more.
    pub expires: i64,
    pub matched: bool,
}

/// A row to keep: its index in the batch being added, encoded key and its key group, time,
/// expiry, matched.
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    pub row: u32,
    pub key: &'a [u8],
    pub group: KeyGroup,
    pub time: i64,
    pub expires: i64,
    pub matched: bool,
}

/// The rows under one key: their bytes (Arrow's row format, the side's columns) one after
/// another, and per row its time, expiry and matched flag (one allocation each, not one per
/// row).
#[derive(Debug, Default)]
pub struct KeyKept {
    data: Vec<u8>,
    rows: Vec<Kept>,
    /// The earliest expiry of the rows (kept up as rows come, so that adding a row to a key
    /// with many costs no scan).
    earliest: Option<i64>,
}

impl KeyKept {
    /// Errors if the key's rows would pass 4 GiB.
    fn push(
        &mut self,
        row: &[u8],
        time: i64,
        expires: i64,
        matched: bool,
    ) -> std::result::Result<(), StateError> {
        let end = u32::try_from(self.data.len() + row.len()).map_err(|_| {
            StateError::Encoding("one join key's kept rows would pass 4 GiB".into())
        })?;
        self.data.extend_from_slice(row);
        self.earliest = Some(self.earliest.map_or(expires, |e| e.min(expires)));
        self.rows.push(Kept {
            end,
            time,
            expires,
            matched,
        });
        Ok(())
    }

    /// The rows with their bytes, in the order they were kept.
    pub fn rows(&self) -> impl Iterator<Item = (&[u8], &Kept)> {
        let starts = std::iter::once(0).chain(self.rows.iter().map(|k| k.end as usize));
        starts
            .zip(&self.rows)
            .map(|(start, kept)| (&self.data[start..kept.end as usize], kept))
    }

    fn earliest(&self) -> Option<i64> {
        self.earliest
    }

    /// Removes the rows expiring at or before `watermark`, handing each to `expired`;
    /// returns whether any was.
    fn remove_expired(
        &mut self,
        watermark: i64,
        expired: &mut dyn FnMut(&[u8], &Kept),
    ) -> std::result::Result<bool, StateError> {
        if self.earliest.is_none_or(|e| e > watermark) {
            return Ok(false);
        }
        let mut kept = KeyKept::default();
        for (row, k) in self.rows() {
            match k.expires <= watermark {
                true => expired(row, k),
                false => kept.push(row, k.time, k.expires, k.matched)?,
            }
        }
        *self = kept;
        Ok(true)
    }
}

/// Stores a key's rows: a count (u32, big endian), then per row its bytes (length first),
/// time and expiry (i64) and matched flag (one byte).
struct KeptCodec;

impl StateCodec for KeptCodec {
    type Value = KeyKept;

    fn encode(&self, keys: &mut [&mut KeyKept]) -> std::result::Result<Vec<Vec<u8>>, StateError> {
        Ok(keys
            .iter()
            .map(|key| {
                let mut out = Vec::with_capacity(key.data.len() + 21 * key.rows.len() + 4);
                out.extend_from_slice(&(key.rows.len() as u32).to_be_bytes());
                for (row, kept) in key.rows() {
                    put_bytes(&mut out, row);
                    out.extend_from_slice(&kept.time.to_be_bytes());
                    out.extend_from_slice(&kept.expires.to_be_bytes());
                    out.push(u8::from(kept.matched));
                }
                out
            })
            .collect())
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> std::result::Result<KeyKept, StateError> {
        let mut parts = Parts::new(bytes, "a join key's kept rows");
        let count = parts.u32()? as usize;
        let mut key = KeyKept {
            data: Vec::with_capacity(bytes.len()),
            rows: Vec::with_capacity(count.min(1 << 16)),
            earliest: None,
        };
        for _ in 0..count {
            let row = parts.bytes()?;
            let time = parts.i64()?;
            let expires = parts.i64()?;
            let [matched] = parts.array::<1>()?;
            key.push(row, time, expires, matched != 0)?;
        }
        Ok(key)
    }

    fn memory_bytes(&self, key: &KeyKept) -> usize {
        key.data.capacity()
            + key.rows.capacity() * std::mem::size_of::<Kept>()
            + std::mem::size_of::<KeyKept>()
    }
}

/// The format version of the kept rows' tables.
pub const KEPT_FORMAT: u16 = 1;

/// The kept rows of one side.
pub struct SideStore {
    table: StateTable<KeptCodec>,
    rows: RowConverter,
    schema: SchemaRef,
    /// Every key with kept rows by its earliest expiry.
    expiry: TimeIndex,
}

impl SideStore {
    /// An empty store of rows of `schema` in state table `table`.
    pub fn new(table: &'static str, schema: SchemaRef, context: &SubtaskContext) -> Result<Self> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let spec = TableSpec {
            name: table,
            version: KEPT_FORMAT,
            ttl: None,
        };
        Ok(SideStore {
            table: context.state_table(spec, KeptCodec),
            rows: RowConverter::new(fields)?,
            schema,
            expiry: TimeIndex::new(context),
        })
    }

    /// The rows kept under `key`.
    pub fn get(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<&KeyKept>> {
        Ok(self.table.get(state, group, key)?)
    }

    /// Marks the row at `position` under `key` matched.
    pub fn mark_matched(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
        position: usize,
    ) -> Result<()> {
        self.table
            .update_with(state, group, key, KeyKept::default, |kept| {
                match kept.rows.get_mut(position) {
                    Some(row) if !row.matched => {
                        row.matched = true;
                        ((), true)
                    }
                    _ => ((), false),
                }
            })?;
        Ok(())
    }

    /// Keeps `rows` of `batch` (of the store's schema).
    pub fn insert(
        &mut self,
        state: &mut OperatorState<'_>,
        batch: &RecordBatch,
        rows: Vec<NewRow<'_>>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let converted = self.rows.convert_columns(batch.columns())?;
        for new in rows {
            let row = converted.row(new.row as usize);
            let earliest =
                self.table
                    .update_with(state, new.group, new.key, KeyKept::default, |key| {
                        let before = key.earliest();
                        match key.push(row.as_ref(), new.time, new.expires, new.matched) {
                            Ok(()) => (Ok(before), true),
                            Err(error) => (Err(error), false),
                        }
                    })??;
            let now = earliest.map_or(new.expires, |before| before.min(new.expires));
            self.expiry.reindex(earliest, Some(now), new.group, new.key);
        }
        Ok(())
    }

    /// Removes the rows that expire at or before `watermark`, handing each (its bytes and
    /// flags) to `expired`, key by key until about `limit` rows were: whether keys with such
    /// rows remain (call again for the next part).
    pub fn expire(
        &mut self,
        state: &mut OperatorState<'_>,
        watermark: i64,
        limit: usize,
        expired: &mut dyn FnMut(&[u8], &Kept),
    ) -> Result<bool> {
        let count = std::cell::Cell::new(0);
        let mut counted = |row: &[u8], kept: &Kept| {
            count.set(count.get() + 1);
            expired(row, kept);
        };
        while let Some((_, group, key)) = self.expiry.pop_until(watermark) {
            let next = self
                .table
                .update_with(state, group, &key, KeyKept::default, |kept| {
                    match kept.remove_expired(watermark, &mut counted) {
                        Ok(changed) => (Ok(kept.earliest()), changed),
                        Err(error) => (Err(error), false),
                    }
                })??;
            match next {
                Some(expires) => self.expiry.reindex(None, Some(expires), group, &key),
                None => self.table.remove(state, group, &key)?,
            }
            if count.get() >= limit {
                return Ok(self.expiry.first_time().is_some_and(|t| t <= watermark));
            }
        }
        Ok(false)
    }

    /// Rows' bytes as one batch of the store's schema.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        let columns = decode_rows(&self.rows, rows)?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Writes the rows changed since the last flush into the backend (at a barrier).
    pub fn flush(&mut self, state: &mut OperatorState<'_>) -> Result<()> {
        Ok(self.table.flush(state)?)
    }

    /// Rebuilds the expiry index from the restored table (the rows stay in the backend).
    pub fn restore(&mut self, state: &OperatorState<'_>) -> Result<()> {
        let expiry = &mut self.expiry;
        self.table.visit_stored(state, &mut |group, key, kept| {
            expiry.reindex(None, kept.earliest(), group, key);
            Ok(())
        })?;
        Ok(())
    }
}
