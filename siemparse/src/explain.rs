//! `--check-decoders` (run every decoder's examples) and `--explain`
//! (show how lines parse and decode, as `fail2ban-regex` or `wazuh-logtest`
//! do). Neither touches the database.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use siemstress_common::decode::{Decoders, check};
use siemstress_common::diag;
use siemstress_common::display::escape;
use siemstress_common::event::Event;
use siemstress_common::parse::LineParser;

use crate::lines::LineSplitter;

/// Runs the examples of every decoder in `set`; failures go to stderr, one
/// line each with file, decoder and example. Exit 0 when all pass, else 1.
pub fn check_decoders(set: &Arc<Decoders>) -> anyhow::Result<ExitCode> {
    let report = check::run(set);
    for f in &report.failures {
        diag!("siemparse: {}", escape(&f.to_string()));
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

/// Explains `line`, or every line of stdin when `line` is `None`. Stdin is
/// split as ingest splits it ([`LineSplitter`]): a line over
/// [`MAX_LINE_BYTES`](crate::lines::MAX_LINE_BYTES) is explained as the
/// pieces it would be stored as, in bounded memory.
pub fn explain(parser: LineParser, set: &Arc<Decoders>, line: Option<&str>) -> anyhow::Result<()> {
    let mut parser = parser.with_decoders(set.clone());
    let mut out = std::io::stdout().lock();
    let received = chrono::Utc::now().timestamp_millis();
    let Some(line) = line else {
        let mut input = std::io::stdin().lock();
        let mut buf = vec![0u8; 256 * 1024];
        let mut splitter = LineSplitter::default();
        let mut first = true;
        let mut written = Ok(());
        let mut one = |raw: &[u8]| {
            if written.is_ok() {
                let sep = if std::mem::take(&mut first) { "" } else { "\n" };
                let text = describe(&parser.parse(raw, received), set);
                written = write!(out, "{sep}{text}");
            }
        };
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow::Error::new(e).context("reading standard input")),
            };
            splitter.feed(&buf[..n], |l, _| one(l));
        }
        if let Some(last) = splitter.take_pending() {
            one(&last);
        }
        return Ok(written?);
    };
    out.write_all(describe(&parser.parse(line.as_bytes(), received), set).as_bytes())?;
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
