//! SIGHUP: re-read the config and the decoders while running (`systemctl
//! reload`, a logrotate `postrotate`). The new settings are built and
//! checked in full first; if anything is wrong the current ones stay, and
//! the error is printed. What needs a restart (another database, another
//! table for a section) makes a reload fail the same way. Readers take the
//! new settings at their next read; followed files are also reopened.

use std::sync::Arc;

use siemstress_common::config::Section;
use siemstress_common::decode::Decoders;
use siemstress_common::diag;
use siemstress_common::parse::LineParser;
use tokio::sync::watch;

/// How the lines of one section are parsed: what a reload replaces for
/// stdin and `--follow`.
pub struct ParserSpec {
    pub section: Section,
    pub decoders: Arc<Decoders>,
}

impl ParserSpec {
    /// A new parser of `source` with these settings.
    pub fn parser(
        &self,
        year: Option<i32>,
        reference: Option<chrono::NaiveDateTime>,
        source: &str,
    ) -> LineParser {
        let p = LineParser::new(self.section.zone, year, source)
            .with_decoders(self.decoders.clone())
            .with_format(self.section.structured.clone());
        match reference {
            Some(r) => p.with_reference(r),
            None => p,
        }
    }

    /// Gives `parser` these settings, keeping its state.
    pub fn apply(&self, parser: &mut LineParser) {
        parser.reconfigure(
            self.section.zone,
            self.decoders.clone(),
            self.section.structured.clone(),
        );
    }
}

/// A reader's view of the current settings: `changed` is true once after
/// each reload.
pub struct Current<T> {
    rx: watch::Receiver<Arc<T>>,
}

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
        }
    }
}

impl<T> Current<T> {
    /// The settings now.
    pub fn get(&self) -> Arc<T> {
        self.rx.borrow().clone()
    }

    /// The new settings if a reload happened since the last call (or since
    /// this view was made).
    pub fn changed(&mut self) -> Option<Arc<T>> {
        match self.rx.has_changed() {
            Ok(true) => Some(self.rx.borrow_and_update().clone()),
            _ => None,
        }
    }
}

/// Starts with `initial`; on every SIGHUP calls `load` and publishes what
/// it returns, or prints its error and keeps the current settings. The
/// handler is installed before this returns (SIGHUP no longer kills).
pub fn on_hangup<T: Send + Sync + 'static>(
    initial: T,
    quiet: bool,
    load: impl Fn(&T) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<(Current<T>, tokio::task::JoinHandle<()>)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| anyhow::anyhow!("cannot catch SIGHUP: {e}"))?;
    let (tx, rx) = watch::channel(Arc::new(initial));
    let task = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let current = tx.borrow().clone();
            match load(&current) {
                Ok(new) => {
                    tx.send_replace(Arc::new(new));
                    if !quiet {
                        diag!("siemparse: SIGHUP: config and decoders reloaded");
                    }
                }
                Err(e) => diag!(
                    "siemparse: SIGHUP: reload failed, keeping the current config and decoders: {e:#}"
                ),
            }
        }
    });
    Ok((Current { rx }, task))
}

/// A reload must not move a section to another table: its writer is open
/// on the old one (restart siemparse for that).
pub fn check_same_table(old: &Section, new: &Section) -> anyhow::Result<()> {
    if old.table != new.table {
        anyhow::bail!(
            "[section.{}] table changed from {} to {}: restart siemparse to write to another table",
            new.name,
            old.table,
            new.table
        );
    }
    Ok(())
}
