//! The `datagen` connector: rows of the declared schema, random or sequential per field,
//! with Flink's options.
//!
//! - `rows-per-second` (default 10000, Flink's), `number-of-rows` (default: unbounded).
//! - `fields.<f>.kind` = `random` (default) | `sequence`.
//! - random: `fields.<f>.min` / `.max` for numbers, `.length` for strings (default 100),
//!   `.max-past` for timestamps (a random time up to that far before now; default 0),
//!   `.null-rate` (0 to 1).
//! - sequence: `fields.<f>.start` and `.end` (both required); the source ends when a sequence
//!   is exhausted.
//!
//! Rows are split across subtasks: split `j` of `P` produces rows `j, j + P, ...`, so sequences
//! are complete and disjoint over all splits; random values come from a generator seeded by
//! the split, so a run is reproducible.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, Int8Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir_engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir_engine::BoxError;

use crate::error::ConnectorError;
use crate::options::{OptionKind, OptionSpec, Options};
use crate::pace::Pacer;
use crate::random::SplitMix64;

/// The options `datagen` accepts.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "rows-per-second",
        OptionKind::Integer,
        "rows per second over all splits (default 10000)",
    ),
    OptionSpec::optional(
        "number-of-rows",
        OptionKind::Integer,
        "total rows; unbounded if absent",
    ),
    OptionSpec::optional(
        "fields.#.kind",
        OptionKind::Enum(&["random", "sequence"]),
        "how the field is generated",
    ),
    OptionSpec::optional("fields.#.min", OptionKind::String, "smallest random value"),
    OptionSpec::optional("fields.#.max", OptionKind::String, "largest random value"),
    OptionSpec::optional(
        "fields.#.max-past",
        OptionKind::Duration,
        "how far in the past a random timestamp may be",
    ),
    OptionSpec::optional(
        "fields.#.length",
        OptionKind::Integer,
        "length of random strings (default 100)",
    ),
    OptionSpec::optional(
        "fields.#.start",
        OptionKind::Integer,
        "first value of a sequence",
    ),
    OptionSpec::optional(
        "fields.#.end",
        OptionKind::Integer,
        "last value of a sequence",
    ),
    OptionSpec::optional(
        "fields.#.null-rate",
        OptionKind::String,
        "fraction of NULLs (0 to 1)",
    ),
];

/// How one field is generated.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldGenerator {
    Random {
        min: f64,
        max: f64,
        length: usize,
        max_past_ms: i64,
        null_rate: f64,
    },
    Sequence {
        start: i64,
        end: i64,
    },
}

/// The datagen source factory.
#[derive(Debug, Clone)]
pub struct DataGen {
    schema: SchemaRef,
    fields: Vec<FieldGenerator>,
    rows_per_second: Option<u64>,
    number_of_rows: Option<u64>,
    batch_size: usize,
}

fn default_range(data_type: &DataType) -> (f64, f64) {
    match data_type {
        DataType::Int8 => (i8::MIN as f64, i8::MAX as f64),
        DataType::Int16 => (i16::MIN as f64, i16::MAX as f64),
        DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
        DataType::Float32 | DataType::Float64 => (f32::MIN as f64, f32::MAX as f64),
        _ => (i64::MIN as f64, i64::MAX as f64),
    }
}

