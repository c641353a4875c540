//! Nexmark's join queries in Flink's text (q3, q4, q5, q7, q8, q9, q20) over the `nexmark` source, at 1, 2
//! and 4 shards, and over CSV files written from it, against a brute-force reference computed
//! here from the generated persons, auctions and bids.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use weir::engine::runtime;
use weir::prelude::*;
use weir::sql::{Action, Session};

const EVENTS: u64 = 30_000;
const WINDOW_MS: i64 = 10_000;

/// Flink's nexmark DDL and views, at 1000 events per second of event time (30 s).
fn setup() -> String {
    format!(
        "{}
        CREATE VIEW person AS SELECT person.id, person.name, person.emailAddress, person.creditCard,
            person.city, person.state, `dateTime`, person.extra FROM datagen WHERE event_type = 0;
        CREATE VIEW auction AS SELECT auction.id, auction.itemName, auction.description,
            auction.initialBid, auction.reserve, `dateTime`, auction.expires, auction.seller,
            auction.category, auction.extra FROM datagen WHERE event_type = 1;
        CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url,
            `dateTime`, bid.extra FROM datagen WHERE event_type = 2;",
        common::nexmark_table(&format!(
            "'events.num' = '{EVENTS}', 'first-event.rate' = '1000'"
        ))
    )
}

/// The columns of Flink's Nexmark views, as file tables.
const FILE_COLUMNS: [(&str, &str); 3] = [
    ("person", "id BIGINT, name STRING, emailAddress STRING, creditCard STRING, city STRING, state STRING, `dateTime` TIMESTAMP(3), extra STRING"),
    ("auction", "id BIGINT, itemName STRING, description STRING, initialBid BIGINT, reserve BIGINT, `dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING"),
    ("bid", "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, `dateTime` TIMESTAMP(3), extra STRING"),
];

/// Writes the generator's people, auctions and bids to CSV files under `dir` (one file each,
/// in event-time order) and returns DDL that reads them back as tables named like Flink's
/// views, with the generator's watermark.
fn file_setup(dir: &std::path::Path) -> String {
    let table = |name: &str, columns: &str, watermark: bool| {
        format!(
            "CREATE TABLE {name} ({columns}{}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');",
            if watermark { ", WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND" } else { "" },
            dir.join(name.trim_end_matches("_out")).display()
        )
    };
    let mut write = setup();
    write.push_str("\nEXECUTE STATEMENT SET BEGIN\n");
    let mut sinks = String::new();
    for (name, columns) in FILE_COLUMNS {
        sinks.push_str(&table(&format!("{name}_out"), columns, false));
        write.push_str(&format!("INSERT INTO {name}_out SELECT * FROM {name};\n"));
    }
    write.push_str("END;");
    let mut session = Session::new();
    session
        .execute(&format!("{sinks}\n{write}"), &|_| unreachable!("no SELECT"))
        .unwrap();
    let job = session.take_insert_job().unwrap();
    runtime::run(&job.graph, RunOptions::default().shards(1)).expect("files written");
    FILE_COLUMNS
        .iter()
        .map(|(name, columns)| table(name, columns, true))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run(sql: &str, shards: usize) -> Vec<RecordBatch> {
    run_over(&setup(), sql, shards)
}

/// Runs `sql` after the DDL `tables`.
fn run_over(tables: &str, sql: &str, shards: usize) -> Vec<RecordBatch> {
    let sink = CollectSink::new();
    let mut session = Session::new();
    let actions = session
        .execute(&format!("{tables}\n{sql}"), &|_| Arc::new(sink.clone()))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let [Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    runtime::run(&job.graph, RunOptions::default().shards(shards)).expect("job runs");
    sink.batches()
}

/// A value of any type as text (timestamps as ms since the epoch), NULL as `None`.
fn text(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(name).expect(name);
    let column = match column.data_type() {
        DataType::Timestamp(_, _) => cast(column, &DataType::Int64).unwrap(),
        _ => Arc::clone(column),
    };
    let column = cast(&column, &DataType::Utf8).unwrap();
    let column = column.as_string::<i32>();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_string()))
        .collect()
}

/// The rows of `batches` as text, in `columns` order, sorted (a multiset).
fn rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for batch in batches {
        let values: Vec<_> = columns.iter().map(|c| text(batch, c)).collect();
        for i in 0..batch.num_rows() {
            rows.push(values.iter().map(|v| v[i].clone()).collect());
        }
    }
    rows.sort();
    rows
}

