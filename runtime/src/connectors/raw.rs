//! What a split reads, before anything is decoded: records as bytes with
//! where they came from, in the order read. Decoding is the worker's stage
//! (so that it can run on several cores while one split reads); a split
//! only reads.

use std::ops::Range;

use super::{Decode, Malformed, SourceItem, SourceSplit};
use crate::record::{Event, RecordError, RecordParser};

/// A batch of what splits read, in order. The records' bytes lie one after
/// another in one buffer, so reading a batch allocates nothing per record.
/// Kafka keys have a buffer of their own: they may be any bytes, and the
/// values' buffer is checked as UTF-8 as a whole.
#[derive(Debug, Default)]
pub struct RawBatch {
    bytes: Vec<u8>,
    keys: Vec<u8>,
    entries: Vec<RawEntry>,
    /// How many records the entries hold (a run of lines counts its
    /// lines).
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
        /// In the batch's keys.
        key: Option<Range<usize>>,
        at: u64,
    },
    /// Whole lines of a file, read at once and cut into records only by
    /// whoever decodes them: the split that reads a busy file only copies
    /// and counts, and the records are found on the cores that parse.
    Lines { partition: usize, run: LineRun },
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
    /// events or partition ends (a run of lines counts its lines, blank
    /// ones included).
    pub fn records(&self) -> usize {
        self.records
    }

    /// How many items the batch makes at most: its records (as counted by
    /// [`RawBatch::records`]), generated events and partition ends. What a
    /// poll read, whatever the source.
    pub fn items(&self) -> usize {
        self.entries.iter().map(RawEntry::items).sum()
    }

    /// The entries cut into parts of at least `items` items each (see
    /// [`RawBatch::items`]; the last part may hold fewer), in order: a run
    /// of lines is not cut.
    pub fn parts(&self, items: usize) -> Vec<Range<usize>> {
        let mut parts = Vec::with_capacity(self.records / items.max(1) + 1);
        let (mut start, mut held) = (0, 0);
        for (i, entry) in self.entries.iter().enumerate() {
            held += entry.items();
            if held >= items {
                parts.push(start..i + 1);
                (start, held) = (i + 1, 0);
            }
        }
        if start < self.entries.len() {
            parts.push(start..self.entries.len());
        }
        parts
    }

    /// Appends a record, copying its bytes.
    pub fn push_record(
        &mut self,
        partition: usize,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        at: u64,
    ) {
        let value = value.map(|v| copy(&mut self.bytes, v));
        let key = key.map(|k| copy(&mut self.keys, k));
        self.records += 1;
        self.entries.push(RawEntry::Record {
            partition,
            value,
            key,
            at,
        });
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

    /// Adds a run of whole lines of `partition` whose bytes a reader
    /// appended (see [`LineRun`]).
    pub fn push_lines(&mut self, partition: usize, run: LineRun) {
        self.records += run.lines;
        self.entries.push(RawEntry::Lines { partition, run });
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
        let RawBatch {
            bytes,
            keys,
            entries,
            ..
        } = self;
        let text = BatchText::of(bytes, 0..bytes.len());
        let outcome = emit_entries(bytes, keys, entries, split, out, |value, key| {
            match value.map(|value| text.record(value)).transpose() {
                Ok(text) => decoder.decode(text, key),
                Err(e) => Ok(Err(e)),
            }
        });
        self.clear();
        outcome
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
        let text = BatchText::of(&self.bytes, 0..self.bytes.len());
        let mut one = |partition: usize, value: Option<Range<usize>>, key: Option<&[u8]>, at| {
            let read = value.clone().map(|v| text.record(v)).transpose();
            match read.and_then(|text| decode(text, key)) {
                Ok(d) => decoded.push(d),
                Err(error) => malformed.push(SourceItem::Malformed(Malformed::new(
                    error,
                    value.map(|v| &self.bytes[v]),
                    split.location(partition, at),
                ))),
            }
        };
        for entry in &self.entries {
            match entry {
                RawEntry::Record {
                    partition,
                    value,
                    key,
                    at,
                } => one(
                    *partition,
                    value.clone(),
                    key.clone().map(|k| &self.keys[k]),
                    *at,
                ),
                RawEntry::Lines { partition, run } => {
                    for (value, at) in run.records(&self.bytes) {
                        one(*partition, Some(value), None, at);
                    }
                }
                RawEntry::Event { .. } | RawEntry::End(_) => {}
            }
        }
        self.clear();
    }

    /// Parses the records among entries `part` with `parser` into `out`,
    /// in order: one part of a batch that several threads parse, then
    /// joined in order. Only the split knows where a record was read, so a
    /// malformed record's location is left empty, and its place among
    /// `out`'s other items goes to `unlocated` for the thread that joins
    /// the parts.
    pub fn parse_part<P: PartItems>(
        &self,
        part: Range<usize>,
        parser: &RecordParser,
        out: &mut P,
        unlocated: &mut Vec<Unlocated>,
    ) {
        let entries = &self.entries[part];
        let text = BatchText::of(&self.bytes, values_span(entries));
        out.reserve(entries.iter().map(RawEntry::items).sum());
        for entry in entries {
            match entry {
                RawEntry::Record {
                    partition,
                    value,
                    at,
                    ..
                } => parse_record(
                    out,
                    unlocated,
                    parser,
                    &text,
                    *partition,
                    value.clone(),
                    *at,
                ),
                RawEntry::Lines { partition, run } => {
                    for (value, at) in run.records(&self.bytes) {
                        parse_record(out, unlocated, parser, &text, *partition, Some(value), at);
                    }
                }
                // A split that generates events reads no records, so its
                // batches are not parsed in parts; copied all the same.
                RawEntry::Event { partition, event } => out.record(*partition, event.clone()),
                RawEntry::End(partition) => {
                    out.other(SourceItem::PartitionEnd(*partition));
                }
            }
        }
    }

    /// Empties the batch, for the next read.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
        self.keys.clear();
        self.records = 0;
    }
}

