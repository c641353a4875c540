//! Keyed window aggregation: tumbling, hopping, cumulating, session and count windows.
//!
//! [`WindowAggregateFactory`] is the one operator factory for all kinds; the [`WindowSpec`]
//! picks the implementation:
//! - [`pane::PaneWindowOperator`] for tumbling, hopping and cumulating windows (partial
//!   aggregates per pane, combined when a window fires);
//! - [`session::SessionWindowOperator`] for session windows (accumulators per session,
//!   merged when sessions merge);
//! - [`count::CountWindowOperator`] for count windows (DSL only).
//!
//! Output: one batch per fire with `window_start`, `window_end` (TIMESTAMP(3); absent for count
//! windows), the key columns, then one column per aggregate.
//!
//! Timing follows Flink: a window `[start, end)` fires when the watermark reaches `end - 1`.
//! A row is *late* when every window it belongs to has already fired; late rows are counted
//! (`late_rows_dropped`) and dropped, or, when the node's late-row output is connected, sent
//! there (`late_rows_side_output`). A row that still has an open window is added to it even if
//! earlier windows containing it have fired, as in Flink.

pub mod assign;
pub mod count;
mod early;
pub mod pane;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::row::Rows;
use datafusion_expr::Expr;
use weir_engine::changelog::{with_row_kind, ChangelogMode};
use weir_engine::message::EventTimeMs;
use weir_engine::operator::{Operator, OperatorFactory, SubtaskContext};
use weir_engine::partition::KeyHasher;
use weir_engine::time::event_times_ms;
use weir_engine::BoxError;

use crate::late::LateOutput;

use crate::aggregate::Aggregates;
use crate::error::{OperatorError, Result};
use crate::group_index::{GroupIndex, KeyEncoder};

/// Name of the window start column.
pub const WINDOW_START: &str = "window_start";
/// Name of the window end column.
pub const WINDOW_END: &str = "window_end";

