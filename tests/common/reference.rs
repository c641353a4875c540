//! The brute-force window reference and the DSL runner the window tests compare it with.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{batches_of, column_i64, event_schema, events_of, Event};
use proptest::prelude::*;
use weir::engine::metrics::names;
use weir::prelude::*;

/// One output row: window bounds (None for count windows), key, then
/// count(*), count(v), sum(v), min(v), max(v), count(distinct v).
pub type Row = (Option<(i64, i64)>, i64, [Option<i64>; 6]);

/// Reference session state: per key, open sessions `(start, end, values)`.
type Sessions = BTreeMap<i64, Vec<(i64, i64, Vec<Option<i64>>)>>;
/// Reference time-window state: `(start, end, key)` -> values.
type OpenWindows = BTreeMap<(i64, i64, i64), Vec<Option<i64>>>;

fn aggregate(values: &[Option<i64>]) -> [Option<i64>; 6] {
    let present: Vec<i64> = values.iter().flatten().copied().collect();
    let distinct: BTreeSet<i64> = present.iter().copied().collect();
    [
        Some(values.len() as i64),
        Some(present.len() as i64),
        (!present.is_empty()).then(|| present.iter().sum()),
        present.iter().min().copied(),
        present.iter().max().copied(),
        Some(distinct.len() as i64),
    ]
}

/// Windows containing `ts`, by enumeration.
fn windows_of(spec: Window, ts: i64) -> Vec<(i64, i64)> {
    match spec {
        Window::Tumble { size_ms } => {
            let start = ts.div_euclid(size_ms) * size_ms;
            vec![(start, start + size_ms)]
        }
        Window::Hop { size_ms, slide_ms } => {
            let mut out = Vec::new();
            let mut k = (ts - size_ms).div_euclid(slide_ms);
            while k * slide_ms <= ts {
                let start = k * slide_ms;
                if start <= ts && ts < start + size_ms {
                    out.push((start, start + size_ms));
                }
                k += 1;
            }
            out
        }
        Window::Cumulate { step_ms, size_ms } => {
            let base = ts.div_euclid(size_ms) * size_ms;
            (1..=size_ms / step_ms)
                .map(|j| (base, base + j * step_ms))
                .filter(|&(_, end)| ts < end)
                .collect()
        }
        Window::Session { .. } | Window::Count { .. } => unreachable!(),
    }
}

/// The reference: replays `batches` in order with the source's watermark rule, returns the
/// output rows and the late events.
pub fn reference(spec: Window, batches: &[Vec<Event>], delay: i64) -> (Vec<Row>, Vec<Event>) {
    let mut out = Vec::new();
    let mut late = Vec::new();
    let mut watermark: Option<i64> = None;
    let mut max_ts: Option<i64> = None;
    let fired = |end: i64, wm: Option<i64>| wm.is_some_and(|w| end - 1 <= w);
    // Time windows: (start, end, key) -> values.
    let mut open: OpenWindows = BTreeMap::new();
    // Sessions: key -> [(start, end, values)].
    let mut sessions: Sessions = BTreeMap::new();
    // Count windows: key -> values.
    let mut counting: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();

    let advance =
        |wm: Option<i64>, open: &mut OpenWindows, sessions: &mut Sessions, out: &mut Vec<Row>| {
            open.retain(|&(s, e, k), values| {
                if fired(e, wm) {
                    out.push((Some((s, e)), k, aggregate(values)));
                    false
                } else {
                    true
                }
            });
            for (&k, list) in sessions.iter_mut() {
                list.retain(|(s, e, values)| {
                    if fired(*e, wm) {
                        out.push((Some((*s, *e)), k, aggregate(values)));
                        false
                    } else {
                        true
                    }
                });
            }
        };

    for batch in batches {
        for e in batch {
            match spec {
                Window::Session { gap_ms } => {
                    let list = sessions.entry(e.key).or_default();
                    let (mut start, mut end) = (e.ts, e.ts + gap_ms);
                    let touching: Vec<usize> = (0..list.len())
                        .filter(|&i| list[i].0 <= end && list[i].1 >= start)
                        .collect();
                    if touching.is_empty() && fired(end, watermark) {
                        late.push(*e);
                        continue;
                    }
                    let mut values = vec![e.v];
                    for &i in touching.iter().rev() {
                        let (s, en, vs) = list.remove(i);
                        start = start.min(s);
                        end = end.max(en);
                        values.extend(vs);
                    }
                    list.push((start, end, values));
                }
                Window::Count { size } => {
                    let values = counting.entry(e.key).or_default();
                    values.push(e.v);
                    if values.len() == size {
                        out.push((None, e.key, aggregate(values)));
                        values.clear();
                    }
                }
                spec => {
                    let windows = windows_of(spec, e.ts);
                    if windows.is_empty() {
                        // Between hopping windows whose slide exceeds their size.
                        continue;
                    }
                    if windows.iter().all(|&(_, end)| fired(end, watermark)) {
                        late.push(*e);
                        continue;
                    }
                    for (s, end) in windows {
                        if !fired(end, watermark) {
                            open.entry((s, end, e.key)).or_default().push(e.v);
                        }
                    }
                }
            }
        }
        if let Some(batch_max) = batch.iter().map(|e| e.ts).max() {
            max_ts = Some(max_ts.map_or(batch_max, |m| m.max(batch_max)));
            let candidate = max_ts.unwrap() - delay;
            if watermark.is_none_or(|w| candidate > w) {
                watermark = Some(candidate);
                advance(watermark, &mut open, &mut sessions, &mut out);
            }
        }
    }
    advance(Some(i64::MAX), &mut open, &mut sessions, &mut out);
    out.sort();
    late.sort();
    (out, late)
}

