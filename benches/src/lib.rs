//! Shared helpers of Weir's benchmark binaries (`windows`, `formats`, `kafka`).

/// Peak resident memory of this process in MiB, from /proc/self/status (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A bid-like batch of `rows` rows starting at row `first`: auction, bidder, price, channel,
/// url, date_time (the shape of the peers' CSV).
pub fn bids(first: i64, rows: usize) -> arrow::record_batch::RecordBatch {
    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let ids = first..first + rows as i64;
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new(
            "date_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(
                ids.clone().map(|i| (i * 7919) % 10_000),
            )),
            Arc::new(Int64Array::from_iter_values(
                ids.clone().map(|i| (i * 104_729) % 100_000),
            )),
            Arc::new(Int64Array::from_iter_values(
                ids.clone().map(|i| 100 + (i * 31) % 10_000),
            )),
            Arc::new(StringArray::from_iter_values(ids.clone().map(|i| {
                ["Google", "Facebook", "Baidu", "Apple"][(i % 4) as usize]
            }))),
            Arc::new(StringArray::from_iter_values(ids.clone().map(|i| {
                format!("https://www.nexmark.com/item.htm?query={}", i % 1000)
            }))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                ids.map(|i| 1_704_067_200_000 + i),
            )),
        ],
    )
    .expect("columns match")
}

/// A source of `rows` rows of [`bids`], in batches of 8192, split across subtasks.
#[derive(Debug, Clone, Copy)]
pub struct BidBatches {
    pub rows: u64,
}

impl weir::engine::source::SourceFactory for BidBatches {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        bids(0, 0).schema()
    }

    fn describe(&self) -> String {
        format!("{} bid rows", self.rows)
    }

    fn create_reader(
        &self,
        split: weir::engine::source::SplitContext,
    ) -> Result<Box<dyn weir::engine::source::SourceReader>, weir::engine::BoxError> {
        let p = split.parallelism as u64;
        let j = split.index as u64;
        Ok(Box::new(BidBatchReader {
            next: j * self.rows / p,
            end: (j + 1) * self.rows / p,
        }))
    }
}

struct BidBatchReader {
    next: u64,
    end: u64,
}

impl weir::engine::source::SourceReader for BidBatchReader {
    fn next_batch(
        &mut self,
    ) -> weir::engine::source::LocalBoxFuture<
        '_,
        Result<Option<weir::engine::source::SourceBatch>, weir::engine::BoxError>,
    > {
        let rows = (self.end - self.next).min(8192);
        let first = self.next;
        self.next += rows;
        Box::pin(async move { Ok((rows > 0).then(|| bids(first as i64, rows as usize).into())) })
    }
}
