//! State tables: keyed state an operator reads and writes while it processes, the hot
//! entries decoded in memory under the shard's memory budget, every other one in the
//! subtask's state backend (RocksDB).
//!
//! An entry is hot (decoded in a hash map) or cold (only its bytes in the backend). Reading a
//! cold entry decodes it into memory. When a shard's hot entries pass its [`MemoryBudget`],
//! the table that is growing evicts its least recently used quarter, writing the dirty ones
//! to the backend first. At a barrier, [`StateTable::flush`] writes every dirty entry and
//! deletes the removed ones: the backend then holds the whole table, and a RocksDB checkpoint
//! of it writes only what changed since the one before (unchanged files are hard links).
//!
//! A stored value is the table's format version (u16, big endian), for a table with a TTL the
//! time it was last written (i64 ms since the epoch, big endian), the XXH3 hash of the value's
//! bytes (u64, big endian: damaged state is an error, never handed to a decoder) and the
//! value's bytes.
//! An entry older than the TTL (processing time since written, as Flink's `OnCreateAndWrite`,
//! `NeverReturnExpired`) is never returned and is removed when met, or by
//! [`StateTable::expire`], so the checkpoint after it leaves it out.

use std::collections::{HashMap, HashSet};
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

/// A slot with its map key, to write back.
type SlotRef<'t, V> = (&'t [u8], &'t mut Slot<V>);

struct Slot<V> {
    value: V,
    /// Changed since it was last written to the backend (or never written).
    dirty: bool,
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
    /// Keys removed since the last flush whose entries the backend may hold.
    removed: HashSet<Box<[u8]>>,
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
            ttl_ms: spec.ttl.map(|t| t.as_millis().min(i64::MAX as u128) as i64),
            spec,
            codec,
            hot: HashMap::new(),
            removed: HashSet::new(),
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

    /// The table's description.
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// Number of hot entries.
    pub fn hot_len(&self) -> usize {
        self.hot.len()
    }

    /// Bytes the hot entries count against the budget.
    pub fn hot_bytes(&self) -> usize {
        self.bytes
    }

    fn expired(&self, written_ms: i64, now: i64) -> bool {
        self.ttl_ms.is_some_and(|ttl| now - written_ms > ttl)
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
            self.forget(slot);
            return Ok(false);
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
        let (group, key) = split_slot_key(slot);
        let Some(bytes) = state.get(self.spec.name, group, key)? else {
            return Ok(false);
        };
        let (written_ms, value) = self.decode(group, &bytes)?;
        if self.expired(written_ms, now) {
            state.delete(self.spec.name, group, key)?;
            return Ok(false);
        }
        self.make_room(state)?;
        let bytes = slot.len() + self.codec.memory_bytes(&value) + ENTRY_OVERHEAD;
        self.bytes += bytes;
        self.budget.add(bytes);
        self.hot.insert(
            Box::from(slot),
            Slot {
                value,
                dirty: false,
                touched: self.clock,
                written_ms,
                bytes,
            },
        );
        Ok(true)
    }

    /// Removes a hot entry from memory and marks it removed (the backend's copy, if any, is
    /// deleted at the next flush).
    fn forget(&mut self, slot: &[u8]) {
        if let Some(entry) = self.hot.remove(slot) {
            self.bytes -= entry.bytes;
            self.budget.sub(entry.bytes);
        }
        self.removed.insert(Box::from(slot));
    }

    /// The value of `key` in key group `group`, if it exists (and has not expired).
    pub fn get(
        &mut self,
        state: &mut OperatorState<'_>,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<&C::Value>, StateError> {
        let slot = slot_key(group, key);
        self.clock += 1;
        if !self.load(state, &slot, crate::time::now_ms())? {
            return Ok(None);
        }
        let clock = self.clock;
        Ok(self.hot.get_mut(&slot).map(|entry| {
            entry.touched = clock;
            &entry.value
        }))
    }

