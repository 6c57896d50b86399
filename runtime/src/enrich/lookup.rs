//! One lookup: a table of the latest entry per key, kept in the worker's
//! RocksDB state (a `KeyedStore`), fed by its changelog, and asked for the
//! entry of each record's `on` field.

use std::path::Path;

use serde_json::Value;

use super::changelog::{lookup_key, Change, Changelog};
use crate::checkpoint::{Restore, RestoreError, TableSnapshot};
use crate::connectors::SourceItem;
use crate::record::FieldRef;
use crate::spec::{Changelog as ChangelogSource, LookupSpec};
use crate::state::{KeyedStore, StateCheckpoint, StateError};

pub(super) struct Lookup {
    /// The field the entry is added as.
    name: String,
    /// The record's field whose value is looked up, for messages (the
    /// parser reads it: `RecordParser::lookup_on`).
    on: String,
    /// The changelog's key field, for messages.
    key: String,
    /// What the table was built with (see `TableSnapshot::shape`).
    shape: String,
    table: KeyedStore<Entry>,
    pub changelog: Changelog,
    changes: Vec<Change>,
}

/// A table entry: a JSON object, kept parsed while in memory (records read
/// it in place, with no parse per record; it takes a few times the memory
/// of its text) and stored as its JSON text (the same bytes as a `String`,
/// which snapshots hold).
#[derive(Debug, Clone, Default, PartialEq)]
struct Entry(Value);

impl serde::Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Entry::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Entry {
    fn parse(text: &str) -> Result<Entry, serde_json::Error> {
        serde_json::from_str(text).map(Entry)
    }
}

/// What a table is built from and with: a snapshot's table restores only
/// into a lookup with the same (else it is built again).
fn shape(spec: &LookupSpec) -> String {
    let from = match spec.from.choice() {
        Ok(ChangelogSource::File(file)) => {
            format!("file {:?}", file.path.as_deref().unwrap_or_default())
        }
        Ok(ChangelogSource::Kafka(kafka)) => format!("topics {:?}", kafka.topics),
        Err(_) => String::new(),
    };
    format!("key {:?}, fields {:?}, from {from}", spec.key, spec.fields)
}

impl Lookup {
    pub fn open(
        spec: &LookupSpec,
        index: usize,
        job: &str,
        base_dir: &Path,
        state_dir: &Path,
        max_keys_in_memory: usize,
        max_parallelism: u32,
    ) -> std::io::Result<Self> {
        let table = KeyedStore::create(state_dir, max_keys_in_memory, max_parallelism)
            .map_err(std::io::Error::other)?;
        let changelog = Changelog::open(
            &spec.from,
            &spec.key,
            &spec.fields,
            job,
            base_dir,
            &format!("enrich[{index}].from"),
        )?;
        Ok(Lookup {
            name: spec.name.clone(),
            on: spec.on.clone(),
            key: spec.key.clone(),
            shape: shape(spec),
            table,
            changelog,
            changes: Vec::new(),
        })
    }

    /// This lookup's name and the entry for a record whose `on` field
    /// is `on` (None when absent or null), or why there is none.
    pub fn find(
        &mut self,
        on: Option<FieldRef<'_>>,
    ) -> Result<Result<(&str, &Value), String>, StateError> {
        let Some(value) = on else {
            return Ok(Err(format!(
                "no {}: the record has no field {:?}",
                self.name, self.on
            )));
        };
        let Some(key) = lookup_key(value) else {
            return Ok(Err(format!(
                "no {}: field {:?} is {}, not a key",
                self.name,
                self.on,
                value.type_name()
            )));
        };
        match self.table.get(&key)? {
            Some(entry) => Ok(Ok((&self.name, &entry.0))),
            None => Ok(Err(format!("no {} with {} {value}", self.name, self.key))),
        }
    }

    /// Applies a batch of the changelog; returns whether anything was read.
    pub fn poll_changelog(&mut self, rejected: &mut Vec<SourceItem>) -> std::io::Result<bool> {
        let read = self.changelog.poll(&mut self.changes, rejected)?;
        for change in self.changes.drain(..) {
            let applied = match change {
                Change::Put(key, entry) => match Entry::parse(&entry) {
                    Ok(entry) => self.table.insert(key, entry),
                    Err(e) => Err(StateError::Decode(format!(
                        "lookup {} entry: {e}",
                        self.name
                    ))),
                },
                Change::Delete(key) => self.table.remove(&key),
            };
            applied.map_err(std::io::Error::other)?;
        }
        self.table.enforce_budget().map_err(std::io::Error::other)?;
        Ok(read)
    }

    /// The table's changes since the last checkpoint, to write and upload,
    /// with where its changelog is.
    pub fn checkpoint(&mut self) -> Result<(TableSnapshot, StateCheckpoint), StateError> {
        Ok((self.snapshot_header(), self.table.checkpoint()?))
    }

    /// The whole table, for a savepoint.
    pub fn savepoint(&mut self) -> Result<TableSnapshot, StateError> {
        let mut snapshot = self.snapshot_header();
        self.table
            .for_each(|key, entry| snapshot.entries.push((key.clone(), entry.0.to_string())))?;
        Ok(snapshot)
    }

    fn snapshot_header(&self) -> TableSnapshot {
        TableSnapshot {
            name: self.name.clone(),
            shape: self.shape.clone(),
            positions: self.changelog.positions(),
            ..Default::default()
        }
    }

    /// Takes the table from a snapshot, if it has one built the same way;
    /// else the table is built again from the changelog's start.
    pub fn restore(
        &mut self,
        tables: &[TableSnapshot],
        restore: &Restore,
        scratch: &Path,
    ) -> Result<(), RestoreError> {
        let Some(snapshot) = tables.iter().find(|t| t.name == self.name) else {
            crate::notice!(
                "the snapshot has no lookup table {}: it is built from its changelog",
                self.name
            );
            return Ok(());
        };
        if snapshot.shape != self.shape {
            crate::notice!(
                "lookup table {} was built with {}, the job has {}: it is built again from its changelog",
                self.name, snapshot.shape, self.shape
            );
            return Ok(());
        }
        let table = &mut self.table;
        restore.load_table(snapshot, scratch, |key, entry| {
            let entry = Entry::parse(&entry).map_err(|e| StateError::Decode(e.to_string()))?;
            table.insert(key, entry)?;
            table.enforce_budget()
        })?;
        self.changelog
            .seek(&snapshot.positions)
            .map_err(|e| RestoreError::Mismatch {
                path: restore.path.clone(),
                reason: format!("lookup table {}: {e}", self.name),
            })
    }
}
