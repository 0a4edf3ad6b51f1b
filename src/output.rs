//! Standard output that a closed reader does not turn into a crash.
//!
//! `warden plan | head -3` closes the pipe after three lines. Rust's `print!` panics
//! on the write error that follows (exit 101). Every line warden writes to standard
//! output goes through [`write`] instead: once the reader is gone the rest of the
//! output is dropped quietly and the command carries on (an apply is not cut off
//! halfway because nobody reads its progress), ending with its usual exit status.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `text` to standard output and flush it; nothing happens once the reader
/// has closed the pipe.
pub fn write(text: &str) {
    write_bytes(text.as_bytes());
}

/// [`write`] for bytes (a man page, a completion script).
pub fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let r = out.write_all(bytes).and_then(|_| out.flush());
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => CLOSED.store(true, Ordering::Relaxed),
        Err(e) => {
            // A full disk behind a redirect: say it once on stderr, then stop trying.
            CLOSED.store(true, Ordering::Relaxed);
            let _ = writeln!(std::io::stderr(), "warden: standard output: {e}");
        }
    }
}

/// Has the reader of standard output gone away?
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// `print!` through [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(&format!($($arg)*)) };
}

/// `println!` through [`write`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write("\n") };
    ($($arg:tt)*) => { $crate::output::write(&format!("{}\n", format_args!($($arg)*))) };
}
