//! The RocksDB state store: one instance per shard, one column family per stateful operator.
//!
//! Keys are `table \0 key-group (u16, big endian) key`, so the entries of one table in a range
//! of key groups are one contiguous key range: a subtask scans exactly its key groups, and a
//! snapshot restored at another shard count reads the same ranges from every old shard.
//!
//! Writes skip RocksDB's write-ahead log: the live store changes only at barriers (and by
//! deleting expired entries), a checkpoint ([`ShardStore::checkpoint_to`]) flushes the
//! memtables before hard-linking the SST files, so unchanged SST files are shared between the
//! live store and every retained checkpoint. A [`SpillStore`] is never checkpointed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{Direction, IteratorMode, Options, WriteOptions, DB};

use crate::partition::{KeyGroup, KeyGroupRange};
use crate::state::{EntryVisitor, StateBackend, StateEntry, StateError};

fn io(context: &str, path: &Path, error: impl std::fmt::Display) -> StateError {
    StateError::Io(format!("{context} {}: {error}", path.display()))
}

fn encode_key(table: &str, group: u16, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + 3 + key.len());
    out.extend_from_slice(table.as_bytes());
    out.push(0);
    out.extend_from_slice(&group.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The key group and user key of a stored key of `table`.
fn decode_key<'k>(table: &str, stored: &'k [u8]) -> Option<(u16, &'k [u8])> {
    let rest = stored.strip_prefix(table.as_bytes())?.strip_prefix(&[0])?;
    let (group, key) = rest.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*group), key))
}

/// The live RocksDB instance of one shard.
pub struct ShardStore {
    db: DB,
    path: PathBuf,
    /// Removes the store's directory once the database is closed (fields drop in order): a
    /// temporary store's.
    _removal: Option<RemoveDir>,
}

/// Removes `path` and everything under it, if it exists.
fn clear(path: &Path) -> Result<(), StateError> {
    match path.exists() {
        true => std::fs::remove_dir_all(path).map_err(|e| io("cannot clear", path, e)),
        false => Ok(()),
    }
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), %error, "cannot remove a temporary state store");
        }
    }
}

impl std::fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardStore")
            .field("path", &self.path)
            .finish()
    }
}

impl ShardStore {
    /// Creates an empty store at `path` (anything there is removed) with one column family per
    /// name in `operators`. RocksDB's own memory follows `memory_budget` (the shard's state
    /// budget, bytes): its memtables take at most a quarter of it (4 MiB to 1 GiB over all
    /// column families, each family's at most half of that and 64 MiB), its block cache an
    /// eighth (4 to 256 MiB). With checkpoints a shard has two stores (live and spill), each
    /// sized so.
    pub fn create(
        path: &Path,
        operators: &[String],
        memory_budget: usize,
    ) -> Result<Arc<Self>, StateError> {
        clear(path)?;
        Ok(Self::wrap(path, open_live(path, operators, memory_budget)?))
    }

    fn wrap(path: &Path, db: DB) -> Arc<Self> {
        Arc::new(ShardStore {
            db,
            path: path.to_path_buf(),
            _removal: None,
        })
    }

    /// A store at `path` (anything there is removed) that starts as the checkpointed store in
    /// `checkpoint` (a `shard-<k>` directory), as Flink's incremental RocksDB restore: its SST
    /// files are hard-linked (copied where a link is refused, e.g. across file systems), the
    /// small metadata files copied, so no entry is copied one by one and the checkpoint is
    /// never written (RocksDB never changes an SST file, it only unlinks it). The column
    /// families of `operators` are created when missing, the others dropped. For a job
    /// resuming at the shard count and operator parallelism that took the checkpoint.
    pub fn restore_linked(
        path: &Path,
        checkpoint: &Path,
        operators: &[String],
        memory_budget: usize,
    ) -> Result<Arc<Self>, StateError> {
        clear(path)?;
        std::fs::create_dir_all(path).map_err(|e| io("cannot create", path, e))?;
        let files = std::fs::read_dir(checkpoint).map_err(|e| io("cannot read", checkpoint, e))?;
        for file in files {
            let file = file.map_err(|e| io("cannot read", checkpoint, e))?;
            let name = file.file_name();
            let name_text = name.to_string_lossy();
            // The lock and info logs belong to whoever opened the checkpoint, not to its data.
            if name_text == "LOCK" || name_text.starts_with("LOG") {
                continue;
            }
            let (from, to) = (file.path(), path.join(&name));
            let linked = name_text.ends_with(".sst") && std::fs::hard_link(&from, &to).is_ok();
            if !linked {
                std::fs::copy(&from, &to).map_err(|e| io("cannot copy", &from, e))?;
            }
        }
        let mut db = open_live(path, operators, memory_budget)?;
        let existing =
            DB::list_cf(&Options::default(), path).map_err(|e| io("cannot read", path, e))?;
        for family in existing {
            if family != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !operators.contains(&family) {
                db.drop_cf(&family)
                    .map_err(|e| io("cannot drop a column family of", path, e))?;
            }
        }
        Ok(Self::wrap(path, db))
    }

