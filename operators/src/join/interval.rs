//! Interval join, as Flink's (`RowTimeIntervalJoin`): rows of both sides with equal keys whose
//! event times satisfy `lower <= left.time - right.time <= upper` (SQL: `l.ts BETWEEN r.ts -
//! INTERVAL .. AND r.ts + INTERVAL ..`, or `>`/`<` forms made inclusive by the planner).
//!
//! A row arriving on one side joins the kept rows of the other side within its bounds, then is
//! kept while a later row of the other side could still match it: a left row until the
//! watermark reaches `time - lower`, a right row until `time + upper`. A row that arrives when
//! the watermark has passed that point is joined with what is kept but not kept itself (Flink's
//! rule), and counted in `late_rows_joined`. In an outer join an unmatched row is emitted
//! padded with NULLs when it expires (or at once, if it is not kept). The output is append-only
//! and keeps both time columns; the forwarded watermark is held back by `max(-lower, upper)`
//! so that the padded rows, which are that much older than the watermark that releases them,
//! are not late for a window downstream (Flink's `KeyedCoProcessOperatorWithWatermarkDelay`).
//!
//! State: each side's kept rows in a state table by join key ([`super::store`]), with their
//! matched flags; the watermark per key group.

use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_engine::changelog::ChangelogMode;
use weir_engine::message::EventTimeMs;
use weir_engine::metrics::{names, Counter};
use weir_engine::operator::{Context, Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::{KeyGroup, KeyHasher};
use weir_engine::state::OperatorState;
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use super::store::{NewRow, SideStore, KEPT_FORMAT};
use super::{
    append_only, key_is_null, plan_timed, side_hashers, JoinKeys, JoinPlan, JoinSpec, Side,
    JOIN_INPUTS,
};
use crate::error::{OperatorError, Result};
use crate::row_format::slices;
use crate::state_codec::{refuse_format_0, restore_watermark, snapshot_watermark};
use crate::FIRE_PART_ROWS;

/// Describes an interval join: the equi-join, each side's time column, and the bounds (ms,
/// inclusive) of `left.time - right.time`.
#[derive(Debug, Clone)]
pub struct IntervalJoinFactory {
    spec: JoinSpec,
    time_columns: [String; 2],
    lower: i64,
    upper: i64,
}

impl IntervalJoinFactory {
    /// Errors if `lower > upper` (no pair could ever match).
    pub fn new(
        spec: JoinSpec,
        left_time: impl Into<String>,
        right_time: impl Into<String>,
        lower: i64,
        upper: i64,
    ) -> Result<Self> {
        if spec.join_type.is_semi_or_anti() {
            return Err(OperatorError::Plan(
                "an interval join is inner or outer, not semi or anti".into(),
            ));
        }
        if lower > upper {
            return Err(OperatorError::Plan(format!(
                "the interval join's bounds are empty: left time - right time must be at least {lower} ms and at most {upper} ms"
            )));
        }
        Ok(IntervalJoinFactory {
            spec,
            time_columns: [left_time.into(), right_time.into()],
            lower,
            upper,
        })
    }

    /// How far the forwarded watermark is held back (ms).
    pub fn watermark_delay(&self) -> i64 {
        (-self.lower).max(self.upper).max(0)
    }

    fn plan(&self, inputs: &[SchemaRef]) -> Result<(JoinPlan, [usize; 2])> {
        plan_timed(
            &self.spec,
            inputs,
            "an interval join",
            &self.time_columns,
            true,
            false,
        )
    }
}

impl OperatorFactory for IntervalJoinFactory {
    fn inputs(&self) -> &'static [&'static str] {
        JOIN_INPUTS
    }

    fn output_schema(&self, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, BoxError> {
        Ok(Arc::clone(&self.plan(inputs)?.0.output))
    }

    fn output_changelog(
        &self,
        inputs: &[ChangelogMode],
    ) -> std::result::Result<ChangelogMode, BoxError> {
        append_only("an interval join", inputs)
    }

    fn describe(&self) -> String {
        format!(
            "interval join {} AND left.{} - right.{} BETWEEN {} ms AND {} ms",
            self.spec.describe(),
            self.time_columns[0],
            self.time_columns[1],
            self.lower,
            self.upper
        )
    }

    fn create(&self, context: &SubtaskContext) -> std::result::Result<Box<dyn Operator>, BoxError> {
        let (plan, time_columns) = self.plan(&context.input_schemas)?;
        Ok(Box::new(IntervalJoin {
            hashers: side_hashers(&self.spec, &plan, context.max_key_groups)?,
            stores: [
                SideStore::new(rows_table(Side::Left), Arc::clone(&plan.left), context)?,
                SideStore::new(rows_table(Side::Right), Arc::clone(&plan.right), context)?,
            ],
            keeps_unmatched: [
                self.spec.join_type.keeps_unmatched(Side::Left),
                self.spec.join_type.keeps_unmatched(Side::Right),
            ],
            plan,
            time_columns,
            lower: self.lower,
            upper: self.upper,
            delay: self.watermark_delay(),
            watermark: None,
            expiring: None,
            late_rows: context.counter(names::LATE_ROWS_JOINED),
        }))
    }
}

/// The state table of a side's kept rows (the snapshots before state tables used the side's
/// name).
fn rows_table(side: Side) -> &'static str {
    match side {
        Side::Left => "interval-left",
        Side::Right => "interval-right",
    }
}

