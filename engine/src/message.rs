//! The messages that travel on every edge of the dataflow, in band with the data.
//!
//! Data moves as Arrow [`RecordBatch`]es, never row by row. Control travels on the same
//! channels so that its order relative to the data is exact: a watermark promises that no
//! later row on that channel has an event time at or below it; a barrier cuts the stream into
//! before/after a checkpoint; end-of-stream says the channel is finished.

use arrow::record_batch::RecordBatch;

/// Event time in milliseconds since the Unix epoch.
pub type EventTimeMs = i64;

/// Progress of event time on a channel.
///
/// `EventTime(t)` follows Flink's convention: no further row with an event time `<= t` is
/// expected. A window `[start, end)` is complete once the watermark reaches `end - 1`.
/// `Idle` says the channel has no data for now and must not hold back the minimum over inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watermark {
    EventTime(EventTimeMs),
    Idle,
}

impl Watermark {
    /// The final watermark: every window is complete. End of stream implies it.
    pub const MAX: Watermark = Watermark::EventTime(EventTimeMs::MAX);
}

/// Identifier of a checkpoint; increases by one per checkpoint of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(pub u64);

/// One message on a dataflow edge.
#[derive(Debug, Clone)]
pub enum Message {
    Batch(RecordBatch),
    Watermark(Watermark),
    Barrier(CheckpointId),
    EndOfStream,
}
