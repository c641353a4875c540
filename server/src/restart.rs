//! Restarting a failed job: Flink's restart strategies and their `restart-strategy.*` keys,
//! set in the job's script with `SET`. A job that checkpoints (every server job does) gets
//! Flink's default, `exponential-delay`, with Flink 1.19's defaults.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_connectors::options::parse_duration;

/// How a job is restarted after a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// `none`: the first failure fails the job.
    None,
    /// `fixed-delay`: up to `attempts` restarts, `delay` apart.
    FixedDelay { attempts: u32, delay: Duration },
    /// `failure-rate`: restarts `delay` apart until more than `max_failures` failures fall
    /// within `interval`.
    FailureRate {
        max_failures: u32,
        interval: Duration,
        delay: Duration,
    },
    /// `exponential-delay`: the delay starts at `initial`, grows by `multiplier` up to `max`
    /// (with ± `jitter` of itself), and goes back to `initial` after `reset_threshold`
    /// without failure; the job fails after `attempts` restarts without a reset.
    ExponentialDelay {
        initial: Duration,
        max: Duration,
        multiplier: f64,
        reset_threshold: Duration,
        jitter: f64,
        attempts: u32,
    },
}

impl Default for RestartStrategy {
    /// Flink's default for a checkpointing job (1.19).
    fn default() -> Self {
        RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 1.5,
            reset_threshold: Duration::from_secs(3600),
            jitter: 0.1,
            attempts: u32::MAX,
        }
    }
}

/// The keys this module reads, for error hints.
const KEYS: &[&str] = &[
    "restart-strategy.type",
    "restart-strategy.fixed-delay.attempts",
    "restart-strategy.fixed-delay.delay",
    "restart-strategy.failure-rate.max-failures-per-interval",
    "restart-strategy.failure-rate.failure-rate-interval",
    "restart-strategy.failure-rate.delay",
    "restart-strategy.exponential-delay.initial-backoff",
    "restart-strategy.exponential-delay.max-backoff",
    "restart-strategy.exponential-delay.backoff-multiplier",
    "restart-strategy.exponential-delay.reset-backoff-threshold",
    "restart-strategy.exponential-delay.jitter-factor",
    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
];

impl RestartStrategy {
    /// The strategy the `restart-strategy.*` keys of `settings` (a script's `SET`s) ask for.
    ///
    /// Errors: an unknown key or type, or a value of the wrong kind, named.
    pub fn from_settings(settings: &BTreeMap<String, String>) -> Result<Self, String> {
        let keys: BTreeMap<&str, &str> = (settings.iter())
            .filter(|(k, _)| k.starts_with("restart-strategy."))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(unknown) = keys.keys().find(|k| !KEYS.contains(k)) {
            return Err(format!(
                "unknown option '{unknown}' (known: {})",
                KEYS.join(", ")
            ));
        }
        let duration = |key: &str, default: Duration| match keys.get(key) {
            None => Ok(default),
            Some(v) => parse_duration(v)
                .ok_or_else(|| format!("'{key}': '{v}' is not a duration (e.g. 1s, 1min)")),
        };
        let number = |key: &str, default: u32| match keys.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("'{key}': '{v}' is not a whole number")),
        };
        let real = |key: &str, default: f64| match keys.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("'{key}': '{v}' is not a non-negative number")),
        };
        let kind = keys
            .get("restart-strategy.type")
            .map(|t| t.trim().to_ascii_lowercase());
        match kind.as_deref() {
            None | Some("exponential-delay" | "exponentialdelay") => {
                let RestartStrategy::ExponentialDelay {
                    initial,
                    max,
                    multiplier,
                    reset_threshold,
                    jitter,
                    attempts,
                } = RestartStrategy::default()
                else {
                    unreachable!("the default is exponential-delay")
                };
                let prefix = "restart-strategy.exponential-delay.";
                let key = |name: &str| format!("{prefix}{name}");
                Ok(RestartStrategy::ExponentialDelay {
                    initial: duration(&key("initial-backoff"), initial)?,
                    max: duration(&key("max-backoff"), max)?,
                    multiplier: real(&key("backoff-multiplier"), multiplier)?.max(1.0),
                    reset_threshold: duration(&key("reset-backoff-threshold"), reset_threshold)?,
                    jitter: real(&key("jitter-factor"), jitter)?.min(1.0),
                    attempts: number(&key("attempts-before-reset-backoff"), attempts)?,
                })
            }
            Some("none" | "off" | "disable") => Ok(RestartStrategy::None),
            Some("fixed-delay" | "fixeddelay") => Ok(RestartStrategy::FixedDelay {
                attempts: number("restart-strategy.fixed-delay.attempts", 1)?,
                delay: duration("restart-strategy.fixed-delay.delay", Duration::from_secs(1))?,
            }),
            Some("failure-rate" | "failurerate") => Ok(RestartStrategy::FailureRate {
                max_failures: number(
                    "restart-strategy.failure-rate.max-failures-per-interval",
                    1,
                )?,
                interval: duration(
                    "restart-strategy.failure-rate.failure-rate-interval",
                    Duration::from_secs(60),
                )?,
                delay: duration("restart-strategy.failure-rate.delay", Duration::from_secs(1))?,
            }),
            Some(other) => Err(format!(
                "'restart-strategy.type': '{other}' is not one of none, fixed-delay, failure-rate, exponential-delay"
            )),
        }
    }
}

