//! JSON files to Parquet: reads every JSON-lines file under a directory, keeps bids above a
//! price, and writes them as Parquet part files partitioned by channel.
//!
//! Run: `cargo run --release --example json_to_parquet [INPUT_DIR] [OUTPUT_DIR]`
//! Without arguments it first writes a small sample input under the system temp directory.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use weir::connectors::registry::{create_sink, create_source, TableSpec};
use weir::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let temp = std::env::temp_dir().join("weir-json-to-parquet");
    let input = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| temp.join("in"));
    let output = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| temp.join("out"));
    if !input.exists() {
        std::fs::create_dir_all(&input)?;
        let channels = ["Google", "Facebook", "Baidu", "Apple"];
        for file in 0..3 {
            let lines: Vec<String> = (0..1000)
                .map(|i| {
                    format!(
                        r#"{{"auction": {}, "price": {}, "channel": "{}", "date_time": "2024-01-01 00:{:02}:{:02}.000"}}"#,
                        i % 50,
                        (i * 37) % 500,
                        channels[i % 4],
                        file,
                        i % 60
                    )
                })
                .collect();
            std::fs::write(input.join(format!("bids-{file}.json")), lines.join("\n"))?;
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let source = create_source(&TableSpec::new(
        "bids",
        Arc::clone(&schema),
        &[
            ("connector", "filesystem"),
            ("path", &input.to_string_lossy()),
            ("format", "json"),
            ("json.ignore-parse-errors", "true"),
        ],
    ))?;
    let mut sink_table = TableSpec::new(
        "expensive_bids",
        schema,
        &[
            ("connector", "filesystem"),
            ("path", &output.to_string_lossy()),
            ("format", "parquet"),
        ],
    );
    sink_table.partition_by = vec!["channel".into()];
    let result = Pipeline::new("json-to-parquet")
        .source_arc(source)
        .filter(col("price").gt(lit(250)))
        .sink_arc(create_sink(&sink_table)?)
        .run(RunOptions::default())?;
    let skipped = result
        .metrics
        .total(weir::connectors::metric_names::BAD_RECORDS_SKIPPED);
    println!(
        "wrote Parquet under {} ({skipped} bad input lines skipped)",
        output.display()
    );
    Ok(())
}
