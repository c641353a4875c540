//! Nexmark queries in Flink SQL (q0, q1, q2, q11 as a SESSION TVF, q14, q15, q16, q17, q18, q19,
//! q21, q22) run
//! over the `nexmark` source and over the same bids written to a JSON file, and their rows
//! equal a reference computed here from the bids. Updating queries (q15-q19) are compared by
//! the final state their changelog describes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use weir::engine::changelog::{kind_at, row_kinds};
use weir::engine::runtime;
use weir::prelude::*;
use weir::sql::{Action, Session};

const EVENTS: u64 = 20_000;

/// Flink's nexmark DDL (as in the nexmark-flink benchmark), at 1000 events per second of
/// event time, and the `bid` view.
fn nexmark_source() -> String {
    format!(
        "{}
        CREATE VIEW bid AS
        SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url, `dateTime`, bid.extra
        FROM datagen WHERE event_type = 2;",
        common::nexmark_table(&format!(
            "'events.num' = '{EVENTS}', 'first-event.rate' = '1000'"
        ))
    )
}

fn file_source(path: &str) -> String {
    format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
            `dateTime` TIMESTAMP(3), extra STRING,
            WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json');"
    )
}

/// q22's row: auction, bidder and three URL directories.
type Directories = (i64, i64, Option<String>, Option<String>, Option<String>);

/// One bid.
#[derive(Debug, Clone, PartialEq)]
struct Bid {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: String,
    url: String,
    time: i64,
    extra: String,
}

/// Runs `setup` + `query` at `shards`; returns the collected batches.
fn run(setup: &str, query: &str, shards: usize) -> Vec<RecordBatch> {
    let sink = CollectSink::new();
    let mut session = Session::new();
    let actions = session
        .execute(&format!("{setup}\n{query}"), &|_| Arc::new(sink.clone()))
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let [Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    runtime::run(&job.graph, RunOptions::default().shards(shards)).expect("job runs");
    sink.batches()
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = cast(batch.column_by_name(name).expect(name), &DataType::Int64).unwrap();
    column.as_primitive::<Int64Type>().values().to_vec()
}

fn f64s(batch: &RecordBatch, name: &str) -> Vec<f64> {
    let column = cast(batch.column_by_name(name).expect(name), &DataType::Float64).unwrap();
    column.as_primitive::<Float64Type>().values().to_vec()
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = cast(batch.column_by_name(name).expect(name), &DataType::Utf8).unwrap();
    let column = column.as_string::<i32>();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_string()))
        .collect()
}

fn bids_of(batches: &[RecordBatch]) -> Vec<Bid> {
    let mut bids = Vec::new();
    for b in batches {
        let (auction, bidder, price) = (i64s(b, "auction"), i64s(b, "bidder"), i64s(b, "price"));
        let (channel, url, extra) = (
            strings(b, "channel"),
            strings(b, "url"),
            strings(b, "extra"),
        );
        let time = i64s(b, "dateTime");
        for i in 0..b.num_rows() {
            bids.push(Bid {
                auction: auction[i],
                bidder: bidder[i],
                price: price[i],
                channel: channel[i].clone().unwrap_or_default(),
                url: url[i].clone().unwrap_or_default(),
                time: time[i],
                extra: extra[i].clone().unwrap_or_default(),
            });
        }
    }
    bids.sort_by_key(|b| (b.time, b.auction, b.bidder, b.price));
    bids
}

/// The final rows a changelog describes: key columns -> value columns.
fn final_state(
    batches: &[RecordBatch],
    keys: &[&str],
    values: &[&str],
) -> BTreeMap<Vec<String>, Vec<String>> {
    let mut state = BTreeMap::new();
    for b in batches {
        let ops: Vec<Option<String>> = (0..b.num_rows())
            .map(|i| Some(kind_at(row_kinds(b), i).short_string().to_string()))
            .collect();
        let keys: Vec<Vec<Option<String>>> = keys.iter().map(|k| strings(b, k)).collect();
        let values: Vec<Vec<Option<String>>> = values.iter().map(|v| strings(b, v)).collect();
        for i in 0..b.num_rows() {
            let key: Vec<String> = keys
                .iter()
                .map(|k| k[i].clone().unwrap_or_default())
                .collect();
            match ops[i].as_deref() {
                Some("+I") | Some("+U") => {
                    let value = values
                        .iter()
                        .map(|v| v[i].clone().unwrap_or_default())
                        .collect();
                    state.insert(key, value);
                }
                Some("-U") | Some("-D") => {
                    state.remove(&key);
                }
                other => panic!("unexpected op {other:?}"),
            }
        }
    }
    state
}

