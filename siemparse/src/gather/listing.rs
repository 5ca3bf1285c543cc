//! Directory listings for the walk, read ahead on helper threads.
//!
//! Listing a directory is a `getdents` and one `statx` per entry: for an
//! unchanged `files` run over 100,000 files that is most of the run, and
//! it is the same work whatever the order. The walk stays a depth-first
//! loop on the calling thread (its decisions, order and `keep` callback
//! unchanged), but it asks [`Prefetch::take`] for each directory's
//! listing, which helper threads have usually read already: they list the
//! directories the walk will need next (the top of its stack) while it
//! works on the current one.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use globset::GlobSet;

use super::rootfs::{self, Base, Stat};

/// The entries of one directory, sorted by host path, excluded paths left
/// out, each with its lstat (entries that vanished or cannot be stat'ed
/// are left out, as the walk did before).
pub type Listing = std::io::Result<Vec<(String, Stat)>>;

/// Lists host directory `dir` below `base` (no symlink followed).
pub fn list(base: &Base, dir: &str, exclude: &GlobSet) -> Listing {
    let prefix = dir.trim_end_matches('/');
    let fd = base.open(dir, rootfs::list_flags())?;
    Ok(rootfs::list_fd(fd)?
        .into_iter()
        .map(|(name, st)| {
            let mut host = String::with_capacity(prefix.len() + 1 + name.len());
            host.push_str(prefix);
            host.push('/');
            host.push_str(&name);
            (host, st)
        })
        .filter(|(host, _)| exclude.is_empty() || !exclude.is_match(host))
        .collect())
}

#[derive(Default)]
struct State {
    /// Directories to list, the next needed on top.
    queue: Vec<String>,
    /// Being listed by a helper.
    listing: HashSet<String>,
    /// Listings read ahead, not yet taken.
    done: HashMap<String, Listing>,
    /// The walk is over: helpers stop.
    finished: bool,
}

/// Listings read ahead by helper threads (see the module doc).
pub struct Prefetch<'a> {
    base: &'a Base,
    exclude: &'a GlobSet,
    state: Mutex<State>,
    changed: Condvar,
}

impl<'a> Prefetch<'a> {
    pub fn new(base: &'a Base, exclude: &'a GlobSet) -> Self {
        Self {
            base,
            exclude,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking helper cannot leave the state inconsistent: every
        // update is a single push, pop or insert.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues directories the walk will take later, the last one first.
    pub fn want(&self, dirs: impl Iterator<Item = String>) {
        self.lock().queue.extend(dirs);
        self.changed.notify_all();
    }

    /// The listing of `dir`: read ahead, or read now (by the caller, if no
    /// helper has started on it; else waiting for the helper).
    pub fn take(&self, dir: &str) -> Listing {
        let mut st = self.lock();
        loop {
            if let Some(l) = st.done.remove(dir) {
                return l;
            }
            if !st.listing.contains(dir) {
                if let Some(i) = st.queue.iter().rposition(|d| d == dir) {
                    st.queue.remove(i);
                }
                drop(st);
                return list(self.base, dir, self.exclude);
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A helper thread's loop: list queued directories until [`Self::finish`].
    pub fn help(&self) {
        let mut st = self.lock();
        loop {
            if st.finished {
                return;
            }
            let Some(dir) = st.queue.pop() else {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            st.listing.insert(dir.clone());
            drop(st);
            // A panic here must not leave `dir` marked as being listed: the
            // walk would wait for it forever. It becomes that directory's error.
            let listing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                list(self.base, &dir, self.exclude)
            }))
            .unwrap_or_else(|_| Err(std::io::Error::other("listing panicked")));
            st = self.lock();
            st.listing.remove(&dir);
            st.done.insert(dir, listing);
            self.changed.notify_all();
        }
    }

    /// Ends the helpers' loops.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }

    /// Runs `walk` with `helpers` threads reading ahead for it; they stop
    /// when it returns (or unwinds).
    pub fn run<T>(&self, helpers: usize, walk: impl FnOnce(&Self) -> T) -> T {
        struct Finish<'p, 'a>(&'p Prefetch<'a>);
        impl Drop for Finish<'_, '_> {
            fn drop(&mut self) {
                self.0.finish();
            }
        }
        std::thread::scope(|s| {
            for _ in 0..helpers {
                s.spawn(|| self.help());
            }
            let _finish = Finish(self);
            walk(self)
        })
    }
}
