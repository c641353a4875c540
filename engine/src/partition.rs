//! Key groups and the vectorised hash that maps rows to them.
//!
//! Keys hash into a fixed number of key groups (default 128, Flink's default max parallelism).
//! A subtask of an operator with parallelism `P` owns a contiguous range of key groups; state
//! is stored per key group, which is what lets a snapshot be restored onto a different `P`.
//!
//! The hash must never change between versions or machines, because snapshots record key
//! groups: keys are encoded with Arrow's row format (one vectorised pass per batch) and each
//! encoded row is hashed with XXH3-64, whose output is fixed by its specification.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use xxhash_rust::xxh3::xxh3_64;

/// Default number of key groups (Flink's default max parallelism).
pub const DEFAULT_KEY_GROUPS: u16 = 128;

/// A key group: the unit of keyed state and of its redistribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGroup(pub u16);

/// The key groups `[start, end)` owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    pub start: u16,
    pub end: u16,
}

impl KeyGroupRange {
    /// The range owned by subtask `index` of `parallelism` (Flink's formula).
    pub fn for_subtask(index: usize, parallelism: usize, key_groups: u16) -> Self {
        let max = key_groups as usize;
        let start = (index * max).div_ceil(parallelism);
        let end = ((index + 1) * max).div_ceil(parallelism);
        KeyGroupRange {
            start: start as u16,
            end: end as u16,
        }
    }

    pub fn contains(&self, group: KeyGroup) -> bool {
        (self.start..self.end).contains(&group.0)
    }

    pub fn all(key_groups: u16) -> Self {
        KeyGroupRange {
            start: 0,
            end: key_groups,
        }
    }
}

/// The subtask that owns `group` (inverse of [`KeyGroupRange::for_subtask`]).
pub fn subtask_for_key_group(group: KeyGroup, parallelism: usize, key_groups: u16) -> usize {
    group.0 as usize * parallelism / key_groups as usize
}

/// Encodes key columns in Arrow's row format and hashes them into key groups.
#[derive(Debug)]
pub struct KeyHasher {
    key_columns: Vec<usize>,
    converter: RowConverter,
    key_groups: u16,
}

impl KeyHasher {
    /// A hasher for the named key columns of `schema`.
    pub fn new(
        schema: &Schema,
        key_columns: &[String],
        key_groups: u16,
    ) -> Result<Self, ArrowError> {
        let indices = key_columns
            .iter()
            .map(|name| schema.index_of(name))
            .collect::<Result<Vec<_>, _>>()?;
        let fields = indices
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        Ok(KeyHasher {
            key_columns: indices,
            converter: RowConverter::new(fields)?,
            key_groups,
        })
    }

    pub fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }

    pub fn converter(&self) -> &RowConverter {
        &self.converter
    }

    /// The key columns of `batch` in row format.
    pub fn rows(&self, batch: &RecordBatch) -> Result<Rows, ArrowError> {
        let columns: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| std::sync::Arc::clone(batch.column(i)))
            .collect();
        self.converter.convert_columns(&columns)
    }

    /// The key group of one encoded key.
    /// (Without key columns every key is in key group 0, as [`KeyHasher::key_groups`] says.)
    pub fn key_group_of(&self, row: &[u8]) -> KeyGroup {
        if self.key_columns.is_empty() {
            return KeyGroup(0);
        }
        KeyGroup((xxh3_64(row) % self.key_groups as u64) as u16)
    }

    /// The key group of every row of `batch`. With no key columns every row is in key group 0.
    pub fn key_groups(&self, batch: &RecordBatch) -> Result<Vec<KeyGroup>, ArrowError> {
        if self.key_columns.is_empty() {
            return Ok(vec![KeyGroup(0); batch.num_rows()]);
        }
        let rows = self.rows(batch)?;
        Ok(rows
            .iter()
            .map(|row| self.key_group_of(row.as_ref()))
            .collect())
    }
}

/// Splits `batch` by target subtask of a hash exchange; returns one batch per non-empty target.
pub fn partition_by_key(
    hasher: &KeyHasher,
    batch: &RecordBatch,
    parallelism: usize,
) -> Result<Vec<(usize, RecordBatch)>, ArrowError> {
    if parallelism == 1 {
        return Ok(vec![(0, batch.clone())]);
    }
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); parallelism];
    for (i, group) in hasher.key_groups(batch)?.into_iter().enumerate() {
        indices[subtask_for_key_group(group, parallelism, hasher.key_groups)].push(i as u32);
    }
    let mut out = Vec::new();
    for (target, idx) in indices.into_iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        if idx.len() == batch.num_rows() {
            out.push((target, batch.clone()));
        } else {
            out.push((target, take_record_batch(batch, &UInt32Array::from(idx))?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    #[test]
    fn ranges_cover_all_key_groups_and_agree_with_the_owner_function() {
        for parallelism in 1..=7 {
            let mut covered = 0;
            for index in 0..parallelism {
                let range = KeyGroupRange::for_subtask(index, parallelism, 128);
                for g in range.start..range.end {
                    assert_eq!(subtask_for_key_group(KeyGroup(g), parallelism, 128), index);
                    covered += 1;
                }
            }
            assert_eq!(covered, 128);
        }
    }

    #[test]
    fn same_key_same_target_and_no_row_lost() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let keys: Vec<i64> = (0..1000).map(|i| i % 37).collect();
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(keys))])
                .unwrap();
        let hasher = KeyHasher::new(&schema, &["k".to_string()], 128).unwrap();
        let parts = partition_by_key(&hasher, &batch, 4).unwrap();
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 1000);
        let mut owner = std::collections::HashMap::new();
        for (target, part) in &parts {
            let col = part
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            for k in col.values() {
                assert_eq!(*owner.entry(*k).or_insert(*target), *target);
            }
        }
    }
}
