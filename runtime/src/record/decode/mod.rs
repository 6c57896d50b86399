//! Reading only the fields a job needs from a record's JSON text.
//!
//! A record is read once, front to back; the values at the job's paths
//! (key, event time, aggregate fields, selected fields) are kept in slots,
//! and everything else is checked and skipped without being built. A
//! string value without escapes is borrowed from the text, and numbers,
//! booleans and null need no allocation, so a typical record costs no
//! allocation per field and no map.
//!
//! Two readers share the path tree:
//! - `scan.rs`, a scanner over the bytes that takes the records it can
//!   decide alone: valid JSON objects without escapes in the names it
//!   compares or the strings it keeps, nested no deeper than it bounds.
//!   Where every path is one name deep, its flat lane (`scan/flat.rs`)
//!   tries first: it walks the top-level names only, each compared with
//!   its quote and colon in one step;
//! - `serde_path.rs`, serde_json's parser driven by the same tree, which
//!   decides everything else: every malformed record (so the reasons keep
//!   their words and columns), escapes, deep nesting.
//!
//! Semantics are those of parsing the whole record into a `serde_json::Value`
//! and reading the paths from it (property tests hold all three side by
//! side, in `tests/integration/record_decoding.rs`): the same syntax errors with the same
//! positions and words, trailing characters refused, a record that is not
//! an object refused after its syntax, the last of duplicate names winning,
//! `null` as absent, and a path through something that is not an object
//! absent. Two differences, both in values the job never reads: a number
//! too large for a double (`1e999`) and nesting deeper than 128 levels are
//! skipped rather than refused.
//!
//! Why our own scanner and not serde_json alone or a SIMD parser: see
//! `benches/decode.rs` and the README's benchmark section.

use std::borrow::Cow;

use serde_json::{Number, Value};
use smallvec::SmallVec;

use super::RecordError;

mod scan;
mod serde_path;

/// The value at one of the job's paths, as read from the record. Every
/// slot is as large as the largest leaf, and the slots are cleared, filled
/// and dropped for every record: an object or array is boxed (a `Value` is
/// 72 bytes with ordered maps), which keeps a slot at 24.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'de> {
    /// A string, borrowed from the record unless it had escapes.
    Str(Cow<'de, str>),
    Number(Number),
    Bool(bool),
    Null,
    /// An object or an array, as serde_json builds it.
    Nested(Box<Value>),
}

// The size the comment above counts on, held at compile time.
const _: () = assert!(std::mem::size_of::<Option<Leaf>>() == 24);

impl Leaf<'_> {
    /// A value read whole (below a kept object or array), as a leaf.
    fn of(value: Value) -> Leaf<'static> {
        match value {
            Value::String(s) => Leaf::Str(Cow::Owned(s)),
            Value::Number(n) => Leaf::Number(n),
            Value::Bool(b) => Leaf::Bool(b),
            Value::Null => Leaf::Null,
            nested @ (Value::Array(_) | Value::Object(_)) => Leaf::Nested(Box::new(nested)),
        }
    }
}

/// The job's paths as a tree of names. Slots are numbered depth first, so
/// the slots below a name are one contiguous range (cleared when the name
/// appears again: the last occurrence wins).
#[derive(Debug, Clone)]
pub struct WantedFields {
    root: Node,
    slots: usize,
    /// Which readers try a record before serde_json's parser.
    readers: Readers,
}

/// The readers that try a record, first to last, before serde_json's
/// parser decides the rest.
#[derive(Debug, Clone)]
enum Readers {
    /// Every path is one name deep: the scanner's flat lane, then the
    /// scanner.
    FlatLane(scan::FlatNames),
    Scanner,
    /// The paths nest so deep that the scanner's bound and serde_json's
    /// would differ.
    SerdeOnly,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// The slot of the value at this node's path, when a job path ends here.
    slot: Option<usize>,
    children: Vec<(String, Node)>,
    /// The children's names as the scanner compares them in place; None
    /// when one is written in JSON with an escape (a `"`, `\\` or control
    /// character), and the scanner reads each name whole to look it up.
    quoted: Option<scan::QuotedNames>,
    /// The slots of this node and everything below it.
    first: usize,
    end: usize,
}

/// The slots of one record: one per wanted path.
pub type Slots<'de> = SmallVec<[Option<Leaf<'de>>; 6]>;

