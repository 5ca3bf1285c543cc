//! The rule state machines, on event time. Pure: rows in, alerts and window
//! changes out; the caller fetches rows and persists state.
//!
//! Events arrive in `(ts, id)` order. Before an event at `t` is applied,
//! [`Evaluator::advance`] lets event time reach `t`: `pair` windows whose
//! end is before `t` close silently and `absence` windows fire (at their
//! end). "Within `window`" is inclusive: an event at exactly start + window
//! still counts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use regex::Regex;

use crate::rules::{Kind, Rule, column_alias, is_column};
use serde::{Deserialize, Serialize};
pub use siemstress_common::db::trigger::NewAlert;
use siemstress_common::db::trigger::{Scan, ScanSink};

/// Named regex captures of one event.
pub type Caps = BTreeMap<String, String>;

/// Window changes by key: `Some` to store, `None` to delete.
pub type Changes = Vec<(String, Option<Win>)>;

/// Rows of one chunk: ids, times, filter flags, and the column values in one
/// text arena (no allocation per value).
#[derive(Debug, Default)]
pub struct Batch {
    /// Columns of every row (without `id` and `ts`), in value order.
    pub names: Vec<&'static str>,
    /// Flags per row (one per filter of the scan).
    pub nflags: usize,
    text: String,
    /// `(start, end)` in `text`; `NULL` is `(usize::MAX, 0)`.
    spans: Vec<(usize, usize)>,
    flags: Vec<bool>,
    /// Rows in `(ts, id)` order after [`Batch::sort`].
    pub rows: Vec<Head>,
}

/// A row of a [`Batch`]: id, time, and where its values are.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub id: i64,
    pub ts: i64,
    at: usize,
}

const NULL: (usize, usize) = (usize::MAX, 0);

impl Batch {
    /// An empty batch of rows with columns `names` and `nflags` flags.
    pub fn new(names: Vec<&'static str>, nflags: usize) -> Self {
        Self {
            names,
            nflags,
            ..Self::default()
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
        let i = b.names.iter().position(|n| *n == name)?;
        let (s, e) = b.spans[self.at * b.names.len() + i];
        (s != usize::MAX).then(|| &b.text[s..e])
    }

    /// Filter flag `i` of the scan.
    pub fn flag(&self, i: usize) -> bool {
        self.batch.flags[self.at * self.batch.nflags + i]
    }

    /// A column by name or alias; `ts` and `id` too.
    pub fn get(&self, name: &str) -> Option<String> {
        match column_alias(name) {
            "id" => Some(self.id.to_string()),
            "ts" => Some(rfc3339(self.ts)),
            "received" => self
                .col("received")
                .and_then(|v| v.parse().ok())
                .map(rfc3339),
            c => self.col(c).map(str::to_owned),
        }
    }

    /// The raw line (empty if not read).
    pub fn raw(&self) -> &'a str {
        self.col("raw").unwrap_or("")
    }
}

pub use siemstress_common::time::rfc3339;

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
        events: Vec<(i64, i64, Option<String>)>,
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
    pub windows: HashMap<String, Win>,
    /// Keys whose window changed or was removed since the last [`Evaluator::take_dirty`].
    dirty: HashSet<String>,
    /// Keys with a row in the store (so that only those are deleted).
    persisted: HashSet<String>,
    /// Open pair/absence windows by (end, first id).
    expiry: BTreeSet<(i64, i64, String)>,
    lookup: SecondLookup,
    /// `second` regexes compiled for an open window (key -> first id, regexes).
    compiled: HashMap<String, (i64, Arc<Vec<Regex>>)>,
    pub alerts: Vec<NewAlert>,
    pub stats: Option<HashMap<String, KeyStats>>,
}

