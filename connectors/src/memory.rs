//! A source that replays batches given up front, one list of batches per split.
//!
//! With `P` subtasks and `S` splits, subtask `i` reads splits `i, i + P, ...` in turn, so every
//! split is read exactly once at any parallelism and each split's order is kept.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_engine::source::{LocalBoxFuture, SourceBatch, SourceFactory, SourceReader, SplitContext};
use weir_engine::BoxError;

use crate::error::ConnectorError;

/// Batches in memory, per split.
pub struct MemorySource {
    schema: SchemaRef,
    splits: Arc<Vec<Vec<RecordBatch>>>,
}

impl MemorySource {
    /// Every batch must have `schema`.
    pub fn new(schema: SchemaRef, splits: Vec<Vec<RecordBatch>>) -> Result<Self, ConnectorError> {
        for (index, split) in splits.iter().enumerate() {
            for batch in split {
                if batch.schema().fields() != schema.fields() {
                    return Err(ConnectorError::Config {
                        connector: "memory".into(),
                        message: format!(
                            "a batch of split {index} does not have the declared schema"
                        ),
                    });
                }
            }
        }
        Ok(MemorySource {
            schema,
            splits: Arc::new(splits),
        })
    }

    pub fn splits(&self) -> usize {
        self.splits.len()
    }
}

impl SourceFactory for MemorySource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn describe(&self) -> String {
        format!("memory ({} splits)", self.splits.len())
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let batches: VecDeque<RecordBatch> = (split.index..self.splits.len())
            .step_by(split.parallelism)
            .flat_map(|s| self.splits[s].iter().cloned())
            .collect();
        Ok(Box::new(MemoryReader { batches }))
    }
}

struct MemoryReader {
    batches: VecDeque<RecordBatch>,
}

impl SourceReader for MemoryReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            // Let other subtasks of the shard run between batches. A call dropped here (a
            // barrier arrived) has taken nothing: the batch is taken after the yield.
            tokio::task::yield_now().await;
            Ok(self.batches.pop_front().map(Into::into))
        })
    }
}
