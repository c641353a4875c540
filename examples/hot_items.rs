//! Hot items: per auction and 10-second tumbling window, the number of bids, the average and
//! top price and the number of distinct bidders, over one million generated bids; prints the
//! windows of auctions with more than 50 bids.
//!
//! Run: `cargo run --release --example hot_items`
//! (`weir demo` runs a sibling job with hopping windows.)

use std::time::Duration;

use weir::prelude::*;

fn main() -> Result<(), WeirError> {
    let bids = BidGenerator::new(BidGeneratorConfig {
        events: 1_000_000,
        auctions: 1_000,
        ..BidGeneratorConfig::default()
    });
    let result = Pipeline::new("hot-items")
        .source(bids)
        .watermark("date_time", Duration::from_secs(1))
        .key_by(["auction"])
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([
            count_all().alias("bids"),
            avg(col("price")).alias("avg_price"),
            max(col("price")).alias("top_price"),
            count_distinct(col("bidder")).alias("bidders"),
        ])
        .filter(col("bids").gt(lit(50)))
        .sink(PrintSink::default())
        .run(RunOptions::default())?;
    let late = result
        .metrics
        .total(weir::engine::metrics::names::LATE_ROWS_DROPPED);
    eprintln!("done; late rows dropped: {late}");
    Ok(())
}
