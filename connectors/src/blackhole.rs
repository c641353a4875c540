//! A sink that discards rows and counts them (for benchmarks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use weir_engine::operator::SubtaskContext;
use weir_engine::sink::{SinkFactory, SinkWriter};
use weir_engine::source::LocalBoxFuture;
use weir_engine::BoxError;

/// Discards everything; [`BlackholeSink::rows`] tells how many rows arrived.
#[derive(Clone, Default)]
pub struct BlackholeSink {
    rows: Arc<AtomicU64>,
}

impl BlackholeSink {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

impl SinkFactory for BlackholeSink {
    fn accepts_changelog(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "blackhole".into()
    }

    fn create_writer(&self, _context: &SubtaskContext) -> Result<Box<dyn SinkWriter>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for BlackholeSink {
    fn write_batch(&mut self, batch: RecordBatch) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }

    fn finish(&mut self) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}
