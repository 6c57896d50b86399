//! Changes to a worker's RocksDB, encoded into one buffer: a checkpoint of a
//! million changed keys would otherwise allocate two million small vectors
//! on the worker's thread (and free them on another).

use super::StateError;

/// Rows to put or delete, keys and values back to back in `bytes`.
#[derive(Default)]
pub struct ChangeSet {
    bytes: Vec<u8>,
    rows: Vec<ChangeRow>,
}

struct ChangeRow {
    start: usize,
    key_len: u32,
    /// `None` deletes the key.
    value_len: Option<u32>,
}

impl ChangeSet {
    /// Room for `rows` rows of `bytes` bytes in all, so that a checkpoint
    /// sized like the last one does not grow its buffer step by step.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        ChangeSet {
            bytes: Vec::with_capacity(bytes),
            rows: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Adds a put: `key` and then `value` append their encodings.
    pub fn put(
        &mut self,
        key: impl FnOnce(&mut Vec<u8>),
        value: impl FnOnce(&mut Vec<u8>) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let start = self.bytes.len();
        key(&mut self.bytes);
        let key_len = (self.bytes.len() - start) as u32;
        if let Err(e) = value(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        let value_len = (self.bytes.len() - start) as u32 - key_len;
        self.rows.push(ChangeRow {
            start,
            key_len,
            value_len: Some(value_len),
        });
        Ok(())
    }

    /// Adds a delete: `key` appends the key's encoding.
    pub fn delete(&mut self, key: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        key(&mut self.bytes);
        self.rows.push(ChangeRow {
            start,
            key_len: (self.bytes.len() - start) as u32,
            value_len: None,
        });
    }

    /// Every row as key and value (`None`: delete), in the order added.
    pub fn rows(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.rows.iter().map(|row| row.read(&self.bytes))
    }

    /// Every row in key order (as an SST file needs them; keys are distinct).
    pub fn sorted_rows(&mut self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let bytes = &self.bytes;
        self.rows
            .sort_unstable_by(|a, b| a.read(bytes).0.cmp(b.read(bytes).0));
        self.rows()
    }
}

impl ChangeRow {
    /// The row's key and value (`None`: delete) in `bytes`.
    fn read<'b>(&self, bytes: &'b [u8]) -> (&'b [u8], Option<&'b [u8]>) {
        let value_start = self.start + self.key_len as usize;
        (
            &bytes[self.start..value_start],
            self.value_len
                .map(|len| &bytes[value_start..value_start + len as usize]),
        )
    }
}
