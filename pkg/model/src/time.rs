//! Times as Pyroscope's HTTP API and UI write them in URLs: `now`,
//! `now-<n><unit>`, `now+<n><unit>` or `-<n><unit>` (`s`, `m`, `h`, `d`, `w`, also spelled
//! `sec`, `min`, `hour`, `day`, `week`), a unix time in seconds,
//! milliseconds, microseconds or nanoseconds told apart by magnitude, or a
//! UTC date as Pyroscope's `attime` reads it: `YYYYMMDD`, `HH:MM_YYYYMMDD`,
//! `YYYY-MM-DD` or RFC 3339 (`2023-01-02T15:04:05Z`).

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
            "invalid time {input:?}: use now, now-1h, a unix timestamp, YYYYMMDD, HH:MM_YYYYMMDD or RFC 3339"
        ))
    };
    let relative = s
        .strip_prefix("now")
        .or_else(|| s.starts_with('-').then_some(s));
    if let Some(rest) = relative {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let (sign, rest) = match (rest.strip_prefix('-'), rest.strip_prefix('+')) {
            (Some(r), _) => (-1, r),
            (None, Some(r)) => (1, r),
            _ => return Err(bad()),
        };
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: i64 = rest[..split].parse().map_err(|_| bad())?;
        let unit_ms = match &rest[split..] {
            "s" | "" | "sec" | "secs" => 1_000,
            "m" | "min" | "mins" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 604_800_000,
            unit => {
                return Err(Error::Malformed(format!(
                    "invalid unit {unit:?} in {input:?}: use s, m, h, d or w"
                )));
            }
        };
        return Ok(now_ms.saturating_add(sign * n.saturating_mul(unit_ms)));
    }
    if s.len() == 8 && s.starts_with(['1', '2']) && s.bytes().all(|b| b.is_ascii_digit()) {
        // YYYYMMDD: eight digits that make a date are one, not a unix time in 1970.
        if let Some(ms) = date_ms(&s[..4], &s[4..6], &s[6..], 0, 0, 0) {
            return Ok(ms);
        }
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok(unix_to_ms(v));
    }
    if let Some((hm, date)) = s.split_once('_') {
        let (h, m) = hm.split_once(':').ok_or_else(bad)?;
        if date.len() != 8 {
            return Err(bad());
        }
        let (h, m) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        return date_ms(&date[..4], &date[4..6], &date[6..], h, m, 0).ok_or_else(bad);
    }
    rfc3339_ms(s).ok_or_else(bad)
}

/// Returns the unix milliseconds of a UTC civil time, if valid.
fn date_ms(y: &str, mo: &str, d: &str, h: i64, mi: i64, sec: i64) -> Option<i64> {
    let (y, mo, d): (i64, i64, i64) = (y.parse().ok()?, mo.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || !(0..24).contains(&h) {
        return None;
    }
    if !(0..60).contains(&mi) || !(0..61).contains(&sec) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000)
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let day = date_ms(&s[..4], &s[5..7], &s[8..10], 0, 0, 0)?;
    if b.len() == 10 {
        return Some(day);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec): (i64, i64, i64) = (
        s[11..13].parse().ok()?,
        s[14..16].parse().ok()?,
        s[17..19].parse().ok()?,
    );
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let (oh, om): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    Some(day + ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + millis)
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
        assert_eq!(parse("-1h"), Some(now - 3_600_000));
        assert_eq!(parse("now+1h"), Some(now + 3_600_000));
        assert_eq!(parse("now-30min"), Some(now - 1_800_000));
        assert!(parse("yesterday").is_none());
        // Dates, UTC.
        assert_eq!(parse("20231114"), Some(1_699_920_000_000));
        assert_eq!(parse("22:13_20231114"), Some(1_699_999_980_000));
        assert_eq!(parse("2023-11-14"), Some(1_699_920_000_000));
        assert_eq!(parse("2023-11-14T22:13:20Z"), Some(now));
        assert_eq!(parse("2023-11-14T23:13:20.5+01:00"), Some(now + 500));
        assert_eq!(parse("19700101"), Some(0));
        assert_eq!(
            parse("12345678"),
            Some(12_345_678_000),
            "not a date: unix seconds"
        );
        assert!(parse("25:00_20231114").is_none());
        assert!(parse("2023-11-14T22:13:20").is_none());
        assert!(parse("now-5y").is_none());
        assert!(parse("now-3y").is_none());
    }
}
