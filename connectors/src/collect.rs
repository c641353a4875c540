//! A sink that keeps every batch it receives, for tests and for embedding Weir in a program.

use std::sync::{Arc, Mutex};

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::{BoxError, CheckpointId, Watermark};

/// Collects batches from all subtasks into one shared list.
#[derive(Clone, Default)]
pub struct CollectSink {
    batches: Arc<Mutex<Vec<RecordBatch>>>,
    finished: Arc<Mutex<usize>>,
    watermarks: Arc<Mutex<Vec<Watermark>>>,
    barriers: Arc<Mutex<Vec<CheckpointId>>>,
}

impl CollectSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything received so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything received so far as one batch (`None` if nothing arrived).
    pub fn concat(&self) -> Option<RecordBatch> {
        let batches = self.batches();
        let schema: SchemaRef = batches.first()?.schema();
        concat_batches(&schema, &batches).ok()
    }

    /// Total rows received.
    pub fn rows(&self) -> usize {
        self.batches().iter().map(|b| b.num_rows()).sum()
    }

    /// How many subtasks have seen end of stream.
    pub fn finished_subtasks(&self) -> usize {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Barriers received by all subtasks, in arrival order.
    pub fn barriers(&self) -> Vec<CheckpointId> {
        self.barriers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Watermarks received by all subtasks, in arrival order.
    pub fn watermarks(&self) -> Vec<Watermark> {
        self.watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl SinkFactory for CollectSink {
    fn accepts_changelog(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "collect (in memory)".into()
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for CollectSink {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(batch);
        Box::pin(async { Ok(()) })
    }

    fn on_watermark(&mut self, watermark: Watermark) {
        self.watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watermark);
    }

    fn on_barrier(
        &mut self,
        checkpoint: CheckpointId,
    ) -> LocalBoxFuture<'_, Result<Option<String>, BoxError>> {
        self.barriers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(checkpoint);
        Box::pin(async { Ok(None) })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Box::pin(async { Ok(()) })
    }
}
