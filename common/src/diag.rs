//! Messages to stderr that cannot crash the tool.
//!
//! `eprintln!` panics when stderr is a pipe whose reader has gone
//! (`siemtrigger --check 2>&1 | head -1`, a log collector restarted under a
//! daemon). A lost warning is better than a lost process with rows still to
//! store, so [`diag!`](crate::diag!) drops what it cannot write.

use std::io::Write;

/// Writes one line to stderr; a write error is ignored (see the module).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` that never panics: see [`diag`](crate::diag).
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::diag::line(::std::format_args!($($arg)*))
    };
}
