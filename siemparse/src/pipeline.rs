//! The write side of ingest: readers (stdin, followed files, network
//! connections) send [`Batch`]es over a bounded channel; one writer merges
//! what is queued into a transaction per event table (up to `--batch` rows)
//! and commits rows and file offsets together. When input is idle, the
//! writer advances the `--grep` search index between batches. Stored rows go
//! back to the readers of files and stdin ([`Returned`]), which drop them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use siemstress_common::db::retry::Retry;
use siemstress_common::db::sources::SourceMark;
use siemstress_common::db::{Checkpoint, EventWriter, grep_index};
use siemstress_common::diag;
use siemstress_common::event::Event;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// Most bytes of rows a reader holds before sending them, and the writer
/// merges into one transaction: with lines of up to 8 MiB, a row count
/// alone would not bound memory.
pub const MAX_BATCH_BYTES: usize = 32 << 20;

/// Rows from one reader for one event table, and the offset they bring its
/// file to.
pub struct Batch {
    /// Index of the table's writer (0 when there is one table).
    pub target: usize,
    pub events: Vec<Event>,
    pub checkpoint: Option<Checkpoint>,
    /// The reader's source (its row in `ingest_sources`).
    pub source: Option<Arc<SourceId>>,
    /// The source ended cleanly: the last batch it sends.
    pub finished: bool,
    /// Sent because it was full, with more input at hand: the reader sends
    /// again without waiting for new input (a bulk import, a follower
    /// catching up). The writer then leaves the search index alone.
    pub more: bool,
    /// What the reader worked out for the writer, which would otherwise go
    /// through every row again: [`Event::approx_bytes`] summed, the latest
    /// event time.
    bytes: usize,
    max_ts: Option<i64>,
}

impl Batch {
    fn new(target: usize, events: Vec<Event>) -> Self {
        Batch {
            target,
            bytes: events.iter().map(Event::approx_bytes).sum(),
            max_ts: events.iter().map(|e| e.ts).max(),
            events,
            checkpoint: None,
            source: None,
            finished: false,
            more: false,
        }
    }
}

/// What a reader's batch says about the input behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The reader has read all the input at hand; it waits for more.
    CaughtUp,
    /// The batch is full and more input is at hand ([`Batch::more`]).
    More,
}

/// Where a reader's rows come from: a followed file, stdin, a listener's
/// connection. The writer records, with the rows, the latest event time
/// each source has committed (siemtrigger's watermark, issue 16).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceId {
    pub kind: &'static str,
    pub name: String,
}

/// The sending half readers hold; sending fails once the writer has stopped.
#[derive(Clone)]
pub struct BatchSender(
    mpsc::Sender<Batch>,
    Option<Arc<SourceId>>,
    Option<Arc<Returned>>,
);

/// The writer's half: the batches, and where their rows go once stored.
pub struct Batches {
    rx: mpsc::Receiver<Batch>,
    returned: Option<Arc<Returned>>,
}

/// Row buffers the writer has stored, on their way back to the readers of
/// files and stdin: a reader drops the rows on its own thread and refills
/// the buffer. In a bulk import the writer is the busier of the two
/// threads, and memory freed by the thread that allocated it costs less
/// (the drops and the frees of merged buffers were ~13 % of the writer's
/// time). At most [`RETURNED`] wait; the writer drops any more itself.
#[derive(Default)]
pub struct Returned(Mutex<Vec<Vec<Event>>>);

/// Most row buffers waiting in [`Returned`], as many as the channel of a
/// file or stdin reader holds batches: a reader takes one per batch.
const RETURNED: usize = 4;

impl Returned {
    /// Hands stored rows (or an emptied buffer) back.
    fn give(&self, rows: Vec<Event>) {
        let mut bufs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if bufs.len() < RETURNED {
            bufs.push(rows);
        } else {
            drop(bufs);
            drop(rows);
        }
    }

    /// An empty buffer for the next batch: a returned one, its rows dropped
    /// here, or a new one.
    fn take(&self) -> Vec<Event> {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut buf = buf.unwrap_or_default();
        buf.clear();
        buf
    }
}

/// Raised when the writer has stopped; the reader should stop too.
#[derive(Debug)]
pub struct WriterGone;

