//! Event time: reading the event-time column of a batch, and generating watermarks at sources.
//!
//! A source split runs a [`WatermarkGenerator`] built from the node's [`WatermarkStrategy`]:
//! after each batch it emits `max(event time seen) - max_out_of_orderness` if that advanced.
//! A split that delivers nothing for `idle_timeout` is declared [`Watermark::Idle`] so that
//! downstream minimums ignore it until it produces data again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::buffer::ScalarBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use thiserror::Error;

use crate::message::{EventTimeMs, Watermark};

/// Problems reading event time from a batch.
#[derive(Debug, Error)]
pub enum TimeError {
    #[error("event-time column '{0}' not found in the schema")]
    MissingColumn(String),
    #[error("event-time column '{column}' has type {data_type}; expected TIMESTAMP or BIGINT milliseconds")]
    WrongType { column: String, data_type: DataType },
    #[error("event-time column '{column}' is NULL in row {row} of the batch")]
    Null { column: String, row: usize },
}

/// How a source split derives watermarks from its rows (bounded out-of-orderness).
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkStrategy {
    /// The event-time column.
    pub column: String,
    /// Rows may arrive up to this much behind the latest event time seen.
    pub max_out_of_orderness: Duration,
    /// A split silent for this long is marked idle; `None` never marks it idle.
    pub idle_timeout: Option<Duration>,
    /// Pause splits that run ahead of their group (`None`: no alignment).
    pub alignment: Option<WatermarkAlignment>,
}

/// Flink's watermark alignment: splits of `group` (across sources) pause while their
/// watermark is more than `max_drift` ahead of the group's slowest
/// (`crate::runtime` explains how it is checked).
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkAlignment {
    /// `scan.watermark.alignment.group`.
    pub group: String,
    /// `scan.watermark.alignment.max-drift`.
    pub max_drift: Duration,
    /// `scan.watermark.alignment.update-interval` (default 1 s): at most this long between
    /// checks of a paused split.
    pub update_interval: Duration,
}

impl WatermarkStrategy {
    pub fn bounded_out_of_orderness(column: impl Into<String>, delay: Duration) -> Self {
        WatermarkStrategy {
            column: column.into(),
            max_out_of_orderness: delay,
            idle_timeout: None,
            alignment: None,
        }
    }

    /// Aligns this source's splits with the other splits of `alignment.group`.
    pub fn with_alignment(mut self, alignment: WatermarkAlignment) -> Self {
        self.alignment = Some(alignment);
        self
    }

    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }
}

/// The wall clock in ms since the Unix epoch: processing time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Event times of column `column` of `batch`, in milliseconds. Accepts TIMESTAMP of any unit
/// (converted to milliseconds) and BIGINT (taken as milliseconds). NULL is an error.
pub fn event_times_ms(
    batch: &RecordBatch,
    column: usize,
) -> Result<ScalarBuffer<EventTimeMs>, TimeError> {
    let array = batch.column(column);
    let name = || batch.schema().field(column).name().clone();
    let millis = match array.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, None) => std::sync::Arc::clone(array),
        DataType::Timestamp(_, _) | DataType::Int64 => {
            cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|_| {
                TimeError::WrongType {
                    column: name(),
                    data_type: array.data_type().clone(),
                }
            })?
        }
        other => {
            return Err(TimeError::WrongType {
                column: name(),
                data_type: other.clone(),
            })
        }
    };
    let millis = millis.as_primitive::<TimestampMillisecondType>();
    if millis.null_count() > 0 {
        let row = (0..millis.len()).find(|&i| millis.is_null(i)).unwrap_or(0);
        return Err(TimeError::Null {
            column: name(),
            row,
        });
    }
    Ok(millis.values().clone())
}

/// The latest event time of `batch` (ms; `None` if no row has one). A changelog's retractions
/// (`-U`, `-D`) may have no time (an upsert tombstone carries only its key): they are left
/// out. A NULL time on any other row is an error, as in [`event_times_ms`].
pub fn max_event_time(
    batch: &RecordBatch,
    column: usize,
) -> Result<Option<EventTimeMs>, TimeError> {
    let kinds = crate::changelog::row_kinds(batch);
    let times = batch.column(column);
    if times.null_count() == 0 || kinds.is_none() {
        return Ok(event_times_ms(batch, column)?.iter().copied().max());
    }
    let timed: arrow::array::BooleanArray = (0..batch.num_rows())
        .map(|row| {
            Some(times.is_valid(row) || crate::changelog::kind_at(kinds, row).is_accumulate())
        })
        .collect();
    let timed =
        arrow::compute::filter_record_batch(batch, &timed).map_err(|_| TimeError::Null {
            column: batch.schema().field(column).name().clone(),
            row: 0,
        })?;
    Ok(event_times_ms(&timed, column)?.iter().copied().max())
}

/// Index of the event-time column in a schema, or a clear error.
pub fn event_time_column(
    schema: &arrow::datatypes::Schema,
    column: &str,
) -> Result<usize, TimeError> {
    schema
        .index_of(column)
        .map_err(|_| TimeError::MissingColumn(column.to_string()))
}

/// Per-split watermark state: the largest event time seen per partition of the split.
///
/// The split's watermark is the minimum over its partitions of `max time - delay`, leaving
/// out partitions idle for longer than the idle timeout (so one quiet Kafka partition does
/// not stall the others). It only moves forward. Splits without partitions have one.
#[derive(Debug)]
pub struct WatermarkGenerator {
    strategy: WatermarkStrategy,
    delay_ms: i64,
    /// Per partition: largest event time seen (none yet for a declared partition without
    /// data), and when its last batch arrived (or when it was declared).
    partitions: BTreeMap<u32, (Option<EventTimeMs>, Instant)>,
    last_emitted: Option<EventTimeMs>,
}