impl<'r> Evaluator<'r> {
    /// An evaluator with the stored windows `windows`.
    pub fn new(rule: &'r Rule, table: &str, windows: HashMap<String, Win>) -> Self {
        let window = rule.window_ms().unwrap_or(0);
        let expiry = windows
            .iter()
            .filter_map(|(k, w)| match w {
                Win::Open {
                    start, first_id, ..
                } => Some((start.saturating_add(window), *first_id, k.clone())),
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
        Self {
            rule,
            table: table.to_owned(),
            window,
            cols: rule.needed_columns().into_iter().collect(),
            keep_raw: rule.message.names().any(|n| n == "raw"),
            persisted: windows.keys().cloned().collect(),
            windows,
            dirty: HashSet::new(),
            expiry,
            lookup,
            compiled: HashMap::new(),
            alerts: Vec::new(),
            stats: None,
        }
    }

    /// Keys changed since the last call: `Some(state)` to store, `None` to
    /// delete (only keys that were stored). Marks the result as stored.
    pub fn take_dirty(&mut self) -> Changes {
        let mut v: Changes = Vec::with_capacity(self.dirty.len());
        for k in std::mem::take(&mut self.dirty) {
            match self.windows.get(&k) {
                Some(w) => {
                    let w = w.clone();
                    self.persisted.insert(k.clone());
                    v.push((k, Some(w)));
                }
                None => {
                    if self.persisted.remove(&k) {
                        v.push((k, None));
                    }
                }
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn touch(&mut self, key: &str) {
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
    }

    fn set(&mut self, key: String, w: Win) {
        self.touch(&key);
        self.windows.insert(key, w);
    }

    fn remove(&mut self, key: &str) -> Option<Win> {
        self.compiled.remove(key);
        let w = self.windows.remove(key);
        if w.is_some() {
            self.touch(key);
        }
        w
    }

    fn render_key(&self, caps: &Caps, ev: &Ev) -> String {
        self.rule
            .key
            .render(|n| caps.get(n).cloned().or_else(|| ev.get(n)))
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
        self.rule.message.render(|n| {
            if let Some(v) = caps.get(n) {
                return Some(v.clone());
            }
            match n {
                "count" => return Some(count.to_string()),
                "key" => return Some(key.to_owned()),
                "rule" => return Some(self.rule.name.clone()),
                "first_ts" => return Some(rfc3339(first_ts)),
                "window" => {
                    return Some(
                        humantime::format_duration(std::time::Duration::from_millis(
                            self.window as u64,
                        ))
                        .to_string(),
                    );
                }
                _ => {}
            }
            ev.and_then(|e| e.get(n))
                .or_else(|| fallback.get(n).cloned())
                .or_else(|| fallback.get(column_alias(n)).cloned())
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
        let stale: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, win)| match win {
                Win::Count { events, .. } => events.last().is_none_or(|e| e.0 < t - w),
                Win::Absorb { end, .. } => *end < t,
                Win::Open { .. } => false,
            })
            .map(|(k, _)| k.clone())
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
        let (start, mut events) = match self.windows.get_mut(&key) {
            Some(Win::Absorb { end, absorbed, .. }) if t <= *end => {
                *absorbed += 1;
                self.touch(&key);
                return;
            }
            Some(Win::Count { start, events }) => (*start, std::mem::take(events)),
            _ => (t, Vec::new()),
        };
        let distinct = th.distinct.as_ref().map(|d| {
            caps.get(d)
                .cloned()
                .or_else(|| ev.get(d))
                .unwrap_or_default()
        });
        if t > start.saturating_add(w) {
            // The window ran out: slide to the oldest event still within it.
            events.retain(|e| e.0 >= t - w);
        }
        events.push((t, ev.id, distinct));
        let start = events[0].0;
        let count = if th.distinct.is_some() {
            events
                .iter()
                .map(|e| e.2.as_deref())
                .collect::<BTreeSet<_>>()
                .len() as u64
        } else {
            events.len() as u64
        };
        if let Some(s) = self.stat(&key)
            && count > s.best
        {
            s.best = count;
            s.best_start = start;
            s.best_ts = t;
        }
        if count >= th.threshold {
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
            self.set(key, Win::Count { start, events });
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
        self.expiry
            .insert((ev.ts.saturating_add(self.window), ev.id, key.clone()));
        self.set(
            key,
            Win::Open {
                start: ev.ts,
                first_id: ev.id,
                vars,
            },
        );
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
        let mut e = Evaluator::new(r, "t", HashMap::new());
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
                        m.check(ev.raw()).map(|c| (role, Some(c)))
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
        e.advance(i64::MAX);
        e.alerts
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
}
