//! Time handling: wall-clock zones (fixed offsets or IANA names), conversion of
//! local syslog times to UTC epoch milliseconds with explicit DST rules, year
//! inference for RFC3164 lines, and duration parsing.
//!
//! DST rules, chosen so that a log read in order stays in order:
//! - a local time in a spring-forward gap does not exist on the wall clock; it
//!   is read with the offset in force just before the gap (02:30 in Berlin on
//!   the last Sunday of March is 01:30 UTC, as if the clock had not moved yet);
//! - a local time in a fall-back overlap exists twice; the instant nearest to
//!   the previous line of the same input is taken (the earlier one for a first
//!   line or a tie), so a log that runs through the repeated hour stays in order
//!   and a line a little out of order stays in its pass.

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::Error;

/// A wall-clock zone for timestamps that carry no offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// A fixed offset such as `+0500`.
    Fixed(FixedOffset),
    /// An IANA zone such as `Europe/Berlin`, with its DST rules.
    Iana(Tz),
}

/// How a local time was mapped to UTC, for the audit trail in `extra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// The local time existed once.
    Unique,
    /// The local time fell into a DST gap; the pre-gap offset was used.
    Gap,
    /// The local time existed twice; the earlier instant was taken.
    Earlier,
    /// The local time existed twice; the later instant was taken.
    Later,
}

impl Fold {
    /// Name recorded in `extra.tz_fold`, or `None` for the common case.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Fold::Unique => None,
            Fold::Gap => Some("gap"),
            Fold::Earlier => Some("earlier"),
            Fold::Later => Some("later"),
        }
    }
}

impl Zone {
    /// Parses `+0500`, `-03:30`, `UTC`, `Z` or an IANA name; `local` is the system zone.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let s = spec.trim();
        if s.eq_ignore_ascii_case("local") {
            return Ok(Self::local());
        }
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset")));
        }
        if let Some(off) = parse_offset(s) {
            return Ok(Zone::Fixed(off));
        }
        s.parse::<Tz>()
            .map(Zone::Iana)
            .map_err(|_| Error::BadZone(spec.to_owned()))
    }

    /// The system's zone: `$TZ`, then `/etc/localtime`, else UTC.
    pub fn local() -> Self {
        let name = std::env::var("TZ")
            .ok()
            .map(|t| t.trim_start_matches(':').to_owned())
            .filter(|t| !t.is_empty())
            .or_else(|| {
                std::fs::read_link("/etc/localtime").ok().and_then(|p| {
                    let p = p.to_string_lossy().into_owned();
                    p.split_once("zoneinfo/").map(|(_, z)| z.to_owned())
                })
            })
            .or_else(|| {
                std::fs::read_to_string("/etc/timezone")
                    .ok()
                    .map(|s| s.trim().to_owned())
            });
        name.and_then(|n| Zone::parse(&n).ok())
            .unwrap_or(Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset")))
    }

    /// Name recorded in `extra.tz` and shown to users.
    pub fn name(&self) -> String {
        match self {
            Zone::Fixed(off) => {
                let secs = off.local_minus_utc();
                let sign = if secs < 0 { '-' } else { '+' };
                let secs = secs.abs();
                format!("{sign}{:02}{:02}", secs / 3600, secs % 3600 / 60)
            }
            Zone::Iana(tz) => tz.name().to_owned(),
        }
    }

    /// Maps a wall-clock time to UTC epoch ms; `previous` (epoch ms of the
    /// previous line) picks between the two instants of an overlap.
    pub fn to_utc_ms(&self, local: NaiveDateTime, previous: Option<i64>) -> (i64, Fold) {
        match self {
            Zone::Fixed(off) => (
                local.and_utc().timestamp_millis() - i64::from(off.local_minus_utc()) * 1000,
                Fold::Unique,
            ),
            Zone::Iana(tz) => resolve(tz, local, previous),
        }
    }

    /// The wall-clock time in this zone at epoch-ms instant `ms`.
    pub fn local_at(&self, ms: i64) -> NaiveDateTime {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        match self {
            Zone::Fixed(off) => utc.with_timezone(off).naive_local(),
            Zone::Iana(tz) => utc.with_timezone(tz).naive_local(),
        }
    }

    /// Renders an epoch-ms instant in this zone as RFC 3339.
    pub fn format_ms(&self, ms: i64) -> String {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        match self {
            Zone::Fixed(off) => utc.with_timezone(off).to_rfc3339(),
            Zone::Iana(tz) => utc.with_timezone(tz).to_rfc3339(),
        }
    }
}

