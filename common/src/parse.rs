//! Syslog line parsing: RFC3164 and RFC5424 headers (via `syslog_loose`),
//! local time to UTC with the section's zone, year inference, and field
//! extraction. A line that does not parse is still an [`Event`] (`parsed = false`).

use std::cell::Cell;
use std::sync::Arc;

use chrono::{NaiveDateTime, Utc};
use syslog_loose::{ProcId, Protocol, Variant};

use crate::decode::{Column, Decoders, Fields, Scratch};
use crate::event::Event;
use crate::structured::{Slot, Structured, TimeText, read_time};
use crate::time::{Zone, infer_year, next_year};

/// Turns raw lines into events for one input.
pub struct LineParser {
    zone: Zone,
    /// `--year`: the year of the first RFC3164 line.
    year: Option<i32>,
    /// Fixed wall-clock "now" for year inference (`--reference-time`);
    /// otherwise the time each line is received.
    reference: Option<NaiveDateTime>,
    /// Wall-clock time of the previous RFC3164 line (the year under `--year`).
    last_local: Option<NaiveDateTime>,
    /// The receive time (epoch seconds) last converted to wall-clock time, and that time.
    received_local: (i64, NaiveDateTime),
    /// Time of the previous parsed line, to resolve DST overlaps in order.
    last_ts: Option<i64>,
    source: Arc<str>,
    zone_name: String,
    /// The last year written to `extra`, and its text (formatted once).
    year_text: (i32, String),
    /// Field extraction from the message.
    decoders: Arc<Decoders>,
    /// The decoders' capture buffers, reused line after line.
    scratch: Scratch,
    /// A json or regex section's format; `None`: syslog.
    structured: Option<Arc<Structured>>,
}

impl LineParser {
    /// A parser for lines of `source` in wall-clock `zone`; `year` overrides inference.
    pub fn new(zone: Zone, year: Option<i32>, source: &str) -> Self {
        Self {
            zone,
            year,
            reference: None,
            last_local: None,
            received_local: (i64::MIN, NaiveDateTime::default()),
            last_ts: None,
            source: Arc::from(source),
            zone_name: zone.name(),
            year_text: (i32::MIN, String::new()),
            // The built-ins compile (a unit test checks them); a caller with
            // a config passes its own set with `with_decoders`.
            decoders: Decoders::builtin().unwrap_or_default(),
            scratch: Scratch::default(),
            structured: None,
        }
    }

    /// Reads lines in a json or regex format instead of syslog.
    pub fn with_format(mut self, format: Option<Arc<Structured>>) -> Self {
        self.structured = format;
        self
    }

    /// Decodes fields with `decoders` instead of the built-in set.
    pub fn with_decoders(mut self, decoders: Arc<Decoders>) -> Self {
        self.decoders = decoders;
        self.scratch = Scratch::default();
        self
    }

    /// Infers years as if every line were read at wall-clock time
    /// `reference` (tests, and imports of logs written at a known time).
    pub fn with_reference(mut self, reference: NaiveDateTime) -> Self {
        self.reference = Some(reference);
        self
    }

    /// New settings for a running input (siemparse's SIGHUP reload): the
    /// zone, the decoders and the format are replaced; the year reached
    /// under `--year` and the order of times (DST) carry on.
    pub fn reconfigure(
        &mut self,
        zone: Zone,
        decoders: Arc<Decoders>,
        format: Option<Arc<Structured>>,
    ) {
        if zone != self.zone {
            self.zone = zone;
            self.zone_name = zone.name();
            self.received_local = (i64::MIN, NaiveDateTime::default());
        }
        self.decoders = decoders;
        self.scratch = Scratch::default();
        self.structured = format;
    }

    /// Wall-clock time for year inference of a line received at `received` (epoch ms).
    fn reference_at(&mut self, received: i64) -> NaiveDateTime {
        if let Some(r) = self.reference {
            return r;
        }
        let secs = received.div_euclid(1000);
        if self.received_local.0 != secs {
            self.received_local = (secs, self.zone.local_at(secs * 1000));
        }
        self.received_local.1
    }

