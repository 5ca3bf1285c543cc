//! Output writers behind one trait: a table (comfy-table, collected), a JSON
//! array (streamed, pretty), NDJSON and CSV (streamed). Query code hands over
//! [`Cell`]s and never formats. JSON is written byte by byte (see
//! [`crate::fmt`]), one row at a time, with the bytes `serde_json` wrote.

use std::borrow::Cow;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use comfy_table::Color;
use siemstress_common::db::report::is_failed_login;
use siemstress_common::display::escape;
use siemstress_common::time::Zone;

use crate::fmt::{Rfc3339, push_embedded_json, push_int, push_json_str, push_rfc3339_utc};

/// One value of an output row; text is borrowed where the caller can.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    /// An instant in UTC epoch ms (`ts`, `received`).
    Time(i64),
    /// Text that holds JSON (`extra`): embedded as JSON where valid.
    Json(Cow<'a, str>),
    /// Lines already made safe to show, each by `display::escape` (a
    /// unified diff from `common::snapshot::unified`): a table prints them
    /// as they are, line breaks kept; elsewhere it is text.
    EscapedLines(Cow<'a, str>),
}

/// `2024-03-01T12:00:00.000Z`.
pub fn rfc3339_utc(ms: i64) -> String {
    let mut buf = Vec::with_capacity(24);
    push_rfc3339_utc(&mut buf, ms);
    String::from_utf8(buf).unwrap_or_default()
}

/// A sink for rows with a fixed list of field names.
pub trait RowWriter {
    /// Writes one row (`cells` in the order of the field names).
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()>;
    /// Completes the output (closing bracket, the table itself) and flushes.
    fn finish(&mut self) -> io::Result<()>;
    /// Writes out what the rows so far buffered (`--follow`, after each poll).
    fn flush(&mut self) -> io::Result<()>;
}

/// What formatting remembers from row to row.
#[derive(Default)]
struct Memo {
    /// The last embedded JSON text found canonical (see [`push_embedded_json`]).
    json: Vec<u8>,
    times: Rfc3339,
}

/// A cell as a JSON value.
fn push_json_value(buf: &mut Vec<u8>, cell: &Cell<'_>, memo: &mut Memo) {
    match cell {
        Cell::Null => buf.extend_from_slice(b"null"),
        Cell::Int(i) => push_int(buf, *i),
        Cell::Text(s) | Cell::EscapedLines(s) => push_json_str(buf, s),
        Cell::Time(ms) => {
            buf.push(b'"');
            memo.times.push(buf, *ms);
            buf.push(b'"');
        }
        Cell::Json(s) => push_embedded_json(buf, s, &mut memo.json),
    }
}

/// Rows as JSON objects: `{"name":value,...}`, or pretty (two-space
/// indented, as `serde_json`'s pretty printer, values compact).
struct JsonObjects {
    /// Per field: the separator before it (none for the first) and its key.
    keys: Vec<Vec<u8>>,
    open: &'static [u8],
    close: &'static [u8],
    /// The row being written, reused.
    buf: Vec<u8>,
    memo: Memo,
}

impl JsonObjects {
    fn new(fields: &[String], pretty: bool) -> Self {
        let keys = fields
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut k = Vec::new();
                if i > 0 {
                    k.extend_from_slice(if pretty { b",\n" } else { b"," });
                }
                if pretty {
                    k.extend_from_slice(b"    ");
                }
                push_json_str(&mut k, name);
                k.extend_from_slice(if pretty { b": " } else { b":" });
                k
            })
            .collect();
        Self {
            keys,
            open: if pretty { b"  {\n" } else { b"{" },
            close: if pretty { b"\n  }" } else { b"}" },
            buf: Vec::with_capacity(4096),
            memo: Memo::default(),
        }
    }

    /// Appends the object of one row to `self.buf`.
    fn push(&mut self, cells: &[Cell<'_>]) {
        self.buf.extend_from_slice(self.open);
        for (key, cell) in self.keys.iter().zip(cells) {
            self.buf.extend_from_slice(key);
            push_json_value(&mut self.buf, cell, &mut self.memo);
        }
        self.buf.extend_from_slice(self.close);
    }
}

