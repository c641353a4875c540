//! Ranking and running aggregates in the DSL, as Flink SQL's: Top-N and deduplication
//! (`ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..) <= N`) per key, per window or over window
//! results, and OVER aggregations (`agg(..) OVER (PARTITION BY .. ORDER BY time ..)`).
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::prelude::*;
//!
//! let bids = Pipeline::new("top-bids")
//!     .source(BidGenerator::new(BidGeneratorConfig::default()))
//!     .watermark("date_time", Duration::from_secs(2));
//! // The three highest bids per auction, with their rank: an updating result.
//! bids.key_by(["auction"])
//!     .top_n(TopN::new(3, [OrderKey::desc("price")]).rank_column("rn"))
//!     .sink(CollectSink::new());
//! // Each bidder's first bid (by event time), forgotten an hour after it was kept.
//! bids.key_by(["bidder"])
//!     .deduplicate(Deduplicate::keep_first().state_ttl(Duration::from_secs(3600)))
//!     .sink(CollectSink::new());
//! // Per auction, the sum of its last 10 bids, on every bid.
//! bids.key_by(["auction"])
//!     .over(OverFrame::Rows(Some(9)), [sum(col("price")).alias("last_10")])
//!     .sink(CollectSink::new());
//! ```

use std::sync::Arc;
use std::time::Duration;

use datafusion_expr::Expr;
use weir_engine::graph::Exchange;
use weir_operators::over::OverAggregateFactory;
use weir_operators::rank::TopNFactory;
use weir_operators::window::assign::WindowAssignFactory;

use super::{KeyedStream, Stream, WindowedStream};

pub use weir_operators::over::OverFrame;
pub use weir_operators::rank::OrderKey;

/// The columns a window assignment adds to each row (as Flink's window TVFs).
const WINDOW_START: &str = "window_start";
const WINDOW_END: &str = "window_end";

/// A Top-N, as Flink SQL's `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY order_by) AS rn ...
/// WHERE rn <= n`: the first `n` rows of each key by `order_by` (rows with equal order keys
/// in arrival order).
#[derive(Debug, Clone)]
pub struct TopN {
    n: usize,
    order_by: Vec<OrderKey>,
    rank_column: Option<String>,
    state_ttl: Option<Duration>,
}

impl TopN {
    /// The first `n` rows by `order_by` (at least one key; [`OrderKey::asc`],
    /// [`OrderKey::desc`]). An `n` of 0 or no order is a build error of the pipeline.
    pub fn new(n: usize, order_by: impl IntoIterator<Item = OrderKey>) -> Self {
        TopN {
            n,
            order_by: order_by.into_iter().collect(),
            rank_column: None,
            state_ttl: None,
        }
    }

    /// Adds each row's rank (1 to n, unsigned 64-bit) as column `name`. With it, the result
    /// is an upsert stream keyed by the key columns and the rank, as Flink's; without it, a
    /// row entering the top n is `+I` after a `-D` of the row it pushes out.
    pub fn rank_column(mut self, name: impl Into<String>) -> Self {
        self.rank_column = Some(name.into());
        self
    }

    /// Forgets a key whose kept rows did not change for `ttl` of processing time (Flink's
    /// `table.exec.state.ttl`; zero: never); without one, state grows with the number of
    /// keys. Not used by window Top-Ns, whose state the watermark frees.
    pub fn state_ttl(mut self, ttl: Duration) -> Self {
        self.state_ttl = Some(ttl);
        self
    }

    fn factory(&self, partition_by: Vec<String>) -> Result<TopNFactory, String> {
        if self.order_by.is_empty() {
            return Err(
                "a Top-N needs at least one order key: TopN::new(n, [OrderKey::desc(column)])"
                    .into(),
            );
        }
        TopNFactory::new(
            partition_by,
            self.order_by.clone(),
            self.n,
            self.rank_column.clone(),
        )
        .map(|f| f.with_state_ttl(self.state_ttl))
        .map_err(|e| e.to_string())
    }
}

/// Which row of a key a deduplication keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    First,
    Last,
}

/// A deduplication, as Flink SQL's `ROW_NUMBER() OVER (PARTITION BY keys ORDER BY time
/// ASC|DESC) = 1` (its `Deduplicate` operators): one row per key, the first or the last.
///
/// By event time (the stream's event-time column) the result is updating, as Flink's: an
/// earlier row arriving later replaces the first, a later one the last. By arrival
/// ([`Deduplicate::by_arrival`], Flink's order by `PROCTIME()`), keeping the first is
/// append-only: the idempotent consumer that drops redelivered messages.
#[derive(Debug, Clone)]
pub struct Deduplicate {
    keep: Keep,
    by_arrival: bool,
    state_ttl: Option<Duration>,
}

