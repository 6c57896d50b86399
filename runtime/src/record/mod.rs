//! Records as the engine sees them: a key, an event time and the few field
//! values the aggregates need, extracted once at the source. The full JSON
//! is kept only when a side output may need to show it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use smallvec::SmallVec;

use crate::spec::{AggregateFunction, JobSpec, TimeFormat};
use crate::time::{
    format_time, now_millis, parse_event_time, parse_event_time_number, parse_event_time_str,
};

mod decode;
pub use decode::{Leaf, Slots, WantedFields};

/// One component of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyPart {
    Int(i64),
    Str(CompactString),
    Bool(bool),
}

/// The value(s) of a record's key field(s), with their stable hash computed
/// once: it routes the record to a worker and is the hash-map hash too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    // Compared first: keys with different hashes differ, and cheaply so.
    hash: u64,
    parts: SmallVec<[KeyPart; 1]>,
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.parts.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SmallVec::<[KeyPart; 1]>::deserialize(d).map(Key::new)
    }
}

impl Key {
    #[inline]
    pub fn new(parts: SmallVec<[KeyPart; 1]>) -> Key {
        Key {
            hash: stable_hash(&parts),
            parts,
        }
    }

    pub fn int(v: i64) -> Key {
        Key::new(smallvec::smallvec![KeyPart::Int(v)])
    }

    pub fn str(v: &str) -> Key {
        Key::new(smallvec::smallvec![KeyPart::Str(v.into())])
    }

    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// A hash that never changes between runs, builds or versions: it decides
    /// which key group, and so which worker and which part of a savepoint, a
    /// key belongs to.
    pub fn stable_hash(&self) -> u64 {
        self.hash
    }

    /// The key group (0..max_parallelism) this key's state lives in: the
    /// stable hash scaled into the range (multiply-shift, no division).
    pub fn key_group(&self, max_parallelism: u32) -> u16 {
        ((self.hash as u128 * max_parallelism as u128) >> 64) as u16
    }

    /// Byte encoding for storage keys: tag byte, then the value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                KeyPart::Int(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.to_be_bytes());
                }
                KeyPart::Str(s) => {
                    out.push(2);
                    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                KeyPart::Bool(b) => {
                    out.push(3);
                    out.push(*b as u8);
                }
            }
        }
    }

    /// Reads a key written by `encode`; `None` if the bytes are not one.
    pub fn decode(mut bytes: &[u8]) -> Option<Key> {
        let mut parts = SmallVec::new();
        while let Some((&tag, rest)) = bytes.split_first() {
            bytes = rest;
            parts.push(match tag {
                1 => {
                    let (v, rest) = bytes.split_first_chunk::<8>()?;
                    bytes = rest;
                    KeyPart::Int(i64::from_be_bytes(*v))
                }
                2 => {
                    let (len, rest) = bytes.split_first_chunk::<4>()?;
                    let len = u32::from_be_bytes(*len) as usize;
                    let text = std::str::from_utf8(rest.get(..len)?).ok()?;
                    bytes = &rest[len..];
                    KeyPart::Str(text.into())
                }
                3 => {
                    let (b, rest) = bytes.split_first()?;
                    bytes = rest;
                    KeyPart::Bool(*b != 0)
                }
                _ => return None,
            });
        }
        Some(Key::new(parts))
    }

    /// The key's parts as JSON values, for output records.
    pub fn json_parts(&self) -> impl Iterator<Item = Value> + '_ {
        self.parts.iter().map(|p| match p {
            KeyPart::Int(v) => Value::from(*v),
            KeyPart::Str(s) => Value::from(s.as_str()),
            KeyPart::Bool(b) => Value::from(*b),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                write!(f, "|")?;
            }
            match p {
                KeyPart::Int(v) => write!(f, "{v}")?,
                KeyPart::Str(s) => write!(f, "{s}")?,
                KeyPart::Bool(b) => write!(f, "{b}")?,
            }
        }
        Ok(())
    }
}

fn stable_hash(parts: &[KeyPart]) -> u64 {
    let mut h: u64 = 0x5354_524d_4a4f_4221; // "STRMJOB!"
    for part in parts {
        h = match part {
            KeyPart::Int(v) => xxhash_rust::xxh3::xxh3_64_with_seed(&v.to_le_bytes(), h ^ 1),
            KeyPart::Str(s) => xxhash_rust::xxh3::xxh3_64_with_seed(s.as_bytes(), h ^ 2),
            KeyPart::Bool(b) => xxhash_rust::xxh3::xxh3_64_with_seed(&[*b as u8], h ^ 3),
        };
    }
    h
}