impl BatchSender {
    /// A sender whose batches are the rows of source `kind` `name`.
    pub fn with_source(&self, kind: &'static str, name: impl Into<String>) -> Self {
        BatchSender(
            self.0.clone(),
            Some(Arc::new(SourceId {
                kind,
                name: name.into(),
            })),
            self.2.clone(),
        )
    }

    /// An empty buffer for the next batch, with the rows of one the writer
    /// stored dropped here (see [`Returned`]).
    pub fn empty_rows(&self) -> Vec<Event> {
        self.2.as_ref().map(|r| r.take()).unwrap_or_default()
    }

    fn batch(
        &self,
        target: usize,
        events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
        flow: Flow,
    ) -> Batch {
        Batch {
            checkpoint,
            source: self.1.clone(),
            more: flow == Flow::More,
            ..Batch::new(target, events)
        }
    }

    /// The source ended cleanly (EOF, a clean exit, a closed connection):
    /// it stops holding siemtrigger's watermark once its rows are stored.
    pub fn finish(&self) -> Result<(), WriterGone> {
        let Some(b) = self.finished_batch() else {
            return Ok(());
        };
        self.0.blocking_send(b).map_err(|_| WriterGone)
    }

    /// [`BatchSender::finish`] from an async task.
    pub async fn finish_async(&self) -> Result<(), WriterGone> {
        let Some(b) = self.finished_batch() else {
            return Ok(());
        };
        self.0.send(b).await.map_err(|_| WriterGone)
    }

    fn finished_batch(&self) -> Option<Batch> {
        self.1.as_ref()?;
        let mut b = self.batch(0, Vec::new(), None, Flow::CaughtUp);
        b.finished = true;
        Some(b)
    }

    /// Sends a batch for table 0, blocking while the writer is behind.
    pub fn send(
        &self,
        events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
        flow: Flow,
    ) -> Result<(), WriterGone> {
        if events.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        self.0
            .blocking_send(self.batch(0, events, checkpoint, flow))
            .map_err(|_| WriterGone)
    }

