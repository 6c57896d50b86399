//! The decoder on serde_json's parser: the definition the fast scanner
//! (`scan.rs`) falls back to, and what decides every record it does not
//! take (escapes in names, errors, deep nesting).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{Leaf, Node, Slots};
use crate::record::RecordError;

/// Reads the wanted values of `text` into `slots` (all empty) with
/// serde_json's parser, or says why the record is not a JSON object.
pub(super) fn decode<'de>(
    root: &Node,
    text: &'de str,
    slots: &mut Slots<'de>,
) -> Result<(), RecordError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let is_object = ObjectSeed { node: root, slots }
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
    match is_object {
        true => Ok(()),
        false => Err(RecordError::NotAnObject),
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
                if let Leaf::Nested(value) = &leaf {
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

/// A wanted value: a string borrowed where it can be, a number as
/// serde_json reads one, an object or array as the `Value` it builds.
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
        Ok(Leaf::Bool(b))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Leaf<'de>, E> {
        // As serde_json's own `Value`: a double with no JSON form is null.
        Ok(serde_json::Number::from_f64(v).map_or(Leaf::Null, Leaf::Number))
    }
    fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
        use serde::Deserialize;
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
            .map(|v| Leaf::Nested(Box::new(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<'de>, A::Error> {
        use serde::Deserialize;
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(|v| Leaf::Nested(Box::new(v)))
    }
}
