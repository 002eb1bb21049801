//! Times in URLs, as Pyroscope's UI writes them: `now`, `now-<n><unit>`
//! (`s`, `m`, `h`, `d`, `w`), or a unix time in seconds, milliseconds,
//! microseconds or nanoseconds (told apart by magnitude). Returns milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses one time against `now_ms`.
pub(crate) fn parse(input: &str, now_ms: i64) -> Result<i64, String> {
    let s = input.trim();
    let bad = || format!("invalid time {input:?}: use now, now-1h, or a unix time");
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let rest = rest.strip_prefix('-').ok_or_else(bad)?;
        let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: i64 = rest[..split].parse().map_err(|_| bad())?;
        let unit_ms = match &rest[split..] {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(bad()),
        };
        return Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)));
    }
    let n: i64 = s.parse().map_err(|_| bad())?;
    Ok(match n.unsigned_abs() {
        0..10_000_000_000 => n.saturating_mul(1_000),
        10_000_000_000..10_000_000_000_000 => n,
        10_000_000_000_000..10_000_000_000_000_000 => n / 1_000,
        _ => n / 1_000_000,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_relative_and_absolute_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse("now", now), Ok(now));
        assert_eq!(parse("now-15m", now), Ok(now - 900_000));
        assert_eq!(parse("now-2d", now), Ok(now - 172_800_000));
        assert_eq!(parse("1700000000", now), Ok(now));
        assert_eq!(parse("1700000000000", now), Ok(now));
        assert_eq!(parse("1700000000000000", now), Ok(now));
        assert_eq!(parse("1700000000000000000", now), Ok(now));
        assert!(parse("yesterday", now).is_err());
        assert!(parse("now-5y", now).is_err());
    }
}
