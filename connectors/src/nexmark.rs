//! The `nexmark` connector: the standard Nexmark event generator (people, auctions and bids).
//!
//! Event `n` is a pure function of the seed and `n`, following the reference generator of the
//! Nexmark benchmark (as in Apache Beam and nexmark-flink): proportions person : auction : bid
//! = 1 : 3 : 46 per 50 events, hot auctions (1 in 2 bids), hot bidders and sellers (3 in 4),
//! ids starting at 1000, 1000 active people and 100 auctions in flight, prices `10^(6u) * 100`
//! cents, and event time advancing by `1 / first-event.rate` seconds per event from a fixed
//! base time (2024-01-01T00:00:00Z), so runs are reproducible.
//!
//! The table has Flink's nexmark columns, any subset in any order: `event_type INT` (0 person,
//! 1 auction, 2 bid), `person ROW<...>`, `auction ROW<...>`, `bid ROW<...>` (see
//! [`nexmark_schema`]) and `dateTime TIMESTAMP(3)` (the event's time, which Flink's DDL
//! computes with a CASE). Split `j` of `P` produces events `j, j + P, ...`.
//!
//! Options: `events.num` (default unbounded), `first-event.rate` (event-time spacing, events per
//! second, default 10,000,000), `rows-per-second` (throttle; default unthrottled),
//! `person.proportion`, `auction.proportion`, `bid.proportion`, `seed`, `base-time` (the time of
//! event 0: epoch milliseconds, or `now` for the wall clock when each split starts, which
//! with `rows-per-second` equal to `first-event.rate` makes an event's time the moment it is
//! due, as in Flink's Nexmark generator: how latency is measured from event time).

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Builder, StringBuilder, StructArray, TimestampMillisecondArray,
    TimestampMillisecondBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use weir_engine::source::{
    LocalBoxFuture, Positions, SourceBatch, SourceFactory, SourceReader, SplitContext,
};
use weir_engine::BoxError;

use crate::error::ConnectorError;
use crate::options::{OptionKind, OptionSpec, Options};
use crate::pace::Pacer;
use crate::random::{mix, SplitMix64};

/// The options `nexmark` accepts.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "events.num",
        OptionKind::Integer,
        "total events; unbounded if absent",
    ),
    OptionSpec::optional(
        "first-event.rate",
        OptionKind::Integer,
        "event-time spacing in events per second (default 10000000)",
    ),
    OptionSpec::optional(
        "next-event.rate",
        OptionKind::Integer,
        "accepted for Flink compatibility; must equal first-event.rate",
    ),
    OptionSpec::optional(
        "rows-per-second",
        OptionKind::Integer,
        "throttle: events per second produced (default unthrottled)",
    ),
    OptionSpec::optional(
        "person.proportion",
        OptionKind::Integer,
        "people per cycle (default 1)",
    ),
    OptionSpec::optional(
        "auction.proportion",
        OptionKind::Integer,
        "auctions per cycle (default 3)",
    ),
    OptionSpec::optional(
        "bid.proportion",
        OptionKind::Integer,
        "bids per cycle (default 46)",
    ),
    OptionSpec::optional(
        "seed",
        OptionKind::Integer,
        "seed of the generator (default 0)",
    ),
    OptionSpec::optional(
        "base-time",
        OptionKind::String,
        "time of event 0: epoch milliseconds (default 2024-01-01T00:00:00Z) or 'now'",
    ),
];

