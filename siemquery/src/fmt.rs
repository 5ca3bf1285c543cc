//! Byte-level formatting for the export writers, producing exactly what
//! `serde_json` and chrono produced before (the writers' tests and the e2e
//! tests compare bytes): JSON strings escaped as `serde_json` escapes them,
//! integers, RFC 3339 UTC times with milliseconds, and embedded JSON copied
//! through when `serde_json` would write it back unchanged.

use chrono::{DateTime, SecondsFormat, Utc};

/// `s` as a JSON string, quotes included, escaped as `serde_json` does.
pub use siemstress_common::json::push_str as push_json_str;

/// Decimal digits of `v` (as `i64::to_string`).
pub fn push_int(buf: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = tmp.len();
    while n >= 100 {
        let k = 2 * (n % 100) as usize;
        n /= 100;
        i -= 2;
        tmp[i] = PAIRS[k];
        tmp[i + 1] = PAIRS[k + 1];
    }
    if n >= 10 {
        let k = 2 * n as usize;
        i -= 2;
        tmp[i] = PAIRS[k];
        tmp[i + 1] = PAIRS[k + 1];
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// First ms of year 10000: below it (and from 0 on) the fast path applies.
const FAST_TIME_END: i64 = 253_402_300_800_000;

/// `2024-03-01T12:00:00.000Z` (chrono's `to_rfc3339_opts(Millis, true)`,
/// and the epoch for an instant chrono cannot represent).
pub fn push_rfc3339_utc(buf: &mut Vec<u8>, ms: i64) {
    Rfc3339::default().push(buf, ms);
}

/// Formats times as [`push_rfc3339_utc`], keeping the dates of the last two
/// days seen (rows come in time order, and a row's `ts` and `received` are
/// often on two different days).
pub struct Rfc3339 {
    /// Days since the epoch and `YYYY-MM-DDT`, most recent first (day -1: none).
    dates: [(i64, [u8; 11]); 2],
}

impl Default for Rfc3339 {
    fn default() -> Self {
        Self {
            dates: [(-1, *b"0000-00-00T"); 2],
        }
    }
}

impl Rfc3339 {
    pub fn push(&mut self, buf: &mut Vec<u8>, ms: i64) {
        if !(0..FAST_TIME_END).contains(&ms) {
            let t = DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            buf.extend_from_slice(t.as_bytes());
            return;
        }
        let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
        if self.dates[0].0 != days {
            if self.dates[1].0 == days {
                self.dates.swap(0, 1);
            } else {
                self.dates[1] = self.dates[0];
                self.dates[0] = (days, civil_date(days));
            }
        }
        let (secs, milli) = (ms_of_day / 1000, ms_of_day % 1000);
        let mut t = *b"00:00:00.000Z";
        t[0..2].copy_from_slice(&two(secs / 3600));
        t[3..5].copy_from_slice(&two(secs / 60 % 60));
        t[6..8].copy_from_slice(&two(secs % 60));
        t[9] = b'0' + (milli / 100) as u8;
        t[10..12].copy_from_slice(&two(milli % 100));
        buf.extend_from_slice(&self.dates[0].1);
        buf.extend_from_slice(&t);
    }
}

/// `YYYY-MM-DDT` of a day since 1970-01-01 (0 to the end of year 9999),
/// by H. Hinnant's civil-from-days algorithm.
fn civil_date(days: i64) -> [u8; 11] {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut d = *b"0000-00-00T";
    d[0..2].copy_from_slice(&two(year / 100));
    d[2..4].copy_from_slice(&two(year % 100));
    d[5..7].copy_from_slice(&two(month));
    d[8..10].copy_from_slice(&two(day));
    d
}

/// Two digits of `v` (0 to 99).
#[inline]
fn two(v: i64) -> [u8; 2] {
    let i = 2 * (v as usize).min(99);
    [PAIRS[i], PAIRS[i + 1]]
}

/// "00" to "99".
static PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Text holding JSON, embedded as `serde_json` re-serializes it (compact,
/// keys sorted), or as a JSON string when it is not valid JSON. `last` is
/// the previous text found canonical (rows often repeat it): kept up to date.
pub fn push_embedded_json(buf: &mut Vec<u8>, s: &str, last: &mut Vec<u8>) {
    if s.as_bytes() == last.as_slice() || is_canonical(s.as_bytes()) {
        if s.as_bytes() != last.as_slice() {
            last.clear();
            last.extend_from_slice(s.as_bytes());
        }
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) => {
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, &v);
        }
        Err(_) => push_json_str(buf, s),
    }
}

/// True if `serde_json::to_string(&serde_json::from_str::<Value>(s)?)` is
/// `s` itself: no whitespace, object keys strictly ascending and without
/// escapes, strings escaped as serde_json writes them, integers only (within
/// i64/u64), at most 64 levels. Anything else takes the slow path (false
/// negatives are fine, false positives are not).
fn is_canonical(s: &[u8]) -> bool {
    let mut c = Canon { s, i: 0 };
    c.value(0) && c.i == s.len()
}

struct Canon<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Canon<'a> {
    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: u32) -> bool {
        if depth > 64 {
            return false;
        }
        match self.s.get(self.i) {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn object(&mut self, depth: u32) -> bool {
        self.i += 1;
        if self.eat(b'}') {
            return true;
        }
        let mut prev: Option<&'a [u8]> = None;
        loop {
            let Some(key) = self.string() else {
                return false;
            };
            if key.contains(&b'\\') || prev.is_some_and(|p| p >= key) {
                return false;
            }
            prev = Some(key);
            if !self.eat(b':') || !self.value(depth) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b'}');
            }
        }
    }

    fn array(&mut self, depth: u32) -> bool {
        self.i += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b']');
            }
        }
    }

    /// A string as serde_json writes it; returns its content between the quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return Some(&self.s[start..self.i - 1]),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4)?;
                            self.i += 4;
                            let lower = |h: u8| match h {
                                b'0'..=b'9' => Some(h - b'0'),
                                b'a'..=b'f' => Some(h - b'a' + 10),
                                _ => None,
                            };
                            let v = lower(hex[2])? << 4 | lower(hex[3])?;
                            if &hex[..2] != b"00" || !siemstress_common::json::escapes_as_u(v) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    fn integer(&mut self) -> bool {
        let start = self.i;
        self.eat(b'-');
        let digits = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let d = &self.s[digits..self.i];
        if d.is_empty() || (d[0] == b'0' && (d.len() > 1 || digits > start)) {
            return false; // no digits, a leading zero, or -0
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("x");
        if digits > start {
            text.parse::<i64>().is_ok()
        } else {
            text.parse::<u64>().is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_str(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    #[test]
    fn strings_escape_as_serde_json() {
        let mut all = String::new();
        for c in (0u8..0x80).map(char::from) {
            all.push(c);
        }
        let cases = [
            String::new(),
            "plain text, longer than eight bytes".into(),
            all.clone(),
            all.repeat(3),
            "é ü 日本 \u{7f} \u{2028} \"quoted\" back\\slash".into(),
            "1234567\"".into(),
            "12345678\u{1}abcdefgh\\".into(),
            "\"\"\"\"\"\"\"\"\"".into(),
        ];
        for s in cases {
            let mut buf = Vec::new();
            push_json_str(&mut buf, &s);
            assert_eq!(String::from_utf8(buf).unwrap(), serde_str(&s), "{s:?}");
        }
        // Every ASCII byte at every offset of a 16-byte block, an 8-byte
        // word and the tail, alone and after another escape; non-ASCII too.
        for c in (0u8..0x80).map(char::from).chain(['é', '日', '\u{7f}']) {
            for pad in 0..40 {
                let s = format!("{}{c}{}", "a".repeat(pad), "b".repeat(39 - pad));
                let mut buf = Vec::new();
                push_json_str(&mut buf, &s);
                assert_eq!(String::from_utf8(buf).unwrap(), serde_str(&s));
                let s = format!("\"{}{c}{c}{}", "é".repeat(pad / 2), "b".repeat(pad % 7));
                let mut buf = Vec::new();
                push_json_str(&mut buf, &s);
                assert_eq!(String::from_utf8(buf).unwrap(), serde_str(&s));
            }
        }
    }

    #[test]
    fn integers() {
        let mut cases = vec![
            0,
            1,
            -1,
            9,
            10,
            99,
            100,
            101,
            4242,
            -987_654_321,
            i64::MAX,
            i64::MIN,
        ];
        let mut p: i64 = 1;
        while let Some(q) = p.checked_mul(10) {
            cases.extend([p - 1, p, p + 1, -p, 1 - p]);
            p = q;
        }
        for v in cases {
            let mut buf = Vec::new();
            push_int(&mut buf, v);
            assert_eq!(String::from_utf8(buf).unwrap(), v.to_string());
        }
    }

    fn chrono_rfc3339(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    #[test]
    fn times_as_chrono() {
        let mut cases = vec![
            0,
            1,
            999,
            86_399_999,
            86_400_000,
            951_782_400_000, // 2000-02-29
            951_868_799_999,
            4_107_542_400_000, // 2100-03-01
            FAST_TIME_END - 1,
            FAST_TIME_END,
            -1,
            -86_400_001,
            i64::MAX,
            i64::MIN,
        ];
        // Every day from 1969 to 2101 at a varying time of day, and a spread beyond.
        let mut ms = -86_400_000 * 400;
        while ms < 4_200_000_000_000 {
            cases.push(ms);
            ms += 86_400_000 + 3_723_456;
        }
        let mut x: i64 = 0x1234_5678;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            cases.push(x.rem_euclid(FAST_TIME_END + 1000));
        }
        let mut cached = Rfc3339::default();
        for ms in cases {
            let mut buf = Vec::new();
            push_rfc3339_utc(&mut buf, ms);
            assert_eq!(String::from_utf8(buf).unwrap(), chrono_rfc3339(ms), "{ms}");
            let other = ms.saturating_add(7 * 86_400_000);
            for ms in [
                ms,
                other,
                ms.saturating_add(1),
                other,
                ms.saturating_add(86_399_999),
            ] {
                let mut buf = Vec::new();
                cached.push(&mut buf, ms);
                assert_eq!(String::from_utf8(buf).unwrap(), chrono_rfc3339(ms), "{ms}");
            }
        }
    }

    fn serde_embedded(s: &str) -> String {
        let v = serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::from(s));
        serde_json::to_string(&v).unwrap()
    }

    #[test]
    fn embedded_json_as_serde_json() {
        let deep_ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let cases = [
            r#"{"tz":"+0000","year_flag":"2025"}"#,
            r#"{"year_flag":"2025","tz":"+0000"}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"b":1,"a":{"d":[1,2,{"z":null,"y":true}],"c":false}}"#,
            r#"{"a":[],"b":{},"c":[{}],"d":""}"#,
            r#"{ "a": 1 }"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":0}"#,
            r#"{"a":-12}"#,
            r#"{"a":01}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"é"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u001f\u0001\b\f\n\r\t\"\\"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u0008"}"#,
            r#"{"a":"\u0000"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"\u0061":1}"#,
            r#"{"a\"b":1,"a":2}"#,
            "{\"a\":\"x\ty\"}",
            r#""just a string""#,
            "42",
            "-7",
            "true",
            "null",
            "[1,2,3]",
            " [1]",
            "[1] ",
            "not json",
            "",
            "{",
            r#"{"a":1,}"#,
            r#"{"a":tru}"#,
            r#"{"Z":1,"a":2,"é":3}"#,
            r#"{"é":3,"a":2}"#,
            &deep_ok,
            &deep,
        ];
        let mut last = Vec::new();
        for s in cases.iter().chain(cases.iter().rev()) {
            let mut buf = Vec::new();
            push_embedded_json(&mut buf, s, &mut last);
            assert_eq!(String::from_utf8(buf).unwrap(), serde_embedded(s), "{s:?}");
            let mut again = Vec::new();
            push_embedded_json(&mut again, s, &mut last);
            assert_eq!(
                String::from_utf8(again).unwrap(),
                serde_embedded(s),
                "{s:?}"
            );
            if is_canonical(s.as_bytes()) {
                assert_eq!(serde_embedded(s), *s, "canonical but changed: {s:?}");
            }
        }
        assert!(is_canonical(br#"{"tz":"+0000","year_flag":"2025"}"#));
    }
}
