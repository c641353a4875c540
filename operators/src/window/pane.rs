//! Tumbling, hopping and cumulating windows over panes.
//!
//! Time is cut into panes of `gcd(size, slide)` (hop), `step` (cumulate) or `size` (tumble).
//! Each row updates exactly one pane's accumulators, whatever the number of windows it belongs
//! to. A window is the union of its panes; when it fires, the partial states of its panes are
//! merged into fresh accumulators and evaluated.
//!
//! A pane is `live` (accumulators being updated) and/or has `frozen` partial states (encoded
//! keys + Arrow state columns). The first window that needs a pane freezes its live part;
//! later windows reuse the frozen batch. A row arriving for a pane after that starts a new live
//! part, which the next window merges as well. A tumbling window owns its single pane and is
//! evaluated directly, without freezing.
//!
//! State at a barrier: every pane is frozen and all panes are written in one entry per key
//! group, `panes/<key group> = encode(watermark, keys + states + pane start)` (one Arrow IPC
//! message per key group, not per pane: with many small panes the per-message header would
//! dominate). After the snapshot the panes are thawed back into live accumulators. On restore
//! the windows of each pane that had not fired by that watermark become pending again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::Rows;
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, TimeDomain};
use weir_engine::state::OperatorState;
use weir_engine::BoxError;

use super::early::EarlyFiring;

use super::{WindowCore, WindowSpec};
use crate::aggregate::Accumulators;
use crate::error::Result;
use crate::group_index::GroupIndex;
use crate::state_codec::{decode, encode, split_by_key_group};

const PANES_TABLE: &str = "panes";
/// The column of the stored panes that says which pane a row belongs to.
const PANE_START_COLUMN: &str = "__pane_start";

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Maps event times to panes and panes to windows.
#[derive(Debug, Clone, Copy)]
pub struct PaneAssigner {
    spec: WindowSpec,
    pane_ms: i64,
}

impl PaneAssigner {
    /// For a tumbling, hopping or cumulating spec (already validated).
    pub fn new(spec: WindowSpec) -> Self {
        let pane_ms = match spec {
            WindowSpec::Tumble { size_ms } => size_ms,
            WindowSpec::Hop { size_ms, slide_ms } => gcd(size_ms, slide_ms),
            WindowSpec::Cumulate { step_ms, .. } => step_ms,
            WindowSpec::Session { .. } | WindowSpec::Count { .. } => {
                unreachable!("session and count windows are not pane-based")
            }
        };
        PaneAssigner { spec, pane_ms }
    }

    pub fn pane_start(&self, time: EventTimeMs) -> i64 {
        time - time.rem_euclid(self.pane_ms)
    }

    /// Every window `(start, end)` that contains the pane starting at `pane`.
    pub fn windows(&self, pane: i64) -> Vec<(i64, i64)> {
        match self.spec {
            WindowSpec::Tumble { size_ms } => vec![(pane, pane.saturating_add(size_ms))],
            WindowSpec::Hop { size_ms, slide_ms } => {
                let last = pane.div_euclid(slide_ms);
                let first = -((size_ms - self.pane_ms - pane).div_euclid(slide_ms));
                (first..=last)
                    .map(|k| (k * slide_ms, (k * slide_ms).saturating_add(size_ms)))
                    .collect()
            }
            WindowSpec::Cumulate { step_ms, size_ms } => {
                let base = pane - pane.rem_euclid(size_ms);
                let first = (pane - base) / step_ms + 1;
                (first..=size_ms / step_ms)
                    .map(|j| (base, base.saturating_add(j * step_ms)))
                    .collect()
            }
            WindowSpec::Session { .. } | WindowSpec::Count { .. } => Vec::new(),
        }
    }

    /// End of the last window containing the pane: after it fires the pane is not needed.
    pub fn last_window_end(&self, pane: i64) -> i64 {
        match self.spec {
            WindowSpec::Tumble { size_ms } => pane.saturating_add(size_ms),
            WindowSpec::Hop { size_ms, slide_ms } => {
                (pane.div_euclid(slide_ms) * slide_ms).saturating_add(size_ms)
            }
            WindowSpec::Cumulate { size_ms, .. } => {
                (pane - pane.rem_euclid(size_ms)).saturating_add(size_ms)
            }
            WindowSpec::Session { .. } | WindowSpec::Count { .. } => pane,
        }
    }
}

/// Whether a window ending at `end` has fired at watermark `watermark`.
fn fired(end: i64, watermark: Option<EventTimeMs>) -> bool {
    watermark.is_some_and(|w| end - 1 <= w)
}

