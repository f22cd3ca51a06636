//! Draining a command's stdout and stderr on threads, bounded: the start of stdout when it is
//! read, else its last lines, and the last lines of stderr, for the error message and for the
//! result's provenance; and, once the command has ended, any
//! process it started that still holds the pipes found and killed, so cfrun never hangs on them.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::error::ChildError;
use crate::config::error::printable_cut;

/// Lines of each stream kept (stderr for the error message, both for the provenance).
const TAIL_LINES: usize = 20;
/// Longest stderr line kept, in bytes.
const LINE_BYTES: usize = 400;
/// How long the output pipes may stay open after the command's process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The last lines of a stream and how many it had.
#[derive(Debug, Default)]
pub(in crate::ops::command) struct Tail {
    /// The last [`TAIL_LINES`] lines, each cut to [`LINE_BYTES`] and safe to print.
    pub lines: VecDeque<String>,
    /// How many lines the stream had (a line past 64 KiB counts once for each 64 KiB read).
    pub count: usize,
}

/// Keeps the last [`TAIL_LINES`] lines of a stream, each cut to [`LINE_BYTES`].
fn tail(stream: impl Read) -> Tail {
    let mut lines = VecDeque::new();
    let mut count = 0;
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read at most a bounded chunk per line so a newline-free flood cannot grow memory.
        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                // Kept for messages and logs: a command's escape sequences are shown, not obeyed.
                let mut line = printable_cut(String::from_utf8_lossy(&buf).trim_end(), usize::MAX);
                if line.len() > LINE_BYTES {
                    let mut cut = LINE_BYTES;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                    line.push_str(" ...");
                }
                tracing::debug!(target: "cfrun::command", "{line}");
                if lines.len() == TAIL_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
                count += 1;
            }
        }
    }
    Tail { lines, count }
}

/// How a supervised process ended.
pub(super) struct Finished {
    /// `None` when it was killed at its timeout.
    pub(super) status: Option<std::process::ExitStatus>,
    /// The start of its stdout (when kept).
    pub(super) stdout: Vec<u8>,
    /// The last lines of its stdout (when its start is not kept).
    pub(super) stdout_tail: Tail,
    /// The last lines of its stderr.
    pub(super) stderr: Tail,
}

/// Keeps the first `limit` bytes of a stream and drains the rest (so the writer never blocks).
fn head(mut stream: impl Read, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        if kept.len() >= limit {
            // Enough to judge: stop reading, so a command that prints without end meets a
            // closed pipe now instead of running on until its timeout.
            break;
        }
    }
    kept
}

/// The threads draining a command's stdout and stderr.
pub(super) struct Drain {
    stdout: std::thread::JoinHandle<(Vec<u8>, Tail)>,
    stderr: std::thread::JoinHandle<Tail>,
    /// One message per stream that reached its end.
    closed: std::sync::mpsc::Receiver<()>,
    /// The two pipes' inode numbers: whoever else holds them was started by the command.
    pipes: Vec<u64>,
}

/// The inode of the pipe behind `fd`.
fn pipe_inode(fd: &impl AsRawFd) -> Option<u64> {
    // SAFETY: fstat fills a plain struct for a descriptor this process owns.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino)
}

/// The processes holding the writing end of any of `pipes`, found in `/proc`. Only a command's
/// descendants can: cfrun made the pipes for it and keeps only their reading ends (which a child
/// it is starting may hold for an instant between fork and exec: those are left alone).
fn pipe_holders(pipes: &[u64]) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| holds_writing_end(pid, pipes))
        .collect()
}

/// Whether process `pid` holds the writing end of any of `pipes`.
fn holds_writing_end(pid: i32, pipes: &[u64]) -> bool {
    let names: Vec<String> = pipes.iter().map(|i| format!("pipe:[{i}]")).collect();
    let writes = |fd: &std::ffi::OsStr| {
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy())).unwrap_or_default();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(str::trim);
        flags
            .and_then(|f| u32::from_str_radix(f, 8).ok())
            .is_some_and(|f| f & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32)
    };
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            let held = std::fs::read_link(fd.path()).is_ok_and(|l| names.iter().any(|n| l.as_os_str() == n.as_str()));
            held && writes(&fd.file_name())
        })
    })
}