    /// Parses one line (without its terminator). Never fails.
    pub fn parse(&mut self, line: &[u8], received: i64) -> Event {
        // Valid UTF-8 (nearly every line) is checked by the fast validator
        // and copied; only other bytes go through the lossy conversion.
        let raw = match std::str::from_utf8(line) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(line).into_owned(),
        };
        let mut ev = Event {
            ts: received,
            received,
            source: self.source.clone(),
            ..Event::default()
        };
        match self.structured.clone() {
            Some(f) => self.fill_structured(&f, &raw, &mut ev),
            None => self.fill(&raw, &mut ev),
        }
        ev.raw = raw;
        ev
    }

    /// A line without a header (or not of the section's format): stored
    /// whole, at the time it was read; decoders for every program still run.
    fn fill_unparsed(&mut self, raw: &str, ev: &mut Event) {
        ev.message = raw.trim_end().to_owned();
        let mut extra = JsonObject::default();
        extra.field("ts_source", "received");
        // No tag to dispatch on: only decoders for every program
        // (a Cisco device's "<189>52: *Mar  1 ...: %SEC-6-..." line).
        if let Some(d) = self
            .decoders
            .decode_with(&mut self.scratch, None, &ev.message)
        {
            store_fields(ev, &mut extra, d.fields);
        }
        ev.extra = extra.finish();
    }

    /// A line of a json or regex section.
    fn fill_structured(&mut self, format: &Structured, raw: &str, ev: &mut Event) {
        let Some(parts) = format.split(raw) else {
            return self.fill_unparsed(raw, ev);
        };
        ev.parsed = true;
        let mut extra = JsonObject::default();
        match parts.get(&Slot::Ts).and_then(read_time) {
            Some(TimeText::Exact(ms)) => ev.ts = ms,
            Some(TimeText::Local(t)) => self.local_time(t, None, &mut extra, ev),
            Some(TimeText::NoYear(mo, d, h, mi, s)) => {
                let y = match (self.year, self.last_local) {
                    (Some(first), Some(prev)) => next_year(prev, first, mo, d, (h, mi, s)),
                    (Some(first), None) => first,
                    (None, _) => infer_year(self.reference_at(ev.received), mo, d, (h, mi, s)),
                };
                match chrono::NaiveDate::from_ymd_opt(y, mo, d)
                    .and_then(|d| d.and_hms_opt(h, mi, s))
                {
                    Some(t) => self.local_time(t, Some(y), &mut extra, ev),
                    None => extra.field("ts_source", "received"),
                }
            }
            None => extra.field("ts_source", "received"),
        }
        self.last_ts = Some(ev.ts);
        let mut fields = Fields::default();
        for (slot, v) in &parts.values {
            match slot {
                Slot::Ts => {}
                Slot::Host => ev.host = Some(v.clone()),
                Slot::Process => ev.process = Some(v.clone()),
                Slot::Pid => ev.pid = v.trim().parse().ok(),
                Slot::Facility => match static_name(v, &FACILITIES) {
                    Some(n) => ev.facility = Some(n),
                    None => extra.field("facility", v),
                },
                Slot::Severity => match static_name(v, &SEVERITIES) {
                    Some(n) => ev.severity = Some(n),
                    None => extra.field("severity", v),
                },
                Slot::Message => ev.message = v.trim_end().to_owned(),
                Slot::Column(c) => fields.put(*c, v),
                Slot::Extra(k) => extra.field(k, v),
            }
        }
        if parts.get(&Slot::Message).is_none() {
            ev.message = raw.trim_end().to_owned();
        }
        // Decoders fill what the format did not.
        if let Some(d) =
            self.decoders
                .decode_with(&mut self.scratch, ev.process.as_deref(), &ev.message)
        {
            let f = d.fields;
            for (c, v) in [
                (Column::User, f.user),
                (Column::SourceHost, f.source_host),
                (Column::DestHost, f.dest_host),
                (Column::Protocol, f.protocol),
                (Column::SourcePort, f.source_port.map(|p| p.to_string())),
                (Column::DestPort, f.dest_port.map(|p| p.to_string())),
            ] {
                if let Some(v) = v
                    && !fields.has(c)
                {
                    fields.put(c, &v);
                }
            }
            fields.extra = f.extra;
        }
        store_fields(ev, &mut extra, fields);
        ev.extra = extra.finish();
    }

    /// Sets `ev.ts` from a wall-clock time in the section's zone.
    fn local_time(
        &mut self,
        t: NaiveDateTime,
        year: Option<i32>,
        extra: &mut JsonObject,
        ev: &mut Event,
    ) {
        self.last_local = Some(t);
        let (ms, fold) = self.zone.to_utc_ms(t, self.last_ts);
        ev.ts = ms;
        extra.field("tz", &self.zone_name);
        if let Some(label) = fold.label() {
            extra.field("tz_fold", label);
        }
        if let Some(y) = year {
            self.year_field(y, extra);
        }
    }

    /// `year_flag` or `year_inferred` in `extra`: the year the line was given.
    fn year_field(&mut self, y: i32, extra: &mut JsonObject) {
        let how = if self.year.is_some() {
            "year_flag"
        } else {
            "year_inferred"
        };
        if self.year_text.0 != y {
            self.year_text = (y, y.to_string());
        }
        extra.field(how, &self.year_text.1);
    }

    fn fill(&mut self, raw: &str, ev: &mut Event) {
        let inferred = Cell::new(None::<i32>);
        let (year_flag, last_local) = (self.year, self.last_local);
        let reference = self.reference_at(ev.received);
        let get_year = |(mo, d, h, mi, s): (u32, u32, u32, u32, u32)| {
            let y = match (year_flag, last_local) {
                (Some(first), Some(prev)) => next_year(prev, first, mo, d, (h, mi, s)),
                (Some(first), None) => first,
                (None, _) => infer_year(reference, mo, d, (h, mi, s)),
            };
            inferred.set(Some(y));
            y
        };
        let parsed = syslog_loose::parse_message_with_year_exact_tz(
            raw,
            get_year,
            Some(Utc),
            Variant::Either,
        );
        // An RFC5424 header is recognised as a whole (its fields may all be
        // NILVALUE `-`); an RFC3164 one needs a time and a host or tag.
        let msg = match parsed {
            Ok(m)
                if matches!(m.protocol, Protocol::RFC5424(_))
                    || (m.timestamp.is_some() && (m.hostname.is_some() || m.appname.is_some())) =>
            {
                m
            }
            _ => return self.fill_unparsed(raw, ev),
        };
        // A timestamp with its own offset (RFC5424, RFC3339) is exact; a
        // bare syslog time is wall-clock time in the section's zone.
        let has_offset = matches!(msg.protocol, Protocol::RFC5424(_)) || starts_with_iso_date(raw);
        let mut extra = JsonObject::default();
        let Some(ts) = msg.timestamp else {
            // RFC5424 NILVALUE: the sender did not know the time (ev.ts = received).
            extra.field("ts_source", "received");
            return self.fill_fields(raw, msg, extra, ev);
        };
        if has_offset {
            ev.ts = ts.timestamp_millis();
        } else {
            self.last_local = Some(ts.naive_local());
            let (ms, fold) = self.zone.to_utc_ms(ts.naive_local(), self.last_ts);
            ev.ts = ms;
            extra.field("tz", &self.zone_name);
            if let Some(label) = fold.label() {
                extra.field("tz_fold", label);
            }
            if let Some(y) = inferred.get() {
                self.year_field(y, &mut extra);
            }
        }
        self.last_ts = Some(ev.ts);
        self.fill_fields(raw, msg, extra, ev);
    }

    /// Everything but the time: header fields, message, extracted fields, `extra`.
    fn fill_fields(
        &mut self,
        raw: &str,
        msg: syslog_loose::Message<&str>,
        mut extra: JsonObject,
        ev: &mut Event,
    ) {
        ev.parsed = true;
        ev.host = msg.hostname.map(str::to_owned);
        ev.process = msg.appname.map(str::to_owned);
        ev.pid = match msg.procid {
            Some(ProcId::PID(p)) => Some(i64::from(p)),
            Some(ProcId::Name(n)) => n.parse().ok(),
            None => None,
        };
        ev.facility = msg.facility.map(|f| f.as_str());
        ev.severity = msg.severity.map(|s| s.as_str());
        if let Some(id) = msg.msgid {
            extra.field("msgid", id);
        }
        if !msg.structured_data.is_empty() {
            let params: Vec<String> = msg
                .structured_data
                .iter()
                .flat_map(|sd| {
                    sd.params()
                        .map(move |(k, v)| format!("{}.{}={}", sd.id, k, v))
                })
                .collect();
            extra.array("sd", &params);
        }
        ev.message = match msg.protocol {
            // RFC5424 MSG-UTF8 starts with a BOM that marks the encoding; it is not text.
            Protocol::RFC5424(_) => msg.msg.strip_prefix('\u{feff}').unwrap_or(msg.msg),
            Protocol::RFC3164 => msg.msg,
        }
        .trim_end()
        .to_owned();
        if ev.process.is_none() {
            // syslog_loose takes only a plain word as the tag; "combo  -- root[2421]: ..."
            // (login) has a tag with spaces, which a `tag[pid]: ` form still makes clear.
            if let Some((tag, pid, text)) = msg.hostname.and_then(|h| tag_with_pid(raw, h)) {
                ev.process = Some(tag.to_owned());
                ev.pid = Some(pid);
                ev.message = text.trim_end().to_owned();
            }
        }
        if let Some(d) =
            self.decoders
                .decode_with(&mut self.scratch, ev.process.as_deref(), &ev.message)
        {
            store_fields(ev, &mut extra, d.fields);
        }
        ev.extra = extra.finish();
    }
}