/// Runs the pipeline on Weir; returns sorted output rows, sorted side-output rows (if
/// `side_output`) and the late-row counters (dropped, side output).
pub fn run_weir(
    spec: Window,
    splits: &[Vec<Vec<Event>>],
    delay: i64,
    shards: usize,
    side_output: bool,
) -> (Vec<Row>, Vec<Event>, u64, u64) {
    let batches: Vec<Vec<arrow::record_batch::RecordBatch>> = splits
        .iter()
        .map(|split| split.iter().map(|b| super::batch_of(b)).collect())
        .collect();
    let source = MemorySource::new(event_schema(), batches).unwrap();
    let sink = CollectSink::new();
    let late_sink = CollectSink::new();
    let mut windowed = Pipeline::new("reference")
        .source(source)
        .parallelism(splits.len())
        .watermark("ts", Duration::from_millis(delay as u64))
        .key_by(["k"])
        .window(spec);
    if side_output {
        windowed = windowed.late_rows(late_sink.clone());
    }
    let result = windowed
        .aggregate([
            count_all().alias("c"),
            count(col("v")).alias("cv"),
            sum(col("v")).alias("s"),
            min(col("v")).alias("mn"),
            max(col("v")).alias("mx"),
            count_distinct(col("v")).alias("d"),
        ])
        .sink(sink.clone())
        .run(RunOptions::default().shards(shards).channel_capacity(4))
        .expect("job runs");
    let rows = rows_of(&sink);
    let mut late = events_of(&late_sink.batches());
    late.sort();
    let metrics = &result.metrics;
    (
        rows,
        late,
        metrics.total(names::LATE_ROWS_DROPPED),
        metrics.total(names::LATE_ROWS_SIDE_OUTPUT),
    )
}

/// The sorted rows a window job wrote to `sink` (columns named as in [`run_weir`]).
pub fn rows_of(sink: &CollectSink) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(batch) = sink.concat() {
        let has_bounds = batch.column_by_name("window_start").is_some();
        let starts = has_bounds.then(|| column_i64(&batch, "window_start"));
        let ends = has_bounds.then(|| column_i64(&batch, "window_end"));
        let keys = column_i64(&batch, "k");
        let cols: Vec<Vec<Option<i64>>> = ["c", "cv", "s", "mn", "mx", "d"]
            .iter()
            .map(|c| column_i64(&batch, c))
            .collect();
        for i in 0..batch.num_rows() {
            let bounds = starts
                .as_ref()
                .map(|s| (s[i].unwrap(), ends.as_ref().unwrap()[i].unwrap()));
            let values = std::array::from_fn(|j| cols[j][i]);
            rows.push((bounds, keys[i].unwrap(), values));
        }
    }
    rows.sort();
    rows
}

pub fn events(max_len: usize, disorder: i64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        (
            0i64..5,
            0i64..60,
            -disorder..=0,
            prop::option::weighted(0.9, -50i64..50),
        ),
        0..max_len,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (key, jitter, back, v))| Event {
                key,
                ts: 1_000 + i as i64 * 7 + jitter % 7 + back,
                v,
            })
            .collect()
    })
}

pub fn time_window() -> impl Strategy<Value = Window> {
    prop_oneof![
        (1i64..80).prop_map(|size| Window::Tumble { size_ms: size * 5 }),
        (1i64..20, 1i64..20).prop_map(|(size, slide)| Window::Hop {
            size_ms: size * 10,
            slide_ms: slide * 5
        }),
        (1i64..10, 1i64..6).prop_map(|(step, n)| Window::Cumulate {
            step_ms: step * 10,
            size_ms: step * 10 * n
        }),
        (1i64..60).prop_map(|gap| Window::Session { gap_ms: gap * 3 }),
    ]
}

pub fn split_into(events: &[Event], splits: usize, sizes: &[usize]) -> Vec<Vec<Vec<Event>>> {
    (0..splits)
        .map(|s| {
            let mine: Vec<Event> = events
                .iter()
                .enumerate()
                .filter(|(i, _)| i % splits == s)
                .map(|(_, e)| *e)
                .collect();
            batches_of(&mine, sizes)
                .iter()
                .map(|b| events_of(std::slice::from_ref(b)))
                .collect()
        })
        .collect()
}