/// Where [`RawBatch::parse_part`] puts a part's items, in the order read.
pub trait PartItems {
    /// Room for `items` more.
    fn reserve(&mut self, items: usize);
    /// A record's event, read from `partition`.
    fn record(&mut self, partition: usize, event: Event);
    /// A malformed record or a partition's end; returns its index in the
    /// list of items that [`Unlocated::locate`] is later given.
    fn other(&mut self, item: SourceItem) -> usize;
}

/// Every item in one list, in the order read: what the tests compare the
/// parts dealt out by owner with (the engine parses only into those).
#[cfg(test)]
impl PartItems for Vec<SourceItem> {
    fn reserve(&mut self, items: usize) {
        Vec::reserve(self, items);
    }

    fn record(&mut self, partition: usize, event: Event) {
        self.push(SourceItem::Record { partition, event });
    }

    fn other(&mut self, item: SourceItem) -> usize {
        self.push(item);
        self.len() - 1
    }
}

/// A malformed record among the items of a part parsed apart from its
/// split: its index among them (see [`PartItems::other`]), and where it
/// was read.
#[derive(Debug)]
pub struct Unlocated {
    index: usize,
    partition: usize,
    at: u64,
}

impl Unlocated {
    /// Gives the record at its index in `items` its location.
    pub fn locate(&self, split: &dyn SourceSplit, items: &mut [SourceItem]) {
        if let SourceItem::Malformed(m) = &mut items[self.index] {
            m.location = split.location(self.partition, self.at);
        }
    }
}

impl RawEntry {
    /// How many items it makes at most: one, or a run's lines.
    fn items(&self) -> usize {
        match self {
            RawEntry::Lines { run, .. } => run.lines,
            RawEntry::Record { .. } | RawEntry::Event { .. } | RawEntry::End(_) => 1,
        }
    }

