//! `openvpnusers`: OpenVPN clients, keyed by certificate common name, from
//! the CA's database and the server's status file (sec-tools' openvpn
//! users), both read under the root (`[gather.openvpnusers] index`,
//! `status`).
//!
//! **index.txt** (easy-rsa's `pki/index.txt`, the OpenSSL `ca` database):
//! one certificate per line, tab-separated: status flag (`V` valid, `R`
//! revoked, `E` expired), expiry (UTCTime `YYMMDDHHMMSSZ`, or GeneralizedTime
//! `YYYYMMDDHHMMSSZ` from 2050), revocation time (`time[,reason]`, empty
//! unless revoked), serial (hex), file name (`unknown`), subject DN
//! (`/C=../CN=alice`). A `V` certificate past its expiry is `expired` (the
//! flag only changes when `openssl ca -updatedb` runs). A common name with
//! several certificates (renewed) is one row: the columns are those of the
//! newest valid one (else the newest), the others listed in `older`.
//!
//! **status file** (`status FILE` in the server config): `status-version`
//! 1 (`OpenVPN CLIENT LIST`, comma-separated sections), 2 (comma-separated
//! `HEADER,CLIENT_LIST,...` and `CLIENT_LIST,...` records) or 3 (the same,
//! tab-separated); records are read by the names of their `HEADER` (v2/v3)
//! or of the section's header line (v1), so added columns do not matter.
//! Connected clients get `connected`, `real_address` (sorted, several with
//! duplicate-cn), `virtual_address` and `connected_since` (RFC 3339 from
//! the time_t column in v2/v3; v1 prints local time: kept as written).
//! Byte counters are left out (they would change on every run). A
//! connected common name without a certificate in the index is a row with
//! `in_index: false`.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{Value, json};
use siemstress_common::snapshot::Row;

use super::Ctx;

/// One certificate of the index.
#[derive(Debug, Clone, PartialEq)]
struct Cert {
    status: &'static str,
    expires: Option<String>,
    revoked: Option<String>,
    reason: Option<String>,
    serial: String,
    subject: String,
}

impl Cert {
    fn json(&self) -> Value {
        json!({
            "serial": self.serial,
            "status": self.status,
            "expires": self.expires,
            "revoked": self.revoked,
            "revocation_reason": self.reason,
            "subject": self.subject,
        })
    }
}

/// One connection of the status file.
#[derive(Debug, Default, Clone, PartialEq)]
struct Conn {
    real: String,
    virt: Option<String>,
    since: Option<String>,
}

pub fn gather(ctx: &mut Ctx<'_>) -> anyhow::Result<Vec<Row>> {
    let cfg = &ctx.config.openvpnusers;
    if cfg.index.is_none() && cfg.status.is_none() {
        bail!(
            "[gather.openvpnusers]: set index (easy-rsa's pki/index.txt) and/or status (the server's status file)"
        );
    }
    let now = chrono::Utc::now();
    let mut certs: BTreeMap<String, Vec<Cert>> = BTreeMap::new();
    if let Some(index) = &cfg.index {
        let text = ctx
            .read_text(index)?
            .ok_or_else(|| anyhow::anyhow!("[gather.openvpnusers] index {index}: not found"))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_index_line(line, now) {
                Some((cn, cert)) => certs.entry(cn).or_default().push(cert),
                None => ctx.warn(format!(
                    "openvpnusers: {index} line {}: not an index.txt line",
                    n + 1
                )),
            }
        }
    }
    let mut conns: BTreeMap<String, Vec<Conn>> = BTreeMap::new();
    if let Some(status) = &cfg.status {
        match ctx.read_text(status)? {
            Some(text) => {
                for (cn, c) in parse_status(&text)? {
                    conns.entry(cn).or_default().push(c);
                }
            }
            // The server is not running (or not writing its status): no one
            // is connected.
            None => ctx.warn(format!("openvpnusers: status file {status} not found")),
        }
    }
    let mut names: Vec<&String> = certs.keys().chain(conns.keys()).collect();
    names.sort();
    names.dedup();
    let mut rows = Vec::with_capacity(names.len());
    for cn in names {
        let mut v = json!({"common_name": cn});
        if let Some(list) = certs.get(cn) {
            // The newest valid certificate, else the newest.
            let current = list
                .iter()
                .rposition(|c| c.status == "valid")
                .unwrap_or(list.len() - 1);
            if let (Value::Object(m), Value::Object(c)) = (&mut v, list[current].json()) {
                m.extend(c);
            }
            let mut older: Vec<Value> = list
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != current)
                .map(|(_, c)| c.json())
                .collect();
            older.sort_by(|a, b| a["serial"].as_str().cmp(&b["serial"].as_str()));
            if !older.is_empty() {
                v["older"] = json!(older);
            }
        }
        if cfg.index.is_some() {
            v["in_index"] = json!(certs.contains_key(cn));
        }
        if cfg.status.is_some() {
            let list = conns.get(cn).cloned().unwrap_or_default();
            let mut real: Vec<&str> = list.iter().map(|c| c.real.as_str()).collect();
            real.sort_unstable();
            real.dedup();
            let mut virt: Vec<&str> = list.iter().filter_map(|c| c.virt.as_deref()).collect();
            virt.sort_unstable();
            virt.dedup();
            let since = list.iter().filter_map(|c| c.since.clone()).min();
            v["connected"] = json!(!list.is_empty());
            v["real_address"] = json!(real);
            v["virtual_address"] = json!(virt);
            v["connected_since"] = json!(since);
        }
        rows.push(Row::new(cn.clone(), v));
    }
    Ok(rows)
}

