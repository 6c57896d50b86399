//! JSON-lines files as a bounded source: each file is a partition; a split
//! reads its files line by line in turn, so their watermarks advance together.

use std::fs::File;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::PathBuf;

use super::read_ahead::ReadAhead;
use crate::connectors::raw::line_record;
use crate::connectors::{LineRun, Poll, RawBatch, SourceSplit};

/// Bytes of whole lines a reader takes as one run ([`LineRun`]): about
/// 128 lines of 85 bytes, the part of a batch one worker parses at a time
/// when several parse one busy file.
const RUN_BYTES: usize = 11 << 10;

/// Polls for at least this many lines read the file straight into the
/// batch, as runs ([`OpenFile::read_runs`]). Fewer are cut one by one from
/// the file's own buffer: a worker that asks for a few decodes them itself,
/// at once, and a system call for so few would cost more than the copy.
const RUN_POLL_MIN: usize = 256;

/// What a line is taken to be long before a file's first is read: the size
/// of the first read of many lines.
const GUESSED_LINE: usize = 128;

/// Bounds of one read of many lines: enough to be worth a system call,
/// and not so much that a file of long lines is held whole.
const RUN_READ: std::ops::RangeInclusive<usize> = (4 << 10)..=(4 << 20);

struct OpenFile {
    /// The path as the job spec names it: the partition's id.
    id: String,
    path: PathBuf,
    name: String,
    reader: Option<ReadAhead>,
    line_no: u64,
    offset: u64,
}