/// The failures of one job, judged by its strategy.
#[derive(Debug)]
pub struct Restarts {
    strategy: RestartStrategy,
    /// Restarts so far (since the last reset, for `exponential-delay`).
    attempts: u32,
    /// The current delay of `exponential-delay`.
    backoff: Duration,
    /// When the failures happened.
    failures: Vec<Instant>,
    /// Seed of the jitter (a job restarts rarely: a simple generator is enough).
    seed: u64,
}

impl Restarts {
    pub fn new(strategy: RestartStrategy) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 | 1);
        Restarts {
            strategy,
            attempts: 0,
            backoff: Duration::ZERO,
            failures: Vec::new(),
            seed,
        }
    }

    /// A failure at `now`: how long to wait before restarting, or `None` to give up.
    pub fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        let last = self.failures.last().copied();
        self.failures.push(now);
        match self.strategy.clone() {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                self.attempts += 1;
                (self.attempts <= attempts).then_some(delay)
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                self.failures
                    .retain(|t| now.saturating_duration_since(*t) <= interval);
                (self.failures.len() <= max_failures as usize).then_some(delay)
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                reset_threshold,
                jitter,
                attempts,
            } => {
                let quiet =
                    last.is_some_and(|t| now.saturating_duration_since(t) >= reset_threshold);
                if self.attempts == 0 || quiet {
                    self.attempts = 0;
                    self.backoff = initial.min(max);
                } else {
                    self.backoff = scaled(self.backoff, multiplier, max);
                }
                self.attempts += 1;
                if self.attempts > attempts {
                    return None;
                }
                // ± jitter of the delay.
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                let unit = (self.seed % 2001) as f64 / 1000.0 - 1.0;
                Some(scaled(self.backoff, (1.0 + unit * jitter).max(0.0), max))
            }
        }
    }
}

/// `delay` times `factor`, at most `cap` (no overflow for any factor).
fn scaled(delay: Duration, factor: f64, cap: Duration) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).map_or(cap, |d| d.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flink_keys_choose_the_strategy() {
        assert_eq!(
            RestartStrategy::from_settings(&settings(&[])).unwrap(),
            RestartStrategy::default()
        );
        assert_eq!(
            RestartStrategy::from_settings(&settings(&[
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", "3"),
                ("restart-strategy.fixed-delay.delay", "200ms"),
            ]))
            .unwrap(),
            RestartStrategy::FixedDelay {
                attempts: 3,
                delay: Duration::from_millis(200)
            }
        );
        let typo = RestartStrategy::from_settings(&settings(&[(
            "restart-strategy.fixed-delay.attempt",
            "3",
        )]))
        .unwrap_err();
        assert!(
            typo.contains("restart-strategy.fixed-delay.attempt'"),
            "{typo}"
        );
        let bad =
            RestartStrategy::from_settings(&settings(&[("restart-strategy.type", "sometimes")]))
                .unwrap_err();
        assert!(bad.contains("sometimes"), "{bad}");
    }

    #[test]
    fn fixed_delay_gives_up_after_its_attempts() {
        let mut restarts = Restarts::new(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(5),
        });
        let now = Instant::now();
        assert_eq!(restarts.on_failure(now), Some(Duration::from_millis(5)));
        assert_eq!(restarts.on_failure(now), Some(Duration::from_millis(5)));
        assert_eq!(restarts.on_failure(now), None);
        assert_eq!(Restarts::new(RestartStrategy::None).on_failure(now), None);
    }

    #[test]
    fn exponential_delay_grows_to_its_maximum_and_resets_after_a_quiet_time() {
        let mut restarts = Restarts::new(RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
            multiplier: 2.0,
            reset_threshold: Duration::from_secs(100),
            jitter: 0.0,
            attempts: 10,
        });
        let start = Instant::now();
        let delays: Vec<u64> = (0..5)
            .map(|i| {
                restarts
                    .on_failure(start + Duration::from_secs(i))
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 4, 4]);
        let later = start + Duration::from_secs(500);
        assert_eq!(restarts.on_failure(later), Some(Duration::from_secs(1)));
        let mut huge = Restarts::new(RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 1e300,
            reset_threshold: Duration::from_secs(3600),
            jitter: 1.0,
            attempts: 10,
        });
        for _ in 0..5 {
            assert!(huge.on_failure(start).unwrap() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn failure_rate_counts_failures_within_the_interval() {
        let mut restarts = Restarts::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: Duration::from_secs(10),
            delay: Duration::ZERO,
        });
        let start = Instant::now();
        assert!(restarts.on_failure(start).is_some());
        assert!(restarts
            .on_failure(start + Duration::from_secs(1))
            .is_some());
        assert!(restarts
            .on_failure(start + Duration::from_secs(2))
            .is_none());
        let mut restarts = Restarts::new(RestartStrategy::FailureRate {
            max_failures: 1,
            interval: Duration::from_secs(10),
            delay: Duration::ZERO,
        });
        assert!(restarts.on_failure(start).is_some());
        assert!(restarts
            .on_failure(start + Duration::from_secs(20))
            .is_some());
    }
}