    /// [`ShardStore::create`], the directory removed again when the store is dropped.
    pub fn create_temporary(
        path: &Path,
        operators: &[String],
        memory_budget: usize,
    ) -> Result<Arc<Self>, StateError> {
        let mut store = Self::create(path, operators, memory_budget)?;
        if let Some(store) = Arc::get_mut(&mut store) {
            store._removal = Some(RemoveDir(path.to_path_buf()));
        }
        Ok(store)
    }

    /// A state backend writing into `operator`'s column family.
    pub fn backend(self: &Arc<Self>, operator: &str) -> RocksStateBackend {
        RocksStateBackend {
            store: Arc::clone(self),
            family: operator.to_string(),
            write: {
                let mut write = WriteOptions::default();
                write.disable_wal(true);
                write
            },
        }
    }

    /// Takes a RocksDB checkpoint into `target` (which must not exist): memtables are flushed
    /// and SST files hard-linked, so this is cheap and shares unchanged files.
    pub fn checkpoint_to(&self, target: &Path) -> Result<(), StateError> {
        let checkpoint =
            Checkpoint::new(&self.db).map_err(|e| io("checkpoint of", &self.path, e))?;
        checkpoint
            .create_checkpoint(target)
            .map_err(|e| io("cannot write checkpoint", target, e))
    }

    fn family(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StateError::Io(format!("no column family for operator '{name}'")))
    }
}

/// Opens (or creates) the live store at `path` with the families of `operators` and of
/// anything already there, its memory sized by `memory_budget` (see [`ShardStore::create`]).
fn open_live(path: &Path, operators: &[String], memory_budget: usize) -> Result<DB, StateError> {
    const MIB: usize = 1 << 20;
    let memtables = (memory_budget / 4).clamp(4 * MIB, 1024 * MIB);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_db_write_buffer_size(memtables);
    // State tables look keys up one by one, most of them absent at first: a bloom filter
    // per SST file answers those without reading the file.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    let cache = rocksdb::Cache::new_lru_cache((memory_budget / 8).clamp(4 * MIB, 256 * MIB));
    table.set_block_cache(&cache);
    let mut family = Options::default();
    family.set_block_based_table_factory(&table);
    family.set_write_buffer_size((memtables / 2).min(64 * MIB));
    let mut names: Vec<String> = operators.to_vec();
    if path.exists() {
        let existing = DB::list_cf(&options, path).map_err(|e| io("cannot read", path, e))?;
        for existing in existing {
            if !names.contains(&existing) {
                names.push(existing);
            }
        }
    }
    let families = names
        .iter()
        .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, family.clone()));
    DB::open_cf_descriptors(&options, path, families).map_err(|e| io("cannot open", path, e))
}

/// A read-only view of one shard's store inside a checkpoint, for restoring.
pub struct SnapshotReader {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("path", &self.path)
            .finish()
    }
}

