//! JSON-lines files as a bounded source: each file is a partition; a split
//! reads its files line by line in turn, so their watermarks advance together.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;

use crate::connectors::{Poll, RawBatch, SourceSplit};

/// A byte-order mark some editors write at the start of a UTF-8 file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

struct OpenFile {
    /// The path as the job spec names it: the partition's id.
    id: String,
    path: PathBuf,
    name: String,
    reader: Option<BufReader<File>>,
    line_no: u64,
    offset: u64,
}

impl OpenFile {
    /// Reads up to `max` lines straight into the batch; how many (0 at the
    /// end of the file). The lines already in the reader's buffer are
    /// found with one search and copied at once; a line the buffer does
    /// not hold whole is read on its own.
    fn read_lines(
        &mut self,
        partition: usize,
        out: &mut RawBatch,
        max: usize,
    ) -> std::io::Result<usize> {
        let reader = self.reader.as_mut().expect("file is open");
        let buffered = reader.fill_buf()?;
        if buffered.is_empty() {
            return Ok(0);
        }
        let base = out.buffer().len();
        let mut taken = 0;
        let mut lines = 0;
        for newline in memchr::memchr_iter(b'\n', buffered).take(max) {
            let line = taken..newline + 1;
            taken = newline + 1;
            lines += 1;
            self.line_no += 1;
            let first = self.offset == 0;
            self.offset += line.len() as u64;
            if let Some(record) = record_in(&buffered[line.clone()], base + line.start, first) {
                out.push_read(partition, record, self.line_no);
            }
        }
        if lines > 0 {
            out.buffer().extend_from_slice(&buffered[..taken]);
            reader.consume(taken);
            return Ok(lines);
        }
        let read = reader.read_until(b'\n', out.buffer())?;
        self.line_no += 1;
        let first = self.offset == 0;
        self.offset += read as u64;
        if let Some(record) = record_in(&out.buffer()[base..], base, first) {
            out.push_read(partition, record, self.line_no);
        }
        Ok(1)
    }
}

/// Where the record of a line that lies at `at` in the batch's bytes is:
/// the line without the whitespace around it (and without a byte-order
/// mark at the start of the file). None for a blank line: no record.
fn record_in(line: &[u8], at: usize, first_in_file: bool) -> Option<Range<usize>> {
    let bom = match first_in_file && line.starts_with(BOM) {
        true => BOM.len(),
        false => 0,
    };
    let text = &line[bom..];
    let leading = text.len() - text.trim_ascii_start().len();
    let trailing = text.len() - text.trim_ascii_end().len();
    (leading < text.len()).then(|| at + bom + leading..at + line.len() - trailing)
}

pub struct FileSplit {
    files: Vec<OpenFile>,
    /// Files not ended yet, read one line each in turn.
    open: Vec<usize>,
    next: usize,
}