/// Hashes a `Key` by its precomputed stable hash, for hash maps of keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `Key` (one u64) is hashed with this; fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub type KeyHashBuilder = std::hash::BuildHasherDefault<KeyHasher>;

impl From<&Key> for Key {
    fn from(k: &Key) -> Key {
        k.clone()
    }
}

/// A number as JSON has it: integers stay integers through sum, min and max.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Float(v) => v,
        }
    }

    /// A JSON number; JSON has none for a sum beyond the range of doubles,
    /// so that is the string `"Infinity"` or `"-Infinity"` (`"NaN"` when
    /// both met), never a `null` that reads as "no values" (PostgreSQL
    /// takes these strings for a double precision column).
    pub fn to_json(self) -> Value {
        match self {
            Num::Int(v) => Value::from(v),
            Num::Float(v) => match serde_json::Number::from_f64(v) {
                Some(n) => Value::Number(n),
                None if v.is_nan() => Value::from("NaN"),
                None if v > 0.0 => Value::from("Infinity"),
                None => Value::from("-Infinity"),
            },
        }
    }
}

/// The input of one aggregate, taken from one record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    /// The field is absent or null: the aggregate ignores this record.
    Missing,
    Num(Num),
    /// For count-distinct: a stable hash of the value.
    Distinct(u64),
}

/// A record inside the engine (and between pods, encoded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub key: Key,
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// One entry per aggregate in the job, in the job's order.
    pub values: SmallVec<[FieldValue; 2]>,
    /// The record as read, kept only when a late side output is configured;
    /// for a select job, its projection.
    pub raw: Option<Box<str>>,
}

/// A record's text as a JSON object.
pub fn parse_object(text: &str) -> Result<Value, RecordError> {
    let value: Value = serde_json::from_str(text).map_err(|e| RecordError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(RecordError::NotAnObject);
    }
    Ok(value)
}

/// Why a record could not be read. Goes to the malformed side output (an
/// unmatched lookup to the unmatched one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("not valid UTF-8 (from byte {0} of the record)")]
    NotUtf8(usize),
    #[error("missing key field {0:?}")]
    MissingKey(String),
    #[error("key field {field:?} must be a string, an integer or a boolean, got {got}")]
    BadKey { field: String, got: String },
    #[error("missing event-time field {0:?}")]
    MissingTime(String),
    #[error("event-time field {field:?}: {reason}")]
    BadTime { field: String, reason: String },
    #[error("field {field:?} must be a number for {function}, got {got}")]
    NotANumber {
        field: String,
        function: &'static str,
        got: String,
    },
    /// An `enrich` lookup found no entry: not malformed, unmatched.
    #[error("{0}")]
    Unmatched(String),
}

impl RecordError {
    pub fn is_unmatched(&self) -> bool {
        matches!(self, RecordError::Unmatched(_))
    }
}

/// Turns JSON text into events, reading only the fields the job needs.
#[derive(Debug)]
pub struct RecordParser {
    /// Every path below, as one tree: a record is decoded against it.
    wanted: WantedFields,
    key_paths: Vec<JobField>,
    time_path: Option<JobField>,
    time_format: TimeFormat,
    /// `eventTime.maxAhead` in milliseconds.
    max_ahead: i64,
    /// The wall clock plus `max_ahead` when it was last read: an event
    /// time up to this is not too far ahead (the clock only moves on), so
    /// the clock is read only for a time beyond it. (Atomic: records are
    /// decoded on several threads at once.)
    horizon: AtomicI64,
    aggregates: Vec<(AggregateFunction, Option<JobField>)>,
    keep_raw: bool,
    /// A select job's fields, each with its JSON key (`"path":`, escaped
    /// once): the event carries their projection as `raw`.
    select: Vec<(JobField, String)>,
    /// Each enrich lookup's `on` field, in the order of the lookups.
    lookups_on: Vec<JobField>,
}

/// One of the paths a job reads, with its slot in a decoded record.
#[derive(Debug, Clone)]
pub struct JobField {
    path: FieldPath,
    slot: usize,
}

