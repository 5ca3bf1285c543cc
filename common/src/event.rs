//! The event model: one row of an event table, with the contract's columns.

/// Every column of an event table, in table order (the contract's names).
pub const ROW_COLUMNS: [&str; 19] = [
    "id",
    "ts",
    "received",
    "host",
    "process",
    "pid",
    "facility",
    "severity",
    "user",
    "source_host",
    "source_port",
    "dest_host",
    "dest_port",
    "protocol",
    "message",
    "raw",
    "parsed",
    "source",
    "extra",
];

/// The columns an insert writes, in order: all but `id`.
pub const COLUMNS: &[&str] = ROW_COLUMNS.split_at(1).1;

/// The integer columns (the others are text).
pub const INT_COLUMNS: [&str; 7] = [
    "id",
    "ts",
    "received",
    "pid",
    "source_port",
    "dest_port",
    "parsed",
];

/// One log line as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// Event time, UTC epoch ms.
    pub ts: i64,
    /// Ingest time, UTC epoch ms.
    pub received: i64,
    pub host: Option<String>,
    pub process: Option<String>,
    pub pid: Option<i64>,
    pub facility: Option<&'static str>,
    pub severity: Option<&'static str>,
    pub user: Option<String>,
    pub source_host: Option<String>,
    pub source_port: Option<i64>,
    pub dest_host: Option<String>,
    pub dest_port: Option<i64>,
    pub protocol: Option<String>,
    pub message: String,
    /// The whole original line (lossy UTF-8, without the line terminator).
    pub raw: String,
    pub parsed: bool,
    /// File path or `stdin`.
    pub source: std::sync::Arc<str>,
    /// JSON object of further fields, or `None` for no extras.
    pub extra: Option<String>,
}

impl Event {
    /// Rough size in bytes, to keep a statement under the server's packet limit.
    pub fn approx_bytes(&self) -> usize {
        self.raw.len() + self.message.len() + self.extra.as_ref().map_or(0, String::len) + 160
    }
}
