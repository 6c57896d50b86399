//! JSON-lines files as a bounded source: each file is a partition; a split
//! reads its files line by line in turn, so their watermarks advance together.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use super::{Malformed, Poll, SourceItem, SourceSplit};
use crate::record::RecordParser;

struct OpenFile {
    name: String,
    reader: Option<BufReader<File>>,
    line_no: u64,
}

pub struct FileSplit {
    files: Vec<OpenFile>,
    parser: RecordParser,
    line: String,
    next: usize,
}

impl FileSplit {
    pub fn open(paths: Vec<PathBuf>, parser: RecordParser) -> std::io::Result<Self> {
        let files = paths
            .into_iter()
            .map(|path| {
                let file = File::open(&path)?;
                Ok(OpenFile {
                    name: path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    ),
                    reader: Some(BufReader::with_capacity(1 << 16, file)),
                    line_no: 0,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(FileSplit {
            files,
            parser,
            line: String::new(),
            next: 0,
        })
    }
}

impl SourceSplit for FileSplit {
    fn partitions(&self) -> usize {
        self.files.len()
    }

    fn poll(&mut self, out: &mut Vec<SourceItem>, max: usize) -> std::io::Result<Poll> {
        let mut produced = 0;
        while produced < max {
            let open: Vec<usize> = (0..self.files.len())
                .filter(|i| self.files[*i].reader.is_some())
                .collect();
            if open.is_empty() {
                return Ok(Poll::Ended);
            }
            // One line from each open file in turn.
            let partition = open[self.next % open.len()];
            self.next = self.next.wrapping_add(1);
            let file = &mut self.files[partition];
            let reader = file.reader.as_mut().expect("file is open");
            self.line.clear();
            if reader.read_line(&mut self.line)? == 0 {
                file.reader = None;
                out.push(SourceItem::PartitionEnd(partition));
                continue;
            }
            file.line_no += 1;
            produced += 1;
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            out.push(match self.parser.parse(text) {
                Ok(event) => SourceItem::Record { partition, event },
                Err(error) => SourceItem::Malformed(Malformed {
                    error,
                    raw: text.to_string(),
                    location: format!("{}:{}", file.name, file.line_no),
                }),
            });
        }
        Ok(Poll::Ready)
    }
}
