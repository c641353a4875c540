//! The state API: keyed state stored by key group, with snapshot/restore hooks.
//!
//! Stateful operators keep hot state in memory and, at a barrier, write it through
//! [`OperatorState`] into the shard's [`StateBackend`]: entries `(table, key group, key) ->
//! value` where `value` is an opaque, versioned byte string the operator owns. On restore an
//! operator reads back exactly the key groups its subtask owns, so a snapshot taken at one
//! parallelism can be restored at another.
//!
//! The runtime's backends are RocksDB ([`crate::checkpoint::store`]: one instance per shard,
//! a column family per operator): the checkpointed live store with `--state-dir`, a temporary
//! spill store without (and, with checkpoints, as the spill store state tables evict into
//! between barriers). [`InMemoryStateBackend`] serves tests and drivers that call operators
//! directly.

pub mod table;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::partition::{KeyGroup, KeyGroupRange};

/// A failure of the state backend.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("state backend I/O failed: {0}")]
    Io(String),
    #[error("state value could not be encoded or decoded: {0}")]
    Encoding(String),
    /// An operator with state tables was called without a state backend (outside the
    /// runtime, without `Context::with_state`).
    #[error("this operator keeps state tables: call it with Context::with_state")]
    NoBackend,
    #[error("state entry {table}/{key_group} is corrupt: {reason}")]
    Corrupt {
        table: String,
        key_group: u16,
        reason: String,
    },
}

/// One stored entry, as returned by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub group: KeyGroup,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A visitor of stored entries: (key group, key, value).
pub type EntryVisitor<'v> = dyn FnMut(KeyGroup, &[u8], &[u8]) -> Result<(), StateError> + 'v;