/// One index.txt line → (common name, certificate); `now` decides whether
/// a `V` certificate has expired.
fn parse_index_line(line: &str, now: chrono::DateTime<chrono::Utc>) -> Option<(String, Cert)> {
    let f: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
    if f.len() < 6 {
        return None;
    }
    let expires = asn1_time(f[1]);
    let status = match f[0] {
        "V" if expires.is_some_and(|e| e <= now) => "expired",
        "V" => "valid",
        "R" => "revoked",
        "E" => "expired",
        _ => return None,
    };
    let (revoked, reason) = match f[2].split_once(',') {
        Some((t, r)) => (asn1_time(t), Some(r.to_owned())),
        None => (asn1_time(f[2]), None),
    };
    let subject = f[5..].join("\t");
    let cn = common_name(&subject)?;
    let rfc = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    Some((
        cn,
        Cert {
            status,
            expires: rfc(expires),
            revoked: rfc(revoked),
            reason,
            serial: f[3].to_ascii_uppercase(),
            subject,
        },
    ))
}

/// The last `CN=` of a DN in OpenSSL's `/A=b/CN=c` form (or `CN=c, O=..`).
fn common_name(dn: &str) -> Option<String> {
    dn.split(['/', ','])
        .map(str::trim)
        .filter_map(|rdn| rdn.strip_prefix("CN="))
        .next_back()
        .filter(|cn| !cn.is_empty())
        .map(str::to_owned)
}

/// ASN.1 UTCTime (`YYMMDDHHMMSSZ`, years 50-99 are 19xx, RFC 5280) or
/// GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t.trim().strip_suffix('Z')?;
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match t.len() {
        12 => {
            let yy: u32 = t[..2].parse().ok()?;
            format!("{}{t}", if yy >= 50 { "19" } else { "20" })
        }
        14 => t.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S")
        .ok()
        .map(|n| n.and_utc())
}

