//! Setting up a job that checkpoints: the shards' stores, and resuming from a checkpoint or
//! savepoint (compatibility check, sink recovery, operator state and source positions).
//!
//! Resuming, in order:
//! 1. find the checkpoint: `--from-savepoint`, else the newest complete checkpoint in the
//!    state directory (an incomplete one, without a readable manifest, is skipped) - or an
//!    older one when a sink that cannot commit again (Kafka transactions) last committed
//!    that one;
//! 2. check that it fits the job: same number of key groups, and every operator and source
//!    that has state in it is claimed by the job: an operator by its identity (a hash of its
//!    logic and upstream plan, so statement order does not matter), a source by its name;
//!    unclaimed state is refused unless the job allows it (`allow_non_restored_state`);
//! 3. sinks commit the checkpoint's tokens again (idempotent) and then discard anything
//!    staged after it;
//! 4. at the shard count and operator parallelism that took the checkpoint, each shard's
//!    live store starts as its checkpointed store by hard links
//!    ([`ShardStore::restore_linked`]: no entry is copied); otherwise (rescaling) each operator
//!    subtask copies its key groups from every old shard's store into its live store. Each
//!    source split gets the stored positions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use crate::checkpoint::coordinator::Event;
use crate::checkpoint::store::{ShardStore, SnapshotReader};
use crate::checkpoint::{CheckpointConfig, Manifest, OperatorEntry};
use crate::error::EngineError;
use crate::graph::{operator_logic, Graph, GraphInfo, NodeKind};
use crate::partition::KeyGroupRange;
use crate::sink::SinkFactory;
use crate::source::Positions;
use crate::state::StateBackend;

/// The checkpoint or savepoint a job resumes from.
pub(crate) struct Resume {
    pub(crate) path: PathBuf,
    pub(crate) manifest: Manifest,
    readers: Vec<SnapshotReader>,
    /// Whether the live stores were linked from the checkpoint's, so they hold the state
    /// already (step 4 of the module doc).
    linked: bool,
}

/// Everything a checkpointing job needs besides its plan.
pub(crate) struct Durability {
    pub(crate) config: CheckpointConfig,
    pub(crate) stores: Vec<Arc<ShardStore>>,
    pub(crate) resume: Option<Resume>,
    /// Operator identity -> name and logic, for the manifest.
    pub(crate) fingerprints: BTreeMap<String, OperatorEntry>,
    /// Every sink (the committers), those that cannot commit again first.
    pub(crate) sinks: Vec<(String, Arc<dyn SinkFactory>)>,
    pub(crate) events: Sender<Event>,
    pub(crate) receiver: Option<Receiver<Event>>,
}

impl Durability {
    pub(crate) fn store(&self, shard: usize) -> &Arc<ShardStore> {
        &self.stores[shard % self.stores.len()]
    }

    pub(crate) fn restored_positions(&self, source: &str) -> Option<Arc<Positions>> {
        let resume = self.resume.as_ref()?;
        Some(Arc::new(
            resume
                .manifest
                .sources
                .get(source)
                .cloned()
                .unwrap_or_default(),
        ))
    }

    /// An error restoring from the checkpoint being resumed (its path is named).
    pub(crate) fn restore_error(&self, reason: String) -> EngineError {
        match &self.resume {
            Some(resume) => resume.error(reason),
            None => EngineError::Checkpoint(reason),
        }
    }

    /// Copies the stored state of `operator` in `range`, from every old shard, into `live`
    /// (entry by entry: nothing is gathered in memory) unless the live stores were linked from
    /// the checkpoint; whether the job is resuming.
    pub(crate) fn restore_into(
        &self,
        operator: &str,
        range: KeyGroupRange,
        live: &mut dyn StateBackend,
    ) -> Result<bool, EngineError> {
        let Some(resume) = &self.resume else {
            return Ok(false);
        };
        if resume.linked {
            return Ok(true);
        }
        let fail = |e: crate::state::StateError| resume.error(e.to_string());
        for reader in &resume.readers {
            for table in reader.tables(operator).map_err(fail)? {
                reader
                    .visit(operator, &table, range, &mut |group, key, value| {
                        live.put(&table, group, key, value.to_vec())
                    })
                    .map_err(fail)?;
            }
        }
        Ok(true)
    }
}

impl Resume {
    fn error(&self, reason: String) -> EngineError {
        EngineError::Restore {
            path: self.path.display().to_string(),
            reason,
        }
    }
}