/// Storage for keyed operator state. Keys are ordered by `(table, key group, key)`.
pub trait StateBackend: Send {
    fn put(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StateError>;
    fn get(&self, table: &str, group: KeyGroup, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    fn delete(&mut self, table: &str, group: KeyGroup, key: &[u8]) -> Result<(), StateError>;
    /// Every entry of `table` whose key group is in `range`, in key order.
    fn scan(&self, table: &str, range: KeyGroupRange) -> Result<Vec<StateEntry>, StateError>;
    /// Removes every entry of `table` whose key group is in `range`.
    fn delete_range(&mut self, table: &str, range: KeyGroupRange) -> Result<(), StateError> {
        for entry in self.scan(table, range)? {
            self.delete(table, entry.group, &entry.key)?;
        }
        Ok(())
    }
    /// Removes every entry of `table`.
    fn clear(&mut self, table: &str) -> Result<(), StateError>;
    /// Whether `table` has any entry in `range`.
    fn has_entries(&self, table: &str, range: KeyGroupRange) -> Result<bool, StateError> {
        Ok(!self.scan(table, range)?.is_empty())
    }
    /// Calls `visit` with every entry of `table` in `range` (key group, key, value), in key
    /// order, without gathering them first.
    fn visit(
        &self,
        table: &str,
        range: KeyGroupRange,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), StateError> {
        for entry in self.scan(table, range)? {
            visit(entry.group, &entry.key, &entry.value)?;
        }
        Ok(())
    }
}

/// State kept in a `BTreeMap`; lost when the process ends.
#[derive(Debug, Default, Clone)]
pub struct InMemoryStateBackend {
    entries: BTreeMap<(String, u16, Vec<u8>), Vec<u8>>,
}

impl InMemoryStateBackend {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every stored value, to inspect or damage (tests of restore).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Vec<u8>> {
        self.entries.values_mut()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl StateBackend for InMemoryStateBackend {
    fn put(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        self.entries
            .insert((table.to_string(), group.0, key.to_vec()), value);
        Ok(())
    }

    fn get(&self, table: &str, group: KeyGroup, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .entries
            .get(&(table.to_string(), group.0, key.to_vec()))
            .cloned())
    }

    fn delete(&mut self, table: &str, group: KeyGroup, key: &[u8]) -> Result<(), StateError> {
        self.entries
            .remove(&(table.to_string(), group.0, key.to_vec()));
        Ok(())
    }

    fn has_entries(&self, table: &str, range: KeyGroupRange) -> Result<bool, StateError> {
        let from = (table.to_string(), range.start, Vec::new());
        Ok(self
            .entries
            .range(from..)
            .next()
            .is_some_and(|((t, g, _), _)| t == table && *g < range.end))
    }

    fn scan(&self, table: &str, range: KeyGroupRange) -> Result<Vec<StateEntry>, StateError> {
        let from = (table.to_string(), range.start, Vec::new());
        Ok(self
            .entries
            .range(from..)
            .take_while(|((t, g, _), _)| t == table && *g < range.end)
            .map(|((_, g, k), v)| StateEntry {
                group: KeyGroup(*g),
                key: k.clone(),
                value: v.clone(),
            })
            .collect())
    }

    fn clear(&mut self, table: &str) -> Result<(), StateError> {
        self.entries.retain(|(t, _, _), _| t != table);
        Ok(())
    }
}

/// One operator's view of a backend: its tables are namespaced by the operator's id, and it
/// knows which key groups its subtask owns. With checkpoints it also has a spill store: where
/// state tables put what they evict between barriers (the backend changes only at barriers,
/// so a checkpoint never holds state from after its barrier).
pub struct OperatorState<'a> {
    backend: &'a mut dyn StateBackend,
    spill: Option<&'a mut dyn StateBackend>,
    operator_id: &'a str,
    key_groups: KeyGroupRange,
}

impl<'a> OperatorState<'a> {
    pub fn new(
        backend: &'a mut dyn StateBackend,
        operator_id: &'a str,
        key_groups: KeyGroupRange,
    ) -> Self {
        OperatorState {
            backend,
            spill: None,
            operator_id,
            key_groups,
        }
    }

    /// The view with a spill store (a job with checkpoints).
    pub fn with_spill(mut self, spill: Option<&'a mut dyn StateBackend>) -> Self {
        self.spill = spill;
        self
    }

    /// Whether there is a spill store apart from the backend.
    pub fn has_spill(&self) -> bool {
        self.spill.is_some()
    }

    /// Puts into the spill store (the backend if there is none).
    pub fn spill_put(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        let table = self.table(table);
        match self.spill.as_deref_mut() {
            Some(spill) => spill.put(&table, group, key, value),
            None => self.backend.put(&table, group, key, value),
        }
    }

    /// Reads from the spill store (the backend if there is none).
    pub fn spill_get(
        &self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        let table = self.table(table);
        match self.spill.as_deref() {
            Some(spill) => spill.get(&table, group, key),
            None => self.backend.get(&table, group, key),
        }
    }

    /// Deletes from the spill store (nothing if there is none).
    pub fn spill_delete(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<(), StateError> {
        let table = self.table(table);
        match self.spill.as_deref_mut() {
            Some(spill) => spill.delete(&table, group, key),
            None => Ok(()),
        }
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    fn table(&self, table: &str) -> String {
        format!("{}/{}", self.operator_id, table)
    }

    pub fn put(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        let table = self.table(table);
        self.backend.put(&table, group, key, value)
    }

    pub fn get(
        &self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.backend.get(&self.table(table), group, key)
    }

    pub fn delete(&mut self, table: &str, group: KeyGroup, key: &[u8]) -> Result<(), StateError> {
        let table = self.table(table);
        self.backend.delete(&table, group, key)
    }

    /// Whether `table` has any entry in this subtask's key groups.
    pub fn has_entries(&self, table: &str) -> Result<bool, StateError> {
        self.backend
            .has_entries(&self.table(table), self.key_groups)
    }

    /// Calls `visit` with every entry of `table` in this subtask's key groups (key group,
    /// key, value), in key order, without gathering them first.
    pub fn visit_owned(&self, table: &str, visit: &mut EntryVisitor<'_>) -> Result<(), StateError> {
        self.backend
            .visit(&self.table(table), self.key_groups, visit)
    }

    /// Replaces the whole content of `table` in this subtask's key groups.
    pub fn clear_owned(&mut self, table: &str) -> Result<(), StateError> {
        let name = self.table(table);
        self.backend.delete_range(&name, self.key_groups)
    }

    /// Every entry of `table` in this subtask's key groups.
    pub fn scan_owned(&self, table: &str) -> Result<Vec<StateEntry>, StateError> {
        self.backend.scan(&self.table(table), self.key_groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_returns_only_the_requested_key_groups_of_the_table() {
        let mut backend = InMemoryStateBackend::new();
        for g in 0..8u16 {
            backend.put("a", KeyGroup(g), b"k", vec![g as u8]).unwrap();
            backend.put("b", KeyGroup(g), b"k", vec![100]).unwrap();
        }
        let got = backend
            .scan("a", KeyGroupRange { start: 2, end: 5 })
            .unwrap();
        let groups: Vec<u16> = got.iter().map(|e| e.group.0).collect();
        assert_eq!(groups, vec![2, 3, 4]);
        assert!(got.iter().all(|e| e.value == vec![e.group.0 as u8]));
    }

    #[test]
    fn operator_views_are_namespaced() {
        let mut backend = InMemoryStateBackend::new();
        OperatorState::new(&mut backend, "op1", KeyGroupRange::all(128))
            .put("t", KeyGroup(3), b"x", vec![1])
            .unwrap();
        let other = OperatorState::new(&mut backend, "op2", KeyGroupRange::all(128));
        assert!(other.scan_owned("t").unwrap().is_empty());
    }
}
