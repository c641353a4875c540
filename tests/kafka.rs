//! The Kafka connector against a real Apache Kafka broker (started by `scripts/kafka.sh start`,
//! which `scripts/test.sh` does; `WEIR_KAFKA_BOOTSTRAP` overrides 127.0.0.1:9092).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use weir::connectors::metric_names;
use weir::connectors::registry::{create_sink, create_source, TableSpec};
use weir::prelude::*;

fn bootstrap() -> String {
    std::env::var("WEIR_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Creates a fresh topic with `partitions` partitions.
fn topic(name: &str, partitions: i32) -> String {
    // Unique in this process (a counter) and across runs (the process id).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let topic = format!(
        "weir-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let results = runtime()
        .block_on(
            admin.create_topics(
                &[NewTopic::new(
                    &topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(10)))
                    .request_timeout(Some(Duration::from_secs(5))),
            ),
        )
        .unwrap_or_else(|e| panic!("is the test broker running (scripts/kafka.sh start)? {e}"));
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
    topic
}

/// Writes messages (partition, value, headers) straight to `topic` with rdkafka.
fn produce(topic: &str, messages: impl IntoIterator<Item = (Option<i32>, String, OwnedHeaders)>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    runtime().block_on(async {
        for (partition, value, headers) in messages {
            let mut record = FutureRecord::<(), _>::to(topic)
                .payload(&value)
                .headers(headers);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap();
        }
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bid_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
    ]))
}

fn bids(n: i64) -> RecordBatch {
    RecordBatch::try_new(
        bid_schema(),
        vec![
            Arc::new(arrow::array::Int64Array::from_iter_values(
                (0..n).map(|i| i % 17),
            )),
            Arc::new(arrow::array::Int64Array::from_iter_values(0..n)),
        ],
    )
    .unwrap()
}

fn write(topic: &str, batches: Vec<RecordBatch>, extra: &[(&str, &str)]) {
    let schema = batches[0].schema();
    let bootstrap = bootstrap();
    let mut options = vec![
        ("connector", "kafka"),
        ("topic", topic),
        ("properties.bootstrap.servers", bootstrap.as_str()),
    ];
    options.extend_from_slice(extra);
    let sink = create_sink(&TableSpec::new("out", Arc::clone(&schema), &options)).unwrap();
    Pipeline::new("produce")
        .source(MemorySource::new(schema, vec![batches]).unwrap())
        .sink_arc(sink)
        .run(RunOptions::default().shards(1))
        .unwrap();
}

fn source_table(topic: &str, schema: SchemaRef, extra: &[(&str, &str)]) -> TableSpec {
    let bootstrap = bootstrap();
    let mut options = vec![
        ("connector", "kafka"),
        ("topic", topic),
        ("properties.bootstrap.servers", bootstrap.as_str()),
        ("scan.bounded.mode", "latest-offset"),
        ("scan.startup.mode", "earliest-offset"),
    ];
    options.extend_from_slice(extra);
    TableSpec::new("in", schema, &options)
}

fn read(
    table: &TableSpec,
    shards: usize,
) -> Result<(Option<RecordBatch>, weir::engine::metrics::Metrics), WeirError> {
    let source = create_source(table).map_err(|e| WeirError::Build {
        pipeline: "read".into(),
        message: e.to_string(),
    })?;
    common::read_all(source, shards)
}

#[test]
fn a_four_partition_topic_is_read_by_two_shards_with_keys_and_metadata() {
    let topic = topic("keyed", 4);
    write(
        &topic,
        vec![bids(500), bids(500)],
        &[
            ("format", "json"),
            ("key.fields", "auction"),
            ("key.format", "json"),
        ],
    );
    let mut schema = bid_schema().fields().to_vec();
    schema.push(Arc::new(Field::new("part", DataType::Int32, false)));
    schema.push(Arc::new(Field::new("off", DataType::Int64, false)));
    let mut table = source_table(&topic, Arc::new(Schema::new(schema)), &[("format", "json")]);
    table.metadata = vec![
        ("part".into(), "partition".into()),
        ("off".into(), "offset".into()),
    ];
    let batch = read(&table, 2).unwrap().0.unwrap();
    assert_eq!(batch.num_rows(), 1000);
    let auctions = batch.column(0).as_primitive::<Int64Type>();
    let parts = batch.column(2).as_primitive::<Int32Type>();
    let offsets = batch.column(3).as_primitive::<Int64Type>();
    let mut partition_of: BTreeMap<i64, BTreeSet<i32>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for i in 0..batch.num_rows() {
        partition_of
            .entry(auctions.value(i))
            .or_default()
            .insert(parts.value(i));
        assert!(
            seen.insert((parts.value(i), offsets.value(i))),
            "each message once"
        );
    }
    assert!(
        partition_of.values().all(|p| p.len() == 1),
        "one partition per key: {partition_of:?}"
    );
    let used: BTreeSet<i32> = partition_of.values().flatten().copied().collect();
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
}

/// A Kafka source split reports its consumer lag (Flink's `pendingRecords`) from librdkafka's
/// statistics: -1 (unknown) until the first, then the records not read yet, 0 once it has
/// read them all.
#[test]
fn a_kafka_source_reports_its_consumer_lag() {
    use weir::engine::metrics::{names, MetricValue};
    let topic = topic("lag", 2);
    write(&topic, vec![bids(1000)], &[("format", "json")]);
    let table = source_table(
        &topic,
        bid_schema(),
        &[
            ("format", "json"),
            ("properties.statistics.interval.ms", "100"),
        ],
    );
    // Unbounded: the split keeps polling, and its statistics keep coming.
    let mut table = table;
    table.options.remove("scan.bounded.mode");
    let handle = Pipeline::new("lag")
        .source_arc(create_source(&table).unwrap())
        .sink(BlackholeSink::new())
        .start(RunOptions::default().shards(2))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lags: Vec<i64> = (handle.metrics().snapshot().into_iter())
            .filter(|(key, _)| key.name == names::PENDING_RECORDS)
            .map(|(_, value)| match value {
                MetricValue::Gauge(lag) => lag,
                MetricValue::Counter(_) => i64::MIN,
            })
            .collect();
        let read = handle.metrics().total(names::ROWS_WRITTEN);
        if read == 1000 && lags.len() == 2 && lags.iter().all(|lag| *lag == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no lag of 0 reported after reading everything: {lags:?}, {read} rows"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.cancel();
    let _ = handle.join();
}

#[test]
fn startup_modes_choose_where_reading_begins() {
    let topic = topic("startup", 1);
    write(&topic, vec![bids(100)], &[("format", "csv")]);
    let rows = |extra: &[(&str, &str)]| {
        read(&source_table(&topic, bid_schema(), extra), 1)
            .unwrap()
            .0
            .map_or(0, |b| b.num_rows())
    };
    assert_eq!(rows(&[("format", "csv")]), 100);
    assert_eq!(
        rows(&[("format", "csv"), ("scan.startup.mode", "latest-offset")]),
        0
    );
    assert_eq!(
        rows(&[
            ("format", "csv"),
            ("scan.startup.mode", "specific-offsets"),
            ("scan.startup.specific-offsets", "partition:0,offset:60")
        ]),
        40
    );
    assert_eq!(
        rows(&[
            ("format", "csv"),
            ("scan.startup.mode", "timestamp"),
            ("scan.startup.timestamp-millis", "0")
        ]),
        100
    );
}

#[test]
fn a_broker_that_is_down_is_reported_within_the_timeout() {
    let started = Instant::now();
    let table = TableSpec::new(
        "in",
        bid_schema(),
        &[
            ("connector", "kafka"),
            ("topic", "anything"),
            ("properties.bootstrap.servers", "127.0.0.1:1"),
            ("scan.connect-timeout", "2s"),
            ("format", "json"),
        ],
    );
    let error = create_source(&table).map(|_| ()).unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.contains("127.0.0.1:1") && error.contains("table 'in'"),
        "{error}"
    );
}

#[test]
fn malformed_messages_follow_the_bad_record_policy() {
    let topic = topic("malformed", 1);
    let lines = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let raw = RecordBatch::try_new(
        Arc::clone(&lines),
        vec![Arc::new(StringArray::from(vec![
            "{\"auction\": 1, \"price\": 5}",
            "not json",
            "{\"auction\": 2, \"price\": 6}",
        ]))],
    )
    .unwrap();
    write(&topic, vec![raw], &[("format", "raw")]);
    let error = read(
        &source_table(&topic, bid_schema(), &[("format", "json")]),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains(&format!("{topic}/0/1")), "{error}");
    let (batch, metrics) = read(
        &source_table(
            &topic,
            bid_schema(),
            &[("format", "json"), ("format.on-error", "skip")],
        ),
        1,
    )
    .unwrap();
    assert_eq!(batch.unwrap().num_rows(), 2);
    assert_eq!(metrics.total(metric_names::BAD_RECORDS_SKIPPED), 1);

    let letters = self::topic("letters", 1);
    let (batch, metrics) = read(
        &source_table(
            &topic,
            bid_schema(),
            &[
                ("format", "json"),
                ("format.on-error", "dead-letter"),
                ("format.dead-letter.topic", &letters),
            ],
        ),
        1,
    )
    .unwrap();
    assert_eq!(batch.unwrap().num_rows(), 2);
    assert_eq!(metrics.total(metric_names::BAD_RECORDS_DEAD_LETTERED), 1);
    let dead = read(
        &source_table(&letters, Arc::clone(&lines), &[("format", "raw")]),
        1,
    )
    .unwrap()
    .0
    .unwrap();
    let letter = dead.column(0).as_string::<i32>().value(0).to_string();
    assert!(
        letter.contains(&format!("{topic}/0/1")) && letter.contains("not json"),
        "{letter}"
    );
    let _ = common::event_schema();
}

#[test]
fn exactly_once_needs_a_job_with_checkpoints() {
    let topic = topic("eo-refused", 1);
    let bootstrap = bootstrap();
    let table = TableSpec::new(
        "out",
        bid_schema(),
        &[
            ("connector", "kafka"),
            ("topic", topic.as_str()),
            ("properties.bootstrap.servers", bootstrap.as_str()),
            ("sink.delivery-guarantee", "exactly-once"),
        ],
    );
    let sink = create_sink(&table).unwrap();
    let error = Pipeline::new("no-checkpoints")
        .source(MemorySource::new(bid_schema(), vec![vec![bids(10)]]).unwrap())
        .sink_arc(sink)
        .run(RunOptions::default().shards(1))
        .unwrap_err()
        .to_string();
    assert!(error.contains("this job has none"), "{error}");
}

/// Every committed message of `topic` (all partitions, from the start), as `key|value`,
/// sorted; read with `isolation.level = read_committed` until nothing arrives for 2 s.
fn committed_messages(topic: &str) -> Vec<String> {
    let mut messages: Vec<String> = read_topic(topic, true)
        .into_iter()
        .map(|(key, value)| format!("{key}|{}", value.unwrap_or_default()))
        .collect();
    messages.sort();
    messages
}

/// The `exactly_once_kafka` example, built next to the `weir` binary by `cargo test`.
fn exactly_once_job(input: &str, output: &str, state: &std::path::Path) -> std::process::Command {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_weir"));
    let example = bin
        .parent()
        .unwrap()
        .join("examples")
        .join("exactly_once_kafka");
    assert!(
        example.exists(),
        "{} is built by cargo test",
        example.display()
    );
    let mut command = std::process::Command::new(example);
    command
        .args(["--input", input, "--output", output, "--shards", "2"])
        .args(["--interval-ms", "100", "--brokers", &bootstrap()])
        .arg("--state-dir")
        .arg(state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

/// Runs `job` `runs` times, each killed with SIGKILL at a random point between `from` and
/// `from + 0.5` of `run_time` if it is still running (a run that ends on its own must
/// succeed); returns how many were killed. The seed is printed.
fn kill_at_random(
    runs: usize,
    run_time: Duration,
    from: f64,
    job: &dyn Fn() -> std::process::Command,
) -> usize {
    let mut random = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed: {random}");
    let mut kills = 0;
    for _ in 0..runs {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = run_time.mul_f64(from + ((random >> 33) % 1000) as f64 / 1000.0 * 0.5);
        let mut child = job().spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let ended = child.wait_with_output().unwrap();
        assert!(
            ended.status.success() || ended.status.code().is_none(),
            "a run that was not killed failed: {}",
            String::from_utf8_lossy(&ended.stderr)
        );
    }
    kills
}

/// Repeats `crash(run_time)`, a crash phase on new state and output that returns how many of
/// its runs were killed and its output, until one kills a run (at most four times, halving
/// `run_time` each time: on a busy machine the uninterrupted run that timed the job may have
/// been slow, and a quicker first run then ends before it is killed). Returns the output of
/// the phase that killed, and its kills.
fn until_killed<T>(run_time: Duration, crash: &dyn Fn(Duration) -> (usize, T)) -> (T, usize) {
    let mut run_time = run_time;
    for attempt in 0..4 {
        let (kills, output) = crash(run_time);
        if kills > 0 {
            return (output, kills);
        }
        eprintln!("attempt {attempt}: no run was killed; again with half the run time");
        run_time /= 2;
    }
    panic!("the job was never killed while running");
}

#[test]
fn kafka_windows_kafka_is_exactly_once_across_kill_and_restart() {
    let input = topic("eo-in", 4);
    let generator = BidGenerator::new(BidGeneratorConfig {
        events: 400_000,
        auctions: 50,
        ..BidGeneratorConfig::default()
    });
    let bootstrap = bootstrap();
    let sink = create_sink(&TableSpec::new(
        "bids",
        weir::engine::source::SourceFactory::schema(&generator),
        &[
            ("connector", "kafka"),
            ("topic", input.as_str()),
            ("properties.bootstrap.servers", bootstrap.as_str()),
            ("format", "json"),
        ],
    ))
    .unwrap();
    // One shard: each partition gets its bids in time order.
    Pipeline::new("fill")
        .source(generator)
        .sink_arc(sink)
        .run(RunOptions::default().shards(1))
        .unwrap();

    let dir = std::env::temp_dir().join(format!("weir-kafka-eo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clean_topic = topic("eo-clean", 4);
    let started = Instant::now();
    let clean = exactly_once_job(&input, &clean_topic, &dir.join("clean"))
        .output()
        .unwrap();
    let run_time = started.elapsed();
    eprintln!("uninterrupted run: {run_time:?}");
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let expected = committed_messages(&clean_topic);
    assert!(expected.len() > 1000, "{} window results", expected.len());

    // Somewhere between 15% and 65% of an uninterrupted run, so the first run is killed
    // (later runs have less left to do).
    let (output, kills) = until_killed(run_time, &|run_time| {
        let output = topic("eo-crash", 4);
        let state = dir.join(&output);
        let kills = kill_at_random(4, run_time, 0.15, &|| {
            exactly_once_job(&input, &output, &state)
        });
        (kills, output)
    });
    let last = exactly_once_job(&input, &output, &dir.join(&output))
        .output()
        .unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let got = committed_messages(&output);
    assert_eq!(
        got.len(),
        expected.len(),
        "committed results after {kills} kills"
    );
    let missing: Vec<&String> = expected
        .iter()
        .filter(|m| !got.contains(m))
        .take(5)
        .collect();
    let extra: Vec<&String> = got
        .iter()
        .filter(|m| !expected.contains(m))
        .take(5)
        .collect();
    assert!(
        got == expected,
        "results differ from the uninterrupted run: missing {missing:?}, unexpected {extra:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lagging_partition_holds_the_watermark_so_its_rows_are_not_late() {
    let topic = topic("lagging", 2);
    // Partition 0 is far ahead in event time; partition 1 is behind. Both are already written
    // when the job starts, so whichever the reader meets first, the other is behind it.
    let messages = [(0, 100_000i64), (1, 0)]
        .into_iter()
        .flat_map(|(partition, base)| {
            (0..500i64).map(move |i| {
                let value = format!("{{\"auction\": {i}, \"price\": {}}}", base + i);
                (Some(partition), value, OwnedHeaders::new())
            })
        });
    produce(&topic, messages);
    let source = create_source(&source_table(&topic, bid_schema(), &[("format", "json")])).unwrap();
    let sink = CollectSink::new();
    let result = Pipeline::new("lagging")
        .source_arc(source)
        .parallelism(1)
        .watermark("price", Duration::ZERO)
        .window(Window::tumble(Duration::from_millis(100)))
        .aggregate([count_all().alias("c")])
        .sink(sink.clone())
        .run(RunOptions::default().shards(1))
        .unwrap();
    assert_eq!(
        result
            .metrics
            .total(weir::engine::metrics::names::LATE_ROWS_DROPPED),
        0
    );
    let counted: i64 = common::column_i64(&sink.concat().unwrap(), "c")
        .into_iter()
        .flatten()
        .sum();
    assert_eq!(counted, 1000);
}

#[test]
fn key_columns_can_live_only_in_the_message_key() {
    let topic = topic("except-key", 2);
    let keyed = [
        ("format", "json"),
        ("key.fields", "auction"),
        ("key.format", "json"),
        ("value.fields-include", "EXCEPT_KEY"),
    ];
    write(&topic, vec![bids(200)], &keyed);
    // The value holds only the price.
    let lines = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let raw = read(&source_table(&topic, lines, &[("format", "raw")]), 1)
        .unwrap()
        .0
        .unwrap();
    let value = raw.column(0).as_string::<i32>().value(0).to_string();
    assert!(
        value.contains("price") && !value.contains("auction"),
        "{value}"
    );
    // Read back with the key: every row whole again.
    let batch = read(&source_table(&topic, bid_schema(), &keyed), 2)
        .unwrap()
        .0
        .unwrap();
    let mut rows: Vec<(i64, i64)> = (0..batch.num_rows())
        .map(|i| {
            (
                batch.column(0).as_primitive::<Int64Type>().value(i),
                batch.column(1).as_primitive::<Int64Type>().value(i),
            )
        })
        .collect();
    rows.sort();
    let mut expected: Vec<(i64, i64)> = (0..200).map(|i| (i % 17, i)).collect();
    expected.sort();
    assert_eq!(rows, expected);
}

#[test]
fn headers_are_a_metadata_column() {
    let topic = topic("headers", 1);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("abc"),
        })
        .insert(Header {
            key: "empty",
            value: None::<&str>,
        });
    produce(
        &topic,
        [(None, "{\"auction\": 1, \"price\": 2}".to_string(), headers)],
    );
    let mut fields = bid_schema().fields().to_vec();
    fields.push(Arc::new(Field::new(
        "h",
        weir::connectors::kafka::source::headers_type(),
        true,
    )));
    let mut table = source_table(&topic, Arc::new(Schema::new(fields)), &[("format", "json")]);
    table.metadata = vec![("h".into(), "headers".into())];
    let batch = read(&table, 1).unwrap().0.unwrap();
    let map = batch.column(2).as_map();
    let entries = map.value(0);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_binary::<i32>();
    assert_eq!((keys.value(0), values.value(0)), ("trace", &b"abc"[..]));
    assert_eq!(keys.value(1), "empty");
    assert!(arrow::array::Array::is_null(values, 1));
}

/// `examples/sql/kafka_to_kafka.sql` as written (topics renamed, reading bounded so the job
/// ends): JSON bids in, exactly-once window results out, every bid counted once.
#[test]
fn the_sql_kafka_example_runs_exactly_once() {
    let input = topic("sql-bids", 2);
    let output = topic("sql-stats", 1);
    let bids = (0..2_000i64).map(|i| {
        let time = time_on_2024_01_01(i * 25);
        let value = format!(
            r#"{{"auction": {}, "bidder": {}, "price": {}, "date_time": "{time}"}}"#,
            i % 7,
            i % 13,
            100 + i
        );
        (Some((i % 2) as i32), value, OwnedHeaders::new())
    });
    produce(&input, bids);
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sql/kafka_to_kafka.sql");
    let sql = std::fs::read_to_string(path)
        .unwrap()
        .replace(
            "'topic' = 'bids'",
            &format!("'topic' = '{input}', 'scan.bounded.mode' = 'latest-offset'"),
        )
        .replace(
            "'topic' = 'auction-stats'",
            &format!("'topic' = '{output}', 'sink.transactional-id-prefix' = '{output}'"),
        )
        .replace("127.0.0.1:9092", &bootstrap());
    let state = std::env::temp_dir().join(format!("weir-sql-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--shards", "2", "--state-dir"])
        .arg(&state)
        .args(["-e", &sql])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let messages = committed_messages(&output);
    let counted: u64 = messages
        .iter()
        .map(|m| {
            let value = m.split_once('|').unwrap().1;
            value
                .split("\"bids\":")
                .nth(1)
                .and_then(|r| r.split([',', '}']).next())
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    // 2,000 bids over 50 s: 5 windows of 10 s x 7 auctions, every bid in exactly one.
    assert_eq!(messages.len(), 35, "{messages:?}");
    assert_eq!(counted, 2_000);
    let _ = std::fs::remove_dir_all(&state);
}

/// Every message of `topic` (in order, for a one-partition topic) until it is quiet for two
/// seconds: (key, value; `None` for a tombstone); only committed ones with `read_committed`.
fn read_topic(topic: &str, read_committed: bool) -> Vec<(String, Option<String>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let isolation = if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("verify-{topic}"))
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut messages = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(2) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            messages.push((
                text(message.key().unwrap_or_default()),
                message.payload().map(text),
            ));
            last = Instant::now();
        }
    }
    messages
}

/// An updating result (GROUP BY without a window) written to `upsert-kafka` (keyed by the
/// primary key, no `-U` messages) and to `kafka` with `debezium-json` envelopes: replaying
/// either topic in order gives the final counts.
#[test]
fn updating_results_go_to_upsert_kafka_and_debezium_json() {
    let input = topic("changelog-bids", 2);
    let upsert = topic("changelog-upsert", 1);
    let debezium = topic("changelog-debezium", 1);
    produce(
        &input,
        (0..500i64).map(|i| {
            let value = format!(r#"{{"auction": {}, "price": {i}}}"#, i % 5);
            (Some((i % 2) as i32), value, OwnedHeaders::new())
        }),
    );
    let kafka = |topic: &str| {
        format!(
            "'topic' = '{topic}', 'properties.bootstrap.servers' = '{}'",
            bootstrap()
        )
    };
    let sql = format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT)
           WITH ('connector' = 'kafka', {}, 'scan.startup.mode' = 'earliest-offset',
                 'scan.bounded.mode' = 'latest-offset', 'format' = 'json', 'scan.batch-size' = '16');
         CREATE TABLE by_key (auction BIGINT, bids BIGINT, top BIGINT, PRIMARY KEY (auction) NOT ENFORCED)
           WITH ('connector' = 'upsert-kafka', {}, 'key.format' = 'json', 'value.format' = 'json');
         CREATE TABLE envelopes (auction BIGINT, bids BIGINT, top BIGINT)
           WITH ('connector' = 'kafka', {}, 'value.format' = 'debezium-json');
         EXECUTE STATEMENT SET BEGIN
           INSERT INTO by_key SELECT auction, COUNT(*), MAX(price) FROM bids GROUP BY auction;
           INSERT INTO envelopes SELECT auction, COUNT(*), MAX(price) FROM bids GROUP BY auction;
         END;",
        kafka(&input),
        kafka(&upsert),
        kafka(&debezium)
    );
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--shards", "2", "-e", &sql])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected: std::collections::BTreeMap<String, String> = (0..5)
        .map(|a| {
            (
                format!(r#"{{"auction":{a}}}"#),
                format!(r#"{{"auction":{a},"bids":100,"top":{}}}"#, 495 + a),
            )
        })
        .collect();
    // Upsert: the last value per key; no message is a retraction.
    let mut last = std::collections::BTreeMap::new();
    let upserts = read_topic(&upsert, false);
    assert!(
        upserts.len() > 10,
        "batches of 16 rows update each auction several times"
    );
    for (key, value) in upserts {
        last.insert(key, value.expect("no deletes in this job"));
    }
    assert_eq!(last, expected);
    // Debezium: replaying the envelopes leaves the final rows.
    let mut rows = std::collections::BTreeSet::new();
    for (_, value) in read_topic(&debezium, false) {
        let value = value.expect("a value");
        let row = |field: &str| {
            let rest = value.split(&format!(r#""{field}":"#)).nth(1)?;
            rest.starts_with('{')
                .then(|| rest[..=rest.find('}').unwrap()].to_string())
        };
        match (row("before"), row("after")) {
            (Some(before), None) if value.ends_with(r#""op":"d"}"#) => {
                assert!(rows.remove(&before), "{value}")
            }
            (None, Some(after)) if value.ends_with(r#""op":"c"}"#) => {
                assert!(rows.insert(after), "{value}")
            }
            _ => panic!("not an envelope: {value}"),
        }
    }
    assert_eq!(rows, expected.values().cloned().collect());
}

/// Writes keyed messages to `topic`, partition 0; a `None` value is a tombstone.
fn produce_keyed(topic: &str, messages: &[(&str, Option<&str>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    runtime().block_on(async {
        for (key, value) in messages {
            let mut record = FutureRecord::<str, str>::to(topic).key(key).partition(0);
            if let Some(value) = value {
                record = record.payload(value);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap();
        }
    });
}

/// Changelog topics read as versioned tables: `upsert-kafka` (values replace their key's
/// row, a tombstone deletes it; normalized into `-U`/`+U`/`-D`) and `kafka` with
/// `debezium-json` (Debezium's own tombstones skipped). Each is joined `FOR SYSTEM_TIME AS OF`
/// the orders' time, and read whole in table mode.
#[test]
fn upsert_and_debezium_topics_are_versioned_tables() {
    let upserts = topic("versioned-upsert", 1);
    let changes = topic("versioned-debezium", 1);
    let row = |cust: i64, rate: i64, second: i64| {
        format!(r#"{{"cust":{cust},"rate":{rate},"ts":"2024-01-01 00:00:{second:02}"}}"#)
    };
    let (a, b, c, d) = (row(1, 10, 0), row(1, 11, 5), row(2, 20, 0), row(3, 30, 0));
    let key = |cust: i64| format!(r#"{{"cust":{cust}}}"#);
    let (k1, k2, k3) = (key(1), key(2), key(3));
    produce_keyed(
        &upserts,
        &[
            (&k1, Some(&a)),
            (&k2, Some(&c)),
            (&k1, Some(&b)),
            (&k1, Some(&b)),
            (&k3, Some(&d)),
            (&k3, None),
        ],
    );
    let envelope = |before: &str, after: &str, op: &str| {
        format!(r#"{{"before":{before},"after":{after},"op":"{op}","ts_ms":0}}"#)
    };
    produce_keyed(
        &changes,
        &[
            (&k1, Some(&envelope("null", &a, "r"))),
            (&k2, Some(&envelope("null", &c, "c"))),
            (&k1, Some(&envelope(&a, &b, "u"))),
            (&k3, Some(&envelope("null", &d, "c"))),
            (&k3, Some(&envelope(&d, "null", "d"))),
            (&k3, None),
        ],
    );
    let dir = std::env::temp_dir().join(format!("weir-versioned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let orders = dir.join("orders.csv");
    std::fs::write(
        &orders,
        "1,1,2024-01-01 00:00:03\n2,1,2024-01-01 00:00:06\n3,2,2024-01-01 00:00:06\n4,3,2024-01-01 00:00:06\n",
    )
    .unwrap();
    let kafka = |topic: &str| {
        format!(
            "'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', 'scan.bounded.mode' = 'latest-offset'",
            bootstrap()
        )
    };
    let columns = "cust BIGINT, rate INT, ts TIMESTAMP(3), PRIMARY KEY (cust) NOT ENFORCED, WATERMARK FOR ts AS ts";
    let sql = format!(
        "CREATE TABLE by_key ({columns}) WITH ('connector' = 'upsert-kafka', {},
           'key.format' = 'json', 'value.format' = 'json');
         CREATE TABLE changes ({columns}) WITH ('connector' = 'kafka', {},
           'scan.startup.mode' = 'earliest-offset', 'value.format' = 'debezium-json');
         CREATE TABLE orders (id INT, cust BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         SELECT 'upsert', o.id, r.rate FROM orders AS o
           LEFT JOIN by_key FOR SYSTEM_TIME AS OF o.ts AS r ON o.cust = r.cust;
         SELECT 'debezium', o.id, r.rate FROM orders AS o
           LEFT JOIN changes FOR SYSTEM_TIME AS OF o.ts AS r ON o.cust = r.cust;
         SET 'sql-client.execution.result-mode' = 'table';
         SELECT 'upsert-table', cust, rate FROM by_key;
         SELECT 'debezium-table', cust, rate FROM changes;",
        kafka(&upserts),
        kafka(&changes),
        orders.display()
    );
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--shards", "2", "-e", &sql])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut lines: Vec<String> = stdout
        .lines()
        .map(|l| l.replace(r#"{"op":"+I","#, "{"))
        .collect();
    lines.sort();
    let expected = |name: &str| {
        vec![
            // Order 1 at 0:03 takes rate 10; order 2 at 0:06 the update at 0:05; customer
            // 2 never changed; customer 3 is deleted (its last version is a deletion).
            format!(r#"{{"EXPR$0":"{name}","id":1,"rate":10}}"#),
            format!(r#"{{"EXPR$0":"{name}","id":2,"rate":11}}"#),
            format!(r#"{{"EXPR$0":"{name}","id":3,"rate":20}}"#),
            format!(r#"{{"EXPR$0":"{name}","id":4}}"#),
        ]
    };
    let table = |name: &str| {
        vec![
            format!(r#"{{"EXPR$0":"{name}","cust":1,"rate":11}}"#),
            format!(r#"{{"EXPR$0":"{name}","cust":2,"rate":20}}"#),
        ]
    };
    let mut all = [
        expected("debezium"),
        expected("upsert"),
        table("debezium-table"),
        table("upsert-table"),
    ]
    .concat();
    all.sort();
    assert_eq!(lines, all, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ms` after midnight of 2024-01-01 as SQL's `TIMESTAMP(3)` text (under a day).
fn time_on_2024_01_01(ms: i64) -> String {
    let (s, ms) = (ms / 1000, ms % 1000);
    format!(
        "2024-01-01 {:02}:{:02}:{:02}.{ms:03}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Produces 20 000 bids (auction, price, date_time) into a new topic of 2 partitions.
fn bids_topic(name: &str) -> String {
    let input = topic(name, 2);
    produce(
        &input,
        (0..20_000i64).map(|i| {
            let time = time_on_2024_01_01(i * 5);
            let value = format!(
                r#"{{"auction": {}, "price": {}, "date_time": "{time}"}}"#,
                i % 97,
                (i * 7_919) % 100_003
            );
            (Some((i % 2) as i32), value, OwnedHeaders::new())
        }),
    );
    input
}

/// Runs `weir run` over the bids of `bids_topic` into an exactly-once `upsert-kafka` table
/// `out` (`columns`, its primary key and `insert`, the `INSERT INTO out ...`), once
/// uninterrupted and once killed with SIGKILL at random points and restarted from its
/// checkpoints, and asserts both end with the same table: the committed upserts (and
/// tombstones) applied by key. Returns that table's size.
fn assert_upsert_job_survives_kills(
    name: &str,
    columns: &str,
    insert: &str,
    args: &[&str],
) -> usize {
    let input = bids_topic(&format!("{name}-in"));
    let job = |output: &str, state: &std::path::Path| {
        let sql = format!(
            "CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP(3))
               WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{b}',
                     'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
                     'format' = 'json', 'scan.batch-size' = '500');
             CREATE TABLE out ({columns})
               WITH ('connector' = 'upsert-kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{b}',
                     'key.format' = 'json', 'value.format' = 'json',
                     'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = '{output}');
             {insert}",
            b = bootstrap()
        );
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["run", "--shards", "2", "--checkpoint-interval", "100ms"])
            .args(args)
            .arg("--state-dir")
            .arg(state)
            .args(["-e", &sql])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    };
    // The table a topic's committed upserts end with: key -> value (tombstones delete).
    let table = |topic: &str| {
        let mut rows = std::collections::BTreeMap::new();
        for (key, value) in read_topic(topic, true) {
            match value {
                Some(value) => rows.insert(key, value),
                None => rows.remove(&key),
            };
        }
        rows
    };
    let dir = std::env::temp_dir().join(format!("weir-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clean_topic = topic(&format!("{name}-clean"), 1);
    let started = Instant::now();
    let clean = job(&clean_topic, &dir.join("clean")).output().unwrap();
    let run_time = started.elapsed();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let expected = table(&clean_topic);

    let (output, kills) = until_killed(run_time, &|run_time| {
        let output = topic(&format!("{name}-crash"), 1);
        let state = dir.join(&output);
        (
            kill_at_random(3, run_time, 0.2, &|| job(&output, &state)),
            output,
        )
    });
    let last = job(&output, &dir.join(&output)).output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert!(
        table(&output) == expected,
        "{name}: the table after {kills} kills differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
    expected.len()
}

/// A Top-N (Kafka → top 3 bids per auction → upsert-kafka, exactly-once) killed and
/// restarted ends with the table an uninterrupted run ends with. Only the prices are output,
/// so equal prices ranked in either order give the same table.
#[test]
fn top_n_to_upsert_kafka_is_exactly_once_across_kill_and_restart() {
    let rows = assert_upsert_job_survives_kills(
        "topn",
        "auction BIGINT, rn BIGINT, price BIGINT, PRIMARY KEY (auction, rn) NOT ENFORCED",
        "INSERT INTO out SELECT auction, rn, price FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids
         ) WHERE rn <= 3;",
        &[],
    );
    assert_eq!(rows, 97 * 3, "three ranks per auction");
}

/// A GROUP BY over about 4500 keys whose state (about 1 MiB) spills past a 256 KiB budget,
/// killed and restarted, ends with the table an uninterrupted run ends with.
#[test]
fn a_spilled_group_by_to_upsert_kafka_is_exactly_once_across_kill_and_restart() {
    let rows = assert_upsert_job_survives_kills(
        "spilled",
        "k BIGINT, c BIGINT, mx BIGINT, PRIMARY KEY (k) NOT ENFORCED",
        "INSERT INTO out SELECT k, COUNT(*) AS c, MAX(auction) AS mx
           FROM (SELECT price % 5003 AS k, auction FROM bids) GROUP BY k;",
        &["--state-memory-budget", "256kb"],
    );
    let keys: std::collections::HashSet<i64> = (0..20_000i64)
        .map(|i| (i * 7_919) % 100_003 % 5_003)
        .collect();
    assert_eq!(rows, keys.len(), "one row per key");
}