/// The accumulators of a pane that rows are still being added to.
struct LivePane {
    groups: GroupIndex,
    accumulators: Accumulators,
}

/// Partial states of some groups of a pane, with their keys already encoded for lookup.
struct FrozenPartial {
    keys: Rows,
    states: Vec<ArrayRef>,
}

#[derive(Default)]
struct Pane {
    live: Option<LivePane>,
    frozen: Vec<FrozenPartial>,
}

/// A tumbling, hopping or cumulating window subtask. See the module doc.
pub struct PaneWindowOperator {
    core: WindowCore,
    assigner: PaneAssigner,
    panes: BTreeMap<i64, Pane>,
    /// Windows `(end, start)` that have rows and have not fired.
    pending: BTreeSet<(i64, i64)>,
    watermark: Option<EventTimeMs>,
    /// Groups in the most recently frozen or fired pane: the size to expect for new ones.
    groups_hint: usize,
    scratch: Vec<usize>,
    /// Schema of the stored panes: the window's state columns and the pane start.
    stored_schema: SchemaRef,
    /// Early results (`table.exec.emit.early-fire.*`), and when the next are due (processing
    /// time, ms).
    early: Option<EarlyFiring>,
    next_early: i64,
}

impl PaneWindowOperator {
    pub(crate) fn new(
        core: WindowCore,
        assigner: PaneAssigner,
        early: Option<EarlyFiring>,
    ) -> Self {
        let mut fields: Vec<Field> = core
            .plan
            .state_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(PANE_START_COLUMN, DataType::Int64, false));
        PaneWindowOperator {
            stored_schema: Arc::new(Schema::new(fields)),
            core,
            assigner,
            panes: BTreeMap::new(),
            pending: BTreeSet::new(),
            watermark: None,
            groups_hint: 0,
            scratch: Vec::new(),
            early,
            next_early: 0,
        }
    }

    fn add_to_pane(&mut self, pane_start: i64, rows: &RecordBatch) -> Result<()> {
        for (start, end) in self.assigner.windows(pane_start) {
            if !fired(end, self.watermark) {
                self.pending.insert((end, start));
            }
        }
        let pane = self.panes.entry(pane_start).or_default();
        let live = match &mut pane.live {
            Some(live) => live,
            None => pane.live.insert(LivePane {
                groups: self.core.group_index_for(self.groups_hint),
                accumulators: self.core.plan.aggregates.accumulators()?,
            }),
        };
        let keys = self.core.input_keys(rows);
        let encoded = self.core.key_rows(&keys, rows.num_rows())?;
        live.groups.intern(&encoded, &mut self.scratch);
        live.accumulators.update(
            &self.core.plan.aggregates,
            rows,
            &self.scratch,
            live.groups.len(),
        )
    }

    /// Moves the live part of a pane into its frozen partial states.
    fn freeze(pane: &mut Pane) -> Result<()> {
        if let Some(mut live) = pane.live.take() {
            let states = live.accumulators.take_state()?;
            pane.frozen.push(FrozenPartial {
                keys: live.groups.into_keys(),
                states,
            });
        }
        Ok(())
    }

    /// Turns a pane's frozen partial states back into one live pane. A snapshot freezes every
    /// pane to write it; thawing afterwards keeps a long window from collecting one partial
    /// per checkpoint (memory and snapshot size would grow with every checkpoint).
    fn thaw(core: &WindowCore, pane: &mut Pane, scratch: &mut Vec<usize>) -> Result<()> {
        if pane.live.is_some() || pane.frozen.is_empty() {
            return Ok(());
        }
        let rows = pane.frozen.iter().map(|p| p.keys.num_rows()).sum();
        let mut groups = core.group_index_for(rows);
        let mut accumulators = core.plan.aggregates.accumulators()?;
        for partial in pane.frozen.drain(..) {
            groups.intern(&partial.keys, scratch);
            accumulators.merge(
                &core.plan.aggregates,
                &partial.states,
                scratch,
                groups.len(),
            )?;
        }
        pane.live = Some(LivePane {
            groups,
            accumulators,
        });
        Ok(())
    }

    /// Emits the final result of window `[start, end)`, or with early results its changes.
    fn fire(&mut self, start: i64, end: i64, ctx: &mut Context<'_>) -> Result<()> {
        let result = self.result(start, end, true)?;
        match (&mut self.early, result) {
            (Some(early), Some(result)) => {
                if let Some(changes) = early.changes((end, start), &result, true)? {
                    ctx.emit(changes);
                }
            }
            (None, Some(result)) => ctx.emit(result),
            (_, None) => {}
        }
        Ok(())
    }

    /// Emits the changes of every open window's current result since its last one.
    fn fire_early(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        let open: Vec<(i64, i64)> = self.pending.iter().copied().collect();
        for (end, start) in open {
            if let Some(result) = self.result(start, end, false)? {
                if let Some(early) = &mut self.early {
                    if let Some(changes) = early.changes((end, start), &result, false)? {
                        ctx.emit(changes);
                    }
                }
            }
        }
        // Merging froze the panes; one live part each again keeps them from growing.
        for pane in self.panes.values_mut() {
            Self::thaw(&self.core, pane, &mut self.scratch)?;
        }
        Ok(())
    }

    /// The result of window `[start, end)` (`None` without rows). `closing`: the window fires
    /// for good, so a tumbling window's only pane may be consumed.
    fn result(&mut self, start: i64, end: i64, closing: bool) -> Result<Option<RecordBatch>> {
        let pane_starts: Vec<i64> = self.panes.range(start..end).map(|(p, _)| *p).collect();
        let bounds = |n: usize| Some((vec![start; n], vec![end; n]));
        // A tumbling window owns its only pane: evaluate it directly.
        if let [only] = pane_starts[..] {
            let sole_window = self.assigner.windows(only).len() == 1;
            let pane = self.panes.get_mut(&only).expect("listed above");
            if closing && sole_window && pane.frozen.is_empty() {
                if let Some(mut live) = pane.live.take() {
                    self.groups_hint = live.groups.len();
                    let keys = self.core.group_keys(&live.groups)?;
                    let values = live.accumulators.evaluate()?;
                    return Ok(Some(self.core.output(
                        bounds(live.groups.len()),
                        keys,
                        values,
                    )?));
                }
            }
        }
        let aggregates = &self.core.plan.aggregates;
        let mut upper_bound = 0;
        for pane_start in &pane_starts {
            let pane = self.panes.get_mut(pane_start).expect("listed above");
            if let Some(live) = &pane.live {
                self.groups_hint = live.groups.len();
            }
            Self::freeze(pane)?;
            upper_bound += pane.frozen.iter().map(|p| p.keys.num_rows()).sum::<usize>();
        }
        // Sized for the sum of the panes' groups, so the index never rehashes while merging.
        let mut groups = self.core.group_index_for(upper_bound);
        let mut accumulators = aggregates.accumulators()?;
        for pane_start in pane_starts {
            let pane = &self.panes[&pane_start];
            for partial in &pane.frozen {
                groups.intern(&partial.keys, &mut self.scratch);
                accumulators.merge(aggregates, &partial.states, &self.scratch, groups.len())?;
            }
        }
        if groups.is_empty() {
            return Ok(None);
        }
        let keys = self.core.group_keys(&groups)?;
        let values = accumulators.evaluate()?;
        Ok(Some(self.core.output(
            bounds(groups.len()),
            keys,
            values,
        )?))
    }
}