/// Every operator by its identity, with its name and logic.
pub(crate) fn fingerprints(graph: &Graph, info: &GraphInfo) -> BTreeMap<String, OperatorEntry> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| match &node.kind {
            NodeKind::Operator(factory) => Some((
                info.uids[i].clone(),
                OperatorEntry {
                    name: node.name.clone(),
                    logic: operator_logic(factory.as_ref(), &info.input_schemas[i]),
                    parallelism: Some(info.parallelism[i]),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Opens the stores and, when there is a checkpoint to resume from, checks it and recovers
/// the sinks (steps 1-3 of the module doc).
pub(crate) fn prepare(
    graph: &Graph,
    info: &GraphInfo,
    config: &CheckpointConfig,
    shards: usize,
    key_groups: u16,
    memory_budget: usize,
) -> Result<Durability, EngineError> {
    let fingerprints = fingerprints(graph, info);
    let mut sinks = Vec::new();
    let mut committed = None;
    for node in &graph.nodes {
        if let NodeKind::Sink(factory) = &node.kind {
            let last = factory.recover_committed().map_err(|e| {
                EngineError::Checkpoint(format!("sink '{}' could not recover: {e}", node.name))
            })?;
            match (last, &committed) {
                (Some(_), Some((other, _))) => {
                    return Err(EngineError::InvalidGraph(format!(
                        "sinks '{other}' and '{}' both use transactions that only the process \
                         that opened them can commit; a job can have one such sink \
                         (exactly-once Kafka)",
                        node.name
                    )))
                }
                (Some(last), None) => {
                    committed = Some((node.name.clone(), last));
                    sinks.insert(0, (node.name.clone(), Arc::clone(factory)));
                }
                (None, _) => sinks.push((node.name.clone(), Arc::clone(factory))),
            }
        }
    }
    let mut point = config.resume_point()?;
    if let (Some((sink, last)), Some((_, manifest))) = (&committed, &point) {
        if *last < manifest.checkpoint && config.from_savepoint.is_none() {
            tracing::warn!(
                sink = %sink,
                newest = manifest.checkpoint,
                committed = *last,
                "the newest checkpoint's transaction did not commit; resuming from the one before"
            );
            point = match *last {
                0 => None,
                id => {
                    let dir = config.checkpoint_dir(id);
                    let manifest = Manifest::read(&dir)?;
                    Some((dir, manifest))
                }
            };
        }
    }
    let resume = match point {
        Some((path, manifest)) => {
            let mut readers = Vec::new();
            for shard in 0..manifest.shards {
                let dir = Manifest::shard_dir(&path, shard);
                readers.push(
                    SnapshotReader::open(&dir).map_err(|e| EngineError::Restore {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?,
                );
            }
            let mut resume = Resume {
                path,
                manifest,
                readers,
                linked: false,
            };
            let connectors: Vec<&str> = graph
                .nodes
                .iter()
                .filter(|n| !matches!(n.kind, NodeKind::Operator(_)))
                .map(|n| n.name.as_str())
                .collect();
            check_compatible(&resume, &fingerprints, &connectors, key_groups, config)?;
            resume.linked = same_layout(&resume.manifest, &fingerprints, shards);
            // Positions of a source the job no longer has (allowed above) are dropped, not
            // carried into the next checkpoints.
            resume
                .manifest
                .sources
                .retain(|name, _| connectors.contains(&name.as_str()));
            tracing::info!(
                checkpoint = resume.manifest.checkpoint,
                path = %resume.path.display(),
                shards_before = resume.manifest.shards,
                shards_now = shards,
                linked = resume.linked,
                "resuming"
            );
            Some(resume)
        }
        None => None,
    };
    for (name, factory) in &sinks {
        let fail = |e: crate::error::BoxError| {
            EngineError::Checkpoint(format!("sink '{name}' could not recover: {e}"))
        };
        if let Some(resume) = &resume {
            if let Some(tokens) = resume.manifest.sinks.get(name) {
                factory
                    .commit(resume.manifest.checkpoint, tokens)
                    .map_err(fail)?;
            }
        }
        factory.abort_uncommitted().map_err(fail)?;
    }
    let operators: Vec<String> = fingerprints.keys().cloned().collect();
    let stores = (0..shards)
        .map(|shard| {
            let (live, budget) = (config.live_dir(shard), memory_budget / shards);
            match &resume {
                Some(resume) if resume.linked => ShardStore::restore_linked(
                    &live,
                    &Manifest::shard_dir(&resume.path, shard),
                    &operators,
                    budget,
                )
                .map_err(|e| resume.error(e.to_string())),
                _ => ShardStore::create(&live, &operators, budget)
                    .map_err(|e| EngineError::Checkpoint(e.to_string())),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (events, receiver) = std::sync::mpsc::channel();
    Ok(Durability {
        config: config.clone(),
        stores,
        resume,
        fingerprints,
        sinks,
        events,
        receiver: Some(receiver),
    })
}

/// Whether the checkpoint was taken at `shards` shards with every operator of the job that
/// has state in it at its parallelism now: then each old shard's store is exactly the new
/// shard's.
fn same_layout(
    manifest: &Manifest,
    fingerprints: &BTreeMap<String, OperatorEntry>,
    shards: usize,
) -> bool {
    manifest.shards == shards
        && fingerprints.iter().all(|(uid, now)| {
            manifest
                .operators
                .get(uid)
                .is_none_or(|before| before.parallelism == now.parallelism)
        })
}

/// Refuses a checkpoint whose key groups differ, or that holds state no part of the job
/// claims (operators by identity; sources and sinks, `connectors`, by name) unless the job
/// allows dropping it.
fn check_compatible(
    resume: &Resume,
    fingerprints: &BTreeMap<String, OperatorEntry>,
    connectors: &[&str],
    key_groups: u16,
    config: &CheckpointConfig,
) -> Result<(), EngineError> {
    if resume.manifest.key_groups != key_groups {
        return Err(resume.error(format!(
            "it was taken with {} key groups, the job now has {key_groups}",
            resume.manifest.key_groups
        )));
    }
    let mut unclaimed = Vec::new();
    for (uid, before) in &resume.manifest.operators {
        // (Only an operator the job does not claim is looked up in the stores.)
        if fingerprints.contains_key(uid) {
            continue;
        }
        let has_state = resume
            .readers
            .iter()
            .any(|r| r.tables(uid).is_ok_and(|t| !t.is_empty()));
        if has_state {
            unclaimed.push(format!("operator '{}' (`{}`)", before.name, before.logic));
        }
    }
    for (source, positions) in &resume.manifest.sources {
        if !positions.is_empty() && !connectors.contains(&source.as_str()) {
            unclaimed.push(format!("the positions of source '{source}'"));
        }
    }
    // A sink's output staged at the checkpoint is committed only by that sink.
    for (sink, tokens) in &resume.manifest.sinks {
        if !tokens.is_empty() && !connectors.contains(&sink.as_str()) {
            unclaimed.push(format!("the staged output of sink '{sink}'"));
        }
    }
    if unclaimed.is_empty() {
        return Ok(());
    }
    if config.allow_non_restored_state {
        for what in &unclaimed {
            tracing::warn!(state = %what, "dropping state that no part of the job claims");
        }
        return Ok(());
    }
    let restored: Vec<&str> = resume
        .manifest
        .operators
        .keys()
        .map(String::as_str)
        .collect();
    let new: Vec<String> = fingerprints
        .iter()
        .filter(|(uid, _)| !restored.contains(&uid.as_str()))
        .map(|(_, now)| format!("'{}' (`{}`)", now.name, now.logic))
        .collect();
    Err(resume.error(format!(
        "it holds state that no part of this job claims: {}{}. A stateful operator is known by \
         its logic and everything upstream of it: changing either makes it a new operator. To \
         start without that state, allow it (`--allow-non-restored-state`, Flink's \
         --allowNonRestoredState)",
        unclaimed.join(", "),
        if new.is_empty() {
            String::new()
        } else {
            format!(
                "; operators of this job without state in it: {}",
                new.join(", ")
            )
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(parallelism: Option<usize>) -> OperatorEntry {
        OperatorEntry {
            name: "op".into(),
            logic: "logic".into(),
            parallelism,
        }
    }

    /// Stores are linked only when each old shard's store is exactly the new one's: the same
    /// shard count and, for every operator with state in the checkpoint, the same
    /// parallelism (unknown in checkpoints of earlier builds: copied).
    #[test]
    fn stores_are_linked_only_at_the_same_layout() {
        let mut manifest = Manifest::new(1, false, 2, 128);
        manifest.operators = [("a".to_string(), operator(Some(2)))].into();
        let job = |parallelism: usize| -> BTreeMap<String, OperatorEntry> {
            [
                ("a".to_string(), operator(Some(parallelism))),
                ("new".to_string(), operator(Some(1))),
            ]
            .into()
        };
        assert!(same_layout(&manifest, &job(2), 2));
        assert!(!same_layout(&manifest, &job(2), 4), "another shard count");
        assert!(!same_layout(&manifest, &job(1), 2), "another parallelism");
        manifest.operators = [("a".to_string(), operator(None))].into();
        assert!(!same_layout(&manifest, &job(2), 2), "parallelism unknown");
    }
}