impl Deduplicate {
    /// Keeps each key's first row.
    pub fn keep_first() -> Self {
        Deduplicate {
            keep: Keep::First,
            by_arrival: false,
            state_ttl: None,
        }
    }

    /// Keeps each key's last row (of equal times, the newer one).
    pub fn keep_last() -> Self {
        Deduplicate {
            keep: Keep::Last,
            ..Deduplicate::keep_first()
        }
    }

    /// First or last by arrival at the operator (processing time) instead of event time.
    pub fn by_arrival(mut self) -> Self {
        self.by_arrival = true;
        self
    }

    /// Forgets a key `ttl` of processing time after its kept row last changed (Flink's
    /// `table.exec.state.ttl`; zero: never), after which the key's next row counts as its
    /// first. Not used by window deduplication.
    pub fn state_ttl(mut self, ttl: Duration) -> Self {
        self.state_ttl = Some(ttl);
        self
    }

    /// The Top-N (N = 1) that deduplicates `stream`.
    fn factory(&self, stream: &Stream, partition_by: Vec<String>) -> Result<TopNFactory, String> {
        let order_by = match (self.by_arrival, &stream.event_time) {
            (true, _) => Vec::new(),
            (false, Some(time)) => vec![match self.keep {
                Keep::First => OrderKey::asc(time),
                Keep::Last => OrderKey::desc(time),
            }],
            (false, None) => {
                return Err("a deduplication by event time needs an event-time column: call .watermark(column, delay) or .event_time(column), or use Deduplicate::by_arrival()".into())
            }
        };
        let mut factory = TopNFactory::new(partition_by, order_by, 1, None)
            .map_err(|e| e.to_string())?
            .with_state_ttl(self.state_ttl);
        if self.by_arrival {
            factory = factory.by_arrival();
        }
        if self.keep == Keep::Last {
            factory = factory.newer_wins_ties().map_err(|e| e.to_string())?;
        }
        Ok(factory)
    }
}

impl KeyedStream {
    /// The top rows of each key (see [`TopN`]): an updating result. Over window results
    /// (from [`WindowedStream::aggregate`]) keyed by `window_start` and `window_end` (and
    /// more), it is a window Top-N, as Flink's: each window's top rows once, append-only, when
    /// the watermark passes the window's end. The input may be an updating result (e.g.
    /// [`KeyedStream::aggregate`]'s), as Flink's retracting Top-N.
    pub fn top_n(&self, top_n: TopN) -> Stream {
        let window_top_n = self.stream.window_results
            && [WINDOW_START, WINDOW_END]
                .iter()
                .all(|c| self.keys.iter().any(|k| k == c));
        let factory = top_n
            .factory(self.keys.clone())
            .map(|f| match window_top_n {
                true => f.at_window_end(WINDOW_END),
                false => f,
            });
        let ranked = top_n.rank_column.clone();
        let mut ranked_stream = self.rank(factory, ranked);
        ranked_stream.window_results = window_top_n;
        ranked_stream
    }

    /// One row per key, the first or the last (see [`Deduplicate`]).
    pub fn deduplicate(&self, deduplicate: Deduplicate) -> Stream {
        let factory = deduplicate.factory(&self.stream, self.keys.clone());
        self.rank(factory, None)
    }

    /// `aggregates` (each aliased to its output column) over each row's `frame` of the rows
    /// of its key in event-time order, as Flink SQL's `agg(..) OVER (PARTITION BY keys ORDER
    /// BY time ROWS|RANGE BETWEEN .. PRECEDING AND CURRENT ROW)`: every row once, with the
    /// aggregates appended, released in event-time order when the watermark passes it
    /// (append-only; late rows dropped and counted). Needs the stream's event-time column.
    /// With [`KeyedStream::state_ttl`], a key not written for the TTL and without rows
    /// waiting for the watermark is forgotten.
    pub fn over(&self, frame: OverFrame, aggregates: impl IntoIterator<Item = Expr>) -> Stream {
        let Some(time) = self.stream.event_time.clone() else {
            return self.stream.fail(
                "an OVER aggregation needs an event-time column: call .watermark(column, delay) or .event_time(column)",
            );
        };
        let factory = OverAggregateFactory::new(
            self.keys.clone(),
            time,
            frame,
            aggregates.into_iter().collect(),
        )
        .with_state_ttl(self.state_ttl);
        let mut over = self.stream.then(
            "over-aggregate",
            Arc::new(factory),
            Some(Exchange::Hash(self.keys.clone())),
        );
        if self.keys.is_empty() {
            // One partition: one subtask, as Flink's.
            over = over.parallelism(1);
        }
        over.window_results = false;
        over
    }

