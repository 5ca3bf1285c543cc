//! Progress on stderr, only when stderr is a terminal.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rewrites one status line every half second until aborted.
pub fn spawn(stored: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let n = stored.load(Ordering::Relaxed);
            let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\rsiemparse: {n} lines stored ({rate:.0} lines/s)   ");
            let _ = err.flush();
        }
    })
}
