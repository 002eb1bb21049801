//! Time arguments of the legacy HTTP API: `now`, `now-1h`, or unix time in
//! seconds, milliseconds, microseconds or nanoseconds (told apart by size).

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Converts a unix timestamp of unknown precision to milliseconds.
pub fn unix_to_ms(v: i64) -> i64 {
    match v.unsigned_abs() {
        0..10_000_000_000 => v * 1000,
        10_000_000_000..10_000_000_000_000 => v,
        10_000_000_000_000..10_000_000_000_000_000 => v / 1000,
        _ => v / 1_000_000,
    }
}

/// Parses `now`, `now-<n><s|m|h|d|w>` or a unix timestamp into milliseconds.
pub fn parse_time(input: &str, now_ms: i64) -> Result<i64, String> {
    let s = input.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = s.strip_prefix("now-") {
        let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
        let (n, unit) = rel.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("invalid relative time {input:?}"))?;
        let unit_ms = match unit {
            "s" | "" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(format!("invalid unit in {input:?}: use s, m, h, d or w")),
        };
        return Ok(now_ms - n.saturating_mul(unit_ms));
    }
    s.parse::<i64>()
        .map(unix_to_ms)
        .map_err(|_| format!("invalid time {input:?}: use now, now-1h, or a unix timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("1700000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000000000", now), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time("1700000000000000000", now),
            Ok(1_700_000_000_000)
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("now-3y", now).is_err());
    }
}
