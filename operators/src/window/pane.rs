//! Tumbling, hopping and cumulating windows over panes.
//!
//! Time is cut into panes of `gcd(size, slide)` (hop), `step` (cumulate) or `size` (tumble).
//! Each row updates exactly one pane's accumulators, whatever the number of windows it belongs
//! to. A window is the union of its panes; when it fires, the partial states of its panes are
//! merged into fresh accumulators and evaluated.
//!
//! A pane has a `live` part (accumulators being updated, in memory), *frozen* partial states
//! (keys + state columns, in memory, made when a window needs the pane and reused by its
//! later windows) and *runs*: partial states spilled into a state table (`pane_runs`, key:
//! pane start then a sequence number), one batch per key group, under the shard's memory
//! budget, so cold runs live in RocksDB. A pane spills its live and frozen parts into runs at
//! every checkpoint (the runs written since the previous checkpoint are all it writes) and
//! when the live and frozen parts pass half the budget. A pane and key group with
//! [`MAX_RUNS`] runs has them merged into one, so a long window's runs stay few.
//!
//! A window whose panes have no runs merges their frozen states at once into one result (in
//! memory, which the budget bounds); a tumbling window whose pane was never frozen evaluates
//! its live part directly. A window with runs spills its panes and fires key group by key
//! group: the runs of its panes in a key group are merged, several key groups together until
//! about [`OUTPUT_BATCH_ROWS`] groups, and evaluated, so the merged state in memory while
//! firing is about that many groups (runs a later window needs stay hot in the table, under
//! the budget). Either way a call emits about [`FIRE_PART_ROWS`] result rows, then asks the
//! runtime to call again (`Context::continue_later`) once they have gone downstream. On
//! restore, the runs of the subtask's key groups are listed and the windows of their panes
//! that had not fired by the restored watermark become pending again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, take_record_batch, BatchCoalescer};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Context, Operator, TimeDomain};
use weir_engine::partition::KeyGroup;
use weir_engine::state::table::{BudgetCharge, StateCodec, StateTable, TableSpec};
use weir_engine::state::{OperatorState, StateError};
use weir_engine::BoxError;

use super::early::EarlyFiring;

use super::{WindowCore, WindowSpec};
use crate::aggregate::Accumulators;
use crate::error::{OperatorError, Result};
use crate::group_index::GroupIndex;
use crate::state_codec::{decode, encode, refuse_format_0};
use crate::{FIRE_PART_ROWS, OUTPUT_BATCH_ROWS};

/// The state table of pane runs.
const RUNS_TABLE: &str = "pane_runs";
/// Format of [`RUNS_TABLE`]'s values: one Arrow IPC batch (key columns + state columns).
const RUNS_FORMAT: u16 = 1;
/// The table of the snapshots before state tables (format 0: every pane of a key group in
/// one entry), refused when restoring.
const LEGACY_PANES_TABLE: &str = "panes";
/// Runs of one pane and key group past which a new run is merged with them.
pub const MAX_RUNS: usize = 8;

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

