//! Early results of windows, as Flink's `table.exec.emit.early-fire.enabled` and
//! `table.exec.emit.early-fire.delay` (which Flink offers for its legacy group windows only).
//!
//! A window with early firing emits its partial result every delay of processing time (0:
//! after every batch) before it closes, and its final result when it closes, as an updating
//! result: a group's first result is `+I`, a changed one `-U` (the result emitted before) then
//! `+U`; an unchanged one emits nothing. [`EarlyFiring`] keeps, per open window, the result
//! row emitted for each group (Arrow's row format), turns each new result into those changes,
//! and frees a window when it closes. It is checkpointed with the window's state.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::{concat_batches, interleave};
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use weir_engine::changelog::{kind_array, with_row_kind, RowKind};
use weir_engine::partition::KeyHasher;
use weir_engine::state::OperatorState;

use crate::error::Result;
use crate::group_index::KeyEncoder;
use crate::row_format::decode_rows;
use crate::state_codec::{read_table, write_table};

const EMITTED_TABLE: &str = "early-emitted";

/// What the windows with early results emitted so far (see the module).
pub(crate) struct EarlyFiring {
    /// Processing time between early results (ms); 0: after every batch.
    pub(crate) delay_ms: i64,
    /// Whole result rows (window bounds, keys, aggregates).
    rows: RowConverter,
    /// The key columns of a result row (after the window bounds; none for a global window).
    keys: KeyEncoder,
    key_columns: Vec<usize>,
    /// The window output without and with the row kind.
    results: SchemaRef,
    output: SchemaRef,
    hasher: KeyHasher,
    /// Per open window `(end, start)`: what it emitted.
    emitted: BTreeMap<(i64, i64), Emitted>,
}

/// Group key -> the result row emitted for it (both in Arrow's row format).
type Emitted = HashMap<Box<[u8]>, Box<[u8]>>;

impl EarlyFiring {
    /// For window results of schema `results` (window_start, window_end, then the keys
    /// `key_names`, then the aggregates).
    pub(crate) fn new(
        delay_ms: i64,
        results: &SchemaRef,
        key_names: &[String],
        max_key_groups: u16,
    ) -> Result<Self> {
        let sort = |i: usize| SortField::new(results.field(i).data_type().clone());
        let key_columns: Vec<usize> = (2..2 + key_names.len()).collect();
        Ok(EarlyFiring {
            delay_ms,
            rows: RowConverter::new((0..results.fields().len()).map(sort).collect())?,
            keys: KeyEncoder::new(
                &key_columns
                    .iter()
                    .map(|&i| Arc::clone(&results.fields()[i]))
                    .collect::<Vec<_>>(),
            )?,
            key_columns,
            output: with_row_kind(results),
            results: Arc::clone(results),
            hasher: KeyHasher::new(results, key_names, max_key_groups)?,
            emitted: BTreeMap::new(),
        })
    }

    /// The changes from what window `(end, start)` emitted before to `result` (its rows for
    /// every group); with `last` the window closes and is forgotten. `None`: no change.
    pub(crate) fn changes(
        &mut self,
        window: (i64, i64),
        result: &RecordBatch,
        last: bool,
    ) -> Result<Option<RecordBatch>> {
        let keys: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| Arc::clone(result.column(i)))
            .collect();
        let keys = self.keys.encode(&keys, result.num_rows())?;
        let rows = self.rows.convert_columns(result.columns())?;
        let emitted = self.emitted.entry(window).or_default();
        // (kind, 0: a row of `result` / 1: an old row, index)
        let mut changes: Vec<(RowKind, usize, usize)> = Vec::new();
        let mut old: Vec<Box<[u8]>> = Vec::new();
        for i in 0..result.num_rows() {
            let row = rows.row(i);
            match emitted.insert(Box::from(keys.row(i).as_ref()), Box::from(row.as_ref())) {
                Some(previous) if *previous == *row.as_ref() => {}
                Some(previous) => {
                    changes.push((RowKind::UpdateBefore, 1, old.len()));
                    old.push(previous);
                    changes.push((RowKind::UpdateAfter, 0, i));
                }
                None => changes.push((RowKind::Insert, 0, i)),
            }
        }
        if last {
            self.emitted.remove(&window);
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

    /// Writes the emitted rows of every open window, per key group.
    pub(crate) fn snapshot(&self, state: &mut OperatorState<'_>) -> Result<()> {
        let rows = self
            .emitted
            .values()
            .flat_map(|w| w.values().map(|r| &r[..]));
        let columns = decode_rows(&self.rows, rows)?;
        let batch = match columns.is_empty() {
            true => RecordBatch::new_empty(Arc::clone(&self.results)),
            false => RecordBatch::try_new(Arc::clone(&self.results), columns)?,
        };
        write_table(state, EMITTED_TABLE, &self.hasher, &batch, 0)
    }

    /// Reads back what [`EarlyFiring::snapshot`] wrote for this subtask's key groups.
    pub(crate) fn restore(&mut self, state: &OperatorState<'_>) -> Result<()> {
        let parts: Vec<RecordBatch> = read_table(state, EMITTED_TABLE, &self.results)?
            .into_iter()
            .map(|(_, batch)| batch)
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.results, &parts)?;
        let starts = batch
            .column(0)
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let ends = batch
            .column(1)
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let keys: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let keys = self.keys.encode(&keys, batch.num_rows())?;
        let rows = self.rows.convert_columns(batch.columns())?;
        for i in 0..batch.num_rows() {
            self.emitted
                .entry((ends.value(i), starts.value(i)))
                .or_default()
                .insert(
                    Box::from(keys.row(i).as_ref()),
                    Box::from(rows.row(i).as_ref()),
                );
        }
        Ok(())
    }
}