/// One subtask of an interval join.
pub struct IntervalJoin {
    plan: JoinPlan,
    time_columns: [usize; 2],
    lower: i64,
    upper: i64,
    delay: i64,
    hashers: [KeyHasher; 2],
    stores: [SideStore; 2],
    keeps_unmatched: [bool; 2],
    watermark: Option<EventTimeMs>,
    /// The watermark whose expired rows are being freed in parts.
    expiring: Option<EventTimeMs>,
    late_rows: Counter,
}

impl IntervalJoin {
    /// The encoded join key of every row of `batch` (of `side`).
    fn keys(&self, side: Side, batch: &RecordBatch) -> Result<JoinKeys> {
        let side = side as usize;
        JoinKeys::of(&self.hashers[side], &self.plan.keys[side], batch)
    }

    /// The times of the other side's rows that a row of `side` at `time` matches.
    fn bounds(&self, side: Side, time: i64) -> (i64, i64) {
        match side {
            Side::Left => (
                time.saturating_sub(self.upper),
                time.saturating_sub(self.lower),
            ),
            Side::Right => (
                time.saturating_add(self.lower),
                time.saturating_add(self.upper),
            ),
        }
    }

    /// The watermark at or past which a row of `side` at `time` can match nothing more.
    fn expiry(&self, side: Side, time: i64) -> i64 {
        match side {
            Side::Left => time.saturating_sub(self.lower),
            Side::Right => time.saturating_add(self.upper),
        }
    }

