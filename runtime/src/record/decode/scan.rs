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

use serde_json::Number;

use super::{Leaf, Node, Slots};

mod flat;
pub(super) use flat::{decode_flat, FlatNames};

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

/// A node's names as the scanner compares them with a record's text, each
/// with its closing quote: a name of up to 15 bytes is one masked 16-byte
/// comparison (a longer one, that and its whole text), and a record's name
/// is not searched for its end first.
#[derive(Debug, Clone, Default)]
pub(super) struct QuotedNames(Vec<QuotedName>);

#[derive(Debug, Clone)]
struct QuotedName {
    /// The name and its closing `"`.
    text: Box<[u8]>,
    /// The first 16 bytes of `text` (little-endian, zero beyond its end)
    /// and the mask of those it has.
    head: u128,
    mask: u128,
}

impl QuotedNames {
    /// `names`, in order, as written in JSON; or None when one has a `"`,
    /// `\` or control character (written with an escape, so only
    /// serde_json can match it).
    pub(super) fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        Self::ending(names, b"\"")
    }

    /// `names` as [`QuotedNames::of`] has them, each followed by `end`.
    pub(super) fn ending<'a>(names: impl IntoIterator<Item = &'a str>, end: &[u8]) -> Option<Self> {
        let mut quoted = Vec::new();
        for name in names {
            if !super::written_as_is(name) {
                return None;
            }
            let text: Box<[u8]> = [name.as_bytes(), end].concat().into();
            let n = text.len().min(16);
            let mut head = [0u8; 16];
            head[..n].copy_from_slice(&text[..n]);
            quoted.push(QuotedName {
                head: u128::from_le_bytes(head),
                mask: u128::MAX >> (128 - 8 * n),
                text,
            });
        }
        Some(QuotedNames(quoted))
    }

    /// Which name `rest` starts with (its index), and that name's length
    /// with its quote; `head` is its first 16 bytes, as [`head_of`] reads them.
    #[inline]
    fn find(&self, head: u128, rest: &[u8]) -> Option<(usize, usize)> {
        self.0.iter().enumerate().find_map(|(i, name)| {
            let n = name.text.len();
            let hit =
                head & name.mask == name.head && (n <= 16 || rest.get(..n) == Some(&*name.text));
            hit.then_some((i, n))
        })
    }
}

/// The first 16 bytes of `bytes[at..]` (little-endian). The last bytes
/// of a record are padded with zeros, which no name (nor its quote) has,
/// and which end a string's plain run as a control character does.
#[inline]
fn head_of(bytes: &[u8], at: usize) -> u128 {
    let rest = &bytes[at..];
    if let Some(head) = rest.first_chunk::<16>() {
        return u128::from_le_bytes(*head);
    }
    // Fewer than 16 bytes left: the record's last 16, shifted down past
    // those before `at`. (Copying the rest into a zeroed buffer instead
    // made the load that follows wait for the copy's stores: a sixth of
    // the scanner's time, at the last name of every record.)
    match bytes.last_chunk::<16>() {
        Some(last) if !rest.is_empty() => u128::from_le_bytes(*last) >> (8 * (16 - rest.len())),
        _ => {
            let mut head = [0u8; 16];
            head[..rest.len()].copy_from_slice(rest);
            u128::from_le_bytes(head)
        }
    }
}

/// How many bytes of plain string content `head` (16 bytes, see
/// [`head_of`]) starts with before a closing `"`: None when its first stop
/// byte is not a quote, or when it has none, so that the string is read
/// on from the text. (A name the job does not want is most often short:
/// its end is found in the bytes already loaded to compare it.)
#[inline]
fn quote_in_head(head: u128) -> Option<usize> {
    let low = string_stops(head as u64);
    let stops = match low {
        0 => u128::from(string_stops((head >> 64) as u64)) << 64,
        low => u128::from(low),
    };
    let at = (stops.trailing_zeros() / 8) as usize;
    (stops != 0 && (head >> (8 * at)) as u8 == b'"').then_some(at)
}

