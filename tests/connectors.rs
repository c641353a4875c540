//! Connectors against real files written by other tools' conventions, the registry's option
//! checks, bad-record policies, and the generators.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{
    DataType, Field, Fields, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
};
use arrow::record_batch::RecordBatch;
use weir::connectors::metric_names;
use weir::connectors::registry::{create_sink, create_source, TableSpec};
use weir::prelude::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn table(schema: SchemaRef, options: &[(&str, &str)]) -> TableSpec {
    TableSpec::new("t", schema, options)
}

#[test]
fn json_lines_with_nested_objects_and_both_timestamp_formats() {
    let dir = scratch("json");
    std::fs::write(
        dir.join("events.json"),
        concat!(
            "{\"id\": 1, \"ts\": \"2024-01-01 00:00:01.500\", \"user\": {\"name\": \"ana\", \"tags\": [\"a\", \"b\"]}}\n",
            "\n",
            "{\"id\": 2, \"ts\": \"2024-01-01T00:00:02.250Z\", \"user\": {\"name\": \"bo\", \"tags\": []}}\n",
            "{\"id\": 3, \"ts\": \"2024-01-01T00:00:03\", \"user\": null}",
        ),
    )
    .unwrap();
    let user = Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", ts(), true),
        Field::new("user", DataType::Struct(user), true),
    ]));
    let path = dir.join("events.json");
    let source = create_source(&table(
        schema,
        &[
            ("connector", "filesystem"),
            ("path", path.to_str().unwrap()),
            ("format", "json"),
        ],
    ))
    .unwrap();
    let batch = common::read_all(source, 1).unwrap().0.unwrap();
    assert_eq!(
        common::column_i64(&batch, "id"),
        vec![Some(1), Some(2), Some(3)]
    );
    let times = batch
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(
        times.values().to_vec(),
        vec![1_704_067_201_500, 1_704_067_202_250, 1_704_067_203_000]
    );
    let users = batch.column(2).as_struct();
    assert_eq!(users.column(0).as_string::<i32>().value(1), "bo");
    assert!(users.is_null(2));
    assert_eq!(users.column(1).as_list::<i32>().value(0).len(), 2);
}

#[test]
fn csv_with_header_quotes_nulls_and_a_delimiter() {
    let dir = scratch("csv");
    std::fs::write(
        dir.join("a.csv"),
        "id;name;price;at\n1;\"Smith; John\";10;2024-01-01 00:00:00.000\n2;N/A;N/A;2024-01-01 00:00:01.000\n3;\"say \"\"hi\"\"\";7;2024-01-01T00:00:02Z\n",
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Int64, true),
        Field::new("at", ts(), true),
    ]));
    let source = create_source(&table(
        schema,
        &[
            ("connector", "filesystem"),
            ("path", dir.join("*.csv").to_str().unwrap()),
            ("format", "csv"),
            ("csv.field-delimiter", ";"),
            ("csv.null-literal", "N/A"),
            ("csv.header", "true"),
        ],
    ))
    .unwrap();
    let batch = common::read_all(source, 2).unwrap().0.unwrap();
    let names = batch.column(1).as_string::<i32>();
    assert_eq!(names.value(0), "Smith; John");
    assert!(names.is_null(1));
    assert_eq!(names.value(2), "say \"hi\"");
    assert_eq!(
        common::column_i64(&batch, "price"),
        vec![Some(10), None, Some(7)]
    );
    assert_eq!(common::column_i64(&batch, "at")[2], Some(1_704_067_202_000));
}

