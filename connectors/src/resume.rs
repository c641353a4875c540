//! Resume positions of generator splits.
//!
//! The generators (`nexmark`, `datagen`, the benchmark bid generator) interleave: split `j`
//! of `P` produces items `j, j + P, j + 2P, ...`. A split's position is stored under the key
//! `split j/P`, so resuming needs the same number of splits; a different one is refused with a
//! message that says so (file and Kafka sources store positions per file and per partition
//! and resume at any parallelism).

use weir_engine::source::{Positions, SplitContext};

use crate::error::ConnectorError;

fn key(split: &SplitContext) -> String {
    format!("split {}/{}", split.index, split.parallelism)
}

/// This split's position as a generator stored it (numbers separated by spaces), or `None`
/// on a fresh start.
pub(crate) fn restored(
    split: &SplitContext,
    numbers: usize,
) -> Result<Option<Vec<u64>>, ConnectorError> {
    let Some(positions) = split.restored.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let fail = |message: String| ConnectorError::Config {
        connector: split.source_id.clone(),
        message,
    };
    let Some(text) = positions.get(&key(split)) else {
        let before = positions.keys().next().map_or("", |k| k.as_str());
        let splits = before.rsplit('/').next().unwrap_or("?");
        return Err(fail(format!(
            "a generator resumes only with as many splits as it was checkpointed with \
             ({splits}); this run has {}: resume with --shards {splits}",
            split.parallelism
        )));
    };
    let values = text
        .split(' ')
        .map(str::parse::<u64>)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|v| v.len() == numbers)
        .ok_or_else(|| {
            fail(format!(
                "stored position '{text}' is not a generator position"
            ))
        })?;
    Ok(Some(values))
}

/// The position of this split to store.
pub(crate) fn positions(index: u64, parallelism: u64, numbers: &[u64]) -> Positions {
    let text: Vec<String> = numbers.iter().map(u64::to_string).collect();
    Positions::from([(format!("split {index}/{parallelism}"), text.join(" "))])
}
