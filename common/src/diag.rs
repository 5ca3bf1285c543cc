//! Messages to stderr that cannot crash the tool.
//!
//! `eprintln!` panics when stderr is a pipe whose reader has gone
//! (`siemtrigger --check 2>&1 | head -1`, a log collector restarted under a
//! daemon). A lost warning is better than a lost process with rows still to
//! store, so [`diag!`](crate::diag!) drops what it cannot write.
//!
//! Messages name files, users and values that an attacker may have chosen
//! (a rule file called `ESC]2;...`): every line is written through
//! [`escape_message`], so no message reaches the terminal raw.

use std::io::Write;

use crate::display::escape_message;

/// Writes one line to stderr, escaped for a terminal; a write error is
/// ignored (see the module).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut text = escape_message(&args.to_string()).into_owned();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `eprintln!` that never panics: see [`diag`](crate::diag).
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::diag::line(::std::format_args!($($arg)*))
    };
}