fn resolve(tz: &Tz, local: NaiveDateTime, previous: Option<i64>) -> (i64, Fold) {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => (t.timestamp_millis(), Fold::Unique),
        LocalResult::Ambiguous(early, late) => {
            let (e, l) = (early.timestamp_millis(), late.timestamp_millis());
            match previous {
                Some(prev) if (l - prev).abs() < (e - prev).abs() => (l, Fold::Later),
                _ => (e, Fold::Earlier),
            }
        }
        LocalResult::None => {
            // The offset in force before the gap is the one an hour earlier.
            let before = local - chrono::Duration::hours(3);
            let off = tz
                .offset_from_local_datetime(&before)
                .earliest()
                .map(|o| o.fix().local_minus_utc())
                .unwrap_or(0);
            (
                local.and_utc().timestamp_millis() - i64::from(off) * 1000,
                Fold::Gap,
            )
        }
    }
}

/// Parses `+0500`, `-0330`, `+05:00`, `+05`.
pub fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Year for a month/day without a year: of the years around `reference`,
/// the one that puts the date nearest to it, but never more than a month
/// (31 days) after it. A January line read on December 31 is next year's
/// (clock skew at New Year); a December line read in January is last year's.
pub fn infer_year(reference: NaiveDateTime, month: u32, day: u32, hms: (u32, u32, u32)) -> i32 {
    let latest = reference + chrono::Duration::days(31);
    nearest_year(reference, [-1, 0, 1], month, day, hms, |t| t <= latest)
}

/// Year under `--year first` for the line after one at `previous`: the
/// year around the previous line's that puts the line nearest to it, never
/// before `first` nor more than a month before `previous`. A log that runs
/// from December 31 into January 1 moves on to the next year (a month going
/// backwards is the next year's); a line a little out of order at New Year
/// stays beside its neighbours.
pub fn next_year(
    previous: NaiveDateTime,
    first: i32,
    month: u32,
    day: u32,
    hms: (u32, u32, u32),
) -> i32 {
    let month_back = previous - chrono::Duration::days(31);
    nearest_year(previous, [-1, 0, 1], month, day, hms, |t| {
        t.year() >= first && t >= month_back
    })
}

/// Of `reference`'s year plus each of `offsets`, the year whose date is
/// nearest to `reference` among those `allowed` (the first on a tie).
fn nearest_year<const N: usize>(
    reference: NaiveDateTime,
    offsets: [i32; N],
    month: u32,
    day: u32,
    hms: (u32, u32, u32),
    allowed: impl Fn(NaiveDateTime) -> bool,
) -> i32 {
    let base = reference.year();
    let date_in = |y: i32| {
        // Feb 29 of a common year: measured as Feb 28 (the parse decides).
        let date = chrono::NaiveDate::from_ymd_opt(y, month, day)
            .or_else(|| chrono::NaiveDate::from_ymd_opt(y, month, 28))?;
        date.and_hms_opt(hms.0, hms.1, hms.2)
    };
    // Nearly every line (this runs for each): the date in the reference's
    // own year, allowed and within 150 days of it, is the nearest, as the
    // same date in another year is at least 364 days from it.
    if let Some(t) = date_in(base)
        && allowed(t)
        && (t - reference).num_days().abs() < NEAR_DAYS
    {
        return base;
    }
    offsets
        .iter()
        .map(|off| base + off)
        .filter_map(|y| {
            let t = date_in(y)?;
            allowed(t).then(|| (y, (t - reference).num_seconds().abs()))
        })
        .min_by_key(|&(_, distance)| distance)
        .map_or(base, |(y, _)| y)
}

