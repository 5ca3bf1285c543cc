//! The rule state machines, on event time. Pure: rows in, alerts and window
//! changes out; the caller fetches rows and persists state.
//!
//! Events arrive in `(ts, id)` order. Before an event at `t` is applied,
//! [`Evaluator::advance`] lets event time reach `t`: `pair` windows whose
//! end is before `t` close silently and `absence` windows fire (at their
//! end). "Within `window`" is inclusive: an event at exactly start + window
//! still counts.
//!
//! State is bounded per rule ([`Rule::max_keys`], `[rules] max_keys`): at
//! most that many keys hold a window; a new key over the cap first drops
//! the window that started earliest (an `absence` window dropped so never
//! fires). A threshold window holds at most `max(max_keys, threshold)`
//! events, its oldest dropped first. Drops are counted in [`Overflow`]
//! (the run summary and `--explain-rule` show them). A `distinct` threshold
//! counts its values in a map of value to events in the window, kept as
//! events enter and leave it: O(1) per event.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use regex::Regex;

use crate::rules::expr::{Fields, extra_map};
use crate::rules::{Kind, Metric, Rule, STEP_CAPTURE, column_alias, is_column};
use serde::{Deserialize, Serialize};
pub use siemstress_common::db::trigger::NewAlert;
use siemstress_common::db::trigger::{Scan, ScanSink};

/// Named regex captures of one event.
pub type Caps = BTreeMap<String, String>;

/// Window changes by key: `Some` JSON state to store, `None` to delete.
pub type Changes = Vec<(String, Option<String>)>;

/// The engine's maps and sets by key: foldhash (seeded per process) hashes
/// a key several times faster than SipHash, and every event hashes its key
/// a few times (issue 13).
pub type Map<K, V> = foldhash::HashMap<K, V>;
type Set<K> = foldhash::HashSet<K>;

/// A rule's windows by key.
pub type Windows = Map<String, Win>;

/// Rows of one chunk: ids, times, filter flags, and the column values in one
/// text arena (no allocation per value).
#[derive(Debug)]
pub struct Batch {
    /// Columns of every row (without `id` and `ts`), in value order.
    names: Vec<&'static str>,
    /// Per [`slot`] of a name: 1 + its index in `names`, 0 if no name has
    /// that slot, [`SHARED`] if several have (then they are compared).
    slots: [u8; SLOTS],
    /// Flags per row (one per filter of the scan).
    pub nflags: usize,
    text: String,
    /// `(start, end)` in `text`; `NULL` is `(usize::MAX, 0)`.
    spans: Vec<(usize, usize)>,
    flags: Vec<bool>,
    /// Rows in `(ts, id)` order after [`Batch::sort`].
    pub rows: Vec<Head>,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            slots: [0; SLOTS],
            nflags: 0,
            text: String::new(),
            spans: Vec::new(),
            flags: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// A row of a [`Batch`]: id, time, and where its values are.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub id: i64,
    pub ts: i64,
    at: usize,
}

const NULL: (usize, usize) = (usize::MAX, 0);

/// Slots of the column index of a [`Batch`].
const SLOTS: usize = 64;
const SHARED: u8 = u8::MAX;

/// A column name's slot: from its length, its first and last bytes and the
/// fourth from last (`_host`, `_port`); the event columns' names
/// (`ROW_COLUMNS`) have distinct slots.
fn slot(name: &str) -> usize {
    let b = name.as_bytes();
    let at = |i: usize| b.get(i).map_or(0, |&c| usize::from(c));
    let n = b.len();
    (n + at(0) + 2 * at(n.wrapping_sub(1)) + at(n.wrapping_sub(4))) % SLOTS
}

impl Batch {
    /// An empty batch of rows with columns `names` and `nflags` flags.
    pub fn new(names: Vec<&'static str>, nflags: usize) -> Self {
        let mut slots = [0u8; SLOTS];
        for (i, n) in names.iter().enumerate() {
            let s = &mut slots[slot(n)];
            *s = match (*s, u8::try_from(i + 1)) {
                (0, Ok(at)) if at != SHARED => at,
                _ => SHARED,
            };
        }
        Self {
            names,
            slots,
            nflags,
            ..Self::default()
        }
    }

    /// The index of column `name` in a row's values.
    fn index(&self, name: &str) -> Option<usize> {
        match self.slots[slot(name)] {
            0 => None,
            SHARED => self.names.iter().position(|n| *n == name),
            at => {
                let i = usize::from(at) - 1;
                (self.names[i] == name).then_some(i)
            }
        }
    }

    /// An empty batch for the rows of `scan`.
    pub fn of(scan: &Scan) -> Self {
        Self::new(scan.cols.clone(), scan.conds.len())
    }

    /// Orders the rows by `(ts, id)`.
    pub fn sort(&mut self) {
        self.rows.sort_unstable_by_key(|h| (h.ts, h.id));
    }

    /// Row `i` (in sorted order).
    pub fn ev(&self, i: usize) -> Ev<'_> {
        let h = self.rows[i];
        Ev {
            id: h.id,
            ts: h.ts,
            batch: self,
            at: h.at,
        }
    }
}

/// A scan fills the batch: per row `begin`, its flags, then its values in order.
impl ScanSink for Batch {
    fn begin(&mut self, id: i64, ts: i64) {
        let at = self.rows.len();
        self.rows.push(Head { id, ts, at });
    }

    fn flag(&mut self, v: bool) {
        self.flags.push(v);
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                let start = self.text.len();
                self.text.push_str(v);
                self.spans.push((start, self.text.len()));
            }
            None => self.spans.push(NULL),
        }
    }

    fn int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                use std::fmt::Write;
                let start = self.text.len();
                let _ = write!(self.text, "{v}");
                self.spans.push((start, self.text.len()));
            }
            None => self.spans.push(NULL),
        }
    }
}

/// One event row: a view into a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Ev<'a> {
    pub id: i64,
    pub ts: i64,
    batch: &'a Batch,
    at: usize,
}

impl<'a> Ev<'a> {
    /// A stored column by canonical name (NULL or not read: `None`).
    pub fn col(&self, name: &str) -> Option<&'a str> {
        let b = self.batch;
        // A row's checks look columns up a hundred times: by slot, one
        // comparison of names.
        let i = b.index(name)?;
        let (s, e) = b.spans[self.at * b.names.len() + i];
        (s != usize::MAX).then(|| &b.text[s..e])
    }

    /// Filter flag `i` of the scan.
    pub fn flag(&self, i: usize) -> bool {
        self.batch.flags[self.at * self.batch.nflags + i]
    }

    /// A column by name or alias; `ts` and `id` too.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_borrowed(name).map(Cow::into_owned)
    }

    /// As [`Ev::get`], a stored column's value borrowed from the batch.
    pub fn get_borrowed(&self, name: &str) -> Option<Cow<'a, str>> {
        match column_alias(name) {
            "id" => Some(Cow::Owned(self.id.to_string())),
            "ts" => Some(Cow::Owned(rfc3339(self.ts))),
            "received" => self
                .col("received")
                .and_then(|v| v.parse().ok())
                .map(|t| Cow::Owned(rfc3339(t))),
            c => match c.strip_prefix("extra.") {
                Some(k) => extra_map(self.col("extra")).remove(k).map(Cow::Owned),
                None => self.col(c).map(Cow::Borrowed),
            },
        }
    }

    /// The raw line (empty if not read).
    pub fn raw(&self) -> &'a str {
        self.col("raw").unwrap_or("")
    }
}