#[test]
fn parquet_written_by_the_parquet_crate_is_read_with_only_the_declared_columns() {
    let dir = scratch("parquet");
    let full = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int32, false),
        Field::new("b", DataType::Utf8, false),
        Field::new("c", DataType::Timestamp(TimeUnit::Microsecond, None), false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&full),
        vec![
            Arc::new(arrow::array::Int32Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["x", "y", "z"])),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![
                1_000, 2_000, 3_000,
            ])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(dir.join("data.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, full, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    // Declared: a subset, in another order, with a wider integer and millisecond timestamps.
    let schema = Arc::new(Schema::new(vec![
        Field::new("c", ts(), false),
        Field::new("a", DataType::Int64, false),
    ]));
    let source = create_source(&table(
        schema,
        &[
            ("connector", "filesystem"),
            ("path", dir.to_str().unwrap()),
            ("format", "parquet"),
        ],
    ))
    .unwrap();
    let batch = common::read_all(source, 1).unwrap().0.unwrap();
    assert_eq!(batch.num_columns(), 2);
    assert_eq!(
        common::column_i64(&batch, "a"),
        vec![Some(1), Some(2), Some(3)]
    );
    assert_eq!(
        common::column_i64(&batch, "c"),
        vec![Some(1), Some(2), Some(3)]
    );
}

fn bad_json_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::write(
        dir.join("in.json"),
        "{\"id\": 1, \"n\": 5}\n{\"id\": 2, \"n\": \"five\"}\n{\"id\": 3, \"n\": 300}\n{\"id\": 4, \"n\": 7}\n",
    )
    .unwrap();
    dir
}

fn bad_json_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("n", DataType::Int8, true),
    ]))
}

#[test]
fn a_bad_record_fails_the_job_naming_file_line_and_field() {
    let dir = bad_json_dir("bad-fail");
    let source = create_source(&table(
        bad_json_schema(),
        &[
            ("connector", "filesystem"),
            ("path", dir.to_str().unwrap()),
            ("format", "json"),
        ],
    ))
    .unwrap();
    let error = common::read_all(source, 1).unwrap_err().to_string();
    assert!(error.contains("in.json:2"), "{error}");
    assert!(error.contains("'n'") || error.contains("five"), "{error}");
}

#[test]
fn bad_records_are_skipped_and_counted_or_dead_lettered() {
    let dir = bad_json_dir("bad-skip");
    let path = dir.to_str().unwrap();
    let skip = create_source(&table(
        bad_json_schema(),
        &[
            ("connector", "filesystem"),
            ("path", path),
            ("format", "json"),
            ("json.ignore-parse-errors", "true"),
        ],
    ))
    .unwrap();
    let (batch, metrics) = common::read_all(skip, 1).unwrap();
    assert_eq!(
        common::column_i64(&batch.unwrap(), "id"),
        vec![Some(1), Some(4)]
    );
    assert_eq!(
        metrics.total(metric_names::BAD_RECORDS_SKIPPED),
        2,
        "300 does not fit TINYINT"
    );

    let letters = dir.join("dead").join("letters.jsonl");
    let dead = create_source(&table(
        bad_json_schema(),
        &[
            ("connector", "filesystem"),
            ("path", dir.join("in.json").to_str().unwrap()),
            ("format", "json"),
            ("format.on-error", "dead-letter"),
            ("format.dead-letter.path", letters.to_str().unwrap()),
        ],
    ))
    .unwrap();
    let (batch, metrics) = common::read_all(dead, 1).unwrap();
    assert_eq!(batch.unwrap().num_rows(), 2);
    assert_eq!(metrics.total(metric_names::BAD_RECORDS_DEAD_LETTERED), 2);
    let text = std::fs::read_to_string(&letters).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("in.json:2") && lines[0].contains("five"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("in.json:3") && lines[1].contains("300"),
        "{}",
        lines[1]
    );
}

