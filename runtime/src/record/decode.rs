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
//! side by side): the same syntax errors with the same positions and words
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
        let is_object = RecordSeed {
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

    /// Fills this node's slots from a value read whole (a path that ends
    /// here and goes on below too, like `user` and `user.id`).
    fn fill_from(&self, value: &Value, slots: &mut [Option<Leaf<'_>>]) {
        if let Some(slot) = self.slot {
            slots[slot] = Some(Leaf::Value(value.clone()));
        }
        for (name, child) in &self.children {
            if let Some(inner) = value.get(name.as_str()) {
                child.fill_from(inner, slots);
            }
        }
    }
}

/// The record itself: an object read against the tree's root; anything
/// else is read through (its syntax errors come first) and reported as not
/// an object.
struct RecordSeed<'n, 's, 'de> {
    node: &'n Node,
    slots: &'s mut Slots<'de>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_, 'de> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
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
                match &leaf {
                    Leaf::Value(value) if !node.children.is_empty() => {
                        for (name, child) in &node.children {
                            if let Some(inner) = value.get(name.as_str()) {
                                child.fill_from(inner, self.slots);
                            }
                        }
                    }
                    _ => {}
                }
                self.slots[slot] = Some(leaf);
                Ok(())
            }
            // Only paths below: an object is read on, anything else skipped.
            None => d.deserialize_any(Inner {
                node,
                slots: self.slots,
            }),
        }
    }
}

/// A value on the way to wanted paths below it.
struct Inner<'n, 's, 'de> {
    node: &'n Node,
    slots: &'s mut Slots<'de>,
}

impl<'de> Visitor<'de> for Inner<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        read_object(self.node, self.slots, map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
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

#[cfg(test)]
mod tests {
    //! The decoder against the definition it replaces: parse the whole
    //! record into a `Value`, then read the paths from it.

    use super::super::{parse_object, Event, Fields, RecordError, RecordParser};
    use crate::spec::JobSpec;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// A windowed job reading nested paths, a path and a path below it, and
    /// every kind of aggregate input; and a select job.
    fn parsers() -> [RecordParser; 2] {
        let windowed = JobSpec::from_yaml(
            "name: t\nsource: {file: {path: x}}\neventTime: {field: meta.ts}\n\
             key: [user, meta.region]\nwindow: {tumbling: {size: 1m}}\n\
             aggregates: [{name: n, function: count}, {name: s, function: sum, field: amount}, \
             {name: d, function: countDistinct, field: meta}, \
             {name: m, function: max, field: meta.amount}]\n\
             sink: {file: {path: y}}\nsideOutputs: {late: {file: {path: l}}}\n",
        )
        .unwrap();
        let select = JobSpec::from_yaml(
            "name: t\nsource: {file: {path: x}}\neventTime: {field: meta.ts}\n\
             select: [user, meta.region, meta, amount]\nsink: {file: {path: y}}\n",
        )
        .unwrap();
        [RecordParser::new(&windowed), RecordParser::new(&select)]
    }

    fn whole(parser: &RecordParser, text: &str) -> Result<Event, RecordError> {
        let record = parse_object(text)?;
        parser.event(&Fields::of(&record), || text.trim_end().into())
    }

    fn same(text: &str) {
        for parser in parsers() {
            assert_eq!(parser.parse(text), whole(&parser, text), "{text}");
        }
    }

    #[test]
    fn reads_the_paths_and_skips_the_rest() {
        let text = r#"{"page":"/x","user":"ann","meta":{"region":"eu","ts":60000,"amount":2.5,"tags":[1,{"a":null}]},"amount":3}"#;
        let [windowed, select] = parsers();
        let event = windowed.parse(text).unwrap();
        assert_eq!(event.key.to_string(), "ann|eu");
        assert_eq!(event.ts, 60_000);
        assert_eq!(
            select.parse(text).unwrap().raw.as_deref(),
            Some(
                r#"{"user":"ann","meta.region":"eu","meta":{"region":"eu","ts":60000,"amount":2.5,"tags":[1,{"a":null}]},"amount":3}"#
            )
        );
        same(text);
    }

    #[test]
    fn the_cases_a_parsed_object_decides() {
        for text in [
            // Duplicate names: the last one counts, also for a nested path.
            r#"{"user":"a","user":"b","meta":{"region":"x","ts":1},"meta":{"ts":2}}"#,
            r#"{"user":"a","meta":{"region":"x","ts":1},"meta":5}"#,
            // Escapes in names and values.
            r#"{"us\u0065r":"\u00e9\n\"","meta":{"region":"\ud83d\ude00","ts":"1970-01-01T00:01:00Z"}}"#,
            // Null is absent; a path through a non-object is absent.
            r#"{"user":null,"meta":{"region":"x","ts":1}}"#,
            r#"{"user":"a","meta":[1,2]}"#,
            // Keys and times of the wrong kind.
            r#"{"user":1.5,"meta":{"region":"x","ts":1}}"#,
            r#"{"user":"a","meta":{"region":true,"ts":"soon"}}"#,
            r#"{"user":"a","meta":{"region":1,"ts":99999999999999999}}"#,
            r#"{"user":"a","meta":{"region":1,"ts":1},"amount":"12"}"#,
            r#"{"user":"a","meta":{"region":1,"ts":1,"amount":1e308},"amount":-0.0}"#,
            // Not an object, syntax errors, trailing characters.
            "[1,2]",
            "\"text\"",
            "[1,",
            r#"{"user":"a","page":tru}"#,
            r#"{"user":"a"} x"#,
            r#"{"user":"a","meta":{"region":1,"ts":1}}  "#,
            "",
        ] {
            same(text);
        }
    }

    /// A skipped number too large for a double does not make the record
    /// malformed (a parsed object refuses it); a read one does.
    #[test]
    fn only_read_numbers_must_fit_a_double() {
        let [windowed, _] = parsers();
        let text = r#"{"user":"a","meta":{"region":"x","ts":1},"page":1e999}"#;
        assert!(windowed.parse(text).is_ok());
        assert!(parse_object(text).is_err());
        let read = r#"{"user":"a","meta":{"region":"x","ts":1},"amount":1e999}"#;
        assert_eq!(windowed.parse(read), whole(&windowed, read));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[a-z\"\\\\é😀\u{1}]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        "[a-z]{1,4}",
                        Just("user".to_string()),
                        Just("ts".to_string())
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A record with the job's names present or not, holding anything.
    fn record() -> impl Strategy<Value = String> {
        let names = prop_oneof![
            Just("user"),
            Just("meta"),
            Just("amount"),
            Just("region"),
            Just("ts"),
            Just("page")
        ];
        let meta = prop::collection::vec((names.clone(), any_json()), 0..4);
        prop::collection::vec(
            prop_oneof![
                (names.clone(), any_json()),
                meta.prop_map(|entries| {
                    let object: serde_json::Map<String, Value> = entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                    ("meta", Value::Object(object))
                }),
            ],
            0..6,
        )
        .prop_map(|entries| {
            // Written by hand so that names may repeat.
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
                .collect();
            format!("{{{}}}", body.join(","))
        })
    }

    proptest! {
        #[test]
        fn decoding_equals_parsing_the_whole_record(text in record(), cut in any::<prop::sample::Index>()) {
            same(&text);
            // Cut short anywhere (at a character boundary): the same error.
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            same(&text[..at]);
        }

        #[test]
        fn any_value_decodes_as_it_parses(value in any_json()) {
            same(&value.to_string());
        }
    }
}