pub use siemstress_common::time::rfc3339;

/// An event as `where` expressions read it: its `extra` parsed once.
pub struct EvFields<'a> {
    pub ev: Ev<'a>,
    extra: std::cell::OnceCell<BTreeMap<String, String>>,
}

impl<'a> EvFields<'a> {
    pub fn new(ev: Ev<'a>) -> Self {
        Self {
            ev,
            extra: std::cell::OnceCell::new(),
        }
    }
}

impl Fields for EvFields<'_> {
    fn column(&self, name: &str) -> Option<&str> {
        self.ev.col(name)
    }

    fn extra(&self, key: &str) -> Option<String> {
        self.extra
            .get_or_init(|| extra_map(self.ev.col("extra")))
            .get(key)
            .cloned()
    }
}

/// Which part of a rule an event matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Match = 0,
    Reset = 1,
    First = 2,
    Second = 3,
}

impl Role {
    /// The role of a matcher named as in [`Rule::matchers`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "match" => Role::Match,
            "reset" => Role::Reset,
            "first" => Role::First,
            _ => Role::Second,
        }
    }
}

/// How an event matched a role: with its captures, or (a `second` with
/// back-references) to be checked against each open window.
#[derive(Debug, Clone, Copy)]
pub enum Hit<'a> {
    Caps(&'a Caps),
    Deferred,
}

/// An event with the roles it matched (indexed by [`Role`]).
#[derive(Debug, Clone, Copy)]
pub struct Cand<'a> {
    pub ev: Ev<'a>,
    pub roles: [Option<Hit<'a>>; 4],
}

impl<'a> Cand<'a> {
    /// An event that matched no role yet.
    pub fn new(ev: Ev<'a>) -> Self {
        Self {
            ev,
            roles: [None; 4],
        }
    }

    /// The captures of `role`, if the event matched it with captures.
    fn caps(&self, role: Role) -> Option<&'a Caps> {
        match self.roles[role as usize] {
            Some(Hit::Caps(c)) => Some(c),
            _ => None,
        }
    }

    /// True if the event matched at least one role.
    pub fn any(&self) -> bool {
        self.roles.iter().any(Option::is_some)
    }
}

/// A key's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "s")]
pub enum Win {
    /// threshold: counting the events (ts, id, distinct value) within the window.
    Count {
        start: i64,
        events: VecDeque<(i64, i64, Option<String>)>,
        /// `distinct`: events in the window by value (rebuilt from
        /// `events` when the state is loaded, not stored).
        #[serde(skip)]
        values: Map<Option<String>, u32>,
    },
    /// threshold: fired; events are absorbed until `end`.
    Absorb { start: i64, end: i64, absorbed: u64 },
    /// pair/absence: opened by a `first` event.
    Open {
        start: i64,
        first_id: i64,
        vars: BTreeMap<String, String>,
    },
}

impl Win {
    /// When the window started (the order in which windows are dropped over the cap).
    fn start(&self) -> i64 {
        match self {
            Win::Count { start, .. } | Win::Absorb { start, .. } | Win::Open { start, .. } => {
                *start
            }
        }
    }
}

/// The default of [`Rule::max_keys`] (`[rules] max_keys`).
pub const DEFAULT_MAX_KEYS: usize = 50_000;

/// State dropped over a rule's cap ([`Rule::max_keys`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Windows (keys) dropped, oldest first, to make room for a new key.
    pub windows: u64,
    /// Events dropped from full threshold windows, oldest first.
    pub events: u64,
}

impl Overflow {
    pub fn any(&self) -> bool {
        self.windows > 0 || self.events > 0
    }

    pub fn add(&mut self, o: Overflow) {
        self.windows += o.windows;
        self.events += o.events;
    }
}

/// True if `rule` is a threshold rule measured at the window's end.
fn at_end(rule: &Rule) -> bool {
    matches!(&rule.kind, Kind::Threshold(th) if th.bound.at_end())
}

/// The measure of a window's events (values as stored with each event).
pub fn measure(metric: &Metric, events: &VecDeque<(i64, i64, Option<String>)>) -> f64 {
    let nums = || {
        events
            .iter()
            .filter_map(|e| e.2.as_deref().and_then(|v| v.trim().parse::<f64>().ok()))
    };
    match metric {
        Metric::Count => events.len() as f64,
        Metric::Distinct => events
            .iter()
            .map(|e| e.2.as_deref())
            .collect::<BTreeSet<_>>()
            .len() as f64,
        Metric::Sum => nums().sum(),
        Metric::Avg => {
            let v: Vec<f64> = nums().collect();
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        }
        Metric::Percentile(p) => {
            // Nearest rank: the smallest value with at least p% of the values at or below it.
            let mut v: Vec<f64> = nums().collect();
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f64::total_cmp);
            let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
            v[rank.min(v.len()) - 1]
        }
        Metric::Steps { ordered, .. } => {
            let sets = events.iter().map(|e| {
                e.2.as_deref()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|i| i.parse::<usize>().ok())
                    .collect::<BTreeSet<_>>()
            });
            if *ordered {
                // The longest prefix of the steps that occurred in order
                // (one event per step; taking each step at its earliest is optimal).
                let mut next = 0usize;
                for s in sets {
                    if s.contains(&next) {
                        next += 1;
                    }
                }
                next as f64
            } else {
                sets.flatten().collect::<BTreeSet<_>>().len() as f64
            }
        }
    }
}

/// How close a key came to firing (for `--explain-rule`).
#[derive(Debug, Clone, Default)]
pub struct KeyStats {
    pub best: u64,
    pub best_start: i64,
    pub best_ts: i64,
    pub fired: u64,
    pub opened: u64,
}

/// How a `second` event finds its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecondLookup {
    /// The key comes from the second's own captures and columns.
    Direct,
    /// The key comes from columns; back-references are checked on the window found.
    ByColumns,
    /// The key needs the open first's captures: every open window is tried.
    Scan,
}

/// The state of one rule over one event table.
pub struct Evaluator<'r> {
    rule: &'r Rule,
    table: String,
    window: i64,
    /// Columns the rule reads (a `first`'s are kept in its window).
    cols: Vec<&'static str>,
    /// The message uses `{raw}`: keep it in the window variables.
    keep_raw: bool,
    pub windows: Windows,
    /// Keys whose window changed or was removed since the last [`Evaluator::take_dirty`].
    dirty: Set<String>,
    /// Keys with a row in the store (so that only those are deleted).
    persisted: Set<String>,
    /// Open pair/absence windows by (end, first id); entries of windows
    /// since closed are skipped when met.
    expiry: BTreeSet<(i64, i64, String)>,
    /// Threshold windows by (start, key): the oldest is dropped first.
    age: BTreeSet<(i64, String)>,
    /// At most this many keys hold a window.
    pub max_keys: usize,
    /// At most this many events in one threshold window.
    max_events: usize,
    /// What was dropped over the caps.
    pub overflow: Overflow,
    lookup: SecondLookup,
    /// `second` regexes compiled for an open window (key -> first id, regexes).
    compiled: Map<String, (i64, Arc<Vec<Regex>>)>,
    pub alerts: Vec<NewAlert>,
    pub stats: Option<HashMap<String, KeyStats>>,
}

