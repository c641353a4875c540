//! OVER aggregations in SQL against a brute-force reference over random input with
//! out-of-order times, ties and NULLs, at 1, 2 and 4 shards: every row comes out once with
//! the aggregates of its frame, computed by sorting each partition's rows by time (arrival
//! order between equal times) and aggregating each frame from scratch.

mod common;

use common::reference::events;
use common::{query_result, Event};
use proptest::prelude::*;

type Row = Vec<Option<i64>>;

/// An OVER frame, as the reference reads it.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// `ROWS BETWEEN n PRECEDING` (`None`: unbounded).
    Rows(Option<usize>),
    /// `RANGE BETWEEN INTERVAL ms PRECEDING` (`None`: unbounded).
    Range(Option<i64>),
}

impl Frame {
    fn sql(self) -> String {
        match self {
            Frame::Rows(Some(n)) => format!("ROWS BETWEEN {n} PRECEDING AND CURRENT ROW"),
            Frame::Rows(None) => "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".into(),
            Frame::Range(Some(ms)) => {
                format!("RANGE BETWEEN INTERVAL '0.{ms:03}' SECOND PRECEDING AND CURRENT ROW")
            }
            Frame::Range(None) => "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW".into(),
        }
    }
}

/// Per row (by id): COUNT(*), SUM(v), MIN(v), MAX(v) over its frame; `partitioned` by key or
/// one partition.
fn reference(events: &[Event], frame: Frame, partitioned: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let keys: Vec<i64> = match partitioned {
        true => (0..5).collect(),
        false => vec![-1],
    };
    for key in keys {
        let mut mine: Vec<(usize, &Event)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| !partitioned || e.key == key)
            .collect();
        mine.sort_by_key(|(_, e)| e.ts);
        for (position, (id, e)) in mine.iter().enumerate() {
            let in_frame: Vec<Option<i64>> = mine
                .iter()
                .enumerate()
                .filter(|(other, (_, o))| match frame {
                    Frame::Rows(n) => {
                        *other <= position && n.is_none_or(|n| position - *other <= n)
                    }
                    Frame::Range(ms) => o.ts <= e.ts && ms.is_none_or(|ms| o.ts >= e.ts - ms),
                })
                .map(|(_, (_, o))| o.v)
                .collect();
            let values: Vec<i64> = in_frame.iter().flatten().copied().collect();
            rows.push(vec![
                Some(*id as i64),
                Some(in_frame.len() as i64),
                (!values.is_empty()).then(|| values.iter().sum()),
                values.iter().min().copied(),
                values.iter().max().copied(),
            ]);
        }
    }
    rows.sort();
    rows
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (0usize..4).prop_map(|n| Frame::Rows(Some(n))),
        Just(Frame::Rows(None)),
        prop::sample::select(vec![1i64, 10, 35, 200]).prop_map(|ms| Frame::Range(Some(ms))),
        Just(Frame::Range(None)),
    ]
}

fn query(frame: Frame, partitioned: bool) -> String {
    let partition = if partitioned { "PARTITION BY k " } else { "" };
    format!(
        "SELECT id, COUNT(*) OVER w AS c, SUM(v) OVER w AS s, MIN(v) OVER w AS lo, MAX(v) OVER w AS hi
         FROM t WINDOW w AS ({partition}ORDER BY ts {})",
        frame.sql()
    )
}

const COLUMNS: [&str; 5] = ["id", "c", "s", "lo", "hi"];

/// The same OVER aggregation through the DSL.
fn dsl(stream: weir::Stream, frame: Frame, partitioned: bool) -> weir::Stream {
    use weir::prelude::*;
    let frame = match frame {
        Frame::Rows(n) => OverFrame::Rows(n.map(|n| n as u64)),
        Frame::Range(ms) => OverFrame::Range(ms),
    };
    let aggregates = [
        count_all().alias("c"),
        sum(col("v")).alias("s"),
        min(col("v")).alias("lo"),
        max(col("v")).alias("hi"),
    ];
    match partitioned {
        true => stream.key_by(["k"]).over(frame, aggregates),
        false => stream.over(frame, aggregates),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn over_aggregations_match_the_reference(
        input in events(120, 40),
        frame in frame(),
        partitioned in any::<bool>(),
        case in 0usize..1_000_000,
    ) {
        let dir = std::env::temp_dir().join(format!("weir-over-{}-{case}", std::process::id()));
        let ddl = common::events_table(&dir, &input);
        let expected = reference(&input, frame, partitioned);
        for shards in [1, 2, 4] {
            prop_assert_eq!(
                query_result(&ddl, &query(frame, partitioned), &COLUMNS, shards),
                expected.clone(),
                "{:?} partitioned: {} at {} shards", frame, partitioned, shards
            );
            prop_assert_eq!(
                common::dsl_result(&input, |s| dsl(s, frame, partitioned), &COLUMNS, shards),
                expected.clone(),
                "DSL {:?} partitioned: {} at {} shards", frame, partitioned, shards
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The comparison can fail: RANGE peers share their values, ROWS do not.
#[test]
fn rows_and_range_frames_differ_on_ties() {
    let at = |ts, v| Event {
        key: 1,
        ts,
        v: Some(v),
    };
    let input = vec![at(1_000, 5), at(1_000, 7), at(1_001, 1)];
    let dir = std::env::temp_dir().join(format!("weir-over-ties-{}", std::process::id()));
    let ddl = common::events_table(&dir, &input);
    let range = query_result(&ddl, &query(Frame::Range(None), true), &COLUMNS, 2);
    assert_eq!(range, reference(&input, Frame::Range(None), true));
    assert_eq!(range[0], vec![Some(0), Some(2), Some(12), Some(5), Some(7)]);
    assert_ne!(range, reference(&input, Frame::Rows(None), true));
    let _ = std::fs::remove_dir_all(&dir);
}
