//! Count windows: per key, every `size` rows in arrival order form one window.
//!
//! Rows wait in a [`RowBuffer`]; when a key's open window reaches `size` rows it fires at the
//! end of the batch that filled it. Windows do not depend on event time or watermarks. As in
//! Flink's `countWindow`, a window still incomplete at end of input is not emitted.
//! Arrival order is only deterministic when each key's rows come from one upstream split.
//!
//! State at a barrier: the rows of every open window, per key group, in arrival order:
//! `open/<key group> = encode(0, rows)`.

use arrow::record_batch::RecordBatch;
use weir_engine::operator::{Context, Operator};
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use super::WindowCore;
use crate::error::Result;
use crate::group_index::GroupIndex;
use crate::row_buffer::{RowBuffer, RowRef};

const OPEN_TABLE: &str = "open";

/// A count window subtask. See the module doc.
pub struct CountWindowOperator {
    core: WindowCore,
    size: usize,
    keys: GroupIndex,
    /// The rows of each key's open window.
    open: Vec<Vec<RowRef>>,
    buffer: Option<RowBuffer>,
}

impl CountWindowOperator {
    pub(crate) fn new(core: WindowCore, size: usize) -> Self {
        CountWindowOperator {
            keys: core.new_group_index(),
            core,
            size,
            open: Vec::new(),
            buffer: None,
        }
    }

    /// Appends the rows of `batch` to their keys' windows; returns the windows that filled.
    fn append(&mut self, batch: RecordBatch) -> Result<Vec<Vec<RowRef>>> {
        let keys = self.core.input_keys(&batch);
        let encoded = self.core.key_rows(&keys, batch.num_rows())?;
        let mut ids = Vec::new();
        self.keys.intern(&encoded, &mut ids);
        if self.open.len() < self.keys.len() {
            self.open.resize_with(self.keys.len(), Vec::new);
        }
        let buffer = self
            .buffer
            .get_or_insert_with(|| RowBuffer::new(batch.schema()));
        let batch_id = buffer.next_id();
        let mut full = Vec::new();
        for (row, key) in ids.into_iter().enumerate() {
            self.open[key].push(RowRef {
                batch: batch_id,
                row: row as u32,
            });
            if self.open[key].len() == self.size {
                full.push(std::mem::take(&mut self.open[key]));
            }
        }
        let rows = batch.num_rows();
        buffer.add(batch, rows);
        Ok(full)
    }
}

impl Operator for CountWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let full = self.append(batch)?;
        if full.is_empty() {
            return Ok(());
        }
        let rows: Vec<RowRef> = full.iter().flatten().copied().collect();
        let groups: Vec<usize> = (0..full.len())
            .flat_map(|w| std::iter::repeat_n(w, self.size))
            .collect();
        let first_rows = (0..full.len()).map(|w| (w * self.size) as u32).collect();
        let buffer = self.buffer.as_mut().expect("rows were buffered");
        let (keys, values) = self
            .core
            .aggregate_buffered(buffer, &rows, &groups, first_rows)?;
        ctx.emit(self.core.output(None, keys, values)?);
        Ok(())
    }

    fn snapshot_state(&mut self, state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        state.clear_owned(OPEN_TABLE)?;
        let Some(buffer) = &self.buffer else {
            return Ok(());
        };
        let rows: Vec<RowRef> = self.open.iter().flatten().copied().collect();
        if rows.is_empty() {
            return Ok(());
        }
        self.core
            .snapshot_rows(state, OPEN_TABLE, &buffer.gather(&rows)?)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> Result<(), BoxError> {
        if let Some(rows) = self.core.restore_rows(state, OPEN_TABLE, &[])? {
            // Each key's open window holds fewer than `size` rows, so nothing fires here.
            self.append(rows)?;
        }
        Ok(())
    }
}