#[test]
fn the_registry_names_the_option_that_is_wrong() {
    let schema = bad_json_schema();
    let error = |options: &[(&str, &str)]| {
        create_source(&table(Arc::clone(&schema), options))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let unknown = error(&[
        ("connector", "filesystem"),
        ("path", "/tmp"),
        ("format", "json"),
        ("pth", "x"),
    ]);
    assert!(
        unknown.contains("table 't'") && unknown.contains("unknown option 'pth'"),
        "{unknown}"
    );
    let missing = error(&[("connector", "filesystem"), ("format", "json")]);
    assert!(
        missing.contains("missing required option 'path'"),
        "{missing}"
    );
    let wrong = error(&[
        ("connector", "filesystem"),
        ("path", "/tmp"),
        ("format", "xml"),
    ]);
    assert!(
        wrong.contains("option 'format'") && wrong.contains("json, csv, parquet, raw"),
        "{wrong}"
    );
    let interval = error(&[
        ("connector", "filesystem"),
        ("path", "/tmp"),
        ("format", "json"),
        ("source.monitor-interval", "soon"),
    ]);
    assert!(interval.contains("'source.monitor-interval'"), "{interval}");
    let no_dir = error(&[
        ("connector", "filesystem"),
        ("path", "/no/such/dir"),
        ("format", "json"),
    ]);
    assert!(no_dir.contains("'/no/such/dir' does not exist"), "{no_dir}");
    let connector = error(&[("connector", "kafak")]);
    assert!(
        connector.contains("unknown connector 'kafak'"),
        "{connector}"
    );
    let datagen = error(&[("connector", "datagen"), ("fields.nope.kind", "random")]);
    assert!(datagen.contains("'nope'"), "{datagen}");
}

/// Files in `dir` (recursively) as relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_file_sink_rolls_partitions_and_reads_back_in_every_format() {
    let input: Vec<common::Event> = (0..5_000)
        .map(|i| common::Event {
            key: i % 3,
            ts: 1_704_067_200_000 + i,
            v: if i % 10 == 0 { None } else { Some(i) },
        })
        .collect();
    for format in ["json", "csv", "parquet"] {
        let dir = scratch(&format!("sink-{format}"));
        let out = dir.join("out");
        let mut spec = table(
            common::event_schema(),
            &[
                ("connector", "filesystem"),
                ("path", out.to_str().unwrap()),
                ("format", format),
                ("sink.rolling-policy.file-size", "16kb"),
            ],
        );
        spec.partition_by = vec!["k".into()];
        let sink = create_sink(&spec).unwrap();
        let source = MemorySource::new(
            common::event_schema(),
            vec![common::batches_of(&input, &[500])],
        )
        .unwrap();
        Pipeline::new("write")
            .source(source)
            .sink_arc(sink)
            .run(RunOptions::default().shards(2))
            .unwrap();
        let files = files_under(&out);
        assert!(
            files
                .iter()
                .all(|f| !f.contains("inprogress") && !f.contains("/.")),
            "{files:?}"
        );
        assert!(
            files.iter().any(|f| f.starts_with("k=0/part-")),
            "{files:?}"
        );
        // Parquet compresses this data below the roll size per batch; row formats must roll.
        if format != "parquet" {
            assert!(files.len() > 6, "small files roll: {files:?}");
        }
        // Read back each partition (the partition column lives in the path).
        let data_schema = Arc::new(Schema::new(vec![
            Field::new("ts", ts(), false),
            Field::new("v", DataType::Int64, true),
        ]));
        let mut back = Vec::new();
        for key in 0..3 {
            let source = create_source(&table(
                Arc::clone(&data_schema),
                &[
                    ("connector", "filesystem"),
                    ("path", out.join(format!("k={key}")).to_str().unwrap()),
                    ("format", format),
                ],
            ))
            .unwrap();
            let batch = common::read_all(source, 2).unwrap().0.unwrap();
            let times = common::column_i64(&batch, "ts");
            let values = common::column_i64(&batch, "v");
            back.extend(times.into_iter().zip(values).map(|(t, v)| common::Event {
                key,
                ts: t.unwrap(),
                v,
            }));
        }
        back.sort();
        let mut expected = input.clone();
        expected.sort();
        assert_eq!(back, expected, "{format}");
    }
}

#[test]
fn a_watched_directory_delivers_files_added_later() {
    let dir = scratch("watch");
    let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let source = create_source(&table(
        schema,
        &[
            ("connector", "filesystem"),
            ("path", dir.to_str().unwrap()),
            ("format", "raw"),
            ("source.monitor-interval", "50ms"),
        ],
    ))
    .unwrap();
    let sink = CollectSink::new();
    let handle = Pipeline::new("watch")
        .source_arc(source)
        .sink(sink.clone())
        .start(RunOptions::default().shards(2))
        .unwrap();
    std::fs::write(dir.join("one.txt"), "a\nb\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Written under a hidden name first, then renamed, as writers of watched directories should.
    std::fs::write(dir.join(".two.txt.tmp"), "c\n").unwrap();
    std::fs::rename(dir.join(".two.txt.tmp"), dir.join("two.txt")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.rows() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.cancel();
    let _ = handle.join();
    let mut lines: Vec<String> = sink
        .batches()
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(lines, vec!["a", "b", "c"]);
}

#[test]
fn datagen_sequences_are_complete_and_random_values_stay_in_bounds() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Int32, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("at", ts(), false),
    ]));
    let options = [
        ("connector", "datagen"),
        ("rows-per-second", "100000"),
        ("fields.id.kind", "sequence"),
        ("fields.id.start", "1"),
        ("fields.id.end", "1000"),
        ("fields.score.min", "-5"),
        ("fields.score.max", "5"),
        ("fields.name.length", "8"),
        ("fields.at.max-past", "10s"),
    ];
    for shards in [1, 2] {
        let source = create_source(&table(Arc::clone(&schema), &options)).unwrap();
        let batch = common::read_all(source, shards).unwrap().0.unwrap();
        let mut ids: Vec<i64> = common::column_i64(&batch, "id")
            .into_iter()
            .flatten()
            .collect();
        ids.sort();
        assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
        let scores = batch.column(1).as_primitive::<Int32Type>();
        assert!(scores.iter().all(|s| (-5..=5).contains(&s.unwrap())));
        assert!(batch
            .column(2)
            .as_string::<i32>()
            .iter()
            .all(|s| s.unwrap().len() == 8));
    }
    let bad = create_source(&table(
        Arc::clone(&schema),
        &[
            ("connector", "datagen"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
        ],
    ))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(bad.contains("fields.id.end"), "{bad}");
}

