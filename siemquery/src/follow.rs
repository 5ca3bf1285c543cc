//! `-f`/`--follow`: what the poll loops of events and alerts share: the
//! wait between polls (bounded both ways) and noticing that the reader of
//! stdout has gone while nothing is written.
//!
//! New rows are found by id: each table's (and the alerts') highest id when
//! the follow started is its resume point, and every poll reads the rows
//! above it, then moves it to the highest id read. SQLite assigns ids in
//! commit order (one writer at a time); on MariaDB a row whose transaction
//! commits after a row with a higher id (two writers into one table) can be
//! passed over.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::bail;

use crate::args::{Args, Format};

/// The shortest wait between polls (right after rows arrived).
pub const POLL_MIN: Duration = Duration::from_millis(200);
/// The longest wait between polls (the wait doubles while nothing arrives).
pub const POLL_MAX: Duration = Duration::from_secs(2);

/// The wait before the next poll.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(POLL_MIN)
    }
}

impl Backoff {
    /// After a poll that found `rows`: the wait before the next one.
    pub fn next(&mut self, rows: u64) -> Duration {
        self.0 = if rows > 0 {
            POLL_MIN
        } else {
            (self.0 * 2).min(POLL_MAX)
        };
        self.0
    }
}

/// Refuses outputs that cannot be followed: a JSON array is complete only
/// at its end, which a follow never reaches.
pub fn check(args: &Args, format: Format) -> anyhow::Result<()> {
    if format == Format::Json || args.json.is_some() {
        bail!(
            "--follow writes rows as they come, and a JSON array is never complete: \
             use --format ndjson (one object per line)"
        );
    }
    Ok(())
}

/// Sleeps `wait`; an error when stdout has become a pipe without a reader
/// (as a write there would fail), so an idle follow ends too.
pub async fn sleep(wait: Duration) -> anyhow::Result<()> {
    tokio::time::sleep(wait).await;
    if stdout_closed() {
        return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
    }
    Ok(())
}

/// True when stdout reports an error or hang-up (a pipe whose reader has
/// closed it), found by a poll that does not wait.
fn stdout_closed() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let stdout = io::stdout();
    let fd = stdout.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(n) if n > 0 => fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_bound_and_resets_on_rows() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..6).map(|_| b.next(0)).collect();
        assert_eq!(waits[0], POLL_MIN * 2);
        assert_eq!(*waits.last().unwrap(), POLL_MAX);
        assert!(waits.iter().all(|w| *w <= POLL_MAX));
        assert_eq!(b.next(3), POLL_MIN);
    }
}
