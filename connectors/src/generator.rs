//! A deterministic generator of auction bids, for examples, tests and benchmarks.
//!
//! Event `i` is a pure function of `(seed, i)`, so the stream is the same at any parallelism:
//! split `j` of `P` produces events `j, j + P, j + 2P, ...` in order, so every split advances
//! through event time at the same pace (as Nexmark's generator does). Event time advances by one
//! millisecond every `events_per_ms` events from `start_ms`, minus a pseudo-random disorder of
//! up to `max_disorder_ms`. Half of the bids go to a few hot auctions (1% of `auctions`).
//! Columns: `auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3)`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir_engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir_engine::BoxError;

use crate::pace::Pacer;

/// Parameters of the bid stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidGeneratorConfig {
    /// Total number of events over all splits.
    pub events: u64,
    /// Number of distinct auctions (the usual key).
    pub auctions: u64,
    pub bidders: u64,
    /// How far behind the in-order time an event may be.
    pub max_disorder_ms: i64,
    /// Events per millisecond of event time.
    pub events_per_ms: u64,
    /// Event time of the first event (default 2024-01-01T00:00:00Z).
    pub start_ms: i64,
    pub seed: u64,
    pub batch_size: usize,
    /// Events per second over all splits; `None` produces as fast as possible.
    pub rate_per_second: Option<u64>,
}

impl Default for BidGeneratorConfig {
    fn default() -> Self {
        BidGeneratorConfig {
            events: 1_000_000,
            auctions: 10_000,
            bidders: 100_000,
            max_disorder_ms: 200,
            events_per_ms: 1,
            start_ms: 1_704_067_200_000,
            seed: 42,
            batch_size: 4096,
            rate_per_second: None,
        }
    }
}

/// The bid generator source.
#[derive(Debug, Clone)]
pub struct BidGenerator {
    config: BidGeneratorConfig,
    schema: SchemaRef,
}

impl BidGenerator {
    pub fn new(config: BidGeneratorConfig) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("bidder", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
            Field::new(
                "date_time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        BidGenerator { config, schema }
    }

    pub fn config(&self) -> &BidGeneratorConfig {
        &self.config
    }

    /// Event `i`: `(auction, bidder, price, date_time)`.
    pub fn event(config: &BidGeneratorConfig, i: u64) -> (i64, i64, i64, i64) {
        let r1 = splitmix64(config.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let r2 = splitmix64(r1);
        let hot = (config.auctions / 100).max(1);
        let auction = if r1 & 1 == 0 {
            (r1 >> 1) % hot
        } else {
            (r1 >> 1) % config.auctions.max(1)
        };
        let bidder = (r2 >> 20) % config.bidders.max(1);
        let price = 100 + (r2 & 0xFFFF) % 10_000;
        let disorder = if config.max_disorder_ms > 0 {
            ((r2 >> 40) % (config.max_disorder_ms as u64 + 1)) as i64
        } else {
            0
        };
        let time = config.start_ms + (i / config.events_per_ms.max(1)) as i64 - disorder;
        (auction as i64, bidder as i64, price as i64, time)
    }
}

/// SplitMix64: a small, high-quality, fixed pseudo-random mix.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SourceFactory for BidGenerator {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn describe(&self) -> String {
        format!(
            "bid generator ({} events, {} auctions, disorder {} ms)",
            self.config.events, self.config.auctions, self.config.max_disorder_ms
        )
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let stride = split.parallelism as u64;
        let (next, produced) = match crate::resume::restored(&split, 2)? {
            Some(numbers) => (numbers[0], numbers[1]),
            None => (split.index as u64, 0),
        };
        Ok(Box::new(BidReader {
            config: self.config,
            schema: Arc::clone(&self.schema),
            next,
            stride,
            produced,
            end: self.config.events,
            pacer: Pacer::new(self.config.rate_per_second, split.parallelism),
        }))
    }
}

struct BidReader {
    config: BidGeneratorConfig,
    schema: SchemaRef,
    /// Next event index of this split; the split takes every `stride`-th event.
    next: u64,
    stride: u64,
    /// Events produced so far by this split.
    produced: u64,
    end: u64,
    pacer: Pacer,
}

impl BidReader {
    fn batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let remaining = (self.end - self.next).div_ceil(self.stride);
        let len = remaining.min(self.config.batch_size.max(1) as u64) as usize;
        let mut auction = Vec::with_capacity(len);
        let mut bidder = Vec::with_capacity(len);
        let mut price = Vec::with_capacity(len);
        let mut time = Vec::with_capacity(len);
        for k in 0..len as u64 {
            let (a, b, p, t) = BidGenerator::event(&self.config, self.next + k * self.stride);
            auction.push(a);
            bidder.push(b);
            price.push(p);
            time.push(t);
        }
        self.next += len as u64 * self.stride;
        self.produced += len as u64;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(auction)),
            Arc::new(Int64Array::from(bidder)),
            Arc::new(Int64Array::from(price)),
            Arc::new(TimestampMillisecondArray::from(time)),
        ];
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }
}

impl SourceReader for BidReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            self.pacer.wait(self.produced).await;
            Ok(self.batch()?.map(Into::into))
        })
    }

    fn positions(&self) -> Positions {
        crate::resume::positions(
            self.next % self.stride,
            self.stride,
            &[self.next, self.produced],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_together_produce_every_event_once() {
        use weir_engine::source::SourceFactory;
        let config = BidGeneratorConfig {
            events: 10_001,
            batch_size: 333,
            ..BidGeneratorConfig::default()
        };
        let generator = BidGenerator::new(config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for parallelism in [1, 2, 3] {
            let mut times = Vec::new();
            for index in 0..parallelism {
                let mut reader = generator
                    .create_reader(SplitContext::standalone(index, parallelism))
                    .unwrap();
                while let Some(read) = runtime.block_on(reader.next_batch()).unwrap() {
                    let column = read
                        .batch
                        .column(3)
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .unwrap();
                    times.extend(column.values().iter().copied());
                }
            }
            times.sort();
            let mut expected: Vec<i64> = (0..10_001)
                .map(|i| BidGenerator::event(&config, i).3)
                .collect();
            expected.sort();
            assert_eq!(times, expected, "parallelism {parallelism}");
        }
    }

    #[test]
    fn events_are_deterministic_and_within_bounds() {
        let config = BidGeneratorConfig::default();
        for i in 0..10_000 {
            let (a, b, p, t) = BidGenerator::event(&config, i);
            assert_eq!((a, b, p, t), BidGenerator::event(&config, i));
            assert!((0..10_000).contains(&a) && (0..100_000).contains(&b));
            assert!((100..10_100).contains(&p));
            let in_order = config.start_ms + i as i64;
            assert!(t <= in_order && t >= in_order - 200);
        }
    }
}
