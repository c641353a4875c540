//! Auction rankings over one million generated bids, three ways:
//! - per 10-second window, the three auctions with the most bids (a window Top-N over window
//!   results: final, printed once per window);
//! - each bidder's first bid (a deduplication by event time: an updating result, counted);
//! - each bid with the average price of its auction's last 10 bids (an OVER aggregation,
//!   counted).
//!
//! Run: `cargo run --release --example auction_rankings`

use std::time::Duration;

use weir::prelude::*;

fn main() -> Result<(), WeirError> {
    let bids = BidGenerator::new(BidGeneratorConfig {
        events: 1_000_000,
        auctions: 1_000,
        ..BidGeneratorConfig::default()
    });
    let pipeline = Pipeline::new("auction-rankings");
    let bids = pipeline
        .source(bids)
        .watermark("date_time", Duration::from_secs(1));
    bids.key_by(["auction"])
        .window(Window::tumble(Duration::from_secs(10)))
        .aggregate([count_all().alias("bids")])
        .key_by(["window_start", "window_end"])
        .top_n(TopN::new(3, [OrderKey::desc("bids")]).rank_column("rank"))
        .sink(PrintSink::default());
    let first_bids = CollectSink::new();
    bids.key_by(["bidder"])
        .deduplicate(Deduplicate::keep_first().state_ttl(Duration::from_secs(3600)))
        .sink(first_bids.clone());
    let averaged = CollectSink::new();
    let job = bids
        .key_by(["auction"])
        .over(
            OverFrame::Rows(Some(9)),
            [avg(col("price")).alias("avg_last_10")],
        )
        .sink(averaged.clone());
    job.run(RunOptions::default().shards(2))?;
    let rows = |sink: &CollectSink| sink.batches().iter().map(|b| b.num_rows()).sum::<usize>();
    eprintln!(
        "first-bid changes: {}; bids with their running average: {}",
        rows(&first_bids),
        rows(&averaged)
    );
    Ok(())
}