    /// Where the entry's bytes are in its batch's bytes.
    fn value(&self) -> Option<Range<usize>> {
        match self {
            RawEntry::Record { value, .. } => value.clone(),
            RawEntry::Lines { run, .. } => Some(run.bytes.clone()),
            RawEntry::Event { .. } | RawEntry::End(_) => None,
        }
    }
}

/// Whole lines of a file that a reader appended to a batch's bytes at once
/// ([`RawBatch::push_lines`]), each ending in a newline.
#[derive(Debug, Clone)]
pub struct LineRun {
    /// Where the lines are in the batch's bytes.
    pub bytes: Range<usize>,
    /// How many lines (newlines) it holds.
    pub lines: usize,
    /// The number of its first line in the file, from 1.
    pub first_line: u64,
    /// Whether it starts the file: its first line may begin with a
    /// byte-order mark.
    pub at_file_start: bool,
}

impl LineRun {
    /// Each line that holds a record, in order: where the record is in the
    /// batch's bytes (see [`line_record`]) and its line number.
    fn records<'a>(&self, bytes: &'a [u8]) -> impl Iterator<Item = (Range<usize>, u64)> + 'a {
        let LineRun {
            bytes: run,
            first_line,
            at_file_start,
            ..
        } = self.clone();
        let mut start = run.start;
        memchr::memchr_iter(b'\n', &bytes[run.clone()])
            .enumerate()
            .filter_map(move |(i, newline)| {
                let line = start..run.start + newline + 1;
                start = line.end;
                line_record(&bytes[line.clone()], line.start, at_file_start && i == 0)
                    .map(|value| (value, first_line + i as u64))
            })
    }
}

/// A byte-order mark some editors write at the start of a UTF-8 file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where the record of a JSON line that lies at `at` in a batch's bytes
/// is: the line without the whitespace around it (and without a byte-order
/// mark at the start of the file). None for a blank line: no record.
pub(crate) fn line_record(line: &[u8], at: usize, first_in_file: bool) -> Option<Range<usize>> {
    let bom = match first_in_file && line.starts_with(BOM) {
        true => BOM.len(),
        false => 0,
    };
    let text = &line[bom..];
    let leading = text.len() - text.trim_ascii_start().len();
    let trailing = text.len() - text.trim_ascii_end().len();
    (leading < text.len()).then(|| at + bom + leading..at + line.len() - trailing)
}

/// Turns `entries` into items, in order, each record's from what `decode`
/// makes of it (given where its value is in `bytes`, and its key); an
/// error from `decode` stops it (the job fails).
fn emit_entries(
    bytes: &[u8],
    keys: &[u8],
    entries: &mut Vec<RawEntry>,
    split: &dyn SourceSplit,
    out: &mut Vec<SourceItem>,
    mut decode: impl FnMut(
        Option<Range<usize>>,
        Option<&[u8]>,
    ) -> std::io::Result<Result<Event, RecordError>>,
) -> std::io::Result<()> {
    out.reserve(entries.len());
    for entry in entries.drain(..) {
        match entry {
            RawEntry::Record {
                partition,
                value,
                key,
                at,
            } => emit_record(
                out,
                &mut decode,
                bytes,
                split,
                partition,
                value,
                key.map(|k| &keys[k]),
                at,
            )?,
            RawEntry::Lines { partition, run } => {
                for (value, at) in run.records(bytes) {
                    emit_record(
                        out,
                        &mut decode,
                        bytes,
                        split,
                        partition,
                        Some(value),
                        None,
                        at,
                    )?;
                }
            }
            RawEntry::Event { partition, event } => {
                out.push(SourceItem::Record { partition, event })
            }
            RawEntry::End(partition) => out.push(SourceItem::PartitionEnd(partition)),
        }
    }
    Ok(())
}

