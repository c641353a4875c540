//! Row buffer: keeps input batches alive while some of their rows wait in open windows.
//!
//! Session and count windows need their rows until the window fires. Rather than copying rows
//! one by one, the buffer keeps each input batch whole and hands out [`RowRef`]s; a batch is
//! released when no window refers to it any more. Firing gathers the rows of many windows into
//! one batch with a single `interleave`.

use std::collections::HashMap;

use arrow::compute::interleave_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// A row of a buffered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    pub batch: u32,
    pub row: u32,
}

/// Buffered batches with a count of live references each.
#[derive(Debug)]
pub struct RowBuffer {
    schema: SchemaRef,
    batches: HashMap<u32, (RecordBatch, usize)>,
    next_id: u32,
}

impl RowBuffer {
    pub fn new(schema: SchemaRef) -> Self {
        RowBuffer {
            schema,
            batches: HashMap::new(),
            next_id: 0,
        }
    }

    /// The id the next added batch will get.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Keeps `batch`; `refs` of its rows will be held. Returns its id.
    pub fn add(&mut self, batch: RecordBatch, refs: usize) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if refs > 0 {
            self.batches.insert(id, (batch, refs));
        }
        id
    }

    /// The referenced rows, in order, as one batch.
    pub fn gather(&self, rows: &[RowRef]) -> Result<RecordBatch, ArrowError> {
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(SchemaRef::clone(&self.schema)));
        }
        let mut ids: Vec<u32> = rows.iter().map(|r| r.batch).collect();
        ids.sort_unstable();
        ids.dedup();
        let position: HashMap<u32, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let batches: Vec<&RecordBatch> = ids
            .iter()
            .map(|id| {
                &self
                    .batches
                    .get(id)
                    .expect("referenced batches are buffered")
                    .0
            })
            .collect();
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|r| (position[&r.batch], r.row as usize))
            .collect();
        interleave_record_batch(&batches, &indices)
    }

    /// Drops the references `rows`; batches with none left are freed.
    pub fn release(&mut self, rows: &[RowRef]) {
        for row in rows {
            if let Some((_, count)) = self.batches.get_mut(&row.batch) {
                *count -= 1;
                if *count == 0 {
                    self.batches.remove(&row.batch);
                }
            }
        }
    }

    /// Number of batches held.
    pub fn batches_held(&self) -> usize {
        self.batches.len()
    }
}