fn nexmark_table(events: &str) -> TableSpec {
    table(
        weir::connectors::nexmark::nexmark_schema(),
        &[("connector", "nexmark"), ("events.num", events)],
    )
}

#[test]
fn nexmark_follows_the_standard_proportions_and_is_the_same_at_any_parallelism() {
    let one = common::read_all(create_source(&nexmark_table("10000")).unwrap(), 1)
        .unwrap()
        .0
        .unwrap();
    let two = common::read_all(create_source(&nexmark_table("10000")).unwrap(), 2)
        .unwrap()
        .0
        .unwrap();
    let kinds = |b: &RecordBatch| {
        let mut counts = BTreeMap::new();
        for k in b.column(0).as_primitive::<Int32Type>().values() {
            *counts.entry(*k).or_insert(0) += 1;
        }
        counts
    };
    assert_eq!(kinds(&one), BTreeMap::from([(0, 200), (1, 600), (2, 9200)]));
    // Same events at 1 and 2 splits: compare bids as (auction, bidder, price, time).
    let bids = |b: &RecordBatch| -> BTreeSet<(i64, i64, i64, i64)> {
        let bid = b.column(3).as_struct();
        let col = |i: usize| bid.column(i).as_primitive::<Int64Type>().clone();
        let (a, bd, p) = (col(0), col(1), col(2));
        let t = bid
            .column(5)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap()
            .clone();
        (0..b.num_rows())
            .filter(|&i| bid.is_valid(i))
            .map(|i| (a.value(i), bd.value(i), p.value(i), t.value(i)))
            .collect()
    };
    let (b1, b2) = (bids(&one), bids(&two));
    assert_eq!(b1, b2);
    assert!(b1
        .iter()
        .all(|(a, bidder, price, _)| *a >= 1000 && *bidder >= 1000 && *price > 0));
    // Hot auctions: the most frequent auction gets far more than a uniform share.
    let mut per_auction: BTreeMap<i64, usize> = BTreeMap::new();
    for (a, ..) in &b1 {
        *per_auction.entry(*a).or_default() += 1;
    }
    let top = per_auction.values().max().unwrap();
    assert!(
        *top > 9200 / per_auction.len() * 10,
        "top auction has {top} of 9200 bids"
    );
    // People and auctions have ids in sequence.
    let people = one.column(1).as_struct();
    let ids: Vec<i64> = (0..one.num_rows())
        .filter(|&i| people.is_valid(i))
        .map(|i| people.column(0).as_primitive::<Int64Type>().value(i))
        .collect();
    assert_eq!(ids, (1000..1200).collect::<Vec<_>>());
    let _: &Int64Array = people.column(0).as_primitive::<Int64Type>();
}

/// A CSV file of `rows` lines `i,text` (text of varying length), some blank lines among them.
fn numbered_csv(path: &Path, rows: i64) {
    let mut text = String::new();
    for i in 0..rows {
        text.push_str(&format!("{i},{}\n", "x".repeat((i % 37) as usize)));
        if i % 1000 == 999 {
            text.push('\n');
        }
    }
    std::fs::write(path, text).unwrap();
}

