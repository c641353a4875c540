//! Checkpoints and savepoints: configuration, the manifest, and the layout on disk.
//!
//! ```text
//! <state-dir>/live/shard-<k>/                 the live RocksDB store of shard k
//! <state-dir>/checkpoints/chk-<n>/shard-<k>/  RocksDB checkpoint of shard k (hard links)
//! <state-dir>/checkpoints/chk-<n>/MANIFEST.json
//! <savepoint>/shard-<k>/, <savepoint>/MANIFEST.json
//! ```
//!
//! A checkpoint exists only once its manifest does: the manifest is written last, to a
//! temporary name, synced and renamed into place. A directory without a readable manifest
//! (a crash while it was written) is ignored on recovery and removed by retention.
//! See `docs/architecture.md` ("Checkpoints") for the protocol.

pub(crate) mod coordinator;
pub mod history;
pub mod store;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// File name of a checkpoint's manifest.
pub const MANIFEST: &str = "MANIFEST.json";
/// Version of the manifest format (2: operators keyed by their stable identity).
const MANIFEST_FORMAT: u32 = 2;

/// How a job checkpoints and where it resumes from.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Live stores and checkpoints go here.
    pub state_dir: PathBuf,
    /// Time between checkpoints (`execution.checkpointing.interval`); `None`: only a final
    /// checkpoint when bounded input ends, and savepoints on request.
    pub interval: Option<Duration>,
    /// Completed checkpoints kept (`state.checkpoints.num-retained`).
    pub retained: usize,
    /// Resume from this checkpoint or savepoint directory instead of the latest checkpoint
    /// in `state_dir`.
    pub from_savepoint: Option<PathBuf>,
    /// Resume even when the checkpoint holds state that no operator or source of the job
    /// claims (a removed statement), dropping that state: Flink's `--allowNonRestoredState`
    /// (`execution.savepoint.ignore-unclaimed-state`). Off: such a resume is refused.
    pub allow_non_restored_state: bool,
}

impl CheckpointConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        CheckpointConfig {
            state_dir: state_dir.into(),
            interval: None,
            retained: 2,
            from_savepoint: None,
            allow_non_restored_state: false,
        }
    }

    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    pub fn from_savepoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.from_savepoint = Some(path.into());
        self
    }

    pub fn retained(mut self, retained: usize) -> Self {
        self.retained = retained.max(1);
        self
    }

    pub(crate) fn live_dir(&self, shard: usize) -> PathBuf {
        self.state_dir.join("live").join(format!("shard-{shard}"))
    }

    pub(crate) fn checkpoints_dir(&self) -> PathBuf {
        self.state_dir.join("checkpoints")
    }

    pub(crate) fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("chk-{id:010}"))
    }

    /// The checkpoint or savepoint to resume from, if any: the explicit savepoint, else the
    /// newest checkpoint in the state directory whose manifest is complete.
    pub fn resume_point(&self) -> Result<Option<(PathBuf, Manifest)>, EngineError> {
        if let Some(path) = &self.from_savepoint {
            return Manifest::read(path).map(|m| Some((path.clone(), m)));
        }
        for dir in checkpoint_dirs(&self.checkpoints_dir()).into_iter().rev() {
            match Manifest::read_or_skip(&dir) {
                Ok(manifest) => return Ok(Some((dir, manifest))),
                Err((true, error)) => tracing::warn!(%error, "ignoring incomplete checkpoint"),
                Err((false, error)) => return Err(error),
            }
        }
        Ok(None)
    }
}

/// The id of a `chk-<id>` directory.
pub(crate) fn checkpoint_id(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("chk-")?
        .parse()
        .ok()
}

/// The `chk-<id>` directories under `dir`, oldest (lowest id) first.
pub(crate) fn checkpoint_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| Some((checkpoint_id(&p)?, p)))
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// Total size in bytes of the files under `dir` (a hard-linked file counts in full).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of the files under `dir` that are not also under `previous` (hard links of the same
/// file count as shared): what a checkpoint wrote, as opposed to what it shares with the one
/// before it. Without a previous checkpoint, all of `dir`.
pub fn new_bytes(dir: &Path, previous: Option<&Path>) -> u64 {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    fn files(dir: &Path, out: &mut Vec<std::fs::Metadata>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => files(&entry.path(), out),
                Ok(m) => out.push(m),
                Err(_) => {}
            }
        }
    }
    let mut before = Vec::new();
    if let Some(previous) = previous {
        files(previous, &mut before);
    }
    let shared: HashSet<(u64, u64)> = before.iter().map(|m| (m.dev(), m.ino())).collect();
    let mut now = Vec::new();
    files(dir, &mut now);
    now.iter()
        .filter(|m| !shared.contains(&(m.dev(), m.ino())))
        .map(|m| m.len())
        .sum()
}

