//! Hot items: the number of bids and the top price per auction in 10-second windows that
//! slide every 2 seconds, over one million generated bids; prints windows with at least 20 bids.
//!
//! Run: `cargo run --release --example hot_items`

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
        .watermark("date_time", Duration::from_secs(2))
        .key_by(["auction"])
        .window(Window::hop(Duration::from_secs(10), Duration::from_secs(2)))
        .aggregate([
            count_all().alias("bids"),
            max(col("price")).alias("top_price"),
        ])
        .filter(col("bids").gt_eq(lit(20)))
        .sink(PrintSink::default())
        .run(RunOptions::default())?;
    let late = result
        .metrics
        .total(weir::engine::metrics::names::LATE_ROWS_DROPPED);
    eprintln!("done; late rows dropped: {late}");
    Ok(())
}