impl SnapshotReader {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let options = Options::default();
        let families = DB::list_cf(&options, path).map_err(|e| io("cannot read", path, e))?;
        let db = DB::open_cf_for_read_only(&options, path, families, false)
            .map_err(|e| io("cannot open", path, e))?;
        Ok(SnapshotReader {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Calls `visit` with every entry `operator` stored in `table` for the key groups of
    /// `range`, in key order.
    pub fn visit(
        &self,
        operator: &str,
        table: &str,
        range: KeyGroupRange,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), StateError> {
        match self.db.cf_handle(operator) {
            Some(family) => visit_family(&self.db, family, table, range, visit),
            None => Ok(()),
        }
    }

    /// Every entry `operator` stored in `table` for the key groups of `range`.
    pub fn scan(
        &self,
        operator: &str,
        table: &str,
        range: KeyGroupRange,
    ) -> Result<Vec<StateEntry>, StateError> {
        match self.db.cf_handle(operator) {
            Some(family) => scan_family(&self.db, family, table, range),
            None => Ok(Vec::new()),
        }
    }

    /// The tables `operator` stored anything in: one seek per table (after a table's first
    /// key, the next seek goes past every key of it).
    pub fn tables(&self, operator: &str) -> Result<Vec<String>, StateError> {
        let Some(family) = self.db.cf_handle(operator) else {
            return Ok(Vec::new());
        };
        let mut tables: Vec<String> = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mode = IteratorMode::From(&from, Direction::Forward);
            let Some(item) = self.db.iterator_cf(family, mode).next() else {
                return Ok(tables);
            };
            let (key, _) = item.map_err(|e| io("cannot read", &self.path, e))?;
            let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
            tables.push(String::from_utf8_lossy(&key[..end]).into_owned());
            // `table \1` sorts after every `table \0 ...` key.
            from = key[..end].to_vec();
            from.push(1);
        }
    }
}

fn scan_family(
    db: &DB,
    family: &rocksdb::ColumnFamily,
    table: &str,
    range: KeyGroupRange,
) -> Result<Vec<StateEntry>, StateError> {
    let mut entries = Vec::new();
    visit_family(db, family, table, range, &mut |group, key, value| {
        entries.push(StateEntry {
            group,
            key: key.to_vec(),
            value: value.to_vec(),
        });
        Ok(())
    })?;
    Ok(entries)
}

/// Whether `table` has an entry in `range`: one seek.
fn family_has_entries(
    db: &DB,
    family: &rocksdb::ColumnFamily,
    table: &str,
    range: KeyGroupRange,
) -> Result<bool, StateError> {
    let from = encode_key(table, range.start, &[]);
    let mut iterator = db.iterator_cf(family, IteratorMode::From(&from, Direction::Forward));
    match iterator.next() {
        Some(item) => {
            let (key, _) = item.map_err(|e| StateError::Io(e.to_string()))?;
            Ok(decode_key(table, &key).is_some_and(|(group, _)| group < range.end))
        }
        None => Ok(false),
    }
}

/// Calls `visit` with every entry of `table` in `range`, in key order, as RocksDB iterates.
fn visit_family(
    db: &DB,
    family: &rocksdb::ColumnFamily,
    table: &str,
    range: KeyGroupRange,
    visit: &mut EntryVisitor<'_>,
) -> Result<(), StateError> {
    let from = encode_key(table, range.start, &[]);
    for item in db.iterator_cf(family, IteratorMode::From(&from, Direction::Forward)) {
        let (key, value) = item.map_err(|e| StateError::Io(e.to_string()))?;
        match decode_key(table, &key) {
            Some((group, key)) if group < range.end => visit(KeyGroup(group), key, &value)?,
            _ => break,
        }
    }
    Ok(())
}

/// One operator's column family in a [`ShardStore`].
pub struct RocksStateBackend {
    store: Arc<ShardStore>,
    family: String,
    write: WriteOptions,
}

impl std::fmt::Debug for RocksStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStateBackend")
            .field("family", &self.family)
            .finish()
    }
}

impl StateBackend for RocksStateBackend {
    fn put(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        let family = self.store.family(&self.family)?;
        self.store
            .db
            .put_cf_opt(family, encode_key(table, group.0, key), value, &self.write)
            .map_err(|e| StateError::Io(e.to_string()))
    }

    fn get(&self, table: &str, group: KeyGroup, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let family = self.store.family(&self.family)?;
        self.store
            .db
            .get_cf(family, encode_key(table, group.0, key))
            .map_err(|e| StateError::Io(e.to_string()))
    }

    fn delete(&mut self, table: &str, group: KeyGroup, key: &[u8]) -> Result<(), StateError> {
        let family = self.store.family(&self.family)?;
        self.store
            .db
            .delete_cf_opt(family, encode_key(table, group.0, key), &self.write)
            .map_err(|e| StateError::Io(e.to_string()))
    }

