//! A file read ahead into a buffer of its own, for lines taken a few at a
//! time, or read straight into a batch's bytes, for runs of many lines.
//!
//! A batch that other workers parse is read into once and handed on; had
//! its bytes come through a read-ahead buffer, the reader would copy every
//! byte of a busy file once more, into memory another core last read.
//! Reading straight into the batch leaves only what follows its last whole
//! line to copy, back into the buffer here.

use std::fs::File;
use std::io::{self, BufRead, Read};

/// Bytes read ahead at a time for lines taken a few at a time.
const READ_AHEAD: usize = 1 << 16;

pub(super) struct ReadAhead {
    file: File,
    /// Read from the file and not taken yet: `held[taken..]`.
    held: Vec<u8>,
    taken: usize,
}

impl ReadAhead {
    pub fn new(file: File) -> Self {
        Self {
            file,
            held: Vec::with_capacity(READ_AHEAD),
            taken: 0,
        }
    }

    /// Appends to `out` about `wanted` bytes (7/8 to 9/8 of it, or fewer
    /// at the end of the file): the bytes held, then the file's next,
    /// read straight into `out`. How many were read from the file (0 at
    /// its end, or when the bytes held were enough).
    pub fn read_into(&mut self, out: &mut Vec<u8>, wanted: usize) -> io::Result<usize> {
        let held = &self.held[self.taken..];
        let more = wanted.saturating_sub(held.len());
        // The read fills the buffer's spare room, so that room must be
        // near `more`: what follows the lines taken is copied back here.
        // A batch's buffer is reused at the size it was read to, so after
        // the first reads it is.
        let spare = out.capacity() - out.len();
        if !(more - more / 8..=more + more / 8).contains(&spare.saturating_sub(held.len())) {
            // A fresh buffer, not one grown in place: growing copies all
            // that the old one could hold, not only what it holds.
            let mut fresh = Vec::with_capacity(out.len() + held.len() + more);
            fresh.extend_from_slice(out);
            *out = fresh;
        }
        out.extend_from_slice(held);
        self.held.clear();
        self.taken = 0;
        match more {
            0 => Ok(0),
            _ => read_spare(&self.file, out),
        }
    }

    /// Holds `bytes`, read into a batch by [`ReadAhead::read_into`] but not
    /// taken: they are the next read.
    pub fn give_back(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.taken, self.held.len(), "bytes held before read_into");
        self.held.clear();
        self.taken = 0;
        self.held.extend_from_slice(bytes);
    }
}

/// Reads from `file` into the spare room of `out` (none of it zeroed
/// first), retrying when a signal interrupts; how many bytes were read.
fn read_spare(file: &File, out: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        match rustix::io::read(file, rustix::buffer::spare_capacity(out)) {
            Err(rustix::io::Errno::INTR) => continue,
            read => return read.map_err(io::Error::from),
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let held = self.fill_buf()?;
        let n = held.len().min(buf.len());
        buf[..n].copy_from_slice(&held[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.taken == self.held.len() {
            self.held.clear();
            self.taken = 0;
            self.held.reserve(READ_AHEAD);
            read_spare(&self.file, &mut self.held)?;
        }
        Ok(&self.held[self.taken..])
    }

    fn consume(&mut self, amount: usize) {
        self.taken = (self.taken + amount).min(self.held.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_given_back_are_read_again_before_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &text).unwrap();
        let mut file = ReadAhead::new(File::open(dir.path().join("f")).unwrap());
        let mut read = Vec::new();
        // Straight into a batch, with its tail given back.
        let mut batch = vec![7u8; 3];
        assert_eq!(file.read_into(&mut batch, 1000).unwrap(), 1000);
        read.extend_from_slice(&batch[3..903]);
        file.give_back(&batch[903..]);
        // The bytes held count towards those wanted.
        let mut batch = Vec::new();
        assert_eq!(file.read_into(&mut batch, 1000).unwrap(), 900);
        assert_eq!(batch.len(), 1000);
        read.extend_from_slice(&batch[..400]);
        file.give_back(&batch[400..]);
        // A few bytes taken through the buffer.
        let mut few = [0u8; 150];
        file.read_exact(&mut few).unwrap();
        read.extend_from_slice(&few);
        // A buffer far larger than the read is replaced, so as not to read
        // far past what was wanted.
        let mut batch = Vec::with_capacity(1 << 20);
        assert_eq!(file.read_into(&mut batch, 70_450).unwrap(), 70_000);
        assert!(batch.capacity() < 1 << 20);
        read.extend_from_slice(&batch);
        // One near its size is read into as it is, to its end.
        let mut batch = Vec::with_capacity(1050);
        let at = batch.as_ptr();
        assert_eq!(file.read_into(&mut batch, 1000).unwrap(), 1050);
        assert_eq!(batch.as_ptr(), at);
        read.extend_from_slice(&batch);
        // Then the rest, through the buffer.
        file.read_to_end(&mut read).unwrap();
        assert_eq!(read, text);
        let mut end = Vec::new();
        assert_eq!(file.read_into(&mut end, 10).unwrap(), 0);
        assert!(end.is_empty());
    }
}