impl<'r> Evaluator<'r> {
    /// An evaluator with the stored windows `windows`.
    pub fn new(rule: &'r Rule, table: &str, windows: Windows) -> Self {
        let window = rule.window_ms().unwrap_or(0);
        let expiry = windows
            .iter()
            .filter_map(|(k, w)| match w {
                Win::Open {
                    start, first_id, ..
                } => Some((start.saturating_add(window), *first_id, k.clone())),
                Win::Count { start, events, .. } if at_end(rule) => events
                    .front()
                    .map(|e| (start.saturating_add(window), e.1, k.clone())),
                _ => None,
            })
            .collect();
        let lookup = match &rule.kind {
            Kind::Pair(p) | Kind::Absence(p) => {
                let s = &p.second;
                let caps = s.captures();
                let by_cols = rule.key.names().all(is_column);
                let direct = rule.key.names().all(|n| is_column(n) || caps.contains(n));
                if !s.has_backrefs() && direct {
                    SecondLookup::Direct
                } else if by_cols {
                    SecondLookup::ByColumns
                } else {
                    SecondLookup::Scan
                }
            }
            _ => SecondLookup::Direct,
        };
        let mut windows = windows;
        let threshold = match &rule.kind {
            Kind::Threshold(th) => Some(th),
            _ => None,
        };
        let mut age = BTreeSet::new();
        if let Some(th) = threshold {
            for (k, w) in &mut windows {
                age.insert((w.start(), k.clone()));
                if let Win::Count { events, values, .. } = w
                    && th.metric == Metric::Distinct
                {
                    *values = count_values(events);
                }
            }
        }
        let max_keys = rule.max_keys.unwrap_or(DEFAULT_MAX_KEYS).max(1);
        let max_events = threshold.map_or(0, |th| {
            max_keys.max(usize::try_from(th.threshold).unwrap_or(usize::MAX))
        });
        let mut e = Self {
            rule,
            table: table.to_owned(),
            window,
            cols: rule.needed_columns().into_iter().collect(),
            keep_raw: rule.message.names().any(|n| n == "raw"),
            persisted: windows.keys().cloned().collect(),
            windows,
            dirty: Set::default(),
            expiry,
            age,
            max_keys,
            max_events,
            overflow: Overflow::default(),
            lookup,
            compiled: Map::default(),
            alerts: Vec::new(),
            stats: None,
        };
        // Stored under a higher cap (or before there was one): the cap
        // applies to the stored state too.
        while e.windows.len() > e.max_keys {
            if !e.drop_oldest() {
                break;
            }
        }
        e
    }

    /// Drops the window that started earliest (over the cap); false if none.
    fn drop_oldest(&mut self) -> bool {
        let key = if matches!(self.rule.kind, Kind::Threshold(_)) {
            self.age.pop_first().map(|(_, k)| k)
        } else {
            let mut found = None;
            while let Some((_, first_id, key)) = self.expiry.pop_first() {
                if matches!(self.windows.get(&key), Some(Win::Open { first_id: f, .. }) if *f == first_id)
                {
                    found = Some(key);
                    break;
                }
            }
            found
        };
        let Some(key) = key.or_else(|| self.windows.keys().next().cloned()) else {
            return false;
        };
        self.remove(&key);
        self.overflow.windows += 1;
        true
    }