    /// Adds a Top-N behind a hash exchange on the keys. Without keys it runs on one subtask,
    /// as Flink's, and its changes go on by rank (`rank_column`), each rank's in order, or
    /// all to one subtask.
    fn rank(&self, factory: Result<TopNFactory, String>, rank_column: Option<String>) -> Stream {
        let factory = match factory {
            Ok(factory) => factory,
            Err(message) => return self.stream.fail(&message),
        };
        let mut ranked = self.stream.then(
            "top-n",
            Arc::new(factory),
            Some(Exchange::Hash(self.keys.clone())),
        );
        ranked.event_time = None;
        ranked.window_results = false;
        if self.keys.is_empty() {
            ranked = ranked.parallelism(1);
            ranked.next_exchange = Some(Exchange::Hash(rank_column.into_iter().collect()));
        }
        ranked
    }
}

impl Stream {
    /// The top rows of the whole stream, on one subtask (see [`KeyedStream::top_n`]).
    pub fn top_n(&self, top_n: TopN) -> Stream {
        self.key_by(Vec::<String>::new()).top_n(top_n)
    }

    /// An OVER aggregation over the whole stream as one partition, on one subtask (see
    /// [`KeyedStream::over`]).
    pub fn over(&self, frame: OverFrame, aggregates: impl IntoIterator<Item = Expr>) -> Stream {
        self.key_by(Vec::<String>::new()).over(frame, aggregates)
    }
}

impl WindowedStream {
    /// A window Top-N over the window's rows, as Flink's over a window TVF: each row is
    /// assigned to its windows (gaining `window_start`, `window_end` and `window_time`
    /// columns), and each key's and window's top rows come out once, append-only, when the
    /// watermark passes the window's end. Tumbling, hopping and cumulating windows. Late rows
    /// go to [`WindowedStream::late_rows`] if given, as assigned to their windows: with the
    /// window columns, once per window that had fired (a hopping window's row may be late
    /// for one window and not another).
    pub fn top_n(&self, top_n: TopN) -> Stream {
        let factory = top_n
            .factory(self.window_keys())
            .map(|f| f.at_window_end(WINDOW_END));
        self.rank_in_windows(factory)
    }

    /// A window deduplication, as Flink's over a window TVF: each key's first or last row
    /// per window by event time, once, append-only, when the watermark passes the window's
    /// end (see [`WindowedStream::top_n`]).
    pub fn deduplicate(&self, deduplicate: Deduplicate) -> Stream {
        if deduplicate.by_arrival {
            return self
                .stream
                .fail("a window deduplication is by event time, not by arrival (nor in Flink)");
        }
        let factory = deduplicate
            .factory(&self.stream, self.window_keys())
            .map(|f| f.at_window_end(WINDOW_END));
        self.rank_in_windows(factory)
    }

    /// The keys of a ranking per window: the stream's keys and the window's bounds.
    fn window_keys(&self) -> Vec<String> {
        let mut keys = self.keys.clone();
        keys.extend([WINDOW_START, WINDOW_END].map(String::from));
        keys
    }

    /// Assigns the rows to their windows and ranks them with `factory`, a window Top-N.
    fn rank_in_windows(&self, factory: Result<TopNFactory, String>) -> Stream {
        let Some(time) = self.stream.event_time.clone() else {
            return self.stream.fail(
                "a window Top-N needs an event-time column: call .watermark(column, delay) or .event_time(column)",
            );
        };
        let assigned = match WindowAssignFactory::new(self.window, time) {
            Ok(assign) => self.stream.then("window-assign", Arc::new(assign), None),
            Err(e) => return self.stream.fail(&e.to_string()),
        };
        let keyed = assigned.key_by(self.window_keys());
        let ranked = keyed.rank(factory, None);
        self.connect_late_rows(&ranked);
        Stream {
            window_results: true,
            ..ranked
        }
    }
}