const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const PERSON_ID_LEAD: i64 = 10;
const AUCTION_ID_LEAD: i64 = 10;
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLER_RATIO: u64 = 4;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_ID_GROUP: i64 = 100;
const BASE_TIME_MS: i64 = 1_704_067_200_000;
const US_STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: &[&str] = &[
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: &[&str] = &[
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: &[&str] = &[
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn person_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("emailAddress", DataType::Utf8, true),
        Field::new("creditCard", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, true),
        Field::new("dateTime", ts(), true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

fn auction_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("itemName", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, true),
        Field::new("initialBid", DataType::Int64, true),
        Field::new("reserve", DataType::Int64, true),
        Field::new("dateTime", ts(), true),
        Field::new("expires", ts(), true),
        Field::new("seller", DataType::Int64, true),
        Field::new("category", DataType::Int64, true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

fn bid_fields() -> Fields {
    Fields::from(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("dateTime", ts(), true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

/// Every column the generator can produce, as in Flink's nexmark DDL.
pub fn nexmark_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_type", DataType::Int32, false),
        Field::new("person", DataType::Struct(person_fields()), true),
        Field::new("auction", DataType::Struct(auction_fields()), true),
        Field::new("bid", DataType::Struct(bid_fields()), true),
        Field::new("dateTime", ts(), false),
    ]))
}

/// Generator parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkConfig {
    pub events: Option<u64>,
    pub first_event_rate: u64,
    pub rows_per_second: Option<u64>,
    pub person_proportion: u64,
    pub auction_proportion: u64,
    pub bid_proportion: u64,
    pub seed: u64,
    pub batch_size: usize,
    /// Time of event 0 in epoch milliseconds; `None`: the wall clock when a split starts.
    pub base_time_ms: Option<i64>,
}

impl Default for NexmarkConfig {
    fn default() -> Self {
        NexmarkConfig {
            events: None,
            first_event_rate: 10_000_000,
            rows_per_second: None,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            seed: 0,
            batch_size: 4096,
            base_time_ms: Some(BASE_TIME_MS),
        }
    }
}

impl NexmarkConfig {
    fn total(&self) -> u64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }

    /// Event time of event `n`, in milliseconds.
    pub fn timestamp(&self, n: u64) -> i64 {
        let rate = self.first_event_rate.max(1);
        let offset = match n.checked_mul(1000) {
            Some(ms) => ms / rate,
            None => (n as u128 * 1000 / rate as u128) as u64,
        };
        self.base_time_ms.unwrap_or(BASE_TIME_MS) + offset as i64
    }

    /// 0 person, 1 auction, 2 bid.
    pub fn event_type(&self, n: u64) -> i32 {
        let rem = n % self.total();
        if rem < self.person_proportion {
            0
        } else if rem < self.person_proportion + self.auction_proportion {
            1
        } else {
            2
        }
    }

    fn last_base0_person_id(&self, n: u64) -> i64 {
        let epoch = n / self.total();
        let offset = (n % self.total()).min(self.person_proportion - 1);
        (epoch * self.person_proportion + offset) as i64
    }

    fn last_base0_auction_id(&self, n: u64) -> i64 {
        let mut epoch = (n / self.total()) as i64;
        let mut offset = (n % self.total()) as i64;
        let (person, auction) = (
            self.person_proportion as i64,
            self.auction_proportion as i64,
        );
        if offset < person {
            epoch -= 1;
            offset = auction - 1;
        } else if offset >= person + auction {
            offset = auction - 1;
        } else {
            offset -= person;
        }
        (epoch * auction + offset).max(0)
    }

    fn next_base0_person_id(&self, n: u64, random: &mut SplitMix64) -> i64 {
        let people = self.last_base0_person_id(n) + 1;
        let active = people.min(NUM_ACTIVE_PEOPLE);
        people - active + random.below((active + PERSON_ID_LEAD) as u64) as i64
    }

    fn next_base0_auction_id(&self, n: u64, random: &mut SplitMix64) -> i64 {
        let max = self.last_base0_auction_id(n);
        let min = (max - NUM_IN_FLIGHT_AUCTIONS).max(0);
        min + random.below((max - min + 1 + AUCTION_ID_LEAD) as u64) as i64
    }

    fn auction_length_ms(&self, random: &mut SplitMix64) -> i64 {
        let events = NUM_IN_FLIGHT_AUCTIONS as u64 * self.total() / self.auction_proportion.max(1);
        let horizon = (self.timestamp(events) - self.timestamp(0)).max(1);
        1 + random.below(horizon as u64 * 2) as i64
    }
}

fn price(random: &mut SplitMix64) -> i64 {
    // 10^(6u) as e^(6u ln 10): one exp, cheaper than powf.
    ((random.unit() * 6.0 * std::f64::consts::LN_10).exp() * 100.0).round() as i64
}

/// Up to 100 random lowercase letters, 13 from each random number.
struct Letters {
    bytes: [u8; 100],
    len: usize,
}

impl Letters {
    fn new(random: &mut SplitMix64, len: usize) -> Self {
        let mut letters = Letters {
            bytes: [b'a'; 100],
            len: len.min(100),
        };
        for chunk in letters.bytes[..letters.len].chunks_mut(13) {
            let mut bits = random.next_u64();
            for letter in chunk {
                *letter = b'a' + (bits % 26) as u8;
                bits /= 26;
            }
        }
        letters
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// The nexmark source factory.
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    config: NexmarkConfig,
    schema: SchemaRef,
    /// For each declared column, its index in [`nexmark_schema`].
    projection: Vec<usize>,
}

impl NexmarkSource {
    /// A source producing the declared `schema` (a subset of [`nexmark_schema`]'s columns).
    pub fn new(schema: SchemaRef, config: NexmarkConfig) -> Result<Self, ConnectorError> {
        let full = nexmark_schema();
        let mut projection = Vec::new();
        for field in schema.fields() {
            let index = full.index_of(field.name()).map_err(|_| ConnectorError::Config {
                connector: "nexmark".into(),
                message: format!(
                    "column '{}' is not a nexmark column (event_type, person, auction, bid, dateTime)",
                    field.name()
                ),
            })?;
            if !field
                .data_type()
                .equals_datatype(full.field(index).data_type())
            {
                return Err(ConnectorError::Config {
                    connector: "nexmark".into(),
                    message: format!(
                        "column '{}' must have type {}, not {}",
                        field.name(),
                        full.field(index).data_type(),
                        field.data_type()
                    ),
                });
            }
            projection.push(index);
        }
        if config.person_proportion == 0 || config.auction_proportion == 0 {
            return Err(ConnectorError::Config {
                connector: "nexmark".into(),
                message: "person.proportion and auction.proportion must be at least 1".into(),
            });
        }
        Ok(NexmarkSource {
            config,
            schema,
            projection,
        })
    }

    /// Builds the source from validated options.
    pub fn from_options(schema: SchemaRef, options: &Options) -> Result<Self, ConnectorError> {
        let defaults = NexmarkConfig::default();
        let positive = |key: &str, default: u64| -> Result<u64, ConnectorError> {
            match options.integer(key) {
                Some(v) if v < 0 => Err(ConnectorError::Config {
                    connector: "nexmark".into(),
                    message: format!("option '{key}' must not be negative"),
                }),
                Some(v) => Ok(v as u64),
                None => Ok(default),
            }
        };
        let first_event_rate = positive("first-event.rate", defaults.first_event_rate)?.max(1);
        if options
            .integer("next-event.rate")
            .is_some_and(|r| r as u64 != first_event_rate)
        {
            return Err(ConnectorError::Config {
                connector: "nexmark".into(),
                message: "a next-event.rate different from first-event.rate is not supported"
                    .into(),
            });
        }
        let config = NexmarkConfig {
            events: options
                .get("events.num")
                .map(|_| positive("events.num", 0))
                .transpose()?,
            first_event_rate,
            rows_per_second: options
                .get("rows-per-second")
                .map(|_| positive("rows-per-second", 1))
                .transpose()?,
            person_proportion: positive("person.proportion", defaults.person_proportion)?,
            auction_proportion: positive("auction.proportion", defaults.auction_proportion)?,
            bid_proportion: positive("bid.proportion", defaults.bid_proportion)?,
            seed: positive("seed", 0)?,
            batch_size: defaults.batch_size,
            base_time_ms: match options.get("base-time") {
                None => defaults.base_time_ms,
                Some("now") => None,
                Some(text) => Some(text.parse().map_err(|_| ConnectorError::Config {
                    connector: "nexmark".into(),
                    message: format!(
                        "option 'base-time' must be epoch milliseconds or 'now', not '{text}'"
                    ),
                })?),
            },
        };
        NexmarkSource::new(schema, config)
    }
}

impl SourceFactory for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }

    fn describe(&self) -> String {
        format!(
            "nexmark ({} events, event time {} events/s)",
            self.config
                .events
                .map_or("unbounded".into(), |n| n.to_string()),
            self.config.first_event_rate
        )
    }

    fn create_reader(&self, split: SplitContext) -> Result<Box<dyn SourceReader>, BoxError> {
        let stride = split.parallelism as u64;
        let (next, produced) = match crate::resume::restored(&split, 2)? {
            Some(numbers) => (numbers[0], numbers[1]),
            None => (split.index as u64, 0),
        };
        let mut source = self.clone();
        let mut pacer = Pacer::new(self.config.rows_per_second, split.parallelism);
        if source.config.base_time_ms.is_none() {
            // Event time follows the wall clock from now on; pacing starts at the same moment.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            source.config.base_time_ms = Some(now);
            pacer.start(produced);
        }
        Ok(Box::new(NexmarkReader {
            source,
            next,
            stride,
            produced,
            pacer,
        }))
    }
}

struct NexmarkReader {
    source: NexmarkSource,
    next: u64,
    stride: u64,
    produced: u64,
    pacer: Pacer,
}

/// Column builders for one batch.
/// The columns of one batch being generated.
struct Columns {
    event_type: Vec<i32>,
    date_time: Vec<i64>,
    ints: [Int64Builder; 9],
    texts: [StringBuilder; 12],
    times: [TimestampMillisecondBuilder; 4],
    valid: [Vec<bool>; 3],
}

/// Typical lengths of the text columns (person, auction, bid), to size their builders.
const TEXT_LENGTHS: [(usize, usize); 12] = [
    (0, 12),
    (0, 17),
    (0, 19),
    (0, 10),
    (0, 2),
    (0, 16),
    (1, 20),
    (1, 100),
    (1, 16),
    (2, 8),
    (2, 60),
    (2, 16),
];

impl Columns {
    /// Builders sized for `len` events of `config`'s mix, so that they do not grow.
    fn new(len: usize, config: &NexmarkConfig) -> Self {
        let shares = [
            config.person_proportion,
            config.auction_proportion,
            config.bid_proportion,
        ]
        .map(|p| p as f64 / config.total().max(1) as f64);
        Columns {
            event_type: Vec::with_capacity(len),
            date_time: Vec::with_capacity(len),
            ints: std::array::from_fn(|_| Int64Builder::with_capacity(len)),
            texts: TEXT_LENGTHS.map(|(kind, length)| {
                let bytes = (len as f64 * shares[kind] * length as f64 * 1.2) as usize;
                StringBuilder::with_capacity(len, bytes + 64)
            }),
            times: std::array::from_fn(|_| TimestampMillisecondBuilder::with_capacity(len)),
            valid: std::array::from_fn(|_| Vec::with_capacity(len)),
        }
    }
}

impl NexmarkReader {
    fn batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        let config = self.source.config;
        let end = config.events.unwrap_or(u64::MAX);
        if self.next >= end {
            return Ok(None);
        }
        let remaining = (end - self.next).div_ceil(self.stride);
        let len = remaining.min(config.batch_size as u64) as usize;
        let mut c = Columns::new(len, &config);
        for k in 0..len as u64 {
            let n = self.next + k * self.stride;
            self.event(n, &mut c);
        }
        self.next += len as u64 * self.stride;
        self.produced += len as u64;
        let Columns {
            event_type,
            date_time,
            mut ints,
            mut texts,
            mut times,
            valid,
        } = c;
        let [mut i0, mut i1, mut i2, mut i3, mut i4, mut i5, mut i6, mut i7, mut i8] =
            std::mem::take(&mut ints);
        let mut t = texts
            .each_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .into_iter();
        let mut tm = times
            .each_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .into_iter();
        let mut next_text = || t.next().expect("12 text columns");
        let mut next_time = || tm.next().expect("4 time columns");
        let nulls = |v: &Vec<bool>| Some(NullBuffer::from(v.clone()));
        let person: ArrayRef = Arc::new(StructArray::try_new(
            person_fields(),
            vec![
                Arc::new(i0.finish()),
                next_text(),
                next_text(),
                next_text(),
                next_text(),
                next_text(),
                next_time(),
                next_text(),
            ],
            nulls(&valid[0]),
        )?);
        let auction: ArrayRef = Arc::new(StructArray::try_new(
            auction_fields(),
            vec![
                Arc::new(i1.finish()),
                next_text(),
                next_text(),
                Arc::new(i2.finish()),
                Arc::new(i3.finish()),
                next_time(),
                next_time(),
                Arc::new(i4.finish()),
                Arc::new(i5.finish()),
                next_text(),
            ],
            nulls(&valid[1]),
        )?);
        let bid: ArrayRef = Arc::new(StructArray::try_new(
            bid_fields(),
            vec![
                Arc::new(i6.finish()),
                Arc::new(i7.finish()),
                Arc::new(i8.finish()),
                next_text(),
                next_text(),
                next_time(),
                next_text(),
            ],
            nulls(&valid[2]),
        )?);
        let all: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(event_type)),
            person,
            auction,
            bid,
            Arc::new(TimestampMillisecondArray::from(date_time)),
        ];
        let columns = self
            .source
            .projection
            .iter()
            .map(|&i| Arc::clone(&all[i]))
            .collect();
        Ok(Some(RecordBatch::try_new(
            SchemaRef::clone(&self.source.schema),
            columns,
        )?))
    }

    /// Appends event `n`; columns of the other event kinds get NULLs.
    fn event(&self, n: u64, c: &mut Columns) {
        let config = &self.source.config;
        let mut random = SplitMix64::new(mix(config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let time = config.timestamp(n);
        let kind = config.event_type(n);
        c.event_type.push(kind);
        c.date_time.push(time);
        for (i, valid) in c.valid.iter_mut().enumerate() {
            valid.push(i as i32 == kind);
        }
        let [i0, i1, i2, i3, i4, i5, i6, i7, i8] = &mut c.ints;
        let [p_name, p_email, p_card, p_city, p_state, p_extra, a_item, a_desc, a_extra, b_channel, b_url, b_extra] =
            &mut c.texts;
        let [p_time, a_time, a_expires, b_time] = &mut c.times;
        // Person columns.
        if kind == 0 {
            i0.append_value(config.last_base0_person_id(n) + FIRST_PERSON_ID);
            // Composite strings are written into the builders (no allocation per value).
            let _ = write!(
                p_name,
                "{} {}",
                FIRST_NAMES[random.below(FIRST_NAMES.len() as u64) as usize],
                LAST_NAMES[random.below(LAST_NAMES.len() as u64) as usize]
            );
            p_name.append_value("");
            let _ = write!(
                p_email,
                "{}@{}.com",
                Letters::new(&mut random, 7).as_str(),
                Letters::new(&mut random, 5).as_str()
            );
            p_email.append_value("");
            for group in 0..4 {
                let separator = if group == 0 { "" } else { " " };
                let _ = write!(p_card, "{separator}{:04}", random.below(10_000));
            }
            p_card.append_value("");
            p_city.append_value(US_CITIES[random.below(US_CITIES.len() as u64) as usize]);
            p_state.append_value(US_STATES[random.below(US_STATES.len() as u64) as usize]);
            p_time.append_value(time);
            p_extra.append_value(Letters::new(&mut random, 16).as_str());
        } else {
            i0.append_null();
            for b in [&mut *p_name, p_email, p_card, p_city, p_state, p_extra] {
                b.append_null();
            }
            p_time.append_null();
        }
        // Auction columns.
        if kind == 1 {
            let seller = if random.below(HOT_SELLER_RATIO) > 0 {
                (config.last_base0_person_id(n) / HOT_ID_GROUP) * HOT_ID_GROUP
            } else {
                config.next_base0_person_id(n, &mut random)
            };
            let initial = price(&mut random);
            i1.append_value(config.last_base0_auction_id(n) + FIRST_AUCTION_ID);
            a_item.append_value(Letters::new(&mut random, 20).as_str());
            a_desc.append_value(Letters::new(&mut random, 100).as_str());
            i2.append_value(initial);
            i3.append_value(initial + price(&mut random));
            a_time.append_value(time);
            a_expires.append_value(time + config.auction_length_ms(&mut random));
            i4.append_value(seller + FIRST_PERSON_ID);
            i5.append_value(FIRST_CATEGORY_ID + random.below(NUM_CATEGORIES) as i64);
            a_extra.append_value(Letters::new(&mut random, 16).as_str());
        } else {
            for b in [&mut *i1, i2, i3, i4, i5] {
                b.append_null();
            }
            for b in [&mut *a_item, a_desc, a_extra] {
                b.append_null();
            }
            a_time.append_null();
            a_expires.append_null();
        }
        // Bid columns.
        if kind == 2 {
            let auction = if random.below(HOT_AUCTION_RATIO) > 0 {
                (config.last_base0_auction_id(n) / HOT_ID_GROUP) * HOT_ID_GROUP
            } else {
                config.next_base0_auction_id(n, &mut random)
            };
            let bidder = if random.below(HOT_BIDDER_RATIO) > 0 {
                (config.last_base0_person_id(n) / HOT_ID_GROUP) * HOT_ID_GROUP + 1
            } else {
                config.next_base0_person_id(n, &mut random)
            };
            let channel = random.below(CHANNELS.len() as u64) as usize;
            i6.append_value(auction + FIRST_AUCTION_ID);
            i7.append_value(bidder + FIRST_PERSON_ID);
            i8.append_value(price(&mut random));
            b_channel.append_value(CHANNELS[channel]);
            let _ = write!(
                b_url,
                "https://www.nexmark.com/{}/{}/item.htm?query=1&channel_id={channel}",
                Letters::new(&mut random, 5).as_str(),
                Letters::new(&mut random, 5).as_str()
            );
            b_url.append_value("");
            b_time.append_value(time);
            b_extra.append_value(Letters::new(&mut random, 16).as_str());
        } else {
            for b in [&mut *i6, i7, i8] {
                b.append_null();
            }
            for b in [&mut *b_channel, b_url, b_extra] {
                b.append_null();
            }
            b_time.append_null();
        }
    }
}

impl SourceReader for NexmarkReader {
    fn next_batch(&mut self) -> LocalBoxFuture<'_, Result<Option<SourceBatch>, BoxError>> {
        Box::pin(async move {
            self.pacer.wait(self.produced).await;
            Ok(self.batch()?.map(Into::into))
        })
    }

    fn positions(&self) -> Positions {
        crate::resume::positions(
            self.next % self.stride,
            self.stride,
            &[self.next, self.produced],
        )
    }
}
