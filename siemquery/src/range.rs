//! `--range START-END`: `YYmmddHHMMSS`, `YYYYmmddHHMMSS` or ISO 8601 on each
//! side, read in the section's zone unless a side carries an offset.

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use siemstress_common::time::{Zone, parse_offset};

/// `[start, end)` in UTC epoch ms.
pub fn parse_range(spec: &str, zone: &Zone) -> anyhow::Result<(i64, i64)> {
    let s = spec.trim();
    // ISO dates contain '-' themselves: take the split where both sides parse.
    let mut found = None;
    for (i, _) in s.match_indices('-') {
        let (a, b) = (&s[..i], &s[i + 1..]);
        if let (Ok(a), Ok(b)) = (parse_instant(a, zone), parse_instant(b, zone)) {
            if found.is_some() {
                bail!("--range {spec:?} is ambiguous: write START-END with full dates");
            }
            found = Some((a, b));
        }
    }
    let Some((start, end)) = found else {
        // Name the side that fails, if the split is obvious.
        if let Some((a, b)) = s.split_once('-')
            && a.bytes().all(|c| c.is_ascii_digit())
        {
            parse_instant(a, zone).with_context(|| format!("--range {spec:?}: start"))?;
            parse_instant(b, zone).with_context(|| format!("--range {spec:?}: end"))?;
        }
        bail!(
            "--range {spec:?}: expected START-END, each YYmmddHHMMSS, YYYYmmddHHMMSS or \
             ISO 8601 (2024-03-01T12:00:00, optional Z or +01:00)"
        );
    };
    if start >= end {
        bail!("--range {spec:?}: start is not before end (the end is exclusive)");
    }
    Ok((start, end))
}

/// One side of a range, as UTC epoch ms.
pub fn parse_instant(s: &str, zone: &Zone) -> anyhow::Result<i64> {
    let s = s.trim();
    if s.is_empty() {
        bail!("empty time");
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let fmt = match s.len() {
            12 => "%y%m%d%H%M%S",
            14 => "%Y%m%d%H%M%S",
            n => bail!("{s:?}: {n} digits; use YYmmddHHMMSS (12) or YYYYmmddHHMMSS (14)"),
        };
        let t = NaiveDateTime::parse_from_str(s, fmt)
            .with_context(|| format!("{s:?} is not a valid date and time"))?;
        return Ok(zone.to_utc_ms(t, None).0);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let (local, offset) = split_offset(s);
    let naive = parse_naive(local).with_context(|| format!("{s:?} is not an ISO 8601 time"))?;
    Ok(match offset {
        Some(off) => naive.and_utc().timestamp_millis() - i64::from(off) * 1000,
        None => zone.to_utc_ms(naive, None).0,
    })
}

/// Splits a trailing `Z` or `+HH:MM`/`+HHMM`/`+HH` from the time part.
fn split_offset(s: &str) -> (&str, Option<i32>) {
    if let Some(rest) = s.strip_suffix(['Z', 'z']) {
        return (rest, Some(0));
    }
    // An offset only follows a time (after 'T' or ' ').
    if let Some(tpos) = s.find(['T', 't', ' '])
        && let Some(p) = s[tpos..].rfind(['+', '-'])
    {
        let at = tpos + p;
        if let Some(off) = parse_offset(&s[at..]) {
            return (&s[..at], Some(off.local_minus_utc()));
        }
    }
    (s, None)
}

fn parse_naive(s: &str) -> anyhow::Result<NaiveDateTime> {
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")?;
    Ok(d.and_hms_opt(0, 0, 0).expect("midnight"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Zone {
        Zone::parse("UTC").unwrap()
    }

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn compact_forms() {
        let (a, b) = parse_range("050614151601-20050615000000", &utc()).unwrap();
        assert_eq!(a, ms("2005-06-14T15:16:01Z"));
        assert_eq!(b, ms("2005-06-15T00:00:00Z"));
    }

    #[test]
    fn iso_forms_and_offsets() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let (a, b) = parse_range("2024-07-01T12:00:00-2024-07-01T13:00:00Z", &berlin).unwrap();
        assert_eq!(a, ms("2024-07-01T10:00:00Z"));
        assert_eq!(b, ms("2024-07-01T13:00:00Z"));
        let (a, b) = parse_range("2024-07-01T12:00-05:00-2024-07-02", &utc()).unwrap();
        assert_eq!(a, ms("2024-07-01T17:00:00Z"));
        assert_eq!(b, ms("2024-07-02T00:00:00Z"));
        let (a, _) = parse_range("2024-07-01 12:00:00.5+0200-2024-07-02", &utc()).unwrap();
        assert_eq!(a, ms("2024-07-01T10:00:00.5Z"));
    }

    #[test]
    fn errors() {
        assert!(parse_range("20050615000000-20050614000000", &utc()).is_err());
        assert!(parse_range("20050615000000-20050615000000", &utc()).is_err());
        assert!(parse_range("yesterday-today", &utc()).is_err());
        assert!(parse_range("2005061500000-20050616000000", &utc()).is_err());
        assert!(parse_range("20051315000000-20051316000000", &utc()).is_err());
    }
}