/// An operator as a checkpoint records it, for messages about state no operator claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorEntry {
    /// Its name in the job that took the checkpoint.
    pub name: String,
    /// Its logic and input columns, as `EXPLAIN` describes them.
    pub logic: String,
    /// Its number of subtasks (absent in checkpoints of earlier builds): a job resuming with
    /// the same shard count and every operator's parallelism starts from the checkpoint's
    /// stores by hard links instead of copying entries.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// What a completed checkpoint holds besides the shards' stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub checkpoint: u64,
    /// Taken on request and never removed by retention.
    pub savepoint: bool,
    pub created_unix_ms: u64,
    /// Number of `shard-<k>` stores in the checkpoint.
    pub shards: usize,
    pub key_groups: u16,
    /// Operator identity (its uid: a hash of its logic and upstream plan) -> what it was.
    /// Resuming restores each operator's state by identity and refuses state that no
    /// operator of the job claims.
    pub operators: BTreeMap<String, OperatorEntry>,
    /// Source name -> partition (file, topic/partition, generator stream) -> position.
    pub sources: BTreeMap<String, BTreeMap<String, String>>,
    /// Sink name -> commit tokens the sink must commit when this checkpoint completes.
    pub sinks: BTreeMap<String, Vec<String>>,
    /// Lowest watermark among sources at the barrier (informational), ms since the epoch.
    pub source_watermark: Option<i64>,
}

impl Manifest {
    pub(crate) fn new(checkpoint: u64, savepoint: bool, shards: usize, key_groups: u16) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            checkpoint,
            savepoint,
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            shards,
            key_groups,
            operators: BTreeMap::new(),
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            source_watermark: None,
        }
    }

    /// Reads the manifest of the checkpoint or savepoint in `dir`.
    pub fn read(dir: &Path) -> Result<Self, EngineError> {
        Self::read_or_skip(dir).map_err(|(_, error)| error)
    }

    /// [`Manifest::read`], saying whether a failure only means "not a complete checkpoint"
    /// (`true`: missing or torn, which recovery skips) or a checkpoint this build must not
    /// ignore (`false`: another manifest format).
    fn read_or_skip(dir: &Path) -> Result<Self, (bool, EngineError)> {
        let fail = |reason: String| EngineError::Restore {
            path: dir.display().to_string(),
            reason,
        };
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let reason = format!("no complete checkpoint here ({}: {e})", path.display());
            (true, fail(reason))
        })?;
        let torn = |e: serde_json::Error| {
            (
                true,
                fail(format!("{} is torn or not a manifest: {e}", path.display())),
            )
        };
        // The format first: a complete manifest of another format is refused, not skipped
        // (skipping it would start the job over and duplicate its output).
        let value: serde_json::Value = serde_json::from_str(&text).map_err(torn)?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        if format != Some(u64::from(MANIFEST_FORMAT)) {
            return Err((
                false,
                fail(format!(
                    "manifest format {} is not supported (this build reads {MANIFEST_FORMAT}); \
                     resume it with the Weir version that wrote it, or start without it",
                    format.map_or("(none)".to_string(), |f| f.to_string())
                )),
            ));
        }
        serde_json::from_value(value).map_err(torn)
    }

    /// Writes the manifest into `dir` atomically: temporary file, fsync, rename, fsync of
    /// the directory.
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let temporary = dir.join(format!("{MANIFEST}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, dir.join(MANIFEST))?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// The directory of shard `shard`'s store inside the checkpoint in `dir`.
    pub fn shard_dir(dir: &Path, shard: usize) -> PathBuf {
        dir.join(format!("shard-{shard}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_complete_checkpoint_wins_and_torn_ones_are_ignored() {
        let dir = std::env::temp_dir().join(format!("weir-manifest-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = CheckpointConfig::new(&dir);
        for id in [1, 2, 3] {
            std::fs::create_dir_all(config.checkpoint_dir(id)).unwrap();
        }
        Manifest::new(1, false, 2, 128)
            .write(&config.checkpoint_dir(1))
            .unwrap();
        Manifest::new(2, false, 2, 128)
            .write(&config.checkpoint_dir(2))
            .unwrap();
        // 3 was torn: half a manifest.
        std::fs::write(
            config.checkpoint_dir(3).join(MANIFEST),
            "{\"format\": 1, \"check",
        )
        .unwrap();
        let (path, manifest) = config.resume_point().unwrap().unwrap();
        assert_eq!(manifest.checkpoint, 2);
        assert_eq!(path, config.checkpoint_dir(2));
        // Ids, not names, order checkpoints: chk-10000000000 is newer than chk-9999999999.
        for id in [9_999_999_999, 10_000_000_000] {
            std::fs::create_dir_all(config.checkpoint_dir(id)).unwrap();
        }
        Manifest::new(10_000_000_000, false, 2, 128)
            .write(&config.checkpoint_dir(10_000_000_000))
            .unwrap();
        let (_, manifest) = config.resume_point().unwrap().unwrap();
        assert_eq!(manifest.checkpoint, 10_000_000_000);
        let missing = CheckpointConfig::new(&dir).from_savepoint(dir.join("nope"));
        let error = missing.resume_point().unwrap_err().to_string();
        assert!(error.contains("no complete checkpoint"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