    /// Keys changed since the last call: `Some(state)` (JSON) to store,
    /// `None` to delete (only keys that were stored). Marks the result as
    /// stored. Encoded from the window in place: under key churn every
    /// event changes a window, and a copy of each doubled the work.
    pub fn take_dirty(&mut self) -> serde_json::Result<Changes> {
        let mut v: Changes = Vec::with_capacity(self.dirty.len());
        for k in std::mem::take(&mut self.dirty) {
            match self.windows.get(&k) {
                Some(w) => {
                    let json = serde_json::to_string(w)?;
                    if !self.persisted.contains(&k) {
                        self.persisted.insert(k.clone());
                    }
                    v.push((k, Some(json)));
                }
                None => {
                    if self.persisted.remove(&k) {
                        v.push((k, None));
                    }
                }
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    fn touch(&mut self, key: &str) {
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
    }

    fn set(&mut self, key: String, w: Win) {
        self.touch(&key);
        let old = self.windows.get(&key).map(Win::start);
        if old.is_none() && self.windows.len() >= self.max_keys {
            self.drop_oldest();
        }
        if matches!(self.rule.kind, Kind::Threshold(_)) && old != Some(w.start()) {
            if let Some(old) = old {
                self.age.remove(&(old, key.clone()));
            }
            self.age.insert((w.start(), key.clone()));
        }
        self.windows.insert(key, w);
    }

    fn remove(&mut self, key: &str) -> Option<Win> {
        self.compiled.remove(key);
        let w = self.windows.remove(key);
        if let Some(w) = &w {
            self.touch(key);
            match w {
                Win::Open {
                    start, first_id, ..
                } => {
                    // Closed by a second: its expiry entry goes too, so that
                    // the index holds only open windows (within the cap).
                    self.expiry.remove(&(
                        start.saturating_add(self.window),
                        *first_id,
                        key.to_owned(),
                    ));
                }
                Win::Count { start, events, .. } if at_end(self.rule) => {
                    // Reset or dropped over the cap before its end: as above.
                    self.age.remove(&(*start, key.to_owned()));
                    if let Some(first) = events.front() {
                        self.expiry.remove(&(
                            start.saturating_add(self.window),
                            first.1,
                            key.to_owned(),
                        ));
                    }
                }
                _ => {
                    self.age.remove(&(w.start(), key.to_owned()));
                }
            }
        }
        w
    }

    fn render_key(&self, caps: &Caps, ev: &Ev) -> String {
        self.rule.key.render_borrowed(|n| {
            caps.get(n)
                .map(|v| Cow::Borrowed(v.as_str()))
                .or_else(|| ev.get_borrowed(n))
        })
    }

    fn message(
        &self,
        caps: &Caps,
        ev: Option<&Ev>,
        fallback: &Caps,
        key: &str,
        count: i64,
        first_ts: i64,
    ) -> String {
        self.rule.message.render_borrowed(|n| {
            if let Some(v) = caps.get(n) {
                return Some(Cow::Borrowed(v.as_str()));
            }
            match n {
                "count" => return Some(Cow::Owned(count.to_string())),
                "key" => return Some(Cow::Borrowed(key)),
                "rule" => return Some(Cow::Borrowed(self.rule.name.as_str())),
                "first_ts" => return Some(Cow::Owned(rfc3339(first_ts))),
                "window" => {
                    return Some(Cow::Owned(
                        humantime::format_duration(std::time::Duration::from_millis(
                            self.window as u64,
                        ))
                        .to_string(),
                    ));
                }
                _ => {}
            }
            ev.and_then(|e| e.get_borrowed(n))
                .or_else(|| fallback.get(n).map(String::as_str).map(Cow::Borrowed))
                .or_else(|| {
                    fallback
                        .get(column_alias(n))
                        .map(String::as_str)
                        .map(Cow::Borrowed)
                })
        })
    }

    fn stat(&mut self, key: &str) -> Option<&mut KeyStats> {
        self.stats
            .as_mut()
            .map(|s| s.entry(key.to_owned()).or_default())
    }

    /// Event time reaches `t`: windows that ended before `t` close (pair,
    /// silently) or fire (absence).
    pub fn advance(&mut self, t: i64) {
        if at_end(self.rule) {
            return self.advance_at_end(t);
        }
        if !matches!(self.rule.kind, Kind::Pair(_) | Kind::Absence(_)) {
            return;
        }
        while let Some((end, first_id, _)) = self.expiry.first() {
            if *end >= t {
                break;
            }
            let (end, first_id) = (*end, *first_id);
            let (_, _, key) = self.expiry.pop_first().expect("first");
            let still_open = matches!(self.windows.get(&key), Some(Win::Open { first_id: f, .. }) if *f == first_id);
            if !still_open {
                continue;
            }
            let Some(Win::Open { start, vars, .. }) = self.remove(&key) else {
                continue;
            };
            if matches!(self.rule.kind, Kind::Absence(_)) {
                let message = self.message(&Caps::new(), None, &vars, &key, 1, start);
                self.fire(key, end, start, 1, message, vec![first_id]);
            }
        }
    }

    /// Drops state that no in-order event can change any more (event time `t`).
    pub fn collect_garbage(&mut self, t: i64) {
        if !matches!(self.rule.kind, Kind::Threshold(_)) {
            return;
        }
        let w = self.window;
        // Only a window that started before `t - w` can be stale: a count's
        // events are at or after its start, an absorbing window ends at
        // start + w. The age index orders the windows by start, so the
        // windows visited are about those removed, not all of them.
        let cut = t.saturating_sub(w);
        let stale: Vec<String> = self
            .age
            .iter()
            .take_while(|(start, _)| *start < cut)
            .filter(|(_, k)| match self.windows.get(k) {
                Some(Win::Count { events, .. }) => events.back().is_none_or(|e| e.0 < t - w),
                Some(Win::Absorb { end, .. }) => *end < t,
                Some(Win::Open { .. }) | None => false,
            })
            .map(|(_, k)| k.clone())
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    fn fire(
        &mut self,
        key: String,
        ts: i64,
        first_ts: i64,
        count: i64,
        message: String,
        events: Vec<i64>,
    ) {
        if let Some(s) = self.stat(&key) {
            s.fired += 1;
        }
        self.alerts.push(NewAlert {
            rule: self.rule.name.clone(),
            severity: self.rule.severity.clone(),
            key,
            ts,
            first_ts,
            count,
            message,
            event_table: self.table.clone(),
            window_end: self.rule.window_ms().map(|w| first_ts.saturating_add(w)),
            events,
        });
    }

    /// Applies one candidate event (call [`Evaluator::advance`] first).
    pub fn apply(&mut self, c: &Cand) {
        match &self.rule.kind {
            Kind::Single(_) => {
                if let Some(caps) = c.caps(Role::Match) {
                    let key = self.render_key(caps, &c.ev);
                    let message = self.message(caps, Some(&c.ev), &Caps::new(), &key, 1, c.ev.ts);
                    self.fire(key, c.ev.ts, c.ev.ts, 1, message, vec![c.ev.id]);
                }
            }
            Kind::Threshold(_) => self.threshold(c),
            Kind::Pair(_) | Kind::Absence(_) => {
                let mut consumed = false;
                if let Some(hit) = c.roles[Role::Second as usize] {
                    let caps = match hit {
                        Hit::Caps(c) => Some(c),
                        Hit::Deferred => None,
                    };
                    consumed = self.second(&c.ev, caps);
                }
                if !consumed && let Some(caps) = c.caps(Role::First) {
                    self.first(&c.ev, caps);
                }
            }
            Kind::SnapshotChange(_) => {}
        }
    }

    fn threshold(&mut self, c: &Cand) {
        let rule = self.rule;
        let Kind::Threshold(th) = &rule.kind else {
            return;
        };
        let ev = &c.ev;
        let t = ev.ts;
        if let Some(caps) = c.caps(Role::Reset) {
            let key = self.render_key(caps, ev);
            self.remove(&key);
            return;
        }
        let Some(caps) = c.caps(Role::Match) else {
            return;
        };
        let key = self.render_key(caps, ev);
        let w = self.window;
        let distinct_values = th.metric == Metric::Distinct;
        let value = match &th.metric {
            Metric::Count => None,
            Metric::Steps { .. } => caps.get(STEP_CAPTURE).cloned(),
            Metric::Distinct => th.distinct.as_ref().map(|d| {
                caps.get(d)
                    .cloned()
                    .or_else(|| ev.get(d))
                    .unwrap_or_default()
            }),
            Metric::Sum | Metric::Avg | Metric::Percentile(_) => {
                let d = th.distinct.as_deref().unwrap_or_default();
                match caps.get(d).cloned().or_else(|| ev.get(d)) {
                    Some(v) if v.trim().parse::<f64>().is_ok_and(f64::is_finite) => Some(v),
                    // No number: not an event of this measure.
                    _ => return,
                }
            }
        };
        if th.bound.at_end() {
            // A fixed window from its first event, measured at its end
            // (`advance` closed the windows that ended before `t`).
            if let Some(Win::Count { start, events, .. }) = self.windows.get_mut(&key) {
                events.push_back((t, ev.id, value));
                let first = events.front().map(|e| e.1);
                let mut dropped = 0;
                while events.len() > self.max_events {
                    events.pop_front();
                    dropped += 1;
                }
                if dropped > 0 {
                    // The expiry entry names the first event (as on load):
                    // it follows the new first, so that `remove` finds it.
                    let end = start.saturating_add(w);
                    if let (Some(old), Some(new)) = (first, events.front().map(|e| e.1)) {
                        self.expiry.remove(&(end, old, key.clone()));
                        self.expiry.insert((end, new, key.clone()));
                    }
                }
                self.overflow.events += dropped;
                self.touch(&key);
            } else {
                self.set(
                    key.clone(),
                    Win::Count {
                        start: t,
                        events: VecDeque::from([(t, ev.id, value)]),
                        values: Map::default(),
                    },
                );
                self.expiry.insert((t.saturating_add(w), ev.id, key));
            }
            return;
        }
        let (mut events, mut values) = match self.windows.get_mut(&key) {
            Some(Win::Absorb { end, absorbed, .. }) if t <= *end => {
                *absorbed += 1;
                self.touch(&key);
                return;
            }
            Some(Win::Count { events, values, .. }) => {
                (std::mem::take(events), std::mem::take(values))
            }
            _ => (VecDeque::new(), Map::default()),
        };
        // The window ran out: slide to the oldest event still within it.
        let oldest = t.saturating_sub(w);
        while events.front().is_some_and(|e| e.0 < oldest) {
            leave(&mut events, &mut values);
        }
        if distinct_values {
            *values.entry(value.clone()).or_default() += 1;
        }
        events.push_back((t, ev.id, value));
        // Full (a distinct window of repeated values): the oldest go.
        while events.len() > self.max_events {
            leave(&mut events, &mut values);
            self.overflow.events += 1;
        }
        let start = events.front().map_or(t, |e| e.0);
        let m = match th.metric {
            Metric::Count => events.len() as f64,
            Metric::Distinct => values.len() as f64,
            _ => measure(&th.metric, &events),
        };
        let count = m.round() as u64;
        if let Some(s) = self.stat(&key)
            && count > s.best
        {
            s.best = count;
            s.best_start = start;
            s.best_ts = t;
        }
        if th.bound.holds(m) {
            let ids = events.iter().map(|e| e.1).collect();
            let message = self.message(caps, Some(ev), &Caps::new(), &key, count as i64, start);
            let end = start.saturating_add(w);
            self.fire(key.clone(), t, start, count as i64, message, ids);
            self.set(
                key,
                Win::Absorb {
                    start,
                    end,
                    absorbed: 0,
                },
            );
        } else {
            self.set(
                key,
                Win::Count {
                    start,
                    events,
                    values,
                },
            );
        }
    }

    /// A threshold rule with an upper bound: windows that ended before `t`
    /// are measured, and fire at their end if the measure is within bounds.
    fn advance_at_end(&mut self, t: i64) {
        let rule = self.rule;
        let Kind::Threshold(th) = &rule.kind else {
            return;
        };
        let w = self.window;
        while let Some((end, _, _)) = self.expiry.first() {
            if *end >= t {
                break;
            }
            let end = *end;
            let (_, _, key) = self.expiry.pop_first().expect("first");
            // Still the window this entry was made for (not one dropped
            // over the cap and opened again).
            let current = matches!(self.windows.get(&key),
                Some(Win::Count { start, .. }) if start.saturating_add(w) == end);
            if !current {
                continue;
            }
            let Some(Win::Count { start, events, .. }) = self.remove(&key) else {
                continue;
            };
            let m = measure(&th.metric, &events);
            let count = m.round() as u64;
            if let Some(s) = self.stat(&key)
                && count > s.best
            {
                s.best = count;
                s.best_start = start;
                s.best_ts = end;
            }
            if th.bound.holds(m) {
                let message =
                    self.message(&Caps::new(), None, &Caps::new(), &key, count as i64, start);
                let ids = events.iter().map(|e| e.1).collect();
                self.fire(key, end, start, count as i64, message, ids);
            }
        }
    }

    /// Variables an open window keeps from its `first` event: the rule's
    /// columns (`raw` only if the message uses it), `ts`, `id` and the captures.
    fn first_vars(&self, ev: &Ev, caps: &Caps) -> Caps {
        let mut vars: Caps = self
            .cols
            .iter()
            .filter(|c| **c != "raw" || self.keep_raw)
            .filter_map(|c| ev.col(c).map(|v| (c.to_string(), v.to_owned())))
            .collect();
        vars.insert("ts".into(), rfc3339(ev.ts));
        vars.insert("id".into(), ev.id.to_string());
        vars.extend(caps.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars
    }

    fn first(&mut self, ev: &Ev, caps: &Caps) {
        let key = self.render_key(caps, ev);
        if let Some(Win::Open { start, .. }) = self.windows.get(&key)
            && ev.ts <= start.saturating_add(self.window)
        {
            return; // a further first does not restart the window
        }
        let vars = self.first_vars(ev, caps);
        if let Some(s) = self.stat(&key) {
            s.opened += 1;
            s.best = s.best.max(1);
        }
        // After `set`: a window dropped over the cap to make room is
        // found through the expiry index, which must not hold this one yet.
        self.set(
            key.clone(),
            Win::Open {
                start: ev.ts,
                first_id: ev.id,
                vars,
            },
        );
        self.expiry
            .insert((ev.ts.saturating_add(self.window), ev.id, key));
    }

    /// The `second` regexes of the open window `key`, compiled once.
    fn compiled_for(&mut self, key: &str) -> Option<Arc<Vec<Regex>>> {
        let Some(Win::Open { first_id, vars, .. }) = self.windows.get(key) else {
            return None;
        };
        if let Some((f, res)) = self.compiled.get(key)
            && f == first_id
        {
            return Some(res.clone());
        }
        let rule = self.rule;
        let (Kind::Pair(p) | Kind::Absence(p)) = &rule.kind else {
            return None;
        };
        let res = Arc::new(p.second.instantiate(vars));
        self.compiled
            .insert(key.to_owned(), (*first_id, res.clone()));
        Some(res)
    }

    /// A `second` event: closes (pair: fires) the windows it matches.
    fn second(&mut self, ev: &Ev, caps: Option<&Caps>) -> bool {
        let rule = self.rule;
        let (Kind::Pair(p) | Kind::Absence(p)) = &rule.kind else {
            return false;
        };
        let second = &p.second;
        let mut hits: Vec<(String, Caps)> = Vec::new();
        match self.lookup {
            SecondLookup::Direct => {
                let Some(caps) = caps else { return false };
                let key = self.render_key(caps, ev);
                if self.windows.contains_key(&key) {
                    hits.push((key, caps.clone()));
                }
            }
            SecondLookup::ByColumns => {
                let key = self.render_key(&Caps::new(), ev);
                if let Some(res) = self.compiled_for(&key)
                    && let Some(c) = second.check_instantiated(ev.raw(), &res)
                {
                    hits.push((key, c));
                }
            }
            SecondLookup::Scan => {
                // Open windows in (start, first id) order: the expiry index order.
                let open: Vec<(i64, String)> =
                    self.expiry.iter().map(|e| (e.1, e.2.clone())).collect();
                for (first_id, key) in open {
                    let Some(Win::Open { first_id: f, .. }) = self.windows.get(&key) else {
                        continue;
                    };
                    if *f != first_id {
                        continue;
                    }
                    let Some(res) = self.compiled_for(&key) else {
                        continue;
                    };
                    let Some(c) = second.check_instantiated(ev.raw(), &res) else {
                        continue;
                    };
                    let Some(Win::Open { vars, .. }) = self.windows.get(&key) else {
                        continue;
                    };
                    let k = self.rule.key.render(|n| {
                        c.get(n)
                            .cloned()
                            .or_else(|| ev.get(n))
                            .or_else(|| vars.get(n).cloned())
                    });
                    if k == key {
                        hits.push((key, c));
                    }
                }
            }
        }
        let mut consumed = false;
        for (key, c) in hits {
            let Some(Win::Open {
                start, first_id, ..
            }) = self.windows.get(&key)
            else {
                continue;
            };
            let (start, first_id) = (*start, *first_id);
            if ev.ts > start.saturating_add(self.window) {
                // Ran out (a late event): closes silently.
                self.remove(&key);
                continue;
            }
            if ev.id == first_id {
                continue;
            }
            let Some(Win::Open { vars, .. }) = self.remove(&key) else {
                continue;
            };
            consumed = true;
            if matches!(self.rule.kind, Kind::Pair(_)) {
                let message = self.message(&c, Some(ev), &vars, &key, 2, start);
                self.fire(key, ev.ts, start, 2, message, vec![first_id, ev.id]);
            }
        }
        consumed
    }
}

/// Events of a window by distinct value.
fn count_values(events: &VecDeque<(i64, i64, Option<String>)>) -> Map<Option<String>, u32> {
    let mut m: Map<Option<String>, u32> = Map::default();
    for e in events {
        *m.entry(e.2.clone()).or_default() += 1;
    }
    m
}

/// The oldest event leaves a threshold window (and its distinct value's count).
fn leave(events: &mut VecDeque<(i64, i64, Option<String>)>, values: &mut Map<Option<String>, u32>) {
    let Some((_, _, v)) = events.pop_front() else {
        return;
    };
    if let Some(n) = values.get_mut(&v) {
        *n -= 1;
        if *n == 0 {
            values.remove(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn rule(text: &str) -> Rule {
        RuleSet::from_file_text(text, "t.toml", &[])
            .unwrap()
            .rules
            .remove(0)
    }

    /// Runs `events` (ts seconds, raw line) through the rule; roles from each matcher.
    fn run(r: &Rule, events: &[(i64, &str)]) -> Vec<NewAlert> {
        let mut e = Evaluator::new(r, "t", Windows::default());
        feed(&mut e, events);
        e.advance(i64::MAX);
        e.alerts
    }

    /// Applies `events` to `e` (ids from 1), without the final advance.
    fn feed(e: &mut Evaluator, events: &[(i64, &str)]) {
        let r = e.rule;
        let mut batch = Batch::new(vec!["raw"], 0);
        for (i, (ts, raw)) in events.iter().enumerate() {
            batch.begin(i as i64 + 1, ts * 1000);
            batch.text(Some(raw));
        }
        for i in 0..batch.rows.len() {
            let ev = batch.ev(i);
            let caps: Vec<(Role, Option<Caps>)> = r
                .matchers()
                .into_iter()
                .filter_map(|(name, m)| {
                    let role = Role::from_name(name);
                    if m.has_backrefs() {
                        Some((role, None))
                    } else {
                        m.check_event(&EvFields::new(ev)).map(|c| (role, Some(c)))
                    }
                })
                .collect();
            let mut c = Cand::new(ev);
            for (role, caps) in &caps {
                c.roles[*role as usize] = Some(match caps {
                    Some(caps) => Hit::Caps(caps),
                    None => Hit::Deferred,
                });
            }
            e.advance(ev.ts);
            e.apply(&c);
        }
    }

    const TH: &str = "[[rule]]\nname = \"th\"\ntype = \"threshold\"\nwindow = \"60s\"\nthreshold = 3\n\
        match = { regex = 'fail (?P<ip>\\S+)' }\nreset = { regex = 'ok (?P<ip>\\S+)' }\nkey = \"{ip}\"\n";

    #[test]
    fn threshold_edge_is_inclusive() {
        let r = rule(TH);
        let a = run(&r, &[(0, "fail a"), (30, "fail a"), (60, "fail a")]);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].ts, a[0].first_ts, a[0].count), (60_000, 0, 3));
        let a = run(&r, &[(0, "fail a"), (30, "fail a"), (61, "fail a")]);
        assert!(a.is_empty());
    }

    #[test]
    fn threshold_slides_absorbs_and_resets() {
        let r = rule(TH);
        // Slides: 0 and 30, then 70 drops 0: window 30..90; 80 makes 3.
        let a = run(
            &r,
            &[
                (0, "fail a"),
                (30, "fail a"),
                (70, "fail a"),
                (80, "fail a"),
            ],
        );
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].first_ts, a[0].ts), (30_000, 80_000));
        assert_eq!(a[0].events, [2, 3, 4]);
        // Absorbs until 30+60=90, restarts at 91.
        let evs = [
            (0, "fail a"),
            (1, "fail a"),
            (2, "fail a"),
            (3, "fail a"),
            (60, "fail a"),
            (61, "fail a"),
            (62, "fail a"),
            (63, "fail a"),
        ];
        let a = run(&r, &evs);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[1].first_ts, 61_000);
        // Reset clears the count.
        let a = run(
            &r,
            &[(0, "fail a"), (1, "fail a"), (2, "ok a"), (3, "fail a")],
        );
        assert!(a.is_empty());
    }

    #[test]
    fn pair_and_absence() {
        let p = "[[rule]]\nname = \"p\"\ntype = \"pair\"\nwindow = \"10s\"\n\
                 first = { regex = 'open (?P<s>\\d+)' }\nsecond = { regex = 'close {s}$' }\nkey = \"{s}\"\n\
                 message = \"{s} closed\"\n";
        let a = run(
            &rule(p),
            &[
                (0, "open 1"),
                (5, "open 2"),
                (10, "close 1"),
                (16, "close 2"),
            ],
        );
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].key.as_str(), a[0].ts, a[0].message.as_str()),
            ("1", 10_000, "1 closed")
        );
        let ab = p.replace("\"pair\"", "\"absence\"");
        let a = run(
            &rule(&ab),
            &[(0, "open 1"), (5, "open 2"), (10, "close 1"), (16, "x")],
        );
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].key.as_str(), a[0].ts), ("2", 15_000));
    }

    const SCAN: &str = "[[rule]]\nname = \"scan\"\ntype = \"threshold\"\nwindow = \"10s\"\nthreshold = 4\n\
        match = { regex = 'hit (?P<ip>\\S+) (?P<port>\\d+)' }\nreset = { regex = 'ok (?P<ip>\\S+)' }\n\
        key = \"{ip}\"\ndistinct = \"port\"\n";

    /// The distinct count as it was before the value map: every event of
    /// the window kept, a set of values rebuilt per event (quadratic), as
    /// the reference for (key, ts, first_ts, count, event ids).
    fn distinct_reference(
        events: &[(i64, &str)],
        w: i64,
        threshold: usize,
    ) -> Vec<(String, i64, i64, i64, Vec<i64>)> {
        enum S {
            Count(Vec<(i64, i64, String)>),
            Absorb(i64),
        }
        let mut keys: HashMap<String, S> = HashMap::new();
        let mut out = Vec::new();
        for (i, (sec, raw)) in events.iter().enumerate() {
            let (t, id) = (sec * 1000, i as i64 + 1);
            let f: Vec<&str> = raw.split(' ').collect();
            if f[0] == "ok" {
                keys.remove(f[1]);
                continue;
            }
            let (ip, port) = (f[1].to_owned(), f[2].to_owned());
            let mut evs = match keys.remove(&ip) {
                Some(S::Absorb(end)) if t <= end => {
                    keys.insert(ip, S::Absorb(end));
                    continue;
                }
                Some(S::Count(evs)) => evs,
                _ => Vec::new(),
            };
            if let Some(first) = evs.first()
                && t > first.0 + w
            {
                evs.retain(|e| e.0 >= t - w);
            }
            evs.push((t, id, port));
            let n = evs
                .iter()
                .map(|e| e.2.as_str())
                .collect::<BTreeSet<_>>()
                .len();
            if n >= threshold {
                let start = evs[0].0;
                out.push((
                    ip.clone(),
                    t,
                    start,
                    n as i64,
                    evs.iter().map(|e| e.1).collect(),
                ));
                keys.insert(ip, S::Absorb(start + w));
            } else {
                keys.insert(ip, S::Count(evs));
            }
        }
        out
    }

    /// A small deterministic generator (no dependency for one test).
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn distinct_value_map_gives_the_alerts_of_a_rebuilt_set() {
        let r = rule(SCAN);
        for round in 0..200u64 {
            let mut seed = round + 1;
            let mut t = 0;
            let mut lines = Vec::new();
            for _ in 0..(20 + lcg(&mut seed) % 200) {
                t += (lcg(&mut seed) % 4) as i64;
                let ip = lcg(&mut seed) % 3;
                let line = if lcg(&mut seed).is_multiple_of(25) {
                    format!("ok 10.0.0.{ip}")
                } else {
                    format!("hit 10.0.0.{ip} {}", lcg(&mut seed) % 6)
                };
                lines.push((t, line));
            }
            let evs: Vec<(i64, &str)> = lines.iter().map(|(t, l)| (*t, l.as_str())).collect();
            let got: Vec<_> = run(&r, &evs)
                .into_iter()
                .map(|a| (a.key, a.ts, a.first_ts, a.count, a.events))
                .collect();
            assert_eq!(got, distinct_reference(&evs, 10_000, 4), "round {round}");
        }
    }

    #[test]
    fn columns_are_found_by_slot() {
        use siemstress_common::event::ROW_COLUMNS;
        let slots: BTreeSet<usize> = ROW_COLUMNS.iter().map(|c| slot(c)).collect();
        assert_eq!(slots.len(), ROW_COLUMNS.len(), "one comparison per lookup");
        // Names that share a slot are compared (`ab`, `ba`: same length,
        // bytes in other places).
        for names in [ROW_COLUMNS.to_vec(), vec!["raw", "ab", "xb", "ba", "user"]] {
            let b = Batch::new(names.clone(), 0);
            for (i, n) in names.iter().enumerate() {
                assert_eq!(b.index(n), Some(i), "{n}");
                assert_eq!(b.index(&n.to_uppercase()), None, "{n}");
            }
            assert_eq!(b.index("nosuch"), None);
            assert_eq!(b.index(""), None);
        }
        assert_eq!(Batch::default().index("raw"), None);
    }

    #[test]
    fn garbage_collection_removes_exactly_the_stale_windows() {
        // The age index finds the same windows as visiting every one.
        let stale = |e: &Evaluator, t: i64| -> BTreeSet<String> {
            let w = e.window;
            e.windows
                .iter()
                .filter(|(_, win)| match win {
                    Win::Count { events, .. } => events.back().is_none_or(|x| x.0 < t - w),
                    Win::Absorb { end, .. } => *end < t,
                    Win::Open { .. } => false,
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        for src in [TH, SCAN] {
            let r = rule(src);
            for round in 0..100u64 {
                let mut seed = round + 7;
                let mut e = Evaluator::new(&r, "t", Windows::default());
                let mut t = 0;
                for _ in 0..20 {
                    let mut lines = Vec::new();
                    for _ in 0..(lcg(&mut seed) % 30) {
                        t += (lcg(&mut seed) % 9) as i64;
                        let ip = lcg(&mut seed) % 12;
                        let line = match lcg(&mut seed) % 20 {
                            0 => format!("ok 10.0.0.{ip}"),
                            _ => {
                                format!("fail 10.0.0.{ip}\nhit 10.0.0.{ip} {}", lcg(&mut seed) % 5)
                            }
                        };
                        lines.push((t, line));
                    }
                    let evs: Vec<(i64, &str)> =
                        lines.iter().map(|(t, l)| (*t, l.as_str())).collect();
                    feed(&mut e, &evs);
                    let at = (t + (lcg(&mut seed) % 80) as i64) * 1000;
                    let gone = stale(&e, at);
                    let before: BTreeSet<String> = e.windows.keys().cloned().collect();
                    e.collect_garbage(at);
                    let after: BTreeSet<String> = e.windows.keys().cloned().collect();
                    let expect: BTreeSet<String> = before.difference(&gone).cloned().collect();
                    assert_eq!(after, expect, "round {round} at {at}");
                }
            }
        }
    }

    #[test]
    fn distinct_state_survives_a_store_and_load() {
        // The value map is not stored: rebuilt from the events on load.
        let r = rule(SCAN);
        let mut e = Evaluator::new(&r, "t", Windows::default());
        feed(&mut e, &[(0, "hit a 1"), (1, "hit a 1"), (2, "hit a 2")]);
        let stored: Windows = e
            .take_dirty()
            .unwrap()
            .into_iter()
            .map(|(k, json)| (k, serde_json::from_str(&json.unwrap()).unwrap()))
            .collect();
        let mut e = Evaluator::new(&r, "t", stored);
        // ids restart at 1 in `feed`; only counts matter here.
        feed(&mut e, &[(3, "hit a 2"), (4, "hit a 3")]);
        assert!(e.alerts.is_empty(), "3 values: {:?}", e.alerts);
        feed(&mut e, &[(5, "hit a 4")]);
        assert_eq!(e.alerts.len(), 1);
        assert_eq!((e.alerts[0].count, e.alerts[0].first_ts), (4, 0));
    }

    #[test]
    fn keys_over_max_keys_drop_the_oldest_window_and_count_it() {
        let text = TH.replace("threshold = 3\n", "threshold = 3\nmax_keys = 3\n");
        let r = rule(&text);
        assert_eq!(r.max_keys, Some(3));
        let mut e = Evaluator::new(&r, "t", Windows::default());
        // a (0), b (1), c (2), d (3): a, the oldest, goes; then e: b goes.
        feed(
            &mut e,
            &[
                (0, "fail a"),
                (1, "fail b"),
                (2, "fail c"),
                (3, "fail d"),
                (4, "fail e"),
            ],
        );
        let mut keys: Vec<&String> = e.windows.keys().collect();
        keys.sort();
        assert_eq!(keys, ["c", "d", "e"]);
        assert_eq!(
            e.overflow,
            Overflow {
                windows: 2,
                events: 0
            }
        );
        // c's window is kept and fires; a's count was dropped: two more
        // events of a do not reach 3.
        feed(
            &mut e,
            &[(5, "fail c"), (6, "fail c"), (7, "fail a"), (8, "fail a")],
        );
        let fired: Vec<&str> = e.alerts.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(fired, ["c"]);
        // Stored state: never more than the cap; dropped keys are deleted.
        let changes = e.take_dirty().unwrap();
        assert!(changes.iter().filter(|c| c.1.is_some()).count() <= 3);
        assert!(e.windows.len() <= 3);
    }

    #[test]
    fn stored_windows_over_the_cap_are_trimmed_on_load_oldest_first() {
        let r = rule(TH);
        let mut e = Evaluator::new(&r, "t", Windows::default());
        let lines: Vec<String> = (0..10).map(|i| format!("fail k{i}")).collect();
        let evs: Vec<(i64, &str)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as i64, l.as_str()))
            .collect();
        feed(&mut e, &evs);
        let stored: Windows = e.windows.clone();
        let capped = rule(&TH.replace("threshold = 3\n", "threshold = 3\nmax_keys = 4\n"));
        let mut e = Evaluator::new(&capped, "t", stored);
        let mut keys: Vec<&String> = e.windows.keys().collect();
        keys.sort();
        assert_eq!(keys, ["k6", "k7", "k8", "k9"]);
        assert_eq!(e.overflow.windows, 6);
        // The six dropped windows are deleted from the store.
        let deleted = e
            .take_dirty()
            .unwrap()
            .into_iter()
            .filter(|c| c.1.is_none())
            .count();
        assert_eq!(deleted, 6);
    }

    #[test]
    fn a_distinct_window_of_repeated_values_keeps_at_most_max_keys_events() {
        let r = rule(&SCAN.replace("threshold = 4\n", "threshold = 4\nmax_keys = 5\n"));
        let mut e = Evaluator::new(&r, "t", Windows::default());
        let evs: Vec<(i64, &str)> = (0..100).map(|_| (0, "hit a 22")).collect();
        feed(&mut e, &evs);
        let Some(Win::Count { events, values, .. }) = e.windows.get("a") else {
            panic!("no window");
        };
        assert_eq!((events.len(), values.len()), (5, 1));
        assert_eq!(
            e.overflow,
            Overflow {
                windows: 0,
                events: 95
            }
        );
        // Still fires on distinct values.
        feed(&mut e, &[(1, "hit a 23"), (1, "hit a 24"), (1, "hit a 25")]);
        assert_eq!(e.alerts.len(), 1);
        assert_eq!(e.alerts[0].count, 4);
    }

    #[test]
    fn absence_windows_over_the_cap_drop_the_oldest_which_never_fires() {
        let p = "[[rule]]\nname = \"ab\"\ntype = \"absence\"\nwindow = \"10s\"\nmax_keys = 2\n\
                 first = { regex = 'open (?P<s>\\d+)' }\nsecond = { regex = 'close {s}$' }\nkey = \"{s}\"\n";
        let r = rule(p);
        let a = run(
            &r,
            &[(0, "open 1"), (1, "open 2"), (2, "open 3"), (3, "close 2")],
        );
        // 1 was dropped for 3; 2 closed; 3 fires at its end.
        let got: Vec<(&str, i64)> = a.iter().map(|a| (a.key.as_str(), a.ts)).collect();
        assert_eq!(got, [("3", 12_000)]);
        let mut e = Evaluator::new(&r, "t", Windows::default());
        feed(&mut e, &[(0, "open 1"), (1, "open 2"), (2, "open 3")]);
        assert_eq!(e.overflow.windows, 1);
    }

    #[test]
    fn steps_count_and_order() {
        let t = "[[rule]]\nname = \"t\"\ntype = \"threshold\"\nwindow = \"60s\"\n\
                 steps = [\"raw re '^a'\", \"raw re '^b'\"]\n";
        // Unordered: b then a within the window fires at a.
        let a = run(&rule(t), &[(0, "b"), (10, "x"), (30, "a")]);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].ts, a[0].count, a[0].events.clone()),
            (30_000, 2, vec![1, 3])
        );
        // Ordered: b then a does not; a then b does, at b.
        let o = t.replace("steps", "ordered = true\nsteps");
        assert!(run(&rule(&o), &[(0, "b"), (30, "a")]).is_empty());
        let a = run(&rule(&o), &[(0, "b"), (20, "a"), (30, "b")]);
        assert_eq!((a.len(), a[0].ts), (1, 30_000));
        // Out of the window: nothing.
        assert!(run(&rule(&o), &[(0, "a"), (61, "b")]).is_empty());
    }

    #[test]
    fn upper_bounds_fire_at_the_window_end() {
        let t = "[[rule]]\nname = \"t\"\ntype = \"threshold\"\nwindow = \"60s\"\n\
                 threshold = \">= 2, < 4\"\nmatch = { regex = 'x (?P<k>\\w)' }\nkey = \"{k}\"\n";
        let r = rule(t);
        // a: 3 events in 0..60 -> fires at 60; b: 4 events -> no; c: 1 -> no.
        let evs = [
            (0, "x a"),
            (1, "x b"),
            (2, "x b"),
            (3, "x c"),
            (10, "x a"),
            (20, "x b"),
            (30, "x b"),
            (60, "x a"),
            (61, "x a"),
        ];
        let a = run(&r, &evs);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (a[0].key.as_str(), a[0].ts, a[0].first_ts, a[0].count),
            ("a", 60_000, 0, 3)
        );
        // The event at 61 opened a new window (one event by its end: no alert).
    }

    #[test]
    fn sum_avg_percentile() {
        let base = "[[rule]]\nname = \"t\"\ntype = \"threshold\"\nwindow = \"60s\"\n\
                    match = { regex = 'n=(?P<n>\\S+)' }\n";
        let evs = [(0, "n=10"), (1, "n=x"), (2, "n=20"), (3, "n=70")];
        let a = run(
            &rule(&format!("{base}sum = \"n\"\nthreshold = \"> 99\"\n")),
            &evs,
        );
        assert_eq!((a.len(), a[0].ts, a[0].count), (1, 3_000, 100));
        // The event without a number is not counted.
        assert_eq!(a[0].events, [1, 3, 4]);
        let a = run(
            &rule(&format!("{base}avg = \"n\"\nthreshold = \">= 15\"\n")),
            &evs,
        );
        assert_eq!((a.len(), a[0].ts, a[0].count), (1, 2_000, 15));
        let a = run(
            &rule(&format!(
                "{base}percentile = \"n\"\npercent = 50\nthreshold = \">= 20\"\n"
            )),
            &evs,
        );
        // Median (nearest rank) of 10, 20 is 10; of 10, 20, 70 it is 20.
        assert_eq!((a.len(), a[0].ts), (1, 3_000));
        let m = |p: f64, v: &[&str]| {
            let e: VecDeque<(i64, i64, Option<String>)> =
                v.iter().map(|x| (0, 0, Some(x.to_string()))).collect();
            measure(&Metric::Percentile(p), &e)
        };
        assert_eq!(
            m(95.0, &["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]),
            10.0
        );
        assert_eq!(m(50.0, &["5", "1", "3"]), 3.0);
        assert_eq!(m(10.0, &["5", "1", "3"]), 1.0);
    }

    /// Windows measured at their end (an upper bound, as Sigma correlations
    /// with `lt`/`lte` translate to) that are dropped over the cap, reset,
    /// or trimmed over max_events leave no expiry entry behind: the index
    /// holds exactly the open windows.
    #[test]
    fn at_end_windows_leave_no_expiry_entry_behind() {
        let t = "[[rule]]\nname = \"t\"\ntype = \"threshold\"\nwindow = \"1d\"\n\
                 threshold = \"< 4\"\nmax_keys = 3\nmatch = { regex = 'x (?P<k>\\w+)' }\n\
                 reset = { regex = 'ok (?P<k>\\w+)' }\nkey = \"{k}\"\n";
        let r = rule(t);
        let mut e = Evaluator::new(&r, "t", Windows::default());
        // Over the cap: 1000 keys, at most 3 windows open.
        let lines: Vec<String> = (0..1000).map(|i| format!("x k{i}")).collect();
        let evs: Vec<(i64, &str)> = lines.iter().map(|l| (0, l.as_str())).collect();
        feed(&mut e, &evs);
        assert_eq!(e.windows.len(), 3);
        assert_eq!(e.expiry.len(), 3, "entries of dropped windows stay");
        // Reset: the window and its entry go.
        feed(&mut e, &[(1, "ok k999")]);
        assert_eq!((e.windows.len(), e.expiry.len()), (2, 2));
        // A full window (max_events = 4: the oldest events leave) keeps one
        // entry, which still closes it at its end.
        let full: Vec<(i64, &str)> = (0..10).map(|i| (2 + i, "x full")).collect();
        feed(&mut e, &full);
        assert_eq!((e.windows.len(), e.expiry.len()), (3, 3));
        for (end, first_id, key) in &e.expiry {
            let Some(Win::Count { start, events, .. }) = e.windows.get(key) else {
                panic!("entry of a closed window {key}");
            };
            assert_eq!(
                (*end, *first_id),
                (start + 86_400_000, events[0].1),
                "{key}"
            );
        }
        e.advance(i64::MAX);
        assert_eq!((e.windows.len(), e.expiry.len()), (0, 0));
    }

    #[test]
    fn closed_pair_windows_leave_no_state_behind() {
        let p = "[[rule]]\nname = \"p\"\ntype = \"pair\"\nwindow = \"1d\"\n\
                 first = { regex = 'open (?P<s>\\d+)' }\nsecond = { regex = 'close {s}$' }\nkey = \"{s}\"\n";
        let r = rule(p);
        let mut e = Evaluator::new(&r, "t", Windows::default());
        let lines: Vec<String> = (0..1000)
            .flat_map(|i| [format!("open {i}"), format!("close {i}")])
            .collect();
        let evs: Vec<(i64, &str)> = lines.iter().map(|l| (0, l.as_str())).collect();
        feed(&mut e, &evs);
        assert_eq!(e.alerts.len(), 1000);
        assert!(e.windows.is_empty());
        assert_eq!((e.expiry.len(), e.compiled.len()), (0, 0));
    }
}
