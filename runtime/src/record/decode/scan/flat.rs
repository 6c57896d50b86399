//! The flat lane: the scanner's shortcut for the commonest job.
//!
//! Where every path of a job is one name deep (`visit_id`, `event_time`),
//! the lane walks a record's top-level names, comparing each together with
//! its closing quote and colon in one masked step, and reads each value as
//! the general reader does under a name that ends a path ([`Scanner::leaf`])
//! or under any other name ([`Scanner::skip`]). It does without the general
//! reader's steps for paths going on below a name, and looks for spaces
//! only where the byte it read is one.
//!
//! It answers only where the general reader would answer the same, and
//! says `None` otherwise: an escape in a name or in a kept string,
//! whitespace other than spaces between the top-level tokens, a wanted
//! name with a space before its colon, and every syntax error. The caller
//! then empties the slots and gives the record to [`super::decode`], so
//! such a record costs what it cost before plus the part of the lane it
//! went through.

use super::{head_of, quote_in_head, QuotedNames, Scanner};
use crate::record::decode::{Node, Slots};

/// A tree whose paths are all one name deep, as the flat lane reads it:
/// each name written `name":`, and its slot.
#[derive(Debug, Clone)]
pub(in crate::record::decode) struct FlatNames {
    names: QuotedNames,
    slots: Box<[usize]>,
}

impl FlatNames {
    /// The flat lane for the tree under `root`; None unless each of its
    /// children is a name without escapes that ends a path and has
    /// nothing below it.
    pub(in crate::record::decode) fn of(root: &Node) -> Option<Self> {
        let slots = root
            .children
            .iter()
            .map(|(_, child)| child.slot.filter(|_| child.children.is_empty()))
            .collect::<Option<Box<[usize]>>>()?;
        let names = root.children.iter().map(|(name, _)| name.as_str());
        Some(FlatNames {
            names: QuotedNames::ending(names, b"\":")?,
            slots,
        })
    }
}