impl WatermarkGenerator {
    pub fn new(strategy: WatermarkStrategy) -> Self {
        let delay_ms = i64::try_from(strategy.max_out_of_orderness.as_millis()).unwrap_or(i64::MAX);
        WatermarkGenerator {
            strategy,
            delay_ms,
            partitions: BTreeMap::new(),
            last_emitted: None,
        }
    }

    pub fn strategy(&self) -> &WatermarkStrategy {
        &self.strategy
    }

    /// The last watermark generated, if any.
    pub fn current(&self) -> Option<EventTimeMs> {
        self.last_emitted
    }

    /// Declares partitions that hold the watermark back until they deliver data or go idle.
    pub fn declare_partitions(&mut self, partitions: &[u32]) {
        let now = Instant::now();
        for partition in partitions {
            self.partitions.entry(*partition).or_insert((None, now));
        }
    }

    /// Observes a batch of one partition; returns the watermark to emit after it, if the
    /// watermark advanced.
    pub fn on_batch(
        &mut self,
        partition: u32,
        batch: &RecordBatch,
    ) -> Result<Option<Watermark>, TimeError> {
        self.on_batch_at(partition, batch, Instant::now())
    }

    fn on_batch_at(
        &mut self,
        partition: u32,
        batch: &RecordBatch,
        now: Instant,
    ) -> Result<Option<Watermark>, TimeError> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let column = event_time_column(&batch.schema(), &self.strategy.column)?;
        let batch_max = max_event_time(batch, column)?;
        let entry = self.partitions.entry(partition).or_insert((None, now));
        // A batch of time-less retractions keeps the partition active without moving it.
        let max = match (entry.0, batch_max) {
            (Some(seen), Some(new)) => Some(seen.max(new)),
            (seen, new) => seen.or(new),
        };
        *entry = (max, now);
        if batch_max.is_none() {
            return Ok(None);
        }
        let idle_after = self.strategy.idle_timeout;
        let active = self
            .partitions
            .values()
            .filter(|(_, seen)| idle_after.is_none_or(|idle| now.duration_since(*seen) < idle));
        let Some(min_max) = active.map(|(max, _)| max.unwrap_or(EventTimeMs::MIN)).min() else {
            return Ok(None);
        };
        if min_max == EventTimeMs::MIN {
            return Ok(None);
        }
        let watermark = min_max.saturating_sub(self.delay_ms);
        if self.last_emitted.is_some_and(|last| last >= watermark) {
            return Ok(None);
        }
        self.last_emitted = Some(watermark);
        Ok(Some(Watermark::EventTime(watermark)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(times: Vec<i64>) -> RecordBatch {
        let schema = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(TimestampMillisecondArray::from(times))],
        )
        .unwrap()
    }

    #[test]
    fn watermark_is_max_minus_delay_and_never_goes_back() {
        let mut generator = WatermarkGenerator::new(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::from_millis(100),
        ));
        assert_eq!(
            generator.on_batch(0, &batch(vec![500, 1000, 700])).unwrap(),
            Some(Watermark::EventTime(900))
        );
        assert_eq!(generator.on_batch(0, &batch(vec![400])).unwrap(), None);
        assert_eq!(
            generator.on_batch(0, &batch(vec![1500])).unwrap(),
            Some(Watermark::EventTime(1400))
        );
    }

    #[test]
    fn the_slowest_partition_holds_the_watermark_until_it_is_idle() {
        let strategy = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::ZERO)
            .with_idle_timeout(Duration::from_secs(10));
        let mut generator = WatermarkGenerator::new(strategy);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            generator
                .on_batch_at(0, &batch(vec![5_000]), at(0))
                .unwrap(),
            Some(Watermark::EventTime(5_000))
        );
        // Partition 1 is behind: it holds the minimum (no watermark goes back).
        assert_eq!(
            generator
                .on_batch_at(1, &batch(vec![1_000]), at(1))
                .unwrap(),
            None
        );
        assert_eq!(
            generator
                .on_batch_at(0, &batch(vec![9_000]), at(2))
                .unwrap(),
            None
        );
        assert_eq!(
            generator
                .on_batch_at(1, &batch(vec![7_000]), at(3))
                .unwrap(),
            Some(Watermark::EventTime(7_000))
        );
        // Partition 1 falls silent; after the idle timeout partition 0 alone decides.
        assert_eq!(
            generator
                .on_batch_at(0, &batch(vec![12_000]), at(5))
                .unwrap(),
            None
        );
        assert_eq!(
            generator
                .on_batch_at(0, &batch(vec![20_000]), at(14))
                .unwrap(),
            Some(Watermark::EventTime(20_000))
        );
    }

    #[test]
    fn a_declared_partition_without_data_holds_the_watermark_back() {
        let mut generator = WatermarkGenerator::new(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::ZERO,
        ));
        generator.declare_partitions(&[0, 1]);
        assert_eq!(generator.on_batch(0, &batch(vec![5_000])).unwrap(), None);
        assert_eq!(
            generator.on_batch(1, &batch(vec![3_000])).unwrap(),
            Some(Watermark::EventTime(3_000))
        );
    }

    #[test]
    fn bigint_times_are_milliseconds_and_nulls_are_errors() {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, true)]));
        let ok = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        assert_eq!(event_times_ms(&ok, 0).unwrap().to_vec(), vec![1, 2]);
        let bad = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        let err = event_times_ms(&bad, 0).unwrap_err().to_string();
        assert!(err.contains("'t' is NULL in row 1"), "{err}");
    }
}
