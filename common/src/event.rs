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

/// An event column, by name (the contract's names, [`ROW_COLUMNS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Id,
    Ts,
    Received,
    Host,
    Process,
    Pid,
    Facility,
    Severity,
    User,
    SourceHost,
    SourcePort,
    DestHost,
    DestPort,
    Protocol,
    Message,
    Raw,
    Parsed,
    Source,
    Extra,
}

impl Column {
    /// Every column, in table order.
    pub const ALL: [Column; 19] = [
        Column::Id,
        Column::Ts,
        Column::Received,
        Column::Host,
        Column::Process,
        Column::Pid,
        Column::Facility,
        Column::Severity,
        Column::User,
        Column::SourceHost,
        Column::SourcePort,
        Column::DestHost,
        Column::DestPort,
        Column::Protocol,
        Column::Message,
        Column::Raw,
        Column::Parsed,
        Column::Source,
        Column::Extra,
    ];

    /// The column's name.
    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Ts => "ts",
            Column::Received => "received",
            Column::Host => "host",
            Column::Process => "process",
            Column::Pid => "pid",
            Column::Facility => "facility",
            Column::Severity => "severity",
            Column::User => "user",
            Column::SourceHost => "source_host",
            Column::SourcePort => "source_port",
            Column::DestHost => "dest_host",
            Column::DestPort => "dest_port",
            Column::Protocol => "protocol",
            Column::Message => "message",
            Column::Raw => "raw",
            Column::Parsed => "parsed",
            Column::Source => "source",
            Column::Extra => "extra",
        }
    }

    /// The column called `name`.
    pub fn named(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_contract_list() {
        let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, ROW_COLUMNS);
        assert_eq!(Column::named("source_host"), Some(Column::SourceHost));
        assert_eq!(Column::named("shost"), None);
    }
}
