//! State tables: keyed state an operator reads and writes while it processes, the hot
//! entries decoded in memory under the shard's memory budget, every other one in the
//! subtask's state backend (RocksDB).
//!
//! An entry is hot (decoded in a hash map) or cold (only its bytes in a store). Reading a
//! cold entry decodes it into memory. When a shard's hot entries pass its [`MemoryBudget`], a
//! table that grows evicts its least recently used quarter (unless it is small next to the
//! shard's others). At a barrier, [`StateTable::flush`] writes every changed entry into the
//! backend and deletes the removed ones: the backend then holds the whole table as of the
//! barrier, and a RocksDB checkpoint of it writes only what changed since the one before
//! (unchanged files are hard links).
//!
//! Between barriers the backend changes only by deleting expired entries, so a checkpoint
//! taken after a barrier never holds later state: with checkpoints, changed entries evicted
//! between barriers go to the spill store ([`OperatorState::spill_put`], a temporary RocksDB
//! outside checkpoints) and move into the backend at the next flush. Without checkpoints the
//! backend is that temporary store, and evictions and removals go straight to it.
//!
//! A stored value is the table's format version (u16, big endian), for a table with a TTL the
//! time it was last written (i64 ms since the epoch, big endian), the XXH3 hash of all of
//! that and the value's bytes (u64, big endian: a damaged value is an error, never handed to
//! a decoder), then the value's bytes. An entry whose TTL has passed (processing time since
//! written, as Flink's `OnCreateAndWrite`, `NeverReturnExpired`) is never returned; it is
//! removed when met or by [`StateTable::expire`].

use hashbrown::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use super::{OperatorState, StateError};
use crate::metrics::Counter;
use crate::partition::KeyGroup;

/// Bytes an entry costs besides its key and value (map slot, bookkeeping).
const ENTRY_OVERHEAD: usize = 64;

/// The most values a [`StateCodec`] encodes at once.
pub const ENCODE_BATCH: usize = 1024;

/// A state TTL in ms: `None` for none or zero (Flink's 0 = never expire), saturated at
/// `i64::MAX` ms.
pub fn ttl_millis(ttl: Option<Duration>) -> Option<i64> {
    ttl.filter(|t| !t.is_zero())
        .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
}

/// Whether an entry written at `written_ms` has outlived `ttl_ms` at `now_ms` (Flink's rule:
/// expired once `written + ttl <= now`).
pub fn ttl_expired(written_ms: i64, ttl_ms: i64, now_ms: i64) -> bool {
    written_ms.saturating_add(ttl_ms) <= now_ms
}

