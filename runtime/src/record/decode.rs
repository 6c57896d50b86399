//! Reading only the fields a job needs from a record's JSON text.
//!
//! A record is parsed once, front to back, by serde_json's parser; the
//! values at the job's paths (key, event time, aggregate fields, selected
//! fields) are kept in slots, and everything else is skipped without being
//! built. A string value without escapes is borrowed from the text, and
//! numbers, booleans and null need no allocation, so a typical record costs
//! no allocation per field and no map.
//!
//! Semantics are those of parsing the whole record into a `serde_json::Value`
//! and reading the paths from it (the property test below holds the two
//! side by side, in `tests/integration/record_decoding.rs`): the same syntax errors with the same positions and words
//! (the same parser checks every byte), trailing characters refused, a record that is
//! not an object refused after its syntax, the last of duplicate names
//! winning, `null` as absent, and a path through something that is not an
//! object absent. Two differences, both in values the job never reads: a
//! number too large for a double (`1e999`) and nesting deeper than 128
//! levels are skipped rather than refused.
//!
//! Why serde_json here and not a SIMD parser: see `benches/decode.rs` and
//! the README's benchmark section.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use smallvec::SmallVec;

use super::RecordError;

/// The value at one of the job's paths, as read from the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'de> {
    /// A string, borrowed from the record unless it had escapes.
    Str(Cow<'de, str>),
    /// Anything else; numbers, booleans and null are inline.
    Value(Value),
}

/// The job's paths as a tree of names. Slots are numbered depth first, so
/// the slots below a name are one contiguous range (cleared when the name
/// appears again: the last occurrence wins).
#[derive(Debug, Clone, Default)]
pub struct WantedFields {
    root: Node,
    slots: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// The slot of the value at this node's path, when a job path ends here.
    slot: Option<usize>,
    children: Vec<(String, Node)>,
    /// The slots of this node and everything below it.
    first: usize,
    end: usize,
}

/// The slots of one record: one per wanted path.
pub type Slots<'de> = SmallVec<[Option<Leaf<'de>>; 6]>;

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
                root: tree,
                slots: next,
            },
            slots,
        )
    }

    /// Reads `text`, a whole record: its wanted values, or why it is not a
    /// JSON object.
    pub fn decode<'de>(&self, text: &'de str) -> Result<Slots<'de>, RecordError> {
        let mut slots: Slots<'de> = SmallVec::from_elem(None, self.slots);
        let mut de = serde_json::Deserializer::from_str(text);
        let is_object = ObjectSeed {
            node: &self.root,
            slots: &mut slots,
        }
        .deserialize(&mut de)
        .and_then(|is_object| de.end().map(|()| is_object))
        .map_err(|e| {
            // Skipping reports some errors in other words than building a
            // value does ("EOF while parsing an object" for "... a value"):
            // a malformed record is rare, so it is parsed again for the
            // words users have seen all along.
            let e = serde_json::from_str::<Value>(text).err().unwrap_or(e);
            RecordError::Json(e.to_string())
        })?;
        if !is_object {
            return Err(RecordError::NotAnObject);
        }
        Ok(slots)
    }
}

/// Numbers the slots depth first and records each node's range.
fn number(node: &mut Node, next: &mut usize) {
    node.first = *next;
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
                slots[slot] = Some(Leaf::Value(inner.clone()));
            }
            child.fill_below(inner, slots);
        }
    }
}

/// A value read against a node of the tree: an object's entries are read
/// (yields true); anything else is read through, its syntax checked, and
/// skipped (false). For the record itself, false means "not an object".
struct ObjectSeed<'n, 's, 'de> {
    node: &'n Node,
    slots: &'s mut Slots<'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        read_object(self.node, self.slots, map).map(|()| true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// The entries of an object at `node`: a wanted name's value is read, any
/// other skipped.
fn read_object<'de, A: MapAccess<'de>>(
    node: &Node,
    slots: &mut Slots<'de>,
    mut map: A,
) -> Result<(), A::Error> {
    while let Some(child) = map.next_key_seed(NameSeed(node))? {
        match child {
            Some(child) => map.next_value_seed(ValueSeed { node: child, slots })?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// An object's name, matched against a node's children without copying it.
struct NameSeed<'n>(&'n Node);

impl<'de, 'n> DeserializeSeed<'de> for NameSeed<'n> {
    type Value = Option<&'n Node>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for NameSeed<'n> {
    type Value = Option<&'n Node>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.child(name))
    }
}

/// The value under a wanted name. Its slots are cleared first: of
/// duplicate names the last one counts, as in a parsed object.
struct ValueSeed<'n, 's, 'de> {
    node: &'n Node,
    slots: &'s mut Slots<'de>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let node = self.node;
        for slot in &mut self.slots[node.first..node.end] {
            *slot = None;
        }
        match node.slot {
            // A path ends here: the value is kept as it is, and any path
            // going on below reads from it.
            Some(slot) => {
                let leaf = d.deserialize_any(LeafVisitor)?;
                if let Leaf::Value(value) = &leaf {
                    node.fill_below(value, self.slots);
                }
                self.slots[slot] = Some(leaf);
                Ok(())
            }
            // Only paths below: an object is read on, anything else skipped.
            None => d
                .deserialize_any(ObjectSeed {
                    node,
                    slots: self.slots,
                })
                .map(|_| ()),
        }
    }
}

/// A wanted value: a string borrowed where it can be, anything else as a
/// `Value` built the way serde_json builds one.
struct LeafVisitor;

impl<'de> Visitor<'de> for LeafVisitor {
    type Value = Leaf<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Owned(s)))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Value(Value::Bool(b)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Value(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Value(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Leaf<'de>, E> {
        // As serde_json's own `Value`: a double with no JSON form is null.
        Ok(Leaf::Value(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Value(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
        use serde::Deserialize;
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Leaf::Value)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<'de>, A::Error> {
        use serde::Deserialize;
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Leaf::Value)
    }
}
