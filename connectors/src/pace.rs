//! Pacing for generator sources: hold a split to its share of a rows-per-second rate.

use std::time::Duration;

use tokio::time::Instant;

/// Paces one split: `wait(produced)` returns when `produced` rows are due.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Rows per second for this split; `None` is unthrottled.
    split_rate: Option<f64>,
    /// When pacing began, and the rows produced before it (a split resumed from a
    /// checkpoint starts with rows already produced; they are not due again).
    started: Option<(Instant, u64)>,
}

impl Pacer {
    /// A pacer for one of `splits` splits sharing `rate_per_second` (none: unthrottled).
    pub fn new(rate_per_second: Option<u64>, splits: usize) -> Self {
        Pacer {
            split_rate: rate_per_second.map(|r| (r as f64 / splits.max(1) as f64).max(1e-3)),
            started: None,
        }
    }

    /// Rows per second of this split, if throttled.
    pub fn split_rate(&self) -> Option<f64> {
        self.split_rate
    }

    /// Starts pacing now, with `produced` rows already produced.
    pub fn start(&mut self, produced: u64) {
        self.started = Some((Instant::now(), produced));
    }

    /// Sleeps until row `produced` is due; unthrottled, only yields to the shard's other tasks.
    pub async fn wait(&mut self, produced: u64) {
        match self.split_rate {
            Some(rate) => {
                let (started, before) = *self.started.get_or_insert((Instant::now(), produced));
                let due = produced.saturating_sub(before) as f64 / rate;
                tokio::time::sleep_until(started + Duration::from_secs_f64(due)).await;
            }
            None => tokio::task::yield_now().await,
        }
    }
}
