//! The terminal the progress bars draw on: stderr, with its write errors swallowed. indicatif
//! unwraps its draw target's errors, so a terminal gone under a running study (a hung-up tty
//! answers EIO, and no SIGHUP comes when cfrun is not the terminal's session leader) panicked in
//! the next log line's write and aborted the run; here the first failed write stops the drawing
//! and the run goes on, its log lines dropped as `logging` drops any it cannot write.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indicatif::{ProgressDrawTarget, TermLike};

/// Columns assumed where the terminal does not say (console's default too).
const DEFAULT_WIDTH: u16 = 80;
/// Rows assumed where the terminal does not say.
const DEFAULT_HEIGHT: u16 = 24;
/// Redraws per second at most (indicatif's default for stderr).
const REFRESH_HZ: u8 = 20;

/// A [`TermLike`] over a writer: escapes buffered per frame, written on `flush`, and nothing
/// written after the writer has failed once.
pub struct BarTerminal<W: Write + Send> {
    out: Mutex<W>,
    frame: Mutex<Vec<u8>>,
    gone: AtomicBool,
    size: fn() -> Option<(u16, u16)>,
}

impl BarTerminal<io::Stderr> {
    /// The draw target for the bars: stderr, sized by its window.
    pub fn stderr_target() -> ProgressDrawTarget {
        let term = BarTerminal::new(io::stderr(), stderr_size);
        ProgressDrawTarget::term_like_with_hz(Box::new(term), REFRESH_HZ)
    }
}

impl<W: Write + Send> BarTerminal<W> {
    /// A terminal writing to `out`, whose `(columns, rows)` `size` reads (None: unknown).
    pub fn new(out: W, size: fn() -> Option<(u16, u16)>) -> Self {
        BarTerminal { out: Mutex::new(out), frame: Mutex::new(Vec::new()), gone: AtomicBool::new(false), size }
    }

    /// Whether a write has failed (the terminal is gone).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Moves the cursor `n` cells the way ANSI's `CSI n <direction>` says (none for 0).
    fn cursor(&self, n: usize, direction: char) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(format!("\x1b[{n}{direction}").as_bytes())
    }

    fn put(&self, bytes: &[u8]) -> io::Result<()> {
        if !self.is_gone() {
            self.frame.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        }
        Ok(())
    }
}

impl<W: Write + Send> std::fmt::Debug for BarTerminal<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarTerminal").field("gone", &self.is_gone()).finish()
    }
}

impl<W: Write + Send> TermLike for BarTerminal<W> {
    fn width(&self) -> u16 {
        (self.size)().map(|(w, _)| w).filter(|&w| w > 0).unwrap_or(DEFAULT_WIDTH)
    }

    fn height(&self) -> u16 {
        (self.size)().map(|(_, h)| h).filter(|&h| h > 0).unwrap_or(DEFAULT_HEIGHT)
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.cursor(n, 'D')
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.put(s.as_bytes())?;
        self.put(b"\n")
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.put(s.as_bytes())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.put(b"\r\x1b[2K")
    }

    fn flush(&self) -> io::Result<()> {
        let frame = std::mem::take(&mut *self.frame.lock().unwrap_or_else(|e| e.into_inner()));
        if frame.is_empty() || self.is_gone() {
            return Ok(());
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.write_all(&frame).and_then(|()| out.flush()).is_err() {
            self.gone.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// stderr's window as `(columns, rows)`, if it is a terminal that says.
fn stderr_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given, which lives here.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    ok.then_some((ws.ws_col, ws.ws_row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{MultiProgress, ProgressBar};
    use std::sync::Arc;

    /// Writes into a shared buffer until `fail` is set, then answers EIO, as a hung-up tty does.
    struct Tty {
        seen: Arc<Mutex<Vec<u8>>>,
        fail: Arc<AtomicBool>,
    }

    impl Write for Tty {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.seen.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Bars draw through it, and once its writer fails drawing and suspending (what a log line
    /// does) go on without a panic and without writing; with indicatif's own terminal target the
    /// same failure is an unwrap in `suspend`.
    #[test]
    fn a_terminal_gone_mid_run_stops_the_drawing_not_the_run() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let term = BarTerminal::new(Tty { seen: seen.clone(), fail: fail.clone() }, || Some((100, 30)));
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term)));
        let bar = multi.add(ProgressBar::new(10));
        bar.inc(1);
        multi.suspend(|| ());
        let drawn = seen.lock().unwrap().len();
        assert!(drawn > 0, "nothing drawn");
        fail.store(true, Ordering::Relaxed);
        for _ in 0..3 {
            bar.inc(1);
            multi.suspend(|| ());
        }
        bar.finish_and_clear();
        assert_eq!(seen.lock().unwrap().len(), drawn, "written after the failure");
    }

    /// A terminal that gives no size is taken as 80 x 24, not 0 columns.
    #[test]
    fn an_unknown_size_is_80_by_24() {
        let term = BarTerminal::new(Vec::new(), || None);
        assert_eq!((term.width(), term.height()), (80, 24));
        let zero = BarTerminal::new(Vec::new(), || Some((0, 0)));
        assert_eq!((zero.width(), zero.height()), (80, 24));
    }
}
