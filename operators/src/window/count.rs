//! Count windows: per key, every `size` rows in arrival order form one window.
//!
//! State: a state table (`count_windows`, key: the encoded group key) holds each key's open
//! window: how many rows it has and one row accumulator per aggregate (stored with
//! [`CountedCodec`]), so keys past the memory budget live in RocksDB and a checkpoint writes
//! the keys that changed. A row is added to its key's accumulators; the window fires when it
//! reaches `size` rows, at the end of the batch that filled it, and the key starts over.
//! Windows do not depend on event time or watermarks. As in Flink's `countWindow`, a window
//! still incomplete at end of input is not emitted. Arrival order is only deterministic when
//! each key's rows come from one upstream split.

use std::collections::HashMap;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;
use weir_engine::operator::{Context, Operator, SubtaskContext};
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::BoxError;

use super::WindowCore;
use crate::error::Result;
use crate::row_accumulators::{AccumulatorSet, CountedCodec, RowAccumulators};
use crate::state_codec::refuse_format_0;

/// The state table of each key's open window.
const WINDOWS_TABLE: &str = "count_windows";
/// Format of [`WINDOWS_TABLE`]'s values: [`CountedCodec`]'s row.
const WINDOWS_FORMAT: u16 = 1;
/// The table of the snapshots before state tables (format 0: the open windows' rows),
/// refused when restoring.
const LEGACY_OPEN_TABLE: &str = "open";

/// A key's open window.
struct OpenWindow {
    rows: i64,
    accumulators: AccumulatorSet,
}

struct OpenWindowCodec(CountedCodec);

impl StateCodec for OpenWindowCodec {
    type Value = OpenWindow;

    fn encode(&self, windows: &mut [&mut OpenWindow]) -> Result<Vec<Vec<u8>>, StateError> {
        self.0
            .encode(windows.iter_mut().map(|w| (w.rows, &mut w.accumulators)))
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> Result<OpenWindow, StateError> {
        let (rows, accumulators) = self.0.decode(bytes)?;
        Ok(OpenWindow { rows, accumulators })
    }

    fn memory_bytes(&self, window: &OpenWindow) -> usize {
        std::mem::size_of::<OpenWindow>() + CountedCodec::memory_bytes(&window.accumulators)
    }
}

/// A count window subtask. See the module doc.
pub struct CountWindowOperator {
    core: WindowCore,
    size: i64,
    accumulators: RowAccumulators,
    windows: StateTable<OpenWindowCodec>,
}

impl CountWindowOperator {
    pub(crate) fn new(core: WindowCore, size: usize, context: &SubtaskContext) -> Result<Self> {
        let accumulators = RowAccumulators::new(core.plan.aggregates.clone(), false)?;
        let spec = TableSpec {
            name: WINDOWS_TABLE,
            version: WINDOWS_FORMAT,
            ttl: None,
        };
        let codec = OpenWindowCodec(CountedCodec::new(accumulators.clone())?);
        Ok(CountWindowOperator {
            windows: context.state_table(spec, codec),
            accumulators,
            core,
            size: i64::try_from(size).unwrap_or(i64::MAX),
        })
    }

    /// Adds `rows` (in arrival order) to a key's open window; returns the values of the
    /// windows they filled.
    fn add(
        accumulators: &RowAccumulators,
        window: &mut OpenWindow,
        rows: &[u32],
        size: i64,
        inputs: &[(Vec<ArrayRef>, Option<BooleanArray>)],
    ) -> Result<Vec<Vec<ScalarValue>>> {
        let mut filled = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            if window.rows == 0 {
                window.accumulators = accumulators.create()?;
            }
            let room = usize::try_from(size - window.rows).unwrap_or(usize::MAX);
            let (now, later) = rest.split_at(room.min(rest.len()));
            RowAccumulators::feed(&mut window.accumulators, inputs, now, false)?;
            window.rows += now.len() as i64;
            if window.rows == size {
                filled.push(RowAccumulators::evaluate(&mut window.accumulators)?);
                window.rows = 0;
            }
            rest = later;
        }
        Ok(filled)
    }
}

impl Operator for CountWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let keys = self.core.input_keys(&batch);
        let encoded = self.core.key_rows(&keys, batch.num_rows())?;
        // Rows of each key in arrival order, keys in order of first appearance.
        let mut by_key: Vec<(u32, Vec<u32>)> = Vec::new();
        let mut position: HashMap<&[u8], usize> = HashMap::new();
        for row in 0..batch.num_rows() {
            let at = *position.entry(encoded.row(row).data()).or_insert_with(|| {
                by_key.push((row as u32, Vec::new()));
                by_key.len() - 1
            });
            by_key[at].1.push(row as u32);
        }
        let inputs = self.accumulators.aggregates().inputs(&batch)?;
        let state = ctx.state_or_err()?;
        let mut fired_keys: Vec<&[u8]> = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::new(); self.accumulators.aggregates().output_fields().len()];
        for (first, rows) in &by_key {
            let key = encoded.row(*first as usize).data();
            let group = self.core.state_hasher.key_group_of(key);
            let (accumulators, size) = (&self.accumulators, self.size);
            let new_window = || OpenWindow {
                rows: 0,
                accumulators: Vec::new(),
            };
            let (filled, empty) = self.windows.update(state, group, key, new_window, |w| {
                let filled = Self::add(accumulators, w, rows, size, &inputs);
                (filled, w.rows == 0)
            })?;
            if empty {
                self.windows.remove(state, group, key)?;
            }
            for window in filled? {
                fired_keys.push(key);
                for (column, value) in values.iter_mut().zip(window) {
                    column.push(value);
                }
            }
        }
        if fired_keys.is_empty() {
            return Ok(());
        }
        let keys = self.core.keys_of_bytes(fired_keys)?;
        let values = self.accumulators.value_columns(values)?;
        ctx.emit(self.core.output(None, keys, values)?);
        Ok(())
    }

    fn snapshot_state(&mut self, state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        self.windows.flush(state)?;
        Ok(())
    }

    /// The open windows are in the state backend already, read when their keys come.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> Result<(), BoxError> {
        Ok(refuse_format_0(
            state,
            LEGACY_OPEN_TABLE,
            WINDOWS_TABLE,
            WINDOWS_FORMAT,
        )?)
    }
}