impl OpenFile {
    /// Reads up to `max` lines straight into the batch; how many (0 at the
    /// end of the file). Many lines are read as runs ([`OpenFile::read_runs`]);
    /// fewer are found one by one; a line the buffer does not hold whole is
    /// read on its own.
    fn read_lines(
        &mut self,
        partition: usize,
        out: &mut RawBatch,
        max: usize,
    ) -> std::io::Result<usize> {
        if max >= RUN_POLL_MIN {
            match self.read_runs(partition, out, max)? {
                0 => {}
                lines => return Ok(lines),
            }
        }
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
            if let Some(record) = line_record(&buffered[line.clone()], base + line.start, first) {
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
        if let Some(record) = line_record(&out.buffer()[base..], base, first) {
            out.push_read(partition, record, self.line_no);
        }
        Ok(1)
    }

    /// Reads about `max` lines' worth of the file straight into the batch,
    /// and takes up to `max` of its whole lines as runs, counted but not
    /// cut into lines ([`LineRun`]): cutting is the decode stage's, which
    /// other workers share. What follows is given back to the reader. How
    /// many lines were taken: 0 at the end of the file, or when what was
    /// read holds no whole line. (Not inlined: the loop over a few lines
    /// above, run for every line at parallelism 1, then takes 8 fewer
    /// instructions a line.)
    #[inline(never)]
    fn read_runs(
        &mut self,
        partition: usize,
        out: &mut RawBatch,
        max: usize,
    ) -> std::io::Result<usize> {
        let reader = self.reader.as_mut().expect("file is open");
        let line = match self.line_no {
            0 => GUESSED_LINE,
            lines => (self.offset / lines).max(1) as usize,
        };
        // One line more than asked: the bytes rarely end on a newline.
        let wanted = (max + 1)
            .saturating_mul(line)
            .clamp(*RUN_READ.start(), *RUN_READ.end());
        let base = out.buffer().len();
        reader.read_into(out.buffer(), wanted)?;
        let (mut taken, mut lines) = (0, 0);
        while lines < max {
            let read = &out.buffer()[base + taken..];
            let Some(mut end) = run_end(read) else {
                break;
            };
            let mut count = bytecount::count(&read[..end], b'\n');
            if lines + count > max {
                end = end_of_line(&read[..end], count, max - lines);
                count = max - lines;
            }
            out.push_lines(
                partition,
                LineRun {
                    bytes: base + taken..base + taken + end,
                    lines: count,
                    first_line: self.line_no + 1,
                    at_file_start: self.offset == 0,
                },
            );
            taken += end;
            lines += count;
            self.line_no += count as u64;
            self.offset += end as u64;
        }
        let bytes = out.buffer();
        reader.give_back(&bytes[base + taken..]);
        bytes.truncate(base + taken);
        Ok(lines)
    }
}

/// Where the first run of whole lines in `bytes` ends: after the first
/// newline from [`RUN_BYTES`] on, or the last newline when there are fewer
/// bytes or the line there does not end within them. None without a
/// newline.
fn run_end(bytes: &[u8]) -> Option<usize> {
    let after = |i: usize| i + 1;
    if bytes.len() > RUN_BYTES {
        if let Some(i) = memchr::memchr(b'\n', &bytes[RUN_BYTES - 1..]) {
            return Some(after(RUN_BYTES - 1 + i));
        }
    }
    memchr::memrchr(b'\n', bytes).map(after)
}

/// Where the `keep`th of the `lines` lines in `run` (each ending in a
/// newline) ends: found from whichever end is nearer. The read of many
/// lines is sized to end about a line past those asked for, so its last
/// run is mostly cut a line or two from its end.
fn end_of_line(run: &[u8], lines: usize, keep: usize) -> usize {
    debug_assert!((1..lines).contains(&keep));
    if lines - keep <= keep {
        let mut end = run.len();
        for _ in keep..lines {
            end = memchr::memrchr(b'\n', &run[..end - 1]).expect("a newline before") + 1;
        }
        end
    } else {
        memchr::memchr_iter(b'\n', run)
            .nth(keep - 1)
            .expect("newlines")
            + 1
    }
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
                    reader: Some(ReadAhead::new(file)),
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
                read => {
                    produced += read;
                    // A read of runs is sized to the lines asked for: it
                    // is the whole poll.
                    if lines >= RUN_POLL_MIN {
                        break;
                    }
                }
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
        f.reader = Some(ReadAhead::new(file));
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
            batch.clear();
            let poll = split.poll(&mut batch, max).unwrap();
            assert!(batch.records() <= max, "{} records", batch.records());
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

    /// A poll for many lines takes runs of whole lines, cut into records
    /// only when decoded: the same records, with the same line numbers and
    /// positions, as lines read one by one.
    #[test]
    fn runs_of_lines_are_the_lines_read_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("\u{feff}  {\"n\":0}\n");
        for i in 1..5000 {
            text.push_str(&match i % 7 {
                3 => "   \r\n".to_string(),
                5 => format!("\t{{\"n\":{i}}}  \r\n"),
                _ => format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 90)),
            });
        }
        text.push_str("{\"last\":true}");
        std::fs::write(dir.path().join("f.jsonl"), &text).unwrap();
        let open =
            || FileSplit::open(vec![("f.jsonl".into(), dir.path().join("f.jsonl"))]).unwrap();
        let mut split = open();
        let mut batch = RawBatch::default();
        split.poll(&mut batch, 1024).unwrap();
        assert!(
            batch.len() < batch.records() / 10,
            "{} entries for {} lines: not read in runs",
            batch.len(),
            batch.records()
        );
        let mut by_lines = open();
        let lines = read_all(&mut by_lines, 1);
        assert_eq!(lines.len(), 5000 - 5000 / 7 + 1 + 1);
        assert_eq!(lines[0], "f.jsonl:1 {\"n\":0}");
        assert_eq!(lines[4], "f.jsonl:6 {\"n\":5}");
        assert_eq!(lines[lines.len() - 2], "f.jsonl:5001 {\"last\":true}");
        assert_eq!(by_lines.positions(), vec![(text.len() as u64, 5001)]);
        // Read straight into the batch, runs cut at what was asked for,
        // and what follows read again.
        for max in [256, 300, 1024, 4999, 20_000] {
            let mut by_runs = open();
            assert_eq!(read_all(&mut by_runs, max), lines, "{max} lines a poll");
            assert_eq!(by_runs.positions(), by_lines.positions());
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

    #[test]
    fn a_run_is_cut_after_the_line_asked_for_from_either_end() {
        let run = b"a\nbb\n\nccc\nd\n";
        let ends = (1..5)
            .map(|keep| end_of_line(run, 5, keep))
            .collect::<Vec<_>>();
        assert_eq!(ends, [2, 5, 6, 10]);
    }

    /// A line of a generated file: blank, or a record of `pad` bytes of
    /// padding, ending in `\n` or `\r\n`.
    fn line_of(i: usize, (kind, pad, crlf): (u8, usize, bool)) -> String {
        let end = if crlf { "\r\n" } else { "\n" };
        match kind {
            0 => format!("  {end}"),
            _ => format!("{{\"n\":{i},\"pad\":\"{}\"}}{end}", "x".repeat(pad)),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever the lines' lengths (some longer than a read of many
        /// lines, after short ones have set the length it expects), and
        /// however many lines a poll asks for, the records read are the
        /// file's lines, each with its number, and the position is the
        /// file's end.
        #[test]
        fn any_lines_read_in_polls_of_any_size_are_the_files_lines(
            lines in proptest::collection::vec(
                (0u8..6, proptest::prop_oneof![9 => 0usize..200, 1 => 0usize..40_000], proptest::bool::ANY),
                1..120,
            ),
            last_newline in proptest::bool::ANY,
            max in proptest::sample::select(vec![1usize, 7, 256, 300, 1024]),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut text: String = lines
                .iter()
                .enumerate()
                .map(|(i, line)| line_of(i, *line))
                .collect();
            if !last_newline {
                text.truncate(text.trim_end().len());
            }
            std::fs::write(dir.path().join("f.jsonl"), &text).unwrap();
            let expected: Vec<String> = text
                .split_inclusive('\n')
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(i, line)| format!("f.jsonl:{} {}", i + 1, line.trim()))
                .chain(["end 0".to_string()])
                .collect();
            let mut split =
                FileSplit::open(vec![("f.jsonl".into(), dir.path().join("f.jsonl"))]).unwrap();
            proptest::prop_assert_eq!(read_all(&mut split, max), expected);
            let line_count = text.split_inclusive('\n').count() as u64;
            proptest::prop_assert_eq!(split.positions(), vec![(text.len() as u64, line_count)]);
        }
    }
}
