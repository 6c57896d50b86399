//! The fast reader: one pass over a record's bytes, against the path tree.
//!
//! It answers only when it can answer exactly as serde_json's parser would
//! (`serde_path.rs`), and says `None` otherwise: on any syntax error (so
//! every malformed record gets serde_json's reason, words and column), on
//! an escape in a name it compares or in a string it keeps, and on values
//! nested deeper than it bounds. Strings it skips may hold escapes; they
//! are checked as serde_json checks skipped strings. Numbers it keeps are
//! read here when they are plain integers that fit, and by serde_json
//! otherwise, so a double rounds the same way on both paths.
//!
//! The text is a `&str`, so UTF-8 is already checked; the scanner looks
//! only at ASCII bytes (quotes, backslashes, control characters,
//! punctuation), and every place it cuts the text is next to one.

use std::borrow::Cow;

use serde_json::Value;

use super::{same_name, Leaf, Node, Slots};

/// Paths deeper than this are left to serde_json. With the bound below,
/// the deepest value the scanner builds stays well under serde_json's
/// recursion limit (128), so the two never disagree on it.
pub(super) const MAX_PATH_DEPTH: usize = 32;

/// Values nested deeper than this are left to serde_json.
const MAX_NESTING: usize = 64;

/// Reads the wanted values of `text` into `slots` (all empty); None when
/// serde_json must decide.
pub(super) fn decode<'de>(root: &Node, text: &'de str, slots: &mut Slots<'de>) -> Option<()> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    scanner.skip_whitespace();
    scanner.eat(b'{')?;
    scanner.object(root, slots)?;
    scanner.skip_whitespace();
    (scanner.at == text.len()).then_some(())
}

struct Scanner<'de> {
    text: &'de str,
    bytes: &'de [u8],
    at: usize,
}

/// The bytes that end a run of plain string content: the closing quote, a
/// backslash, and the control characters JSON forbids in strings.
const STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// The high bit of each byte of `word` (little-endian) that is in
/// [`STRING_STOP`]; exact for the lowest such byte, which is all the
/// scanner asks (the borrows of the subtraction can mark bytes above it).
fn string_stops(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash
}

/// How many of the bytes of `word` (little-endian), from the first, are
/// ASCII digits. A byte is a digit when, xor `'0'`, it is at most 9: adding
/// 0x76 then sets its high bit only if it is not (or it had it already).
/// Only a byte that is no digit carries into the next, above the first
/// such byte, which is all that is asked.
fn leading_digits(word: u64) -> usize {
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let x = word ^ u64::from_ne_bytes([b'0'; 8]);
    let not_digit = (x.wrapping_add(u64::from_ne_bytes([0x76; 8])) | x) & HIGH;
    not_digit.trailing_zeros() as usize / 8
}