    /// As [`BatchSender::send`], for a reader whose input is not buffered
    /// elsewhere (stdin): if the writer has taken nothing for `after`,
    /// `stalled` is called once, and `resumed` with the wait when it takes
    /// the batch after all. The reader stops reading meanwhile: memory stays
    /// bounded and nothing is dropped. An empty batch is sent too (it tells
    /// the writer that the reader caught up); with `last`, the batch is the
    /// source's last ([`BatchSender::finish`] in one batch with its rows).
    pub fn send_or_warn(
        &self,
        events: Vec<Event>,
        flow: Flow,
        last: bool,
        after: Duration,
        stalled: impl FnOnce(),
        resumed: impl FnOnce(Duration),
    ) -> Result<(), WriterGone> {
        use tokio::sync::mpsc::error::TrySendError;
        let mut batch = self.batch(0, events, None, flow);
        batch.finished = last && self.1.is_some();
        let started = std::time::Instant::now();
        let mut stalled = Some(stalled);
        loop {
            match self.0.try_send(batch) {
                Ok(()) => {
                    if stalled.is_none() {
                        resumed(started.elapsed());
                    }
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(WriterGone),
                Err(TrySendError::Full(b)) => {
                    batch = b;
                    if started.elapsed() >= after
                        && let Some(f) = stalled.take()
                    {
                        f();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Sends what `pending` holds from an async task, waiting while the
    /// writer is behind (a network reader then stops reading: back-pressure).
    pub async fn send_pending(&self, pending: &mut Pending) -> Result<(), WriterGone> {
        for mut batch in pending.take() {
            batch.source = self.1.clone();
            self.0.send(batch).await.map_err(|_| WriterGone)?;
        }
        Ok(())
    }
}

/// A channel of `batches` batches: enough to overlap parsing and writing,
/// little enough that memory stays flat whatever the input size. Readers
/// of files send full batches (4 are plenty); network peers send small
/// ones as they come (many queue up, and are merged into one transaction).
/// With `return_rows`, stored rows go back to the readers, which take an
/// empty buffer with [`BatchSender::empty_rows`] for each batch (readers
/// that do not would leave [`RETURNED`] buffers of rows in memory).
pub fn channel(batches: usize, return_rows: bool) -> (BatchSender, Batches) {
    let (tx, rx) = mpsc::channel(batches);
    let returned = return_rows.then(Arc::default);
    (
        BatchSender(tx, None, returned.clone()),
        Batches { rx, returned },
    )
}

/// Rows in a reader's first batch; each batch after doubles, up to `--batch`.
const FIRST_BATCH_ROWS: usize = 1_000;

/// Rows a reader has parsed but not sent yet, per table, with their size.
pub struct Pending {
    by_target: Vec<Vec<Event>>,
    rows: usize,
    bytes: usize,
    /// Full at this many rows: small at first, so that the writer starts
    /// after a few rows (with whole batches from the start, a bulk import's
    /// writer idled while the reader parsed `--batch` lines); doubles with
    /// each batch taken, up to `max_rows`.
    limit: usize,
    max_rows: usize,
    max_bytes: usize,
}

impl Pending {
    /// Room for `targets` tables; full at `max_rows` rows or `max_bytes`
    /// (the first batches at fewer rows).
    pub fn new(targets: usize, max_rows: usize, max_bytes: usize) -> Self {
        Self {
            by_target: (0..targets).map(|_| Vec::new()).collect(),
            rows: 0,
            bytes: 0,
            limit: max_rows.min(FIRST_BATCH_ROWS),
            max_rows,
            max_bytes,
        }
    }

    pub fn push(&mut self, target: usize, event: Event) {
        self.rows += 1;
        self.bytes += event.approx_bytes();
        self.by_target[target].push(event);
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Time to send: at the row or the byte limit.
    pub fn is_full(&self) -> bool {
        self.rows >= self.limit || self.bytes >= self.max_bytes
    }

    /// Empties the counts after a take; the next batch may be larger.
    fn taken(&mut self) {
        self.rows = 0;
        self.bytes = 0;
        self.limit = self.limit.saturating_mul(2).min(self.max_rows);
    }

    /// Everything held, one batch per table that has rows.
    pub fn take(&mut self) -> Vec<Batch> {
        self.taken();
        self.by_target
            .iter_mut()
            .enumerate()
            .filter(|(_, events)| !events.is_empty())
            // Network peers: no promise of more (a peer may stop at any time).
            .map(|(target, events)| Batch::new(target, std::mem::take(events)))
            .collect()
    }

    /// The rows of table 0 (readers with one table); `next` (empty) holds
    /// the next batch's.
    pub fn take_single(&mut self, next: Vec<Event>) -> Vec<Event> {
        self.taken();
        std::mem::replace(&mut self.by_target[0], next)
    }
}

/// Rows per step of the search indexer: small, so that a batch arriving
/// meanwhile waits only a few tens of milliseconds.
pub const INDEX_STEP_ROWS: u64 = 2_000;
/// Input quiet for this long counts as idle: the indexer may run.
const IDLE: Duration = Duration::from_millis(100);
/// After a transient error of the indexer, it tries again after this long
/// without input.
const INDEX_AFTER_OUTAGE: Duration = Duration::from_secs(10);
/// With this many rows unindexed, the indexer also runs whenever no batch
/// is queued, so a steady stream cannot starve it.
const INDEX_BACKLOG: u64 = 50_000;
/// With this many rows unindexed, it runs whenever no batch is queued even
/// while the readers have more input at hand (a bulk import, a follower
/// catching up): `--grep` scans at most about this many rows past the
/// index. Below it, a bulk import leaves the index to the idle time after
/// it or to `siemparse --index`: one step costs more than parsing and
/// storing its rows.
const INDEX_BACKLOG_AHEAD: u64 = 500_000;

/// What the writer does when no batch is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenEmpty {
    /// Wait for the next batch (the readers have more input at hand, or
    /// nothing is left to index).
    Wait,
    /// Wait for the next batch for [`IDLE`] at most, then index a step.
    WaitIdle,
    /// Index a step now.
    Step,
}

/// The writer's choice with `backlog` rows unindexed (0: nothing to index),
/// `ahead` when the last batch received was sent full with more input at
/// hand ([`Batch::more`]) or ended its source. Timing plays no part in
/// `Wait`: a reader that sent `more` sends again without waiting for input
/// (a follower's next batch, stdin's next or last one).
fn when_empty(backlog: u64, ahead: bool) -> WhenEmpty {
    if backlog == 0 {
        WhenEmpty::Wait
    } else if backlog >= INDEX_BACKLOG_AHEAD {
        WhenEmpty::Step
    } else if ahead {
        WhenEmpty::Wait
    } else if backlog >= INDEX_BACKLOG {
        WhenEmpty::Step
    } else {
        WhenEmpty::WaitIdle
    }
}

/// The writers of one ingest run, one per event table.
struct Writers {
    writers: Vec<EventWriter>,
    /// The search index of writer i may be behind (false: off, or it failed).
    index_behind: Vec<bool>,
    /// The last batch received was sent with more input at hand, or ended
    /// its source (see [`when_empty`]).
    ahead: bool,
}

impl Writers {
    /// The writer with the most unindexed rows, and how many.
    fn most_behind(&self) -> Option<(usize, u64)> {
        (0..self.writers.len())
            .filter(|&i| self.index_behind[i])
            .map(|i| (i, self.writers[i].index_backlog()))
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n)
    }

    /// Notes what batch `b` says about the input behind it.
    fn received(&mut self, b: &Batch) {
        self.ahead = b.more || b.finished;
    }
}

/// The next batch; while input is idle, advances the search index (in its
/// own transactions, never the insert's). `None` once every sender is gone.
/// An index step that fails (a lock wait timeout, a deadlock on a busy
/// MariaDB) stops indexing that table for this run with a warning, never
/// the ingest: the index only narrows `--grep`, which scans the rows above
/// its mark.
async fn next_batch(
    w: &mut Writers,
    rx: &mut mpsc::Receiver<Batch>,
) -> anyhow::Result<Option<Batch>> {
    loop {
        match rx.try_recv() {
            Ok(b) => return Ok(Some(b)),
            Err(TryRecvError::Disconnected) => return Ok(None),
            Err(TryRecvError::Empty) => {}
        }
        let (i, backlog) = w.most_behind().unwrap_or((0, 0));
        match when_empty(backlog, w.ahead) {
            WhenEmpty::Wait => return Ok(rx.recv().await),
            WhenEmpty::WaitIdle => {
                if let Ok(b) = tokio::time::timeout(IDLE, rx.recv()).await {
                    return Ok(b);
                }
            }
            WhenEmpty::Step => {}
        }
        match w.writers[i].index_step(INDEX_STEP_ROWS).await {
            Ok(_) => {}
            // The database is away: the writer says so and waits it out
            // with the next batch; the index waits for input or a while.
            Err(e) if e.is_transient() => {
                if let Ok(b) = tokio::time::timeout(INDEX_AFTER_OUTAGE, rx.recv()).await {
                    return Ok(b);
                }
            }
            Err(e) => {
                diag!(
                    "siemparse: warning: updating the search index: {e}; not indexing any more in this \
                 run (--grep stays exact; `siemparse --index` catches up)"
                );
                w.index_behind[i] = false;
            }
        }
    }
}

/// Writes everything received until every sender is gone; batches for
/// table i go through `writers[i]`; counts rows in `stored`. Returns the
/// longest time one transaction took to store (lock wait included).
///
/// A transaction that fails with a transient error (the database is down,
/// a Galera node left the primary component, a deadlock) is written again
/// after a wait, through `retry`, for as long as it takes: the readers are
/// held back meanwhile (the channel is bounded), and a followed file's
/// offset only moves with the rows, so no line is lost or stored twice.
/// The stop flag of `retry` (SIGTERM) ends the wait.
pub async fn write_all(
    writers: Vec<EventWriter>,
    batches: Batches,
    batch_rows: usize,
    stored: Arc<AtomicU64>,
    mut retry: Retry,
) -> anyhow::Result<Duration> {
    let mut longest = Duration::ZERO;
    // SIEMSTRESS_GREP_INDEX=never: leave the index alone (for A/B benchmarks).
    let indexing = grep_index::mode().is_some();
    let n = writers.len();
    let mut w = Writers {
        index_behind: vec![indexing; n],
        writers,
        ahead: false,
    };
    let Batches { mut rx, returned } = batches;
    let mut p = Round::new(n, returned);
    while let Some(first) = next_batch(&mut w, &mut rx).await? {
        let mut rows = first.events.len();
        let mut bytes = first.bytes;
        w.received(&first);
        p.absorb(first);
        while rows < batch_rows && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(b) => {
                    w.received(&b);
                    rows += b.events.len();
                    bytes += b.bytes;
                    p.absorb(b);
                }
                Err(_) => break,
            }
        }
        for (i, writer) in w.writers.iter_mut().enumerate() {
            if p.events[i].is_empty() && p.checkpoints[i].is_empty() && p.sources[i].is_empty() {
                continue;
            }
            let marks = p.take_marks(i);
            let started = std::time::Instant::now();
            loop {
                match retry
                    .guard(writer.write(&p.events[i], &p.checkpoints[i], &marks))
                    .await
                {
                    Ok(()) => break,
                    Err(e) => retry
                        .after(e)
                        .await
                        .with_context(|| format!("storing {} lines", p.events[i].len()))?,
                }
            }
            if retry.waiting() {
                retry.succeeded();
            } else {
                longest = longest.max(started.elapsed());
            }
            stored.fetch_add(p.events[i].len() as u64, Ordering::Relaxed);
            p.stored(i);
            p.checkpoints[i].clear();
        }
    }
    Ok(longest)
}

/// What one source stored into one table in a round.
#[derive(Debug, Default)]
struct Mark {
    max_ts: Option<i64>,
    rows: i64,
    finished: bool,
}

/// The transactions of one round, per table: rows, file offsets, and what
/// each source stored.
struct Round {
    events: Vec<Vec<Event>>,
    checkpoints: Vec<Vec<Checkpoint>>,
    sources: Vec<Vec<(Arc<SourceId>, Mark)>>,
    /// Where stored rows and emptied buffers go (`None`: dropped here).
    returned: Option<Arc<Returned>>,
}

impl Round {
    fn new(n: usize, returned: Option<Arc<Returned>>) -> Self {
        Self {
            events: (0..n).map(|_| Vec::new()).collect(),
            checkpoints: (0..n).map(|_| Vec::new()).collect(),
            sources: (0..n).map(|_| Vec::new()).collect(),
            returned,
        }
    }

    /// Rows (or an emptied buffer) done with: back to the readers.
    fn give(&self, rows: Vec<Event>) {
        if let Some(r) = &self.returned {
            r.give(rows);
        }
    }

    /// The rows of table `i` are stored.
    fn stored(&mut self, i: usize) {
        let rows = std::mem::take(&mut self.events[i]);
        self.give(rows);
    }

    /// Adds a batch to the pending transaction of its table.
    fn absorb(&mut self, b: Batch) {
        if let Some(src) = &b.source {
            if !b.events.is_empty() {
                let marks = &mut self.sources[b.target];
                let at = match marks.iter().position(|(s, _)| s == src) {
                    Some(at) => at,
                    None => {
                        marks.push((src.clone(), Mark::default()));
                        marks.len() - 1
                    }
                };
                let m = &mut marks[at].1;
                m.rows += b.events.len() as i64;
                m.max_ts = m.max_ts.max(b.max_ts);
            }
            if b.finished {
                // The end is marked in every table of the source, after its
                // last rows: in the last transaction of the round that
                // stores some (tables are written in order), else table 0's.
                let last = (0..self.sources.len())
                    .rev()
                    .find(|&i| self.sources[i].iter().any(|(s, _)| s == src))
                    .unwrap_or(0);
                self.sources[last].push((
                    src.clone(),
                    Mark {
                        finished: true,
                        ..Mark::default()
                    },
                ));
            }
        }
        let (events, checkpoints) = (&mut self.events[b.target], &mut self.checkpoints[b.target]);
        let spare = if events.is_empty() {
            std::mem::replace(events, b.events)
        } else {
            let mut more = b.events;
            events.append(&mut more);
            more
        };
        if let Some(r) = &self.returned
            && spare.capacity() > 0
        {
            r.give(spare);
        }
        if let Some(cp) = b.checkpoint {
            // A later checkpoint of the same file supersedes an earlier one.
            checkpoints.retain(|c| (&c.section, &c.path) != (&cp.section, &cp.path));
            checkpoints.push(cp);
        }
    }

    /// The source marks of table `i`'s transaction.
    fn take_marks(&mut self, i: usize) -> Vec<SourceMark> {
        std::mem::take(&mut self.sources[i])
            .into_iter()
            .map(|(s, m)| SourceMark {
                kind: s.kind,
                name: s.name.clone(),
                max_ts: m.max_ts,
                rows: m.rows,
                finished: m.finished,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows pushed until the batch is full, for each of `n` batches.
    fn sizes(p: &mut Pending, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let mut rows = 0;
                while !p.is_full() {
                    p.push(0, Event::default());
                    rows += 1;
                }
                assert_eq!(p.take_single(Vec::new()).len(), rows);
                rows
            })
            .collect()
    }

    #[test]
    fn the_index_waits_while_the_readers_have_more_at_hand() {
        use WhenEmpty::*;
        for ahead in [false, true] {
            assert_eq!(when_empty(0, ahead), Wait, "nothing to index");
            assert_eq!(when_empty(INDEX_BACKLOG_AHEAD, ahead), Step, "the bound");
        }
        // A bulk import or a follower catching up: no step below the bound.
        for backlog in [1, INDEX_BACKLOG, INDEX_BACKLOG_AHEAD - 1] {
            assert_eq!(when_empty(backlog, true), Wait, "{backlog}");
        }
        // Caught up: a step after IDLE without input, at once over INDEX_BACKLOG.
        assert_eq!(when_empty(INDEX_BACKLOG - 1, false), WaitIdle);
        assert_eq!(when_empty(INDEX_BACKLOG, false), Step);
    }

    /// The writer is told whether more input is at hand by each batch it
    /// takes: a full one of a bulk reader, the end of a source.
    #[test]
    fn batches_say_whether_more_is_coming() {
        let (tx, _rx) = channel(1, false);
        let tx = tx.with_source("stdin", "x");
        let mut w = Writers {
            writers: Vec::new(),
            index_behind: Vec::new(),
            ahead: false,
        };
        for (flow, ahead) in [(Flow::More, true), (Flow::CaughtUp, false)] {
            w.received(&tx.batch(0, Vec::new(), None, flow));
            assert_eq!(w.ahead, ahead);
        }
        w.received(&tx.finished_batch().unwrap());
        assert!(
            w.ahead,
            "the end of a source is followed by the channel's end"
        );
        let mut p = Pending::new(1, 10, MAX_BATCH_BYTES);
        p.push(0, Event::default());
        assert!(
            p.take().iter().all(|b| !b.more),
            "network peers promise nothing"
        );
    }

    /// Stored rows go back to the reader, which drops them and refills the
    /// buffer; at most RETURNED wait, and a channel without return keeps none.
    #[test]
    fn stored_rows_go_back_to_the_reader() {
        let row = |ts| Event {
            ts,
            raw: "x".repeat(100),
            ..Event::default()
        };
        let (tx, rx) = channel(4, true);
        let returned = rx.returned.clone().unwrap();
        let mut p = Round::new(1, rx.returned);
        let mut capacities = Vec::new();
        for n in 0..RETURNED + 2 {
            let mut events = Vec::with_capacity(100 + n);
            events.extend([row(1), row(n as i64)]);
            capacities.push(events.capacity());
            let b = tx.batch(0, events, None, Flow::More);
            assert_eq!((b.bytes, b.max_ts), (2 * 260, Some(n.max(1) as i64)));
            p.absorb(b);
        }
        assert_eq!(p.events[0].len(), 2 * (RETURNED + 2));
        p.stored(0);
        assert!(p.events[0].is_empty());
        // The first batch's buffer took the others' rows; as many of the
        // emptied ones and then the stored rows as fit went back.
        let waiting = returned.0.lock().unwrap();
        assert_eq!(waiting.len(), RETURNED);
        assert!(
            waiting.iter().all(|b| b.is_empty()),
            "emptied buffers first"
        );
        drop(waiting);
        for _ in 0..RETURNED {
            let buf = tx.empty_rows();
            assert!(buf.is_empty() && capacities[1..].contains(&buf.capacity()));
        }
        assert_eq!(tx.empty_rows().capacity(), 0, "none left: a new one");
        // Stored rows handed back are dropped by the reader that takes them.
        returned.give(vec![row(1); 3]);
        let buf = tx.empty_rows();
        assert!(buf.is_empty() && buf.capacity() >= 3);
        let (plain, rx) = channel(1, false);
        let mut p = Round::new(1, rx.returned);
        p.absorb(plain.batch(0, vec![row(1)], None, Flow::More));
        p.stored(0);
        assert_eq!(plain.empty_rows().capacity(), 0);
    }

    #[test]
    fn first_batches_are_small_and_double_up_to_the_limit() {
        let mut p = Pending::new(1, 10_000, MAX_BATCH_BYTES);
        assert_eq!(
            sizes(&mut p, 7),
            [1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]
        );
        let mut small = Pending::new(1, 10, MAX_BATCH_BYTES);
        assert_eq!(sizes(&mut small, 3), [10, 10, 10]);
    }
}
