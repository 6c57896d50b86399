//! The operator a worker runs on its records: the keyed window operator, or
//! a select job's pass-through, which hands each record's projection (made
//! by the parser) straight to the sink.

use super::collector::Collector;
use crate::record::{Event, Key};
use crate::state::{KeyedStore, StateCheckpoint, StateError};
use crate::window::{KeyState, WindowOperator};

// One per worker, built once: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Operator {
    Window(WindowOperator),
    Select(Select),
}

/// A select job's operator. It keeps no state; its store stays empty and
/// only makes its checkpoints look like every other worker's.
pub(crate) struct Select {
    store: KeyedStore<KeyState>,
    watermark: i64,
}

impl Select {
    pub fn new(store: KeyedStore<KeyState>) -> Self {
        Select {
            store,
            watermark: crate::time::MIN_WATERMARK,
        }
    }
}

impl Operator {
    /// Whether records stay with the worker that read them (no keyed
    /// exchange).
    pub fn is_local(&self) -> bool {
        matches!(self, Operator::Select(_))
    }

    pub fn process(&mut self, event: Event, out: &mut Collector) -> Result<(), StateError> {
        match self {
            Operator::Window(op) => op.process(event, out),
            Operator::Select(_) => {
                out.record(event);
                Ok(())
            }
        }
    }

    pub fn advance_watermark(
        &mut self,
        watermark: i64,
        out: &mut Collector,
    ) -> Result<(), StateError> {
        match self {
            Operator::Window(op) => op.advance_watermark(watermark, out),
            Operator::Select(s) => {
                s.watermark = s.watermark.max(watermark);
                Ok(())
            }
        }
    }

    pub fn fire_processing_time(&mut self, out: &mut Collector) -> Result<(), StateError> {
        match self {
            Operator::Window(op) => op.fire_processing_time(out),
            Operator::Select(_) => Ok(()),
        }
    }

    pub fn maintain(&mut self) -> Result<(), StateError> {
        match self {
            Operator::Window(op) => op.maintain(),
            Operator::Select(_) => Ok(()),
        }
    }

    pub fn watermark(&self) -> i64 {
        match self {
            Operator::Window(op) => op.watermark(),
            Operator::Select(s) => s.watermark,
        }
    }

    pub fn spill_count(&self) -> u64 {
        match self {
            Operator::Window(op) => op.spill_count(),
            Operator::Select(_) => 0,
        }
    }

    pub fn checkpoint_state(&mut self) -> Result<StateCheckpoint, StateError> {
        match self {
            Operator::Window(op) => op.checkpoint_state(),
            Operator::Select(s) => s.store.checkpoint(),
        }
    }

    pub fn snapshot(
        &mut self,
        max_parallelism: u32,
    ) -> Result<Vec<(u16, Key, KeyState)>, StateError> {
        match self {
            Operator::Window(op) => op.snapshot(max_parallelism),
            Operator::Select(_) => Ok(Vec::new()),
        }
    }

    pub fn restore_watermark(&mut self, watermark: i64) {
        match self {
            Operator::Window(op) => op.restore_watermark(watermark),
            Operator::Select(s) => s.watermark = watermark,
        }
    }

    pub fn restore_key(&mut self, key: Key, state: KeyState) -> Result<(), StateError> {
        match self {
            Operator::Window(op) => op.restore_key(key, state),
            // A select job's snapshots hold no keys.
            Operator::Select(_) => Ok(()),
        }
    }
}
