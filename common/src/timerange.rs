//! Points and ranges of time on the command line, for every tool:
//! `siemquery --range`, `siemtrigger --from/--to` and `--explain-rule --range`.
//! One semantics (also in `docs/design.md`):
//!
//! - a point is `YYmmddHHMMSS`, `YYYYmmddHHMMSS`, or ISO 8601
//!   (`2024-03-01`, `2024-03-01T12:00`, `2024-03-01 12:00:00.5`), with an
//!   optional offset (`Z`, `+01:00`, `+0100`, `-05`);
//! - a point without an offset is wall-clock time in the zone the caller
//!   gives (siemquery: the section's; siemtrigger: `[section.default]`'s,
//!   else the local zone);
//! - a range is `START-END` (the `-` where both sides read as points) or the
//!   ISO 8601 interval `START/END`, `START/DURATION` or `DURATION/END`
//!   (`2026-10-25/P1D`, `P1W/2026-11-01`, see [`Duration`]); the start is
//!   inclusive, the end exclusive; a date alone is its midnight, so
//!   `2026-10-25/2026-10-26` is that whole day;
//! - a wall-clock time that does not exist (the hour skipped when DST
//!   starts) is read as the end of the gap, for start and end alike: the
//!   first instant the clock shows a later time. So `02:00-03:00` on that
//!   day is an empty range (no error), and `02:30-04:00` covers 03:00-04:00;
//! - a wall-clock time that exists twice (DST ends) is its first occurrence.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::time::{Fold, Zone, parse_offset};

/// Why a point or range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RangeError(String);

fn fail<T>(message: String) -> Result<T, RangeError> {
    Err(RangeError(message))
}

/// A point in time read in `zone`, UTC epoch ms.
pub fn parse_point(s: &str, zone: &Zone) -> Result<i64, RangeError> {
    parse(s, zone).map(|p| p.ms)
}

/// `[start, end)` of a range, UTC epoch ms.
pub fn parse_range(spec: &str, zone: &Zone) -> Result<(i64, i64), RangeError> {
    let s = spec.trim();
    let (start, end) = match s.split_once('/') {
        Some((a, b)) => {
            let side = |what: &str, e: RangeError| RangeError(format!("{spec:?}: {what}: {e}"));
            match (Duration::read(a), Duration::read(b)) {
                (Some(_), Some(_)) => {
                    return fail(format!("{spec:?}: a duration on both sides (P.../P...)"));
                }
                (None, Some(d)) => {
                    let start = parse(a, zone).map_err(|e| side("start", e))?;
                    let d = d.map_err(|e| side("duration", e))?;
                    (start, d.add_to(start, 1, zone).map_err(|e| side("end", e))?)
                }
                (Some(d), None) => {
                    let end = parse(b, zone).map_err(|e| side("end", e))?;
                    let d = d.map_err(|e| side("duration", e))?;
                    (d.add_to(end, -1, zone).map_err(|e| side("start", e))?, end)
                }
                (None, None) => (
                    parse(a, zone).map_err(|e| side("start", e))?,
                    parse(b, zone).map_err(|e| side("end", e))?,
                ),
            }
        }
        None => split_dash(spec, s, zone)?,
    };
    // The order is the written one: a start in a DST gap may meet its end
    // at the same instant (an empty range, not a mistake).
    if start.ms > end.ms || (start.ms == end.ms && !start.in_gap && !end.in_gap) {
        return fail(format!(
            "{spec:?}: start is not before end (the end is exclusive)"
        ));
    }
    Ok((start.ms, end.ms))
}

/// `START-END`: the split is the `-` where both sides read as points.
fn split_dash(spec: &str, s: &str, zone: &Zone) -> Result<(Point, Point), RangeError> {
    let mut found = None;
    for (i, _) in s.match_indices('-') {
        if let (Ok(a), Ok(b)) = (parse(&s[..i], zone), parse(&s[i + 1..], zone)) {
            if found.is_some() {
                return fail(format!(
                    "{spec:?} is ambiguous: write START-END with full dates, or START/END"
                ));
            }
            found = Some((a, b));
        }
    }
    if let Some(f) = found {
        return Ok(f);
    }
    // Name the side that fails, if the split is obvious.
    if let Some((a, b)) = s.split_once('-')
        && a.bytes().all(|c| c.is_ascii_digit())
    {
        parse(a, zone).map_err(|e| RangeError(format!("{spec:?}: start: {e}")))?;
        parse(b, zone).map_err(|e| RangeError(format!("{spec:?}: end: {e}")))?;
    }
    fail(format!(
        "{spec:?}: expected START-END or START/END, each YYmmddHHMMSS, YYYYmmddHHMMSS or \
         ISO 8601 (2024-03-01T12:00:00, optional Z or +01:00)"
    ))
}

