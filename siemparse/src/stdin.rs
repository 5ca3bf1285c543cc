//! Reading log lines from standard input.

use std::io::Read;

use siemstress_common::diag;
use siemstress_common::parse::LineParser;
use siemstress_common::time::now_ms;

use crate::lines::LineSplitter;
use crate::pipeline::{BatchSender, Flow, MAX_BATCH_BYTES, Pending, WriterGone};
use crate::reload::{Current, ParserSpec};

/// How long the database may take no rows before siemparse warns.
const STALL_WARNING: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads stdin to EOF, sending batches of at most about `batch_rows`; a
/// partial batch is sent as soon as no more input is waiting, so a line
/// piped in from `tail -f` is stored at once. A full batch is sent as
/// [`Flow::More`]; after one, an empty batch tells the writer when no more
/// input is waiting, and the last rows go with the end of the source, so
/// that the writer never waits in vain for more. Settings reloaded by SIGHUP
/// apply from the next read on.
pub fn read_stdin(
    mut parser: LineParser,
    mut settings: Current<ParserSpec>,
    tx: BatchSender,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 256 * 1024];
    let mut splitter = LineSplitter::default();
    let mut batch = Pending::new(1, batch_rows, MAX_BATCH_BYTES);
    let gone = |_: WriterGone| anyhow::anyhow!("the database writer stopped");
    // The only buffer is the writer's queue: when the database takes
    // nothing, stdin is not read (the program writing into it waits) and
    // siemparse says so; nothing is ever dropped.
    let send = |events: Vec<_>, flow: Flow, last: bool| {
        tx.send_or_warn(
            events,
            flow,
            last,
            STALL_WARNING,
            || {
                diag!(
                    "siemparse: warning: the database has taken no rows for {} s; stdin is not \
                     read until it does (the queue of rows in memory is full; nothing is dropped)",
                    STALL_WARNING.as_secs()
                )
            },
            |waited| {
                diag!(
                    "siemparse: the database takes rows again (after {:.0} s); reading stdin",
                    waited.as_secs_f64()
                )
            },
        )
        .map_err(gone)
    };
    // The last batch sent was full (Flow::More): the writer expects another.
    let mut promised = false;
    loop {
        if (!batch.is_empty() || promised) && !input_waiting() {
            send(batch.take_single(tx.empty_rows()), Flow::CaughtUp, false)?;
            promised = false;
        }
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("reading standard input")),
        };
        if let Some(new) = settings.changed() {
            new.apply(&mut parser);
        }
        let received = now_ms();
        splitter.feed(&buf[..n], |line, _| {
            batch.push(0, parser.parse(line, received))
        });
        if batch.is_full() {
            send(batch.take_single(tx.empty_rows()), Flow::More, false)?;
            promised = true;
        }
    }
    if let Some(last) = splitter.take_pending() {
        batch.push(0, parser.parse(&last, now_ms()));
    }
    // EOF: the last rows, and stdin no longer holds siemtrigger's watermark.
    send(batch.take_single(tx.empty_rows()), Flow::CaughtUp, true)
}

/// True if a read of stdin would not block (data or EOF is ready).
fn input_waiting() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // An error (EINTR) counts as waiting, as poll's -1 did: the read decides.
    !matches!(poll(&mut fds, Some(&now)), Ok(0))
}
