//! The record decoder (`record/decode/`) against the definition it
//! replaces: parse the whole record into a `Value`, then read the paths
//! from it. And its two readers against each other: the scanner, where it
//! answers, answers as serde_json's parser does.

use crate::common::json::any_json;
use proptest::prelude::*;
use serde_json::Value;
use streamjob_runtime::record::{
    parse_object, Event, FieldRef, Fields, RecordError, RecordParser, Slots, WantedFields,
};
use streamjob_runtime::JobSpec;

/// A windowed job reading nested paths, a path and a path below it, and
/// every kind of aggregate input; a select job; and a windowed job whose
/// paths are all one name deep (the scanner's flat lane).
fn parsers() -> [RecordParser; 3] {
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
    let flat = JobSpec::from_yaml(
        "name: t\nsource: {file: {path: x}}\neventTime: {field: ts}\n\
         key: user\nwindow: {tumbling: {size: 1m}}\n\
         aggregates: [{name: s, function: sum, field: amount}, \
         {name: m, function: max, field: fifteen_bytes_x}]\n\
         sink: {file: {path: y}}\n",
    )
    .unwrap();
    [
        RecordParser::new(&windowed),
        RecordParser::new(&select),
        RecordParser::new(&flat),
    ]
}

fn whole(parser: &RecordParser, text: &str) -> Result<Event, RecordError> {
    let record = parse_object(text)?;
    parser.event(&Fields::of(&record), || text.trim_end().into())
}

fn same(text: &str) {
    for parser in parsers() {
        assert_eq!(parser.parse(text), whole(&parser, text), "{text}");
    }
    scanned_as_parsed(text);
}

/// The paths both parsers read, as one tree.
fn wanted() -> WantedFields {
    WantedFields::of_dotted(&[
        "user",
        "meta.region",
        "meta.ts",
        "amount",
        "meta",
        "meta.amount",
        // Names of 15 and 23 bytes: 16 and 24 with the closing quote, at
        // and past what the scanner compares in one step.
        "fifteen_bytes_x",
        "meta.a_name_of_twenty_three",
    ])
}

/// Paths all one name deep, which the scanner's flat lane reads first.
fn flat_wanted() -> WantedFields {
    WantedFields::of_dotted(&[
        "user",
        "amount",
        "ts",
        "fifteen_bytes_x",
        "a_name_of_twenty_three",
    ])
}

/// Whether the scanner took `text`, for the nested paths and for the flat
/// ones; where it did, it read what serde_json's parser reads. (They can
/// differ: a string with escapes is kept by one and skipped by the other.)
fn scanned_as_parsed(text: &str) -> [bool; 2] {
    [wanted(), flat_wanted()].map(|fields| {
        let (mut scanned, mut parsed) = (Slots::new(), Slots::new());
        if !fields.scan(text, &mut scanned) {
            return false;
        }
        assert_eq!(
            fields.decode_with_serde(text, &mut parsed),
            Ok(()),
            "{text}"
        );
        assert_eq!(scanned, parsed, "{text}");
        true
    })
}

#[test]
fn the_scanner_takes_plain_records_and_leaves_the_rest() {
    for text in [
        r#"{"page":"/x","user":"ann","meta":{"region":"eu","ts":60000,"amount":2.5,"tags":[1,{"a":null}]},"amount":3}"#,
        r#" { "user" : "a" , "meta" : { "ts" : -12 , "amount" : 1e3 } , "x" : [ ] , "y" : { } } "#,
        r#"{"user":"a","meta":{"region":"x","ts":1},"meta":5}"#,
        r#"{"user":"é","note":"a \"quoted\" \u00e9 word","meta":[{"ts":1}]}"#,
        r#"{"user":true,"amount":-0,"meta":{"amount":123456789012345678901234}}"#,
        r#"{"user":"a","meta":{"region":{"deep":[[[{"x":"\n"}]]]}}}"#,
        r#"{}"#,
    ] {
        assert_eq!(scanned_as_parsed(text), [true; 2], "not scanned: {text}");
        same(text);
    }
    let deep = format!("{{\"page\":{}1{}}}", "[".repeat(100), "]".repeat(100));
    for text in [
        // Escapes in a name, or in a string the job keeps.
        r#"{"us\u0065r":"a"}"#,
        r#"{"user":"a\nb"}"#,
        // Malformed: serde_json gives the reason.
        r#"{"user":"a",}"#,
        r#"{"user":01}"#,
        r#"{"page":"\x"}"#,
        "{\"page\":\"a\tb\"}",
        r#"{"user":"a"} x"#,
        r#"{"user":tru}"#,
        r#"{"page":1.}"#,
        r#"{"page":-}"#,
        r#"{"page":1e}"#,
        r#"{"user":"a""#,
        "[1,2]",
        "",
        // A kept number too large for a double.
        r#"{"amount":1e999}"#,
        // Nested deeper than the scanner goes.
        &deep,
    ] {
        assert_eq!(scanned_as_parsed(text), [false; 2], "scanned: {text}");
        same(text);
    }
}