impl FileSplit {
    /// Files as (id, path): the id is the path as the spec names it.
    pub fn open(paths: Vec<(String, PathBuf)>) -> std::io::Result<Self> {
        let files = paths
            .into_iter()
            .map(|(id, path)| {
                let file = File::open(&path)?;
                Ok(OpenFile {
                    id,
                    name: path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    ),
                    path,
                    reader: Some(BufReader::with_capacity(1 << 16, file)),
                    line_no: 0,
                    offset: 0,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(FileSplit {
            open: (0..files.len()).collect(),
            files,
            next: 0,
        })
    }
}

impl SourceSplit for FileSplit {
    fn partitions(&self) -> usize {
        self.files.len()
    }

    fn poll(&mut self, out: &mut RawBatch, max: usize) -> std::io::Result<Poll> {
        let mut produced = 0;
        while produced < max {
            if self.open.is_empty() {
                return Ok(Poll::Ended);
            }
            // Files take turns a line at a time, so that their watermarks
            // advance together; a file read alone gives all the lines it
            // has buffered.
            let lines = match self.open.len() {
                1 => max - produced,
                _ => 1,
            };
            let at = self.next % self.open.len();
            let partition = self.open[at];
            self.next = self.next.wrapping_add(1);
            match self.files[partition].read_lines(partition, out, lines)? {
                0 => {
                    self.files[partition].reader = None;
                    self.open.remove(at);
                    out.push_end(partition);
                }
                read => produced += read,
            }
        }
        Ok(Poll::Ready)
    }

    fn location(&self, partition: usize, line: u64) -> String {
        format!("{}:{line}", self.files[partition].name)
    }

    fn partition_ids(&self) -> Vec<String> {
        self.files.iter().map(|f| f.id.clone()).collect()
    }

    fn positions(&self) -> Vec<(u64, u64)> {
        self.files.iter().map(|f| (f.offset, f.line_no)).collect()
    }

    fn seek(&mut self, partition: usize, offset: u64, records: u64) -> std::io::Result<()> {
        let f = &mut self.files[partition];
        let mut file = File::open(&f.path)?;
        file.seek(SeekFrom::Start(offset))?;
        f.reader = Some(BufReader::with_capacity(1 << 16, file));
        f.offset = offset;
        f.line_no = records;
        if !self.open.contains(&partition) {
            self.open.push(partition);
            self.open.sort_unstable();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::SourceItem;
    use crate::record::RecordError;

    /// Refuses every record, so that each comes back as it was read, with
    /// where.
    struct Refuse;

    impl crate::connectors::Decode for Refuse {
        fn decode(
            &mut self,
            _: Option<&str>,
            _: Option<&[u8]>,
        ) -> std::io::Result<Result<crate::record::Event, RecordError>> {
            Ok(Err(RecordError::NotAnObject))
        }
    }

    /// Polls `split` to its end, `max` lines at a time: each record as
    /// `location text`, and each partition's end.
    fn read_all(split: &mut FileSplit, max: usize) -> Vec<String> {
        let mut read = Vec::new();
        let mut batch = RawBatch::default();
        loop {
            let poll = split.poll(&mut batch, max).unwrap();
            let mut items = Vec::new();
            batch.decode_each(&mut Refuse, split, &mut items).unwrap();
            read.extend(items.into_iter().map(|item| match item {
                SourceItem::Malformed(m) => format!("{} {}", m.location, m.raw),
                SourceItem::PartitionEnd(p) => format!("end {p}"),
                SourceItem::Record { .. } => unreachable!("nothing was decoded"),
            }));
            if let Poll::Ended = poll {
                return read;
            }
        }
    }

    #[test]
    fn lines_are_read_whole_across_the_buffer_and_in_turns() {
        let dir = tempfile::tempdir().unwrap();
        // Longer than the reader's buffer, so that it is read on its own.
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(100_000));
        let one = format!("\u{feff}{{\"n\":1}}\r\n\n   \n{long}\n  {{\"n\":4}}  \n{{\"n\":5}}");
        std::fs::write(dir.path().join("one.jsonl"), &one).unwrap();
        std::fs::write(dir.path().join("two.jsonl"), "{\"m\":1}\n{\"m\":2}\n").unwrap();
        let open = |names: &[&str]| {
            FileSplit::open(
                names
                    .iter()
                    .map(|n| (n.to_string(), dir.path().join(n)))
                    .collect(),
            )
            .unwrap()
        };
        let expected_one = [
            "one.jsonl:1 {\"n\":1}".to_string(),
            format!("one.jsonl:4 {long}"),
            "one.jsonl:5 {\"n\":4}".to_string(),
            "one.jsonl:6 {\"n\":5}".to_string(),
            "end 0".to_string(),
        ];
        for max in [1, 2, 1024] {
            let mut split = open(&["one.jsonl"]);
            assert_eq!(
                read_all(&mut split, max),
                expected_one,
                "{max} lines a poll"
            );
            assert_eq!(split.positions(), vec![(one.len() as u64, 6)]);
        }
        // Two files: a line from each in turn, whatever the batch size.
        let mut split = open(&["two.jsonl", "one.jsonl"]);
        assert_eq!(
            read_all(&mut split, 1024)[..4],
            [
                "two.jsonl:1 {\"m\":1}",
                "one.jsonl:1 {\"n\":1}",
                "two.jsonl:2 {\"m\":2}",
                "end 0",
            ]
        );
        // A restore resumes after the line its position names.
        let mut split = open(&["one.jsonl"]);
        let after_line_4 = one.find("  {").unwrap() as u64;
        split.seek(0, after_line_4, 4).unwrap();
        assert_eq!(read_all(&mut split, 1024), expected_one[2..]);
    }
}
