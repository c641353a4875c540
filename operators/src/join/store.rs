//! The rows one side of a join keeps: by encoded join key, each with its event time, the time
//! it expires (a watermark at or past it frees it) and whether it has matched yet (an outer
//! join pads the unmatched ones when they expire). Rows stay in their input batches
//! ([`RowBuffer`]); a batch is freed when its last kept row is.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use hashbrown::HashMap;

use crate::row_buffer::{RowBuffer, RowRef};

/// One kept row.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub row: RowRef,
    /// Event time (ms).
    pub time: i64,
    /// The watermark at or past which the row can match nothing more.
    pub expires: i64,
    pub matched: bool,
}

/// A row to keep: its index in the batch being added, encoded key, time, expiry, matched.
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    pub row: u32,
    pub key: &'a [u8],
    pub time: i64,
    pub expires: i64,
    pub matched: bool,
}

/// The kept rows of one side.
#[derive(Debug)]
pub struct SideStore {
    rows: RowBuffer,
    by_key: HashMap<Vec<u8>, Vec<Entry>>,
    /// Expiry time -> keys with a row expiring then (a key once per row).
    expiry: BTreeMap<i64, Vec<Box<[u8]>>>,
    len: usize,
}

impl SideStore {
    pub fn new(schema: SchemaRef) -> Self {
        SideStore {
            rows: RowBuffer::new(schema),
            by_key: HashMap::new(),
            expiry: BTreeMap::new(),
            len: 0,
        }
    }

    /// Number of rows kept.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps `rows` of `batch`.
    pub fn insert(&mut self, batch: RecordBatch, rows: Vec<NewRow<'_>>) {
        if rows.is_empty() {
            return;
        }
        let id = self.rows.add(batch, rows.len());
        self.len += rows.len();
        for new in rows {
            self.expiry
                .entry(new.expires)
                .or_default()
                .push(Box::from(new.key));
            self.by_key.entry_ref(new.key).or_default().push(Entry {
                row: RowRef {
                    batch: id,
                    row: new.row,
                },
                time: new.time,
                expires: new.expires,
                matched: new.matched,
            });
        }
    }

    /// The rows kept under `key`.
    pub fn get(&self, key: &[u8]) -> &[Entry] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// The rows kept under `key`, to mark matches.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Vec<Entry>> {
        self.by_key.get_mut(key)
    }

    /// Removes and returns every row that expires at or before `watermark`, in expiry order.
    /// Their batches stay buffered until [`SideStore::release`].
    pub fn expire(&mut self, watermark: i64) -> Vec<Entry> {
        let mut removed = Vec::new();
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let Some(entries) = self.by_key.get_mut(&*key) else {
                    continue;
                };
                entries.retain(|e| {
                    let expired = e.expires <= watermark;
                    if expired {
                        removed.push(*e);
                    }
                    !expired
                });
                if entries.is_empty() {
                    self.by_key.remove(&*key);
                }
            }
        }
        self.len -= removed.len();
        removed
    }

    /// The referenced rows as one batch.
    pub fn gather(&self, rows: &[RowRef]) -> Result<RecordBatch, ArrowError> {
        self.rows.gather(rows)
    }

    /// Frees the buffered rows of expired entries.
    pub fn release(&mut self, rows: &[RowRef]) {
        self.rows.release(rows);
    }

    /// Every kept row (for snapshots), grouped by key.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.by_key.values().flatten()
    }

    /// Number of input batches held (for tests of memory release).
    pub fn batches_held(&self) -> usize {
        self.rows.batches_held()
    }
}
