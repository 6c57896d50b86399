//! What a split reads, before anything is decoded: records as bytes with
//! where they came from, in the order read. Decoding is the worker's stage
//! (so that it can run on several cores while one split reads); a split
//! only reads.

use std::ops::Range;

use super::{Decode, Malformed, SourceItem, SourceSplit};
use crate::record::{Event, RecordError, RecordParser};

/// A batch of what splits read, in order. The records' bytes lie one after
/// another in one buffer, so reading a batch allocates nothing per record.
#[derive(Debug, Default)]
pub struct RawBatch {
    bytes: Vec<u8>,
    entries: Vec<RawEntry>,
    /// How many of the entries are records (to decode).
    records: usize,
}

#[derive(Debug)]
pub enum RawEntry {
    /// A record as read. `value` is None for a Kafka record without one (a
    /// tombstone); `at` says where it is in its partition (the line of a
    /// file, the offset in Kafka), for [`SourceSplit::location`].
    Record {
        partition: usize,
        value: Option<Range<usize>>,
        key: Option<Range<usize>>,
        at: u64,
    },
    /// An event a source made itself (the generator): nothing to decode.
    Event { partition: usize, event: Event },
    /// The partition has no more records.
    End(usize),
}

impl RawBatch {
    /// How many entries the batch holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many records the batch holds: entries to decode, not generated
    /// events or partition ends.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Appends a record, copying its bytes.
    pub fn push_record(
        &mut self,
        partition: usize,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        at: u64,
    ) {
        let value = value.map(|v| self.copy(v));
        let key = key.map(|k| self.copy(k));
        self.records += 1;
        self.entries.push(RawEntry::Record {
            partition,
            value,
            key,
            at,
        });
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    /// The buffer, for a reader that appends a record's bytes in place; the
    /// record is then added with [`RawBatch::push_read`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Adds the record whose bytes a reader appended at `value`.
    pub fn push_read(&mut self, partition: usize, value: Range<usize>, at: u64) {
        self.records += 1;
        self.entries.push(RawEntry::Record {
            partition,
            value: Some(value),
            key: None,
            at,
        });
    }

    pub fn push_event(&mut self, partition: usize, event: Event) {
        self.entries.push(RawEntry::Event { partition, event });
    }

    pub fn push_end(&mut self, partition: usize) {
        self.entries.push(RawEntry::End(partition));
    }

    /// Turns the batch into items, decoding each record with `decoder`, and
    /// empties it.
    pub fn decode_each(
        &mut self,
        decoder: &mut dyn Decode,
        split: &dyn SourceSplit,
        out: &mut Vec<SourceItem>,
    ) -> std::io::Result<()> {
        self.emit(split, out, |value, key| match text_of(value) {
            Ok(text) => decoder.decode(text, key),
            Err(e) => Ok(Err(e)),
        })
    }

    /// Decodes the batch's records with `decode`, in order, into `decoded`;
    /// a record that cannot be read goes to `malformed`, with why and where
    /// it was read. Generated events and partition ends are not records and
    /// are left out: this is for readers of records only (a lookup table's
    /// changelog). Empties the batch.
    pub fn decode_records_into<T>(
        &mut self,
        split: &dyn SourceSplit,
        mut decode: impl FnMut(Option<&str>, Option<&[u8]>) -> Result<T, RecordError>,
        decoded: &mut Vec<T>,
        malformed: &mut Vec<SourceItem>,
    ) {
        for entry in self.entries.drain(..) {
            let RawEntry::Record {
                partition,
                value,
                key,
                at,
            } = entry
            else {
                continue;
            };
            let value = value.map(|r| &self.bytes[r]);
            let key = key.map(|r| &self.bytes[r]);
            match text_of(value).and_then(|text| decode(text, key)) {
                Ok(d) => decoded.push(d),
                Err(error) => malformed.push(SourceItem::Malformed(Malformed::new(
                    error,
                    value,
                    split.location(partition, at),
                ))),
            }
        }
        self.bytes.clear();
        self.records = 0;
    }

    /// Parses the records among entries `part` with `parser`, in order,
    /// into `decoded`: one part of a batch that several threads parse,
    /// joined again by [`RawBatch::emit`].
    pub fn parse_part(
        &self,
        part: Range<usize>,
        parser: &RecordParser,
        decoded: &mut Vec<Result<Event, RecordError>>,
    ) {
        for entry in &self.entries[part] {
            if let RawEntry::Record { value, .. } = entry {
                let value = value.clone().map(|r| &self.bytes[r]);
                decoded
                    .push(text_of(value).and_then(|text| parser.parse(text.unwrap_or_default())));
            }
        }
    }

    /// Turns the entries into items, in order, each record's from what
    /// `decode` makes of its value and key, in one pass; empties the batch.
    /// An error from `decode` stops it (the job fails).
    pub fn emit<E>(
        &mut self,
        split: &dyn SourceSplit,
        out: &mut Vec<SourceItem>,
        mut decode: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<Result<Event, RecordError>, E>,
    ) -> Result<(), E> {
        out.reserve(self.entries.len());
        let mut outcome = Ok(());
        for entry in self.entries.drain(..) {
            out.push(match entry {
                RawEntry::Record {
                    partition,
                    value,
                    key,
                    at,
                } => {
                    let value = value.map(|r| &self.bytes[r]);
                    let key = key.map(|r| &self.bytes[r]);
                    match decode(value, key) {
                        Ok(decoded) => {
                            item(decoded, partition, value, || split.location(partition, at))
                        }
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                RawEntry::Event { partition, event } => SourceItem::Record { partition, event },
                RawEntry::End(partition) => SourceItem::PartitionEnd(partition),
            });
        }
        self.bytes.clear();
        self.records = 0;
        outcome
    }
}

/// A record's bytes as text. Bytes that are not UTF-8 are not JSON: the
/// record is malformed, with where its first bad byte is; every source
/// treats them alike.
pub fn text_of(value: Option<&[u8]>) -> Result<Option<&str>, RecordError> {
    value
        .map(std::str::from_utf8)
        .transpose()
        .map_err(|e| RecordError::NotUtf8(e.valid_up_to()))
}

/// What the worker gets for a decoded record: its event, or the record as
/// read with why and where.
fn item(
    decoded: Result<Event, RecordError>,
    partition: usize,
    value: Option<&[u8]>,
    location: impl FnOnce() -> String,
) -> SourceItem {
    match decoded {
        Ok(event) => SourceItem::Record { partition, event },
        Err(error) => SourceItem::Malformed(Malformed::new(error, value, location())),
    }
}

impl Malformed {
    /// A record that cannot be read: why, the record as read (lossily, when
    /// not UTF-8), and where.
    fn new(error: RecordError, value: Option<&[u8]>, location: String) -> Self {
        Malformed {
            error,
            raw: String::from_utf8_lossy(value.unwrap_or_default()).into_owned(),
            location,
        }
    }
}