/// One JSON object per line.
pub struct Ndjson<W: Write> {
    out: W,
    obj: JsonObjects,
}

impl<W: Write> Ndjson<W> {
    pub fn new(out: W, fields: Vec<String>) -> Self {
        Self {
            out,
            obj: JsonObjects::new(&fields, false),
        }
    }
}

impl<W: Write> RowWriter for Ndjson<W> {
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.obj.buf.clear();
        self.obj.push(cells);
        self.obj.buf.push(b'\n');
        self.out.write_all(&self.obj.buf)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A pretty JSON array, written as rows arrive.
pub struct JsonArray<W: Write> {
    out: W,
    obj: JsonObjects,
    rows: u64,
}

impl<W: Write> JsonArray<W> {
    pub fn new(out: W, fields: Vec<String>) -> Self {
        Self {
            out,
            obj: JsonObjects::new(&fields, true),
            rows: 0,
        }
    }
}

impl<W: Write> RowWriter for JsonArray<W> {
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.obj.buf.clear();
        self.obj
            .buf
            .extend_from_slice(if self.rows == 0 { b"[\n" } else { b",\n" });
        self.rows += 1;
        self.obj.push(cells);
        self.out.write_all(&self.obj.buf)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out
            .write_all(if self.rows == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// RFC 4180 CSV with a header row; NULL is an empty field. Text is exact,
/// unless `excel_safe` (`--excel-safe`): then a text cell that a spreadsheet
/// would run as a formula is prefixed with `'` (see [`formula_safe`]).
pub struct Csv<W: Write> {
    out: csv::Writer<W>,
    /// A formatted number or time, reused.
    num: Vec<u8>,
    times: Rfc3339,
    excel_safe: bool,
}

impl<W: Write> Csv<W> {
    pub fn new(out: W, fields: &[String], excel_safe: bool) -> io::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        let header: Vec<Cow<'_, [u8]>> = fields
            .iter()
            .map(|f| formula_safe(f.as_bytes(), excel_safe))
            .collect();
        out.write_record(&header).map_err(io::Error::other)?;
        Ok(Self {
            out,
            num: Vec::with_capacity(32),
            times: Rfc3339::default(),
            excel_safe,
        })
    }
}

/// A text cell as written under `--excel-safe`: one that starts with `=`,
/// `+`, `-` or `@` (a formula to Excel and LibreOffice: `=HYPERLINK(...)`,
/// `@SUM(...)`, `-2+3+cmd|...`), or with a tab or carriage return (OWASP's
/// list), gets a `'` before it, which spreadsheets take as "this is text".
/// Numbers and times are never changed.
fn formula_safe(text: &[u8], excel_safe: bool) -> Cow<'_, [u8]> {
    match text.first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if excel_safe => {
            let mut v = Vec::with_capacity(text.len() + 1);
            v.push(b'\'');
            v.extend_from_slice(text);
            Cow::Owned(v)
        }
        _ => Cow::Borrowed(text),
    }
}

fn csv_err(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

impl<W: Write> RowWriter for Csv<W> {
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        for c in cells {
            self.num.clear();
            let field: Cow<'_, [u8]> = match c {
                Cell::Null => Cow::Borrowed(b""),
                Cell::Int(i) => {
                    push_int(&mut self.num, *i);
                    Cow::Borrowed(&self.num)
                }
                Cell::Text(s) | Cell::Json(s) | Cell::EscapedLines(s) => {
                    formula_safe(s.as_bytes(), self.excel_safe)
                }
                Cell::Time(ms) => {
                    self.times.push(&mut self.num, *ms);
                    Cow::Borrowed(&self.num)
                }
            };
            self.out.write_field(&field).map_err(csv_err)?;
        }
        self.out.write_record(None::<&[u8]>).map_err(csv_err)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// How output for people looks (from `--color`, `NO_COLOR`, `--wide` and
/// whether stdout is a terminal: [`crate::args::Args::look`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Look {
    /// Fit a table to the terminal's width, each row one line high (long
    /// cells cut with `…`); else whole cells, as wide as they are.
    pub fit: bool,
    /// Colour severities and failed logins.
    pub color: bool,
}