/// Parses a record for [`RawBatch::parse_part`] into `out`; a malformed
/// one goes to `unlocated` too. Inlined, like [`emit_record`].
#[inline(always)]
fn parse_record<P: PartItems>(
    out: &mut P,
    unlocated: &mut Vec<Unlocated>,
    parser: &RecordParser,
    text: &BatchText,
    partition: usize,
    value: Option<Range<usize>>,
    at: u64,
) {
    let parsed = match value.clone().map(|v| text.record(v)).transpose() {
        Ok(text) => parser.parse(text.unwrap_or_default()),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(event) => out.record(partition, event),
        Err(error) => {
            let value = value.map(|v| &text.bytes[v]);
            let malformed = Malformed::new(error, value, String::new());
            unlocated.push(Unlocated {
                index: out.other(SourceItem::Malformed(malformed)),
                partition,
                at,
            });
        }
    }
}

/// Appends the item `decode` makes of a record (see [`emit_entries`]).
/// Inlined: called once a record, it would otherwise hand the item back
/// through memory.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit_record(
    out: &mut Vec<SourceItem>,
    decode: &mut impl FnMut(
        Option<Range<usize>>,
        Option<&[u8]>,
    ) -> std::io::Result<Result<Event, RecordError>>,
    bytes: &[u8],
    split: &dyn SourceSplit,
    partition: usize,
    value: Option<Range<usize>>,
    key: Option<&[u8]>,
    at: u64,
) -> std::io::Result<()> {
    out.push(match decode(value.clone(), key)? {
        Ok(event) => SourceItem::Record { partition, event },
        Err(error) => {
            let value = value.map(|v| &bytes[v]);
            let location = split.location(partition, at);
            SourceItem::Malformed(Malformed::new(error, value, location))
        }
    });
    Ok(())
}

/// The bytes from the first value of `entries` to the end of the last
/// (empty without any): what a part's records are cut from.
fn values_span(entries: &[RawEntry]) -> Range<usize> {
    let mut values = entries.iter().filter_map(RawEntry::value);
    match (values.next(), values.next_back()) {
        (Some(first), Some(last)) => first.start..last.end.max(first.start),
        (Some(only), None) => only,
        (None, _) => 0..0,
    }
}

/// Appends `from` to `to`; where it went.
fn copy(to: &mut Vec<u8>, from: &[u8]) -> Range<usize> {
    let start = to.len();
    to.extend_from_slice(from);
    start..to.len()
}

/// A span of a batch's bytes, checked as UTF-8 once for all the records in
/// it rather than record by record (one long check is several times
/// cheaper than many short ones).
struct BatchText<'b> {
    bytes: &'b [u8],
    start: usize,
    /// The span as text, when all of it is UTF-8.
    text: Option<&'b str>,
}

impl<'b> BatchText<'b> {
    fn of(bytes: &'b [u8], span: Range<usize>) -> Self {
        BatchText {
            bytes,
            start: span.start,
            text: std::str::from_utf8(&bytes[span]).ok(),
        }
    }

    /// A record's text. Cut from the span's text where the span is UTF-8
    /// and the record starts and ends between characters (a record of
    /// broken UTF-8 can sit beside one that completes its character);
    /// checked alone otherwise, so that a bad record gets its own reason.
    fn record(&self, value: Range<usize>) -> Result<&'b str, RecordError> {
        let within = value
            .start
            .checked_sub(self.start)
            .map(|s| s..value.end - self.start);
        match within.and_then(|r| self.text?.get(r)) {
            Some(text) => Ok(text),
            None => text_of(Some(&self.bytes[value])).map(|t| t.unwrap_or_default()),
        }
    }
}

