//! Group index: maps the key of each row to a dense group number; and [`KeyEncoder`], which
//! turns grouping key columns into that row format and back.
//!
//! Keys are encoded once per batch with Arrow's row format; each encoded row is looked up in a
//! hash table of group numbers whose keys live in one `Rows` buffer, so a new group costs one
//! append and a known group costs one hash and one byte comparison, with no allocation.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, FieldRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

/// Encodes grouping key columns as Arrow rows for a [`GroupIndex`], and decodes them. With no
/// key columns (one global group) a constant column stands in.
pub struct KeyEncoder {
    converter: RowConverter,
    keyless: bool,
}

impl KeyEncoder {
    pub fn new(key_fields: &[FieldRef]) -> Result<Self, ArrowError> {
        let sort_fields = if key_fields.is_empty() {
            vec![SortField::new(DataType::Boolean)]
        } else {
            key_fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect()
        };
        Ok(KeyEncoder {
            converter: RowConverter::new(sort_fields)?,
            keyless: key_fields.is_empty(),
        })
    }

    /// An empty group index for these keys, with room for `groups` groups.
    pub fn group_index(&self, groups: usize) -> GroupIndex {
        GroupIndex::with_capacity(&self.converter, groups)
    }

    /// Encodes key columns of `num_rows` rows.
    pub fn encode(&self, keys: &[ArrayRef], num_rows: usize) -> Result<Rows, ArrowError> {
        if self.keyless {
            let constant: ArrayRef = Arc::new(BooleanArray::from(vec![true; num_rows]));
            return self.converter.convert_columns(&[constant]);
        }
        self.converter.convert_columns(keys)
    }

    /// Decodes keys encoded by [`KeyEncoder::encode`], given as bytes, into key columns (none
    /// when there are no keys).
    pub fn decode_bytes<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Vec<ArrayRef>, ArrowError> {
        if self.keyless {
            return Ok(Vec::new());
        }
        let parser = self.converter.parser();
        self.converter
            .convert_rows(keys.into_iter().map(|key| parser.parse(key)))
    }

    /// Decodes encoded keys into key columns (none when there are no keys).
    pub fn decode(&self, rows: &Rows) -> Result<Vec<ArrayRef>, ArrowError> {
        if self.keyless {
            return Ok(Vec::new());
        }
        self.converter.convert_rows(rows.iter())
    }
}

/// The rows of each distinct key of `keys` (encoded keys of one batch), keys in the order of
/// their first row: `(first row, every row in order)`.
pub fn rows_by_key(keys: &Rows) -> Vec<(u32, Vec<u32>)> {
    let mut by_key: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut position: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for row in 0..keys.num_rows() {
        let at = *position.entry(keys.row(row).data()).or_insert_with(|| {
            by_key.push((row as u32, Vec::new()));
            by_key.len() - 1
        });
        by_key[at].1.push(row as u32);
    }
    by_key
}

/// Dense numbering of the distinct keys seen.
pub struct GroupIndex {
    table: HashTable<(u64, usize)>,
    keys: Rows,
}

impl GroupIndex {
    pub fn new(converter: &RowConverter) -> Self {
        Self::with_capacity(converter, 0)
    }

    /// An index with room for `groups` groups before it has to grow.
    pub fn with_capacity(converter: &RowConverter, groups: usize) -> Self {
        GroupIndex {
            table: HashTable::with_capacity(groups),
            keys: converter.empty_rows(groups, groups * 8),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The group number of every row of `rows`, adding new groups as needed.
    pub fn intern(&mut self, rows: &Rows, out: &mut Vec<usize>) {
        out.clear();
        out.reserve(rows.num_rows());
        for row in rows.iter() {
            let hash = xxh3_64(row.as_ref());
            let keys = &self.keys;
            let found = self
                .table
                .find(hash, |&(h, group)| h == hash && keys.row(group) == row);
            let group = match found {
                Some(&(_, group)) => group,
                None => {
                    let group = self.keys.num_rows();
                    self.keys.push(row);
                    self.table.insert_unique(hash, (hash, group), |&(h, _)| h);
                    group
                }
            };
            out.push(group);
        }
    }

    /// The key of every group, in group order, as Arrow columns.
    pub fn key_columns(&self, converter: &RowConverter) -> Result<Vec<ArrayRef>, ArrowError> {
        converter.convert_rows(self.keys.iter())
    }

    /// The encoded key of every group, in group order.
    pub fn keys(&self) -> &Rows {
        &self.keys
    }

    /// The encoded keys, giving up the index.
    pub fn into_keys(self) -> Rows {
        self.keys
    }

    /// Approximate memory held, in bytes.
    pub fn size(&self) -> usize {
        self.keys.size() + self.table.capacity() * std::mem::size_of::<(u64, usize)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow::row::SortField;
    use std::sync::Arc;

    #[test]
    fn equal_keys_get_equal_groups_and_keys_round_trip() {
        let converter = RowConverter::new(vec![
            SortField::new(DataType::Int64),
            SortField::new(DataType::Utf8),
        ])
        .unwrap();
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 1, 3, 2]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "x", "x", "z"]));
        let rows = converter.convert_columns(&[a, b]).unwrap();
        let mut index = GroupIndex::new(&converter);
        let mut groups = Vec::new();
        index.intern(&rows, &mut groups);
        assert_eq!(groups, vec![0, 1, 0, 2, 3]);
        let keys = index.key_columns(&converter).unwrap();
        let ints = keys[0].as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ints.values().to_vec(), vec![1, 2, 3, 2]);
    }
}