/// The connected clients of a status file of any version.
fn parse_status(text: &str) -> anyhow::Result<Vec<(String, Conn)>> {
    let first = text.lines().next().unwrap_or("");
    if first.starts_with("OpenVPN CLIENT LIST") {
        return Ok(parse_status_v1(text));
    }
    let sep = if first.starts_with("TITLE\t") || first.starts_with("HEADER\t") {
        '\t'
    } else if first.starts_with("TITLE,") || first.starts_with("HEADER,") {
        ','
    } else {
        bail!(
            "[gather.openvpnusers] status: not an OpenVPN status file (status-version 1, 2 or 3): first line {:?}",
            first.chars().take(40).collect::<String>()
        );
    };
    // Column names per record type, from the HEADER records.
    let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        let f: Vec<&str> = line.split(sep).collect();
        match f[0] {
            "HEADER" if f.len() > 2 => {
                headers.insert(f[1], f[2..].to_vec());
            }
            "CLIENT_LIST" => {
                let Some(h) = headers.get("CLIENT_LIST") else {
                    continue;
                };
                let get = |name: &str| {
                    h.iter()
                        .position(|c| *c == name)
                        .and_then(|i| f.get(i + 1))
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                };
                let (Some(cn), Some(real)) = (get("Common Name"), get("Real Address")) else {
                    continue;
                };
                let since = get("Connected Since (time_t)")
                    .and_then(|t| t.parse::<i64>().ok())
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .or_else(|| get("Connected Since").map(str::to_owned));
                out.push((
                    cn.to_owned(),
                    Conn {
                        real: real.to_owned(),
                        virt: get("Virtual Address").map(str::to_owned),
                        since,
                    },
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// status-version 1: the client list section, then the routing table
/// (virtual addresses), each with its own header line.
fn parse_status_v1(text: &str) -> Vec<(String, Conn)> {
    #[derive(PartialEq)]
    enum Section {
        None,
        Clients,
        Routes,
    }
    let mut section = Section::None;
    let mut client_cols: Vec<&str> = Vec::new();
    let mut route_cols: Vec<&str> = Vec::new();
    let mut out: Vec<(String, Conn)> = Vec::new();
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        match line {
            "OpenVPN CLIENT LIST" => {
                section = Section::Clients;
                continue;
            }
            "ROUTING TABLE" => {
                section = Section::Routes;
                continue;
            }
            "GLOBAL STATS" | "END" => {
                section = Section::None;
                continue;
            }
            _ => {}
        }
        let f: Vec<&str> = line.split(',').collect();
        match section {
            Section::Clients if f[0] == "Updated" => {}
            Section::Clients if f[0] == "Common Name" => client_cols = f,
            Section::Clients => {
                let get = |name: &str| {
                    client_cols
                        .iter()
                        .position(|c| *c == name)
                        .and_then(|i| f.get(i))
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                };
                if let (Some(cn), Some(real)) = (get("Common Name"), get("Real Address")) {
                    out.push((
                        cn.to_owned(),
                        Conn {
                            real: real.to_owned(),
                            virt: None,
                            since: get("Connected Since").map(str::to_owned),
                        },
                    ));
                }
            }
            Section::Routes if f[0] == "Virtual Address" => route_cols = f,
            Section::Routes => {
                let get = |name: &str| {
                    route_cols
                        .iter()
                        .position(|c| *c == name)
                        .and_then(|i| f.get(i))
                        .map(|s| s.trim())
                };
                if let (Some(virt), Some(cn), Some(real)) = (
                    get("Virtual Address"),
                    get("Common Name"),
                    get("Real Address"),
                ) && let Some((_, c)) = out
                    .iter_mut()
                    .find(|(n, c)| n == cn && c.real == real && c.virt.is_none())
                {
                    // Routes learnt from a client's traffic end in `C`.
                    c.virt = Some(virt.trim_end_matches('C').to_owned());
                }
            }
            Section::None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lines() {
        let now = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let (cn, c) = parse_index_line(
            "V\t320101000000Z\t\t0A1B\tunknown\t/C=DE/O=Example/CN=alice",
            now,
        )
        .unwrap();
        assert_eq!(cn, "alice");
        assert_eq!(
            (c.status, c.expires.as_deref(), c.serial.as_str()),
            ("valid", Some("2032-01-01T00:00:00Z"), "0A1B")
        );
        let (_, c) = parse_index_line(
            "R\t291231235959Z\t250301120000Z,keyCompromise\t02\tunknown\t/CN=bob",
            now,
        )
        .unwrap();
        assert_eq!(
            (c.status, c.revoked.as_deref(), c.reason.as_deref()),
            (
                "revoked",
                Some("2025-03-01T12:00:00Z"),
                Some("keyCompromise")
            )
        );
        // V past its expiry is expired; GeneralizedTime from 2050.
        let (_, c) = parse_index_line("V\t291231235959Z\t\t03\tunknown\t/CN=carol", now).unwrap();
        assert_eq!(c.status, "expired");
        let (_, c) = parse_index_line("V\t20510101000000Z\t\t04\tunknown\t/CN=d", now).unwrap();
        assert_eq!(c.expires.as_deref(), Some("2051-01-01T00:00:00Z"));
        assert!(parse_index_line("X\t1\t\t1\tunknown\t/CN=x", now).is_none());
        assert!(parse_index_line("V\t320101000000Z\t\t05\tunknown\t/O=no-cn", now).is_none());
    }
}
