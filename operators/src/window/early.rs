//! Early results of windows, as Flink's `table.exec.emit.early-fire.enabled` and
//! `table.exec.emit.early-fire.delay` (which Flink offers for its legacy group windows only).
//!
//! A window with early firing emits its partial result every delay of processing time (0:
//! after every batch) before it closes, and its final result when it closes, as an updating
//! result: a group's first result is `+I`, a changed one `-U` (the result emitted before) then
//! `+U`; an unchanged one emits nothing. [`EarlyFiring`] keeps, per open window, the result
//! row emitted for each group (Arrow's row format) in a state table by (window end, window
//! start, group key), turns each new result into those changes, and frees a window's rows
//! when it closes (its last result has every group it ever emitted).

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use weir_engine::changelog::{kind_array, with_row_kind, RowKind};
use weir_engine::operator::SubtaskContext;
use weir_engine::partition::KeyHasher;
use weir_engine::state::table::{StateTable, TableSpec};
use weir_engine::state::OperatorState;

use crate::error::Result;
use crate::row_format::decode_rows;
use crate::state_codec::{refuse_format_0, upsert_row, BytesCodec, Upsert};

/// The state table of the emitted rows, and its format.
const EMITTED_TABLE: &str = "early-results";
const EMITTED_FORMAT: u16 = 1;
/// The table of the format before state tables (format 0: Arrow snapshots per key group).
const LEGACY_EMITTED_TABLE: &str = "early-emitted";

/// What the windows with early results emitted so far (see the module).
pub(crate) struct EarlyFiring {
    /// Processing time between early results (ms); 0: after every batch.
    pub(crate) delay_ms: i64,
    /// Whole result rows (window bounds, keys, aggregates).
    rows: RowConverter,
    /// The window output with the row kind.
    output: SchemaRef,
    /// Encodes and hashes a result row's group key (the key columns after the window bounds;
    /// none for a global window).
    hasher: KeyHasher,
    /// (window end, window start, encoded group key) -> the result row emitted for it.
    emitted: StateTable<BytesCodec>,
}

impl EarlyFiring {
    /// For window results of schema `results` (window_start, window_end, then the keys
    /// `key_names`, then the aggregates).
    pub(crate) fn new(
        delay_ms: i64,
        results: &SchemaRef,
        key_names: &[String],
        context: &SubtaskContext,
    ) -> Result<Self> {
        let sort = |i: usize| SortField::new(results.field(i).data_type().clone());
        let spec = TableSpec {
            name: EMITTED_TABLE,
            version: EMITTED_FORMAT,
            ttl: None,
        };
        Ok(EarlyFiring {
            delay_ms,
            rows: RowConverter::new((0..results.fields().len()).map(sort).collect())?,
            output: with_row_kind(results),
            hasher: KeyHasher::new(results, key_names, context.max_key_groups)?,
            emitted: context.state_table(spec, BytesCodec),
        })
    }

    /// The changes from what window `(end, start)` emitted before to `result` (its rows for
    /// every group); with `last` the window closes and is forgotten. `None`: no change.
    pub(crate) fn changes(
        &mut self,
        window: (i64, i64),
        result: &RecordBatch,
        last: bool,
        state: &mut OperatorState<'_>,
    ) -> Result<Option<RecordBatch>> {
        // A global window's rows have no key (and the one key group of its one subtask).
        let keys = match self.hasher.key_columns().is_empty() {
            true => None,
            false => Some(self.hasher.rows(result)?),
        };
        let rows = self.rows.convert_columns(result.columns())?;
        // (kind, 0: a row of `result` / 1: an old row, index)
        let mut changes: Vec<(RowKind, usize, usize)> = Vec::new();
        let mut old: Vec<Box<[u8]>> = Vec::new();
        let mut slot = Vec::new();
        for i in 0..result.num_rows() {
            let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
            let (group, row) = (self.hasher.key_group_of(key), rows.row(i));
            slot.clear();
            slot.extend_from_slice(&window.0.to_be_bytes());
            slot.extend_from_slice(&window.1.to_be_bytes());
            slot.extend_from_slice(key);
            let upsert = match last {
                false => upsert_row(&mut self.emitted, state, group, &slot, row.as_ref())?,
                // The window closes: its rows are freed.
                true => match self.emitted.take(state, group, &slot)? {
                    None => Upsert::Inserted,
                    Some(previous) if *previous == *row.as_ref() => Upsert::Unchanged,
                    Some(previous) => Upsert::Replaced(previous),
                },
            };
            match upsert {
                Upsert::Inserted => changes.push((RowKind::Insert, 0, i)),
                Upsert::Unchanged => {}
                Upsert::Replaced(previous) => {
                    changes.push((RowKind::UpdateBefore, 1, old.len()));
                    old.push(previous);
                    changes.push((RowKind::UpdateAfter, 0, i));
                }
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        let old = decode_rows(&self.rows, old.iter().map(|r| &r[..]))?;
        let picks: Vec<(usize, usize)> = changes.iter().map(|c| (c.1, c.2)).collect();
        let mut columns: Vec<ArrayRef> = result
            .columns()
            .iter()
            .zip(&old)
            .map(|(new, old)| interleave(&[new.as_ref(), old.as_ref()], &picks))
            .collect::<std::result::Result<_, _>>()?;
        columns.push(kind_array(changes.iter().map(|c| c.0)));
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.output),
            columns,
        )?))
    }

    /// Writes the emitted rows changed since the last snapshot.
    pub(crate) fn snapshot(&mut self, state: &mut OperatorState<'_>) -> Result<()> {
        Ok(self.emitted.flush(state)?)
    }

    /// The emitted rows stay in the backend, read when their windows fire again. A snapshot
    /// of the format before state tables (format 0) is refused.
    pub(crate) fn restore(&mut self, state: &OperatorState<'_>) -> Result<()> {
        refuse_format_0(state, LEGACY_EMITTED_TABLE, EMITTED_TABLE, EMITTED_FORMAT)
    }
}
