//! Helpers shared by the integration tests: building event batches and reading results.

#![allow(dead_code)]

pub mod reference;

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};

/// One test event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Event {
    pub key: i64,
    pub ts: i64,
    pub v: Option<i64>,
}

pub fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, true),
    ]))
}

pub fn batch_of(events: &[Event]) -> RecordBatch {
    RecordBatch::try_new(
        event_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.key))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                events.iter().map(|e| e.ts),
            )),
            Arc::new(Int64Array::from_iter(events.iter().map(|e| e.v))),
        ],
    )
    .unwrap()
}

/// Cuts `events` into batches of the given sizes (cycled).
pub fn batches_of(events: &[Event], sizes: &[usize]) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut rest = events;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.push(batch_of(&rest[..n]));
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// Reads events back from batches of [`event_schema`].
pub fn events_of(batches: &[RecordBatch]) -> Vec<Event> {
    let mut out = Vec::new();
    for b in batches {
        let k = b.column(0).as_primitive::<Int64Type>();
        let ts = b.column(1).as_primitive::<TimestampMillisecondType>();
        let v = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push(Event {
                key: k.value(i),
                ts: ts.value(i),
                v: v.is_valid(i).then(|| v.value(i)),
            });
        }
    }
    out
}

/// Column `name` of `batch` as optional i64 values (timestamps as milliseconds).
pub fn column_i64(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let array = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let array = arrow::compute::cast(array, &DataType::Int64).unwrap();
    let ints = array.as_primitive::<Int64Type>();
    (0..ints.len())
        .map(|i| ints.is_valid(i).then(|| ints.value(i)))
        .collect()
}

/// Runs `source` to its end at `shards` shards into a collecting sink; returns all rows (if
/// any) and the job's metrics.
pub fn read_all(
    source: std::sync::Arc<dyn weir::engine::source::SourceFactory>,
    shards: usize,
) -> Result<(Option<RecordBatch>, weir::engine::metrics::Metrics), weir::WeirError> {
    use weir::prelude::*;
    let sink = CollectSink::new();
    let result = Pipeline::new("read")
        .source_arc(source)
        .sink(sink.clone())
        .run(RunOptions::default().shards(shards))?;
    Ok((sink.concat(), result.metrics))
}

