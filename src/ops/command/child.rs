//! Running the child process: a cleared environment, its own process group (so a timeout kills
//! whatever it started, too), stdout and stderr drained on threads, only the last lines of stderr
//! kept (bounded memory) for the error message.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::error::printable_cut;

/// Lines of stderr kept for the error message.
const TAIL_LINES: usize = 20;
/// Longest stderr line kept, in bytes.
const LINE_BYTES: usize = 400;
/// How long the output pipes may stay open after the command's process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Variables passed through from cfrun's environment; everything else is cleared so the child
/// depends on as little as possible that the recipe key does not see.
const PASSED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
];

/// One invocation.
pub struct Spec<'a> {
    /// Program and arguments, placeholders expanded.
    pub argv: &'a [String],
    /// The scratch folder it runs in.
    pub cwd: &'a Path,
    /// Killed after this long.
    pub timeout: Duration,
    /// Extra variables (`CFRUN_SEED`, ...).
    pub env: Vec<(String, String)>,
}

fn command(argv: &[String], cwd: &Path) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(cwd).env_clear().stdin(Stdio::null()).process_group(0);
    for name in PASSED {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONHASHSEED", "0");
    // Its own process group keeps the terminal's Ctrl-C from reaching it directly, so it must
    // die with the thread that started it when cfrun itself is interrupted or killed.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

fn spawn_error(argv: &[String], e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        let path = std::env::var("PATH").unwrap_or_default();
        if argv[0].contains('/') {
            format!("was not found (`{}` is not in the stage's scratch folder; list it in `code`)", argv[0])
        } else {
            format!("was not found on PATH ({path})")
        }
    } else {
        format!("could not be started: {e}")
    }
}

/// Keeps the last [`TAIL_LINES`] lines of a stream, each cut to [`LINE_BYTES`].
fn tail(stream: impl Read) -> VecDeque<String> {
    let mut lines = VecDeque::new();
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
            }
        }
    }
    lines
}

fn with_tail(msg: String, lines: &VecDeque<String>) -> String {
    if lines.is_empty() {
        return format!("{msg} (stderr was empty)");
    }
    let body: Vec<&str> = lines.iter().map(String::as_str).collect();
    format!("{msg}; last lines of stderr:\n    {}", body.join("\n    "))
}

/// How a supervised process ended.
struct Finished {
    /// `None` when it was killed at its timeout.
    status: Option<std::process::ExitStatus>,
    /// The start of its stdout (when kept).
    stdout: Vec<u8>,
    /// The last lines of its stderr.
    stderr: VecDeque<String>,
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

/// Spawns `cmd`, drains its output on threads, and kills its whole process group when it ends
/// or at `timeout`, whichever comes first.
fn supervise(mut cmd: Command, argv: &[String], timeout: Duration, keep_stdout: usize) -> Result<Finished, String> {
    // The watcher first, and the command joins its group: from the command's first instruction
    // on, a cfrun killed at any moment takes the group with it (a watcher started after the
    // command missed what the command started before it was up).
    let mut guard = Guard::start();
    if let Some(pgid) = guard.pgid() {
        cmd.process_group(pgid);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| spawn_error(argv, e))?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let out_done = done_tx.clone();
    let out_thread = std::thread::spawn(move || {
        let kept = if keep_stdout > 0 {
            head(out, keep_stdout)
        } else {
            tail(out);
            Vec::new()
        };
        let _ = out_done.send(());
        kept
    });
    let err_thread = std::thread::spawn(move || {
        let kept = tail(err);
        let _ = done_tx.send(());
        kept
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                guard.kill_group(&child);
                let _ = child.wait();
                return Err(format!("could not be waited for: {e}"));
            }
        }
    };
    // Whatever the command left running in its group goes too (it would hold the pipes open).
    guard.kill_group(&child);
    let _ = child.wait();
    // A process that left the group (`setsid`) may hold the pipes open for as long as it likes:
    // its output is not waited for past a short grace, so the timeout holds and cfrun never hangs.
    let grace = Instant::now() + PIPE_GRACE;
    let both_closed = (0..2).all(|_| done_rx.recv_timeout(grace.saturating_duration_since(Instant::now())).is_ok());
    if !both_closed {
        // Failed, not published: that process may still be writing into the outputs.
        return Err(format!(
            "started a process that left its process group (setsid?) and still holds the command's output \
             open {} s after the command {}; cfrun can neither wait for it nor stop it",
            PIPE_GRACE.as_secs(),
            if status.is_some() { "ended" } else { "was killed at its timeout" }
        ));
    }
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    Ok(Finished { status, stdout, stderr })
}