/// Days within which the date in the reference's year is surely the nearest
/// (less than half the 364 days between the same date in two years).
const NEAR_DAYS: i64 = 150;

/// Parses a duration such as `5m`, `6h`, `2d`, `1w`, `90s`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, Error> {
    humantime::parse_duration(s.trim()).map_err(|e| Error::BadDuration {
        value: s.to_owned(),
        reason: e.to_string(),
    })
}

/// Epoch ms as RFC 3339 in UTC, to the second (`2026-12-06T17:00:00Z`), for messages.
pub fn rfc3339_utc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Current time as UTC epoch milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Epoch ms as RFC 3339 UTC, as siemtrigger's messages and the alerts'
/// JSON show times (`2024-05-01T10:00:00Z`; a fraction only when there is one).
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Serializes an epoch-ms field as [`rfc3339`]
/// (`#[serde(serialize_with = "crate::time::serialize_rfc3339")]`).
pub fn serialize_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// The years around the reference compared one by one, as before the
    /// shortcut for dates near it.
    fn nearest_year_of_three(
        reference: NaiveDateTime,
        month: u32,
        day: u32,
        hms: (u32, u32, u32),
        allowed: impl Fn(NaiveDateTime) -> bool,
    ) -> i32 {
        let base = reference.year();
        [-1, 0, 1]
            .iter()
            .map(|off| base + off)
            .filter_map(|y| {
                let date = NaiveDate::from_ymd_opt(y, month, day)
                    .or_else(|| NaiveDate::from_ymd_opt(y, month, 28))?;
                let t = date.and_hms_opt(hms.0, hms.1, hms.2)?;
                allowed(t).then(|| (y, (t - reference).num_seconds().abs()))
            })
            .min_by_key(|&(_, distance)| distance)
            .map_or(base, |(y, _)| y)
    }

    #[test]
    fn nearby_dates_give_the_year_of_the_three_compared() {
        // References every 7 days and 5 hours over a leap year and its
        // neighbours, against every day of the year and odd times.
        let mut reference = at(2023, 1, 1, 0, 0);
        let mut checked = 0;
        while reference < at(2026, 1, 1, 0, 0) {
            for month in 1..=12 {
                for day in 1..=31 {
                    for hms in [(0, 0, 0), (23, 59, 59), (24, 0, 0)] {
                        let latest = reference + chrono::Duration::days(31);
                        assert_eq!(
                            infer_year(reference, month, day, hms),
                            nearest_year_of_three(reference, month, day, hms, |t| t <= latest),
                            "infer_year {reference} {month}-{day} {hms:?}"
                        );
                        let back = reference - chrono::Duration::days(31);
                        for first in [2022, 2024, 2026] {
                            assert_eq!(
                                next_year(reference, first, month, day, hms),
                                nearest_year_of_three(reference, month, day, hms, |t| {
                                    t.year() >= first && t >= back
                                }),
                                "next_year {reference} {first} {month}-{day} {hms:?}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
            reference += chrono::Duration::hours(7 * 24 + 5);
        }
        assert!(checked > 100_000, "{checked}");
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn utc(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn berlin_gap_uses_pre_gap_offset() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        let (ms, fold) = z.to_utc_ms(at(2024, 3, 31, 2, 30), None);
        assert_eq!(fold, Fold::Gap);
        assert_eq!(utc(ms), "2024-03-31T01:30:00+00:00");
        let (ms, _) = z.to_utc_ms(at(2024, 3, 31, 3, 0), None);
        assert_eq!(utc(ms), "2024-03-31T01:00:00+00:00");
    }

    #[test]
    fn berlin_overlap_stays_monotonic() {
        let z = Zone::parse("Europe/Berlin").unwrap();
        let (first, f1) = z.to_utc_ms(at(2024, 10, 27, 2, 59), None);
        assert_eq!(
            (utc(first).as_str(), f1),
            ("2024-10-27T00:59:00+00:00", Fold::Earlier)
        );
        let (second, f2) = z.to_utc_ms(at(2024, 10, 27, 2, 0), Some(first));
        assert_eq!(
            (utc(second).as_str(), f2),
            ("2024-10-27T01:00:00+00:00", Fold::Later)
        );
    }

    #[test]
    fn new_york_gap_and_overlap() {
        let z = Zone::parse("America/New_York").unwrap();
        let (ms, fold) = z.to_utc_ms(at(2024, 3, 10, 2, 15), None);
        assert_eq!(
            (utc(ms).as_str(), fold),
            ("2024-03-10T07:15:00+00:00", Fold::Gap)
        );
        let (ms, fold) = z.to_utc_ms(at(2024, 11, 3, 1, 30), None);
        assert_eq!(
            (utc(ms).as_str(), fold),
            ("2024-11-03T05:30:00+00:00", Fold::Earlier)
        );
        // 20 minutes back (a late line) is nearer than 40 minutes ahead.
        let (ms2, fold) = z.to_utc_ms(at(2024, 11, 3, 1, 10), Some(ms));
        assert_eq!(
            (utc(ms2).as_str(), fold),
            ("2024-11-03T05:10:00+00:00", Fold::Earlier)
        );
        let (last, _) = z.to_utc_ms(at(2024, 11, 3, 1, 59), Some(ms));
        let (ms3, fold) = z.to_utc_ms(at(2024, 11, 3, 1, 1), Some(last));
        assert_eq!(
            (utc(ms3).as_str(), fold),
            ("2024-11-03T06:01:00+00:00", Fold::Later)
        );
    }

    #[test]
    fn fixed_east_of_utc() {
        let z = Zone::parse("+0530").unwrap();
        assert_eq!(z.name(), "+0530");
        let (ms, _) = z.to_utc_ms(at(2024, 1, 1, 5, 30), None);
        assert_eq!(utc(ms), "2024-01-01T00:00:00+00:00");
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("+2500").is_err());
    }

    #[test]
    fn year_rolls_back_for_december_in_january() {
        let reference = at(2025, 1, 3, 10, 0);
        assert_eq!(infer_year(reference, 12, 31, (23, 59, 0)), 2024);
        assert_eq!(infer_year(reference, 1, 3, (9, 0, 0)), 2025);
        // Up to a month ahead (clock skew) stays in the reference year.
        assert_eq!(infer_year(reference, 2, 1, (0, 0, 0)), 2025);
        assert_eq!(infer_year(reference, 2, 5, (0, 0, 0)), 2024);
        // On December 31, early January is ahead (next year), not a year back.
        let new_year_eve = at(2026, 12, 31, 23, 59);
        assert_eq!(infer_year(new_year_eve, 1, 1, (0, 0, 5)), 2027);
        assert_eq!(infer_year(new_year_eve, 1, 3, (0, 0, 0)), 2027);
        assert_eq!(infer_year(new_year_eve, 12, 30, (0, 0, 0)), 2026);
        assert_eq!(infer_year(new_year_eve, 2, 5, (0, 0, 0)), 2026);
    }

    #[test]
    fn year_flag_moves_on_at_new_year() {
        let dec31 = at(2025, 12, 31, 23, 59);
        assert_eq!(next_year(dec31, 2025, 1, 1, (0, 0, 5)), 2026);
        assert_eq!(next_year(dec31, 2025, 12, 31, (23, 58, 0)), 2025);
        let jan1 = at(2026, 1, 1, 0, 0);
        assert_eq!(next_year(jan1, 2025, 12, 31, (23, 59, 59)), 2025);
        // Never before the --year given.
        assert_eq!(next_year(jan1, 2026, 12, 31, (23, 59, 59)), 2026);
        let mar1 = at(2025, 3, 1, 0, 0);
        assert_eq!(next_year(mar1, 2025, 2, 28, (23, 59, 59)), 2025);
        assert_eq!(next_year(mar1, 2025, 10, 1, (0, 0, 0)), 2025);
        // A month going backwards (more than a month back) is next year's.
        assert_eq!(next_year(at(2025, 8, 1, 0, 0), 2025, 2, 1, (0, 0, 0)), 2026);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("1w").unwrap().as_secs(), 7 * 86400);
        assert!(parse_duration("5 parsecs").is_err());
    }
}