/// Syslog facility names, as `syslog_loose` writes them.
/// The keys of `extra` that siemparse writes itself: how the line's time
/// was read, the header's fields without a column, the RFC 5424 structured
/// data, and what the MariaDB writer cut. A decoder capture or a format's
/// mapping may not use them: the log's text would replace the record of
/// what siemparse did (and the JSON would hold the key twice).
pub const OWN_EXTRA_KEYS: [&str; 10] = [
    "ts_source",
    "tz",
    "tz_fold",
    "year_flag",
    "year_inferred",
    "facility",
    "severity",
    "msgid",
    "sd",
    "truncated",
];

/// Why `name` cannot be an `extra` key of a decoder or a format, if it cannot.
pub fn own_extra_key(name: &str) -> Option<String> {
    OWN_EXTRA_KEYS.contains(&name).then(|| {
        format!(
            "{name:?} is a key of extra that siemparse writes itself ({}): choose another name",
            OWN_EXTRA_KEYS.join(", ")
        )
    })
}

pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
/// Syslog severity names, as `syslog_loose` writes them.
pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The static name equal to `s` (any case), for the `&'static str` columns.
fn static_name(s: &str, names: &[&'static str]) -> Option<&'static str> {
    names
        .iter()
        .copied()
        .find(|n| n.eq_ignore_ascii_case(s.trim()))
}

/// Puts decoded fields into their columns and `extra`.
fn store_fields(ev: &mut Event, extra: &mut JsonObject, f: Fields<'_>) {
    ev.user = f.user;
    ev.source_host = f.source_host;
    ev.source_port = f.source_port;
    ev.dest_host = f.dest_host;
    ev.dest_port = f.dest_port;
    ev.protocol = f.protocol;
    for (k, v) in &f.extra {
        extra.field(k, v);
    }
}

/// After `host` in `raw`: `TAG[PID]: TEXT` with any tag of up to 32
/// characters that holds no `:` or `[`.
fn tag_with_pid<'a>(raw: &'a str, host: &str) -> Option<(&'a str, i64, &'a str)> {
    let at = raw.find(host)? + host.len();
    let rest = raw[at..].trim_start();
    let open = rest.find('[')?;
    let (tag, after) = rest.split_at(open);
    let close = after.find("]: ")?;
    let pid = after[1..close].parse().ok()?;
    let ok_tag = !tag.is_empty() && tag.len() <= 32 && !tag.contains(':');
    ok_tag.then(|| (tag, pid, &after[close + 3..]))
}

/// True when the header's timestamp is ISO 8601 (after an optional `<PRI>`).
fn starts_with_iso_date(raw: &str) -> bool {
    let s = raw.trim_start();
    let s = match s.strip_prefix('<') {
        Some(rest) => rest.split_once('>').map_or(rest, |(_, after)| after),
        None => s,
    };
    s.trim_start().starts_with(|c: char| c.is_ascii_digit())
}

/// The `extra` column: a JSON object of string values, written directly
/// (this runs for every line; a serde_json map cost more than the parse).
struct JsonObject(String);

impl Default for JsonObject {
    /// Room for a line's usual fields (zone, year and a decoder's few), so
    /// that the object is not grown key by key.
    fn default() -> Self {
        Self(String::with_capacity(96))
    }
}

impl JsonObject {
    fn key(&mut self, key: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        crate::json::push_str(&mut self.0, key);
        self.0.push(':');
    }

    fn field(&mut self, key: &str, value: &str) {
        self.key(key);
        crate::json::push_str(&mut self.0, value);
    }

    fn array(&mut self, key: &str, values: &[String]) {
        self.key(key);
        self.0.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            crate::json::push_str(&mut self.0, v);
        }
        self.0.push(']');
    }

    fn finish(mut self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        self.0.push('}');
        Some(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate};

    fn parser(zone: &str, y: i32, m: u32, d: u32) -> LineParser {
        let reference = NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        LineParser::new(Zone::parse(zone).unwrap(), None, "test").with_reference(reference)
    }

    fn iso(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn rfc3164_with_pid_and_zone() {
        let mut p = parser("Europe/Berlin", 2024, 7, 1);
        let e = p.parse(b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ", 0);
        assert!(e.parsed);
        assert_eq!(e.host.as_deref(), Some("combo"));
        assert_eq!(e.process.as_deref(), Some("sshd(pam_unix)"));
        assert_eq!(e.pid, Some(19939));
        assert_eq!(
            e.message,
            "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4"
        );
        assert_eq!(e.source_host.as_deref(), Some("218.188.2.4"));
        assert_eq!(iso(e.ts), "2024-06-14T13:16:01+00:00");
        let extra: serde_json::Value = serde_json::from_str(e.extra.as_deref().unwrap()).unwrap();
        assert_eq!(extra["tz"], "Europe/Berlin");
        assert_eq!(extra["year_inferred"], "2024");
    }

    #[test]
    fn december_line_read_in_january() {
        let mut p = parser("UTC", 2025, 1, 2);
        let e = p.parse(b"Dec 31 23:59:59 h cron[1]: x", 0);
        assert_eq!(iso(e.ts), "2024-12-31T23:59:59+00:00");
    }

    #[test]
    fn rfc5424_offset_wins_over_zone() {
        let mut p = parser("America/New_York", 2024, 7, 1);
        let e = p.parse(b"<34>1 2024-03-05T10:00:00.250+05:30 web01 sshd 77 ID47 - Failed password for root from 10.1.2.3 port 22 ssh2", 0);
        assert!(e.parsed);
        assert_eq!(iso(e.ts), "2024-03-05T04:30:00.250+00:00");
        assert_eq!((e.facility, e.severity), (Some("auth"), Some("crit")));
        assert_eq!(e.user.as_deref(), Some("root"));
        assert!(!e.extra.as_deref().unwrap_or("").contains("\"tz\""));
    }

    #[test]
    fn extra_is_valid_json_whatever_the_values() {
        let mut o = JsonObject::default();
        o.field("a", "q\"b\\s\n\u{1}é");
        o.array("sd", &["x".into(), "y".into()]);
        let v: serde_json::Value = serde_json::from_str(&o.finish().unwrap()).unwrap();
        assert_eq!(v["a"], "q\"b\\s\n\u{1}é");
        assert_eq!(v["sd"][1], "y");
        assert_eq!(JsonObject::default().finish(), None);
    }

    #[test]
    fn garbage_is_kept_raw() {
        let mut p = parser("UTC", 2024, 1, 1);
        for line in [&b""[..], b"hello world", b"\xff\xfe\x00binary\x01", b"   "] {
            let e = p.parse(line, 42);
            assert!(!e.parsed, "{line:?}");
            assert_eq!(e.ts, 42);
            assert_eq!(e.raw, String::from_utf8_lossy(line));
        }
    }
}