/// An ISO 8601 duration of a `START/DURATION` or `DURATION/END` range:
/// `P1D`, `PT6H`, `P1Y2M10DT2H30M`, `P2W`, `PT0.5S`. As in JavaScript's
/// Temporal, the calendar part (years, months, weeks, days) moves the wall
/// clock of the zone (`2026-10-25/P1D` is that whole day, 25 hours where
/// DST ends that day) and the time part (hours, minutes, seconds) is
/// elapsed time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Duration {
    months: u32,
    days: u32,
    ms: i64,
}

impl Duration {
    /// `None` if `s` is not written as a duration (it does not start with
    /// `P`); otherwise the duration or why it is not one.
    fn read(s: &str) -> Option<Result<Self, RangeError>> {
        let body = s.trim().strip_prefix(['P', 'p'])?;
        let bad = |why: &str| {
            Some(fail(format!(
                "{s:?}: {why} (ISO 8601 durations: P1D, PT6H, P1Y2M10DT2H30M, P2W)"
            )))
        };
        let (date, time) = match body.split_once(['T', 't']) {
            Some((_, "")) => return bad("nothing after T"),
            Some((d, t)) => (d, Some(t)),
            None => (body, None),
        };
        if date.is_empty() && time.is_none() {
            return bad("no number");
        }
        let mut d = Self {
            months: 0,
            days: 0,
            ms: 0,
        };
        let date_parts = match duration_parts(date, &['Y', 'M', 'W', 'D']) {
            Ok(p) => p,
            Err(e) => return bad(&e),
        };
        for (unit, value, num) in date_parts {
            if num.contains(['.', ',']) {
                return bad("a fraction is allowed only in the seconds");
            }
            let n = value as u64;
            let (months, days) = match unit {
                'Y' => (n.saturating_mul(12), 0),
                'M' => (n, 0),
                'W' => (0, n.saturating_mul(7)),
                _ => (0, n),
            };
            match (
                u32::try_from(u64::from(d.months) + months),
                u32::try_from(u64::from(d.days) + days),
            ) {
                (Ok(m), Ok(dd)) if m <= 12 * 10_000 && dd <= 3_660_000 => {
                    (d.months, d.days) = (m, dd)
                }
                _ => return bad("too long"),
            }
        }
        if let Some(time) = time {
            let time_parts = match duration_parts(time, &['H', 'M', 'S']) {
                Ok(p) => p,
                Err(e) => return bad(&e),
            };
            for (unit, value, num) in time_parts {
                if unit != 'S' && num.contains(['.', ',']) {
                    return bad("a fraction is allowed only in the seconds");
                }
                let per = match unit {
                    'H' => 3_600_000.0,
                    'M' => 60_000.0,
                    _ => 1_000.0,
                };
                let ms = (value * per).round();
                if !(0.0..=1e14).contains(&(d.ms as f64 + ms)) {
                    return bad("too long");
                }
                d.ms += ms as i64;
            }
        }
        Some(Ok(d))
    }

    /// `p` moved by this duration (`sign` 1) or back by it (-1).
    fn add_to(self, p: Point, sign: i64, zone: &Zone) -> Result<Point, RangeError> {
        let mut q = p;
        if self.months > 0 || self.days > 0 {
            let wall = zone.local_at(p.ms);
            let months = chrono::Months::new(self.months);
            let days = chrono::Days::new(u64::from(self.days));
            let moved = if sign > 0 {
                wall.checked_add_months(months)
                    .and_then(|t| t.checked_add_days(days))
            } else {
                wall.checked_sub_months(months)
                    .and_then(|t| t.checked_sub_days(days))
            };
            q = local(
                moved.ok_or_else(|| RangeError("out of the range of dates".into()))?,
                zone,
            );
        }
        q.ms += sign * self.ms;
        Ok(q)
    }
}

/// The `NUMBER UNIT` parts of one half of an ISO 8601 duration, each unit
/// at most once and in the order of `units`.
fn duration_parts<'a>(text: &'a str, units: &[char]) -> Result<Vec<(char, f64, &'a str)>, String> {
    let mut out = Vec::new();
    let (mut rest, mut next) = (text, 0);
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .ok_or("a number without its unit")?;
        if end == 0 {
            return Err(format!("a unit without its number in {text:?}"));
        }
        let (num, unit) = (&rest[..end], rest[end..].chars().next().unwrap_or(' '));
        let upper = unit.to_ascii_uppercase();
        let at = units
            .get(next..)
            .unwrap_or_default()
            .iter()
            .position(|&u| u == upper)
            .ok_or(format!("unit {unit:?} out of place"))?;
        next += at + 1;
        let value: f64 = num
            .replace(',', ".")
            .parse()
            .map_err(|_| format!("{num:?} is not a number"))?;
        out.push((upper, value, num));
        rest = &rest[end + unit.len_utf8()..];
    }
    Ok(out)
}