/// A value a job reads from a record (null reads as absent). A decoded
/// record borrows strings from its text and holds numbers and booleans
/// inline, so only an object or an array is a `Value`.
#[derive(Debug, Clone, Copy)]
pub enum FieldRef<'a> {
    Str(&'a str),
    Number(&'a Number),
    Bool(bool),
    /// An object or an array.
    Nested(&'a Value),
}

impl<'a> FieldRef<'a> {
    /// The value, or None for null.
    pub fn of(value: &'a Value) -> Option<Self> {
        Some(match value {
            Value::Null => return None,
            Value::String(s) => FieldRef::Str(s),
            Value::Number(n) => FieldRef::Number(n),
            Value::Bool(b) => FieldRef::Bool(*b),
            nested @ (Value::Array(_) | Value::Object(_)) => FieldRef::Nested(nested),
        })
    }

    pub fn type_name(self) -> String {
        match self {
            FieldRef::Str(s) => format!("the string {s:?}"),
            FieldRef::Number(n) => format!("the number {n}"),
            FieldRef::Bool(_) => "a boolean".into(),
            FieldRef::Nested(v) => type_name(v),
        }
    }

    /// The value as compact JSON text.
    fn write_json(self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{self}");
    }
}

/// Compact JSON text, as serde_json writes the value.
impl fmt::Display for FieldRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Most strings need no escape: written as they are, with no
            // copy into a `Value` first (this runs for every selected field).
            FieldRef::Str(s) if decode::written_as_is(s) => write!(f, "\"{s}\""),
            FieldRef::Str(s) => write!(f, "{}", Value::from(*s)),
            FieldRef::Number(n) => write!(f, "{n}"),
            FieldRef::Bool(b) => write!(f, "{b}"),
            FieldRef::Nested(v) => write!(f, "{v}"),
        }
    }
}

/// Where a parser reads a record's fields from: a decoded record's slots,
/// or a whole record with enrichment entries.
pub trait FieldSource {
    fn field(&self, field: &JobField) -> Option<FieldRef<'_>>;
}

/// A record decoded for the job's paths (empty until
/// [`RecordParser::decode`] fills it).
#[derive(Default)]
pub struct Decoded<'de>(Slots<'de>);

impl FieldSource for Decoded<'_> {
    fn field(&self, field: &JobField) -> Option<FieldRef<'_>> {
        Some(match self.0[field.slot].as_ref()? {
            Leaf::Str(s) => FieldRef::Str(s),
            Leaf::Number(n) => FieldRef::Number(n),
            Leaf::Bool(b) => FieldRef::Bool(*b),
            Leaf::Null => return None,
            Leaf::Nested(v) => FieldRef::Nested(v),
        })
    }
}

impl FieldSource for Fields<'_> {
    fn field(&self, field: &JobField) -> Option<FieldRef<'_>> {
        self.get(&field.path).and_then(FieldRef::of)
    }
}

/// A decoded record with the entries enrich lookups found for it, each
/// under its lookup's name, as [`Fields`] has them for a whole record: an
/// entry wins over the record's own field of that name, a later entry over
/// an earlier one.
pub struct Enriched<'a, 'de> {
    record: &'a Decoded<'de>,
    added: &'a [(&'a str, &'a Value)],
}

impl<'a, 'de> Enriched<'a, 'de> {
    pub fn with(record: &'a Decoded<'de>, added: &'a [(&'a str, &'a Value)]) -> Self {
        Enriched { record, added }
    }
}

impl FieldSource for Enriched<'_, '_> {
    fn field(&self, field: &JobField) -> Option<FieldRef<'_>> {
        match entry_at(self.added, &field.path) {
            Some(value) => value.and_then(FieldRef::of),
            None => self.record.field(field),
        }
    }
}

/// The value at `path` when its first name is that of an entry in `added`
/// (the last such): None when no entry has the name, `Some(None)` when the
/// entry lacks the rest of the path.
fn entry_at<'a>(added: &[(&str, &'a Value)], path: &FieldPath) -> Option<Option<&'a Value>> {
    let (first, rest) = path.parts.split_first()?;
    let (_, entry) = added.iter().rev().find(|(name, _)| name == first)?;
    Some(rest.iter().try_fold(*entry, |cur, p| cur.get(p.as_str())))
}

/// A record's fields as a parser reads them: the record, and the entries
/// enrich lookups found for it, each under its lookup's name (read in
/// place, never copied into the record).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    record: &'a Value,
    added: &'a [(&'a str, &'a Value)],
}

impl<'a> Fields<'a> {
    pub fn of(record: &'a Value) -> Self {
        Fields { record, added: &[] }
    }

    /// The record with `added` entries (a later one wins over an earlier one
    /// and over the record's own field of the same name).
    pub fn with(record: &'a Value, added: &'a [(&'a str, &'a Value)]) -> Self {
        Fields { record, added }
    }

