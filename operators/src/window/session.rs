//! Session windows: per key, rows whose `[time, time + gap)` intervals touch form one window.
//!
//! Each key has its open sessions, ordered by start; they never overlap. A row opens
//! `[t, t + gap)` and merges every open session it touches (as Flink: intervals that meet or
//! overlap merge, their accumulators merged as Flink's `MergingWindowSet` does). A session
//! fires when the watermark reaches `end - 1`. A row that touches no open session and whose
//! own interval has already fired is late.
//!
//! State: a state table (`session_states`, key: the encoded group key) holds each key's open
//! sessions, each with its bounds and one row accumulator per aggregate (partial states in
//! Arrow's row format when stored), so keys past the memory budget live in RocksDB and a
//! checkpoint writes the keys that changed. An index of every open session by end (a
//! [`TimeIndex`] of (end, key group, key), charged to the budget) stays in memory to fire
//! sessions in order; a restore rebuilds it from the table. Firing emits about [`FIRE_PART_ROWS`] rows per call and asks the
//! runtime to call again for the rest.
//!
//! On processing time (a `PROCTIME()` attribute), a row's time is the clock when it arrives
//! (never at or before a session that fired), sessions fire by the clock's timers, and
//! watermarks fire nothing but, at the end of input, the sessions still open; no row is late.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, RowParser};
use datafusion_common::ScalarValue;
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, SubtaskContext, TimeDomain};
use weir_engine::state::table::{StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::BoxError;

use super::WindowCore;
use crate::error::{OperatorError, Result};
use crate::row_accumulators::{AccumulatorSet, RowAccumulators};
use crate::state_codec::{put_bytes, refuse_format_0, Parts};
use crate::time_index::TimeIndex;
use crate::{FIRE_PART_ROWS, OUTPUT_BATCH_ROWS};

/// The state table of each key's open sessions.
const SESSIONS_TABLE: &str = "session_states";
/// Format of [`SESSIONS_TABLE`]'s values: per session, its row (start, end, partial states).
const SESSIONS_FORMAT: u16 = 1;
/// Where snapshots before this build wrote the index of open sessions (now rebuilt from
/// [`SESSIONS_TABLE`] at restore): ignored, and deleted at the first snapshot.
const LEGACY_INDEX_TABLE: &str = "session_index";
/// The table of the snapshots before state tables (format 0: buffered rows with bounds),
/// refused when restoring.
const LEGACY_SESSIONS_TABLE: &str = "sessions";

/// One open session of a key.
struct Session {
    start: i64,
    end: i64,
    accumulators: AccumulatorSet,
}

/// A key's open sessions, by start.
#[derive(Default)]
struct KeySessions {
    sessions: Vec<Session>,
}

/// Encodes a key's sessions: per session, a row of (start, end, partial states) in Arrow's
/// row format, each after its length.
struct SessionCodec {
    accumulators: RowAccumulators,
    converter: RowConverter,
    parser: RowParser,
}

impl SessionCodec {
    fn new(accumulators: RowAccumulators) -> Result<Self> {
        // Start and end, then the partial states.
        let converter = accumulators.state_rows(2)?;
        Ok(SessionCodec {
            parser: converter.parser(),
            converter,
            accumulators,
        })
    }

    fn try_encode(&self, keys: &mut [&mut KeySessions]) -> Result<Vec<Vec<u8>>> {
        let sessions = keys.iter_mut().flat_map(|k| k.sessions.iter_mut());
        let (mut starts, mut ends, mut sets) = (Vec::new(), Vec::new(), Vec::new());
        for session in sessions {
            starts.push(session.start);
            ends.push(session.end);
            sets.push(&mut session.accumulators);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
        ];
        columns.extend(self.accumulators.states(sets.into_iter())?);
        let rows = self.converter.convert_columns(&columns)?;
        let mut rows = rows.iter();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys.iter() {
            let mut bytes = Vec::new();
            for _ in &key.sessions {
                let row = rows
                    .next()
                    .ok_or_else(|| OperatorError::Plan("a session without its row".into()))?;
                put_bytes(&mut bytes, row.as_ref());
            }
            out.push(bytes);
        }
        Ok(out)
    }

    fn try_decode(&self, bytes: &[u8]) -> Result<KeySessions> {
        let mut parts = Parts::new(bytes, "a key's session windows");
        let mut rows = Vec::new();
        while !parts.is_empty() {
            rows.push(self.parser.parse(parts.bytes()?));
        }
        let columns = self.converter.convert_rows(rows.iter().copied())?;
        let starts = columns[0].as_primitive::<Int64Type>();
        let ends = columns[1].as_primitive::<Int64Type>();
        let mut sessions = Vec::with_capacity(rows.len());
        for row in 0..rows.len() {
            let mut accumulators = self.accumulators.create()?;
            self.accumulators
                .merge(&mut accumulators, &columns[2..], row)?;
            sessions.push(Session {
                start: starts.value(row),
                end: ends.value(row),
                accumulators,
            });
        }
        Ok(KeySessions { sessions })
    }
}

impl StateCodec for SessionCodec {
    type Value = KeySessions;

    fn encode(&self, keys: &mut [&mut KeySessions]) -> Result<Vec<Vec<u8>>, StateError> {
        self.try_encode(keys)
            .map_err(|e| StateError::Encoding(e.to_string()))
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> Result<KeySessions, StateError> {
        // (An older version would be migrated here; there is none.)
        self.try_decode(bytes)
            .map_err(|e| StateError::Encoding(e.to_string()))
    }

    fn memory_bytes(&self, key: &KeySessions) -> usize {
        std::mem::size_of::<KeySessions>()
            + key
                .sessions
                .iter()
                .map(|s| {
                    std::mem::size_of::<Session>()
                        + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
                })
                .sum::<usize>()
    }
}

/// What adding rows did to a key's sessions: the bounds `(start, end)` of the sessions that
/// went (merged or grown) and came, for the index; and which rows were late.
#[derive(Default)]
struct Added {
    gone: Vec<(i64, i64)>,
    new: Vec<(i64, i64)>,
    late: Vec<u32>,
}

/// A session window subtask. See the module doc.
pub struct SessionWindowOperator {
    core: WindowCore,
    gap_ms: i64,
    accumulators: RowAccumulators,
    sessions: StateTable<SessionCodec>,
    /// Every open session by its end (a key's sessions never share one), in firing order.
    by_end: TimeIndex,
    watermark: Option<EventTimeMs>,
    /// The restored snapshot holds [`LEGACY_INDEX_TABLE`] entries to delete.
    legacy_index: bool,
}

impl SessionWindowOperator {
    pub(crate) fn new(core: WindowCore, gap_ms: i64, context: &SubtaskContext) -> Result<Self> {
        let accumulators = RowAccumulators::new(core.plan.aggregates.clone(), false)?;
        let spec = TableSpec {
            name: SESSIONS_TABLE,
            version: SESSIONS_FORMAT,
            ttl: None,
        };
        let codec = SessionCodec::new(accumulators.clone())?;
        Ok(SessionWindowOperator {
            sessions: context.state_table(spec, codec),
            accumulators,
            core,
            gap_ms,
            by_end: TimeIndex::new(context),
            watermark: None,
            legacy_index: false,
        })
    }

    /// Adds rows `rows` (times `times`) of one key to its sessions, merging what they touch.
    fn add(
        accumulators: &RowAccumulators,
        key: &mut KeySessions,
        rows: &[u32],
        times: &[i64],
        gap_ms: i64,
        watermark: Option<EventTimeMs>,
        inputs: &[(Vec<ArrayRef>, Option<arrow::array::BooleanArray>)],
    ) -> Result<Added> {
        let mut added = Added::default();
        let before: Vec<(i64, i64)> = key.sessions.iter().map(|s| (s.start, s.end)).collect();
        // The rows each session gets, by the session's position (rows of merged sessions
        // move to the merged one).
        let mut fed: Vec<Vec<u32>> = vec![Vec::new(); key.sessions.len()];
        for &row in rows {
            let time = times[row as usize];
            let (start, end) = (time, time.saturating_add(gap_ms));
            // Sessions are sorted by start and never touch, so their ends are sorted too and
            // the ones the row touches (end >= start, start <= end) are contiguous.
            let lo = key.sessions.partition_point(|s| s.end < start);
            let hi = key.sessions.partition_point(|s| s.start <= end);
            if lo >= hi {
                if watermark.is_some_and(|w| end - 1 <= w) {
                    added.late.push(row);
                    continue;
                }
                let accumulators = accumulators.create()?;
                key.sessions.insert(
                    lo,
                    Session {
                        start,
                        end,
                        accumulators,
                    },
                );
                fed.insert(lo, vec![row]);
                continue;
            }
            // The touched sessions merge into the first, in order of start.
            let later: Vec<Session> = key.sessions.drain(lo + 1..hi).collect();
            let later_rows: Vec<Vec<u32>> = fed.drain(lo + 1..hi).collect();
            let first = &mut key.sessions[lo];
            for mut other in later {
                merge_sets(&mut first.accumulators, &mut other.accumulators)?;
                first.end = first.end.max(other.end);
            }
            first.start = first.start.min(start);
            first.end = first.end.max(end);
            fed[lo].push(row);
            fed[lo].extend(later_rows.into_iter().flatten());
        }
        for (session, rows) in key.sessions.iter_mut().zip(&mut fed) {
            rows.sort_unstable();
            RowAccumulators::feed(&mut session.accumulators, inputs, rows, false)?;
        }
        let after: Vec<(i64, i64)> = key.sessions.iter().map(|s| (s.start, s.end)).collect();
        added.gone = before
            .iter()
            .filter(|b| !after.contains(b))
            .copied()
            .collect();
        added.new = after
            .iter()
            .filter(|a| !before.contains(a))
            .copied()
            .collect();
        Ok(added)
    }

    /// Fires the sessions ending at or before the watermark + 1 (the watermark rises to
    /// `time`: the input's, or the clock on processing time), about [`FIRE_PART_ROWS`] per
    /// call (asking to be called again for the rest).
    fn advance(&mut self, time: i64, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        self.watermark = Some(self.watermark.map_or(time, |w| w.max(time)));
        let Some(limit) = self.watermark else {
            return Ok(());
        };
        let state = ctx.state_or_err()?;
        let (mut keys, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::new(); self.accumulators.aggregates().output_fields().len()];
        let mut batches = Vec::new();
        let mut emitted = 0;
        // A session fires once the watermark reaches `end - 1`.
        let due = limit.saturating_add(1);
        while self.by_end.first_time().is_some_and(|end| end <= due) {
            if emitted >= FIRE_PART_ROWS {
                ctx.continue_later();
                break;
            }
            let Some((end, group, key)) = self.by_end.pop_until(due) else {
                break;
            };
            let missing = || {
                OperatorError::State(StateError::Io(format!(
                    "the session ending at {end} of a key in key group {} is missing from table '{SESSIONS_TABLE}'",
                    group.0
                )))
            };
            let (result, empty) =
                self.sessions
                    .update_with(state, group, &key, KeySessions::default, |k| {
                        let position = k.sessions.iter().position(|s| s.end == end);
                        let result = position.map(|i| k.sessions.remove(i));
                        let found = result.is_some();
                        ((result, k.sessions.is_empty()), found)
                    })?;
            if empty {
                self.sessions.remove(state, group, &key)?;
            }
            let mut session = result.ok_or_else(missing)?;
            let start = session.start;
            for (column, value) in values
                .iter_mut()
                .zip(RowAccumulators::evaluate(&mut session.accumulators)?)
            {
                column.push(value);
            }
            keys.push(key);
            starts.push(start);
            ends.push(end);
            emitted += 1;
            if keys.len() >= OUTPUT_BATCH_ROWS {
                batches.push(self.output(&mut keys, &mut starts, &mut ends, &mut values)?);
            }
        }
        if !keys.is_empty() {
            batches.push(self.output(&mut keys, &mut starts, &mut ends, &mut values)?);
        }
        batches.into_iter().for_each(|batch| ctx.emit(batch));
        Ok(())
    }

    /// One result batch of the fired sessions collected so far (taken out of the vectors).
    fn output(
        &self,
        keys: &mut Vec<Box<[u8]>>,
        starts: &mut Vec<i64>,
        ends: &mut Vec<i64>,
        values: &mut [Vec<ScalarValue>],
    ) -> Result<RecordBatch> {
        let key_columns = self.core.keys_of_bytes(keys.iter().map(|k| &k[..]))?;
        keys.clear();
        let values: Vec<Vec<ScalarValue>> = values.iter_mut().map(std::mem::take).collect();
        let values = self.accumulators.value_columns(values)?;
        let bounds = Some((std::mem::take(starts), std::mem::take(ends)));
        self.core.output(bounds, key_columns, values)
    }
}

/// Merges the partial states of `other` into `set` (as Flink merges the accumulators of
/// merging session windows).
fn merge_sets(set: &mut AccumulatorSet, other: &mut AccumulatorSet) -> Result<()> {
    for (into, from) in set.iter_mut().zip(other.iter_mut()) {
        let state: Vec<ArrayRef> = from
            .state()?
            .into_iter()
            .map(|value| value.to_array())
            .collect::<std::result::Result<_, _>>()?;
        into.merge_batch(&state)?;
    }
    Ok(())
}

impl Operator for SessionWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let times = self.core.row_times(&batch, self.watermark)?;
        let keys = self.core.input_keys(&batch);
        let encoded = self.core.key_rows(&keys, batch.num_rows())?;
        let by_key = crate::group_index::rows_by_key(&encoded);
        let inputs = self.accumulators.aggregates().inputs(&batch)?;
        let state = ctx.state_or_err()?;
        let mut late = Vec::new();
        for (first, rows) in by_key {
            let key = encoded.row(first as usize);
            let group = self.core.state_hasher.key_group_of(key.as_ref());
            let (accumulators, gap, watermark) = (&self.accumulators, self.gap_ms, self.watermark);
            let added = self.sessions.update_with(
                state,
                group,
                key.as_ref(),
                KeySessions::default,
                |sessions| {
                    let added = Self::add(
                        accumulators,
                        sessions,
                        &rows,
                        &times,
                        gap,
                        watermark,
                        &inputs,
                    );
                    let written = added
                        .as_ref()
                        .map_or(true, |a| !a.new.is_empty() || a.late.len() < rows.len());
                    (added, written)
                },
            )??;
            for (_, end) in added.gone {
                self.by_end.reindex(Some(end), None, group, key.as_ref());
            }
            for (_, end) in added.new {
                self.by_end.reindex(None, Some(end), group, key.as_ref());
            }
            late.extend(added.late);
        }
        if self.core.plan.processing_time {
            // The batch's rows share a time, so one timer (a set: one per millisecond) when
            // their sessions end; an earlier timer of a session that grew finds nothing.
            if let Some(&now) = times.first() {
                let end = now.saturating_add(self.gap_ms);
                ctx.register_timer(TimeDomain::ProcessingTime, end - 1);
            }
        }
        late.sort_unstable();
        self.core.late.emit(&batch, late, ctx)?;
        Ok(())
    }

    /// Event-time sessions fire as the watermark passes their end; processing-time ones
    /// only at the end of input (the `MAX` watermark), for those still open.
    fn on_watermark(
        &mut self,
        watermark: EventTimeMs,
        ctx: &mut Context<'_>,
    ) -> Result<(), BoxError> {
        match self.core.plan.processing_time {
            true if watermark < EventTimeMs::MAX => Ok(()),
            _ => self.advance(watermark, ctx),
        }
    }

    fn on_timer(
        &mut self,
        domain: TimeDomain,
        time: i64,
        ctx: &mut Context<'_>,
    ) -> Result<(), BoxError> {
        match (domain, self.core.plan.processing_time) {
            (TimeDomain::ProcessingTime, true) => self.advance(time, ctx),
            _ => Ok(()),
        }
    }

    /// The next part of the fired sessions.
    fn on_continue(&mut self, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        match self.watermark {
            Some(watermark) => self.advance(watermark, ctx),
            None => Ok(()),
        }
    }

    /// Re-registers the processing-time timers of the sessions a restore brought back.
    fn open(&mut self, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        if self.core.plan.processing_time {
            for (end, _, _) in self.by_end.entries() {
                ctx.register_timer(TimeDomain::ProcessingTime, end.saturating_sub(1));
            }
        }
        Ok(())
    }

    /// Writes the changed keys' sessions.
    fn snapshot_state(&mut self, state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        crate::state_codec::snapshot_watermark(state, self.watermark)?;
        self.sessions.flush(state)?;
        if std::mem::take(&mut self.legacy_index) {
            state.clear_owned(LEGACY_INDEX_TABLE)?;
        }
        Ok(())
    }

    /// Rebuilds the index of open sessions from the table (the sessions stay in the backend
    /// until read).
    fn restore_state(&mut self, state: &OperatorState<'_>) -> Result<(), BoxError> {
        refuse_format_0(
            state,
            LEGACY_SESSIONS_TABLE,
            SESSIONS_TABLE,
            SESSIONS_FORMAT,
        )?;
        self.watermark = crate::state_codec::restore_watermark(state)?;
        self.legacy_index = state.has_entries(LEGACY_INDEX_TABLE)?;
        let by_end = &mut self.by_end;
        self.sessions
            .visit_stored(state, &mut |group, key, sessions| {
                for session in &sessions.sessions {
                    by_end.reindex(None, Some(session.end), group, key);
                }
                Ok(())
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::datatypes::{TimeUnit, TimestampMillisecondType};
    use weir_engine::operator::{OperatorFactory, SubtaskContext, Timers};

    use crate::window::{WindowAggregateConfig, WindowAggregateFactory, WindowSpec};

    /// Processing-time sessions: rows open their session at the clock when they arrive,
    /// watermarks fire nothing (but the end of input), the clock's timers do; a row after a
    /// session fired opens a new one.
    #[test]
    fn processing_time_sessions_fire_by_the_clock_not_the_watermark() {
        let gap = 3_600_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("p", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        ]));
        let factory = WindowAggregateFactory::new(WindowAggregateConfig {
            window: WindowSpec::session(std::time::Duration::from_millis(gap as u64)),
            time_column: "p".into(),
            keys: vec!["k".into()],
            aggregates: vec![datafusion_functions_aggregate::count::count_all()],
            processing_time: true,
            early_fire: None,
        });
        let mut op = factory
            .create(&SubtaskContext::standalone(vec![Arc::clone(&schema)]))
            .unwrap();
        // The column says 1970; the clock says now.
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2])),
                Arc::new(TimestampMillisecondArray::from(vec![0, 0, 0])),
            ],
        )
        .unwrap();
        let mut timers = Timers::default();
        let all = weir_engine::partition::KeyGroupRange::all(128);
        let mut backend = weir_engine::state::InMemoryStateBackend::default();
        let state = OperatorState::new(&mut backend, "s", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        let before = weir_engine::time::now_ms();
        op.process_batch(batch.clone(), &mut ctx).unwrap();
        let after = weir_engine::time::now_ms();
        drop(ctx);
        let timer = timers
            .next_processing_time()
            .expect("a timer at the sessions' end");
        assert!((before + gap - 1..=after + gap - 1).contains(&timer));
        let state = OperatorState::new(&mut backend, "s", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
        op.on_watermark(after + 10 * gap, &mut ctx).unwrap();
        assert!(ctx.take_batches().is_empty(), "a watermark fires nothing");
        op.on_timer(TimeDomain::ProcessingTime, before + gap - 2, &mut ctx)
            .unwrap();
        assert!(ctx.take_batches().is_empty(), "the sessions are open");
        op.on_timer(TimeDomain::ProcessingTime, after + gap - 1, &mut ctx)
            .unwrap();
        let out = ctx.take_batches();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let starts = out[0].column(0).as_primitive::<TimestampMillisecondType>();
        let ends = out[0].column(1).as_primitive::<TimestampMillisecondType>();
        assert!((before..=after).contains(&starts.value(0)));
        assert_eq!(ends.value(0) - starts.value(0), gap);
        // After the timer: a new session, later than the fired one's end.
        op.process_batch(batch, &mut ctx).unwrap();
        op.on_watermark(EventTimeMs::MAX, &mut ctx).unwrap();
        let out = ctx.take_batches();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let starts = out[0].column(0).as_primitive::<TimestampMillisecondType>();
        assert!(starts.value(0) > after + gap - 1);
    }
}
