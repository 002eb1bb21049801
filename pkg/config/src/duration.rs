//! Go- and Prometheus-style durations: `500ms`, `15s`, `1h30m`, `1.5h`, one grammar for
//! every key of Ember (server, components and the agent alike).
//!
//! Units are `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d` and `w`; a bare `0` is
//! zero. [`format`] writes the shortest exact form with units up to hours, which
//! [`parse`] reads back. Use the module with `#[serde(with = "ember_config::duration")]`.

use std::fmt;
use std::time::Duration;

use serde::{Deserializer, Serializer};

/// Error for text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

const UNITS: &str = "ns, us, ms, s, m, h, d, w";

/// Parses a duration such as `15s`, `1h30m` or `1.5h`.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let error = |reason: String| ParseDurationError {
        input: input.to_string(),
        reason,
    };
    let text = input.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(error(format!(
            "expected a number followed by a unit ({UNITS}), e.g. 15s"
        )));
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c| !is_number(c)).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(is_number).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        rest = after;

        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(error(format!(
                "expected a number followed by a unit ({UNITS}), e.g. 15s"
            )));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            "" => return Err(error(format!("missing unit ({UNITS}) after {number}"))),
            other => return Err(error(format!("unknown unit {other:?}, use {UNITS}"))),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| error("number too large".into()))?
        };
        // Exact decimal arithmetic, as Go does; digits past nanoseconds are dropped.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| error("bad fraction".into()))?;
            digits * unit_nanos / 10u128.pow(fraction.len() as u32)
        };
        total = whole
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total))
            .ok_or_else(|| error("duration too long".into()))?;
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| error("duration too long".into()))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration as [`parse`] reads it: `0s`, `500ms`, `30s`, `1h30m`.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_string();
    }
    let mut nanos = duration.as_nanos();
    let mut out = String::new();
    for (unit, size) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        let count = nanos / size;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
            nanos %= size;
        }
    }
    out
}

/// Serializes a duration with [`format`].
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// Deserializes a duration with [`parse`]; a bare number other than 0 is refused,
/// because `30` could mean seconds or nanoseconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 15s, 1h30m or 500ms")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Duration, E> {
            parse(value).map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Duration, E> {
            parse(&value.to_string()).map_err(E::custom)
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Duration, E> {
            parse(&value.to_string()).map_err(E::custom)
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Duration, E> {
            parse(&value.to_string()).map_err(E::custom)
        }
    }

    deserializer.deserialize_any(DurationVisitor)
}

/// `Option<Duration>` with [`format`] and [`parse`], for overrides.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    struct Wrapped(#[serde(with = "super")] Duration);

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
    }
}

/// `Vec<Duration>` with [`format`] and [`parse`].
pub mod list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    #[derive(Deserialize)]
    struct Wrapped(#[serde(with = "super")] Duration);

    pub fn serialize<S: Serializer>(
        durations: &[Duration],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(durations.len()))?;
        for d in durations {
            seq.serialize_element(&super::format(*d))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<Wrapped>::deserialize(deserializer)?
            .into_iter()
            .map(|w| w.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn duration_parse_and_format() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("15s", Duration::from_secs(15)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("2d", Duration::from_secs(2 * 86_400)),
            ("1w", Duration::from_secs(7 * 86_400)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            (" 1m ", Duration::from_secs(60)),
            ("1.000000001s", Duration::new(1, 1)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
        for bad in ["", "s", "1", "1x", "-1s", "1.2.3s", "1 s", "h1"] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            parse("5y").unwrap_err().to_string(),
            "invalid duration \"5y\": unknown unit \"y\", use ns, us, ms, s, m, h, d, w"
        );
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(48 * 3600), "48h"),
            (Duration::new(1, 1), "1s1ns"),
        ] {
            assert_eq!(format(duration), text);
            assert_eq!(parse(text).unwrap(), duration);
        }
    }
}