/// Reads the wanted values of `text` into `slots` (all empty); None when
/// the general reader must decide (see the module's comment).
pub(in crate::record::decode) fn decode_flat<'de>(
    flat: &FlatNames,
    text: &'de str,
    slots: &mut Slots<'de>,
) -> Option<()> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    if s.next_past_spaces() != b'{' {
        return None;
    }
    let mut next = s.next_past_spaces();
    if next != b'}' {
        loop {
            if next != b'"' {
                return None;
            }
            // A value as the general reader reads one under a name that
            // ends a path, or under any other name.
            let slot = s.wanted_name(flat)?;
            s.skip_spaces();
            match slot {
                Some(slot) => slots[slot] = Some(s.leaf()?),
                None => s.skip(0)?,
            }
            match s.next_past_spaces() {
                b',' => next = s.next_past_spaces(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_spaces();
    (s.at == text.len()).then_some(())
}

impl<'de> Scanner<'de> {
    /// A name whose `"` was read, through its colon: the slot of a wanted
    /// one, None for any other. None outside where the general reader must
    /// decide.
    #[inline(always)]
    fn wanted_name(&mut self, flat: &FlatNames) -> Option<Option<usize>> {
        let head = head_of(self.bytes, self.at);
        let slot = match flat.names.find(head, &self.bytes[self.at..]) {
            Some((child, len)) => {
                self.at += len;
                Some(flat.slots[child])
            }
            // Not a wanted name followed by its colon: another name, or a
            // wanted one with a space before its colon (left to the
            // general reader, below).
            None => {
                match quote_in_head(head) {
                    Some(len) => self.at += len + 1,
                    None => {
                        self.plain_string()?;
                    }
                }
                self.eat(b':')?;
                None
            }
        };
        Some(slot)
    }

    /// The next byte that is not a space, and `at` moved past it. (Most
    /// records have no spaces: one comparison of the byte read anyway.)
    #[inline(always)]
    fn next_past_spaces(&mut self) -> u8 {
        match self.next() {
            b' ' => {
                self.skip_spaces();
                self.next()
            }
            b => b,
        }
    }

    #[inline(always)]
    fn skip_spaces(&mut self) {
        while self.byte() == b' ' {
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::decode::{Leaf, WantedFields};
    use serde_json::{json, Number};
    use std::borrow::Cow;

    /// `visit_id`, `event_time` and a name of 15 bytes (17 with its quote
    /// and colon: past one masked step), in slots 0, 1 and 2.
    fn flat() -> FlatNames {
        FlatNames::of(&WantedFields::of_dotted(&["visit_id", "event_time", "fifteen_bytes_x"]).root)
            .expect("one name deep")
    }

    fn lane<'de>(flat: &FlatNames, text: &'de str) -> Option<Slots<'de>> {
        let mut slots: Slots = [None, None, None].into_iter().collect();
        decode_flat(flat, text, &mut slots).map(|()| slots)
    }

    #[test]
    fn the_lane_takes_records_of_plain_names() {
        let flat = flat();
        let str = |s| Some(Leaf::Str(Cow::Borrowed(s)));
        let int = |n: i64| Some(Leaf::Number(Number::from(n)));
        for (text, expected) in [
            (
                r#"{"event_id":10000001,"visit_id":"v00919","event_time":1767225600001,"page":"/p/001"}"#,
                [str("v00919"), int(1_767_225_600_001), None],
            ),
            // Spaces around the punctuation, as Python's json.dumps writes.
            (
                r#" { "page": "/x", "event_time": -12, "visit_id": "a b" } "#,
                [str("a b"), int(-12), None],
            ),
            // A long name, literals, a double, a duplicate (the last wins).
            (
                r#"{"fifteen_bytes_x":true,"visit_id":null,"event_time":2.5,"visit_id":"b","x":false}"#,
                [
                    str("b"),
                    Some(Leaf::Number(Number::from_f64(2.5).unwrap())),
                    Some(Leaf::Bool(true)),
                ],
            ),
            // Nested values, skipped or kept whole; escapes in a skipped
            // string.
            (
                r#"{"page":[1,{"a":"b\"c"}],"visit_id":"a","fifteen_bytes_x":{"n":[2]}}"#,
                [
                    str("a"),
                    None,
                    Some(Leaf::Nested(Box::new(json!({"n": [2]})))),
                ],
            ),
            (r#"{}"#, [None, None, None]),
        ] {
            assert_eq!(lane(&flat, text).as_deref(), Some(&expected[..]), "{text}");
        }
    }

    #[test]
    fn the_lane_leaves_the_rest_to_the_general_reader() {
        let flat = flat();
        for text in [
            // Escapes in a name, or in a string the job keeps.
            r#"{"visit_\u0069d":"a"}"#,
            r#"{"page":"a","visit_id":"a\"b"}"#,
            // Whitespace other than spaces; a space before a wanted
            // name's colon.
            "{\"visit_id\":\t\"a\"}",
            r#"{"visit_id" :"a"}"#,
            // Malformed.
            r#"{"visit_id":"a",}"#,
            r#"{"visit_id":"a"} x"#,
            r#"{"visit_id":01}"#,
            r#"{"page":tru}"#,
            r#"{"page""#,
            "",
        ] {
            assert_eq!(lane(&flat, text), None, "{text}");
        }
    }

    #[test]
    fn only_paths_one_name_deep_have_a_lane() {
        assert!(FlatNames::of(&WantedFields::of_dotted(&["a", "b"]).root).is_some());
        assert!(FlatNames::of(&WantedFields::of_dotted(&["a", "b.c"]).root).is_none());
        assert!(FlatNames::of(&WantedFields::of_dotted(&["a", "a.c"]).root).is_none());
        assert!(FlatNames::of(&WantedFields::of_dotted(&["a\"b"]).root).is_none());
    }
}