impl PaneWindowOperator {
    /// Fires the windows ending at or before `time + 1` (the watermark, or the clock for
    /// processing-time windows) and frees the panes no window needs any more.
    fn advance(&mut self, time: i64, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let watermark = self.watermark.map_or(time, |w| w.max(time));
        self.watermark = Some(watermark);
        while let Some(&(end, start)) = self.pending.first() {
            if !fired(end, Some(watermark)) {
                break;
            }
            self.pending.pop_first();
            self.fire(start, end, ctx)?;
        }
        let assigner = self.assigner;
        self.panes
            .retain(|&pane, _| !fired(assigner.last_window_end(pane), Some(watermark)));
        Ok(())
    }
}

impl Operator for PaneWindowOperator {
    fn process_batch(&mut self, batch: RecordBatch, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let times = self.core.row_times(&batch, self.watermark)?;
        // Row indices per pane. Rows are mostly in time order, so the pane of the previous
        // row is tried first; a batch usually spans one or two panes.
        let mut by_pane: Vec<(i64, Vec<u32>)> = Vec::new();
        let mut position: HashMap<i64, usize> = HashMap::new();
        let mut last = 0;
        for (row, &time) in times.iter().enumerate() {
            let pane = self.assigner.pane_start(time);
            if by_pane.get(last).is_none_or(|(p, _)| *p != pane) {
                last = *position.entry(pane).or_insert_with(|| {
                    by_pane.push((pane, Vec::new()));
                    by_pane.len() - 1
                });
            }
            by_pane[last].1.push(row as u32);
        }
        let mut late = Vec::new();
        for (pane, rows) in by_pane {
            if self.assigner.windows(pane).is_empty() {
                // Between hopping windows whose slide exceeds their size: in no window.
                continue;
            }
            if fired(self.assigner.last_window_end(pane), self.watermark) {
                late.extend(rows);
            } else if rows.len() == batch.num_rows() {
                self.add_to_pane(pane, &batch)?;
            } else {
                let part = take_record_batch(&batch, &UInt32Array::from(rows))?;
                self.add_to_pane(pane, &part)?;
            }
            if self.core.plan.processing_time {
                for (_, end) in self.assigner.windows(pane) {
                    ctx.register_timer(TimeDomain::ProcessingTime, end - 1);
                }
            }
        }
        late.sort_unstable();
        self.core.late.emit(&batch, late, ctx)?;
        if self.early.as_ref().is_some_and(|e| e.delay_ms == 0) {
            self.fire_early(ctx)?;
        }
        Ok(())
    }