    /// The value at `path`; None when it is absent or null.
    pub fn get(&self, path: &FieldPath) -> Option<&'a Value> {
        match entry_at(self.added, path) {
            Some(value) => value.filter(|v| !v.is_null()),
            None => path.get(self.record),
        }
    }

    /// The record with the entries in it, as JSON text.
    pub fn to_json(&self) -> String {
        if self.added.is_empty() {
            return self.record.to_string();
        }
        let mut record = self.record.clone();
        if let Some(object) = record.as_object_mut() {
            for (name, entry) in self.added {
                object.insert(name.to_string(), (*entry).clone());
            }
        }
        record.to_string()
    }
}

/// A dotted path into a JSON record, e.g. `user.address.city`.
#[derive(Debug, Clone)]
pub struct FieldPath {
    name: String,
    parts: Vec<String>,
}

impl FieldPath {
    pub fn new(name: &str) -> Self {
        FieldPath {
            name: name.to_string(),
            parts: name.split('.').map(str::to_string).collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value at the path; None when it is absent or null.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for p in &self.parts {
            cur = cur.get(p.as_str())?;
        }
        (!cur.is_null()).then_some(cur)
    }
}

pub fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl RecordParser {
    pub fn new(spec: &JobSpec) -> Self {
        // Every path the job reads, in one list: the decoder's tree is built
        // from it, and each gets its slot back in the same order.
        let keys = spec.key.iter().map(|k| FieldPath::new(k));
        let time = spec.event_time.field.as_deref().map(FieldPath::new);
        let aggregates = spec
            .aggregates
            .iter()
            .filter_map(|a| a.field.as_deref().map(FieldPath::new));
        let select = spec.select.iter().map(|f| FieldPath::new(f));
        let lookups = spec.enrich.iter().map(|l| FieldPath::new(&l.on));
        let paths: Vec<FieldPath> = keys
            .chain(time)
            .chain(aggregates)
            .chain(select)
            .chain(lookups)
            .collect();
        let (wanted, slots) = WantedFields::new(paths.iter().map(|p| p.parts.as_slice()));
        let mut fields = paths
            .into_iter()
            .zip(slots)
            .map(|(path, slot)| JobField { path, slot });
        let mut next = || fields.next().expect("one field a path");
        RecordParser {
            key_paths: spec.key.iter().map(|_| next()).collect(),
            time_path: spec.event_time.field.as_ref().map(|_| next()),
            time_format: spec.event_time.format,
            max_ahead: spec.event_time.max_ahead.as_millis(),
            horizon: AtomicI64::new(i64::MIN),
            aggregates: spec
                .aggregates
                .iter()
                .map(|a| (a.function, a.field.as_ref().map(|_| next())))
                .collect(),
            keep_raw: spec.side_outputs.late.is_some(),
            select: spec
                .select
                .iter()
                .map(|f| (next(), format!("{}:", Value::from(f.as_str()))))
                .collect(),
            lookups_on: spec.enrich.iter().map(|_| next()).collect(),
            wanted,
        }
    }

    /// The event of one record's JSON text, reading only the job's fields.
    pub fn parse(&self, line: &str) -> Result<Event, RecordError> {
        let mut decoded = Decoded::default();
        self.decode(line, &mut decoded)?;
        self.event(&decoded, || line.trim_end().into())
    }

    /// Reads a record's fields into `record`: what [`parse`] makes the
    /// event of, and what a job with lookups reads them from (with
    /// [`Enriched`]). Filled in place: a `Decoded` returned in a `Result`
    /// was copied, 96 more instructions a record.
    ///
    /// [`parse`]: RecordParser::parse
    pub fn decode<'de>(
        &self,
        line: &'de str,
        record: &mut Decoded<'de>,
    ) -> Result<(), RecordError> {
        self.wanted.decode(line, &mut record.0)
    }