/// A point read: its instant, and whether it was a wall-clock time in a gap.
#[derive(Debug, Clone, Copy)]
struct Point {
    ms: i64,
    in_gap: bool,
}

fn parse(s: &str, zone: &Zone) -> Result<Point, RangeError> {
    let s = s.trim();
    if s.is_empty() {
        return fail("empty time".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let fmt = match s.len() {
            12 => "%y%m%d%H%M%S",
            14 => "%Y%m%d%H%M%S",
            n => {
                return fail(format!(
                    "{s:?}: {n} digits; use YYmmddHHMMSS (12) or YYYYmmddHHMMSS (14)"
                ));
            }
        };
        let t = NaiveDateTime::parse_from_str(s, fmt)
            .map_err(|_| RangeError(format!("{s:?} is not a valid date and time")))?;
        return Ok(local(t, zone));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Point {
            ms: t.timestamp_millis(),
            in_gap: false,
        });
    }
    let (wall, offset) = split_offset(s);
    let naive = parse_naive(wall).ok_or_else(|| {
        RangeError(format!(
            "cannot read {s:?} as a time (use 2024-05-01T12:00:00, 20240501120000 or 240501120000)"
        ))
    })?;
    Ok(match offset {
        Some(off) => Point {
            ms: naive.and_utc().timestamp_millis() - i64::from(off) * 1000,
            in_gap: false,
        },
        None => local(naive, zone),
    })
}

/// Wall-clock time in `zone`: a time in a DST gap is the gap's end, a time
/// that exists twice its first occurrence.
fn local(t: NaiveDateTime, zone: &Zone) -> Point {
    let (ms, fold) = zone.to_utc_ms(t, None);
    match (fold, zone) {
        (Fold::Gap, Zone::Iana(tz)) => Point {
            ms: gap_end(tz, ms),
            in_gap: true,
        },
        (Fold::Later, Zone::Iana(tz)) => Point {
            // With no line before it, an overlap reads as its first occurrence.
            ms: tz
                .from_local_datetime(&t)
                .earliest()
                .map_or(ms, |d| d.timestamp_millis()),
            in_gap: false,
        },
        _ => Point { ms, in_gap: false },
    }
}