    /// Re-registers the processing-time timers of the windows a restore brought back.
    fn open(&mut self, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        if self.core.plan.processing_time {
            for &(end, _) in &self.pending {
                ctx.register_timer(TimeDomain::ProcessingTime, end - 1);
            }
        }
        if let Some(early) = self.early.as_ref().filter(|e| e.delay_ms > 0) {
            self.next_early = weir_engine::time::now_ms() + early.delay_ms;
            ctx.register_timer(TimeDomain::ProcessingTime, self.next_early);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        domain: TimeDomain,
        time: i64,
        ctx: &mut Context<'_>,
    ) -> Result<(), BoxError> {
        if domain != TimeDomain::ProcessingTime {
            return Ok(());
        }
        if self.core.plan.processing_time {
            self.advance(time, ctx)?;
        }
        if let Some(delay) = self.early.as_ref().map(|e| e.delay_ms).filter(|&d| d > 0) {
            if time >= self.next_early {
                self.fire_early(ctx)?;
                self.next_early = time + delay;
                ctx.register_timer(TimeDomain::ProcessingTime, self.next_early);
            }
        }
        Ok(())
    }

    /// Event-time windows fire as the watermark passes their end; processing-time windows
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

    fn snapshot_state(&mut self, state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        if let Some(early) = &self.early {
            early.snapshot(state)?;
        }
        state.clear_owned(PANES_TABLE)?;
        crate::state_codec::snapshot_watermark(state, self.watermark)?;
        let watermark = self.watermark.unwrap_or(EventTimeMs::MIN);
        let mut batches = Vec::new();
        for (pane_start, pane) in &mut self.panes {
            Self::freeze(pane)?;
            for partial in &pane.frozen {
                let mut columns = self.core.keys_of(&partial.keys)?;
                columns.extend(partial.states.iter().cloned());
                columns.push(Arc::new(Int64Array::from_value(
                    *pane_start,
                    partial.keys.num_rows(),
                )));
                batches.push(RecordBatch::try_new(
                    Arc::clone(&self.stored_schema),
                    columns,
                )?);
            }
        }
        if !batches.is_empty() {
            let merged = concat_batches(&self.stored_schema, &batches)?;
            for (group, part) in split_by_key_group(&self.core.state_hasher, &merged)? {
                state.put(PANES_TABLE, group, b"", encode(watermark, &part)?)?;
            }
        }
        for pane in self.panes.values_mut() {
            Self::thaw(&self.core, pane, &mut self.scratch)?;
        }
        Ok(())
    }

    fn restore_state(&mut self, state: &OperatorState<'_>) -> Result<(), BoxError> {
        if let Some(early) = &mut self.early {
            early.restore(state)?;
        }
        self.panes.clear();
        self.pending.clear();
        self.watermark = crate::state_codec::restore_watermark(state)?;
        for entry in state.scan_owned(PANES_TABLE)? {
            let (watermark, stored) =
                decode(&entry.value, PANES_TABLE, entry.group, &self.stored_schema)?;
            let pane_column = stored.num_columns() - 1;
            let mut rows_by_pane: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            let starts = stored.column(pane_column).as_primitive::<Int64Type>();
            for (row, pane_start) in starts.values().iter().enumerate() {
                rows_by_pane
                    .entry(*pane_start)
                    .or_default()
                    .push(row as u32);
            }
            for (pane_start, rows) in rows_by_pane {
                for (start, end) in self.assigner.windows(pane_start) {
                    if watermark == EventTimeMs::MIN || !fired(end, Some(watermark)) {
                        self.pending.insert((end, start));
                    }
                }
                let partial = take_record_batch(&stored, &UInt32Array::from(rows))?;
                let columns = &partial.columns()[..pane_column];
                let (keys, states) = columns.split_at(self.core.plan.key_columns.len());
                let keys = self.core.key_rows(keys, partial.num_rows())?;
                self.panes
                    .entry(pane_start)
                    .or_default()
                    .frozen
                    .push(FrozenPartial {
                        keys,
                        states: states.to_vec(),
                    });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processing-time windows: rows go to the window of the clock when they arrive,
    /// watermarks fire nothing (but the end of input), the clock's timers do.
    #[test]
    fn processing_time_windows_fire_by_the_clock_not_the_watermark() {
        use crate::window::{WindowAggregateConfig, WindowAggregateFactory};
        use arrow::array::{Int64Array, TimestampMillisecondArray};
        use weir_engine::operator::{OperatorFactory, SubtaskContext, Timers};
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new(
                "p",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        let factory = WindowAggregateFactory::new(WindowAggregateConfig {
            window: WindowSpec::tumble(std::time::Duration::from_secs(3600)),
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
        let now = weir_engine::time::now_ms();
        let mut timers = Timers::default();
        let all = weir_engine::partition::KeyGroupRange::all(128);
        let mut ctx = Context::new(0, None, all, &mut timers);
        op.process_batch(batch, &mut ctx).unwrap();
        if weir_engine::time::now_ms().div_euclid(3_600_000) != now.div_euclid(3_600_000) {
            return; // The hour turned while the batch was added: another window.
        }
        op.on_watermark(now + 7_200_000, &mut ctx).unwrap();
        assert!(ctx.take_batches().is_empty(), "a watermark fires nothing");
        let end = now - now.rem_euclid(3_600_000) + 3_600_000;
        op.on_timer(TimeDomain::ProcessingTime, end - 2, &mut ctx)
            .unwrap();
        assert!(ctx.take_batches().is_empty(), "the window is still open");
        op.on_timer(TimeDomain::ProcessingTime, end - 1, &mut ctx)
            .unwrap();
        let out = ctx.take_batches();
        let rows: usize = out.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2, "one row per key of the hour");
        let starts = out[0]
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(starts.value(0), end - 3_600_000);
    }

    fn brute_force_windows(spec: WindowSpec, time: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for start in -200i64..200 {
            let ok = match spec {
                WindowSpec::Tumble { size_ms } => {
                    start.rem_euclid(size_ms) == 0 && start <= time && time < start + size_ms
                }
                WindowSpec::Hop { size_ms, slide_ms } => {
                    start.rem_euclid(slide_ms) == 0 && start <= time && time < start + size_ms
                }
                _ => false,
            };
            if ok {
                let end = match spec {
                    WindowSpec::Tumble { size_ms } | WindowSpec::Hop { size_ms, .. } => {
                        start + size_ms
                    }
                    _ => 0,
                };
                out.push((start, end));
            }
        }
        out
    }

    #[test]
    fn panes_map_to_the_windows_that_contain_their_rows() {
        for spec in [
            WindowSpec::Tumble { size_ms: 7 },
            WindowSpec::Hop {
                size_ms: 10,
                slide_ms: 4,
            },
            WindowSpec::Hop {
                size_ms: 9,
                slide_ms: 3,
            },
            WindowSpec::Hop {
                size_ms: 5,
                slide_ms: 7,
            },
        ] {
            let assigner = PaneAssigner::new(spec);
            for time in -50..50 {
                let pane = assigner.pane_start(time);
                let mut got = assigner.windows(pane);
                got.sort();
                assert_eq!(got, brute_force_windows(spec, time), "{spec:?} at {time}");
                let last = got.iter().map(|w| w.1).max().unwrap_or(pane);
                if !got.is_empty() {
                    assert_eq!(assigner.last_window_end(pane), last, "{spec:?} at {time}");
                }
            }
        }
    }

    #[test]
    fn cumulating_windows_grow_by_step_within_size() {
        let assigner = PaneAssigner::new(WindowSpec::Cumulate {
            step_ms: 2,
            size_ms: 6,
        });
        assert_eq!(
            assigner.windows(assigner.pane_start(3)),
            vec![(0, 4), (0, 6)]
        );
        assert_eq!(assigner.windows(assigner.pane_start(-1)), vec![(-6, 0)]);
        assert_eq!(assigner.last_window_end(2), 6);
    }
}
