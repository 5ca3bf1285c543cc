//! Output writers behind one trait: a table (comfy-table, collected), a JSON
//! array (streamed, pretty), NDJSON and CSV (streamed). Query code hands over
//! [`Cell`]s and never formats.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use siemstress_common::time::Zone;

/// One value of an output row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    /// An instant in UTC epoch ms (`ts`, `received`).
    Time(i64),
    /// Text that holds JSON (`extra`): embedded as JSON where valid.
    Json(String),
}

/// `2024-03-01T12:00:00.000Z`.
pub fn rfc3339_utc(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A sink for rows with a fixed list of field names.
pub trait RowWriter {
    /// Writes one row (`cells` in the order of the field names).
    fn row(&mut self, cells: &[Cell]) -> io::Result<()>;
    /// Completes the output (closing bracket, the table itself) and flushes.
    fn finish(&mut self) -> io::Result<()>;
}

/// A JSON value for a cell.
fn json_value(cell: &Cell) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Int(i) => (*i).into(),
        Cell::Text(s) => s.as_str().into(),
        Cell::Time(ms) => rfc3339_utc(*ms).into(),
        Cell::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| s.as_str().into()),
    }
}

fn write_json_object(
    out: &mut dyn Write,
    fields: &[String],
    cells: &[Cell],
    pretty: bool,
) -> io::Result<()> {
    out.write_all(if pretty { b"  {\n" } else { b"{" })?;
    for (i, (name, cell)) in fields.iter().zip(cells).enumerate() {
        if i > 0 {
            out.write_all(if pretty { b",\n" } else { b"," })?;
        }
        if pretty {
            out.write_all(b"    ")?;
        }
        serde_json::to_writer(&mut *out, name)?;
        out.write_all(if pretty { b": " } else { b":" })?;
        serde_json::to_writer(&mut *out, &json_value(cell))?;
    }
    out.write_all(if pretty { b"\n  }" } else { b"}" })
}

/// One JSON object per line.
pub struct Ndjson<W: Write> {
    out: W,
    fields: Vec<String>,
}

impl<W: Write> Ndjson<W> {
    pub fn new(out: W, fields: Vec<String>) -> Self {
        Self { out, fields }
    }
}

impl<W: Write> RowWriter for Ndjson<W> {
    fn row(&mut self, cells: &[Cell]) -> io::Result<()> {
        write_json_object(&mut self.out, &self.fields, cells, false)?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A pretty JSON array, written as rows arrive.
pub struct JsonArray<W: Write> {
    out: W,
    fields: Vec<String>,
    rows: u64,
}

impl<W: Write> JsonArray<W> {
    pub fn new(out: W, fields: Vec<String>) -> Self {
        Self {
            out,
            fields,
            rows: 0,
        }
    }
}

impl<W: Write> RowWriter for JsonArray<W> {
    fn row(&mut self, cells: &[Cell]) -> io::Result<()> {
        self.out
            .write_all(if self.rows == 0 { b"[\n" } else { b",\n" })?;
        self.rows += 1;
        write_json_object(&mut self.out, &self.fields, cells, true)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out
            .write_all(if self.rows == 0 { b"[]\n" } else { b"\n]\n" })?;
        self.out.flush()
    }
}

/// RFC 4180 CSV with a header row; NULL is an empty field.
pub struct Csv<W: Write> {
    out: csv::Writer<W>,
}

impl<W: Write> Csv<W> {
    pub fn new(out: W, fields: &[String]) -> io::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(fields).map_err(io::Error::other)?;
        Ok(Self { out })
    }
}

fn csv_err(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

impl<W: Write> RowWriter for Csv<W> {
    fn row(&mut self, cells: &[Cell]) -> io::Result<()> {
        for c in cells {
            let s = match c {
                Cell::Null => String::new(),
                Cell::Int(i) => i.to_string(),
                Cell::Text(s) | Cell::Json(s) => s.clone(),
                Cell::Time(ms) => rfc3339_utc(*ms),
            };
            self.out.write_field(s).map_err(csv_err)?;
        }
        self.out.write_record(None::<&[u8]>).map_err(csv_err)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A table for people: times in `zone`, printed when the rows are complete.
pub struct Table<W: Write> {
    out: W,
    table: comfy_table::Table,
    zone: Zone,
}

impl<W: Write> Table<W> {
    pub fn new(out: W, fields: &[String], zone: Zone, tty: bool) -> Self {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_header(fields.iter().map(|f| match f.as_str() {
                "ts" | "received" => format!("{f} ({})", zone.name()),
                _ => f.clone(),
            }));
        if !tty {
            table.force_no_tty();
        }
        Self { out, table, zone }
    }

    fn local(&self, ms: i64) -> String {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        let fmt = "%Y-%m-%d %H:%M:%S";
        match self.zone {
            Zone::Fixed(off) => utc.with_timezone(&off).format(fmt).to_string(),
            Zone::Iana(tz) => utc.with_timezone(&tz).format(fmt).to_string(),
        }
    }
}

impl<W: Write> RowWriter for Table<W> {
    fn row(&mut self, cells: &[Cell]) -> io::Result<()> {
        let row: Vec<String> = cells
            .iter()
            .map(|c| match c {
                Cell::Null => String::new(),
                Cell::Int(i) => i.to_string(),
                Cell::Text(s) | Cell::Json(s) => s.clone(),
                Cell::Time(ms) => self.local(*ms),
            })
            .collect();
        self.table.add_row(row);
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        if !self.table.is_empty() {
            writeln!(self.out, "{}", self.table)?;
        }
        self.out.flush()
    }
}

/// Several writers fed the same rows (stdout and `--json FILE`).
pub struct Tee(pub Vec<Box<dyn RowWriter>>);

impl RowWriter for Tee {
    fn row(&mut self, cells: &[Cell]) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|w| w.row(cells))
    }
    fn finish(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|w| w.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<String> {
        vec!["id".into(), "ts".into(), "extra".into(), "msg".into()]
    }

    fn cells() -> Vec<Cell> {
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
    fn csv_quotes() {
        let mut buf = Vec::new();
        let mut w = Csv::new(&mut buf, &fields()).unwrap();
        w.row(&cells()).unwrap();
        w.finish().unwrap();
        drop(w);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with("\"a, \"\"b\"\"\nc\"\n"), "{text}");
    }
}