#[test]
fn reads_the_paths_and_skips_the_rest() {
    let text = r#"{"page":"/x","user":"ann","meta":{"region":"eu","ts":60000,"amount":2.5,"tags":[1,{"a":null}]},"amount":3}"#;
    let [windowed, select, _] = parsers();
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
    let [windowed, _, _] = parsers();
    let text = r#"{"user":"a","meta":{"region":"x","ts":1},"page":1e999}"#;
    assert!(windowed.parse(text).is_ok());
    assert!(parse_object(text).is_err());
    let read = r#"{"user":"a","meta":{"region":"x","ts":1},"amount":1e999}"#;
    assert_eq!(windowed.parse(read), whole(&windowed, read));
}

/// Any value, its objects' names sometimes the job's.
fn json_value() -> BoxedStrategy<Value> {
    any_json(prop_oneof![
        "[a-z]{1,4}",
        Just("user".to_string()),
        Just("ts".to_string())
    ])
}

/// A record with the job's names present or not, holding anything.
fn record() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        Just("user"),
        Just("meta"),
        Just("amount"),
        Just("region"),
        Just("ts"),
        Just("page"),
        Just("fifteen_bytes_x"),
        Just("fifteen_bytes_"),
        Just("a_name_of_twenty_three"),
        Just("a_name_of_twenty_thre")
    ];
    let meta = prop::collection::vec((names.clone(), json_value()), 0..4);
    prop::collection::vec(
        prop_oneof![
            (names.clone(), json_value()),
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
    /// A value read from a record is written back (a select job's fields,
    /// `countDistinct`'s input) as serde_json writes it: a string with
    /// nothing to escape as it is, any other with serde_json's escapes.
    #[test]
    fn a_string_is_written_as_serde_json_writes_it(text in any::<String>(), plain in "[ -~&&[^\"\\\\]]{0,20}") {
        for text in [text, plain] {
            prop_assert_eq!(FieldRef::Str(&text).to_string(), Value::from(text.as_str()).to_string());
        }
    }

    #[test]
    fn decoding_equals_parsing_the_whole_record(text in record(), cut in any::<prop::sample::Index>()) {
        same(&text);
        // The fast path is the one taken for a record without escapes.
        prop_assert!(text.contains('\\') || scanned_as_parsed(&text) == [true; 2], "not scanned: {}", text);
        // Cut short anywhere (at a character boundary): the same error.
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        same(&text[..at]);
    }

    #[test]
    fn a_record_with_one_character_changed_decodes_as_it_parses(
        text in record(),
        at in any::<prop::sample::Index>(),
        with in prop::sample::select(vec![
            '"', '\\', '{', '}', '[', ']', ',', ':', '0', '1', '-', '+', '.', 'e', 'u', 't', 'n',
            ' ', '\t', '\u{1}', 'é',
        ]),
    ) {
        // Replaced, or inserted where the text ends: each syntax error the
        // scanner must leave to serde_json, and a few valid changes. (Not
        // held to the whole-record parse: a changed character can make a
        // skipped number too large for a double, which only that refuses.)
        let chars: Vec<char> = text.chars().collect();
        let at = at.index(chars.len() + 1);
        let mut changed: String = chars[..at].iter().collect();
        changed.push(with);
        changed.extend(chars.get(at + 1..).unwrap_or_default());
        scanned_as_parsed(&changed);
    }

    #[test]
    fn any_value_decodes_as_it_parses(value in json_value()) {
        same(&value.to_string());
    }
}
