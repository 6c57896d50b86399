//! A lookup table's changelog: read from where the table's snapshot left it
//! (or from its start) up to its end as of the job's start, so that the
//! table is caught up before the worker reads any record; then, for a Kafka
//! changelog that is not `bounded`, followed as it grows.

use std::path::Path;

use serde_json::Value;

use crate::checkpoint::PartitionPosition;
use crate::connectors::{
    file_splits, kafka_partitions, KafkaSplit, Poll, RawBatch, SourceItem, SourceSplit,
};
use crate::record::{parse_object, FieldPath, FieldRef, Key, KeyPart, RecordError};
use crate::spec::{Changelog as ChangelogSource, ChangelogSpec, KafkaSourceSpec};

/// Changelog records read per poll.
const BATCH: usize = 1024;

/// What a changelog record does to the table.
#[derive(Debug, PartialEq)]
pub(super) enum Change {
    /// The key's entry is now this JSON object.
    Put(Key, String),
    /// A Kafka record without a value: the key has no entry any more.
    Delete(Key),
}

pub(super) struct Changelog {
    split: Box<dyn SourceSplit>,
    /// After catching up, a Kafka changelog that is not `bounded` is
    /// followed.
    follow: Option<Follow>,
    caught_up: bool,
    decoder: EntryDecoder,
    /// Records as read, before they are decoded into changes.
    raw: RawBatch,
}

/// What reads a Kafka changelog on after the catch-up: its spec, the job's
/// name (for the consumer group) and the partitions.
struct Follow {
    spec: KafkaSourceSpec,
    job: String,
    partitions: Vec<(String, i32)>,
}

impl Changelog {
    /// Opens the changelog of lookup `field` (the spec path, for errors).
    pub fn open(
        spec: &ChangelogSpec,
        key: &str,
        fields: &[String],
        job: &str,
        base_dir: &Path,
        field: &str,
    ) -> std::io::Result<Self> {
        let changelog = spec
            .choice()
            .map_err(|e| std::io::Error::other(e.at(field)))?;
        let (split, follow) = match changelog {
            ChangelogSource::File(file) => {
                let split =
                    file_splits(file, base_dir, 1, 0..1, &format!("{field}.file"))?.remove(0);
                (split, None)
            }
            ChangelogSource::Kafka(kafka) => {
                let partitions = kafka_partitions(kafka, job, &format!("{field}.kafka.topics"))?;
                let mut kafka = kafka.clone();
                // An offset the topic no longer has (compacted or expired
                // since the snapshot) rereads the changelog from its start:
                // entries are idempotent, skipping to the end would lose some.
                kafka
                    .properties
                    .entry("auto.offset.reset".into())
                    .or_insert_with(|| "earliest".into());
                let kafka = &kafka;
                let catch_up = KafkaSourceSpec {
                    bounded: true,
                    ..kafka.clone()
                };
                let split: Box<dyn SourceSplit> =
                    Box::new(KafkaSplit::new(&catch_up, job, partitions.clone())?);
                let follow = (!kafka.bounded).then(|| Follow {
                    spec: kafka.clone(),
                    job: job.to_string(),
                    partitions,
                });
                (split, follow)
            }
        };
        Ok(Changelog {
            split,
            follow,
            caught_up: false,
            decoder: EntryDecoder {
                key: FieldPath::new(key),
                fields: fields.iter().map(|f| FieldPath::new(f)).collect(),
            },
            raw: RawBatch::default(),
        })
    }

    /// Whether the changelog has been read up to its end as of the start.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Reads a batch: the changes, and the records that cannot be read
    /// (added to `rejected`). Returns whether anything was read.
    pub fn poll(
        &mut self,
        changes: &mut Vec<Change>,
        rejected: &mut Vec<SourceItem>,
    ) -> std::io::Result<bool> {
        let poll = self.split.poll(&mut self.raw, BATCH)?;
        let read = !self.raw.is_empty();
        let decoder = &self.decoder;
        self.raw.decode_records_into(
            &*self.split,
            |value, key| decoder.change(value, key),
            changes,
            rejected,
        );
        if poll == Poll::Ended && !self.caught_up {
            self.caught_up = true;
            if let Some(follow) = self.follow.take() {
                let positions = self.split.positions();
                let mut follower = KafkaSplit::new(&follow.spec, &follow.job, follow.partitions)?
                    .without_waiting();
                for (p, (offset, records)) in positions.into_iter().enumerate() {
                    follower.seek(p, offset, records)?;
                }
                self.split = Box::new(follower);
            }
        }
        Ok(read)
    }

    /// Where each partition is, for a snapshot.
    pub fn positions(&self) -> Vec<PartitionPosition> {
        self.split
            .partition_ids()
            .into_iter()
            .zip(self.split.positions())
            .map(|(id, (offset, records))| PartitionPosition {
                id,
                offset,
                records,
                max_ts: 0,
                ended: false,
            })
            .collect()
    }

    /// Resumes where a snapshot's table was read up to.
    pub fn seek(&mut self, positions: &[PartitionPosition]) -> std::io::Result<()> {
        for (p, id) in self.split.partition_ids().iter().enumerate() {
            if let Some(pos) = positions.iter().find(|pos| &pos.id == id) {
                self.split.seek(p, pos.offset, pos.records)?;
            }
        }
        Ok(())
    }
}

/// Turns a changelog record into the change it makes: the entry's key (as
/// text, see `lookup_key`) and its kept fields, or a deletion.
struct EntryDecoder {
    key: FieldPath,
    /// Fields kept; empty: the whole record.
    fields: Vec<FieldPath>,
}