/// The key of a run: its pane's start (sign bit flipped, big endian: panes in time order)
/// then its sequence number.
fn run_key(pane: i64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&((pane as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The pane and sequence number of a run's key (`None`: not a run key).
fn parse_run_key(key: &[u8]) -> Option<(i64, u64)> {
    let pane: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let seq: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some((
        (u64::from_be_bytes(pane) ^ (1 << 63)) as i64,
        u64::from_be_bytes(seq),
    ))
}

/// Encodes runs (key columns + state columns) as Arrow IPC.
struct RunCodec {
    schema: SchemaRef,
}

impl StateCodec for RunCodec {
    type Value = RecordBatch;

    fn encode(&self, values: &mut [&mut RecordBatch]) -> Result<Vec<Vec<u8>>, StateError> {
        values
            .iter()
            .map(|run| encode(0, run).map_err(|e| StateError::Encoding(e.to_string())))
            .collect()
    }

    fn decode(&self, bytes: &[u8], _version: u16) -> Result<RecordBatch, StateError> {
        // (The table's checksum names the key group of a damaged value; a wrong layout is
        // named here.)
        match decode(bytes, RUNS_TABLE, KeyGroup(0), &self.schema) {
            Ok((_, run)) => Ok(run),
            Err(OperatorError::State(e)) => Err(e),
            Err(e) => Err(StateError::Encoding(e.to_string())),
        }
    }

    fn memory_bytes(&self, run: &RecordBatch) -> usize {
        run.get_array_memory_size()
    }
}

/// The accumulators of a pane that rows are still being added to.
struct LivePane {
    groups: GroupIndex,
    accumulators: Accumulators,
}

impl LivePane {
    fn size(&self) -> usize {
        self.groups.size() + self.accumulators.size()
    }
}

#[derive(Default)]
struct Pane {
    live: Option<LivePane>,
    /// Partial states frozen in memory (keys + state columns, every key group), for the
    /// pane's later windows; counted with the live parts.
    frozen: Vec<RecordBatch>,
    /// The sequence numbers of the pane's runs, per key group, oldest first.
    runs: BTreeMap<KeyGroup, Vec<u64>>,
}

/// A tumbling, hopping or cumulating window subtask. See the module doc.
pub struct PaneWindowOperator {
    core: WindowCore,
    assigner: PaneAssigner,
    panes: BTreeMap<i64, Pane>,
    runs: StateTable<RunCodec>,
    /// The next run's sequence number.
    next_seq: u64,
    /// The memory of the live parts, counted against the shard's budget.
    live_bytes: BudgetCharge,
    /// Windows `(end, start)` that have rows and have not fired.
    pending: BTreeSet<(i64, i64)>,
    watermark: Option<EventTimeMs>,
    /// Groups in the most recently frozen or fired pane: the size to expect for new ones.
    groups_hint: usize,
    scratch: Vec<usize>,
    /// Early results (`table.exec.emit.early-fire.*`), and when the next are due (processing
    /// time, ms).
    early: Option<EarlyFiring>,
    next_early: i64,
    /// The window being fired, when its result is going out in parts.
    firing: Option<Firing>,
}

impl PaneWindowOperator {
    pub(crate) fn new(
        core: WindowCore,
        assigner: PaneAssigner,
        early: Option<EarlyFiring>,
        context: &weir_engine::operator::SubtaskContext,
    ) -> Self {
        let spec = TableSpec {
            name: RUNS_TABLE,
            version: RUNS_FORMAT,
            ttl: None,
        };
        let codec = RunCodec {
            schema: Arc::clone(&core.plan.state_schema),
        };
        PaneWindowOperator {
            runs: context.state_table(spec, codec),
            live_bytes: context.state_budget.charge(),
            next_seq: 0,
            core,
            assigner,
            panes: BTreeMap::new(),
            pending: BTreeSet::new(),
            watermark: None,
            groups_hint: 0,
            scratch: Vec::new(),
            early,
            next_early: 0,
            firing: None,
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

    /// Measures the live parts; past half the budget, freezes them all into runs.
    fn bound_live(&mut self, state: &mut OperatorState<'_>) -> Result<()> {
        if self.measure_live() > self.live_bytes.limit() / 2 {
            self.spill_all(state)?;
        }
        Ok(())
    }

    /// Charges the live parts' memory against the budget; returns it (bytes).
    fn measure_live(&mut self) -> usize {
        let bytes = self
            .panes
            .values()
            .map(|p| {
                p.live.as_ref().map_or(0, LivePane::size)
                    + p.frozen
                        .iter()
                        .map(RecordBatch::get_array_memory_size)
                        .sum::<usize>()
            })
            .sum();
        self.live_bytes.set(bytes);
        bytes
    }

    /// Moves every pane's live and frozen partial states into runs.
    fn spill_all(&mut self, state: &mut OperatorState<'_>) -> Result<()> {
        // (Uncharged first: the runs made take the memory's place in the budget.)
        self.live_bytes.set(0);
        let panes: Vec<i64> = self.panes.keys().copied().collect();
        for pane in panes {
            self.spill(pane, state)?;
        }
        Ok(())
    }

    /// Moves the live part of a pane into its frozen partial states (in memory).
    fn freeze(&mut self, pane_start: i64) -> Result<()> {
        let Some(pane) = self.panes.get_mut(&pane_start) else {
            return Ok(());
        };
        let Some(mut live) = pane.live.take() else {
            return Ok(());
        };
        self.groups_hint = live.groups.len();
        let mut columns = self.core.group_keys(&live.groups)?;
        columns.extend(live.accumulators.take_state()?);
        let schema = Arc::clone(&self.core.plan.state_schema);
        pane.frozen.push(RecordBatch::try_new(schema, columns)?);
        Ok(())
    }

    /// Merges a pane's frozen partial states back into one live part (early results freeze
    /// the panes at every firing: without this, partials would pile up).
    fn thaw(&mut self, pane_start: i64) -> Result<()> {
        let Some(pane) = self.panes.get_mut(&pane_start) else {
            return Ok(());
        };
        if pane.live.is_some() || pane.frozen.is_empty() {
            return Ok(());
        }
        let mut merged = Merge::new(&self.core);
        for partial in pane.frozen.drain(..) {
            merged.add(&self.core, &partial, &mut self.scratch)?;
        }
        if let Some(accumulators) = merged.accumulators {
            pane.live = Some(LivePane {
                groups: merged.groups,
                accumulators,
            });
        }
        Ok(())
    }

    /// Moves a pane's live and frozen partial states into runs, one per key group.
    fn spill(&mut self, pane_start: i64, state: &mut OperatorState<'_>) -> Result<()> {
        self.freeze(pane_start)?;
        let Some(pane) = self.panes.get_mut(&pane_start) else {
            return Ok(());
        };
        let width = self.core.plan.key_columns.len();
        for partial in std::mem::take(&mut pane.frozen) {
            let keys = self
                .core
                .key_rows(&partial.columns()[..width], partial.num_rows())?;
            let mut by_group: BTreeMap<KeyGroup, Vec<u32>> = BTreeMap::new();
            for (i, key) in keys.iter().enumerate() {
                let group = self.core.state_hasher.key_group_of(key.as_ref());
                by_group.entry(group).or_default().push(i as u32);
            }
            for (group, rows) in by_group {
                let run = match rows.len() == partial.num_rows() {
                    true => partial.clone(),
                    false => take_record_batch(&partial, &UInt32Array::from(rows))?,
                };
                self.add_run(pane_start, group, run, state)?;
            }
        }
        Ok(())
    }

    /// Stores a new run of a pane's key group, merged with the earlier ones if there are
    /// [`MAX_RUNS`] of them.
    fn add_run(
        &mut self,
        pane_start: i64,
        group: KeyGroup,
        mut run: RecordBatch,
        state: &mut OperatorState<'_>,
    ) -> Result<()> {
        let Some(pane) = self.panes.get_mut(&pane_start) else {
            return Ok(());
        };
        let seqs = pane.runs.entry(group).or_default();
        if seqs.len() >= MAX_RUNS {
            let mut merged = Merge::new(&self.core);
            for seq in seqs.drain(..) {
                let old = self
                    .runs
                    .take(state, group, &run_key(pane_start, seq))?
                    .ok_or_else(|| missing_run(pane_start, group))?;
                merged.add(&self.core, &old, &mut self.scratch)?;
            }
            merged.add(&self.core, &run, &mut self.scratch)?;
            run = merged.into_states(&self.core)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seqs.push(seq);
        self.runs
            .insert_new(state, group, &run_key(pane_start, seq), run)?;
        Ok(())
    }

    /// Emits the changes of every open window's current result since its last one.
    fn fire_early(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        let open: Vec<(i64, i64)> = self.pending.iter().copied().collect();
        for (end, start) in open {
            let state = ctx.state_or_err()?;
            let mut firing = self.start_firing(start, end, false, state)?;
            if let Some(changes) = self.early_changes(&mut firing, state)? {
                ctx.emit(changes);
            }
        }
        let panes: Vec<i64> = self.panes.keys().copied().collect();
        for pane in panes {
            self.thaw(pane)?;
        }
        self.measure_live();
        Ok(())
    }

    /// With early results: the changes of `firing`'s whole result (taken at once: it is
    /// compared with what the window emitted before) since the window's last result.
    fn early_changes(
        &mut self,
        firing: &mut Firing,
        state: &mut OperatorState<'_>,
    ) -> Result<Option<RecordBatch>> {
        let results = self.fire_some(firing, usize::MAX, state)?;
        let result = concat_batches(&self.core.plan.output_schema, &results)?;
        match &mut self.early {
            Some(early) => {
                early.changes((firing.end, firing.start), &result, firing.closing, state)
            }
            None => Ok(None),
        }
    }

    /// Starts computing the result of window `[start, end)`. `closing`: the window fires for
    /// good, so the runs of the panes whose last window it is are removed as they are read.
    fn start_firing(
        &mut self,
        start: i64,
        end: i64,
        closing: bool,
        state: &mut OperatorState<'_>,
    ) -> Result<Firing> {
        let panes: Vec<i64> = self.panes.range(start..end).map(|(p, _)| *p).collect();
        let mut firing = Firing {
            start,
            end,
            closing,
            groups: Vec::new(),
            whole: None,
            panes,
        };
        // A tumbling window whose only pane never left memory: evaluate it directly.
        if let [only] = firing.panes[..] {
            let sole_window = self.assigner.windows(only).len() == 1;
            if let Some(pane) = self.panes.get_mut(&only) {
                if closing && sole_window && pane.runs.is_empty() && pane.frozen.is_empty() {
                    if let Some(mut live) = pane.live.take() {
                        self.groups_hint = live.groups.len();
                        let n = live.groups.len();
                        let keys = self.core.group_keys(&live.groups)?;
                        let values = live.accumulators.evaluate()?;
                        let bounds = Some((vec![start; n], vec![end; n]));
                        firing.whole = Some(self.core.output(bounds, keys, values)?);
                        return Ok(firing);
                    }
                }
            }
        }
        let spilled = firing
            .panes
            .iter()
            .filter_map(|p| self.panes.get(p))
            .any(|p| !p.runs.is_empty());
        if !spilled {
            // Every pane in memory: merge their frozen partial states at once.
            for &pane_start in &firing.panes {
                self.freeze(pane_start)?;
            }
            let rows = firing
                .panes
                .iter()
                .filter_map(|p| self.panes.get(p))
                .flat_map(|p| p.frozen.iter().map(RecordBatch::num_rows))
                .sum();
            let mut merged = Merge::with_capacity(&self.core, rows);
            for &pane_start in &firing.panes {
                let consume = closing && self.assigner.last_window_end(pane_start) <= end;
                let Some(pane) = self.panes.get_mut(&pane_start) else {
                    continue;
                };
                for partial in &pane.frozen {
                    merged.add(&self.core, partial, &mut self.scratch)?;
                }
                if consume {
                    pane.frozen.clear();
                }
            }
            firing.whole = merged.evaluate(&self.core, start, end)?;
            return Ok(firing);
        }
        for &pane in &firing.panes {
            self.spill(pane, state)?;
        }
        let groups: BTreeSet<KeyGroup> = firing
            .panes
            .iter()
            .filter_map(|p| self.panes.get(p))
            .flat_map(|p| p.runs.keys().copied())
            .collect();
        // Popped from the back: the lowest key group first.
        firing.groups = groups.into_iter().rev().collect();
        Ok(firing)
    }

    /// The next result rows of `firing`, key group by key group until about `rows` rows, in
    /// batches of about [`OUTPUT_BATCH_ROWS`] rows.
    fn fire_some(
        &mut self,
        firing: &mut Firing,
        rows: usize,
        state: &mut OperatorState<'_>,
    ) -> Result<Vec<RecordBatch>> {
        if let Some(whole) = firing.whole.take() {
            // In parts of `rows` rows (zero-copy slices).
            if whole.num_rows() > rows {
                firing.whole = Some(whole.slice(rows, whole.num_rows() - rows));
                return Ok(vec![whole.slice(0, rows)]);
            }
            return Ok(vec![whole]);
        }
        let schema = Arc::clone(&self.core.plan.output_schema);
        let mut out = BatchCoalescer::new(schema, OUTPUT_BATCH_ROWS);
        let mut emitted = 0;
        // Key groups are merged together (their keys differ) until about a batch of groups.
        let mut merged = Merge::new(&self.core);
        while emitted + merged.groups.len() < rows {
            let Some(group) = firing.groups.pop() else {
                break;
            };
            for &pane_start in &firing.panes {
                let consume =
                    firing.closing && self.assigner.last_window_end(pane_start) <= firing.end;
                let Some(pane) = self.panes.get_mut(&pane_start) else {
                    continue;
                };
                let seqs = match consume {
                    true => pane.runs.remove(&group).unwrap_or_default(),
                    false => pane.runs.get(&group).cloned().unwrap_or_default(),
                };
                for seq in seqs {
                    let key = run_key(pane_start, seq);
                    let missing = || missing_run(pane_start, group);
                    match consume {
                        true => {
                            let run = self.runs.take(state, group, &key)?.ok_or_else(missing)?;
                            merged.add(&self.core, &run, &mut self.scratch)?;
                        }
                        false => {
                            let run = self.runs.get(state, group, &key)?.ok_or_else(missing)?;
                            merged.add(&self.core, run, &mut self.scratch)?;
                        }
                    }
                }
            }
            if merged.groups.len() >= OUTPUT_BATCH_ROWS {
                let full = std::mem::replace(&mut merged, Merge::new(&self.core));
                if let Some(result) = full.evaluate(&self.core, firing.start, firing.end)? {
                    emitted += result.num_rows();
                    out.push_batch(result)?;
                }
            }
        }
        if let Some(result) = merged.evaluate(&self.core, firing.start, firing.end)? {
            out.push_batch(result)?;
        }
        out.finish_buffered_batch()?;
        let mut batches = Vec::new();
        while let Some(batch) = out.next_completed_batch() {
            batches.push(batch);
        }
        Ok(batches)
    }
}

/// A window being fired: its bounds and panes, and the key groups left (or, evaluated
/// directly, its whole result).
struct Firing {
    start: i64,
    end: i64,
    closing: bool,
    panes: Vec<i64>,
    /// Key groups not fired yet, the next last.
    groups: Vec<KeyGroup>,
    whole: Option<RecordBatch>,
}

impl Firing {
    fn is_done(&self) -> bool {
        self.groups.is_empty() && self.whole.is_none()
    }
}

/// The runs of one key group merged into fresh accumulators.
struct Merge {
    groups: GroupIndex,
    accumulators: Option<Accumulators>,
}

impl Merge {
    fn new(core: &WindowCore) -> Self {
        Self::with_capacity(core, 0)
    }

    /// A merge expecting about `groups` groups (its index is sized for them at once).
    fn with_capacity(core: &WindowCore, groups: usize) -> Self {
        Merge {
            groups: core.group_index_for(groups),
            accumulators: None,
        }
    }

    fn add(
        &mut self,
        core: &WindowCore,
        run: &RecordBatch,
        scratch: &mut Vec<usize>,
    ) -> Result<()> {
        let aggregates = &core.plan.aggregates;
        let accumulators = match &mut self.accumulators {
            Some(accumulators) => accumulators,
            None => self.accumulators.insert(aggregates.accumulators()?),
        };
        let width = core.plan.key_columns.len();
        let keys = core.key_rows(&run.columns()[..width], run.num_rows())?;
        self.groups.intern(&keys, scratch);
        accumulators.merge(
            aggregates,
            &run.columns()[width..],
            scratch,
            self.groups.len(),
        )
    }

    /// The result rows of window `[start, end)` (`None`: no group).
    fn evaluate(mut self, core: &WindowCore, start: i64, end: i64) -> Result<Option<RecordBatch>> {
        let Some(accumulators) = self
            .accumulators
            .as_mut()
            .filter(|_| !self.groups.is_empty())
        else {
            return Ok(None);
        };
        let n = self.groups.len();
        let bounds = Some((vec![start; n], vec![end; n]));
        let keys = core.group_keys(&self.groups)?;
        Ok(Some(core.output(bounds, keys, accumulators.evaluate()?)?))
    }

    /// The merged partial states as one run.
    fn into_states(mut self, core: &WindowCore) -> Result<RecordBatch> {
        let mut columns = core.group_keys(&self.groups)?;
        match &mut self.accumulators {
            Some(accumulators) => columns.extend(accumulators.take_state()?),
            None => return Ok(RecordBatch::new_empty(Arc::clone(&core.plan.state_schema))),
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&core.plan.state_schema),
            columns,
        )?)
    }
}

/// A run the pane index lists but the table does not hold.
fn missing_run(pane: i64, group: KeyGroup) -> OperatorError {
    OperatorError::State(StateError::Io(format!(
        "a run of the window pane starting at {pane} ms, key group {}, is missing from table '{RUNS_TABLE}'",
        group.0
    )))
}

impl PaneWindowOperator {
    /// Fires the windows ending at or before `time + 1` (the watermark, or the clock for
    /// processing-time windows).
    fn advance(&mut self, time: i64, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        let watermark = self.watermark.map_or(time, |w| w.max(time));
        self.watermark = Some(watermark);
        self.fire_due(ctx)
    }

    /// Fires the windows the watermark has passed, in order of their ends, [`FIRE_PART_ROWS`]
    /// result rows per call (asking the runtime to call again for the rest: a window over
    /// millions of keys goes out in parts, never whole); then frees the panes no window
    /// needs any more.
    fn fire_due(&mut self, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        // Result rows emitted by this call, over all the windows it fires.
        let mut emitted = 0;
        loop {
            if let Some(mut firing) = self.firing.take() {
                let state = ctx.state_or_err()?;
                match self.early.is_some() {
                    true => {
                        if let Some(changes) = self.early_changes(&mut firing, state)? {
                            ctx.emit(changes);
                        }
                    }
                    false => {
                        let rows = FIRE_PART_ROWS.saturating_sub(emitted).max(1);
                        for batch in self.fire_some(&mut firing, rows, state)? {
                            emitted += batch.num_rows();
                            ctx.emit(batch);
                        }
                    }
                }
                if !firing.is_done() {
                    self.firing = Some(firing);
                    ctx.continue_later();
                    return Ok(());
                }
                continue;
            }
            match self.pending.first() {
                Some(_) if emitted >= FIRE_PART_ROWS => {
                    // The next windows in the next part (if they are due).
                    ctx.continue_later();
                    return Ok(());
                }
                Some(&(end, start)) if fired(end, self.watermark) => {
                    self.pending.pop_first();
                    let state = ctx.state_or_err()?;
                    self.firing = Some(self.start_firing(start, end, true, state)?);
                }
                _ => break,
            }
        }
        let watermark = self.watermark;
        let done: Vec<i64> = self
            .panes
            .keys()
            .copied()
            .filter(|&pane| fired(self.assigner.last_window_end(pane), watermark))
            .collect();
        let state = ctx.state_or_err()?;
        for pane_start in done {
            // (Its last window took its runs; a pane whose windows all fired before it got
            // rows has none either. Any left are removed.)
            if let Some(pane) = self.panes.remove(&pane_start) {
                for (group, seqs) in pane.runs {
                    for seq in seqs {
                        self.runs.remove(state, group, &run_key(pane_start, seq))?;
                    }
                }
            }
        }
        // Firing froze or consumed live parts.
        self.measure_live();
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
        self.bound_live(ctx.state_or_err()?)?;
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

    /// The next part of a window's result.
    fn on_continue(&mut self, ctx: &mut Context<'_>) -> Result<(), BoxError> {
        self.fire_due(ctx)
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

    /// Freezes the live parts into runs and writes the runs made since the last snapshot.
    fn snapshot_state(&mut self, state: &mut OperatorState<'_>) -> Result<(), BoxError> {
        if let Some(early) = &mut self.early {
            early.snapshot(state)?;
        }
        crate::state_codec::snapshot_watermark(state, self.watermark)?;
        self.spill_all(state)?;
        self.runs.flush(state)?;
        Ok(())
    }

    /// Lists the runs of this subtask's key groups (they stay in the backend until read).
    fn restore_state(&mut self, state: &OperatorState<'_>) -> Result<(), BoxError> {
        refuse_format_0(state, LEGACY_PANES_TABLE, RUNS_TABLE, RUNS_FORMAT)?;
        if let Some(early) = &mut self.early {
            early.restore(state)?;
        }
        self.panes.clear();
        self.pending.clear();
        self.watermark = crate::state_codec::restore_watermark(state)?;
        let mut runs = Vec::new();
        state.visit_owned(RUNS_TABLE, &mut |group, key, _| {
            let (pane, seq) = parse_run_key(key).ok_or_else(|| StateError::Corrupt {
                table: RUNS_TABLE.into(),
                key_group: group.0,
                reason: format!("a key of {} bytes, not 16", key.len()),
            })?;
            runs.push((pane, group, seq));
            Ok(())
        })?;
        // Oldest first within a pane and key group.
        runs.sort_unstable_by_key(|&(pane, group, seq)| (pane, group, seq));
        for (pane_start, group, seq) in runs {
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            let pane = self.panes.entry(pane_start).or_default();
            pane.runs.entry(group).or_default().push(seq);
        }
        for &pane_start in self.panes.keys() {
            for (start, end) in self.assigner.windows(pane_start) {
                if !fired(end, self.watermark) {
                    self.pending.insert((end, start));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Schema};

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
        let mut backend = weir_engine::state::InMemoryStateBackend::default();
        let state = OperatorState::new(&mut backend, "w", all);
        let mut ctx = Context::new(0, None, all, &mut timers).with_state(state);
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
