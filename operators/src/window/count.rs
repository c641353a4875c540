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

    /// Adds `rows` (in arrival order) to a key's open window; returns the windows they filled:
    /// the row that filled each, and its values.
    fn add(
        accumulators: &RowAccumulators,
        window: &mut OpenWindow,
        rows: &[u32],
        size: i64,
        inputs: &[(Vec<ArrayRef>, Option<BooleanArray>)],
    ) -> Result<Vec<(u32, Vec<ScalarValue>)>> {
        let mut filled = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            if window.rows == 0 {
                window.accumulators = accumulators.create()?;
            }
            // (At least one row: a window restored with more rows than `size` fires now.)
            let room = usize::try_from(size - window.rows).unwrap_or(0).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            RowAccumulators::feed(&mut window.accumulators, inputs, now, false)?;
            window.rows += now.len() as i64;
            if let (true, Some(&last)) = (window.rows >= size, now.last()) {
                let values = RowAccumulators::evaluate(&mut window.accumulators)?;
                filled.push((last, values));
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
        // Rows of each key in arrival order.
        let by_key = crate::group_index::rows_by_key(&encoded);
        let inputs = self.accumulators.aggregates().inputs(&batch)?;
        let state = ctx.state_or_err()?;
        // The windows that filled: the row that filled each, its key, its values.
        let mut fired: Vec<(u32, &[u8], Vec<ScalarValue>)> = Vec::new();
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
            fired.extend(filled?.into_iter().map(|(row, values)| (row, key, values)));
        }
        if fired.is_empty() {
            return Ok(());
        }
        // In the order the windows filled, as Flink's.
        fired.sort_unstable_by_key(|(row, _, _)| *row);
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::new(); self.accumulators.aggregates().output_fields().len()];
        for (_, _, window) in &mut fired {
            for (column, value) in values.iter_mut().zip(std::mem::take(window)) {
                column.push(value);
            }
        }
        let keys = self
            .core
            .keys_of_bytes(fired.iter().map(|(_, key, _)| *key))?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use weir_engine::operator::{OperatorFactory, Timers};
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::InMemoryStateBackend;

    use super::*;
    use crate::window::{WindowAggregateConfig, WindowAggregateFactory, WindowSpec};

    /// Windows come out in the order they filled, across keys; a key's next window starts
    /// with the row after the one that filled the last.
    #[test]
    fn windows_fire_in_the_order_they_fill() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let factory = WindowAggregateFactory::new(WindowAggregateConfig {
            window: WindowSpec::count(2),
            time_column: String::new(),
            keys: vec!["k".into()],
            aggregates: vec![datafusion_functions_aggregate::sum::sum(
                datafusion_expr::col("v"),
            )],
            processing_time: false,
            early_fire: None,
        });
        let mut op = factory
            .create(&SubtaskContext::standalone(vec![Arc::clone(&schema)]))
            .unwrap();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 2, 1, 1, 1])),
                Arc::new(Int64Array::from(vec![1, 10, 20, 2, 3, 4])),
            ],
        )
        .unwrap();
        let all = KeyGroupRange::all(128);
        let mut timers = Timers::default();
        let mut backend = InMemoryStateBackend::default();
        let state = OperatorState::new(&mut backend, "c", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        op.process_batch(batch, &mut ctx).unwrap();
        let out = ctx.take_batches();
        let column = |i: usize| {
            out[0]
                .column(i)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(column(0), vec![2, 1, 1]);
        assert_eq!(column(1), vec![30, 3, 7]);
    }
}
