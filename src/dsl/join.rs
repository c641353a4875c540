//! Joins in the DSL: two keyed streams ([`KeyedStream::join`]) become one by an interval,
//! window, regular or temporal join, each Flink's.

use std::rc::Rc;
use std::sync::Arc;

use datafusion_expr::Expr;
use weir_engine::graph::{Exchange, OutputPort};
use weir_engine::operator::OperatorFactory;
use weir_operators::join::interval::IntervalJoinFactory;
use weir_operators::join::regular::RegularJoinFactory;
use weir_operators::join::temporal::TemporalJoinFactory;
use weir_operators::join::window::WindowJoinFactory;
use weir_operators::join::{JoinSpec, JoinType};

use super::{KeyedStream, Stream};

/// Two keyed streams waiting for how to join them.
#[derive(Clone)]
pub struct JoinedStreams {
    left: KeyedStream,
    right: KeyedStream,
    join_type: JoinType,
    filter: Option<Expr>,
}

impl JoinedStreams {
    /// An inner join of `left` and `right`, without a further condition.
    pub(super) fn new(left: KeyedStream, right: KeyedStream) -> Self {
        JoinedStreams {
            left,
            right,
            join_type: JoinType::Inner,
            filter: None,
        }
    }

    /// Inner (the default), left, right or full outer.
    pub fn kind(mut self, join_type: JoinType) -> Self {
        self.join_type = join_type;
        self
    }

    /// A further condition on the joined row (columns of both sides by name).
    pub fn filter(mut self, predicate: Expr) -> Self {
        self.filter = Some(predicate);
        self
    }

    /// Interval join, as Flink's DataStream `intervalJoin(..).between(lower, upper)`: a right
    /// row matches a left row when `left.time + lower_ms <= right.time <= left.time +
    /// upper_ms`, times being each stream's event-time column. Output: the left columns, then
    /// the right ones (names must differ), append-only.
    pub fn between(&self, lower_ms: i64, upper_ms: i64) -> Stream {
        let times = [&self.left.stream, &self.right.stream].map(|s| s.event_time.clone());
        let [Some(left_time), Some(right_time)] = times else {
            return self.fail(
                "an interval join needs an event-time column on both sides: call .watermark(column, delay) or .event_time(column)",
            );
        };
        let spec = JoinSpec {
            join_type: self.join_type,
            left_keys: self.left.keys.clone(),
            right_keys: self.right.keys.clone(),
            filter: self.filter.clone(),
        };
        // Flink's DataStream bounds are on right - left; the operator's on left - right.
        match IntervalJoinFactory::new(spec, left_time, right_time, -upper_ms, -lower_ms) {
            Ok(factory) => self.connect("interval-join", Arc::new(factory)),
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Window join, as Flink's: both streams are results of the same windows (window
    /// aggregations), joined on their keys and their windows, given as each side's
    /// `[window_start, window_end]` columns (names must differ between the sides). A window's
    /// rows are joined when the watermark passes its end, then freed; append-only.
    pub fn window(&self, left_window: [&str; 2], right_window: [&str; 2]) -> Stream {
        let keys = |side: &KeyedStream, window: [&str; 2]| {
            let mut keys = side.keys.clone();
            keys.extend(window.iter().map(|c| c.to_string()));
            keys
        };
        let spec = JoinSpec {
            join_type: self.join_type,
            left_keys: keys(&self.left, left_window),
            right_keys: keys(&self.right, right_window),
            filter: self.filter.clone(),
        };
        let factory = WindowJoinFactory::new(spec, left_window[1], right_window[1]);
        self.connect_on(
            "window-join",
            Arc::new(factory),
            [left_window, right_window],
        )
    }

    /// Regular join, as Flink SQL's `JOIN ... ON`: every pair of rows with equal keys, whenever
    /// they arrived. Inputs may be updating results. Output: append-only for an inner join of
    /// append-only inputs, otherwise a changelog (`+I`/`-D`). State grows with both inputs
    /// unless bounded by each side's [`KeyedStream::state_ttl`] (processing time since a row
    /// was written).
    pub fn regular(&self) -> Stream {
        let spec = JoinSpec {
            join_type: self.join_type,
            left_keys: self.left.keys.clone(),
            right_keys: self.right.keys.clone(),
            filter: self.filter.clone(),
        };
        let factory = RegularJoinFactory::new(spec)
            .with_state_ttls([self.left.state_ttl, self.right.state_ttl]);
        self.connect("join", Arc::new(factory))
    }

    /// Event-time temporal join, as Flink SQL's `JOIN versions FOR SYSTEM_TIME AS OF
    /// left.time`: the right stream is a versioned table keyed by its join keys (its primary
    /// key), whose rows (or `+I`/`+U`/`-D` changes) are versions from their event time on. When
    /// the watermark passes a left row's event time, it joins the latest version of its key at
    /// or before that time. Inner (dropping left rows without a version) or left (padding
    /// them); the output has the left row's kind.
    pub fn temporal(&self) -> Stream {
        let times = [&self.left.stream, &self.right.stream].map(|s| s.event_time.clone());
        let [Some(left_time), Some(right_time)] = times else {
            return self.fail(
                "a temporal join needs an event-time column on both sides: call .watermark(column, delay) or .event_time(column)",
            );
        };
        let spec = JoinSpec {
            join_type: self.join_type,
            left_keys: self.left.keys.clone(),
            right_keys: self.right.keys.clone(),
            filter: self.filter.clone(),
        };
        match TemporalJoinFactory::new(spec, left_time, right_time) {
            Ok(factory) => self.connect("temporal-join", Arc::new(factory)),
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Adds the join node fed by both streams, each behind a hash exchange on its keys.
    fn connect(&self, base: &str, factory: Arc<dyn OperatorFactory>) -> Stream {
        self.connect_on(base, factory, [[]; 2])
    }

    /// [`JoinedStreams::connect`], each input also hashed on its `extra` key columns.
    fn connect_on<const N: usize>(
        &self,
        base: &str,
        factory: Arc<dyn OperatorFactory>,
        extra: [[&str; N]; 2],
    ) -> Stream {
        let left = &self.left.stream;
        let mut builder = left.builder.borrow_mut();
        let name = builder.unique_name(base);
        let node = builder.graph.add_operator(name, factory);
        for (input, side) in [&self.left, &self.right].into_iter().enumerate() {
            let mut keys = side.keys.clone();
            keys.extend(extra[input].iter().map(|c| c.to_string()));
            if keys.is_empty() {
                // No key: one subtask, as Flink's.
                builder.graph.set_parallelism(node, 1);
            }
            builder
                .graph
                .connect_input(side.stream.node, node, input, Exchange::Hash(keys));
        }
        let keyless = self.left.keys.is_empty() && extra[0].is_empty();
        Stream {
            builder: Rc::clone(&left.builder),
            node,
            port: OutputPort::Main,
            event_time: None,
            // A keyless join runs on one subtask: its changes stay together, in order.
            next_exchange: keyless.then(|| Exchange::Hash(Vec::new())),
            window_results: false,
        }
    }

    /// Records a build error; the returned stream is the left one, so building can go on.
    fn fail(&self, message: &str) -> Stream {
        self.left.stream.fail(message)
    }
}