#[derive(Clone, Copy)]
struct Scanner<'de> {
    text: &'de str,
    bytes: &'de [u8],
    at: usize,
}

/// What [`Scanner::byte`] reads past the end: a control character, which
/// is valid nowhere the scanner reads one, so the end needs no check of
/// its own.
const END: u8 = 0;

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

/// The number eight ASCII digits (little-endian: the first digit in the
/// lowest byte) make, in three steps that each join neighbours: pairs of
/// digits in each 16-bit lane (at most 99), then fours in each 32-bit lane
/// (at most 9,999), then all eight. No lane carries into the next.
fn eight_digits(word: u64) -> u64 {
    let d = word - u64::from_ne_bytes([b'0'; 8]);
    let pairs = (d * 10 + (d >> 8)) & 0x00ff_00ff_00ff_00ff;
    let fours = (pairs * 100 + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    (fours * 10_000 + (fours >> 32)) & 0xffff_ffff
}

/// The value of the ASCII digits `bytes[start..end]` (at most 19). Up to
/// 16 are read as one or two words of eight that end at `end`, the bytes
/// before `start` read as zeros; the bytes read are those of the record
/// before the number, so a number that starts too near the record's start
/// is read as [`decimal`] reads it.
#[inline(always)]
fn decimal_at(bytes: &[u8], start: usize, end: usize) -> u64 {
    let read = match end - start {
        1..=8 => digits_ending(bytes, start, end),
        9..=16 => digits_ending(bytes, start, end - 8)
            .zip(digits_ending(bytes, end - 8, end))
            .map(|(high, low)| high * 100_000_000 + low),
        _ => None,
    };
    read.unwrap_or_else(|| decimal(&bytes[start..end]))
}

/// The number the eight bytes that end at `to` make as digits, those
/// before `from` read as zeros; None when there are no eight bytes before
/// `to`.
#[inline(always)]
fn digits_ending(bytes: &[u8], from: usize, to: usize) -> Option<u64> {
    let chunk = bytes.get(to.checked_sub(8)?..to)?.first_chunk::<8>()?;
    let keep = u64::MAX
        .checked_shl(8 * (8 - (to - from)) as u32)
        .unwrap_or(0);
    Some(eight_digits(
        u64::from_le_bytes(*chunk) & keep | u64::from_ne_bytes([b'0'; 8]) & !keep,
    ))
}

/// The value of at most 19 ASCII digits: eight at a time, then one by one.
fn decimal(digits: &[u8]) -> u64 {
    let mut chunks = digits.chunks_exact(8);
    let mut n = 0u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        n = n * 100_000_000 + eight_digits(word);
    }
    for d in chunks.remainder() {
        n = n * 10 + u64::from(d - b'0');
    }
    n
}

impl<'de> Scanner<'de> {
    /// The byte at `at`, [`END`] past the end.
    #[inline]
    fn byte(&self) -> u8 {
        self.bytes.get(self.at).copied().unwrap_or(END)
    }

    /// The byte at `at`, and `at` moved past it. Past the end that is
    /// [`END`], on which every caller gives up.
    #[inline]
    fn next(&mut self) -> u8 {
        let b = self.byte();
        self.at += 1;
        b
    }

