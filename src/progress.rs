//! Progress of a running job on the terminal (`weir run`): rows read and rows/s, bytes read
//! from files, the current watermark and the last checkpoint, on one line of stderr redrawn
//! by indicatif a few times a second, and cleared when the job ends.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressStyle};
use weir::engine::metrics::{names, MetricValue, Metrics, JOB};

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// Over how many ticks the rate is measured (one second).
const RATE_TICKS: usize = 4;

/// Whether a job's progress is shown: on a terminal (stderr), unless `--quiet`, and not over
/// a query's rows printed to that same terminal.
pub fn wanted(quiet: bool, prints_rows: bool) -> bool {
    !quiet && std::io::stderr().is_terminal() && !(prints_rows && std::io::stdout().is_terminal())
}

/// The progress line of one running job; [`Progress::finish`] clears it.
pub struct Progress {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Shows the progress of the job with `metrics` whose sources are the nodes `sources`.
    pub fn start(metrics: Metrics, sources: Vec<String>) -> Progress {
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        let drawn = bar.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("weir-progress".into())
            .spawn(move || {
                // The rate is over the last second: the rows read at each of the last ticks.
                let mut window = VecDeque::from([(Instant::now(), 0u64)]);
                while !stopping.load(Ordering::Relaxed) {
                    let (line, rows) = describe(&metrics, &sources, window[0]);
                    window.push_back((Instant::now(), rows));
                    if window.len() > RATE_TICKS {
                        window.pop_front();
                    }
                    drawn.set_message(line);
                    drawn.tick();
                    std::thread::sleep(TICK);
                }
                drawn.finish_and_clear();
            })
            .ok();
        Progress { bar, stop, thread }
    }

    /// A handle that prints a line on stderr above the progress line (from any thread).
    pub fn notices(&self) -> Notices {
        Notices(Some(self.bar.clone()))
    }

    /// Clears the line.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints notices on stderr, above the progress line when there is one.
#[derive(Clone, Default)]
pub struct Notices(Option<ProgressBar>);

impl Notices {
    pub fn print(&self, text: &str) {
        match &self.0 {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }
}

/// The progress line, and the rows read so far (`since`: a moment before and the rows read
/// then, for the rate).
fn describe(metrics: &Metrics, sources: &[String], since: (Instant, u64)) -> (String, u64) {
    let (mut rows, mut bytes, mut watermark) = (0u64, 0u64, None::<i64>);
    let (mut checkpoints, mut checkpoint_ms) = (0u64, 0i64);
    for (key, value) in metrics.snapshot() {
        match (key.name, value) {
            (names::ROWS_OUT, MetricValue::Counter(n)) if sources.contains(&key.operator) => {
                rows += n
            }
            (names::BYTES_READ, MetricValue::Counter(n)) => bytes += n,
            (names::INPUT_WATERMARK, MetricValue::Gauge(w)) if w > i64::MIN && w < i64::MAX => {
                watermark = Some(watermark.map_or(w, |m| m.min(w)))
            }
            (names::CHECKPOINTS_COMPLETED, MetricValue::Counter(n)) if key.operator == JOB => {
                checkpoints = n
            }
            (names::LAST_CHECKPOINT_DURATION_MS, MetricValue::Gauge(ms)) if key.operator == JOB => {
                checkpoint_ms = ms
            }
            _ => {}
        }
    }
    let seconds = since.0.elapsed().as_secs_f64().max(0.1);
    let rate = rows.saturating_sub(since.1) as f64 / seconds;
    let mut line = format!(
        "{} rows read ({}/s)",
        HumanCount(rows),
        HumanCount(rate as u64)
    );
    if bytes > 0 {
        line += &format!(", {} of files", HumanBytes(bytes));
    }
    if let Some(time) = watermark.and_then(chrono::DateTime::from_timestamp_millis) {
        line += &format!(", watermark {}", time.format("%Y-%m-%d %H:%M:%S%.3f"));
    }
    if checkpoints > 0 {
        line += &format!(", checkpoint {checkpoints} ({checkpoint_ms} ms)");
    }
    (line, rows)
}