    /// Changes the value of `key` in `group` with `change` (starting from `init()` if there is
    /// none) and returns what `change` returns. The entry counts as written (TTL) and is
    /// written to the backend at the next flush or eviction.
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
        let now = crate::time::now_ms();
        self.clock += 1;
        // A hot entry: one lookup, no allocation.
        self.scratch.clear();
        self.scratch.extend_from_slice(&group.0.to_be_bytes());
        self.scratch.extend_from_slice(key);
        let ttl_ms = self.ttl_ms;
        if let Some(entry) = self.hot.get_mut(self.scratch.as_slice()) {
            if ttl_ms.is_none_or(|ttl| now - entry.written_ms <= ttl) {
                let (result, written) = change(&mut entry.value);
                entry.touched = self.clock;
                if written {
                    entry.dirty = true;
                    entry.written_ms = now;
                    let bytes =
                        self.scratch.len() + self.codec.memory_bytes(&entry.value) + ENTRY_OVERHEAD;
                    self.budget.add(bytes);
                    self.budget.sub(entry.bytes);
                    self.bytes = self.bytes + bytes - entry.bytes;
                    entry.bytes = bytes;
                }
                return Ok(result);
            }
        }
        let slot: Box<[u8]> = Box::from(self.scratch.as_slice());
        if !self.load(state, &slot, now)? {
            let mut value = init();
            let (result, written) = change(&mut value);
            if written {
                self.make_room(state)?;
                self.removed.remove(&slot);
                let bytes = slot.len() + self.codec.memory_bytes(&value) + ENTRY_OVERHEAD;
                self.bytes += bytes;
                self.budget.add(bytes);
                self.hot.insert(
                    slot,
                    Slot {
                        value,
                        dirty: true,
                        touched: self.clock,
                        written_ms: now,
                        bytes,
                    },
                );
            }
            return Ok(result);
        }
        let clock = self.clock;
        let entry = self
            .hot
            .get_mut(&slot)
            .ok_or_else(|| StateError::Io("a loaded state entry is missing".into()))?;
        let (result, written) = change(&mut entry.value);
        entry.touched = clock;
        if written {
            entry.dirty = true;
            entry.written_ms = now;
            let bytes = slot.len() + self.codec.memory_bytes(&entry.value) + ENTRY_OVERHEAD;
            self.budget.add(bytes);
            self.budget.sub(entry.bytes);
            self.bytes = self.bytes + bytes - entry.bytes;
            entry.bytes = bytes;
        }
        Ok(result)
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
        if !self.load(state, &slot, crate::time::now_ms())? {
            return Ok(None);
        }
        let entry = self.hot.remove(&slot);
        if let Some(entry) = &entry {
            self.bytes -= entry.bytes;
            self.budget.sub(entry.bytes);
        }
        self.removed.insert(slot);
        Ok(entry.map(|e| e.value))
    }

    /// Puts `value` under `key` in `group` as a changed hot entry, without reading the
    /// backend or evicting (restoring state of an older format into the table); it is
    /// written at the next flush.
    pub fn restore(&mut self, group: KeyGroup, key: &[u8], value: C::Value) {
        let slot = slot_key(group, key);
        self.forget(&slot);
        self.removed.remove(&slot);
        self.clock += 1;
        let bytes = slot.len() + self.codec.memory_bytes(&value) + ENTRY_OVERHEAD;
        self.bytes += bytes;
        self.budget.add(bytes);
        self.hot.insert(
            slot,
            Slot {
                value,
                dirty: true,
                touched: self.clock,
                written_ms: crate::time::now_ms(),
                bytes,
            },
        );
    }

    /// Removes the entry of `key` in `group`, if any.
    pub fn remove(&mut self, group: KeyGroup, key: &[u8]) {
        self.forget(&slot_key(group, key));
    }

    /// Writes every dirty entry to the backend and deletes the removed ones: called at a
    /// barrier, before the backend is checkpointed. Entries stay hot.
    pub fn flush(&mut self, state: &mut OperatorState<'_>) -> Result<(), StateError> {
        for slot in self.removed.drain() {
            let (group, key) = split_slot_key(&slot);
            state.delete(self.spec.name, group, key)?;
        }
        self.in_backend = Some(true);
        let mut dirty: Vec<SlotRef<'_, C::Value>> = self
            .hot
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(slot, entry)| (&**slot, entry))
            .collect();
        write_back(
            &self.spec,
            &self.codec,
            self.ttl_ms.is_some(),
            state,
            &mut dirty,
        )
    }

    /// Evicts the least recently used quarter of the hot entries when the budget is
    /// exceeded, writing the dirty ones to the backend first.
    fn make_room(&mut self, state: &mut OperatorState<'_>) -> Result<(), StateError> {
        if !self.budget.exceeded() || self.hot.len() < 4 {
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
        if let Some(counter) = &self.evicted {
            counter.add(evicted.len() as u64);
        }
        self.bytes -= freed;
        self.budget.sub(freed);
        self.in_backend = Some(true);
        let mut dirty: Vec<SlotRef<'_, C::Value>> = evicted
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(slot, entry)| (&**slot, entry))
            .collect();
        write_back(
            &self.spec,
            &self.codec,
            self.ttl_ms.is_some(),
            state,
            &mut dirty,
        )
    }

    /// Removes the entries older than the TTL, hot and in the backend (this subtask's key
    /// groups), at most twice per TTL; returns how many were removed.
    pub fn expire(&mut self, state: &mut OperatorState<'_>) -> Result<usize, StateError> {
        let Some(ttl) = self.ttl_ms else {
            return Ok(0);
        };
        let now = crate::time::now_ms();
        if now - self.swept_ms < ttl / 2 {
            return Ok(0);
        }
        self.swept_ms = now;
        let old: Vec<Box<[u8]>> = self
            .hot
            .iter()
            .filter(|(_, e)| now - e.written_ms > ttl)
            .map(|(slot, _)| slot.clone())
            .collect();
        let mut removed = old.len();
        for slot in old {
            self.forget(&slot);
        }
        let mut cold = Vec::new();
        state.visit_owned(self.spec.name, &mut |group, key, value| {
            let slot = slot_key(group, key);
            if self.hot.contains_key(&slot) || self.removed.contains(&slot) {
                return Ok(());
            }
            let (written_ms, _) = split_header(&self.spec, true, group, value)?;
            if now - written_ms > ttl {
                cold.push(slot);
            }
            Ok(())
        })?;
        removed += cold.len();
        for slot in cold {
            let (group, key) = split_slot_key(&slot);
            state.delete(self.spec.name, group, key)?;
        }
        Ok(removed)
    }

    /// The write time and value of stored bytes.
    fn decode(&self, group: KeyGroup, bytes: &[u8]) -> Result<(i64, C::Value), StateError> {
        let (written_ms, body) = split_header(&self.spec, self.ttl_ms.is_some(), group, bytes)?;
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        Ok((written_ms, self.codec.decode(body, version)?))
    }
}