/// The memory a shard's hot state entries may use, shared by all state tables of its
/// subtasks (`state.memory-budget`, divided by the number of shards).
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// No limit: nothing is evicted.
    pub fn unlimited() -> Self {
        MemoryBudget::new(usize::MAX)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes the hot entries under this budget use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn exceeded(&self) -> bool {
        self.used() > self.limit
    }

    /// A charge of memory an operator holds outside its state tables (e.g. a window's
    /// accumulators being updated), counted with the hot entries, so that tables evict to
    /// make room for it. It starts at 0 bytes and is released when dropped.
    pub fn charge(&self) -> BudgetCharge {
        BudgetCharge {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Memory counted against a [`MemoryBudget`] outside state tables; see
/// [`MemoryBudget::charge`].
#[derive(Debug)]
pub struct BudgetCharge {
    budget: MemoryBudget,
    bytes: usize,
}

impl BudgetCharge {
    /// Sets the charge to `bytes`.
    pub fn set(&mut self, bytes: usize) {
        self.budget.add(bytes);
        self.budget.sub(self.bytes);
        self.bytes = bytes;
    }

    /// The bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget's limit in bytes.
    pub fn limit(&self) -> usize {
        self.budget.limit
    }
}

impl Drop for BudgetCharge {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
    }
}

/// How a [`StateTable`]'s values become bytes for the backend and back (a codec may hold
/// what decoding needs, e.g. the aggregates to rebuild accumulators).
pub trait StateCodec {
    type Value;
    /// The bytes of each value, in order. Values come in batches (up to
    /// [`ENCODE_BATCH`]), so a codec can encode them column-wise; `&mut`: some values, like
    /// DataFusion's accumulators, report their state only mutably.
    fn encode(&self, values: &mut [&mut Self::Value]) -> Result<Vec<Vec<u8>>, StateError>;
    /// The value from the bytes [`StateCodec::encode`] wrote under format `version` (an older
    /// version than the table's is migrated here, or refused with a message naming both).
    fn decode(&self, bytes: &[u8], version: u16) -> Result<Self::Value, StateError>;
    /// Bytes the decoded value holds, on the heap and inline (for the budget; an estimate).
    fn memory_bytes(&self, value: &Self::Value) -> usize;
    /// Whether `value`, as just written, outlives the table's TTL however long it then goes
    /// unwritten (as Flink's OVER aggregations never clean up a partition whose rows wait for
    /// the watermark): its TTL starts again when it is next written and this says no.
    fn keeps_alive(&self, _value: &Self::Value) -> bool {
        false
    }
}

/// What a table is: its name (unique within the operator), its format version and how long
/// its entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: &'static str,
    /// Written into every value; a value of a newer version is refused on read.
    pub version: u16,
    /// Entries not written for this long (processing time) expire (`table.exec.state.ttl`);
    /// `None`: they live until the operator removes them.
    pub ttl: Option<Duration>,
}

/// What [`StateTable::visit_stored`] calls with each entry: its key group, key and value.
pub type ValueVisitor<'v, V> = dyn FnMut(KeyGroup, &[u8], V) -> Result<(), StateError> + 'v;

/// A slot with its map key, to write back.
type SlotRef<'t, V> = (&'t [u8], &'t mut Slot<V>);

struct Slot<V> {
    value: V,
    /// Changed since it was last written to the backend (or never written).
    dirty: bool,
    /// The backend may hold a copy (an older one if dirty): a removal must delete it.
    stored: bool,
    /// Last read or written, in the table's access clock (for eviction).
    touched: u64,
    /// Last written, ms since the epoch (TTL).
    written_ms: i64,
    /// What the slot counts against the budget.
    bytes: usize,
}

/// One state table of an operator subtask. See the module doc.
pub struct StateTable<C: StateCodec> {
    spec: TableSpec,
    codec: C,
    hot: HashMap<Box<[u8]>, Slot<C::Value>>,
    /// Keys removed since the last flush whose entries the backend may hold (with
    /// checkpoints; without, removals delete at once).
    removed: HashSet<Box<[u8]>>,
    /// Keys whose newest value was evicted into the spill store since the last flush.
    spilled: HashSet<Box<[u8]>>,
    /// Bytes of the hot entries.
    bytes: usize,
    budget: MemoryBudget,
    clock: u64,
    ttl_ms: Option<i64>,
    /// The last [`StateTable::expire`] sweep, ms since the epoch.
    swept_ms: i64,
    evicted: Option<Counter>,
    /// The map key being looked up (reused: a hit allocates nothing).
    scratch: Vec<u8>,
    /// Whether the backend may hold entries of the table (unknown until first asked; a fresh
    /// job's table is empty there until it writes), so lookups of new keys skip it.
    in_backend: Option<bool>,
}

impl<C: StateCodec> Drop for StateTable<C> {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
    }
}

/// The map key of an entry: its key group (big endian) then its key.
fn slot_key(group: KeyGroup, key: &[u8]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(2 + key.len());
    out.extend_from_slice(&group.0.to_be_bytes());
    out.extend_from_slice(key);
    out.into_boxed_slice()
}

fn split_slot_key(slot: &[u8]) -> (KeyGroup, &[u8]) {
    let group = u16::from_be_bytes([slot[0], slot[1]]);
    (KeyGroup(group), &slot[2..])
}

impl<C: StateCodec> StateTable<C> {
    /// An empty table (its entries may already be in the backend: a restored job's are)
    /// whose values `codec` encodes, counting its hot entries against `budget`.
    pub fn new(spec: TableSpec, codec: C, budget: MemoryBudget) -> Self {
        StateTable {
            ttl_ms: ttl_millis(spec.ttl),
            spec,
            codec,
            hot: HashMap::new(),
            removed: HashSet::new(),
            spilled: HashSet::new(),
            bytes: 0,
            budget,
            clock: 0,
            swept_ms: crate::time::now_ms(),
            evicted: None,
            scratch: Vec::new(),
            in_backend: None,
        }
    }

    /// Counts the entries evicted from memory in `counter`.
    pub fn counting_evictions(mut self, counter: Counter) -> Self {
        self.evicted = Some(counter);
        self
    }

    /// Number of hot entries.
    pub fn hot_len(&self) -> usize {
        self.hot.len()
    }

    /// The time entries are written at (ms since the epoch): the clock is read only with a
    /// TTL, the one thing write times are for.
    fn now(&self) -> i64 {
        match self.ttl_ms {
            Some(_) => crate::time::now_ms(),
            None => 0,
        }
    }

