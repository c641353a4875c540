//! `CURRENT_TIMESTAMP` / `NOW()` / `LOCALTIMESTAMP` as a streaming job needs them: the wall
//! clock when a batch is evaluated (Flink evaluates them per record in streaming mode), as a
//! `TIMESTAMP_LTZ(3)`. DataFusion's own `now()` is a constant fixed when a batch query is
//! planned, which a job that runs for days must not use.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::datatypes::{DataType, TimeUnit};
use datafusion_common::{Result, ScalarValue};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The wall clock, read at each evaluation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WallClock {
    signature: Signature,
    aliases: Vec<String>,
}

impl WallClock {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(WallClock {
            signature: Signature::nullary(Volatility::Volatile),
            aliases: vec!["current_timestamp".into(), "localtimestamp".into()],
        }))
    }
}

impl ScalarUDFImpl for WallClock {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Millisecond,
            Some("UTC".into()),
        ))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(
            Some(now),
            Some("UTC".into()),
        )))
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }
}