impl DataGen {
    /// Builds the source from validated options.
    pub fn from_options(schema: SchemaRef, options: &Options) -> Result<Self, ConnectorError> {
        let error = |message: String| ConnectorError::Config {
            connector: "datagen".into(),
            message,
        };
        for name in options
            .segments("fields", "kind")
            .into_iter()
            .chain(options.segments("fields", "min"))
            .chain(options.segments("fields", "length"))
        {
            if schema.field_with_name(&name).is_err() {
                return Err(error(format!(
                    "option for field '{name}', which the table does not have"
                )));
            }
        }
        let mut fields = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            let key = |k: &str| format!("fields.{name}.{k}");
            let number = |k: &str| -> Result<Option<f64>, ConnectorError> {
                options
                    .get(&key(k))
                    .map(|v| {
                        v.trim().parse::<f64>().map_err(|_| {
                            error(format!("option '{}': expected a number, got '{v}'", key(k)))
                        })
                    })
                    .transpose()
            };
            let generator = match options.word(&key("kind")).as_deref() {
                Some("sequence") => {
                    let bound = |k: &str| {
                        options.integer(&key(k)).ok_or_else(|| {
                            error(format!(
                                "field '{name}' is a sequence and needs option '{}'",
                                key(k)
                            ))
                        })
                    };
                    let (start, end) = (bound("start")?, bound("end")?);
                    if end < start {
                        return Err(error(format!(
                            "field '{name}': sequence end {end} is before start {start}"
                        )));
                    }
                    if !field.data_type().is_integer() && field.data_type() != &DataType::Utf8 {
                        return Err(error(format!(
                            "field '{name}': a sequence needs an integer or STRING column, not {}",
                            field.data_type()
                        )));
                    }
                    FieldGenerator::Sequence { start, end }
                }
                _ => {
                    let (low, high) = default_range(field.data_type());
                    let (min, max) = (
                        number("min")?.unwrap_or(low),
                        number("max")?.unwrap_or(high),
                    );
                    if max < min {
                        return Err(error(format!(
                            "field '{name}': max {max} is below min {min}"
                        )));
                    }
                    let null_rate = number("null-rate")?.unwrap_or(0.0);
                    if !(0.0..=1.0).contains(&null_rate) {
                        return Err(error(format!(
                            "option '{}' must be between 0 and 1",
                            key("null-rate")
                        )));
                    }
                    FieldGenerator::Random {
                        min,
                        max,
                        length: options.integer(&key("length")).unwrap_or(100).max(0) as usize,
                        max_past_ms: options
                            .duration(&key("max-past"))
                            .map_or(0, |d| d.as_millis() as i64),
                        null_rate,
                    }
                }
            };
            check_type(name, field.data_type(), &generator).map_err(error)?;
            fields.push(generator);
        }
        Ok(DataGen {
            schema,
            fields,
            rows_per_second: Some(
                options.integer("rows-per-second").unwrap_or(10_000).max(1) as u64
            ),
            number_of_rows: options.integer("number-of-rows").map(|n| n.max(0) as u64),
            batch_size: 1024,
        })
    }

    /// Total rows, the smaller of `number-of-rows` and the shortest sequence.
    fn total_rows(&self) -> Option<u64> {
        let shortest = self
            .fields
            .iter()
            .filter_map(|f| match f {
                FieldGenerator::Sequence { start, end } => Some((end - start) as u64 + 1),
                FieldGenerator::Random { .. } => None,
            })
            .min();
        match (self.number_of_rows, shortest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn check_type(name: &str, data_type: &DataType, generator: &FieldGenerator) -> Result<(), String> {
    let supported = matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Boolean
            | DataType::Utf8
            | DataType::Date32
            | DataType::Timestamp(_, _)
    );
    if !supported {
        return Err(format!(
            "datagen cannot generate field '{name}' of type {data_type}"
        ));
    }
    if matches!(generator, FieldGenerator::Sequence { .. })
        && matches!(
            data_type,
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Boolean
        )
    {
        return Err(format!(
            "field '{name}': a sequence cannot be of type {data_type}"
        ));
    }
    Ok(())
}

impl SourceFactory for DataGen {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn describe(&self) -> String {
        format!(
            "datagen ({} rows, {} rows/s)",
            self.total_rows()
                .map_or("unbounded".to_string(), |n| n.to_string()),
            self.rows_per_second
                .map_or("max".to_string(), |n| n.to_string())
        )
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let p = split.parallelism as u64;
        let j = split.index as u64;
        let rows = self.total_rows().map(|n| n / p + u64::from(j < n % p));
        let (produced, seed) = match crate::resume::restored(&split, 2)? {
            Some(numbers) => (numbers[0], numbers[1]),
            None => (0, 0x5EED ^ (j << 32)),
        };
        Ok(Box::new(DataGenReader {
            source: self.clone(),
            stride: p,
            first: j,
            produced,
            rows,
            random: SplitMix64::new(seed),
            pacer: Pacer::new(self.rows_per_second, split.parallelism),
        }))
    }
}

struct DataGenReader {
    source: DataGen,
    stride: u64,
    first: u64,
    produced: u64,
    rows: Option<u64>,
    random: SplitMix64,
    pacer: Pacer,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl DataGenReader {
    fn batch(&mut self, len: usize) -> Result<RecordBatch, BoxError> {
        let indices: Vec<u64> = (0..len as u64)
            .map(|k| self.first + (self.produced + k) * self.stride)
            .collect();
        let now = now_ms();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (field, generator) in self.source.schema.fields().iter().zip(&self.source.fields) {
            let column = generate(
                field.data_type(),
                generator,
                &indices,
                &mut self.random,
                now,
            )?;
            columns.push(column);
        }
        self.produced += len as u64;
        Ok(RecordBatch::try_new(
            SchemaRef::clone(&self.source.schema),
            columns,
        )?)
    }
}

fn generate(
    data_type: &DataType,
    generator: &FieldGenerator,
    indices: &[u64],
    random: &mut SplitMix64,
    now: i64,
) -> Result<ArrayRef, BoxError> {
    macro_rules! numbers {
        ($builder:ty, $t:ty, $value:expr) => {{
            let mut builder = <$builder>::with_capacity(indices.len());
            for &i in indices {
                match $value(i, &mut *random) {
                    Some(v) => builder.append_value(v as $t),
                    None => builder.append_null(),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let value = |i: u64, random: &mut SplitMix64| -> Option<f64> {
        match generator {
            FieldGenerator::Sequence { start, .. } => Some((*start + i as i64) as f64),
            FieldGenerator::Random {
                min,
                max,
                null_rate,
                ..
            } => {
                if *null_rate > 0.0 && random.unit() < *null_rate {
                    return None;
                }
                Some(if data_type.is_floating() {
                    min + random.unit() * (max - min)
                } else {
                    random.between(*min as i64, *max as i64) as f64
                })
            }
        }
    };
    Ok(match data_type {
        DataType::Int8 => numbers!(Int8Builder, i8, value),
        DataType::Int16 => numbers!(Int16Builder, i16, value),
        DataType::Int32 => numbers!(Int32Builder, i32, value),
        DataType::Int64 => match generator {
            // Exact for the whole i64 range (f64 is not).
            FieldGenerator::Sequence { start, .. } => {
                Arc::new(arrow::array::Int64Array::from_iter_values(
                    indices.iter().map(|&i| start + i as i64),
                ))
            }
            FieldGenerator::Random {
                min,
                max,
                null_rate,
                ..
            } => {
                let mut builder = Int64Builder::with_capacity(indices.len());
                for _ in indices {
                    if *null_rate > 0.0 && random.unit() < *null_rate {
                        builder.append_null();
                    } else {
                        builder.append_value(random.between(*min as i64, *max as i64));
                    }
                }
                Arc::new(builder.finish())
            }
        },
        DataType::Float32 => numbers!(Float32Builder, f32, value),
        DataType::Float64 => numbers!(Float64Builder, f64, value),
        DataType::Boolean => {
            let mut builder = BooleanBuilder::with_capacity(indices.len());
            for _ in indices {
                builder.append_value(random.next_u64() & 1 == 1);
            }
            Arc::new(builder.finish())
        }
        DataType::Utf8 => {
            let mut builder = StringBuilder::new();
            for &i in indices {
                match generator {
                    FieldGenerator::Sequence { start, .. } => {
                        builder.append_value((start + i as i64).to_string())
                    }
                    FieldGenerator::Random {
                        length, null_rate, ..
                    } => {
                        if *null_rate > 0.0 && random.unit() < *null_rate {
                            builder.append_null();
                            continue;
                        }
                        let text: String = (0..*length)
                            .map(|_| {
                                let hex = b"0123456789abcdef";
                                hex[random.below(16) as usize] as char
                            })
                            .collect();
                        builder.append_value(text);
                    }
                }
            }
            Arc::new(builder.finish())
        }
        DataType::Date32 => numbers!(Date32Builder, i32, |_, random: &mut SplitMix64| {
            Some((now / 86_400_000 - random.below(365) as i64) as f64)
        }),
        DataType::Timestamp(unit, tz) => {
            let mut builder = TimestampMillisecondBuilder::with_capacity(indices.len());
            for _ in indices {
                let past = match generator {
                    FieldGenerator::Random { max_past_ms, .. } => {
                        random.below(*max_past_ms as u64 + 1) as i64
                    }
                    FieldGenerator::Sequence { .. } => 0,
                };
                builder.append_value(now - past);
            }
            let millis: ArrayRef = Arc::new(builder.finish());
            let target = DataType::Timestamp(*unit, tz.clone());
            if target == DataType::Timestamp(TimeUnit::Millisecond, None) {
                millis
            } else {
                cast(&millis, &target)?
            }
        }
        other => return Err(format!("datagen cannot generate type {other}").into()),
    })
}

impl SourceReader for DataGenReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            let remaining = self.rows.map_or(u64::MAX, |n| n - self.produced);
            if remaining == 0 {
                return Ok(None);
            }
            let mut len = remaining.min(self.source.batch_size as u64) as usize;
            if let Some(rate) = self.pacer.split_rate() {
                // Small batches at low rates, so rows arrive spread over time.
                len = len.min((rate / 10.0).ceil().max(1.0) as usize);
            }
            self.pacer.wait(self.produced).await;
            self.batch(len).map(|b| Some(b.into()))
        })
    }

    fn positions(&self) -> Positions {
        crate::resume::positions(
            self.first,
            self.stride,
            &[self.produced, self.random.state()],
        )
    }
}
