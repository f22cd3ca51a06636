//! cfrun's own output. `println!` panics when its write fails (stdout on a full disk, a terminal
//! that closed), ending the command with exit 101 and a backtrace; these writes cannot panic. A
//! failed write to stdout is kept, and the command then ends with exit 1 and says so on stderr,
//! so that output lost to `> /dev/full` is never reported as a success. A failed write to stderr
//! has nowhere to be told and is dropped.

use std::io::Write as _;
use std::sync::Mutex;

/// The first write to stdout that failed, with why.
static LOST: Mutex<Option<String>> = Mutex::new(None);

/// Writes `text` to stdout and flushes it (a line without its newline, or a page, would otherwise
/// wait in the buffer until exit, where a failure goes unseen).
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        LOST.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| e.to_string());
    }
}

/// Writes `text` to stderr, dropping a failure.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Why a write to stdout failed, if one did.
pub fn lost() -> Option<String> {
    LOST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
