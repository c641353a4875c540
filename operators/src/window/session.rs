//! Session windows: per key, rows whose `[time, time + gap)` intervals touch form one window.
//!
//! Each key has its open sessions in a map ordered by start; they never overlap. A row opens
//! `[t, t + gap)` and merges every open session it touches (as Flink: intervals that meet or
//! overlap merge). A session fires when the watermark reaches `end - 1`. A row that touches no
//! open session and whose own interval has already fired is late.
//!
//! Rows wait in a [`RowBuffer`] until their session fires; firing gathers the rows of every
//! fired session into one batch and aggregates them with one group per session.
//!
//! On processing time (a `PROCTIME()` attribute), a row's time is the clock when it arrives
//! (never at or before a session that fired), sessions fire by the clock's timers, and
//! watermarks fire nothing but, at the end of input, the sessions still open; no row is late.
//!
//! State at a barrier: the rows of every open session, plus the session bounds as two extra
//! columns, written per key group as `sessions/<key group> = encode(0, rows + bounds)`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, TimeDomain};
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use super::WindowCore;
use crate::error::Result;
use crate::group_index::GroupIndex;
use crate::row_buffer::{RowBuffer, RowRef};

const SESSIONS_TABLE: &str = "sessions";
const SESSION_START: &str = "__weir_session_start";
const SESSION_END: &str = "__weir_session_end";

struct Session {
    end: i64,
    rows: Vec<RowRef>,
}

/// A session window subtask. See the module doc.
pub struct SessionWindowOperator {
    core: WindowCore,
    gap_ms: i64,
    keys: GroupIndex,
    /// Open sessions per key id, by start.
    sessions: Vec<BTreeMap<i64, Session>>,
    /// Every open session as `(end, key id, start)`, in firing order.
    by_end: BTreeSet<(i64, usize, i64)>,
    buffer: Option<RowBuffer>,
    watermark: Option<EventTimeMs>,
    scratch: Vec<usize>,
}

impl SessionWindowOperator {
    pub(crate) fn new(core: WindowCore, gap_ms: i64) -> Self {
        SessionWindowOperator {
            keys: core.new_group_index(),
            core,
            gap_ms,
            sessions: Vec::new(),
            by_end: BTreeSet::new(),
            buffer: None,
            watermark: None,
            scratch: Vec::new(),
        }
    }

    fn buffer(&mut self, batch: &RecordBatch) -> &mut RowBuffer {
        self.buffer
            .get_or_insert_with(|| RowBuffer::new(batch.schema()))
    }

    /// Key ids of the rows of `batch`.
    fn key_ids(&mut self, batch: &RecordBatch) -> Result<Vec<usize>> {
        let keys = self.core.input_keys(batch);
        let encoded = self.core.key_rows(&keys, batch.num_rows())?;
        let index = &mut self.keys;
        let mut ids = Vec::new();
        index.intern(&encoded, &mut ids);
        if self.sessions.len() < index.len() {
            self.sessions.resize_with(index.len(), BTreeMap::new);
        }
        Ok(ids)
    }

    /// Adds a row with interval `[start, end)` to key `key`, merging what it touches.
    /// Returns false (and adds nothing) if the row is late.
    fn add(
        &mut self,
        key: usize,
        mut start: i64,
        mut end: i64,
        mut rows: Vec<RowRef>,
        check_late: bool,
    ) -> bool {
        let sessions = &mut self.sessions[key];
        let touching: Vec<i64> = sessions
            .range(..=end)
            .rev()
            .take_while(|(_, s)| s.end >= start)
            .map(|(s, _)| *s)
            .collect();
        if check_late && touching.is_empty() && self.watermark.is_some_and(|w| end - 1 <= w) {
            return false;
        }
        for old_start in touching {
            let Some(old) = sessions.remove(&old_start) else {
                continue;
            };
            self.by_end.remove(&(old.end, key, old_start));
            start = start.min(old_start);
            end = end.max(old.end);
            rows.extend(old.rows);
        }
        self.by_end.insert((end, key, start));
        sessions.insert(start, Session { end, rows });
        true
    }

    /// Fires every session ending at or before `time + 1` (the watermark, or the clock on
    /// processing time): one batch of their aggregates.
    fn advance(&mut self, time: i64, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        self.watermark = Some(self.watermark.map_or(time, |w| w.max(time)));
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut rows = Vec::new();
        let mut first_rows = Vec::new();
        self.scratch.clear();
        while let Some(&(end, key, start)) = self.by_end.first() {
            if end - 1 > time {
                break;
            }
            self.by_end.pop_first();
            let session = self
                .sessions
                .get_mut(key)
                .and_then(|sessions| sessions.remove(&start))
                .ok_or("a session window's index names a session it does not hold")?;
            first_rows.push(rows.len() as u32);
            self.scratch
                .extend(std::iter::repeat_n(starts.len(), session.rows.len()));
            rows.extend(session.rows);
            starts.push(start);
            ends.push(end);
        }
        if starts.is_empty() {
            return Ok(());
        }
        let buffer = self
            .buffer
            .as_mut()
            .ok_or("a session window fired without buffered rows")?;
        let (keys, values) =
            self.core
                .aggregate_buffered(buffer, &rows, &self.scratch, first_rows)?;
        ctx.emit(self.core.output(Some((starts, ends)), keys, values)?);
        Ok(())
    }
}

