//! Criterion micro-benchmarks of the hottest per-row code: decoding a chunk of CSV and JSON
//! lines (fast path and arrow's general decoders), and interning the keys of a batch into a
//! group index (the window and updating aggregations' per-row step).
//!
//! ```text
//! cargo bench -p weir-benches --bench micro
//! cargo bench -p weir-benches --bench micro -- csv      # one group
//! ```

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::connectors::format::csv::{CsvDecoder, CsvOptions};
use weir::connectors::format::json::JsonDecoder;
use weir::connectors::format::LineDecoder;
use weir::operators::group_index::KeyEncoder;

const ROWS: usize = 4096;

fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("extra", DataType::Utf8, true),
    ]))
}

/// Lines shaped like the peers' bid file: (csv, json lines).
fn bid_lines() -> (String, String) {
    let (mut csv, mut json) = (String::new(), String::new());
    for i in 0..ROWS as u64 {
        let (auction, bidder, price) =
            (1000 + i / 10, 1000 + i * 7919 % 100_000, 1 + i * 31 % 5000);
        let url = format!(
            "https://www.nexmark.com/abc/item.htm?query=1&channel_id={}",
            i % 4
        );
        let time = format!(
            "2024-01-01 00:{:02}:{:02}.{:03}",
            i / 60_000 % 60,
            i / 1000 % 60,
            i % 1000
        );
        let extra = "x".repeat((i % 16) as usize);
        csv.push_str(&format!(
            "{auction},{bidder},{price},Apple,{url},{time},{extra}\n"
        ));
        json.push_str(&format!(
            r#"{{"auction":{auction},"bidder":{bidder},"price":{price},"channel":"Apple","url":"{url}","date_time":"{time}","extra":"{extra}"}}"#
        ));
        json.push('\n');
    }
    (csv, json)
}

fn decode(c: &mut Criterion) {
    let (csv, json) = bid_lines();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(ROWS as u64));
    let mut csv_decoder = CsvDecoder::new(bid_schema(), CsvOptions::default()).expect("schema");
    group.bench_function("csv fast path", |b| {
        b.iter(|| csv_decoder.decode(csv.as_bytes()).expect("decodes"))
    });
    // A quote character sends a chunk to arrow-csv's decoder.
    let quoted = csv.replacen("Apple", "\"Apple\"", 1);
    group.bench_function("csv arrow-csv", |b| {
        b.iter(|| csv_decoder.decode(quoted.as_bytes()).expect("decodes"))
    });
    let mut json_decoder = JsonDecoder::new(bid_schema());
    group.bench_function("json fast path", |b| {
        b.iter(|| json_decoder.decode(json.as_bytes()).expect("decodes"))
    });
    // An escape sends a chunk to arrow-json's decoder.
    let escaped = json.replacen("Apple", "App\\u006ce", 1);
    group.bench_function("json arrow-json", |b| {
        b.iter(|| json_decoder.decode(escaped.as_bytes()).expect("decodes"))
    });
    group.finish();
}

fn intern_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("group index");
    group.throughput(Throughput::Elements(ROWS as u64));
    let encoder =
        KeyEncoder::new(&[Arc::new(Field::new("auction", DataType::Int64, true))]).expect("key");
    for distinct in [100u64, 10_000] {
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(
            (0..ROWS as u64).map(|i| (i * 7919 % distinct) as i64),
        ));
        group.bench_with_input(BenchmarkId::new("intern", distinct), &keys, |b, keys| {
            let mut index = encoder.group_index(distinct as usize);
            let mut ids = Vec::with_capacity(ROWS);
            b.iter(|| {
                let rows = encoder
                    .encode(std::slice::from_ref(keys), ROWS)
                    .expect("encodes");
                ids.clear();
                index.intern(&rows, &mut ids);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, intern_keys);
criterion_main!(benches);