    /// The write time an entry written at `now` with `value` records: never expiring while
    /// the codec keeps it alive ([`StateCodec::keeps_alive`]).
    fn write_time(ttl_ms: Option<i64>, codec: &C, value: &C::Value, now: i64) -> i64 {
        match ttl_ms.is_some() && codec.keeps_alive(value) {
            true => i64::MAX,
            false => now,
        }
    }

    fn expired(&self, written_ms: i64, now: i64) -> bool {
        self.ttl_ms
            .is_some_and(|ttl| ttl_expired(written_ms, ttl, now))
    }

    /// Puts a decoded value into memory (after making room).
    fn insert_hot(
        &mut self,
        state: &mut OperatorState<'_>,
        slot: Box<[u8]>,
        value: C::Value,
        written_ms: i64,
        dirty: bool,
        stored: bool,
    ) -> Result<(), StateError> {
        self.make_room(state)?;
        let bytes = slot.len() + self.codec.memory_bytes(&value) + ENTRY_OVERHEAD;
        self.bytes += bytes;
        self.budget.add(bytes);
        self.hot.insert(
            slot,
            Slot {
                value,
                dirty,
                stored,
                touched: self.clock,
                written_ms,
                bytes,
            },
        );
        Ok(())
    }

    /// Makes the entry of `slot` hot if it exists and has not expired; whether it is.
    fn load(
        &mut self,
        state: &mut OperatorState<'_>,
        slot: &[u8],
        now: i64,
    ) -> Result<bool, StateError> {
        if let Some(entry) = self.hot.get(slot) {
            if !self.expired(entry.written_ms, now) {
                return Ok(true);
            }
            self.forget(state, slot)?;
            return Ok(false);
        }
        let (group, key) = split_slot_key(slot);
        if self.spilled.remove(slot) {
            // Newer than the backend's copy: hot and changed again until the next flush.
            let bytes = state
                .spill_get(self.spec.name, group, key)?
                .ok_or_else(|| {
                    StateError::Io(format!(
                        "a spilled entry of table '{}' is missing",
                        self.spec.name
                    ))
                })?;
            state.spill_delete(self.spec.name, group, key)?;
            let (written_ms, value) = self.decode(group, &bytes)?;
            if self.expired(written_ms, now) {
                self.removed.insert(Box::from(slot));
                return Ok(false);
            }
            self.insert_hot(state, Box::from(slot), value, written_ms, true, true)?;
            return Ok(true);
        }
        if self.removed.contains(slot) {
            return Ok(false);
        }
        let in_backend = match self.in_backend {
            Some(known) => known,
            None => *self.in_backend.insert(state.has_entries(self.spec.name)?),
        };
        if !in_backend {
            return Ok(false);
        }
        let Some(bytes) = state.get(self.spec.name, group, key)? else {
            return Ok(false);
        };
        let (written_ms, value) = self.decode(group, &bytes)?;
        if self.expired(written_ms, now) {
            // (Expired at any later restore too: deleting it between barriers is safe.)
            state.delete(self.spec.name, group, key)?;
            return Ok(false);
        }
        self.insert_hot(state, Box::from(slot), value, written_ms, false, true)?;
        Ok(true)
    }

    /// Removes an entry, hot or cold: from memory, from the spill store, and from the
    /// backend (at the next flush with checkpoints, at once without).
    fn forget(&mut self, state: &mut OperatorState<'_>, slot: &[u8]) -> Result<(), StateError> {
        let hot = self.hot.remove(slot);
        if let Some(entry) = &hot {
            self.bytes -= entry.bytes;
            self.budget.sub(entry.bytes);
        }
        self.record_removal(state, slot, hot.is_none_or(|entry| entry.stored))
    }

    /// Removes a key that is no longer hot from the spill store and, if the backend may hold
    /// it (`stored`), from the backend.
    fn record_removal(
        &mut self,
        state: &mut OperatorState<'_>,
        slot: &[u8],
        stored: bool,
    ) -> Result<(), StateError> {
        let (group, key) = split_slot_key(slot);
        if self.spilled.remove(slot) {
            state.spill_delete(self.spec.name, group, key)?;
        }
        if !stored || self.in_backend == Some(false) {
            return Ok(());
        }
        match state.has_spill() {
            true => {
                self.removed.insert(Box::from(slot));
            }
            false => state.delete(self.spec.name, group, key)?,
        }
        Ok(())
    }