impl Operator for SessionWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let times = self.core.row_times(&batch, self.watermark)?;
        let key_ids = self.key_ids(&batch)?;
        let batch_id = self.buffer(&batch).next_id();
        let mut late = Vec::new();
        for (row, (&time, &key)) in times.iter().zip(&key_ids).enumerate() {
            let row_ref = RowRef {
                batch: batch_id,
                row: row as u32,
            };
            if !self.add(
                key,
                time,
                time.saturating_add(self.gap_ms),
                vec![row_ref],
                true,
            ) {
                late.push(row as u32);
            }
        }
        if self.core.plan.processing_time {
            // The batch's rows share a time, so one timer (a set: one per millisecond) when
            // their sessions end; an earlier timer of a session that grew finds nothing.
            if let Some(&now) = times.first() {
                let end = now.saturating_add(self.gap_ms);
                ctx.register_timer(TimeDomain::ProcessingTime, end - 1);
            }
        }
        let kept = batch.num_rows() - late.len();
        self.core.late.emit(&batch, late, ctx)?;
        self.buffer(&batch).add(batch, kept);
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

    /// Re-registers the processing-time timers of the sessions a restore brought back.
    fn open(&mut self, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        if self.core.plan.processing_time {
            for &(end, _, _) in &self.by_end {
                ctx.register_timer(TimeDomain::ProcessingTime, end - 1);
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self, state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        state.clear_owned(SESSIONS_TABLE)?;
        crate::state_codec::snapshot_watermark(state, self.watermark)?;
        let Some(buffer) = &self.buffer else {
            return Ok(());
        };
        let mut rows = Vec::new();
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        for (start_end_key, session) in self
            .by_end
            .iter()
            .map(|&(end, key, start)| ((start, end), &self.sessions[key][&start]))
        {
            rows.extend_from_slice(&session.rows);
            starts.extend(std::iter::repeat_n(start_end_key.0, session.rows.len()));
            ends.extend(std::iter::repeat_n(start_end_key.1, session.rows.len()));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let gathered = buffer.gather(&rows)?;
        let mut fields: Vec<Field> = gathered
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(bound_fields());
        let mut columns: Vec<ArrayRef> = gathered.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(starts)));
        columns.push(Arc::new(Int64Array::from(ends)));
        let with_bounds = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        self.core
            .snapshot_rows(state, SESSIONS_TABLE, &with_bounds)?;
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> Result<(), BoxError> {
        // `restore_rows` checked the layout: input columns, then the two bounds.
        self.watermark = crate::state_codec::restore_watermark(state)?;
        let Some(all) = self
            .core
            .restore_rows(state, SESSIONS_TABLE, &bound_fields())?
        else {
            return Ok(());
        };
        let width = all.num_columns() - 2;
        let starts = all.column(width).as_primitive::<Int64Type>().clone();
        let ends = all.column(width + 1).as_primitive::<Int64Type>().clone();
        let rows = all.project(&(0..width).collect::<Vec<_>>())?;
        let key_ids = self.key_ids(&rows)?;
        let batch_id = self.buffer(&rows).next_id();
        for (row, &key) in key_ids.iter().enumerate() {
            let (start, end) = (starts.value(row), ends.value(row));
            let row_ref = RowRef {
                batch: batch_id,
                row: row as u32,
            };
            match self.sessions[key].get_mut(&start) {
                Some(session) => session.rows.push(row_ref),
                None => {
                    self.add(key, start, end, vec![row_ref], false);
                }
            }
        }
        let count = rows.num_rows();
        self.buffer(&rows).add(rows, count);
        Ok(())
    }
}

/// The columns a snapshot adds to each buffered row: its session's start and end (ms).
fn bound_fields() -> [Field; 2] {
    [
        Field::new(SESSION_START, DataType::Int64, false),
        Field::new(SESSION_END, DataType::Int64, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
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
        let mut ctx = Context::new(0, None, all, &mut timers);
        let before = weir_engine::time::now_ms();
        op.process_batch(batch.clone(), &mut ctx).unwrap();
        let after = weir_engine::time::now_ms();
        drop(ctx);
        let timer = timers
            .next_processing_time()
            .expect("a timer at the sessions' end");
        assert!((before + gap - 1..=after + gap - 1).contains(&timer));
        let mut ctx = Context::new(0, None, all, &mut timers);
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