fn numbered_source(
    path: &Path,
    block_size: u64,
) -> weir::connectors::filesystem::source::FileSource {
    use weir::connectors::filesystem::source::{FileSource, FileSourceConfig};
    use weir::connectors::filesystem::FileFormat;
    use weir::connectors::format::BadRecordPolicy;
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
    ]));
    FileSource::new(FileSourceConfig {
        path: path.display().to_string(),
        format: FileFormat::Csv(Default::default()),
        schema,
        monitor_interval: None,
        batch_size: 500,
        on_error: BadRecordPolicy::Fail,
        block_size,
    })
    .unwrap()
}

#[test]
fn a_large_file_is_read_in_blocks_by_every_shard_each_line_once() {
    let dir = scratch("blocks");
    let path = dir.join("big.csv");
    numbered_csv(&path, 50_000);
    for (block_size, shards) in [(u64::MAX, 1), (10_000, 1), (10_000, 2), (7_777, 3), (64, 4)] {
        let source = Arc::new(numbered_source(&path, block_size));
        let (batch, _) = common::read_all(source, shards).unwrap();
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let mut ids: Vec<i64> = ids.values().to_vec();
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..50_000).collect::<Vec<_>>(),
            "blocks of {block_size} bytes at {shards} shards"
        );
    }
}

#[test]
fn a_bad_record_in_a_later_block_is_named_by_block_and_line() {
    let dir = scratch("blocks-bad");
    let path = dir.join("big.csv");
    numbered_csv(&path, 5_000);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("oops,1\n");
    std::fs::write(&path, &text).unwrap();
    let source = Arc::new(numbered_source(&path, 10_000));
    let error = common::read_all(source, 2).unwrap_err().to_string();
    let last_block = (text.len() as u64 - 1) / 10_000 * 10_000;
    assert!(
        error.contains(&format!("of the block at byte {last_block})")),
        "{error}"
    );
    assert!(
        error.contains("value 'oops' of column 'i' is not a BIGINT"),
        "{error}"
    );
}

#[test]
fn nexmark_base_time_is_fixed_or_the_wall_clock() {
    let schema = Arc::new(Schema::new(vec![Field::new("dateTime", ts(), false)]));
    let times = |base: &str| -> Vec<i64> {
        let source = create_source(&table(
            Arc::clone(&schema),
            &[
                ("connector", "nexmark"),
                ("events.num", "1000"),
                ("first-event.rate", "1000"),
                ("base-time", base),
            ],
        ))
        .unwrap();
        let (batch, _) = common::read_all(source, 1).unwrap();
        let batch = batch.unwrap();
        let column = batch
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        column.values().to_vec()
    };
    let fixed = times("5000");
    assert_eq!(fixed.iter().min(), Some(&5000));
    assert_eq!(fixed.iter().max(), Some(&(5000 + 999)));

    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = wall();
    let now = times("now");
    let after = wall();
    let first = *now.iter().min().unwrap();
    assert!(
        before <= first && first <= after,
        "{before} <= {first} <= {after}"
    );
    assert_eq!(now.iter().max(), Some(&(first + 999)));

    let error = create_source(&table(
        schema,
        &[("connector", "nexmark"), ("base-time", "yesterday")],
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        error.contains("'base-time'") && error.contains("yesterday"),
        "{error}"
    );
}

#[test]
fn flink_file_uris_and_the_json_timestamp_standard_are_accepted() {
    let dir = scratch("file-uri");
    std::fs::write(
        dir.join("in.json"),
        "{\"id\": 1, \"at\": \"2024-01-01 00:00:01.500\"}\n",
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("at", ts(), false),
    ]));
    let uri = format!("file://{}", dir.display());
    let source = create_source(&table(
        Arc::clone(&schema),
        &[
            ("connector", "filesystem"),
            ("path", &uri),
            ("format", "json"),
            ("json.timestamp-format.standard", "SQL"),
        ],
    ))
    .unwrap();
    let (batch, _) = common::read_all(source, 1).unwrap();
    assert_eq!(batch.unwrap().num_rows(), 1);
    let error = create_source(&table(
        schema,
        &[
            ("connector", "filesystem"),
            ("path", &uri),
            ("format", "json"),
            ("json.timestamp-format.standard", "ISO-8601"),
        ],
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("json.timestamp-format.standard"), "{error}");
}
