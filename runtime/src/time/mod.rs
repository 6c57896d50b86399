//! Event time: parsing it out of records, printing it, and watermarks.

mod watermark;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Number, Value};

use crate::spec::TimeFormat;

pub use watermark::{MinWatermark, PartitionWatermarks, SourceStatus};

/// Watermark before anything has been seen.
pub const MIN_WATERMARK: i64 = i64::MIN;
/// Watermark of a finished input: every window fires.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// The earliest event time a record may carry: 0001-01-01T00:00:00Z.
pub const MIN_EVENT_TIME: i64 = -62_135_596_800_000;
/// The latest event time a record may carry: 9999-12-31T23:59:59.999Z.
/// Within these bounds, window bounds, lateness and watermarks (with
/// durations bounded by validation) never overflow.
pub const MAX_EVENT_TIME: i64 = 253_402_300_799_999;

/// Reads an event time (epoch milliseconds) from a JSON value.
#[inline]
pub fn parse_event_time(v: &Value, format: TimeFormat) -> Result<i64, String> {
    in_range(parse_time_value(v, format)?, || v.to_string())
}

/// [`parse_event_time`] of a number value, read without building a `Value`.
pub fn parse_event_time_number(n: &Number, format: TimeFormat) -> Result<i64, String> {
    in_range(parse_time_number(n, format)?, || n.to_string())
}

/// [`parse_event_time`] of a string value, read without building a `Value`.
pub fn parse_event_time_str(s: &str, format: TimeFormat) -> Result<i64, String> {
    in_range(parse_time_str(s, format)?, || Value::from(s).to_string())
}

/// `ts`, unless it is outside years 1 to 9999; `shown` is the value as the
/// record had it (as JSON).
fn in_range(ts: i64, shown: impl FnOnce() -> String) -> Result<i64, String> {
    if !(MIN_EVENT_TIME..=MAX_EVENT_TIME).contains(&ts) {
        return Err(format!(
            "{} is outside the supported range, years 0001 to 9999 (epoch milliseconds {MIN_EVENT_TIME} to {MAX_EVENT_TIME})",
            shown()
        ));
    }
    Ok(ts)
}

fn parse_time_value(v: &Value, format: TimeFormat) -> Result<i64, String> {
    match (v, format) {
        (Value::Number(n), _) => parse_time_number(n, format),
        (Value::String(s), _) => parse_time_str(s, format),
        (other, _) => Err(format!("expected a timestamp, got {other}")),
    }
}

fn parse_time_number(n: &Number, format: TimeFormat) -> Result<i64, String> {
    match format {
        TimeFormat::Auto | TimeFormat::EpochMillis => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| format!("expected whole epoch milliseconds, got {n}")),
        TimeFormat::Iso8601 => Err(format!(
            "expected an ISO-8601 string, got the number {n} (set eventTime.format: epochMillis)"
        )),
    }
}

fn parse_time_str(s: &str, format: TimeFormat) -> Result<i64, String> {
    match format {
        TimeFormat::Auto if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map_err(|_| format!("epoch milliseconds out of range: {s:?}")),
        TimeFormat::Auto | TimeFormat::Iso8601 => parse_iso8601(s),
        TimeFormat::EpochMillis => Err(format!(
            "expected epoch milliseconds, got the string {s:?} (set eventTime.format: iso8601)"
        )),
    }
}

/// ISO-8601 with an offset, or without one (then taken as UTC), with `T` or a
/// space between date and time.
pub fn parse_iso8601(s: &str) -> Result<i64, String> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_millis());
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, pattern) {
            return Ok(naive.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "expected an ISO-8601 timestamp like \"2025-09-04T10:01:00Z\", got {s:?}"
    ))
}

/// Prints epoch milliseconds as RFC 3339 in UTC, with a fraction only when
/// there is one.
pub fn format_time(millis: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(millis) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => millis.to_string(),
    }
}

/// Wall-clock now in epoch milliseconds.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_iso8601_variants_and_epoch_millis() {
        let expect = 1_756_980_060_000; // 2025-09-04T10:01:00Z
        for text in [
            "2025-09-04T10:01:00.000000",
            "2025-09-04T10:01:00",
            "2025-09-04T10:01:00Z",
            "2025-09-04T12:01:00+02:00",
            "2025-09-04 10:01:00",
        ] {
            assert_eq!(parse_iso8601(text), Ok(expect), "{text}");
        }
        assert_eq!(
            parse_event_time(&json!(expect), TimeFormat::Auto),
            Ok(expect)
        );
        assert_eq!(
            parse_event_time(&json!(expect.to_string()), TimeFormat::Auto),
            Ok(expect)
        );
        assert_eq!(format_time(expect), "2025-09-04T10:01:00Z");
        assert_eq!(format_time(expect + 5), "2025-09-04T10:01:00.005Z");
    }

    #[test]
    fn names_the_problem() {
        let err = parse_event_time(&json!("yesterday"), TimeFormat::Auto).unwrap_err();
        assert!(err.contains("ISO-8601"), "{err}");
        let err = parse_event_time(&json!(5), TimeFormat::Iso8601).unwrap_err();
        assert!(err.contains("epochMillis"), "{err}");
        let err = parse_event_time(&json!(true), TimeFormat::Auto).unwrap_err();
        assert!(err.contains("expected a timestamp"), "{err}");
    }

    /// Times at the edges of the number range would overflow window
    /// arithmetic: they are the record's fault, not the job's.
    #[test]
    fn event_times_outside_years_1_to_9999_are_refused() {
        for v in [
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e300),
            json!(-1e300),
            json!(i64::MAX.to_string()),
            json!(MAX_EVENT_TIME + 1),
            json!(MIN_EVENT_TIME - 1),
        ] {
            let err = parse_event_time(&v, TimeFormat::Auto).unwrap_err();
            assert!(
                err.contains("outside the supported range, years 0001 to 9999"),
                "{v}: {err}"
            );
        }
        for (v, ts) in [
            (json!("9999-12-31T23:59:59.999Z"), MAX_EVENT_TIME),
            (json!("0001-01-01T00:00:00Z"), MIN_EVENT_TIME),
            (json!(MAX_EVENT_TIME), MAX_EVENT_TIME),
        ] {
            assert_eq!(parse_event_time(&v, TimeFormat::Auto), Ok(ts), "{v}");
        }
    }
}