/// A watcher that leads the command's process group and kills the group if cfrun dies first.
///
/// Why: the command's own group keeps the terminal's Ctrl-C away from it, and `PR_SET_PDEATHSIG`
/// reaches only the process cfrun started, so whatever that process started (a shell's
/// background job, a Python worker holding a GPU) would outlive a killed or interrupted cfrun.
/// The watcher blocks reading a pipe whose only writer is cfrun; the kernel closes it when cfrun
/// exits by any means, and the watcher then kills its group, itself included. It is started
/// before the command, which joins its group, so there is no moment at which the command runs
/// unwatched. While cfrun has not reaped the watcher its pid, and so the group id, stays taken.
struct Guard(Option<std::process::Child>);

impl Guard {
    /// Starts the watcher in a group of its own; without `/bin/sh` the command runs unguarded in
    /// a group of its own instead.
    fn start() -> Guard {
        let watcher = Command::new("/bin/sh")
            .args(["-c", "read -r _ignored; kill -s KILL 0 2>/dev/null"])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not the terminal's group: a Ctrl-C must not stop it before it sees cfrun go.
            .process_group(0)
            .spawn();
        match watcher {
            Ok(w) => Guard(Some(w)),
            Err(e) => {
                tracing::warn!("no watcher for the command's processes (/bin/sh: {e}); if cfrun is killed, what the command started may outlive it");
                Guard(None)
            }
        }
    }

    /// The group the command is to join, if a watcher leads one.
    fn pgid(&self) -> Option<i32> {
        self.0.as_ref().map(|w| w.id() as i32)
    }

    /// Kills the command's whole group (what it started, and the watcher) and reaps the watcher.
    /// `child` is the command, which leads its own group where no watcher started.
    fn kill_group(&mut self, child: &std::process::Child) {
        let pgid = self.pgid().unwrap_or(child.id() as i32);
        // SAFETY: killpg only sends a signal. The id is still taken: by the unreaped watcher, or
        // by the command, which the caller reaps only after this.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
        self.reap();
    }

    fn reap(&mut self) {
        if let Some(mut w) = self.0.take() {
            // Dead already where the group was killed; a spawn that failed left it waiting.
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.reap();
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    }
}

/// Runs the command to completion. `Err` says how it failed, with the tail of its stderr.
pub fn run(spec: &Spec<'_>) -> Result<(), String> {
    let mut cmd = command(spec.argv, spec.cwd);
    cmd.env("TMPDIR", spec.cwd.join("tmp"));
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let _ = std::fs::create_dir_all(spec.cwd.join("tmp"));
    let done = supervise(cmd, spec.argv, spec.timeout, 0)?;
    match done.status {
        None => {
            let msg = format!("timed out after {} s (its `timeout`) and was killed", spec.timeout.as_secs_f64());
            Err(with_tail(msg, &done.stderr))
        }
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(with_tail(describe(s), &done.stderr)),
    }
}

/// Longest an environment probe may take: it should only print versions.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most a probe may print.
const PROBE_BYTES: usize = 64 * 1024;

/// Runs an environment probe in the current directory and returns its stdout.
pub fn probe(argv: &[String]) -> Result<String, String> {
    let here = std::env::current_dir().map_err(|e| e.to_string())?;
    let shown = argv.join(" ");
    let done =
        supervise(command(argv, &here), argv, PROBE_TIMEOUT, PROBE_BYTES + 1).map_err(|e| format!("`{shown}` {e}"))?;
    let last = done.stderr.back().map(String::as_str).unwrap_or("(no stderr)");
    match done.status {
        _ if done.stdout.len() > PROBE_BYTES => {
            Err(format!("`{shown}` printed more than {} KiB; print versions only", PROBE_BYTES / 1024))
        }
        None => Err(format!("`{shown}` did not finish in {} s", PROBE_TIMEOUT.as_secs())),
        Some(s) if !s.success() => Err(format!("`{shown}` {}: {}", describe(s), last.trim())),
        Some(_) => {
            let mut text = String::from_utf8_lossy(&done.stdout).trim_end().to_string();
            text.push('\n');
            Ok(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe that prints without end is stopped as soon as it passes the cap, not at the
    /// timeout, and the error says why.
    #[test]
    fn a_probe_that_never_stops_printing_is_refused_at_once() {
        let started = Instant::now();
        let err = probe(&["yes".to_string()]).unwrap_err();
        assert!(err.contains("printed more than 64 KiB"), "{err}");
        assert!(started.elapsed() < PROBE_TIMEOUT / 2, "took {:?}", started.elapsed());
        assert_eq!(probe(&["echo".to_string(), "numpy 2.0".to_string()]).unwrap(), "numpy 2.0\n");
    }
}