impl<'de> Scanner<'de> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.peek()? == expected).then(|| self.at += 1)
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        // Most records have none: one comparison says so (all four
        // whitespace bytes are at most a space).
        while let Some(&b) = self.bytes.get(self.at) {
            if b > b' ' || !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return;
            }
            self.at += 1;
        }
    }

    /// The entries of an object whose `{` was read, through its `}`: a
    /// wanted name's value is read, any other skipped.
    fn object(&mut self, node: &Node, slots: &mut Slots<'de>) -> Option<()> {
        self.items(b'}', |s| {
            s.eat(b'"')?;
            let child = match s.wanted_name(node) {
                Some(child) => Some(child),
                // Not one of the node's names as written, so not one of
                // them at all where it has no escapes (and with one,
                // serde_json decides).
                None if node.plain_names => s.plain_string().map(|_| None)?,
                None => node.child(s.plain_string()?),
            };
            s.colon()?;
            match child {
                Some(child) => s.wanted(child, slots),
                None => s.skip(0),
            }
        })
    }

    /// The child of `node` whose name is written next, with its closing
    /// `"`, compared in place: a wanted name is not searched for its end
    /// first. None (and nothing read) when it is none of them as written.
    fn wanted_name<'n>(&mut self, node: &'n Node) -> Option<&'n Node> {
        if !node.plain_names {
            return None;
        }
        let rest = &self.bytes[self.at..];
        let (n, child) = node.children.iter().find_map(|(name, child)| {
            let n = name.len();
            (rest.get(n) == Some(&b'"') && same_name(&rest[..n], name.as_bytes()))
                .then_some((n, child))
        })?;
        self.at += n + 1;
        Some(child)
    }

    /// The items of an array or object whose opening bracket was read,
    /// through `close`: each read by `item`, separated by commas.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.skip_whitespace();
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            item(self)?;
            self.skip_whitespace();
            match self.next()? {
                b',' => {}
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// The `:` between a name and its value, with the whitespace around it.
    fn colon(&mut self) -> Option<()> {
        self.skip_whitespace();
        self.eat(b':')?;
        self.skip_whitespace();
        Some(())
    }

    /// The value under a wanted name. Its slots are cleared first: of
    /// duplicate names the last one counts, as in a parsed object.
    fn wanted(&mut self, node: &Node, slots: &mut Slots<'de>) -> Option<()> {
        // The node's own slot comes first in its range and is overwritten
        // below: clearing it first would only be a second write.
        let below = match node.slot {
            Some(_) => node.first + 1,
            None => node.first,
        };
        for slot in &mut slots[below..node.end] {
            *slot = None;
        }
        match node.slot {
            // A path ends here: the value is kept as it is, and any path
            // going on below reads from it.
            Some(slot) => {
                let leaf = self.leaf()?;
                if let Leaf::Value(value) = &leaf {
                    node.fill_below(value, slots);
                }
                slots[slot] = Some(leaf);
            }
            // Only paths below: an object is read on, an array skipped.
            // serde_json reads any other value here whole (a number must
            // fit a double, a string's escapes must decode), so it is read
            // as a kept value would be, then dropped.
            None => match self.peek()? {
                b'{' => {
                    self.at += 1;
                    self.object(node, slots)?;
                }
                b'[' => self.skip(0)?,
                _ => {
                    self.leaf()?;
                }
            },
        }
        Some(())
    }

    /// A kept value: a string borrowed, anything else as the `Value`
    /// serde_json builds for it.
    fn leaf(&mut self) -> Option<Leaf<'de>> {
        let start = self.at;
        Some(match self.next()? {
            b'"' => Leaf::Str(Cow::Borrowed(self.plain_string()?)),
            b't' => self
                .rest_of(b"rue")
                .map(|()| Leaf::Value(Value::Bool(true)))?,
            b'f' => self
                .rest_of(b"alse")
                .map(|()| Leaf::Value(Value::Bool(false)))?,
            b'n' => self.rest_of(b"ull").map(|()| Leaf::Value(Value::Null))?,
            b'-' | b'0'..=b'9' => {
                self.at = start;
                Leaf::Value(self.number()?)
            }
            b'{' | b'[' => {
                self.at = start;
                self.skip(0)?;
                Leaf::Value(serde_json::from_str(&self.text[start..self.at]).ok()?)
            }
            _ => return None,
        })
    }

    /// A kept number. A plain integer of up to 18 digits (it fits both
    /// i64 and u64) is read here; anything else by serde_json, from the
    /// number's own text.
    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        let negative = self.eat(b'-').is_some();
        let digits = self.at;
        // The digits summed as they are passed (wrapping: a sum of more
        // than 18 digits is not used).
        self.skip_digits();
        let count = self.at - digits;
        // Summed only when used (wrapping: more than 18 digits are not).
        let n = self.bytes[digits..self.at].iter().fold(0u64, |n, d| {
            n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
        });
        let plain = (1..=18).contains(&count)
            && (count == 1 || self.bytes[digits] != b'0')
            && !matches!(self.peek(), Some(b'.' | b'e' | b'E'))
            // "-0" is a double for serde_json, so it goes there too.
            && !(negative && n == 0);
        if !plain {
            self.at = digits;
            self.skip_number_after_sign()?;
            return serde_json::from_str(&self.text[start..self.at]).ok();
        }
        Some(match negative {
            // At most 18 digits: fits an i64.
            true => Value::from(-(n as i64)),
            false => Value::from(n),
        })
    }

    /// A number's text from the byte after its optional `-`, checked as
    /// JSON writes numbers; true when it is an integer (no fraction and no
    /// exponent).
    fn skip_number_after_sign(&mut self) -> Option<bool> {
        match self.next()? {
            // One leading zero only.
            b'0' if matches!(self.peek(), Some(b'0'..=b'9')) => return None,
            b'0' => {}
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.eat(b'.').is_some() {
            integer = false;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.one_or_more_digits()?;
        }
        Some(integer)
    }

    /// Past the digits from `at`: eight bytes at a time (event times and
    /// ids are long numbers), then byte by byte for the last few.
    fn skip_digits(&mut self) {
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let digits = leading_digits(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
            self.at += digits;
            if digits < 8 {
                return;
            }
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.skip_digits();
        (self.at > start).then_some(())
    }

    /// The rest of a literal (`true`, `false`, `null`) after its first byte.
    fn rest_of(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.at + rest.len();
        (self.bytes.get(self.at..end)? == rest).then(|| self.at = end)
    }

    /// Where the plain run of string content from `at` ends: eight bytes
    /// at a time, then byte by byte for the last few.
    fn string_stop(&self) -> Option<usize> {
        let mut at = self.at;
        while let Some(chunk) = self.bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let stops = string_stops(word);
            if stops != 0 {
                return Some(at + stops.trailing_zeros() as usize / 8);
            }
            at += 8;
        }
        let run = self.bytes[at..]
            .iter()
            .position(|&b| STRING_STOP[usize::from(b)])?;
        Some(at + run)
    }

    /// A string whose `"` was read, through its closing `"`, borrowed; None
    /// when it has an escape or is not a valid string.
    #[inline]
    fn plain_string(&mut self) -> Option<&'de str> {
        let start = self.at;
        let end = self.string_stop()?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(&self.text[start..end])
    }

    /// A skipped string whose `"` was read, through its closing `"`; its
    /// escapes are checked as serde_json checks a skipped string's (a
    /// `\u` needs four hex digits, whatever code point they make).
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.at = self.string_stop()?;
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.bytes.get(self.at..self.at + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                // A control character.
                _ => return None,
            }
        }
    }

    /// A value checked and skipped; `depth` is how many arrays and objects
    /// it is inside.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.next()? {
            b'"' => self.skip_string(),
            b't' => self.rest_of(b"rue"),
            b'f' => self.rest_of(b"alse"),
            b'n' => self.rest_of(b"ull"),
            b'-' => self.skip_number_after_sign().map(drop),
            b'0'..=b'9' => {
                self.at -= 1;
                self.skip_number_after_sign().map(drop)
            }
            b'[' if depth < MAX_NESTING => self.items(b']', |s| s.skip(depth + 1)),
            b'{' if depth < MAX_NESTING => self.items(b'}', |s| {
                s.eat(b'"')?;
                s.skip_string()?;
                s.colon()?;
                s.skip(depth + 1)
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn eight_bytes_at_a_time_count_the_leading_digits(
            bytes in prop::array::uniform8(prop_oneof![
                any::<u8>(),
                b'0'..=b'9',
                Just(b'/'),
                Just(b':'),
                0xb0u8..=0xb9,
            ])
        ) {
            let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            prop_assert_eq!(leading_digits(u64::from_le_bytes(bytes)), digits);
        }

        #[test]
        fn eight_bytes_at_a_time_find_the_first_stop_byte(
            bytes in prop::array::uniform8(prop_oneof![
                any::<u8>(),
                Just(b'"'),
                Just(b'\\'),
                0u8..=0x20,
                0x7fu8..=0x81,
            ])
        ) {
            let first = bytes.iter().position(|&b| STRING_STOP[usize::from(b)]);
            let stops = string_stops(u64::from_le_bytes(bytes));
            prop_assert_eq!(first, (stops != 0).then(|| stops.trailing_zeros() as usize / 8));
        }
    }
}