    #[inline]
    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.byte() == expected).then(|| self.at += 1)
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while matches!(self.byte(), b' ' | b'\n' | b'\t' | b'\r') {
            self.at += 1;
        }
    }

    /// Runs `f`, which calls what is not inlined, on a copy of the
    /// scanner, then goes on from where the copy stopped. Only the copy's
    /// address is taken, so this scanner's position can stay in a register
    /// through the inlined loop over a record's fields.
    #[inline(always)]
    fn detached<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let mut copy = *self;
        let out = f(&mut copy);
        self.at = copy.at;
        out
    }

    /// [`Scanner::object`] below the top level, not inlined (it recurses).
    #[inline(never)]
    fn nested_object(&mut self, node: &Node, slots: &mut Slots<'de>) -> Option<()> {
        self.object(node, slots)
    }

    /// The entries of an object whose `{` was read, through its `}`: a
    /// wanted name's value is read, any other skipped.
    #[inline(always)]
    fn object(&mut self, node: &Node, slots: &mut Slots<'de>) -> Option<()> {
        self.skip_whitespace();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            self.eat(b'"')?;
            let child = self.name(node)?;
            self.colon()?;
            match child {
                Some(child) => self.wanted(child, slots)?,
                None => self.skip(0)?,
            }
            self.skip_whitespace();
            match self.byte() {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The `:` between a name and its value, with the whitespace around it.
    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        self.skip_whitespace();
        self.eat(b':')?;
        self.skip_whitespace();
        Some(())
    }

    /// A name whose `"` was read, through its closing `"`: the child of
    /// `node` it names, or None for any other name. None outside when
    /// serde_json must decide.
    #[inline(always)]
    fn name<'n>(&mut self, node: &'n Node) -> Option<Option<&'n Node>> {
        let Some(names) = &node.quoted else {
            return Some(node.child(self.plain_string()?));
        };
        let head = head_of(self.bytes, self.at);
        match names.find(head, &self.bytes[self.at..]) {
            Some((child, len)) => {
                self.at += len;
                Some(Some(&node.children[child].1))
            }
            // Not one of the node's names as written, so none of them at
            // all where it has no escapes (with one, serde_json decides).
            None => match quote_in_head(head) {
                Some(len) => {
                    self.at += len + 1;
                    Some(None)
                }
                None => self.plain_string().map(|_| None),
            },
        }
    }

    /// The value under a wanted name. Of duplicate names the last one
    /// counts, as in a parsed object: the slots below it are cleared, and
    /// its own overwritten.
    #[inline(always)]
    fn wanted(&mut self, node: &Node, slots: &mut Slots<'de>) -> Option<()> {
        match node.slot {
            // A path ends here: the value is kept as it is, and any path
            // going on below reads from it.
            Some(slot) if node.children.is_empty() => slots[slot] = Some(self.leaf()?),
            Some(slot) => {
                slots[slot + 1..node.end].fill(None);
                let leaf = self.leaf()?;
                if let Leaf::Nested(value) = &leaf {
                    node.fill_below(value, slots);
                }
                slots[slot] = Some(leaf);
            }
            // Only paths below: an object is read on, an array skipped.
            // serde_json reads any other value here whole (a number must
            // fit a double, a string's escapes must decode), so it is read
            // as a kept value would be, then dropped.
            None => {
                slots[node.first..node.end].fill(None);
                match self.byte() {
                    b'{' => {
                        self.at += 1;
                        self.detached(|s| s.nested_object(node, slots))?;
                    }
                    b'[' => self.skip(0)?,
                    _ => {
                        self.leaf()?;
                    }
                }
            }
        }
        Some(())
    }

    /// A kept value: a string borrowed, a number as serde_json reads it,
    /// an object or array as the `Value` it builds.
    #[inline(always)]
    fn leaf(&mut self) -> Option<Leaf<'de>> {
        match self.byte() {
            b'"' => {
                self.at += 1;
                Some(Leaf::Str(Cow::Borrowed(self.plain_string()?)))
            }
            b'-' | b'0'..=b'9' => self.number().map(Leaf::Number),
            _ => self.detached(Self::other_leaf),
        }
    }

    /// A kept literal, object or array.
    #[cold]
    fn other_leaf(&mut self) -> Option<Leaf<'de>> {
        let start = self.at;
        match self.next() {
            b't' => self.rest_of(b"rue").map(|()| Leaf::Bool(true)),
            b'f' => self.rest_of(b"alse").map(|()| Leaf::Bool(false)),
            b'n' => self.rest_of(b"ull").map(|()| Leaf::Null),
            b'{' | b'[' => {
                self.at = start;
                self.skip(0)?;
                let nested = serde_json::from_str(&self.text[start..self.at]).ok()?;
                Some(Leaf::Nested(Box::new(nested)))
            }
            _ => None,
        }
    }

    /// A kept number. A plain integer of up to 18 digits (it fits both
    /// i64 and u64) is read here; anything else by serde_json, from the
    /// number's own text.
    #[inline(always)]
    fn number(&mut self) -> Option<Number> {
        let start = self.at;
        let negative = self.eat(b'-').is_some();
        let digits = self.at;
        self.skip_digits();
        let count = self.at - digits;
        let plain = (1..=18).contains(&count)
            && (count == 1 || self.bytes[digits] != b'0')
            && !matches!(self.byte(), b'.' | b'e' | b'E');
        if plain {
            let n = decimal_at(self.bytes, digits, self.at);
            match negative {
                false => return Some(n.into()),
                // At most 18 digits: fits an i64. ("-0" is a double for
                // serde_json, so it goes there.)
                true if n != 0 => return Some((-(n as i64)).into()),
                true => {}
            }
        }
        self.at = digits;
        self.skip_number_after_sign()?;
        serde_json::from_str(&self.text[start..self.at]).ok()
    }

    /// A number's text from the byte after its optional `-`, checked as
    /// JSON writes numbers.
    #[inline(always)]
    fn skip_number_after_sign(&mut self) -> Option<()> {
        match self.byte() {
            // One leading zero only.
            b'0' => {
                self.at += 1;
                if self.byte().is_ascii_digit() {
                    return None;
                }
            }
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.one_or_more_digits()?;
        }
        if let b'e' | b'E' = self.byte() {
            self.at += 1;
            if let b'+' | b'-' = self.byte() {
                self.at += 1;
            }
            self.one_or_more_digits()?;
        }
        Some(())
    }

    /// Past the digits from `at`: eight bytes at a time (event times and
    /// ids are long numbers), then byte by byte for the last few.
    #[inline(always)]
    fn skip_digits(&mut self) {
        while let Some(chunk) = self.bytes.get(self.at..).and_then(<[u8]>::first_chunk::<8>) {
            let digits = leading_digits(u64::from_le_bytes(*chunk));
            self.at += digits;
            if digits < 8 {
                return;
            }
        }
        while self.byte().is_ascii_digit() {
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
    #[inline(always)]
    fn string_stop(&self) -> Option<usize> {
        let mut at = self.at;
        while let Some(chunk) = self.bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            let stops = string_stops(u64::from_le_bytes(*chunk));
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
    #[inline(always)]
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
    #[inline(always)]
    fn skip_string(&mut self) -> Option<()> {
        loop {
            self.at = self.string_stop()?;
            match self.next() {
                b'"' => return Some(()),
                b'\\' => match self.next() {
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
    #[inline(always)]
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.next() {
            b'"' => self.skip_string(),
            b'-' => self.skip_number_after_sign(),
            b'0'..=b'9' => {
                self.at -= 1;
                self.skip_number_after_sign()
            }
            first => self.detached(|s| s.skip_other(first, depth)),
        }
    }

    /// [`Scanner::skip`] for a value that is no string or number: not
    /// inlined, as it recurses.
    #[inline(never)]
    fn skip_other(&mut self, first: u8, depth: usize) -> Option<()> {
        match first {
            b't' => self.rest_of(b"rue"),
            b'f' => self.rest_of(b"alse"),
            b'n' => self.rest_of(b"ull"),
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

    /// The items of a skipped array or object whose opening bracket was
    /// read, through `close`: each read by `item`, separated by commas.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.skip_whitespace();
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            item(self)?;
            self.skip_whitespace();
            match self.next() {
                b',' => {}
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes of string content, often one that stops a plain run (a quote,
    /// a backslash, a control character) or is next to one in value.
    fn string_bytes() -> impl Strategy<Value = u8> {
        prop_oneof![
            any::<u8>(),
            b'a'..=b'z',
            Just(b'"'),
            Just(b'\\'),
            0u8..=0x20,
            0x7fu8..=0x81,
        ]
    }

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
        fn eight_digits_at_a_time_read_as_one_by_one(digits in "[0-9]{1,19}") {
            let one_by_one = digits.bytes().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            prop_assert_eq!(decimal(digits.as_bytes()), one_by_one);
        }

        #[test]
        fn digits_read_as_words_ending_at_the_last_read_as_one_by_one(
            before in prop::collection::vec(any::<u8>(), 0..12),
            digits in "[0-9]{1,19}",
            after in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            // Whatever comes before the digits (read as zeros) or after.
            let one_by_one = digits.bytes().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            let bytes = [&before[..], digits.as_bytes(), &after[..]].concat();
            let (start, end) = (before.len(), before.len() + digits.len());
            prop_assert_eq!(decimal_at(&bytes, start, end), one_by_one);
        }

        #[test]
        fn a_name_is_found_as_written_with_its_quote(
            names in prop::collection::vec("[a-z_]{0,20}", 1..4),
            text in "[a-z_\"]{0,24}",
            pick in any::<prop::sample::Index>(),
        ) {
            let quoted = QuotedNames::of(names.iter().map(String::as_str)).expect("plain names");
            // The text as it is, and a picked name with its quote followed
            // by the text.
            let named = format!("{}\"{text}", pick.get(&names));
            for rest in [text.as_str(), named.as_str()] {
                let expected = names.iter().enumerate().find_map(|(i, name)| {
                    let n = name.len() + 1;
                    (rest.len() >= n && rest[..n] == format!("{name}\"")).then_some((i, n))
                });
                let found = quoted.find(head_of(rest.as_bytes(), 0), rest.as_bytes());
                prop_assert_eq!(found, expected, "{:?} in {:?}", rest, names);
            }
        }

        #[test]
        fn the_head_of_the_rest_is_its_first_sixteen_bytes_then_zeros(
            bytes in prop::collection::vec(any::<u8>(), 0..40),
            at in any::<prop::sample::Index>(),
        ) {
            let at = at.index(bytes.len() + 1);
            let expected = (0..16)
                .map(|i| u128::from(bytes.get(at + i).copied().unwrap_or(0)) << (8 * i))
                .fold(0, |head, byte| head | byte);
            prop_assert_eq!(head_of(&bytes, at), expected, "{:?} from {}", bytes, at);
        }

        #[test]
        fn eight_bytes_at_a_time_find_the_first_stop_byte(
            bytes in prop::array::uniform8(string_bytes())
        ) {
            let first = bytes.iter().position(|&b| STRING_STOP[usize::from(b)]);
            let stops = string_stops(u64::from_le_bytes(bytes));
            prop_assert_eq!(first, (stops != 0).then(|| stops.trailing_zeros() as usize / 8));
        }

        #[test]
        fn a_plain_string_ends_at_a_quote_in_its_first_sixteen_bytes(
            bytes in prop::collection::vec(string_bytes(), 0..24)
        ) {
            // As plain_string reads it: the first stop byte (the padding's
            // zeros are stops too), which must be the closing quote.
            let first = (0..16)
                .map(|i| bytes.get(i).copied().unwrap_or(0))
                .position(|b| STRING_STOP[usize::from(b)]);
            let expected = first.filter(|&at| bytes.get(at) == Some(&b'"'));
            prop_assert_eq!(quote_in_head(head_of(&bytes, 0)), expected, "{:?}", bytes);
        }
    }
}