/// A record's bytes as text. Bytes that are not UTF-8 are not JSON: the
/// record is malformed, with where its first bad byte is; every source
/// treats them alike.
fn text_of(value: Option<&[u8]>) -> Result<Option<&str>, RecordError> {
    value
        .map(std::str::from_utf8)
        .transpose()
        .map_err(|e| RecordError::NotUtf8(e.valid_up_to()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hold_at_least_their_records_and_never_cut_a_run() {
        let mut batch = RawBatch::default();
        for i in 0..5 {
            batch.push_record(0, Some(b"{}"), None, i);
        }
        let run = |lines| LineRun {
            bytes: 0..0,
            lines,
            first_line: 1,
            at_file_start: false,
        };
        batch.push_lines(0, run(7));
        batch.push_lines(0, run(2));
        batch.push_record(0, Some(b"{}"), None, 9);
        batch.push_end(0);
        assert_eq!(batch.records(), 5 + 7 + 2 + 1);
        batch.push_event(
            0,
            Event {
                key: crate::record::Key::int(1),
                ts: 0,
                values: Default::default(),
                raw: None,
            },
        );
        assert_eq!(batch.records(), 15, "a generated event is no record");
        assert_eq!(batch.items(), 15 + 1 + 1, "but it is read, as the end is");
        // Entries: 5 records, runs of 7 and 2, a record, an end.
        assert_eq!(batch.parts(4), [0..4, 4..6, 6..9, 9..10]);
        assert_eq!(batch.parts(100), vec![0..10]);
    }

    /// A part is checked as UTF-8 once, from its first record to the end
    /// of its last, also when it is one run of lines (as most parts of a
    /// busy file are), not line by line.
    #[test]
    fn a_part_is_checked_as_text_from_its_first_record_to_its_last() {
        let mut batch = RawBatch::default();
        let lines = b"{\"n\":1}\n{\"n\":2}\n".as_slice();
        batch.buffer().extend_from_slice(lines);
        let run = LineRun {
            bytes: 0..lines.len(),
            lines: 2,
            first_line: 1,
            at_file_start: true,
        };
        batch.push_lines(0, run);
        batch.push_end(0);
        assert_eq!(values_span(&batch.entries), 0..lines.len());
        batch.push_record(0, Some(b"{}"), None, 3);
        assert_eq!(values_span(&batch.entries), 0..lines.len() + 2);
        assert_eq!(values_span(&batch.entries[1..2]), 0..0);
    }

    #[test]
    fn a_record_is_cut_from_the_batchs_text_only_between_characters() {
        // "é" is C3 A9: split over two records, each is broken UTF-8,
        // though the batch's bytes are valid.
        let bytes = b"{\"a\":1}\xC3\xA9x";
        let text = BatchText::of(bytes, 0..bytes.len());
        assert!(text.text.is_some());
        assert_eq!(text.record(0..7), Ok("{\"a\":1}"));
        assert_eq!(text.record(7..8), Err(RecordError::NotUtf8(0)));
        assert_eq!(text.record(8..10), Err(RecordError::NotUtf8(0)));
        assert_eq!(text.record(7..9), Ok("é"));
    }

    #[test]
    fn a_binary_kafka_key_leaves_the_values_checked_once_a_batch() {
        let mut batch = RawBatch::default();
        batch.push_record(0, Some(b"{\"a\":1}"), Some(&[0xFF, 0x00]), 7);
        batch.push_record(0, Some(b"{\"b\":2}"), None, 8);
        let text = BatchText::of(&batch.bytes, 0..batch.bytes.len());
        assert_eq!(text.text, Some("{\"a\":1}{\"b\":2}"));
        assert_eq!(batch.keys, [0xFF, 0x00]);
    }

    #[test]
    fn one_broken_record_leaves_the_others_of_its_batch_readable() {
        let bytes = b"ok\xFFno\xC3(rest";
        let text = BatchText::of(bytes, 0..bytes.len());
        assert!(text.text.is_none());
        assert_eq!(text.record(0..2), Ok("ok"));
        assert_eq!(text.record(2..5), Err(RecordError::NotUtf8(0)));
        assert_eq!(text.record(5..7), Err(RecordError::NotUtf8(0)));
        assert_eq!(text.record(7..11), Ok("rest"));
        // A span that starts later: ranges are the batch's.
        let text = BatchText::of(bytes, 7..bytes.len());
        assert_eq!(text.record(7..11), Ok("rest"));
    }
}
