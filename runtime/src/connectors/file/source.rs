//! JSON-lines files as a bounded source: each file is a partition; a split
//! reads its files line by line in turn, so their watermarks advance together.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
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
            // One line from each open file in turn, read straight into the
            // batch.
            let at = self.next % self.open.len();
            let partition = self.open[at];
            self.next = self.next.wrapping_add(1);
            let file = &mut self.files[partition];
            let reader = file.reader.as_mut().expect("file is open");
            let buffer = out.buffer();
            let start = buffer.len();
            let read = reader.read_until(b'\n', buffer)?;
            if read == 0 {
                file.reader = None;
                self.open.remove(at);
                out.push_end(partition);
                continue;
            }
            let mut line = start..buffer.len();
            if file.offset == 0 && buffer[line.clone()].starts_with(BOM) {
                line.start += BOM.len();
            }
            file.line_no += 1;
            file.offset += read as u64;
            produced += 1;
            // Blank lines are no records.
            let text = &buffer[line.clone()];
            let leading = text.len() - text.trim_ascii_start().len();
            let trailing = text.len() - text.trim_ascii_end().len();
            if leading == text.len() {
                buffer.truncate(start);
                continue;
            }
            out.push_read(
                partition,
                line.start + leading..line.end - trailing,
                file.line_no,
            );
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
