//! Watermark alignment, as Flink's (`scan.watermark.alignment.*`): the source splits of one
//! alignment group stop reading while their watermark is more than the group's `max_drift`
//! ahead of the group's slowest split, so that operators freed by the watermark (interval
//! joins, windows) do not buffer what a fast split reads ahead.
//!
//! The group's watermarks are shared memory: each split publishes its own after every
//! watermark it emits, and a paused split looks again every millisecond (Flink's
//! coordinator broadcasts the group's minimum every `update-interval`; here the check is
//! local and cheap, so the interval is only an upper bound). Splits that have no watermark
//! yet, are idle or have finished do not hold the group back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::message::EventTimeMs;
use crate::time::WatermarkAlignment;

/// Every alignment group of a job, by name.
#[derive(Default)]
pub(crate) struct AlignmentGroups {
    groups: HashMap<String, Arc<Group>>,
}

/// The watermarks of a group's splits (`None`: not counted).
#[derive(Default)]
struct Group {
    watermarks: Mutex<Vec<Option<EventTimeMs>>>,
}

impl Group {
    fn watermarks(&self) -> std::sync::MutexGuard<'_, Vec<Option<EventTimeMs>>> {
        self.watermarks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AlignmentGroups {
    /// Registers one more split of `alignment`'s group.
    pub(crate) fn join(&mut self, alignment: &WatermarkAlignment) -> AlignedSplit {
        let group = Arc::clone(self.groups.entry(alignment.group.clone()).or_default());
        let index = {
            let mut watermarks = group.watermarks();
            watermarks.push(None);
            watermarks.len() - 1
        };
        AlignedSplit {
            group,
            index,
            max_drift_ms: i64::try_from(alignment.max_drift.as_millis()).unwrap_or(i64::MAX),
            recheck: alignment
                .update_interval
                .clamp(Duration::from_micros(100), Duration::from_millis(1)),
        }
    }
}

/// One split's place in its alignment group.
pub(crate) struct AlignedSplit {
    group: Arc<Group>,
    index: usize,
    max_drift_ms: i64,
    /// How long a paused split waits before it looks again.
    pub(crate) recheck: Duration,
}

impl AlignedSplit {
    /// Publishes this split's watermark (`None`: idle, or not counted).
    pub(crate) fn report(&self, watermark: Option<EventTimeMs>) {
        self.group.watermarks()[self.index] = watermark;
    }

    /// Whether a split at `watermark` is too far ahead of its group to read on.
    pub(crate) fn paused(&self, watermark: Option<EventTimeMs>) -> bool {
        let Some(own) = watermark else {
            return false;
        };
        let slowest = self.group.watermarks().iter().flatten().copied().min();
        slowest.is_some_and(|slowest| own > slowest.saturating_add(self.max_drift_ms))
    }
}

impl Drop for AlignedSplit {
    /// A finished split no longer holds its group back.
    fn drop(&mut self) {
        self.report(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_ahead_of_its_group_by_more_than_the_drift_pauses() {
        let alignment = WatermarkAlignment {
            group: "g".into(),
            max_drift: Duration::from_millis(100),
            update_interval: Duration::from_secs(1),
        };
        let mut groups = AlignmentGroups::default();
        let (fast, slow) = (groups.join(&alignment), groups.join(&alignment));
        fast.report(Some(1_000));
        assert!(!fast.paused(Some(1_000)), "alone in the group so far");
        slow.report(Some(900));
        assert!(!fast.paused(Some(1_000)), "exactly the drift ahead");
        fast.report(Some(1_001));
        assert!(fast.paused(Some(1_001)));
        assert!(!slow.paused(Some(900)));
        slow.report(None);
        assert!(
            !fast.paused(Some(1_001)),
            "an idle split does not hold the group"
        );
        slow.report(Some(950));
        fast.report(Some(5_000));
        assert!(fast.paused(Some(5_000)));
        drop(slow);
        assert!(
            !fast.paused(Some(5_000)),
            "a finished split does not either"
        );
    }
}