/// The rows an updating result ends with, as text in `columns` order, sorted.
fn final_rows(batches: &[RecordBatch], columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    for batch in batches {
        let kinds = weir::engine::changelog::row_kinds(batch);
        let values: Vec<_> = columns.iter().map(|c| text(batch, c)).collect();
        for i in 0..batch.num_rows() {
            let row: Vec<_> = values.iter().map(|v| v[i].clone()).collect();
            if weir::engine::changelog::kind_at(kinds, i).is_accumulate() {
                rows.push(row);
            } else if let Some(at) = rows.iter().position(|r| *r == row) {
                rows.swap_remove(at);
            } else {
                panic!("{row:?} retracted but not present");
            }
        }
    }
    rows.sort();
    rows
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = cast(batch.column_by_name(name).expect(name), &DataType::Int64).unwrap();
    column.as_primitive::<Int64Type>().values().to_vec()
}

type Row = Vec<Option<String>>;

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn nexmark_join_queries_match_a_reference() {
    let people = run("SELECT id, name, city, state, `dateTime` FROM person;", 2);
    let auctions = run(
        "SELECT id, itemName, `dateTime`, seller, category, expires FROM auction;",
        2,
    );
    let bids = run("SELECT auction, bidder, price, `dateTime` FROM bid;", 2);
    let people = rows(&people, &["id", "name", "city", "state", "dateTime"]);
    let auctions = rows(
        &auctions,
        &[
            "id", "itemName", "dateTime", "seller", "category", "expires",
        ],
    );
    let bid_rows: Vec<Vec<i64>> = bids
        .iter()
        .flat_map(|b| {
            let cols: Vec<Vec<i64>> = ["auction", "bidder", "price", "dateTime"]
                .iter()
                .map(|c| i64s(b, c))
                .collect();
            (0..b.num_rows()).map(move |i| cols.iter().map(|c| c[i]).collect::<Vec<_>>())
        })
        .collect();
    assert!(people.len() > 500 && auctions.len() > 1_500 && bid_rows.len() > 25_000);
    let num = |v: &Option<String>| v.as_ref().unwrap().parse::<i64>().unwrap();

    // q3: category-10 auctions of sellers in OR, ID or CA.
    let mut q3: Vec<Row> = Vec::new();
    for a in auctions.iter().filter(|a| num(&a[4]) == 10) {
        for p in people.iter().filter(|p| p[0] == a[3]) {
            if ["OR", "ID", "CA"].contains(&p[3].as_deref().unwrap()) {
                q3.push(vec![p[1].clone(), p[2].clone(), p[3].clone(), a[0].clone()]);
            }
        }
    }
    q3.sort();
    assert!(!q3.is_empty());

    // q20: bids of category-10 auctions with the auction's item and time.
    let by_id: BTreeMap<i64, &Row> = auctions.iter().map(|a| (num(&a[0]), a)).collect();
    let mut q20: Vec<Row> = Vec::new();
    for b in &bid_rows {
        if let Some(a) = by_id.get(&b[0]).filter(|a| num(&a[4]) == 10) {
            q20.push(vec![
                s(b[0]),
                s(b[1]),
                s(b[2]),
                s(b[3]),
                a[1].clone(),
                a[2].clone(),
            ]);
        }
    }
    q20.sort();
    assert!(!q20.is_empty());

    // q7: bids with the highest price of a 10 s window, within that window's 10 s before its end.
    let mut max_price: BTreeMap<i64, i64> = BTreeMap::new();
    for b in &bid_rows {
        let end = b[3].div_euclid(WINDOW_MS) * WINDOW_MS + WINDOW_MS;
        let top = max_price.entry(end).or_insert(i64::MIN);
        *top = (*top).max(b[2]);
    }
    let mut q7: Vec<Row> = Vec::new();
    for b in &bid_rows {
        for (&end, &top) in &max_price {
            if b[2] == top && end - WINDOW_MS <= b[3] && b[3] <= end {
                q7.push(vec![s(b[0]), s(b[2]), s(b[1]), s(b[3])]);
            }
        }
    }
    q7.sort();
    assert!(!q7.is_empty());

    // q8: people who opened an auction in the 10 s window they registered in.
    let window = |t: &Option<String>| num(t).div_euclid(WINDOW_MS) * WINDOW_MS;
    let sellers: BTreeSet<(String, i64)> = auctions
        .iter()
        .map(|a| (a[3].clone().unwrap(), window(&a[2])))
        .collect();
    let mut q8: Vec<Row> = people
        .iter()
        .map(|p| (p[0].clone(), p[1].clone(), window(&p[4])))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|(id, _, w)| sellers.contains(&(id.clone().unwrap(), *w)))
        .map(|(id, name, w)| vec![id, name, s(w)])
        .collect();
    q8.sort();
    assert!(!q8.is_empty());

    // q9: per auction, the highest bid between its start and expiry (earliest on ties):
    // (auction, price, bid time).
    let mut best: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for a in &auctions {
        let (id, start, expires) = (num(&a[0]), num(&a[2]), num(&a[5]));
        for b in bid_rows
            .iter()
            .filter(|b| b[0] == id && start <= b[3] && b[3] <= expires)
        {
            let entry = best.entry(id).or_insert((b[2], b[3]));
            if (b[2], -b[3]) > (entry.0, -entry.1) {
                *entry = (b[2], b[3]);
            }
        }
    }
    let mut q9: Vec<Row> = best
        .iter()
        .map(|(id, (price, time))| vec![s(id), s(price), s(time)])
        .collect();
    q9.sort();
    assert!(q9.len() > 100);

    // q4: per category, the average (integer) of its auctions' winning bids.
    let mut winning: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for a in &auctions {
        let (id, start, expires) = (num(&a[0]), num(&a[2]), num(&a[5]));
        let best = bid_rows
            .iter()
            .filter(|b| b[0] == id && start <= b[3] && b[3] <= expires)
            .map(|b| b[2])
            .max();
        if let Some(best) = best {
            winning.entry(num(&a[4])).or_default().push(best);
        }
    }
    let mut q4: Vec<Row> = winning
        .iter()
        .map(|(category, prices)| {
            let average = prices.iter().sum::<i64>() / prices.len() as i64;
            vec![s(category), s(average)]
        })
        .collect();
    q4.sort();
    assert!(q4.len() > 3);

    // q5: per 10 s window sliding every 2 s, the auctions with the most bids.
    let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for b in &bid_rows {
        let last = b[3].div_euclid(2_000) * 2_000;
        for start in (last - 8_000..=last).step_by(2_000) {
            *counts.entry((start, b[0])).or_default() += 1;
        }
    }
    let mut top: BTreeMap<i64, i64> = BTreeMap::new();
    for (&(start, _), &n) in &counts {
        let max = top.entry(start).or_default();
        *max = (*max).max(n);
    }
    let mut q5: Vec<Row> = counts
        .iter()
        .filter(|((start, _), n)| top[start] == **n)
        .map(|((_, auction), n)| vec![s(auction), s(n)])
        .collect();
    q5.sort();
    assert!(q5.len() > 10);

    let dir = std::env::temp_dir().join(format!("weir-nexmark-files-{}", std::process::id()));
    let files = file_setup(&dir);
    // Over the generator at 1, 2 and 4 shards, and over files written from it at 2.
    let runs = [(setup(), 1), (setup(), 2), (setup(), 4), (files, 2)];
    for (tables, shards) in &runs {
        let shards = *shards;
        let over = if tables.contains("'filesystem'") {
            "files"
        } else {
            "nexmark"
        };
        let at = format!("over {over} at {shards} shards");
        let run = |sql: &str, shards| run_over(tables, sql, shards);
        let got = run(&common::bench_query("q5.sql"), shards);
        assert!(
            got.iter()
                .all(|b| weir::engine::changelog::row_kinds(b).is_none()),
            "q5 is append-only (a window join of window aggregations) {at}"
        );
        assert_eq!(rows(&got, &["auction", "num"]), q5, "q5 {at}");
        let got = run(&common::bench_query("q9.sql"), shards);
        assert_eq!(
            final_rows(&got, &["id", "price", "bid_dateTime"]),
            q9,
            "q9 {at}"
        );
        let got = run(&common::bench_query("q4.sql"), shards);
        assert_eq!(final_rows(&got, &["category", "EXPR$1"]), q4, "q4 {at}");
        let got = run(&common::bench_query("q3.sql"), shards);
        assert_eq!(rows(&got, &["name", "city", "state", "id"]), q3, "q3 {at}");
        let got = run(&common::bench_query("q20.sql"), shards);
        let columns = [
            "auction",
            "bidder",
            "price",
            "dateTime",
            "itemName",
            "dateTime0",
        ];
        assert_eq!(rows(&got, &columns), q20, "q20 {at}");
        let got = run(&common::bench_query("q7.sql"), shards);
        assert_eq!(
            rows(&got, &["auction", "price", "bidder", "dateTime"]),
            q7,
            "q7 {at}"
        );
        let got = run(&common::bench_query("q8.sql"), shards);
        assert_eq!(rows(&got, &["id", "name", "starttime"]), q8, "q8 {at}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