/// The instant a DST gap ends: the first instant at or after `before_gap`
/// (a time in the gap read with the offset before it, which is never
/// earlier than the transition) whose offset is the one after the gap,
/// searched back to the transition.
fn gap_end(tz: &Tz, read_before: i64) -> i64 {
    let offset_at = |ms: i64| {
        DateTime::from_timestamp_millis(ms).map(|d| {
            tz.offset_from_utc_datetime(&d.naive_utc())
                .fix()
                .local_minus_utc()
        })
    };
    let Some(after) = offset_at(read_before) else {
        return read_before;
    };
    // The transition is at most a day before (gaps are shorter than that):
    // find the first instant with the post-gap offset.
    let (mut lo, mut hi) = (read_before - 86_400_000, read_before);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(mid) == Some(after) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
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

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Zone {
        Zone::parse("UTC").unwrap()
    }

    fn berlin() -> Zone {
        Zone::parse("Europe/Berlin").unwrap()
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
        let (a, b) = parse_range("2024-07-01T12:00:00-2024-07-01T13:00:00Z", &berlin()).unwrap();
        assert_eq!(a, ms("2024-07-01T10:00:00Z"));
        assert_eq!(b, ms("2024-07-01T13:00:00Z"));
        let (a, b) = parse_range("2024-07-01T12:00-05:00-2024-07-02", &utc()).unwrap();
        assert_eq!(a, ms("2024-07-01T17:00:00Z"));
        assert_eq!(b, ms("2024-07-02T00:00:00Z"));
        let (a, _) = parse_range("2024-07-01 12:00:00.5+0200-2024-07-02", &utc()).unwrap();
        assert_eq!(a, ms("2024-07-01T10:00:00.5Z"));
        assert_eq!(
            parse_point("1970-01-01T00:00:01Z", &berlin()).unwrap(),
            1000
        );
    }

    #[test]
    fn iso_interval_of_dates_is_whole_days_in_the_zone() {
        let (a, b) = parse_range("2026-10-25/2026-10-26", &berlin()).unwrap();
        // 25 hours: Berlin falls back that night.
        assert_eq!(a, ms("2026-10-24T22:00:00Z"));
        assert_eq!(b, ms("2026-10-25T23:00:00Z"));
        let (a, b) = parse_range("2024-03-01T10:00Z/2024-03-01T11:00Z", &berlin()).unwrap();
        assert_eq!(b - a, 3_600_000);
        let e = parse_range("2026-10-25/yesterday", &utc()).unwrap_err();
        assert!(e.to_string().contains("end"), "{e}");
    }

    #[test]
    fn iso_intervals_with_a_duration() {
        // The calendar part moves the wall clock: the whole day, 25 hours.
        let day = parse_range("2026-10-25/P1D", &berlin()).unwrap();
        assert_eq!(
            day,
            parse_range("2026-10-25/2026-10-26", &berlin()).unwrap()
        );
        assert_eq!(day, parse_range("P1D/2026-10-26", &berlin()).unwrap());
        // The time part is elapsed time: 24 hours, not to the next midnight.
        let (a, b) = parse_range("2026-10-25/PT24H", &berlin()).unwrap();
        assert_eq!((a, b), (day.0, day.0 + 24 * 3_600_000));
        for (spec, end) in [
            ("2024-01-31T10:00Z/P1M", "2024-02-29T10:00:00Z"),
            ("2024-02-29/P1Y", "2025-02-28T00:00:00Z"),
            ("2024-03-01T10:00Z/P1Y2M10DT2H30M", "2025-05-11T12:30:00Z"),
            ("2024-03-01T10:00Z/P2W", "2024-03-15T10:00:00Z"),
            ("2024-03-01T10:00Z/PT0.5S", "2024-03-01T10:00:00.500Z"),
            ("2024-03-01T10:00Z/pt1,5s", "2024-03-01T10:00:01.500Z"),
        ] {
            assert_eq!(parse_range(spec, &utc()).unwrap().1, ms(end), "{spec}");
        }
        let (a, b) = parse_range("PT90M/2024-03-01T10:00Z", &utc()).unwrap();
        assert_eq!(
            (a, b),
            (ms("2024-03-01T08:30:00Z"), ms("2024-03-01T10:00:00Z"))
        );
        for (bad, why) in [
            ("2024-03-01/P", "no number"),
            ("2024-03-01/PT", "nothing after T"),
            ("2024-03-01/P1H", "out of place"),
            ("2024-03-01/PT1D", "out of place"),
            ("2024-03-01/P1D1M", "out of place"),
            ("2024-03-01/P1.5D", "fraction"),
            ("2024-03-01/PT1.5M", "fraction"),
            ("2024-03-01/P1", "without its unit"),
            ("2024-03-01/PD", "without its number"),
            ("P1D/P2D", "both sides"),
            ("2024-03-01/P99999999Y", "too long"),
            ("2024-03-01/PT0S", "not before"),
            ("yesterday/P1D", "start"),
        ] {
            let e = parse_range(bad, &utc()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_time_in_the_spring_gap_is_the_gap_end() {
        // 2026-03-29 02:00-03:00 does not exist in Berlin; 03:00 CEST = 01:00Z.
        let (a, b) = parse_range("260329020000-260329030000", &berlin()).unwrap();
        assert_eq!(
            (a, b),
            (ms("2026-03-29T01:00:00Z"), ms("2026-03-29T01:00:00Z"))
        );
        let (a, b) = parse_range("260329023000-260329040000", &berlin()).unwrap();
        assert_eq!(a, ms("2026-03-29T01:00:00Z"));
        assert_eq!(b, ms("2026-03-29T02:00:00Z"));
        // New York's gap starts at 02:00 EST and ends at 03:00 EDT = 07:00Z.
        let ny = Zone::parse("America/New_York").unwrap();
        assert_eq!(
            parse_point("2024-03-10T02:15", &ny).unwrap(),
            ms("2024-03-10T07:00:00Z")
        );
        // A time that exists twice is its first occurrence.
        assert_eq!(
            parse_point("2026-10-25T02:30", &berlin()).unwrap(),
            ms("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "20050615000000-20050614000000",
            "20050615000000-20050615000000",
            "yesterday-today",
            "2005061500000-20050616000000",
            "20051315000000-20051316000000",
            "2005-06-15/2005-06-15",
        ] {
            assert!(parse_range(bad, &utc()).is_err(), "{bad}");
        }
        let e = parse_range("20050615000000-20050614000000", &utc()).unwrap_err();
        assert!(e.to_string().contains("not before"), "{e}");
    }
}