    /// Joins `batch` of `side` with the other side's kept rows, keeps what can still match,
    /// and pads what an outer join must emit now.
    fn process(&mut self, side: Side, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<()> {
        let times = event_times_ms(&batch, self.time_columns[side as usize])?;
        let keys = self.keys(side, &batch)?;
        let own_keys = &self.plan.keys[side as usize];
        let (own, other) = (side as usize, side.other() as usize);
        let state = ctx.state_or_err()?;
        // Candidate pairs: the row of the batch, the position of the kept row under its key
        // and whether it had matched; the kept rows' bytes one after another.
        let mut own_rows: Vec<u32> = Vec::new();
        let mut positions: Vec<(usize, bool)> = Vec::new();
        // Each row's key group (the same for both sides' encodings of a key).
        let mut groups = vec![KeyGroup(0); batch.num_rows()];
        let mut kept_bytes: Vec<u8> = Vec::new();
        let mut kept_ends: Vec<usize> = Vec::new();
        for i in 0..batch.num_rows() {
            let key = keys.get(i);
            let group = self.hashers[own].key_group_of(key);
            groups[i] = group;
            if key_is_null(&batch, own_keys, i) {
                continue;
            }
            let (low, high) = self.bounds(side, times[i]);
            let Some(kept) = self.stores[other].get(state, group, key)? else {
                continue;
            };
            for (position, (row, entry)) in kept.rows().enumerate() {
                if entry.time >= low && entry.time <= high {
                    own_rows.push(i as u32);
                    positions.push((position, entry.matched));
                    kept_bytes.extend_from_slice(row);
                    kept_ends.push(kept_bytes.len());
                }
            }
        }
        let mut matched = vec![false; batch.num_rows()];
        let mut joined = None;
        if !own_rows.is_empty() {
            let own_batch = take_record_batch(&batch, &UInt32Array::from(own_rows.clone()))?;
            let kept = self.stores[other].decode(slices(&kept_bytes, &kept_ends))?;
            let (pairs, mask) = match side {
                Side::Left => self.plan.pairs(&own_batch, &kept)?,
                Side::Right => self.plan.pairs(&kept, &own_batch)?,
            };
            for pair in (0..mask.len()).filter(|&p| mask.value(p)) {
                let row = own_rows[pair] as usize;
                matched[row] = true;
                let (position, was_matched) = positions[pair];
                // Only a side an outer join pads needs its matches remembered.
                if self.keeps_unmatched[other] && !was_matched {
                    self.stores[other].mark_matched(state, groups[row], keys.get(row), position)?;
                }
            }
            joined = Some(self.plan.matched(&pairs, &mask)?);
        }
        let watermark = self.watermark;
        let mut keep = Vec::new();
        let mut padded: Vec<u32> = Vec::new();
        for i in 0..batch.num_rows() {
            let expires = self.expiry(side, times[i]);
            if watermark.is_none_or(|w| expires > w) {
                let key = keys.get(i);
                keep.push(NewRow {
                    row: i as u32,
                    key,
                    group: groups[i],
                    time: times[i],
                    expires,
                    matched: matched[i],
                });
            } else {
                self.late_rows.add(1);
                if self.keeps_unmatched[own] && !matched[i] {
                    padded.push(i as u32);
                }
            }
        }
        self.stores[own].insert(state, &batch, keep)?;
        if let Some(joined) = joined {
            ctx.emit(joined);
        }
        if !padded.is_empty() {
            let rows = take_record_batch(&batch, &UInt32Array::from(padded))?;
            ctx.emit(self.plan.padded(side, &rows)?);
        }
        Ok(())
    }

    /// Frees the rows the watermark expired, emitting an outer join's unmatched ones padded,
    /// about [`FIRE_PART_ROWS`] per call: with more, it asks to be called again
    /// ([`Operator::on_continue`]) and frees the rest then.
    fn expire(&mut self, watermark: EventTimeMs, ctx: &mut Context<'_>) -> Result<()> {
        self.expiring = None;
        for side in [Side::Left, Side::Right] {
            // An outer side's unmatched rows, their bytes one after another.
            let pads = self.keeps_unmatched[side as usize];
            let (mut bytes, mut ends) = (Vec::new(), Vec::new());
            let state = ctx.state_or_err()?;
            let more = self.stores[side as usize].expire(
                state,
                watermark,
                FIRE_PART_ROWS,
                &mut |row, kept| {
                    if pads && !kept.matched {
                        bytes.extend_from_slice(row);
                        ends.push(bytes.len());
                    }
                },
            )?;
            if !ends.is_empty() {
                let rows = self.stores[side as usize].decode(slices(&bytes, &ends))?;
                ctx.emit(self.plan.padded(side, &rows)?);
            }
            if more {
                self.expiring = Some(watermark);
                ctx.continue_later();
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Operator for IntervalJoin {
    fn process_batch(
        &mut self,
        batch: RecordBatch,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        Ok(self.process(Side::of_input(ctx.input()), batch, ctx)?)
    }

    fn on_watermark(
        &mut self,
        watermark: EventTimeMs,
        ctx: &mut Context<'_>,
    ) -> std::result::Result<(), BoxError> {
        self.watermark = Some(watermark);
        self.expire(watermark, ctx)?;
        if watermark < EventTimeMs::MAX {
            ctx.hold_watermark(watermark.saturating_sub(self.delay));
        }
        Ok(())
    }

    fn on_continue(&mut self, ctx: &mut Context<'_>) -> std::result::Result<(), BoxError> {
        if let Some(watermark) = self.expiring {
            self.expire(watermark, ctx)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        state: &mut OperatorState<'_>,
    ) -> std::result::Result<(), BoxError> {
        for store in &mut self.stores {
            store.flush(state)?;
        }
        snapshot_watermark(state, self.watermark)?;
        Ok(())
    }

    /// The rows stay in the state backend, read when their keys come; the expiry index is
    /// rebuilt. A snapshot of the format before state tables (format 0) is refused.
    fn restore_state(&mut self, state: &OperatorState<'_>) -> std::result::Result<(), BoxError> {
        for side in [Side::Left, Side::Right] {
            refuse_format_0(state, side.name(), rows_table(side), KEPT_FORMAT)?;
            self.stores[side as usize].restore(state)?;
        }
        self.watermark = restore_watermark(state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use weir_engine::metrics::Metrics;
    use weir_engine::operator::Timers;
    use weir_engine::partition::KeyGroupRange;
    use weir_engine::state::InMemoryStateBackend;

    fn schema(prefix: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(format!("{prefix}k"), DataType::Int64, false),
            Field::new(
                format!("{prefix}ts"),
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    fn rows(prefix: &str, rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(prefix),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
            ],
        )
        .unwrap()
    }

    /// Output rows as (left ts, right ts).
    type Pairs = Vec<(Option<i64>, Option<i64>)>;

    /// Drives one subtask: `Some(batch)` on an input, or a watermark.
    struct Driver {
        join: Box<dyn Operator>,
        timers: Timers,
        watermark: Option<i64>,
        metrics: Metrics,
        backend: InMemoryStateBackend,
        /// How many times the operator asked to be called again.
        continued: usize,
    }

    impl Driver {
        fn new(join_type: super::super::JoinType, lower: i64, upper: i64) -> Driver {
            let spec = JoinSpec {
                join_type,
                left_keys: vec!["k".into()],
                right_keys: vec!["rk".into()],
                filter: None,
            };
            let factory = IntervalJoinFactory::new(spec, "ts", "rts", lower, upper).unwrap();
            let metrics = Metrics::default();
            let context = SubtaskContext {
                operator_id: "join".into(),
                uid: "join".into(),
                metrics: metrics.clone(),
                ..SubtaskContext::standalone(vec![schema(""), schema("r")])
            };
            Driver {
                join: factory.create(&context).unwrap(),
                timers: Timers::default(),
                watermark: None,
                metrics,
                backend: InMemoryStateBackend::new(),
                continued: 0,
            }
        }

        /// Output rows as (left ts, right ts), and the watermark hold.
        fn call(
            &mut self,
            input: Option<(usize, RecordBatch)>,
            watermark: Option<i64>,
        ) -> (Pairs, Option<i64>) {
            if let Some(w) = watermark {
                self.watermark = Some(w);
            }
            let all = KeyGroupRange::all(128);
            let mut ctx = Context::new(
                input.as_ref().map_or(0, |i| i.0),
                self.watermark,
                all,
                &mut self.timers,
            )
            .with_state(OperatorState::new(&mut self.backend, "join", all));
            match (input, watermark) {
                (Some((_, batch)), _) => self.join.process_batch(batch, &mut ctx).unwrap(),
                (None, Some(w)) => self.join.on_watermark(w, &mut ctx).unwrap(),
                (None, None) => {}
            }
            let held = ctx.held();
            while ctx.take_continue() {
                self.continued += 1;
                self.join.on_continue(&mut ctx).unwrap();
            }
            let mut out = Vec::new();
            for batch in ctx.take_batches() {
                let times = |name: &str| {
                    let column = batch.column_by_name(name).unwrap();
                    let column = arrow::compute::cast(column, &DataType::Int64).unwrap();
                    let column = column.as_primitive::<arrow::datatypes::Int64Type>().clone();
                    (0..column.len()).map(move |i| column.is_valid(i).then(|| column.value(i)))
                };
                out.extend(times("ts").zip(times("rts")));
            }
            (out, held)
        }
    }

    /// Rows one watermark expires at once are freed (and the padded ones emitted) in parts
    /// of about `FIRE_PART_ROWS`, the operator asking to be called again.
    #[test]
    fn many_expired_rows_are_freed_in_parts() {
        let mut join = Driver::new(super::super::JoinType::Full, -10, 5);
        let n = 5 * FIRE_PART_ROWS as i64 / 2;
        let left: Vec<(i64, i64)> = (0..n).map(|i| (i % 5_000, 100 + i % 7)).collect();
        let right: Vec<(i64, i64)> = (0..n).map(|i| (5_000 + i % 3_000, 100)).collect();
        join.call(Some((0, rows("", &left))), None);
        join.call(Some((1, rows("r", &right))), None);
        let (pairs, held) = join.call(None, Some(1_000));
        assert_eq!(pairs.len(), 2 * n as usize, "every row padded once");
        assert!(join.continued >= 3, "{} parts", join.continued + 1);
        assert_eq!(held, Some(990));
        assert!(join.call(None, Some(2_000)).0.is_empty());
    }

    #[test]
    fn outer_rows_are_padded_when_the_watermark_expires_them_and_the_watermark_is_held() {
        // left.ts - right.ts in [-10, 5]: a left row waits for right rows until ts + 10.
        let mut join = Driver::new(super::super::JoinType::Full, -10, 5);
        assert!(join
            .call(Some((0, rows("", &[(1, 100), (2, 100)]))), None)
            .0
            .is_empty());
        let (pairs, _) = join.call(Some((1, rows("r", &[(1, 104), (1, 111)]))), None);
        assert_eq!(pairs, vec![(Some(100), Some(104))]);
        // At 109 nothing has expired; the forwarded watermark is held 10 ms back.
        assert_eq!(join.call(None, Some(109)), (vec![], Some(99)));
        // At 110 the left rows expire: key 2 never matched and comes out padded. The right
        // row at 104 expires at 109 (+5); it matched. The one at 111 waits until 116.
        assert_eq!(join.call(None, Some(110)).0, vec![(Some(100), None)]);
        assert_eq!(join.call(None, Some(116)).0, vec![(None, Some(111))]);
        assert_eq!(join.metrics.total(names::LATE_ROWS_JOINED), 0);
    }

    #[test]
    fn a_late_row_joins_what_is_kept_and_an_outer_one_is_padded_at_once() {
        let mut join = Driver::new(super::super::JoinType::Left, -10, 10);
        join.call(Some((1, rows("r", &[(1, 200)]))), None);
        join.call(None, Some(150));
        // Left row at 140: expires at 150, so it is late, but the right row at 200 is kept
        // (until 210) and out of its bounds; left at 195 is not late and matches.
        let (out, _) = join.call(Some((0, rows("", &[(1, 140), (1, 195)]))), None);
        assert_eq!(out, vec![(Some(195), Some(200)), (Some(140), None)]);
        assert_eq!(join.metrics.total(names::LATE_ROWS_JOINED), 1);
        // End of input: the right row is released; a left join does not pad it.
        assert_eq!(join.call(None, Some(i64::MAX)), (vec![], None));
    }

    #[test]
    fn state_is_freed_by_the_watermark_and_survives_a_snapshot() {
        let mut join = Driver::new(super::super::JoinType::Inner, 0, 0);
        join.call(Some((0, rows("", &[(1, 10), (2, 20)]))), None);
        let all = KeyGroupRange::all(128);
        let mut state = OperatorState::new(&mut join.backend, "join", all);
        join.join.snapshot_state(&mut state).unwrap();
        let mut restored = Driver::new(super::super::JoinType::Inner, 0, 0);
        restored.backend = std::mem::take(&mut join.backend);
        let state = OperatorState::new(&mut restored.backend, "join", all);
        restored.join.restore_state(&state).unwrap();
        let (out, _) = restored.call(Some((1, rows("r", &[(2, 20), (1, 11)]))), None);
        assert_eq!(out, vec![(Some(20), Some(20))]);
        restored.call(None, Some(30));
        let mut state = OperatorState::new(&mut restored.backend, "join", all);
        restored.join.snapshot_state(&mut state).unwrap();
        let state = OperatorState::new(&mut restored.backend, "join", all);
        for table in ["interval-left", "interval-right"] {
            assert!(
                !state.has_entries(table).unwrap(),
                "expired rows are not in the snapshot ({table})"
            );
        }
    }
}