    fn scan(&self, table: &str, range: KeyGroupRange) -> Result<Vec<StateEntry>, StateError> {
        let family = self.store.family(&self.family)?;
        scan_family(&self.store.db, family, table, range)
    }

    fn visit(
        &self,
        table: &str,
        range: KeyGroupRange,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), StateError> {
        let family = self.store.family(&self.family)?;
        visit_family(&self.store.db, family, table, range, visit)
    }

    fn has_entries(&self, table: &str, range: KeyGroupRange) -> Result<bool, StateError> {
        let family = self.store.family(&self.family)?;
        family_has_entries(&self.store.db, family, table, range)
    }

    fn delete_range(&mut self, table: &str, range: KeyGroupRange) -> Result<(), StateError> {
        let family = self.store.family(&self.family)?;
        if range.end <= range.start {
            return Ok(());
        }
        let from = encode_key(table, range.start, &[]);
        let to = encode_key(table, range.end, &[]);
        self.store
            .db
            .delete_range_cf_opt(family, from, to, &self.write)
            .map_err(|e| StateError::Io(e.to_string()))
    }

    fn clear(&mut self, table: &str) -> Result<(), StateError> {
        let family = self.store.family(&self.family)?;
        // Every key of `table` lies between `table \0` and `table \1`.
        let from = [table.as_bytes(), &[0]].concat();
        let to = [table.as_bytes(), &[1]].concat();
        self.store
            .db
            .delete_range_cf_opt(family, from, to, &self.write)
            .map_err(|e| StateError::Io(e.to_string()))
    }
}

/// The store of one shard of a job without a state directory, where state tables spill
/// what their memory budget does not hold: a RocksDB instance in a temporary directory,
/// opened on the first write (most such jobs never spill) and removed when the job ends.
pub struct SpillStore {
    path: PathBuf,
    operators: Vec<String>,
    memory_budget: usize,
    store: std::sync::Mutex<Option<Arc<ShardStore>>>,
}

impl std::fmt::Debug for SpillStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SpillStore {
    /// A store at `path` (not created yet) with a column family per name in `operators`, its
    /// memory following `memory_budget` (see [`ShardStore::create`]).
    pub fn new(path: PathBuf, operators: Vec<String>, memory_budget: usize) -> Arc<Self> {
        Arc::new(SpillStore {
            path,
            operators,
            memory_budget,
            store: std::sync::Mutex::new(None),
        })
    }

    /// The store, opened now if it was not.
    fn open(&self) -> Result<Arc<ShardStore>, StateError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| StateError::Io("a spill store's lock is poisoned".into()))?;
        if let Some(store) = store.as_ref() {
            return Ok(Arc::clone(store));
        }
        let created =
            ShardStore::create_temporary(&self.path, &self.operators, self.memory_budget)?;
        tracing::info!(path = %self.path.display(), "state spills to a temporary store");
        *store = Some(Arc::clone(&created));
        Ok(created)
    }

    /// A state backend writing into `operator`'s column family.
    pub fn backend(self: &Arc<Self>, operator: &str) -> SpillBackend {
        SpillBackend {
            spill: Arc::clone(self),
            family: operator.to_string(),
            backend: None,
        }
    }
}

/// One operator's column family in a [`SpillStore`]: empty until the first write.
#[derive(Debug)]
pub struct SpillBackend {
    spill: Arc<SpillStore>,
    family: String,
    backend: Option<RocksStateBackend>,
}

impl SpillBackend {
    fn writer(&mut self) -> Result<&mut RocksStateBackend, StateError> {
        if self.backend.is_none() {
            self.backend = Some(self.spill.open()?.backend(&self.family));
        }
        self.backend
            .as_mut()
            .ok_or_else(|| StateError::Io("the spill store did not open".into()))
    }
}

impl StateBackend for SpillBackend {
    fn put(
        &mut self,
        table: &str,
        group: KeyGroup,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        self.writer()?.put(table, group, key, value)
    }

    fn get(&self, table: &str, group: KeyGroup, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match &self.backend {
            Some(backend) => backend.get(table, group, key),
            // Nothing written yet: this subtask's key groups are written only by it.
            None => Ok(None),
        }
    }

