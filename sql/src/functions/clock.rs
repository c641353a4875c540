//! The wall-clock functions as a streaming job needs them: read when a batch is evaluated
//! (Flink evaluates them per record in streaming mode), in the session time zone, UTC.
//! DataFusion's own `now()` and `current_date()` are constants fixed when a batch query is
//! planned, which a job that runs for days must not use; these are volatile, so the
//! expression simplifier leaves them alone.
//!
//! | function | result |
//! |---|---|
//! | `CURRENT_TIMESTAMP`, `NOW()`, `CURRENT_ROW_TIMESTAMP()` | `TIMESTAMP_LTZ(3)` |
//! | `PROCTIME()` | `TIMESTAMP_LTZ(3)`, a processing-time attribute |
//! | `LOCALTIMESTAMP` | `TIMESTAMP(3)` |
//! | `CURRENT_DATE` | `DATE` |
//! | `CURRENT_TIME`, `LOCALTIME` | `TIME(0)` |

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, Date32Array, Time64MicrosecondArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion_expr::Volatility;

use super::FlinkFunction;

pub(crate) static FUNCTIONS: &[&FlinkFunction] = &[
    &PROCTIME,
    &CURRENT_TIMESTAMP,
    &LOCALTIMESTAMP,
    &CURRENT_DATE,
    &CURRENT_TIME,
];

const MS_PER_DAY: i64 = 86_400_000;

/// The wall clock in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn no_arguments(types: &[arrow::datatypes::DataType]) -> Option<Vec<DataType>> {
    types.is_empty().then(Vec::new)
}

pub(crate) static CURRENT_TIMESTAMP: FlinkFunction = FlinkFunction {
    name: "CURRENT_TIMESTAMP",
    aliases: &["now", "current_row_timestamp"],
    volatility: Volatility::Volatile,
    coerce: no_arguments,
    takes: "no arguments",
    returns: |_| DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    eval: |_, rows| {
        let now = now_ms();
        let values = TimestampMillisecondArray::from(vec![now; rows]).with_timezone("UTC");
        Ok(Arc::new(values) as ArrayRef)
    },
};

/// `PROCTIME()`: the wall clock as a row is read, a processing-time attribute (Flink's
/// `TIMESTAMP_LTZ(3) *PROCTIME*`). Windows over it fire by the clock; see the translator.
pub(crate) static PROCTIME: FlinkFunction = FlinkFunction {
    name: "PROCTIME",
    aliases: &[],
    volatility: Volatility::Volatile,
    coerce: no_arguments,
    takes: "no arguments",
    returns: |_| DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
    eval: CURRENT_TIMESTAMP.eval,
};

pub(crate) static LOCALTIMESTAMP: FlinkFunction = FlinkFunction {
    name: "LOCALTIMESTAMP",
    aliases: &[],
    volatility: Volatility::Volatile,
    coerce: no_arguments,
    takes: "no arguments",
    returns: |_| DataType::Timestamp(TimeUnit::Millisecond, None),
    eval: |_, rows| Ok(Arc::new(TimestampMillisecondArray::from(vec![now_ms(); rows])) as ArrayRef),
};

pub(crate) static CURRENT_DATE: FlinkFunction = FlinkFunction {
    name: "CURRENT_DATE",
    aliases: &[],
    volatility: Volatility::Volatile,
    coerce: no_arguments,
    takes: "no arguments",
    returns: |_| DataType::Date32,
    eval: |_, rows| {
        let day = now_ms().div_euclid(MS_PER_DAY) as i32;
        Ok(Arc::new(Date32Array::from(vec![day; rows])) as ArrayRef)
    },
};

pub(crate) static CURRENT_TIME: FlinkFunction = FlinkFunction {
    name: "CURRENT_TIME",
    aliases: &["localtime"],
    volatility: Volatility::Volatile,
    coerce: no_arguments,
    takes: "no arguments",
    returns: |_| DataType::Time64(TimeUnit::Microsecond),
    eval: |_, rows| {
        // TIME(0): whole seconds of the day.
        let seconds = now_ms().rem_euclid(MS_PER_DAY) / 1000;
        Ok(Arc::new(Time64MicrosecondArray::from(vec![
            seconds * 1_000_000;
            rows
        ])) as ArrayRef)
    },
};
