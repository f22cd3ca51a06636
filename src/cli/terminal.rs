//! What the terminal is shown of a report or an error: escapes shown, not obeyed, and cut.

use std::path::Path;

use crate::config::error::printable_cut;

/// Most of a report (or a stage's error) printed on the terminal after a run.
pub(super) const TERMINAL_REPORT_CHARS: usize = 64 * 1024;

/// Most of a report file read for the terminal: [`TERMINAL_REPORT_CHARS`] characters and more.
pub(super) const TERMINAL_REPORT_BYTES: u64 = 4 * TERMINAL_REPORT_CHARS as u64;

/// A markdown report as the terminal shows it: escapes shown, not obeyed, CRLF read as a line
/// end, and past [`TERMINAL_REPORT_CHARS`] cut with a note naming the file.
pub(super) fn report_for_terminal(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).ok()?;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, TERMINAL_REPORT_BYTES + 1), &mut bytes).ok()?;
    let cut_bytes = bytes.len() as u64 > TERMINAL_REPORT_BYTES;
    bytes.truncate(TERMINAL_REPORT_BYTES as usize);
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    let cut_chars = text.chars().nth(TERMINAL_REPORT_CHARS).is_some();
    let mut shown = printable_cut(&text, TERMINAL_REPORT_CHARS);
    if cut_bytes || cut_chars {
        if !cut_chars {
            shown.push_str("… (cut)");
        }
        shown.push_str(&format!(" — the whole report is {}", path.display()));
    }
    Some(shown)
}