/// The colour of a severity (syslog's names and the alerts'): red for the
/// worst, yellow for warnings; none for the rest.
fn severity_color(severity: &str) -> Option<Color> {
    match severity.to_ascii_lowercase().as_str() {
        "emerg" | "emergency" | "panic" | "alert" | "crit" | "critical" => Some(Color::Magenta),
        "err" | "error" | "high" => Some(Color::Red),
        "warning" | "warn" | "medium" => Some(Color::Yellow),
        "notice" | "low" => Some(Color::Cyan),
        _ => None,
    }
}

/// The colour of a cell of field `field` in a row whose message is a
/// failed login (`failed`): severities by [`severity_color`], the message
/// of a failed login red.
fn cell_color(field: &str, text: &str, failed: bool) -> Option<Color> {
    match field {
        "severity" => severity_color(text),
        "message" if failed => Some(Color::Red),
        _ => None,
    }
}

/// Whether the row's `message` (a text cell) is a failed login.
fn failed_login(fields: &[String], cells: &[Cell<'_>]) -> bool {
    fields
        .iter()
        .zip(cells)
        .any(|(f, c)| f == "message" && matches!(c, Cell::Text(m) if is_failed_login(m)))
}

/// Columns a fitted table never cuts (times, numbers, short names).
const KEEP_WHOLE: [&str; 14] = [
    "id",
    "ts",
    "received",
    "first_ts",
    "created",
    "pid",
    "section",
    "severity",
    "count",
    "source_port",
    "dest_port",
    "parsed",
    "run",
    "change",
];

/// A table for people: times in `zone`, text with its control characters
/// escaped ([`escape`]), printed when the rows are complete; coloured and
/// fitted as `look` says.
pub struct Table<W: Write> {
    out: W,
    table: comfy_table::Table,
    zone: Zone,
    fields: Vec<String>,
    look: Look,
}

impl<W: Write> Table<W> {
    pub fn new(out: W, fields: &[String], zone: Zone, look: Look) -> Self {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(fields.iter().map(|f| match f.as_str() {
                "ts" | "received" => format!("{f} ({})", zone.name()),
                // Snapshot columns are the keys of stored JSON.
                _ => escape(f).into_owned(),
            }));
        if look.fit {
            let width = terminal_width(std::env::var("COLUMNS").ok().as_deref(), table.width());
            table
                .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
                .set_width(width)
                .set_truncation_indicator("…");
            // Times, numbers and names are never cut: the width left is
            // shared by the texts (message, host, user...).
            for (i, f) in fields.iter().enumerate() {
                if KEEP_WHOLE.contains(&f.as_str())
                    && let Some(c) = table.column_mut(i)
                {
                    c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
                }
            }
        }
        // The look is decided here, not by comfy-table's own tty check.
        table.force_no_tty();
        if look.color {
            table.enforce_styling();
        }
        Self {
            out,
            table,
            zone,
            fields: fields.to_vec(),
            look,
        }
    }

    fn local(&self, ms: i64) -> String {
        local_time(self.zone, ms)
    }
}

/// `ms` as `YYYY-mm-dd HH:MM:SS` in `zone`.
fn local_time(zone: Zone, ms: i64) -> String {
    let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let fmt = "%Y-%m-%d %H:%M:%S";
    match zone {
        Zone::Fixed(off) => utc.with_timezone(&off).format(fmt).to_string(),
        Zone::Iana(tz) => utc.with_timezone(&tz).format(fmt).to_string(),
    }
}

impl<W: Write> RowWriter for Table<W> {
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        let failed = self.look.color && failed_login(&self.fields, cells);
        let mut row = comfy_table::Row::new();
        for (i, c) in cells.iter().enumerate() {
            let text = match c {
                Cell::Null => String::new(),
                Cell::Int(i) => i.to_string(),
                // Stored text is the attackers': no control character reaches the terminal.
                Cell::Text(s) | Cell::Json(s) => escape(s).into_owned(),
                Cell::EscapedLines(s) => s.to_string(),
                Cell::Time(ms) => self.local(*ms),
            };
            let field = self.fields.get(i).map_or("", String::as_str);
            let mut cell = comfy_table::Cell::new(&text);
            // Our colour codes around escaped text: none come from the data.
            if let Some(color) = self
                .look
                .color
                .then(|| cell_color(field, &text, failed))
                .flatten()
            {
                cell = cell.fg(color);
            }
            row.add_cell(cell);
        }
        // A unified diff keeps its lines; any other row is one line high.
        if self.look.fit && !cells.iter().any(|c| matches!(c, Cell::EscapedLines(_))) {
            row.max_height(1);
        }
        self.table.add_row(row);
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        if !self.table.is_empty() {
            writeln!(self.out, "{}", self.table)?;
        }
        self.out.flush()
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One line per row for people, written as rows arrive (`--follow` on a
/// terminal, where a table would never be complete): the cells at `order`
/// (indexes into the row) apart by a space, NULL left out, times in `zone`,
/// text escaped ([`escape`]); a `pid` right after `process` is shown as
/// `process[pid]`, and `message` follows `: `, as in a syslog line.
pub struct Lines<W: Write> {
    out: W,
    fields: Vec<String>,
    /// (field name, cell index) in the order shown.
    order: Vec<(String, usize)>,
    zone: Zone,
    look: Look,
    line: String,
}

impl<W: Write> Lines<W> {
    pub fn new(out: W, fields: &[String], order: &[usize], zone: Zone, look: Look) -> Self {
        let order = order
            .iter()
            .filter_map(|&i| fields.get(i).map(|f| (f.clone(), i)))
            .collect();
        Self {
            out,
            fields: fields.to_vec(),
            order,
            zone,
            look,
            line: String::new(),
        }
    }
}

/// The SGR sequence that starts `color` (the colours [`cell_color`] uses).
fn sgr(color: Color) -> &'static str {
    match color {
        Color::Magenta => "\x1b[35m",
        Color::Red => "\x1b[31m",
        Color::Yellow => "\x1b[33m",
        Color::Cyan => "\x1b[36m",
        _ => "",
    }
}

/// Resets the colour.
const SGR_RESET: &str = "\x1b[0m";

impl<W: Write> RowWriter for Lines<W> {
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.line.clear();
        let failed = self.look.color && failed_login(&self.fields, cells);
        let mut previous = "";
        for (name, i) in &self.order {
            let text: Cow<'_, str> = match cells.get(*i) {
                None | Some(Cell::Null) => continue,
                Some(Cell::Int(n)) => n.to_string().into(),
                Some(Cell::Text(s) | Cell::Json(s)) => escape(s),
                Some(Cell::EscapedLines(s)) => s.as_ref().into(),
                Some(Cell::Time(ms)) => local_time(self.zone, *ms).into(),
            };
            // Our colour codes around escaped text: none come from the data.
            let text: Cow<'_, str> = match self.look.color.then(|| cell_color(name, &text, failed))
            {
                Some(Some(c)) => format!("{}{text}{SGR_RESET}", sgr(c)).into(),
                _ => text,
            };
            match name.as_str() {
                "pid" if previous == "process" => {
                    self.line.push('[');
                    self.line.push_str(&text);
                    self.line.push(']');
                }
                "message" if !self.line.is_empty() => {
                    self.line.push_str(": ");
                    self.line.push_str(&text);
                }
                _ => {
                    if !self.line.is_empty() {
                        self.line.push(' ');
                    }
                    self.line.push_str(&text);
                }
            }
            previous = name;
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Width of a table on a terminal: `$COLUMNS` when it is a positive number
/// (as `ls` honours it), else the width the terminal reports, else 80
/// (serial and IPMI consoles, `script`, report 0 columns).
fn terminal_width(columns_env: Option<&str>, reported: Option<u16>) -> u16 {
    columns_env
        .and_then(|c| c.trim().parse::<u16>().ok())
        .into_iter()
        .chain(reported)
        .find(|&w| w > 0)
        .unwrap_or(80)
}

/// Several writers fed the same rows (stdout and `--json FILE`).
pub struct Tee(pub Vec<Box<dyn RowWriter>>);

impl RowWriter for Tee {
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|w| w.row(cells))
    }
    fn finish(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|w| w.finish())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|w| w.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<String> {
        vec!["id".into(), "ts".into(), "extra".into(), "msg".into()]
    }

    fn cells() -> Vec<Cell<'static>> {
        vec![
            Cell::Int(7),
            Cell::Time(0),
            Cell::Json(r#"{"a":1}"#.into()),
            Cell::Text("a, \"b\"\nc".into()),
        ]
    }

    #[test]
    fn ndjson_and_array() {
        let mut buf = Vec::new();
        let mut w = Ndjson::new(&mut buf, fields());
        w.row(&cells()).unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"id\":7,\"ts\":\"1970-01-01T00:00:00.000Z\",\"extra\":{\"a\":1},\"msg\":\"a, \\\"b\\\"\\nc\"}\n"
        );
        let mut buf = Vec::new();
        let mut w = JsonArray::new(&mut buf, fields());
        w.row(&cells()).unwrap();
        w.row(&cells()).unwrap();
        w.finish().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        let mut buf = Vec::new();
        JsonArray::new(&mut buf, fields()).finish().unwrap();
        assert_eq!(buf, b"[]\n");
    }

    #[test]
    fn terminal_width_prefers_columns_then_the_terminal_then_80() {
        assert_eq!(terminal_width(Some("120"), Some(200)), 120);
        assert_eq!(terminal_width(None, Some(200)), 200);
        assert_eq!(terminal_width(Some("0"), Some(0)), 80);
        assert_eq!(terminal_width(Some("wide"), None), 80);
        assert_eq!(terminal_width(None, Some(0)), 80);
    }

    #[test]
    fn csv_quotes() {
        let mut buf = Vec::new();
        let mut w = Csv::new(&mut buf, &fields(), false).unwrap();
        w.row(&cells()).unwrap();
        w.finish().unwrap();
        drop(w);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with("\"a, \"\"b\"\"\nc\"\n"), "{text}");
    }

    #[test]
    fn csv_excel_safe_prefixes_formulas_only() {
        let row = [
            Cell::Text("=HYPERLINK(\"http://x\")".into()),
            Cell::Text("@SUM(A1)".into()),
            Cell::Text("+1".into()),
            Cell::Text("-2+3".into()),
            Cell::Text("\tx".into()),
            Cell::Text("plain =".into()),
            Cell::Int(-5),
            Cell::Null,
        ];
        let names: Vec<String> = (0..row.len()).map(|i| format!("c{i}")).collect();
        let write = |safe| {
            let mut buf = Vec::new();
            let mut w = Csv::new(&mut buf, &names, safe).unwrap();
            w.row(&row).unwrap();
            w.finish().unwrap();
            drop(w);
            String::from_utf8(buf).unwrap()
        };
        let safe = write(true);
        let line = safe.lines().nth(1).unwrap();
        assert_eq!(
            line,
            "\"'=HYPERLINK(\"\"http://x\"\")\",'@SUM(A1),'+1,'-2+3,'\tx,plain =,-5,"
        );
        let exact = write(false);
        assert!(
            exact.contains("\"=HYPERLINK(\"\"http://x\"\")\",@SUM(A1),+1,-2+3,"),
            "{exact}"
        );
    }

    /// The JSON writer as it was: a `serde_json::Value` per cell.
    fn serde_reference(fields: &[String], rows: &[Vec<Cell<'_>>], pretty: bool) -> Vec<u8> {
        use chrono::SecondsFormat;
        let value = |c: &Cell<'_>| -> serde_json::Value {
            match c {
                Cell::Null => serde_json::Value::Null,
                Cell::Int(i) => (*i).into(),
                Cell::Text(s) | Cell::EscapedLines(s) => s.as_ref().into(),
                Cell::Time(ms) => DateTime::<Utc>::from_timestamp_millis(*ms)
                    .unwrap_or_default()
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
                    .into(),
                Cell::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.as_ref().into()),
            }
        };
        let mut out = Vec::new();
        for (r, cells) in rows.iter().enumerate() {
            if pretty {
                out.extend_from_slice(if r == 0 { b"[\n" } else { b",\n" });
            }
            out.extend_from_slice(if pretty { b"  {\n" } else { b"{" });
            for (i, (name, cell)) in fields.iter().zip(cells).enumerate() {
                if i > 0 {
                    out.extend_from_slice(if pretty { b",\n" } else { b"," });
                }
                if pretty {
                    out.extend_from_slice(b"    ");
                }
                serde_json::to_writer(&mut out, name).unwrap();
                out.extend_from_slice(if pretty { b": " } else { b":" });
                serde_json::to_writer(&mut out, &value(cell)).unwrap();
            }
            out.extend_from_slice(if pretty { b"\n  }" } else { b"}\n" });
        }
        if pretty {
            out.extend_from_slice(if rows.is_empty() { b"[]\n" } else { b"\n]\n" });
        }
        out
    }

    #[test]
    fn json_bytes_as_serde_json() {
        let fields: Vec<String> = ["id", "ts", "weird \"name\"\n", "extra", "msg", "received"]
            .map(String::from)
            .to_vec();
        let texts = [
            "",
            "plain log line, sshd[42]: Accepted password for root from 10.0.0.1",
            "\u{0}\u{1}\u{1f}\t\n\r\u{8}\u{c}\"\\/ \u{7f} é 日本 🙂 \u{2028}",
            "sixteen bytes!!\"and more than sixteen bytes of text \\ here",
        ];
        let extras = [
            r#"{"tz":"+0000","year_flag":"2025"}"#,
            r#"{"year_flag":"2025","tz":"+0000"}"#,
            r#"{"a":1.5,"b":[true,null,"\u00e9"]}"#,
            "not json",
            r#"{"tz":"+0000","year_flag":"2025"}"#,
            "",
        ];
        let times = [
            0,
            1_741_089_600_123,
            -1,
            253_402_300_800_000,
            1_741_089_600_999,
        ];
        let mut rows = Vec::new();
        for i in 0..60usize {
            rows.push(vec![
                if i % 7 == 0 {
                    Cell::Null
                } else {
                    Cell::Int(i as i64 * 1_000_003 - 5)
                },
                Cell::Time(times[i % times.len()]),
                Cell::Text(texts[i % texts.len()].into()),
                if i % 5 == 4 {
                    Cell::Null
                } else {
                    Cell::Json(extras[i % extras.len()].into())
                },
                Cell::Text(texts[(i + 1) % texts.len()].into()),
                Cell::Time(times[(i + 2) % times.len()] + 86_400_000 * (i as i64 % 3)),
            ]);
        }
        for n in [0, 1, rows.len()] {
            let mut buf = Vec::new();
            let mut w = Ndjson::new(&mut buf, fields.clone());
            rows[..n].iter().for_each(|r| w.row(r).unwrap());
            w.finish().unwrap();
            assert_eq!(buf, serde_reference(&fields, &rows[..n], false));
            let mut buf = Vec::new();
            let mut w = JsonArray::new(&mut buf, fields.clone());
            rows[..n].iter().for_each(|r| w.row(r).unwrap());
            w.finish().unwrap();
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                String::from_utf8(serde_reference(&fields, &rows[..n], true)).unwrap()
            );
        }
    }
}