    /// Lookup `lookup`'s `on` field of a record and the entries found
    /// for it before: None when absent or null.
    pub fn lookup_on<'a>(
        &self,
        lookup: usize,
        record: &'a impl FieldSource,
    ) -> Option<FieldRef<'a>> {
        record.field(&self.lookups_on[lookup])
    }

    /// The event of a parsed record; `text` is the record as JSON text,
    /// asked for only when the event keeps it (for the late side output).
    pub fn event(
        &self,
        value: &impl FieldSource,
        text: impl FnOnce() -> Box<str>,
    ) -> Result<Event, RecordError> {
        // Made as the event is built, so that it is built once, in the
        // result returned: moved on from one result to another, a
        // just-built event is copied while its stores are still in flight.
        self.read_fields(value, || {
            if !self.select.is_empty() {
                Some(self.project(value).into())
            } else if self.keep_raw {
                Some(text())
            } else {
                None
            }
        })
    }

    /// An event time more than `eventTime.maxAhead` ahead of the wall clock
    /// is refused: it would move the watermark so far that every later
    /// record is late.
    #[inline]
    fn check_not_ahead(&self, ts: i64) -> Result<(), String> {
        if ts <= self.horizon.load(Ordering::Relaxed) {
            Ok(())
        } else {
            self.check_against_the_clock(ts)
        }
    }

    /// [`RecordParser::check_not_ahead`] for a time beyond the horizon:
    /// the clock is read, and the horizon moved on.
    #[cold]
    fn check_against_the_clock(&self, ts: i64) -> Result<(), String> {
        let now = now_millis();
        let horizon = now.saturating_add(self.max_ahead);
        self.horizon.fetch_max(horizon, Ordering::Relaxed);
        if ts <= horizon {
            return Ok(());
        }
        Err(format!(
            "{} is more than eventTime.maxAhead ({}) ahead of the wall clock ({}); raise maxAhead if such times are right",
            format_time(ts),
            crate::spec::Duration::from_millis(self.max_ahead),
            format_time(now)
        ))
    }

    /// The selected fields of a record as a JSON object (a missing one as
    /// null), keyed by their paths: written straight into one string.
    fn project(&self, value: &impl FieldSource) -> String {
        let mut out = String::with_capacity(64 * self.select.len());
        out.push('{');
        for (i, (field, key)) in self.select.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            match value.field(field) {
                Some(v) => v.write_json(&mut out),
                None => out.push_str("null"),
            }
        }
        out.push('}');
        out
    }

    /// The event of a record parsed whole.
    pub fn from_value(&self, value: &Value) -> Result<Event, RecordError> {
        self.read_fields(&Fields::of(value), || None)
    }

    /// The event of a record's fields, keeping what `raw` makes of it (see
    /// [`Event::raw`]) once they are read.
    fn read_fields(
        &self,
        value: &impl FieldSource,
        raw: impl FnOnce() -> Option<Box<str>>,
    ) -> Result<Event, RecordError> {
        let mut key = SmallVec::new();
        for field in &self.key_paths {
            let v = value
                .field(field)
                .ok_or_else(|| RecordError::MissingKey(field.path.name.clone()))?;
            key.push(match v {
                FieldRef::Str(s) => KeyPart::Str(s.into()),
                FieldRef::Bool(b) => KeyPart::Bool(b),
                FieldRef::Number(n) if n.is_i64() => KeyPart::Int(n.as_i64().unwrap_or_default()),
                other => {
                    return Err(RecordError::BadKey {
                        field: field.path.name.clone(),
                        got: other.type_name(),
                    })
                }
            });
        }
        let ts = match &self.time_path {
            Some(field) => {
                let bad_time = |reason| RecordError::BadTime {
                    field: field.path.name.clone(),
                    reason,
                };
                let v = value
                    .field(field)
                    .ok_or_else(|| RecordError::MissingTime(field.path.name.clone()))?;
                let ts = match v {
                    FieldRef::Str(s) => parse_event_time_str(s, self.time_format),
                    FieldRef::Number(n) => parse_event_time_number(n, self.time_format),
                    FieldRef::Bool(b) => parse_event_time(&Value::Bool(b), self.time_format),
                    FieldRef::Nested(v) => parse_event_time(v, self.time_format),
                }
                .map_err(bad_time)?;
                self.check_not_ahead(ts).map_err(bad_time)?;
                ts
            }
            None => 0,
        };
        let mut values = SmallVec::new();
        for (function, field) in &self.aggregates {
            let v = field.as_ref().and_then(|f| value.field(f));
            values.push(match (function, v) {
                (_, None) => FieldValue::Missing,
                (AggregateFunction::CountDistinct, Some(v)) => {
                    let mut text = String::new();
                    v.write_json(&mut text);
                    FieldValue::Distinct(xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
                }
                (_, Some(FieldRef::Number(n))) => FieldValue::Num(match n.as_i64() {
                    Some(i) => Num::Int(i),
                    None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
                }),
                (f, Some(other)) => {
                    return Err(RecordError::NotANumber {
                        field: field
                            .as_ref()
                            .map(|f| f.path.name.clone())
                            .unwrap_or_default(),
                        function: f.name(),
                        got: other.type_name(),
                    })
                }
            });
        }
        Ok(Event {
            key: Key::new(key),
            ts,
            values,
            raw: raw(),
        })
    }
}

/// Records parsed as they are (the `Enricher` is the decoder of a job).
impl crate::connectors::Decode for RecordParser {
    fn decode(
        &mut self,
        value: Option<&str>,
        _key: Option<&[u8]>,
    ) -> std::io::Result<Result<Event, RecordError>> {
        Ok(self.parse(value.unwrap_or_default()))
    }
}