    /// The value of `key` in key group `group`, if it exists (and has not expired).
    pub fn get(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<&C::Value>, StateError> {
        // The map key in the reused buffer: a hot entry costs no allocation.
        let mut slot = std::mem::take(&mut self.scratch);
        slot.clear();
        slot.extend_from_slice(&group.0.to_be_bytes());
        slot.extend_from_slice(key);
        self.clock += 1;
        let found = self.load(state, &slot, self.now())?;
        let clock = self.clock;
        let entry = self.hot.get_mut(slot.as_slice()).filter(|_| found);
        self.scratch = slot;
        Ok(entry.map(|entry| {
            entry.touched = clock;
            &entry.value
        }))
    }

    /// Changes the value of `key` in `group` with `change` (starting from `init()` if there is
    /// none) and returns what `change` returns. The entry counts as written (TTL) and is
    /// written to the backend at the next flush.
    pub fn update<R>(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
        init: impl FnOnce() -> C::Value,
        change: impl FnOnce(&mut C::Value) -> R,
    ) -> Result<R, StateError> {
        self.update_with(state, group, key, init, |value| (change(value), true))
    }

    /// Like [`StateTable::update`], but `change` says whether it changed the value: only then
    /// does the entry count as written (TTL, as Flink writes state only when it changes) and
    /// go to the backend; a new value `change` did not write is not kept.
    pub fn update_with<R>(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
        init: impl FnOnce() -> C::Value,
        change: impl FnOnce(&mut C::Value) -> (R, bool),
    ) -> Result<R, StateError> {
        let now = self.now();
        self.clock += 1;
        // A hot entry: one lookup, no allocation.
        self.scratch.clear();
        self.scratch.extend_from_slice(&group.0.to_be_bytes());
        self.scratch.extend_from_slice(key);
        let ttl_ms = self.ttl_ms;
        let live = |entry: &Slot<C::Value>| {
            ttl_ms.is_none_or(|ttl| !ttl_expired(entry.written_ms, ttl, now))
        };
        let slot: Box<[u8]> = match self.hot.get_mut(self.scratch.as_slice()) {
            Some(entry) if live(entry) => {
                let (result, written) = change(&mut entry.value);
                entry.touched = self.clock;
                if written {
                    self.written(now);
                    self.make_room(state)?;
                }
                return Ok(result);
            }
            _ => Box::from(self.scratch.as_slice()),
        };
        if self.load(state, &slot, now)? {
            let entry = self
                .hot
                .get_mut(&slot)
                .ok_or_else(|| StateError::Io("a loaded state entry is missing".into()))?;
            let (result, written) = change(&mut entry.value);
            if written {
                self.scratch.clear();
                self.scratch.extend_from_slice(&slot);
                self.written(now);
                self.make_room(state)?;
            }
            return Ok(result);
        }
        let mut value = init();
        let (result, written) = change(&mut value);
        if written {
            let stored = self.removed.remove(&slot);
            let written_ms = Self::write_time(self.ttl_ms, &self.codec, &value, now);
            self.insert_hot(state, slot, value, written_ms, true, stored)?;
        }
        Ok(result)
    }

    /// Marks the hot entry under `self.scratch` written at `now` and measures it again.
    fn written(&mut self, now: i64) {
        let Some(entry) = self.hot.get_mut(self.scratch.as_slice()) else {
            return;
        };
        entry.dirty = true;
        entry.written_ms = Self::write_time(self.ttl_ms, &self.codec, &entry.value, now);
        let bytes = self.scratch.len() + self.codec.memory_bytes(&entry.value) + ENTRY_OVERHEAD;
        self.budget.add(bytes);
        self.budget.sub(entry.bytes);
        self.bytes = self.bytes + bytes - entry.bytes;
        entry.bytes = bytes;
    }

    /// Adds the entry of `key` in `group`, a key the table does not hold (an operator's own
    /// unique key, e.g. a sequence number): no lookup. It counts as written.
    pub fn insert_new(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
        value: C::Value,
    ) -> Result<(), StateError> {
        self.clock += 1;
        let slot = slot_key(group, key);
        // Removed before and not flushed yet: the backend still holds the old value.
        let stored = self.removed.remove(&slot);
        let written_ms = Self::write_time(self.ttl_ms, &self.codec, &value, self.now());
        self.insert_hot(state, slot, value, written_ms, true, stored)
    }

    /// Removes the entry of `key` in `group` and returns its value, if it had one (and it
    /// had not expired).
    pub fn take(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<C::Value>, StateError> {
        let slot = slot_key(group, key);
        if !self.load(state, &slot, self.now())? {
            return Ok(None);
        }
        let Some(entry) = self.hot.remove(&slot) else {
            return Ok(None);
        };
        self.bytes -= entry.bytes;
        self.budget.sub(entry.bytes);
        self.record_removal(state, &slot, entry.stored)?;
        Ok(Some(entry.value))
    }

    /// Removes the entry of `key` in `group`, if any.
    pub fn remove(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<(), StateError> {
        self.forget(state, &slot_key(group, key))
    }

    /// Writes the entries changed since the last flush into the backend (the hot ones and
    /// those evicted into the spill store) and deletes the removed ones: called at a barrier,
    /// before the backend is checkpointed. Entries stay hot.
    pub fn flush(&mut self, state: &mut OperatorState<'_>) -> Result<(), StateError> {
        for slot in self.removed.drain() {
            let (group, key) = split_slot_key(&slot);
            state.delete(self.spec.name, group, key)?;
        }
        for slot in self.spilled.drain() {
            let (group, key) = split_slot_key(&slot);
            if let Some(bytes) = state.spill_get(self.spec.name, group, key)? {
                state.put(self.spec.name, group, key, bytes)?;
                self.in_backend = Some(true);
            }
            state.spill_delete(self.spec.name, group, key)?;
        }
        let mut dirty: Vec<SlotRef<'_, C::Value>> = self
            .hot
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(slot, entry)| (&**slot, entry))
            .collect();
        if !dirty.is_empty() {
            self.in_backend = Some(true);
        }
        write_back(
            &self.spec,
            &self.codec,
            self.ttl_ms.is_some(),
            state,
            &mut dirty,
            false,
        )
    }

    /// When the shard is over its budget and this table holds a fair part of it, evicts the
    /// least recently used quarter of the hot entries. Changed ones are written first: to
    /// the spill store with checkpoints (the backend changes only at barriers), to the
    /// backend without.
    fn make_room(&mut self, state: &mut OperatorState<'_>) -> Result<(), StateError> {
        if !self.budget.exceeded() || self.hot.len() < 4 || self.bytes < self.budget.used() / 8 {
            return Ok(());
        }
        let mut ages: Vec<u64> = self.hot.values().map(|e| e.touched).collect();
        let quarter = ages.len() / 4;
        let (_, &mut oldest_kept, _) = ages.select_nth_unstable(quarter);
        let cold: Vec<Box<[u8]>> = self
            .hot
            .iter()
            .filter(|(_, e)| e.touched < oldest_kept)
            .map(|(slot, _)| slot.clone())
            .collect();
        let mut evicted: Vec<_> = cold
            .into_iter()
            .filter_map(|slot| self.hot.remove(&slot).map(|entry| (slot, entry)))
            .collect();
        let freed: usize = evicted.iter().map(|(_, e)| e.bytes).sum();
        self.bytes -= freed;
        self.budget.sub(freed);
        if let Some(counter) = &self.evicted {
            counter.add(evicted.len() as u64);
        }
        let mut dirty: Vec<SlotRef<'_, C::Value>> = evicted
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(slot, entry)| (&**slot, entry))
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let spill = state.has_spill();
        match spill {
            true => self
                .spilled
                .extend(dirty.iter().map(|(slot, _)| Box::from(*slot))),
            false => self.in_backend = Some(true),
        }
        write_back(
            &self.spec,
            &self.codec,
            self.ttl_ms.is_some(),
            state,
            &mut dirty,
            spill,
        )
    }

    /// Removes the entries older than the TTL, hot and in the backend (this subtask's key
    /// groups), at most twice per TTL; returns how many were removed. (Entries evicted into
    /// the spill store since the last flush are removed when next read.)
    pub fn expire(&mut self, state: &mut OperatorState<'_>) -> Result<usize, StateError> {
        let Some(ttl) = self.ttl_ms else {
            return Ok(0);
        };
        let now = crate::time::now_ms();
        if now.saturating_sub(self.swept_ms) < ttl / 2 {
            return Ok(0);
        }
        self.swept_ms = now;
        let old: Vec<Box<[u8]>> = self
            .hot
            .iter()
            .filter(|(_, e)| ttl_expired(e.written_ms, ttl, now))
            .map(|(slot, _)| slot.clone())
            .collect();
        let mut removed = old.len();
        for slot in old {
            self.forget(state, &slot)?;
        }
        if self.in_backend == Some(false) {
            return Ok(removed);
        }
        let mut cold = Vec::new();
        state.visit_owned(self.spec.name, &mut |group, key, value| {
            let slot = slot_key(group, key);
            if self.hot.contains_key(&slot) || self.removed.contains(&slot) {
                return Ok(());
            }
            let (written_ms, _) = split_header(&self.spec, true, group, value)?;
            if ttl_expired(written_ms, ttl, now) {
                cold.push(slot);
            }
            Ok(())
        })?;
        removed += cold.len();
        for slot in cold {
            // (Expired at any later restore too: deleting it between barriers is safe.)
            let (group, key) = split_slot_key(&slot);
            state.delete(self.spec.name, group, key)?;
        }
        Ok(removed)
    }

    /// Calls `visit` with every entry of the table in the backend in this subtask's key
    /// groups, decoded, and not expired: how a restore rebuilds an operator's in-memory index
    /// of its entries. Hot entries are not visited: call it before the table is used.
    pub fn visit_stored(
        &self,
        state: &OperatorState<'_>,
        visit: &mut ValueVisitor<'_, C::Value>,
    ) -> Result<(), StateError> {
        let now = crate::time::now_ms();
        state.visit_owned(self.spec.name, &mut |group, key, bytes| {
            let (written_ms, value) = self.decode(group, bytes)?;
            match self.expired(written_ms, now) {
                true => Ok(()),
                false => visit(group, key, value),
            }
        })
    }

    /// The write time and value of stored bytes.
    fn decode(&self, group: KeyGroup, bytes: &[u8]) -> Result<(i64, C::Value), StateError> {
        let (written_ms, body) = split_header(&self.spec, self.ttl_ms.is_some(), group, bytes)?;
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        Ok((written_ms, self.codec.decode(body, version)?))
    }
}

/// Writes `entries` in their stored form (version, write time with a TTL, checksum, value)
/// into the backend, or with `to_spill` into the spill store, encoded [`ENCODE_BATCH`] at a
/// time, and marks them clean.
fn write_back<C: StateCodec>(
    spec: &TableSpec,
    codec: &C,
    with_time: bool,
    state: &mut OperatorState<'_>,
    entries: &mut [SlotRef<'_, C::Value>],
    to_spill: bool,
) -> Result<(), StateError> {
    for chunk in entries.chunks_mut(ENCODE_BATCH) {
        let mut values: Vec<&mut C::Value> = chunk.iter_mut().map(|(_, e)| &mut e.value).collect();
        let encoded = codec.encode(&mut values)?;
        if encoded.len() != chunk.len() {
            return Err(StateError::Encoding(format!(
                "table '{}': {} values encoded as {}",
                spec.name,
                chunk.len(),
                encoded.len()
            )));
        }
        for ((slot, entry), body) in chunk.iter_mut().zip(encoded) {
            let mut bytes = Vec::with_capacity(18 + body.len());
            bytes.extend_from_slice(&spec.version.to_be_bytes());
            if with_time {
                bytes.extend_from_slice(&entry.written_ms.to_be_bytes());
            }
            let header = bytes.len();
            bytes.extend_from_slice(&[0; 8]);
            bytes.extend_from_slice(&body);
            let hash = checksum(&bytes[..header], &bytes[header + 8..]);
            bytes[header..header + 8].copy_from_slice(&hash.to_be_bytes());
            let (group, key) = split_slot_key(slot);
            match to_spill {
                true => state.spill_put(spec.name, group, key, bytes)?,
                false => state.put(spec.name, group, key, bytes)?,
            }
            entry.dirty = false;
            entry.stored = true;
        }
    }
    Ok(())
}

/// The checksum of a stored value: XXH3 of its header (version, write time) and its bytes.
fn checksum(header: &[u8], body: &[u8]) -> u64 {
    let mut all = Vec::with_capacity(header.len() + body.len());
    all.extend_from_slice(header);
    all.extend_from_slice(body);
    xxh3_64(&all)
}

/// The write time (0 without a TTL) and the value bytes of a stored value, checking its
/// checksum and version.
fn split_header<'b>(
    spec: &TableSpec,
    with_time: bool,
    group: KeyGroup,
    bytes: &'b [u8],
) -> Result<(i64, &'b [u8]), StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        table: spec.name.to_string(),
        key_group: group.0,
        reason,
    };
    let header = if with_time { 10 } else { 2 };
    if bytes.len() < header + 8 {
        return Err(corrupt("a value shorter than its header".into()));
    }
    let (head, rest) = bytes.split_at(header);
    let (hash, body) = rest.split_at(8);
    let hash = u64::from_be_bytes([
        hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7],
    ]);
    if hash != checksum(head, body) {
        return Err(corrupt("its checksum does not match its bytes".into()));
    }
    let version = u16::from_be_bytes([head[0], head[1]]);
    if version > spec.version {
        return Err(corrupt(format!(
            "format version {version} is newer than this build's {} of table '{}'",
            spec.version, spec.name
        )));
    }
    let written_ms = match with_time {
        true => i64::from_be_bytes([
            head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9],
        ]),
        false => 0,
    };
    Ok((written_ms, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::KeyGroupRange;
    use crate::state::{InMemoryStateBackend, StateBackend};

    /// Counts as 8 bytes.
    struct Counts;

    impl StateCodec for Counts {
        type Value = i64;
        fn encode(&self, values: &mut [&mut i64]) -> Result<Vec<Vec<u8>>, StateError> {
            Ok(values.iter().map(|v| v.to_be_bytes().to_vec()).collect())
        }
        fn decode(&self, bytes: &[u8], _version: u16) -> Result<i64, StateError> {
            let bytes: [u8; 8] = bytes
                .try_into()
                .map_err(|_| StateError::Io("not an i64".into()))?;
            Ok(i64::from_be_bytes(bytes))
        }
        fn memory_bytes(&self, _value: &i64) -> usize {
            8
        }
    }

    fn new_table(spec: TableSpec, budget: MemoryBudget) -> StateTable<Counts> {
        StateTable::new(spec, Counts, budget)
    }

    fn spec(ttl: Option<Duration>) -> TableSpec {
        TableSpec {
            name: "counts",
            version: 1,
            ttl,
        }
    }

    /// Under a small budget most entries are cold, yet every count is right, and a flush
    /// leaves the whole table in the backend.
    #[test]
    fn entries_spill_to_the_backend_and_come_back() {
        let mut backend = InMemoryStateBackend::new();
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let budget = MemoryBudget::new(100 * (ENTRY_OVERHEAD + 18));
        let mut table = new_table(spec(None), budget.clone());
        for round in 0..3 {
            for k in 0..2_000u64 {
                let group = KeyGroup((k % 128) as u16);
                table
                    .update(&mut state, group, &k.to_be_bytes(), || 0, |v| *v += 1)
                    .unwrap();
            }
            assert!(
                budget.used() <= budget.limit() + 2 * (ENTRY_OVERHEAD + 18),
                "round {round}"
            );
        }
        assert!(table.hot_len() < 200);
        for k in (0..2_000u64).step_by(7) {
            let group = KeyGroup((k % 128) as u16);
            assert_eq!(
                table.get(&mut state, group, &k.to_be_bytes()).unwrap(),
                Some(&3)
            );
        }
        table.flush(&mut state).unwrap();
        assert_eq!(backend.len(), 2_000);
        // A new table over the same backend (a restored job) finds every entry.
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let mut again = new_table(spec(None), MemoryBudget::unlimited());
        assert_eq!(
            again
                .get(&mut state, KeyGroup(5), &5u64.to_be_bytes())
                .unwrap(),
            Some(&3)
        );
        drop(table);
        assert_eq!(budget.used(), 0);
    }

    /// With checkpoints (a spill store), the backend changes only at flushes: what is evicted
    /// between them waits in the spill store, so a checkpoint taken after a barrier never
    /// holds later state; the flush moves it into the backend.
    #[test]
    fn with_a_spill_store_the_backend_changes_only_at_flushes() {
        let mut backend = InMemoryStateBackend::new();
        let mut spill = InMemoryStateBackend::new();
        let all = KeyGroupRange::all(128);
        let budget = MemoryBudget::new(100 * (ENTRY_OVERHEAD + 18));
        let mut table = new_table(spec(None), budget);
        let round = |table: &mut StateTable<Counts>,
                     backend: &mut InMemoryStateBackend,
                     spill: &mut InMemoryStateBackend,
                     flush: bool| {
            let mut state = OperatorState::new(backend, "op", all)
                .with_spill(Some(spill as &mut dyn StateBackend));
            for k in 0..1_000u64 {
                let group = KeyGroup((k % 128) as u16);
                table
                    .update(&mut state, group, &k.to_be_bytes(), || 0, |v| *v += 1)
                    .unwrap();
            }
            if flush {
                table.flush(&mut state).unwrap();
            }
        };
        round(&mut table, &mut backend, &mut spill, true);
        assert_eq!(backend.len(), 1_000, "the flush wrote every key");
        assert!(spill.is_empty(), "and emptied the spill store");
        let at_barrier = backend.clone();
        round(&mut table, &mut backend, &mut spill, false);
        assert!(!spill.is_empty(), "evictions went to the spill store");
        assert!(
            backend
                .values_mut()
                .zip(at_barrier.clone().values_mut())
                .all(|(a, b)| a == b),
            "the backend still holds the state as of the barrier"
        );
        let mut state = OperatorState::new(&mut backend, "op", all).with_spill(Some(&mut spill));
        for k in (0..1_000u64).step_by(13) {
            let group = KeyGroup((k % 128) as u16);
            assert_eq!(
                table.get(&mut state, group, &k.to_be_bytes()).unwrap(),
                Some(&2)
            );
        }
        table.flush(&mut state).unwrap();
        assert!(spill.is_empty());
        let mut state = OperatorState::new(&mut backend, "op", all);
        let mut fresh = new_table(spec(None), MemoryBudget::unlimited());
        for k in 0..1_000u64 {
            let group = KeyGroup((k % 128) as u16);
            assert_eq!(
                fresh.get(&mut state, group, &k.to_be_bytes()).unwrap(),
                Some(&2),
                "key {k}"
            );
        }
    }

    /// A flush writes only what changed since the previous one, and removed entries go.
    #[test]
    fn a_flush_writes_what_changed() {
        let mut backend = InMemoryStateBackend::new();
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let mut table = new_table(spec(None), MemoryBudget::unlimited());
        for k in 0..100u64 {
            table
                .update(
                    &mut state,
                    KeyGroup(0),
                    &k.to_be_bytes(),
                    || 0,
                    |v| *v = k as i64,
                )
                .unwrap();
        }
        table.flush(&mut state).unwrap();
        let dirty = table.hot.values().filter(|e| e.dirty).count();
        assert_eq!(dirty, 0);
        table
            .update(
                &mut state,
                KeyGroup(0),
                &3u64.to_be_bytes(),
                || 0,
                |v| *v = -3,
            )
            .unwrap();
        table
            .remove(&mut state, KeyGroup(0), &4u64.to_be_bytes())
            .unwrap();
        assert_eq!(table.hot.values().filter(|e| e.dirty).count(), 1);
        table.flush(&mut state).unwrap();
        assert_eq!(
            table
                .get(&mut state, KeyGroup(0), &4u64.to_be_bytes())
                .unwrap(),
            None
        );
        assert_eq!(backend.len(), 99);
    }

    /// Entries past their TTL are not returned, hot or cold, and a sweep removes them from
    /// the backend.
    #[test]
    fn expired_entries_are_not_returned_and_are_swept() {
        let mut backend = InMemoryStateBackend::new();
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let mut table = new_table(
            spec(Some(Duration::from_millis(20))),
            MemoryBudget::unlimited(),
        );
        for k in 0..10u64 {
            table
                .update(&mut state, KeyGroup(1), &k.to_be_bytes(), || 0, |v| *v += 1)
                .unwrap();
        }
        table.flush(&mut state).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        table
            .update(
                &mut state,
                KeyGroup(1),
                &0u64.to_be_bytes(),
                || 0,
                |v| *v += 1,
            )
            .unwrap();
        assert_eq!(
            table
                .get(&mut state, KeyGroup(1), &0u64.to_be_bytes())
                .unwrap(),
            Some(&1),
            "an expired entry starts again"
        );
        assert_eq!(
            table
                .get(&mut state, KeyGroup(1), &1u64.to_be_bytes())
                .unwrap(),
            None
        );
        // A fresh table (nothing hot) over the backend: the sweep removes the stale entries.
        let mut cold = new_table(
            spec(Some(Duration::from_millis(20))),
            MemoryBudget::unlimited(),
        );
        cold.swept_ms = 0;
        table.flush(&mut state).unwrap();
        let removed = cold.expire(&mut state).unwrap();
        // Key 0 was written again, key 1 removed when read: keys 2 to 9 remain to sweep.
        assert_eq!(removed, 8);
        assert_eq!(backend.len(), 1);
    }

    /// A damaged value is an error naming the table, not a value.
    #[test]
    fn a_damaged_value_is_an_error() {
        let mut backend = InMemoryStateBackend::new();
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let mut table = new_table(spec(None), MemoryBudget::unlimited());
        table
            .update(&mut state, KeyGroup(0), b"k", || 7, |_| ())
            .unwrap();
        table.flush(&mut state).unwrap();
        for value in backend.values_mut() {
            let last = value.len() - 1;
            value[last] ^= 1;
        }
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let mut table = new_table(spec(None), MemoryBudget::unlimited());
        let error = table
            .get(&mut state, KeyGroup(0), b"k")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("counts") && error.contains("checksum"),
            "{error}"
        );
    }

    /// A value written by a newer format version is refused with a message naming both.
    #[test]
    fn a_newer_format_version_is_refused() {
        let mut backend = InMemoryStateBackend::new();
        let mut state = OperatorState::new(&mut backend, "op", KeyGroupRange::all(128));
        let mut newer = new_table(
            TableSpec {
                version: 2,
                ..spec(None)
            },
            MemoryBudget::unlimited(),
        );
        newer
            .update(&mut state, KeyGroup(0), b"k", || 7, |_| ())
            .unwrap();
        newer.flush(&mut state).unwrap();
        let mut older = new_table(spec(None), MemoryBudget::unlimited());
        let error = older
            .get(&mut state, KeyGroup(0), b"k")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("format version 2 is newer than this build's 1"),
            "{error}"
        );
    }
}
