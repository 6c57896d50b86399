//! Human-readable durations ("15m", "2s", "500ms") as they appear in job specs.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time with millisecond precision, written as a number followed by
/// a unit: `ms`, `s`, `m`, `h` or `d` (for example `15m`, `2s`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    millis: i64,
}

impl Duration {
    pub const ZERO: Duration = Duration { millis: 0 };
    /// The longest duration a spec may hold: 10000 years (3650000d). Event
    /// times lie within years 1 to 9999, so window bounds, lateness and
    /// watermarks computed from them and a few such durations stay far
    /// from the limits of 64-bit milliseconds.
    pub const MAX: Duration = Duration {
        millis: 3_650_000 * 86_400_000,
    };

    pub const fn from_millis(millis: i64) -> Self {
        Duration { millis }
    }

    pub const fn from_secs(secs: i64) -> Self {
        Duration {
            millis: secs * 1000,
        }
    }

    pub const fn as_millis(self) -> i64 {
        self.millis
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis.max(0) as u64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    #[error("invalid duration {input:?}: expected a number followed by ms, s, m, h or d, like \"15m\" or \"500ms\"")]
    Syntax { input: String },
    #[error("duration {input:?} is too long: at most 3650000d (10000 years)")]
    TooLong { input: String },
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError::Syntax {
            input: input.to_string(),
        };
        let too_long = || ParseDurationError::TooLong {
            input: input.to_string(),
        };
        let mut rest = input.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total: i64 = 0;
        // Compound forms like "1h30m" are a sequence of number+unit parts.
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err());
            }
            // Only digits: a number that does not parse is too large.
            let value: i64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit_millis = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total = value
                .checked_mul(unit_millis)
                .and_then(|v| total.checked_add(v))
                .filter(|total| *total <= Duration::MAX.millis)
                .ok_or_else(too_long)?;
        }
        Ok(Duration { millis: total })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in units {
            if ms != 0 && ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        if ms == 0 {
            write!(f, "0s")
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration: a number followed by ms, s, m, h or d, e.g. \"15m\"."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let cases = [
            ("500ms", 500),
            ("2s", 2_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("0s", 0),
        ];
        for (text, millis) in cases {
            assert_eq!(
                text.parse::<Duration>().unwrap().as_millis(),
                millis,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_input() {
        for text in ["", "15", "m", "15x", "-1s", "1.5s", "s15"] {
            assert!(text.parse::<Duration>().is_err(), "{text:?} should fail");
        }
    }

    /// Durations that would overflow window arithmetic are refused with
    /// the limit.
    #[test]
    fn rejects_durations_longer_than_ten_thousand_years() {
        assert_eq!("3650000d".parse::<Duration>(), Ok(Duration::MAX));
        for text in [
            "3650001d",
            "99999999999d",
            "3650000d1ms",
            "99999999999999999999ms",
        ] {
            assert_eq!(
                text.parse::<Duration>().unwrap_err().to_string(),
                format!("duration {text:?} is too long: at most 3650000d (10000 years)")
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["15m", "2s", "500ms", "1h", "90s", "0s"] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
        assert_eq!(Duration::from_millis(90_000).to_string(), "90s");
    }
}