/// Which windows rows are grouped into. Times are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size_ms`.
    Tumble { size_ms: i64 },
    /// Windows of `size_ms` starting every `slide_ms`.
    Hop { size_ms: i64, slide_ms: i64 },
    /// Windows that start every `size_ms` and grow by `step_ms` until they reach `size_ms`.
    Cumulate { step_ms: i64, size_ms: i64 },
    /// Per key, rows closer than `gap_ms` to each other form one window.
    Session { gap_ms: i64 },
    /// Per key, every `size` rows in arrival order form one window. Fires as soon as it is
    /// full; an incomplete window at end of input is not emitted (as Flink's count windows).
    Count { size: usize },
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowSpec {
    pub fn tumble(size: Duration) -> Self {
        WindowSpec::Tumble {
            size_ms: millis(size),
        }
    }

    pub fn hop(size: Duration, slide: Duration) -> Self {
        WindowSpec::Hop {
            size_ms: millis(size),
            slide_ms: millis(slide),
        }
    }

    pub fn cumulate(step: Duration, size: Duration) -> Self {
        WindowSpec::Cumulate {
            step_ms: millis(step),
            size_ms: millis(size),
        }
    }

    pub fn session(gap: Duration) -> Self {
        WindowSpec::Session {
            gap_ms: millis(gap),
        }
    }

    pub fn count(size: usize) -> Self {
        WindowSpec::Count { size }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(OperatorError::Plan(m));
        match *self {
            WindowSpec::Tumble { size_ms } if size_ms <= 0 => bad("tumbling window size must be positive".into()),
            WindowSpec::Hop { size_ms, slide_ms } if size_ms <= 0 || slide_ms <= 0 => {
                bad("hopping window size and slide must be positive".into())
            }
            WindowSpec::Cumulate { step_ms, size_ms } if step_ms <= 0 || size_ms <= 0 || size_ms % step_ms != 0 => bad(format!(
                "cumulating window size ({size_ms} ms) must be a positive multiple of its step ({step_ms} ms)"
            )),
            WindowSpec::Session { gap_ms } if gap_ms <= 0 => bad("session gap must be positive".into()),
            WindowSpec::Count { size: 0 } => bad("count window size must be positive".into()),
            _ => Ok(()),
        }
    }

    fn is_time_window(&self) -> bool {
        !matches!(self, WindowSpec::Count { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            WindowSpec::Tumble { size_ms } => format!("tumble({size_ms}ms)"),
            WindowSpec::Hop { size_ms, slide_ms } => {
                format!("hop(size {size_ms}ms, slide {slide_ms}ms)")
            }
            WindowSpec::Cumulate { step_ms, size_ms } => {
                format!("cumulate(step {step_ms}ms, size {size_ms}ms)")
            }
            WindowSpec::Session { gap_ms } => format!("session(gap {gap_ms}ms)"),
            WindowSpec::Count { size } => format!("count({size} rows)"),
        }
    }
}

/// Serializable description of a window aggregation.
#[derive(Debug, Clone)]
pub struct WindowAggregateConfig {
    pub window: WindowSpec,
    /// The event-time column (ignored by count windows).
    pub time_column: String,
    /// Grouping key columns; empty for one global group.
    pub keys: Vec<String>,
    /// Aggregate expressions, e.g. `count(*)`, `max(col("price")).alias("top")`.
    pub aggregates: Vec<Expr>,
    /// Flink's processing-time windows (over a `PROCTIME()` attribute; time windows only):
    /// a row belongs to the windows of the wall-clock time it reaches the operator (ms, UTC;
    /// a session's interval starts then), and a window fires when the clock passes its end,
    /// or, for the windows still open, when the input ends. Never late.
    pub processing_time: bool,
    /// Early results (Flink's `table.exec.emit.early-fire.delay`; tumbling, hopping and
    /// cumulating windows only): an open window's partial result every this much processing
    /// time (zero: after every batch), as an updating result its final one replaces (see
    /// `early.rs`). `None`: one final result per window, append-only.
    pub early_fire: Option<Duration>,
}

/// Describes a window aggregation node.
pub struct WindowAggregateFactory {
    config: WindowAggregateConfig,
}

impl WindowAggregateFactory {
    pub fn new(config: WindowAggregateConfig) -> Self {
        WindowAggregateFactory { config }
    }

    pub fn config(&self) -> &WindowAggregateConfig {
        &self.config
    }
}

impl OperatorFactory for WindowAggregateFactory {
    /// Windows aggregate append-only rows; their output is append-only.
    fn output_changelog(&self, inputs: &[ChangelogMode]) -> Result<ChangelogMode, BoxError> {
        if !inputs[0].is_insert_only() {
            return Err(Box::new(OperatorError::Plan(format!(
                "a window aggregation cannot take an updating input ({})",
                inputs[0].describe()
            ))));
        }
        Ok(match self.config.early_fire {
            Some(_) => ChangelogMode::All,
            None => ChangelogMode::InsertOnly,
        })
    }

    fn output_schema(&self, inputs: &[SchemaRef]) -> Result<SchemaRef, BoxError> {
        let input = &inputs[0];
        let results = WindowPlan::new(&self.config, input)?.output_schema;
        Ok(match self.config.early_fire {
            Some(_) => with_row_kind(&results),
            None => results,
        })
    }

    fn describe(&self) -> String {
        let aggregates: Vec<String> = self
            .config
            .aggregates
            .iter()
            .map(|e| e.to_string())
            .collect();
        let keys = if self.config.keys.is_empty() {
            "global".to_string()
        } else {
            format!("keys [{}]", self.config.keys.join(", "))
        };
        format!(
            "window {} on {}, {keys}: [{}]",
            self.config.window.describe(),
            self.config.time_column,
            aggregates.join(", ")
        )
    }

    fn create(&self, context: &SubtaskContext) -> Result<Box<dyn Operator>, BoxError> {
        let plan = WindowPlan::new(&self.config, context.input_schema())?;
        let core = WindowCore::new(plan, context)?;
        Ok(match self.config.window {
            WindowSpec::Session { gap_ms } => {
                Box::new(session::SessionWindowOperator::new(core, gap_ms, context)?)
            }
            WindowSpec::Count { size } => {
                Box::new(count::CountWindowOperator::new(core, size, context)?)
            }
            spec => {
                let early = match self.config.early_fire {
                    Some(delay) => Some(early::EarlyFiring::new(
                        delay.as_millis() as i64,
                        &core.plan.output_schema,
                        &core.plan.key_names,
                        context,
                    )?),
                    None => None,
                };
                Box::new(pane::PaneWindowOperator::new(
                    core,
                    pane::PaneAssigner::new(spec),
                    early,
                    context,
                ))
            }
        })
    }
}

/// A window aggregation planned against its input schema.
#[derive(Debug, Clone)]
pub(crate) struct WindowPlan {
    pub(crate) time_column: Option<usize>,
    /// Processing-time windows (see [`WindowAggregateConfig::processing_time`]).
    pub(crate) processing_time: bool,
    pub(crate) key_columns: Vec<usize>,
    pub(crate) key_names: Vec<String>,
    pub(crate) key_fields: Vec<FieldRef>,
    pub(crate) aggregates: Aggregates,
    pub(crate) output_schema: SchemaRef,
    /// Key columns followed by the aggregates' partial-state columns.
    pub(crate) state_schema: SchemaRef,
}

impl WindowPlan {
    fn new(config: &WindowAggregateConfig, input: &SchemaRef) -> Result<Self> {
        config.window.validate()?;
        let pane_windows = !matches!(
            config.window,
            WindowSpec::Session { .. } | WindowSpec::Count { .. }
        );
        if config.early_fire.is_some() && !pane_windows {
            return Err(OperatorError::Plan(format!(
                "early results (table.exec.emit.early-fire.*) of {} windows are not supported yet",
                config.window.describe()
            )));
        }
        if config.processing_time && matches!(config.window, WindowSpec::Count { .. }) {
            return Err(OperatorError::Plan(format!(
                "{} windows on processing time are not supported yet",
                config.window.describe()
            )));
        }
        let column = |name: &str| {
            input.index_of(name).map_err(|_| {
                OperatorError::Plan(format!(
                    "column '{name}' not found; the input has ({})",
                    weir_engine::graph::column_list(input)
                ))
            })
        };
        let time_column = if config.window.is_time_window() {
            let index = column(&config.time_column)?;
            match input.field(index).data_type() {
                DataType::Timestamp(_, _) | DataType::Int64 => {}
                other => {
                    return Err(OperatorError::Plan(format!(
                        "event-time column '{}' has type {other}; expected TIMESTAMP or BIGINT milliseconds",
                        config.time_column
                    )))
                }
            }
            Some(index)
        } else {
            None
        };
        let key_columns = config
            .keys
            .iter()
            .map(|k| column(k))
            .collect::<Result<Vec<_>>>()?;
        let key_fields: Vec<FieldRef> = key_columns
            .iter()
            .map(|&i| Arc::new(input.field(i).clone()))
            .collect();
        if config.aggregates.is_empty() {
            return Err(OperatorError::Plan(
                "a window needs at least one aggregate".into(),
            ));
        }
        let aggregates = Aggregates::plan(&config.aggregates, input)?;
        let mut fields: Vec<FieldRef> = Vec::new();
        if time_column.is_some() {
            let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
            fields.push(Arc::new(Field::new(WINDOW_START, ts.clone(), false)));
            fields.push(Arc::new(Field::new(WINDOW_END, ts, false)));
        }
        fields.extend(key_fields.iter().cloned());
        fields.extend(aggregates.output_fields().iter().cloned());
        let mut names = std::collections::HashSet::new();
        for field in &fields {
            if !names.insert(field.name().clone()) {
                return Err(OperatorError::Plan(format!(
                    "window output has two columns named '{}'; give the aggregate an alias",
                    field.name()
                )));
            }
        }
        let mut state_fields = key_fields.clone();
        state_fields.extend(aggregates.state_fields().iter().cloned());
        Ok(WindowPlan {
            time_column,
            processing_time: config.processing_time,
            key_columns,
            key_names: config.keys.clone(),
            key_fields,
            aggregates,
            output_schema: Arc::new(Schema::new(fields)),
            state_schema: Arc::new(Schema::new(state_fields)),
        })
    }
}

/// What every window operator shares: key encoding, aggregates, output assembly, late rows.
pub(crate) struct WindowCore {
    pub(crate) plan: WindowPlan,
    /// Encodes keys for group lookup.
    keys: KeyEncoder,
    /// Key groups of keys, for splitting state.
    pub(crate) state_hasher: KeyHasher,
    pub(crate) late: LateOutput,
}

impl WindowCore {
    fn new(plan: WindowPlan, context: &SubtaskContext) -> Result<Self> {
        let state_hasher =
            KeyHasher::new(&plan.state_schema, &plan.key_names, context.max_key_groups)?;
        Ok(WindowCore {
            keys: KeyEncoder::new(&plan.key_fields)?,
            state_hasher,
            late: LateOutput::new(context),
            plan,
        })
    }

    /// The time of each row of `batch`: its event time, or on processing time the clock now
    /// (the same for every row), never at or before `fired` (the latest time windows fired
    /// at), so no row lands in a window that has fired.
    pub(crate) fn row_times(
        &self,
        batch: &RecordBatch,
        fired: Option<EventTimeMs>,
    ) -> Result<arrow::buffer::ScalarBuffer<i64>> {
        if self.plan.processing_time {
            let now = weir_engine::time::now_ms();
            let now = fired.map_or(now, |fired| now.max(fired.saturating_add(1)));
            return Ok(vec![now; batch.num_rows()].into());
        }
        let column = self
            .plan
            .time_column
            .ok_or_else(|| OperatorError::Plan("a time window without a time column".into()))?;
        Ok(event_times_ms(batch, column)?)
    }

    /// A group index expected to hold about `groups` groups.
    pub(crate) fn group_index_for(&self, groups: usize) -> GroupIndex {
        self.keys.group_index(groups)
    }

    /// The key columns of an input batch.
    pub(crate) fn input_keys(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.plan
            .key_columns
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect()
    }

    /// Encodes key columns (`num_rows` rows) for group lookup.
    pub(crate) fn key_rows(&self, keys: &[ArrayRef], num_rows: usize) -> Result<Rows> {
        Ok(self.keys.encode(keys, num_rows)?)
    }

    /// The keys of every group of `index`, as the output's key columns.
    pub(crate) fn group_keys(&self, index: &GroupIndex) -> Result<Vec<ArrayRef>> {
        self.keys_of(index.keys())
    }

    /// Decodes keys encoded by [`WindowCore::key_rows`], as bytes, into the output's key
    /// columns.
    pub(crate) fn keys_of_bytes<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Vec<ArrayRef>> {
        Ok(self.keys.decode_bytes(keys)?)
    }

    /// Decodes keys encoded by [`WindowCore::key_rows`] into the output's key columns.
    pub(crate) fn keys_of(&self, rows: &Rows) -> Result<Vec<ArrayRef>> {
        Ok(self.keys.decode(rows)?)
    }

    /// Assembles one output batch.
    pub(crate) fn output(
        &self,
        bounds: Option<(Vec<i64>, Vec<i64>)>,
        keys: Vec<ArrayRef>,
        aggregates: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::new();
        if let Some((starts, ends)) = bounds {
            columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
            columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
        }
        columns.extend(keys);
        columns.extend(aggregates);
        Ok(RecordBatch::try_new(
            Arc::clone(&self.plan.output_schema),
            columns,
        )?)
    }
}