/// Whether JSON writes `text` between its quotes as it is: no `"`, `\`
/// or control character, the only ones it escapes.
pub(crate) fn written_as_is(text: &str) -> bool {
    !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

impl WantedFields {
    /// The tree of `paths` (dotted); returns each path's slot in order.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p [String]>) -> (Self, Vec<usize>) {
        let mut tree = Node::default();
        let mut wanted: Vec<Vec<String>> = Vec::new();
        for path in paths {
            wanted.push(path.to_vec());
            let mut node = &mut tree;
            for name in path {
                let at = match node.children.iter().position(|(n, _)| n == name) {
                    Some(at) => at,
                    None => {
                        node.children.push((name.clone(), Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            // Marked now, numbered below.
            node.slot = Some(usize::MAX);
        }
        let mut next = 0;
        number(&mut tree, &mut next);
        let slots = wanted.iter().map(|path| tree.slot_of(path)).collect();
        (
            WantedFields {
                readers: match scan::FlatNames::of(&tree) {
                    Some(flat) => Readers::FlatLane(flat),
                    None if tree.depth() <= scan::MAX_PATH_DEPTH => Readers::Scanner,
                    None => Readers::SerdeOnly,
                },
                root: tree,
                slots: next,
            },
            slots,
        )
    }

    /// The tree of dotted `paths` (`customer.id`), without their slots
    /// (public for the benchmark and the tests).
    pub fn of_dotted(paths: &[&str]) -> Self {
        let paths: Vec<Vec<String>> = paths
            .iter()
            .map(|p| p.split('.').map(String::from).collect())
            .collect();
        Self::new(paths.iter().map(Vec::as_slice)).0
    }

    /// Reads `text`, a whole record, into `slots` (one per wanted path,
    /// filled where the record has a value): or why it is not a JSON
    /// object. The scanner takes the records it can decide alone;
    /// serde_json's parser decides the rest. The caller keeps `slots`
    /// across records, so a record costs no allocation and no copy of them.
    pub fn decode<'de>(&self, text: &'de str, slots: &mut Slots<'de>) -> Result<(), RecordError> {
        match self.scan(text, slots) {
            true => Ok(()),
            false => self.decode_with_serde(text, slots),
        }
    }

    /// Reads `text` into `slots` with the scanner alone: false where
    /// serde_json must decide (public for the benchmark and the tests).
    pub fn scan<'de>(&self, text: &'de str, slots: &mut Slots<'de>) -> bool {
        self.empty(slots);
        match &self.readers {
            Readers::FlatLane(flat) => {
                if scan::decode_flat(flat, text, slots).is_some() {
                    return true;
                }
                // Values it read before it gave up.
                self.empty(slots);
            }
            Readers::Scanner => {}
            Readers::SerdeOnly => return false,
        }
        scan::decode(&self.root, text, slots).is_some()
    }

    /// Reads `text` into `slots` with serde_json's parser alone (the
    /// definition the scanner is held to; public for the benchmark and the
    /// tests).
    pub fn decode_with_serde<'de>(
        &self,
        text: &'de str,
        slots: &mut Slots<'de>,
    ) -> Result<(), RecordError> {
        self.empty(slots);
        serde_path::decode(&self.root, text, slots)
    }

    /// One empty slot per wanted path. (Not `resize`, which clones its
    /// value into each slot through an iterator: a sixth of the scanner's
    /// time.)
    fn empty(&self, slots: &mut Slots<'_>) {
        slots.clear();
        for _ in 0..self.slots {
            slots.push(None);
        }
    }
}

/// Numbers the slots depth first and records each node's range.
fn number(node: &mut Node, next: &mut usize) {
    node.first = *next;
    node.quoted = scan::QuotedNames::of(node.children.iter().map(|(name, _)| name.as_str()));
    if node.slot.is_some() {
        node.slot = Some(*next);
        *next += 1;
    }
    for (_, child) in &mut node.children {
        number(child, next);
    }
    node.end = *next;
}

impl Node {
    fn slot_of(&self, path: &[String]) -> usize {
        let mut node = self;
        for name in path {
            node = node
                .children
                .iter()
                .find_map(|(n, c)| (n == name).then_some(c))
                .expect("every path was added");
        }
        node.slot.expect("every path ends in a slot")
    }

    /// How many names deep the deepest path goes.
    fn depth(&self) -> usize {
        self.children
            .iter()
            .map(|(_, c)| 1 + c.depth())
            .max()
            .unwrap_or(0)
    }

    #[inline]
    fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find_map(|(n, c)| (n == name).then_some(c))
    }

    /// Fills the slots below this node from its value read whole (a path
    /// that ends here and goes on below too, like `user` and `user.id`).
    fn fill_below(&self, value: &Value, slots: &mut [Option<Leaf<'_>>]) {
        for (name, child) in &self.children {
            let Some(inner) = value.get(name.as_str()) else {
                continue;
            };
            if let Some(slot) = child.slot {
                slots[slot] = Some(Leaf::of(inner.clone()));
            }
            child.fill_below(inner, slots);
        }
    }
}
