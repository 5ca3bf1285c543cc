//! Points in time on the command line: ISO 8601 / RFC 3339 (`2024-05-01`,
//! `2024-05-01T12:00:00`, with or without an offset), `YYYYmmddHHMMSS` and
//! `YYmmddHHMMSS` as siemquery's `--range` takes them. Times without an
//! offset are read in the local zone (`$TZ`).

use anyhow::{Context, bail};
use chrono::{NaiveDate, NaiveDateTime};
use siemstress_common::time::Zone;

/// Epoch ms of a point in time.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if s.is_empty() {
        bail!("empty time");
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(d.timestamp_millis());
    }
    let naive = parse_naive(s).with_context(|| {
        format!(
            "cannot read {s:?} as a time (use 2024-05-01T12:00:00, 20240501120000 or 240501120000)"
        )
    })?;
    Ok(Zone::local().to_utc_ms(naive, None).0)
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let f = match s.len() {
            14 => "%Y%m%d%H%M%S",
            12 => "%y%m%d%H%M%S",
            _ => return None,
        };
        return NaiveDateTime::parse_from_str(s, f).ok();
    }
    None
}

/// `START-END`: the split is the `-` where both sides read as times.
pub fn parse_range(s: &str) -> anyhow::Result<(i64, i64)> {
    for (i, _) in s.match_indices('-') {
        let (a, b) = (&s[..i], &s[i + 1..]);
        if let (Ok(from), Ok(to)) = (parse_time(a), parse_time(b)) {
            if to <= from {
                bail!("the end of {s:?} is not after its start");
            }
            return Ok((from, to));
        }
    }
    bail!("cannot read {s:?} as START-END (e.g. 240501000000-240502000000)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        let (a, b) = parse_range("2024-05-01T00:00:00Z-2024-05-02T00:00:00+00:00").unwrap();
        assert_eq!(b - a, 86_400_000);
        assert!(parse_time("20240501120000").is_ok());
        assert!(parse_time("240501120000").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}
