//! SQL golden tests: every `tests/slt/*.slt` file (sqllogictest format, as DataFusion's) runs
//! through a real [`Session`] and the engine, at 1, 2 and 4 shards.
//!
//! `statement ok` / `statement error <regex>` run DDL, `SET`, `INSERT` (the job runs to its end
//! before the next record); `query` runs a bare `SELECT` (or `EXPLAIN`) and compares its rows,
//! each value as Flink's `CAST(v AS STRING)` writes it (`weir_operators::text`: timestamps
//! `2025-01-01 10:00:00.000`, `TRUE`, `1.0E10`), `NULL` for nulls, so expected rows can be
//! taken from Flink itself (`scripts/flink_golden.py`). Streams have no order across shards: queries use
//! `rowsort`. `__WORK__` is replaced by a fresh directory per file and shard count.
//! `SLT=name` runs only the files whose path contains `name`; `SLT_COMPLETE=1` rewrites the
//! expected rows of those files with Weir's output at 1 shard (review the diff: expected
//! rows are Flink's).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType, Runner, DB};
use weir_connectors::collect::CollectSink;
use weir_engine::changelog::with_op_text;
use weir_engine::runtime::{self, RunOptions};
use weir_operators::text::{to_text, TimestampStyle};
use weir_sql::{Action, Session, SqlError};

struct Weir {
    session: Session,
    shards: usize,
    /// What `__WORK__` stands for.
    work: PathBuf,
}

impl Weir {
    /// `SET 'parallelism.default'` wins over the shard count of the run, as in `weir run`.
    fn options(&self) -> RunOptions {
        RunOptions::default().shards(self.session.settings.parallelism.unwrap_or(self.shards))
    }
}

impl Weir {
    /// Paths under the work directory, written as `__WORK__` again.
    fn unwork(&self, value: String) -> String {
        value.replace(self.work.to_string_lossy().as_ref(), "__WORK__")
    }
}

fn rows(sink: &CollectSink) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in sink.batches() {
        // A changelog shows its row kinds as Flink's `op` column, first.
        let batch = with_op_text(&batch).expect("a changelog batch");
        let flink_text: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| match to_text(c.as_ref(), TimestampStyle::CAST) {
                Some(text) => text.expect("Flink's text of a value"),
                None => ArrayRef::clone(c),
            })
            .collect();
        let formatters: Vec<ArrayFormatter> = flink_text
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable"))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        // sqllogictest's spelling of an empty string.
                        empty if empty.is_empty() => "(empty)".to_string(),
                        value => value,
                    })
                    .collect(),
            );
        }
    }
    rows
}

impl DB for Weir {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let sink = CollectSink::new();
        let sql = sql.replace("__WORK__", &self.work.to_string_lossy());
        let actions = self.session.execute(&sql, &|_| Arc::new(sink.clone()))?;
        if let Some(job) = self.session.take_insert_job() {
            runtime::run(&job.graph, self.options())?;
        }
        let mut output = DBOutput::StatementComplete(0);
        for action in actions {
            output = match action {
                Action::Query(job) => {
                    runtime::run(&job.graph, self.options())?;
                    let rows = rows(&sink)
                        .into_iter()
                        .map(|row| row.into_iter().map(|v| self.unwork(v)).collect())
                        .collect();
                    let width = job.columns.map_or(0, |c| c.fields().len());
                    DBOutput::Rows {
                        types: vec![DefaultColumnType::Any; width],
                        rows,
                    }
                }
                Action::Explain(job) => {
                    let text = runtime::explain(&job.graph, &self.options())?;
                    DBOutput::Rows {
                        types: vec![DefaultColumnType::Text],
                        rows: text
                            .lines()
                            .map(|l| vec![self.unwork(l.trim_end().to_string())])
                            .collect(),
                    }
                }
            };
        }
        Ok(output)
    }
}

#[test]
fn sql_golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let only = std::env::var("SLT").ok();
    let mut failures = Vec::new();
    for file in &files {
        if only
            .as_ref()
            .is_some_and(|o| !file.to_string_lossy().contains(o.as_str()))
        {
            continue;
        }
        for shards in [1, 2, 4] {
            let work = std::env::temp_dir().join(format!(
                "weir-slt-{}-{}-{shards}",
                std::process::id(),
                file.file_stem().unwrap_or_default().to_string_lossy()
            ));
            let _ = std::fs::remove_dir_all(&work);
            let runner_work = work.clone();
            let mut runner = Runner::new(move || {
                let work = runner_work.clone();
                async move {
                    Ok(Weir {
                        session: Session::new(),
                        shards,
                        work,
                    })
                }
            });
            runner.with_column_validator(|_, _| true);
            if shards == 1 && std::env::var_os("SLT_COMPLETE").is_some() {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime")
                    .block_on(runner.update_test_file(
                        file,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        |_, _| true,
                    ))
                    .expect("the file is rewritten");
                continue;
            }
            if let Err(error) = runner.run_file(file) {
                failures.push(format!("{} at {shards} shards:\n{error}", file.display()));
            }
            let _ = std::fs::remove_dir_all(&work);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