fn day(ms: i64) -> String {
    // Days since 2024-01-01 (the generator's base time) are enough for these short runs.
    let base = 1_704_067_200_000i64;
    assert!(
        ms >= base && ms < base + 86_400_000,
        "bids within the first day"
    );
    "2024-01-01".to_string()
}

fn split_index(url: &str, i: usize) -> Option<String> {
    url.split('/').nth(i).map(str::to_string)
}

#[test]
fn nexmark_queries_match_a_reference_on_both_sources() {
    let generated = run(&nexmark_source(), "SELECT * FROM bid;", 2);
    let bids = bids_of(&generated);
    assert!(bids.len() > 15_000, "{} bids", bids.len());
    // The same bids in a JSON file.
    let dir = std::env::temp_dir().join(format!("weir-nexmark-sql-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = std::fs::File::create(dir.join("bids.json")).unwrap();
    for b in &bids {
        let ts = (b.time - 1_704_067_200_000) as f64 / 1000.0;
        let (secs, ms) = (ts.trunc() as i64, b.time % 1000);
        let time = format!(
            "2024-01-01 {:02}:{:02}:{:02}.{ms:03}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        writeln!(
            file,
            r#"{{"auction":{},"bidder":{},"price":{},"channel":"{}","url":"{}","dateTime":"{time}","extra":"{}"}}"#,
            b.auction, b.bidder, b.price, b.channel, b.url, b.extra
        )
        .unwrap();
    }
    drop(file);
    let sources = [nexmark_source(), file_source(&dir.to_string_lossy())];
    for (setup, shards) in [
        (&sources[0], 1),
        (&sources[0], 2),
        (&sources[1], 2),
        (&sources[1], 4),
    ] {
        check_queries(setup, shards, &bids);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_queries(setup: &str, shards: usize, bids: &[Bid]) {
    let at = format!(
        "{} at {shards} shards",
        if setup.contains("'nexmark'") {
            "nexmark"
        } else {
            "file"
        }
    );

    // q0: pass-through.
    let q0 = bids_of(&run(
        setup,
        "SELECT auction, bidder, price, channel, url, `dateTime`, extra FROM bid;",
        shards,
    ));
    assert_eq!(q0, bids, "q0 {at}");

    // q1: currency conversion.
    let out = run(
        setup,
        "SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid;",
        shards,
    );
    let mut got: Vec<(i64, i64, u64)> = out
        .iter()
        .flat_map(|b| {
            let (a, r, p) = (i64s(b, "auction"), i64s(b, "bidder"), f64s(b, "price"));
            (0..b.num_rows())
                .map(move |i| (a[i], r[i], p[i].to_bits()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<(i64, i64, u64)> = bids
        .iter()
        .map(|b| (b.auction, b.bidder, (0.908 * b.price as f64).to_bits()))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "q1 {at}");

    // q2: selection.
    let out = run(
        setup,
        "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;",
        shards,
    );
    let mut got: Vec<(i64, i64)> = out
        .iter()
        .flat_map(|b| i64s(b, "auction").into_iter().zip(i64s(b, "price")))
        .collect();
    let mut expected: Vec<(i64, i64)> = bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| (b.auction, b.price))
        .collect();
    got.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "q2 {at}");

    // q11: user sessions (Flink's group-window SESSION written as the SESSION TVF).
    let out = run(
        setup,
        "SELECT bidder, COUNT(*) AS bid_count, window_start AS starttime, window_end AS endtime
         FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
         GROUP BY bidder, window_start, window_end;",
        shards,
    );
    let mut got: Vec<(i64, i64, i64, i64)> = out
        .iter()
        .flat_map(|b| {
            let (r, c, s, e) = (
                i64s(b, "bidder"),
                i64s(b, "bid_count"),
                i64s(b, "starttime"),
                i64s(b, "endtime"),
            );
            (0..b.num_rows())
                .map(move |i| (r[i], s[i], e[i], c[i]))
                .collect::<Vec<_>>()
        })
        .collect();
    got.sort();
    let mut by_bidder: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        by_bidder.entry(b.bidder).or_default().push(b.time);
    }
    let mut expected = Vec::new();
    for (bidder, mut times) in by_bidder {
        times.sort();
        let (mut start, mut last, mut count) = (times[0], times[0], 0);
        for t in times {
            if t - last >= 10_000 {
                expected.push((bidder, start, last + 10_000, count));
                start = t;
                count = 0;
            }
            last = t;
            count += 1;
        }
        expected.push((bidder, start, last + 10_000, count));
    }
    expected.sort();
    assert_eq!(got, expected, "q11 {at}");

    // q14: filter, CASE on the hour, a UDF (count_char) written with built-ins.
    let out = run(
        setup,
        "SELECT auction, bidder, 0.908 * price AS price,
                CASE WHEN HOUR(`dateTime`) >= 8 AND HOUR(`dateTime`) <= 18 THEN 'dayTime'
                     WHEN HOUR(`dateTime`) <= 6 OR HOUR(`dateTime`) >= 20 THEN 'nightTime'
                     ELSE 'otherTime' END AS bidTimeType,
                `dateTime`, extra,
                CHAR_LENGTH(extra) - CHAR_LENGTH(REPLACE(extra, 'c', '')) AS c_counts
         FROM bid
         WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;",
        shards,
    );
    let mut got: Vec<(i64, String, i64)> = out
        .iter()
        .flat_map(|b| {
            let (a, kind, c) = (
                i64s(b, "auction"),
                strings(b, "bidTimeType"),
                i64s(b, "c_counts"),
            );
            (0..b.num_rows())
                .map(move |i| (a[i], kind[i].clone().unwrap(), c[i]))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<(i64, String, i64)> = bids
        .iter()
        .filter(|b| {
            let p = 0.908 * b.price as f64;
            p > 1_000_000.0 && p < 50_000_000.0
        })
        .map(|b| {
            (
                b.auction,
                "nightTime".to_string(),
                b.extra.matches('c').count() as i64,
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(
        got, expected,
        "q14 {at} (every bid is at 00:xx: night time)"
    );

    // q15: bidding statistics per day (updating).
    let out = run(
        setup,
        "SELECT DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`,
                COUNT(*) AS total_bids,
                COUNT(*) FILTER (WHERE price < 10000) AS rank1_bids,
                COUNT(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
                COUNT(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
                COUNT(DISTINCT bidder) AS total_bidders,
                COUNT(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders,
                COUNT(DISTINCT auction) AS total_auctions
         FROM bid
         GROUP BY DATE_FORMAT(`dateTime`, 'yyyy-MM-dd');",
        shards,
    );
    let state = final_state(
        &out,
        &["day"],
        &[
            "total_bids",
            "rank1_bids",
            "rank2_bids",
            "rank3_bids",
            "total_bidders",
            "rank1_bidders",
            "total_auctions",
        ],
    );
    let count = |f: &dyn Fn(&Bid) -> bool| bids.iter().filter(|b| f(b)).count().to_string();
    let distinct = |f: &dyn Fn(&Bid) -> bool, k: &dyn Fn(&Bid) -> i64| {
        bids.iter()
            .filter(|b| f(b))
            .map(k)
            .collect::<BTreeSet<_>>()
            .len()
            .to_string()
    };
    let expected = BTreeMap::from([(
        vec![day(bids[0].time)],
        vec![
            count(&|_| true),
            count(&|b| b.price < 10_000),
            count(&|b| (10_000..1_000_000).contains(&b.price)),
            count(&|b| b.price >= 1_000_000),
            distinct(&|_| true, &|b| b.bidder),
            distinct(&|b| b.price < 10_000, &|b| b.bidder),
            distinct(&|_| true, &|b| b.auction),
        ],
    )]);
    assert_eq!(state, expected, "q15 {at}");

    // q16: channel statistics per day (updating): one final row per channel.
    let out = run(
        setup,
        "SELECT channel, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`,
                MAX(DATE_FORMAT(`dateTime`, 'HH:mm')) AS `minute`,
                COUNT(*) AS total_bids, COUNT(DISTINCT bidder) AS total_bidders
         FROM bid
         GROUP BY channel, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd');",
        shards,
    );
    let state = final_state(&out, &["channel", "day"], &["total_bids"]);
    let mut expected: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for b in bids {
        let entry = expected
            .entry(vec![b.channel.clone(), day(b.time)])
            .or_insert_with(|| vec!["0".into()]);
        entry[0] = (entry[0].parse::<u64>().unwrap() + 1).to_string();
    }
    assert_eq!(state, expected, "q16 {at}");

    // q17: auction statistics per day (updating).
    let out = run(
        setup,
        "SELECT auction, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`,
                COUNT(*) AS total_bids, MIN(price) AS min_price, MAX(price) AS max_price,
                SUM(price) AS sum_price
         FROM bid
         GROUP BY auction, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd');",
        shards,
    );
    let state = final_state(
        &out,
        &["auction", "day"],
        &["total_bids", "min_price", "max_price", "sum_price"],
    );
    let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        groups.entry(b.auction).or_default().push(b.price);
    }
    let expected: BTreeMap<Vec<String>, Vec<String>> = groups
        .into_iter()
        .map(|(auction, prices)| {
            (
                vec![auction.to_string(), day(bids[0].time)],
                vec![
                    prices.len().to_string(),
                    prices.iter().min().unwrap().to_string(),
                    prices.iter().max().unwrap().to_string(),
                    prices.iter().sum::<i64>().to_string(),
                ],
            )
        })
        .collect();
    assert_eq!(state, expected, "q17 {at}");

    // q18: the last bid per bidder and auction (keep-last deduplication on dateTime).
    let out = run(
        setup,
        "SELECT auction, bidder, price, `dateTime` FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY `dateTime` DESC) AS rank_number FROM bid) WHERE rank_number <= 1;",
        shards,
    );
    let state = final_state(&out, &["bidder", "auction"], &["dateTime"]);
    let mut latest: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for b in bids {
        let key = vec![b.bidder.to_string(), b.auction.to_string()];
        let time = latest.entry(key).or_insert(b.time);
        *time = (*time).max(b.time);
    }
    // As the sink's text of a TIMESTAMP(3).
    let text = |ms: i64| {
        let array = arrow::array::TimestampMillisecondArray::from(vec![ms]);
        let text = cast(&array, &DataType::Utf8).unwrap();
        text.as_string::<i32>().value(0).to_string()
    };
    let expected: BTreeMap<Vec<String>, Vec<String>> = latest
        .into_iter()
        .map(|(key, ms)| (key, vec![text(ms)]))
        .collect();
    assert_eq!(state, expected, "q18 {at}");

    // q19: the ten highest bids per auction, by rank (equal prices may swap bids, not prices).
    let out = run(
        setup,
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid) WHERE rank_number <= 10;",
        shards,
    );
    let state = final_state(&out, &["auction", "rank_number"], &["price"]);
    let mut prices: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in bids {
        prices.entry(b.auction).or_default().push(b.price);
    }
    let expected: BTreeMap<Vec<String>, Vec<String>> = prices
        .into_iter()
        .flat_map(|(auction, mut prices)| {
            prices.sort_by(|a, b| b.cmp(a));
            prices
                .into_iter()
                .take(10)
                .enumerate()
                .map(move |(rank, price)| {
                    (
                        vec![auction.to_string(), (rank + 1).to_string()],
                        vec![price.to_string()],
                    )
                })
        })
        .collect();
    assert_eq!(state, expected, "q19 {at}");

    // q22: URL directories.
    let out = run(
        setup,
        "SELECT auction, bidder, price, channel,
                SPLIT_INDEX(url, '/', 3) AS dir1, SPLIT_INDEX(url, '/', 4) AS dir2, SPLIT_INDEX(url, '/', 5) AS dir3
         FROM bid;",
        shards,
    );
    let mut got: Vec<Directories> = out
        .iter()
        .flat_map(|b| {
            let (a, r) = (i64s(b, "auction"), i64s(b, "bidder"));
            let (d1, d2, d3) = (strings(b, "dir1"), strings(b, "dir2"), strings(b, "dir3"));
            (0..b.num_rows())
                .map(move |i| (a[i], r[i], d1[i].clone(), d2[i].clone(), d3[i].clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<_> = bids
        .iter()
        .map(|b| {
            (
                b.auction,
                b.bidder,
                split_index(&b.url, 3),
                split_index(&b.url, 4),
                split_index(&b.url, 5),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "q22 {at}");

    // q21: a channel id from the channel's name, or from the URL.
    let out = run(setup, &common::bench_query("q21.sql"), shards);
    let mut got: Vec<(i64, i64, Option<String>)> = out
        .iter()
        .flat_map(|b| {
            let (a, r, id) = (
                i64s(b, "auction"),
                i64s(b, "bidder"),
                strings(b, "channel_id"),
            );
            (0..b.num_rows())
                .map(move |i| (a[i], r[i], id[i].clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<_> = bids
        .iter()
        .filter_map(|b| {
            let named = ["apple", "google", "facebook", "baidu"]
                .iter()
                .position(|c| b.channel.eq_ignore_ascii_case(c));
            let from_url = b
                .url
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("channel_id="))
                .map(str::to_string);
            let id = named.map(|i| i.to_string()).or(from_url)?;
            Some((b.auction, b.bidder, Some(id)))
        })
        .collect();
    got.sort();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "q21 {at}");
}

/// q10 (adapted: no partition-commit options, see its file): every bid lands in the CSV file
/// of its `dt=day/hm=minute` directory, once.
#[test]
fn q10_writes_every_bid_into_its_minute_partition() {
    let dir = std::env::temp_dir().join(format!("weir-nexmark-q10-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/nexmark/queries/q10.sql"
    ))
    .unwrap()
    .replace("file:///tmp/weir-nexmark-q10/bid/", &dir.to_string_lossy());
    // 100 events per second of event time: the bids span four minutes.
    let setup =
        nexmark_source().replace("'first-event.rate' = '1000'", "'first-event.rate' = '100'");
    let bids = bids_of(&run(&setup, "SELECT * FROM bid;", 2));
    let mut session = Session::new();
    session
        .execute(&format!("{setup}\n{text}"), &|_| {
            Arc::new(CollectSink::new())
        })
        .unwrap();
    let job = session.take_insert_job().expect("an INSERT job");
    runtime::run(&job.graph, RunOptions::default().shards(2)).expect("job runs");
    // (dt, hm, auction, bidder, price, extra) of every written line.
    let mut got = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap().flatten() {
            let file = entry.path();
            if file.is_dir() {
                stack.push(file);
                continue;
            }
            let part = |prefix: &str| {
                file.ancestors()
                    .filter_map(|p| p.file_name()?.to_str()?.strip_prefix(prefix))
                    .next()
                    .unwrap()
                    .to_string()
            };
            let (dt, hm) = (part("dt="), part("hm="));
            for line in std::fs::read_to_string(&file).unwrap().lines() {
                let f: Vec<&str> = line.split(',').collect();
                got.push((
                    dt.clone(),
                    hm.clone(),
                    f[0].parse::<i64>().unwrap(),
                    f[1].parse::<i64>().unwrap(),
                    f[2].parse::<i64>().unwrap(),
                    f[4].to_string(),
                ));
            }
        }
    }
    let mut expected: Vec<_> = bids
        .iter()
        .map(|b| {
            // The generator starts at 2024-01-01 00:00:00 UTC; the bids span minutes.
            let since_start = b.time - 1_704_067_200_000;
            assert!((0..3_600_000).contains(&since_start));
            (
                "2024-01-01".to_string(),
                format!("00:{:02}", since_start / 60_000),
                b.auction,
                b.bidder,
                b.price,
                b.extra.clone(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert!(expected.len() > 15_000);
    assert!(
        expected.last().unwrap().1.as_str() >= "00:03",
        "several minutes"
    );
    assert_eq!(got, expected, "q10: every bid once, in its partition");
    let _ = std::fs::remove_dir_all(&dir);
}

/// q12: processing-time windows. Bids are counted per bidder in 10 s windows of the wall
/// clock: every bid once, in a window that contains the moment the job ran (not the bids'
/// event time, which is in 2024).
#[test]
fn q12_counts_bids_in_windows_of_the_wall_clock() {
    let setup = nexmark_source();
    let bids = bids_of(&run(&setup, "SELECT * FROM bid;", 2));
    let query = common::bench_query("q12.sql");
    let view = "CREATE VIEW B AS SELECT *, PROCTIME() as p_time FROM bid;";
    assert!(std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/nexmark/queries/q12.sql"
    ))
    .unwrap()
    .contains(view));
    let started = weir::engine::time::now_ms();
    let out = run(&format!("{setup}\n{view}"), &query, 2);
    let ended = weir::engine::time::now_ms();
    let mut per_bidder: BTreeMap<i64, i64> = BTreeMap::new();
    for b in &out {
        let (bidder, count) = (i64s(b, "bidder"), i64s(b, "bid_count"));
        let (start, end) = (i64s(b, "starttime"), i64s(b, "endtime"));
        for i in 0..b.num_rows() {
            *per_bidder.entry(bidder[i]).or_default() += count[i];
            assert_eq!(end[i] - start[i], 10_000, "10 s windows");
            assert_eq!(start[i] % 10_000, 0, "aligned to the epoch");
            assert!(
                start[i] <= ended && end[i] > started - 10_000,
                "window [{}, {}) is around the run [{started}, {ended}]",
                start[i],
                end[i]
            );
        }
    }
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for b in &bids {
        *expected.entry(b.bidder).or_default() += 1;
    }
    assert_eq!(per_bidder, expected, "every bid counted once");
}

/// q13: every bid joined at processing time with the side input's row of `auction mod
/// 10000` (a bounded table read before the job); keys not in the table drop their bids.
#[test]
fn q13_enriches_bids_from_a_bounded_side_input() {
    let dir = std::env::temp_dir().join(format!("weir-nexmark-q13-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let side = dir.join("side_input.csv");
    // Even keys only: bids of odd auctions find no row.
    let text: String = (0..10_000)
        .step_by(2)
        .map(|k| format!("{k},value-{k}\n"))
        .collect();
    std::fs::write(&side, text).unwrap();
    let query = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/nexmark/queries/q13.sql"
    ))
    .unwrap()
    .replace("${SIDE_INPUT}", &side.to_string_lossy())
    .replace("INSERT INTO nexmark_q13\n", "");
    let setup = nexmark_source();
    let bids = bids_of(&run(&setup, "SELECT * FROM bid;", 2));
    for shards in [1, 2] {
        let out = run(&setup, &query, shards);
        let mut got: Vec<(i64, i64, Option<String>)> = out
            .iter()
            .flat_map(|b| {
                let (a, p, v) = (i64s(b, "auction"), i64s(b, "price"), strings(b, "value"));
                (0..b.num_rows())
                    .map(move |i| (a[i], p[i], v[i].clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut expected: Vec<_> = bids
            .iter()
            .filter(|b| b.auction % 10_000 % 2 == 0)
            .map(|b| {
                (
                    b.auction,
                    b.price,
                    Some(format!("value-{}", b.auction % 10_000)),
                )
            })
            .collect();
        got.sort();
        expected.sort();
        assert!(expected.len() > 1_000);
        assert_eq!(got, expected, "q13 at {shards} shards");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
