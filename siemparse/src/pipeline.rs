//! The write side of ingest: readers send [`Batch`]es over a bounded
//! channel; one writer merges what is queued into a transaction (up to
//! `--batch` rows) and commits rows and file offsets together. When input is
//! idle, the writer advances the `--grep` search index between batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use siemstress_common::db::{Checkpoint, EventWriter, grep_index};
use siemstress_common::event::Event;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// Rows from one reader, and the offset they bring its file to.
pub struct Batch {
    pub events: Vec<Event>,
    pub checkpoint: Option<Checkpoint>,
}

/// The sending half readers hold; sending fails once the writer has stopped.
#[derive(Clone)]
pub struct BatchSender(mpsc::Sender<Batch>);

/// Raised when the writer has stopped; the reader should stop too.
#[derive(Debug)]
pub struct WriterGone;

impl BatchSender {
    /// Sends a batch, blocking while the writer is behind.
    pub fn send(
        &self,
        events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), WriterGone> {
        if events.is_empty() && checkpoint.is_none() {
            return Ok(());
        }
        self.0
            .blocking_send(Batch { events, checkpoint })
            .map_err(|_| WriterGone)
    }
}

/// A channel of a few batches: enough to overlap parsing and writing,
/// little enough that memory stays flat whatever the input size.
pub fn channel() -> (BatchSender, mpsc::Receiver<Batch>) {
    let (tx, rx) = mpsc::channel(4);
    (BatchSender(tx), rx)
}

/// Rows per step of the search indexer: small, so that a batch arriving
/// meanwhile waits only a few tens of milliseconds.
pub const INDEX_STEP_ROWS: u64 = 2_000;
/// Input quiet for this long counts as idle: the indexer may run.
const IDLE: Duration = Duration::from_millis(100);
/// With this many rows unindexed, the indexer also runs whenever no batch
/// is queued, so a steady stream cannot starve it.
const INDEX_BACKLOG: u64 = 50_000;

/// The next batch; while input is idle, advances the search index (in its
/// own transactions, never the insert's). `None` once every sender is gone.
/// An index step that fails (a lock wait timeout, a deadlock on a busy
/// MariaDB) stops indexing for this run with a warning, never the ingest:
/// the index only narrows `--grep`, which scans the rows above its mark.
async fn next_batch(
    writer: &mut EventWriter,
    index_behind: &mut bool,
    rx: &mut mpsc::Receiver<Batch>,
) -> anyhow::Result<Option<Batch>> {
    loop {
        match rx.try_recv() {
            Ok(b) => return Ok(Some(b)),
            Err(TryRecvError::Disconnected) => return Ok(None),
            Err(TryRecvError::Empty) => {}
        }
        let backlog = if *index_behind {
            writer.index_backlog()
        } else {
            0
        };
        if backlog == 0 {
            return Ok(rx.recv().await);
        }
        // Below the backlog limit, index only after IDLE without input.
        if backlog < INDEX_BACKLOG
            && let Ok(b) = tokio::time::timeout(IDLE, rx.recv()).await
        {
            return Ok(b);
        }
        if let Err(e) = writer.index_step(INDEX_STEP_ROWS).await {
            eprintln!(
                "siemparse: warning: updating the search index: {e}; not indexing any more in this \
                 run (--grep stays exact; `siemparse --index` catches up)"
            );
            *index_behind = false;
        }
    }
}

/// Writes everything received until every sender is gone; counts rows in `stored`.
pub async fn write_all(
    mut writer: EventWriter,
    mut rx: mpsc::Receiver<Batch>,
    batch_rows: usize,
    stored: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut events: Vec<Event> = Vec::with_capacity(batch_rows);
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    // SIEMSTRESS_GREP_INDEX=never: leave the index alone (for A/B benchmarks).
    let mut index_behind = grep_index::mode().is_some();
    while let Some(first) = next_batch(&mut writer, &mut index_behind, &mut rx).await? {
        absorb(&mut events, &mut checkpoints, first);
        while events.len() < batch_rows {
            match rx.try_recv() {
                Ok(b) => absorb(&mut events, &mut checkpoints, b),
                Err(_) => break,
            }
        }
        writer
            .write(&events, &checkpoints)
            .await
            .with_context(|| format!("storing {} lines", events.len()))?;
        stored.fetch_add(events.len() as u64, Ordering::Relaxed);
        events.clear();
        checkpoints.clear();
    }
    Ok(())
}

/// Adds a batch to the pending transaction.
fn absorb(events: &mut Vec<Event>, checkpoints: &mut Vec<Checkpoint>, b: Batch) {
    if events.is_empty() {
        *events = b.events;
    } else {
        events.extend(b.events);
    }
    if let Some(cp) = b.checkpoint {
        // A later checkpoint of the same file supersedes an earlier one.
        checkpoints.retain(|c| (&c.section, &c.path) != (&cp.section, &cp.path));
        checkpoints.push(cp);
    }
}
