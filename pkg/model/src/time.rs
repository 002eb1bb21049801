//! Times as Pyroscope's HTTP API and UI write them in URLs: `now`,
//! `now-<n><unit>` (`s`, `m`, `h`, `d`, `w`), or a unix time in seconds,
//! milliseconds, microseconds or nanoseconds, told apart by magnitude.

use crate::{Error, Result};

/// Converts a unix timestamp of unknown precision to milliseconds.
pub fn unix_to_ms(v: i64) -> i64 {
    match v.unsigned_abs() {
        0..10_000_000_000 => v.saturating_mul(1000),
        10_000_000_000..10_000_000_000_000 => v,
        10_000_000_000_000..10_000_000_000_000_000 => v / 1000,
        _ => v / 1_000_000,
    }
}

/// Parses `now`, `now-<n><s|m|h|d|w>` or a unix timestamp, against `now_ms`,
/// into unix milliseconds.
pub fn parse(input: &str, now_ms: i64) -> Result<i64> {
    let s = input.trim();
    let bad = || {
        Error::Malformed(format!(
            "invalid time {input:?}: use now, now-1h, or a unix timestamp"
        ))
    };
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let rest = rest.strip_prefix('-').ok_or_else(bad)?;
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..split].parse().map_err(|_| bad())?;
        let unit_ms = match &rest[split..] {
            "s" | "" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            unit => {
                return Err(Error::Malformed(format!(
                    "invalid unit {unit:?} in {input:?}: use s, m, h, d or w"
                )));
            }
        };
        return Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)));
    }
    s.parse::<i64>().map(unix_to_ms).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relative_and_absolute_times() {
        let now = 1_700_000_000_000;
        let parse = |t| parse(t, now).ok();
        assert_eq!(parse("now"), Some(now));
        assert_eq!(parse("now-15m"), Some(now - 900_000));
        assert_eq!(parse("now-1h"), Some(now - 3_600_000));
        assert_eq!(parse("now-2d"), Some(now - 172_800_000));
        assert_eq!(parse("1700000000"), Some(now));
        assert_eq!(parse("1700000000000"), Some(now));
        assert_eq!(parse("1700000000000000"), Some(now));
        assert_eq!(parse("1700000000000000000"), Some(now));
        assert!(parse("yesterday").is_none());
        assert!(parse("now-5y").is_none());
        assert!(parse("now-3y").is_none());
    }
}