/// Kills `pid` if it still holds the writing end of one of `pipes`, through a pidfd opened
/// before that look: the signal reaches the process that was looked at, or none, never another
/// that took its pid after it ended. Whether it was signalled.
fn kill_holder(pid: i32, pipes: &[u64]) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        // A kernel before 5.3, or a seccomp profile that refuses pidfds: the plain kill, right
        // after the look (the small window for a reused pid is the lesser harm than a process
        // that runs on).
        let unavailable = matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOSYS | libc::EPERM));
        // SAFETY: sends a signal to the process just seen holding a pipe made for this command.
        return unavailable && holds_writing_end(pid, pipes) && unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
    }
    let fd = fd as libc::c_int;
    let signalled = holds_writing_end(pid, pipes)
        // SAFETY: sends a signal through the descriptor opened above, with no info struct.
        && unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) } == 0;
    // SAFETY: closes the descriptor opened above, used nowhere else.
    unsafe { libc::close(fd) };
    signalled
}

impl Drain {
    pub(super) fn start(child: &mut std::process::Child, keep_stdout: usize) -> Drain {
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let pipes = [pipe_inode(&out), pipe_inode(&err)].into_iter().flatten().collect();
        let (done_tx, closed) = std::sync::mpsc::channel();
        let out_done = done_tx.clone();
        let stdout = std::thread::spawn(move || {
            let kept =
                if keep_stdout > 0 { (head(out, keep_stdout), Tail::default()) } else { (Vec::new(), tail(out)) };
            let _ = out_done.send(());
            kept
        });
        let stderr = std::thread::spawn(move || {
            let kept = tail(err);
            let _ = done_tx.send(());
            kept
        });
        Drain { stdout, stderr, closed, pipes }
    }

    /// The output, once both streams have closed. A process that escaped every watch (its
    /// watcher killed outright) may hold them open for as long as it likes: past a short grace
    /// it is found by the pipe it holds and killed, so the timeout holds and cfrun never hangs.
    pub(super) fn finish(
        self,
        status: Option<std::process::ExitStatus>,
        ending: Ending,
    ) -> Result<Finished, ChildError> {
        let grace = Instant::now() + PIPE_GRACE;
        let mut open = 2;
        while open > 0 && self.closed.recv_timeout(grace.saturating_duration_since(Instant::now())).is_ok() {
            open -= 1;
        }
        if open > 0 {
            let holders: Vec<i32> =
                pipe_holders(&self.pipes).into_iter().filter(|&pid| kill_holder(pid, &self.pipes)).collect();
            let grace = Instant::now() + PIPE_GRACE;
            while open > 0 && self.closed.recv_timeout(grace.saturating_duration_since(Instant::now())).is_ok() {
                open -= 1;
            }
            let fate = match (holders.is_empty(), open) {
                (false, 0) => format!(
                    "cfrun killed it (pid {})",
                    holders.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
                ),
                _ => "cfrun can neither wait for it nor stop it".to_string(),
            };
            return Err(ChildError::LeftBehind { grace_s: PIPE_GRACE.as_secs(), ending: ending.words(), fate });
        }
        let (stdout, stdout_tail) = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        Ok(Finished { status, stdout, stdout_tail, stderr })
    }
}

/// How a command's run came to its end, as the message about a process left behind says it.
#[derive(Clone, Copy)]
pub(super) enum Ending {
    /// The command ended by itself.
    Ended,
    /// It ran past its timeout and was killed.
    TimedOut,
    /// Its watcher was killed (SIGKILL) before it could report, taking the command with it.
    WatcherKilled,
}

impl Ending {
    pub(super) fn of(status: Option<std::process::ExitStatus>) -> Ending {
        if status.is_some() {
            Ending::Ended
        } else {
            Ending::TimedOut
        }
    }

    pub(super) fn words(self) -> &'static str {
        match self {
            Ending::Ended => "ended",
            Ending::TimedOut => "was killed at its timeout",
            Ending::WatcherKilled => "was killed with its watcher",
        }
    }
}
