//! A sink that writes the rows a changelog leaves instead of the changes: Flink's SQL client
//! `table` result mode (`SET 'sql-client.execution.result-mode' = 'table'`). Each subtask
//! applies the changes it receives and writes its remaining rows, sorted, to the inner sink
//! when its input ends. Every change to one row reaches the same subtask (the operators that
//! emit changelogs are keyed), so the per-subtask tables add up to the whole result.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use weir_engine::changelog::Materialized;
use weir_engine::message::{CheckpointId, Watermark};
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::BoxError;

/// Materializes the changelog it receives into `inner`.
pub struct MaterializeSink {
    inner: Arc<dyn SinkFactory>,
}

impl MaterializeSink {
    pub fn new(inner: Arc<dyn SinkFactory>) -> Self {
        MaterializeSink { inner }
    }
}

impl SinkFactory for MaterializeSink {
    fn describe(&self) -> String {
        format!("materialized table into {}", self.inner.describe())
    }

    fn accepts_changelog(&self) -> bool {
        true
    }

    fn create_writer(&self, context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(MaterializeWriter {
            table: Materialized::new(context.input_schema())?,
            inner: self.inner.create_writer(context)?,
        }))
    }
}

struct MaterializeWriter {
    table: Materialized,
    inner: Box<dyn SinkWriter>,
}

impl SinkWriter for MaterializeWriter {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        let applied = self.table.apply(&batch).map_err(BoxError::from);
        Box::pin(async move { applied })
    }

    fn on_watermark(&mut self, watermark: Watermark) {
        self.inner.on_watermark(watermark);
    }

    fn on_barrier(
        &mut self,
        checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<Option<String>, BoxError>> {
        self.inner.on_barrier(checkpoint)
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let rows = self.table.rows()?;
            if rows.num_rows() > 0 {
                self.inner.write_batch(rows).await?;
            }
            self.inner.finish().await
        })
    }
}