/// Flink's Nexmark source table `datagen` (nexmark-flink's DDL: the three event kinds as ROWs,
/// `dateTime` computed, watermark 4 s behind) over the `nexmark` connector, with `options`
/// (e.g. `'events.num' = '1000'`) added to its WITH clause.
pub fn nexmark_table(options: &str) -> String {
    format!(
        "CREATE TABLE datagen (
            event_type INT,
            person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR, state VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,
            auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT, `dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR>,
            bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,
            `dateTime` AS CASE WHEN event_type = 0 THEN person.`dateTime`
                               WHEN event_type = 1 THEN auction.`dateTime`
                               ELSE bid.`dateTime` END,
            WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
        ) WITH ('connector' = 'nexmark', {options});"
    )
}

/// The SELECT of a Nexmark benchmark query file (`benches/nexmark/queries/{file}`, Flink's
/// text), its `INSERT INTO ...` target dropped.
pub fn bench_query(file: &str) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/benches/nexmark/queries/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let insert = text.find("INSERT INTO").expect("an INSERT");
    let select = text[insert..].find('\n').unwrap() + insert;
    text[select..].to_string()
}

/// Writes `events` as CSV rows `k,v,id,ts` (id = position) under `dir` and returns the DDL
/// of table `t` over them (watermark 1 s behind `ts`, 4 rows per batch so that changes
/// spread over several batches).
pub fn events_table(dir: &std::path::Path, events: &[Event]) -> String {
    let text: String = events
        .iter()
        .enumerate()
        .map(|(id, e)| {
            let v = e.v.map_or(String::new(), |v| v.to_string());
            let (s, ms) = (e.ts.div_euclid(1000), e.ts.rem_euclid(1000));
            format!(
                "{},{v},{id},1970-01-01 {:02}:{:02}:{:02}.{ms:03}\n",
                e.key,
                s / 3600,
                s / 60 % 60,
                s % 60
            )
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("t.csv");
    std::fs::write(&path, text).unwrap();
    format!(
        "CREATE TABLE t (k BIGINT, v BIGINT, id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv', 'csv.null-literal' = '', 'scan.batch-size' = '4');",
        path.display()
    )
}

/// Runs the SQL `query` after `ddl` at `shards` shards and returns the rows its changelog
/// ends with (`columns` of each, sorted).
pub fn query_result(
    ddl: &str,
    query: &str,
    columns: &[&str],
    shards: usize,
) -> Vec<Vec<Option<i64>>> {
    use weir::prelude::*;
    use weir::sql::{Action, Session};
    let sink = CollectSink::new();
    let mut session = Session::new();
    let actions = session
        .execute(&format!("{ddl}\n{query}"), &|_| Arc::new(sink.clone()))
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let [Action::Query(job)] = actions.as_slice() else {
        panic!("one query")
    };
    weir::engine::runtime::run(&job.graph, RunOptions::default().shards(shards)).expect("job runs");
    apply_changelog(&sink.batches(), columns)
}

/// Runs the DSL pipeline `build` makes of `events` (the rows [`events_table`] writes: k, v,
/// id = position, ts; one split, 4 rows per batch, watermark 1 s behind `ts`) at `shards`
/// shards and returns the rows its changelog ends with (`columns` of each, sorted).
pub fn dsl_result(
    events: &[Event],
    build: impl FnOnce(weir::Stream) -> weir::Stream,
    columns: &[&str],
    shards: usize,
) -> Vec<Vec<Option<i64>>> {
    apply_changelog(&dsl_batches(events, build, shards), columns)
}

/// The batches the DSL pipeline of [`dsl_result`] writes.
pub fn dsl_batches(
    events: &[Event],
    build: impl FnOnce(weir::Stream) -> weir::Stream,
    shards: usize,
) -> Vec<RecordBatch> {
    use weir::prelude::*;
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batches = events
        .chunks(4)
        .enumerate()
        .map(|(chunk, rows)| {
            let ids = (0..rows.len()).map(|i| (chunk * 4 + i) as i64);
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|e| e.key))),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|e| e.v))),
                    Arc::new(Int64Array::from_iter_values(ids)),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        rows.iter().map(|e| e.ts),
                    )),
                ],
            )
            .unwrap()
        })
        .collect();
    let sink = CollectSink::new();
    let source = MemorySource::new(schema, vec![batches]).unwrap();
    let stream = Pipeline::new("dsl")
        .source(source)
        .watermark("ts", std::time::Duration::from_secs(1));
    build(stream)
        .sink(sink.clone())
        .run(RunOptions::default().shards(shards))
        .expect("job runs");
    sink.batches()
}

/// Applies a changelog to a multiset of rows: `+I`/`+U` add, `-U`/`-D` remove a present row.
pub fn apply_changelog(batches: &[RecordBatch], columns: &[&str]) -> Vec<Vec<Option<i64>>> {
    use weir::engine::changelog::{kind_at, row_kinds};
    let mut rows: Vec<Vec<Option<i64>>> = Vec::new();
    for batch in batches {
        let values: Vec<Vec<Option<i64>>> = columns.iter().map(|c| column_i64(batch, c)).collect();
        for i in 0..batch.num_rows() {
            let row: Vec<Option<i64>> = values.iter().map(|v| v[i]).collect();
            if kind_at(row_kinds(batch), i).is_accumulate() {
                rows.push(row);
            } else {
                let at = rows.iter().position(|r| *r == row);
                let at = at.unwrap_or_else(|| panic!("{row:?} retracted but not present"));
                rows.swap_remove(at);
            }
        }
    }
    rows.sort();
    rows
}
