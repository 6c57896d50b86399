//! Enrichment (`enrich` in the job spec): each record is joined with the
//! latest entry per key of lookup tables built from changelogs (users,
//! items), before it is keyed or selected; a record without a match goes to
//! the unmatched side output with the reason.
//!
//! Every worker keeps whole tables (as Kafka Streams' global tables do):
//! records are enriched by the worker that reads them, with no exchange
//! per lookup, so lookups on different keys (a user, an item) chain in one
//! stage and the window's keyed exchange stays the only one. A table lives
//! in the worker's RocksDB state and is in every checkpoint with its
//! changelog positions: a restore takes it from the checkpoint and reads
//! the changelog on from there, instead of from its start.
//!
//! A worker reads no records until its tables have caught up with their
//! changelogs as of the start; after that, changelog updates are read
//! between batches of records (processing-time semantics: a record sees the
//! entries read so far, as in Flink's lookup joins).

mod changelog;
mod lookup;

use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::{Restore, RestoreError, TableSnapshot};
use crate::connectors::{Decode, SourceItem};
use crate::record::{parse_object, Decoded, Enriched, Event, Fields, RecordError, RecordParser};
use crate::spec::JobSpec;
use crate::state::{StateCheckpoint, StateError};
use lookup::Lookup;

/// A worker's decoder: parses each record and, for a job with `enrich`,
/// adds its lookups' entries first.
pub struct Enricher {
    parser: Arc<RecordParser>,
    lookups: Vec<Lookup>,
    /// Every worker reads every changelog: only the first one reports its
    /// unreadable records, so that each is reported once.
    reports_rejected: bool,
}

impl Enricher {
    /// Opens worker `worker`'s lookup tables (fresh, in folders named by
    /// `state_dir(lookup name)`) and their changelogs.
    pub fn open(
        spec: &JobSpec,
        worker: usize,
        base_dir: &Path,
        state_dir: impl Fn(&str) -> std::path::PathBuf,
    ) -> std::io::Result<Self> {
        let lookups = spec
            .enrich
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Lookup::open(
                    l,
                    i,
                    &spec.name,
                    base_dir,
                    &state_dir(&l.name),
                    spec.state.max_keys_in_memory as usize,
                    spec.max_parallelism,
                )
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Enricher {
            parser: Arc::new(RecordParser::new(spec)),
            lookups,
            reports_rejected: worker == 0,
        })
    }

    /// Whether every table has caught up with its changelog: until then
    /// the worker reads no records.
    pub fn ready(&self) -> bool {
        self.lookups.iter().all(|l| l.changelog.caught_up())
    }

    /// Reads a batch of each changelog into its table; changelog records
    /// that cannot be read are added to `rejected` (by the first worker).
    /// Returns whether anything was read.
    pub fn poll_changelogs(&mut self, rejected: &mut Vec<SourceItem>) -> std::io::Result<bool> {
        let (mut read, before) = (false, rejected.len());
        for lookup in &mut self.lookups {
            read |= lookup.poll_changelog(rejected)?;
        }
        if !self.reports_rejected {
            rejected.truncate(before);
        }
        Ok(read)
    }

    /// Each table's changes since the last checkpoint, with its positions.
    pub fn checkpoint(&mut self) -> Result<Vec<(TableSnapshot, StateCheckpoint)>, StateError> {
        self.lookups.iter_mut().map(Lookup::checkpoint).collect()
    }

    /// Every table in full, for a savepoint.
    pub fn savepoint(&mut self) -> Result<Vec<TableSnapshot>, StateError> {
        self.lookups.iter_mut().map(Lookup::savepoint).collect()
    }

    /// Takes worker `index`'s tables from a snapshot; `scratch` is a
    /// folder for downloads.
    pub fn restore(
        &mut self,
        restore: &Restore,
        index: usize,
        scratch: &Path,
    ) -> Result<(), RestoreError> {
        let tables = restore.tables_for(index);
        for lookup in &mut self.lookups {
            lookup.restore(tables, restore, scratch)?;
        }
        Ok(())
    }

    pub fn has_lookups(&self) -> bool {
        !self.lookups.is_empty()
    }

    /// The record parser, when records need nothing else (no lookups): it
    /// needs no state of the worker, so records can be parsed on other
    /// threads.
    pub fn plain_parser(&self) -> Option<Arc<RecordParser>> {
        self.lookups.is_empty().then(|| self.parser.clone())
    }
}

/// The record with its entries in it, as JSON text (for the late side
/// output): read whole only here.
fn with_entries(text: &str, found: &[(&str, &serde_json::Value)]) -> Box<str> {
    match parse_object(text) {
        Ok(record) => Fields::with(&record, found).to_json().into(),
        // The record was read above, so this does not happen; its text
        // is still the best account of it.
        Err(_) => text.trim_end().into(),
    }
}

impl Decode for Enricher {
    fn decode(
        &mut self,
        value: Option<&str>,
        _key: Option<&[u8]>,
    ) -> std::io::Result<Result<Event, RecordError>> {
        let text = value.unwrap_or_default();
        if self.lookups.is_empty() {
            return Ok(self.parser.parse(text));
        }
        // Only the fields the job reads, as for a job without lookups.
        let mut record = Decoded::default();
        if let Err(e) = self.parser.decode(text, &mut record) {
            return Ok(Err(e));
        }
        // Entries are read where the tables hold them, not copied into the
        // record: a later lookup, the key and the selected fields see them
        // through `Enriched`.
        let mut found: smallvec::SmallVec<[(&str, &serde_json::Value); 4]> = Default::default();
        for (i, lookup) in self.lookups.iter_mut().enumerate() {
            let fields = Enriched::with(&record, &found);
            match lookup
                .find(self.parser.lookup_on(i, &fields))
                .map_err(std::io::Error::other)?
            {
                Ok(entry) => found.push(entry),
                Err(reason) => return Ok(Err(RecordError::Unmatched(reason))),
            }
        }
        Ok(self.parser.event(&Enriched::with(&record, &found), || {
            with_entries(text, &found)
        }))
    }
}