    fn delete(&mut self, table: &str, group: KeyGroup, key: &[u8]) -> Result<(), StateError> {
        match &mut self.backend {
            Some(backend) => backend.delete(table, group, key),
            None => Ok(()),
        }
    }

    fn scan(&self, table: &str, range: KeyGroupRange) -> Result<Vec<StateEntry>, StateError> {
        match &self.backend {
            Some(backend) => backend.scan(table, range),
            None => Ok(Vec::new()),
        }
    }

    fn has_entries(&self, table: &str, range: KeyGroupRange) -> Result<bool, StateError> {
        match &self.backend {
            Some(backend) => backend.has_entries(table, range),
            None => Ok(false),
        }
    }

    fn visit(
        &self,
        table: &str,
        range: KeyGroupRange,
        visit: &mut EntryVisitor<'_>,
    ) -> Result<(), StateError> {
        match &self.backend {
            Some(backend) => backend.visit(table, range, visit),
            None => Ok(()),
        }
    }

    fn delete_range(&mut self, table: &str, range: KeyGroupRange) -> Result<(), StateError> {
        match &mut self.backend {
            Some(backend) => backend.delete_range(table, range),
            None => Ok(()),
        }
    }

    fn clear(&mut self, table: &str) -> Result<(), StateError> {
        match &mut self.backend {
            Some(backend) => backend.clear(table),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_checkpoint_and_scan_by_key_group() {
        let dir = std::env::temp_dir().join(format!("weir-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ShardStore::create(&dir.join("live"), &["op".to_string()], usize::MAX).unwrap();
        let mut backend = store.backend("op");
        for g in 0..8u16 {
            backend.put("a", KeyGroup(g), b"k", vec![g as u8]).unwrap();
            backend.put("b", KeyGroup(g), b"k", vec![100]).unwrap();
        }
        backend
            .delete_range("a", KeyGroupRange { start: 6, end: 8 })
            .unwrap();
        store.checkpoint_to(&dir.join("chk")).unwrap();
        // Later writes do not reach the checkpoint.
        backend.put("a", KeyGroup(3), b"k", vec![42]).unwrap();
        let reader = SnapshotReader::open(&dir.join("chk")).unwrap();
        let got = reader
            .scan("op", "a", KeyGroupRange { start: 2, end: 8 })
            .unwrap();
        let values: Vec<(u16, Vec<u8>)> =
            got.iter().map(|e| (e.group.0, e.value.clone())).collect();
        assert_eq!(
            values,
            (2..6u16).map(|g| (g, vec![g as u8])).collect::<Vec<_>>()
        );
        assert_eq!(reader.tables("op").unwrap(), vec!["a", "b"]);
        assert!(reader
            .scan("other", "a", KeyGroupRange::all(8))
            .unwrap()
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A linked restore shares the checkpoint's SST files (same inodes), reads back every
    /// entry of the operators it keeps, drops the others' families, and never changes the
    /// checkpoint however the live store is written and compacted afterwards.
    #[test]
    fn a_linked_restore_shares_the_checkpoints_files_and_leaves_them_unchanged() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("weir-linked-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let operators = ["kept".to_string(), "gone".to_string()];
        let store = ShardStore::create(&dir.join("live"), &operators, usize::MAX).unwrap();
        let (mut kept, mut gone) = (store.backend("kept"), store.backend("gone"));
        for g in 0..16u16 {
            kept.put("t", KeyGroup(g), b"k", vec![g as u8]).unwrap();
            gone.put("t", KeyGroup(g), b"k", vec![1]).unwrap();
        }
        store.checkpoint_to(&dir.join("chk")).unwrap();
        drop((kept, gone, store));
        let sst_inodes = |path: &Path| -> Vec<u64> {
            let mut inodes: Vec<u64> = std::fs::read_dir(path)
                .unwrap()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".sst"))
                .map(|f| f.metadata().unwrap().ino())
                .collect();
            inodes.sort();
            inodes
        };
        let before = sst_inodes(&dir.join("chk"));
        assert!(!before.is_empty());

        let operators = ["kept".to_string(), "new".to_string()];
        let live = dir.join("live-2");
        let store =
            ShardStore::restore_linked(&live, &dir.join("chk"), &operators, usize::MAX).unwrap();
        // Dropping the family of "gone" deleted its file; the rest are the checkpoint's.
        let linked = sst_inodes(&live);
        assert!(
            !linked.is_empty() && linked.iter().all(|i| before.contains(i)),
            "the SST files are hard links: {linked:?} of {before:?}"
        );
        let mut families = DB::list_cf(&Options::default(), &live).unwrap();
        families.sort();
        assert_eq!(families, ["default", "kept", "new"]);
        let mut kept = store.backend("kept");
        let all = KeyGroupRange::all(16);
        let values: Vec<u8> = kept
            .scan("t", all)
            .unwrap()
            .iter()
            .map(|e| e.value[0])
            .collect();
        assert_eq!(values, (0..16).collect::<Vec<u8>>());

        for g in 0..16u16 {
            kept.put("t", KeyGroup(g), b"k", vec![99]).unwrap();
        }
        store.db.flush_cf(store.family("kept").unwrap()).unwrap();
        store
            .db
            .compact_range_cf(store.family("kept").unwrap(), None::<&[u8]>, None::<&[u8]>);
        drop((kept, store));
        assert_eq!(sst_inodes(&dir.join("chk")), before);
        let reader = SnapshotReader::open(&dir.join("chk")).unwrap();
        let values: Vec<u8> = reader
            .scan("kept", "t", all)
            .unwrap()
            .iter()
            .map(|e| e.value[0])
            .collect();
        assert_eq!(
            values,
            (0..16).collect::<Vec<u8>>(),
            "the checkpoint is unchanged"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Incremental checkpoints: a state table flushes only what changed, and a RocksDB
    /// checkpoint hard-links the files it shares with the one before, so after a first
    /// checkpoint of 1M keys, one where 1% of them changed writes 0.5% to 3% of its bytes.
    #[test]
    fn a_checkpoint_after_a_small_change_writes_about_that_change() {
        use crate::state::table::{MemoryBudget, StateCodec, StateTable, TableSpec};
        use crate::state::OperatorState;

        struct Counts;
        impl StateCodec for Counts {
            type Value = u64;
            fn encode(&self, values: &mut [&mut u64]) -> Result<Vec<Vec<u8>>, StateError> {
                Ok(values.iter().map(|v| v.to_be_bytes().to_vec()).collect())
            }
            fn decode(&self, bytes: &[u8], _: u16) -> Result<u64, StateError> {
                let bytes = bytes
                    .try_into()
                    .map_err(|_| StateError::Encoding("u64".into()))?;
                Ok(u64::from_be_bytes(bytes))
            }
            fn memory_bytes(&self, _: &u64) -> usize {
                8
            }
        }

        let dir = std::env::temp_dir().join(format!("weir-incremental-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ShardStore::create(&dir.join("live"), &["op".to_string()], usize::MAX).unwrap();
        let mut backend = store.backend("op");
        let all = KeyGroupRange::all(128);
        let spec = TableSpec {
            name: "counts",
            version: 1,
            ttl: None,
        };
        let mut table = StateTable::new(spec, Counts, MemoryBudget::unlimited());
        let mut write = |table: &mut StateTable<Counts>, keys: std::ops::Range<u64>, step: u64| {
            let mut state = OperatorState::new(&mut backend, "op", all);
            for k in keys.step_by(step as usize) {
                let group = KeyGroup((k % 128) as u16);
                table
                    .update(&mut state, group, &k.to_be_bytes(), || 0, |v| *v += 1)
                    .unwrap();
            }
            table.flush(&mut state).unwrap();
        };
        write(&mut table, 0..1_000_000, 1);
        store.checkpoint_to(&dir.join("chk-1")).unwrap();
        write(&mut table, 0..1_000_000, 100);
        store.checkpoint_to(&dir.join("chk-2")).unwrap();
        let first = crate::checkpoint::new_bytes(&dir.join("chk-1"), None);
        let second = crate::checkpoint::new_bytes(&dir.join("chk-2"), Some(&dir.join("chk-1")));
        let share = second as f64 / first as f64;
        assert!(
            (0.005..=0.03).contains(&share),
            "the second checkpoint wrote {second} bytes, {:.2}% of the first's {first}",
            share * 100.0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