/// Writes `entries` to the backend in their stored form (version, write time with a TTL,
/// value), encoded [`ENCODE_BATCH`] at a time, and marks them clean.
fn write_back<C: StateCodec>(
    spec: &TableSpec,
    codec: &C,
    with_time: bool,
    state: &mut OperatorState<'_>,
    entries: &mut [SlotRef<'_, C::Value>],
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
            let mut bytes = Vec::with_capacity(10 + body.len());
            bytes.extend_from_slice(&spec.version.to_be_bytes());
            if with_time {
                bytes.extend_from_slice(&entry.written_ms.to_be_bytes());
            }
            bytes.extend_from_slice(&xxh3_64(&body).to_be_bytes());
            bytes.extend_from_slice(&body);
            let (group, key) = split_slot_key(slot);
            state.put(spec.name, group, key, bytes)?;
            entry.dirty = false;
        }
    }
    Ok(())
}

/// The write time (0 without a TTL) and the value bytes of a stored value, checking its
/// version.
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
    let Some((version, rest)) = bytes.split_first_chunk::<2>() else {
        return Err(corrupt("a value shorter than its version".into()));
    };
    let version = u16::from_be_bytes(*version);
    if version > spec.version {
        return Err(corrupt(format!(
            "format version {version} is newer than this build's {} of table '{}'",
            spec.version, spec.name
        )));
    }
    let (written_ms, rest) = match with_time {
        true => {
            let Some((time, rest)) = rest.split_first_chunk::<8>() else {
                return Err(corrupt("a value shorter than its write time".into()));
            };
            (i64::from_be_bytes(*time), rest)
        }
        false => (0, rest),
    };
    let Some((hash, body)) = rest.split_first_chunk::<8>() else {
        return Err(corrupt("a value shorter than its checksum".into()));
    };
    if u64::from_be_bytes(*hash) != xxh3_64(body) {
        return Err(corrupt("its checksum does not match its bytes".into()));
    }
    Ok((written_ms, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::KeyGroupRange;
    use crate::state::InMemoryStateBackend;

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
        table.remove(KeyGroup(0), &4u64.to_be_bytes());
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
