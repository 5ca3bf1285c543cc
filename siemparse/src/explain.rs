//! `--check-decoders` (run every decoder's examples) and `--explain`
//! (show how lines parse and decode, as `fail2ban-regex` or `wazuh-logtest`
//! do). Neither touches the database.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;

use siemstress_common::decode::{Decoders, check};
use siemstress_common::display::escape;
use siemstress_common::event::Event;
use siemstress_common::parse::LineParser;

/// Runs the examples of every decoder in `set`; failures go to stderr, one
/// line each with file, decoder and example. Exit 0 when all pass, else 1.
pub fn check_decoders(set: &Arc<Decoders>) -> anyhow::Result<ExitCode> {
    let report = check::run(set);
    for f in &report.failures {
        eprintln!("siemparse: {}", escape(&f.to_string()));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} decoders, {} examples ({} forged): {}",
        set.list().len(),
        report.examples,
        report.forged,
        if report.failures.is_empty() {
            "all pass".to_owned()
        } else {
            format!("{} failed", report.failures.len())
        }
    )?;
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Explains `line`, or every line of stdin when `line` is `None`.
pub fn explain(parser: LineParser, set: &Arc<Decoders>, line: Option<&str>) -> anyhow::Result<()> {
    let mut parser = parser.with_decoders(set.clone());
    let mut out = std::io::stdout().lock();
    let received = chrono::Utc::now().timestamp_millis();
    let mut one = |raw: &[u8], out: &mut dyn Write| -> anyhow::Result<()> {
        let ev = parser.parse(raw, received);
        out.write_all(describe(&ev, set).as_bytes())?;
        Ok(())
    };
    match line {
        Some(l) => one(l.as_bytes(), &mut out)?,
        None => {
            let stdin = std::io::stdin();
            let mut buf = Vec::new();
            let mut first = true;
            let mut input = stdin.lock();
            loop {
                buf.clear();
                if input.read_until(b'\n', &mut buf)? == 0 {
                    break;
                }
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                if !first {
                    writeln!(out)?;
                }
                first = false;
                one(&buf, &mut out)?;
            }
        }
    }
    Ok(())
}

/// The explanation of one parsed line.
fn describe(ev: &Event, set: &Decoders) -> String {
    let mut s = String::new();
    let mut row = |name: &str, value: &str| {
        let _ = writeln!(s, "  {name:<14} {}", escape(value));
    };
    row("line", &ev.raw);
    let header = if ev.parsed {
        "parsed"
    } else {
        "not parsed: stored whole (message = the line, ts = time read)"
    };
    row("header", header);
    let ts = chrono::DateTime::from_timestamp_millis(ev.ts)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    row("ts", &ts);
    for (name, v) in [("host", &ev.host), ("process", &ev.process)] {
        if let Some(v) = v {
            row(name, v);
        }
    }
    if let Some(pid) = ev.pid {
        row("pid", &pid.to_string());
    }
    if let Some(f) = ev.facility {
        row("facility", f);
    }
    if let Some(sv) = ev.severity {
        row("severity", sv);
    }
    row("message", &ev.message);
    let decoded = if ev.parsed {
        set.decode(ev.process.as_deref(), &ev.message)
    } else {
        set.decode(None, &ev.message)
    };
    match decoded {
        None => row("decoder", "none matched: no fields"),
        Some(d) => {
            row(
                "decoder",
                &format!("{} ({})", d.decoder.name, d.decoder.origin),
            );
            for (k, v) in d.fields.pairs() {
                row(&format!("  {k}"), &v);
            }
        }
    }
    if let Some(x) = &ev.extra {
        row("extra", x);
    }
    s
}
