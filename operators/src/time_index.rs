//! An in-memory index of keys by a time (a kept row's expiry, an OVER partition's earliest
//! waiting row), ordered so that a watermark finds the keys it reaches without reading their
//! state. Its memory is charged to the shard's state budget ([`BudgetCharge`]), so state
//! tables evict to make room for it. Operators rebuild it from their tables at restore.

use std::collections::BTreeSet;

use weir_engine::operator::SubtaskContext;
use weir_engine::partition::KeyGroup;
use weir_engine::state::table::BudgetCharge;

/// Bytes an entry costs besides its key (its time and group, the B-tree's share).
const ENTRY_OVERHEAD: usize = 56;

/// Keys (with their key groups) by a time (ms), at most one entry per (time, key).
pub struct TimeIndex {
    entries: BTreeSet<(i64, KeyGroup, Box<[u8]>)>,
    charge: BudgetCharge,
    bytes: usize,
}

impl TimeIndex {
    pub fn new(context: &SubtaskContext) -> Self {
        TimeIndex {
            entries: BTreeSet::new(),
            charge: context.state_budget.charge(),
            bytes: 0,
        }
    }

    /// Moves `key`'s entry from time `before` to time `now` (either may be none: a key
    /// entering or leaving the index).
    pub fn reindex(&mut self, before: Option<i64>, now: Option<i64>, group: KeyGroup, key: &[u8]) {
        if before == now {
            return;
        }
        if let Some(before) = before {
            if self.entries.remove(&(before, group, Box::from(key))) {
                self.bytes -= key.len() + ENTRY_OVERHEAD;
            }
        }
        if let Some(now) = now {
            if self.entries.insert((now, group, Box::from(key))) {
                self.bytes += key.len() + ENTRY_OVERHEAD;
            }
        }
        self.charge.set(self.bytes);
    }

    /// Every entry (time, key group, key), earliest first.
    pub fn entries(&self) -> impl Iterator<Item = (i64, KeyGroup, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|(time, group, key)| (*time, *group, &key[..]))
    }

    /// The earliest time in the index.
    pub fn first_time(&self) -> Option<i64> {
        self.entries.first().map(|(time, _, _)| *time)
    }

    /// Removes and returns the earliest entry if its time is at or before `time`.
    pub fn pop_until(&mut self, time: i64) -> Option<(i64, KeyGroup, Box<[u8]>)> {
        if self.first_time()? > time {
            return None;
        }
        let entry = self.entries.pop_first()?;
        self.bytes -= entry.2.len() + ENTRY_OVERHEAD;
        self.charge.set(self.bytes);
        Some(entry)
    }
}