impl EntryDecoder {
    /// `value` is the record's text (None: a Kafka tombstone), `key` its
    /// Kafka key.
    fn change(&self, value: Option<&str>, key: Option<&[u8]>) -> Result<Change, RecordError> {
        Ok(match value {
            // A tombstone: the key is the Kafka record's.
            None => {
                let key = key.ok_or_else(|| {
                    RecordError::Json("a record with neither value nor key".into())
                })?;
                let key = message_key(key, &self.key)
                    .ok_or_else(|| RecordError::MissingKey(self.key.name().into()))?;
                Change::Delete(key)
            }
            Some(text) => {
                let record = parse_object(text)?;
                let key_value = self
                    .key
                    .get(&record)
                    .ok_or_else(|| RecordError::MissingKey(self.key.name().into()))?;
                let key = FieldRef::of(key_value)
                    .and_then(lookup_key)
                    .ok_or_else(|| RecordError::BadKey {
                        field: self.key.name().into(),
                        got: crate::record::type_name(key_value),
                    })?;
                Change::Put(key, self.kept(&record, text))
            }
        })
    }

    /// The entry: the kept fields as an object (absent ones left out), a
    /// nested one at its place (`address.city` as `{"address": {"city": …}}`),
    /// so that `user.address.city` reaches it.
    fn kept(&self, record: &Value, text: &str) -> String {
        if self.fields.is_empty() {
            return text.trim().to_string();
        }
        let mut entry = Value::Object(Default::default());
        for field in &self.fields {
            let Some(value) = field.get(record) else {
                continue;
            };
            let mut at = &mut entry;
            let mut parts = field.name().split('.').peekable();
            while let Some(part) = parts.next() {
                let object = match at {
                    Value::Object(object) => object,
                    _ => break,
                };
                if parts.peek().is_none() {
                    object.insert(part.to_string(), value.clone());
                    break;
                }
                at = object
                    .entry(part)
                    .or_insert_with(|| Value::Object(Default::default()));
            }
        }
        entry.to_string()
    }
}

/// A lookup key: its text, a string as it is, a number or a boolean as
/// written. Records and changelogs may spell the same id differently
/// (`42`, `"42"`); they match. None for objects and arrays. Short keys are
/// made without an allocation: this runs for every lookup of every record.
pub(super) fn lookup_key(value: FieldRef<'_>) -> Option<Key> {
    use compact_str::ToCompactString;
    let text = match value {
        FieldRef::Str(s) => s.to_compact_string(),
        // A whole number written as a float (`42.0`) is the integer.
        FieldRef::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_compact_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                (f as i64).to_compact_string()
            }
            _ => n.to_compact_string(),
        },
        FieldRef::Bool(b) => b.to_compact_string(),
        FieldRef::Nested(_) => return None,
    };
    Some(Key::new(smallvec::smallvec![KeyPart::Str(text)]))
}

/// A Kafka record key as a lookup key: a JSON string (`"u1"`) as its
/// content; a JSON object (`{"id": 42}`, as Kafka Connect writes keys) by the
/// changelog's key field (None when it lacks it); anything else, numbers
/// too, as the text it is (a string id `1.0` stays `1.0`).
fn message_key(key: &[u8], field: &FieldPath) -> Option<Key> {
    let text = String::from_utf8_lossy(key);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::String(s)) => Some(Key::str(&s)),
        Ok(object @ Value::Object(_)) => field
            .get(&object)
            .and_then(FieldRef::of)
            .and_then(lookup_key),
        _ => Some(Key::str(&text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decoder(fields: &[&str]) -> EntryDecoder {
        EntryDecoder {
            key: FieldPath::new("id"),
            fields: fields.iter().map(|f| FieldPath::new(f)).collect(),
        }
    }

    #[test]
    fn an_entry_keeps_the_named_fields_keyed_by_text() {
        let change = decoder(&["name", "address.city"]).change(
            Some(r#"{"id": 42, "name": "Ann", "address": {"city": "Oslo"}, "x": 1}"#),
            None,
        );
        assert_eq!(
            change,
            Ok(Change::Put(
                Key::str("42"),
                r#"{"name":"Ann","address":{"city":"Oslo"}}"#.into()
            ))
        );
    }

    #[test]
    fn a_tombstone_deletes_the_kafka_key() {
        let d = decoder(&[]);
        for (key, text) in [
            (&b"42"[..], "42"),
            (b"\"u1\"", "u1"),
            (b"u1", "u1"),
            (br#"{"id": 42}"#, "42"),
            (b"1.0", "1.0"),
        ] {
            assert_eq!(
                d.change(None, Some(key)),
                Ok(Change::Delete(Key::str(text)))
            );
        }
    }

    #[test]
    fn keys_match_as_text() {
        for (value, text) in [
            (json!(42), "42"),
            (json!(42.0), "42"),
            (json!(1e16), "10000000000000000"),
            (json!(4.5), "4.5"),
            (json!("42"), "42"),
            (json!(true), "true"),
        ] {
            assert_eq!(
                FieldRef::of(&value).and_then(lookup_key),
                Some(Key::str(text)),
                "{value}"
            );
        }
        assert_eq!(FieldRef::of(&json!([1])).and_then(lookup_key), None);
    }

    #[test]
    fn an_entry_without_its_key_is_malformed() {
        let d = decoder(&[]);
        assert_eq!(
            d.change(None, Some(br#"{"user": 42}"#)),
            Err(RecordError::MissingKey("id".into()))
        );
        assert_eq!(
            d.change(Some(r#"{"name": "Ann"}"#), None),
            Err(RecordError::MissingKey("id".into()))
        );
        assert!(matches!(
            d.change(Some(r#"{"id": {"a": 1}}"#), None),
            Err(RecordError::BadKey { .. })
        ));
    }
}
