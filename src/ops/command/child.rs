//! Running the child process: a cleared environment, a watcher that stops whatever it started
//! when it ends or times out (see [`watcher`]), stdout and stderr drained on threads, only the
//! last lines of stderr kept (bounded memory) for the error message (see [`drain`]).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod drain;
mod error;

pub(super) use self::drain::Tail;
use self::drain::{Drain, Ending, Finished};
pub use self::error::{ChildError, StderrTail};
use super::watcher;

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
    // The GPUs Slurm (or the user) granted: without it a command sees every GPU of the node.
    "CUDA_VISIBLE_DEVICES",
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

/// The command for `argv`: started by cfrun's watcher where this binary is one (see
/// [`watcher`]), else directly.
fn command(argv: &[String], cwd: &Path) -> Command {
    let mut cmd = match watcher::binary() {
        Some(binary) => {
            // The report pipe and `argv` follow, added by `supervise_watched`.
            let mut cmd = Command::new(binary);
            cmd.arg0("cfrun").arg(watcher::ARG);
            cmd
        }
        None => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            // Its own process group keeps the terminal's Ctrl-C from reaching it directly, so
            // it must die with the thread that started it when cfrun itself is interrupted or
            // killed (the watcher sees to that for the program it starts).
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    // cfrun ignores it while a run goes on; the command gets the default back.
                    libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
                    Ok(())
                });
            }
            cmd
        }
    };
    cmd.current_dir(cwd).env_clear().stdin(Stdio::null()).process_group(0);
    for name in PASSED {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONHASHSEED", "0");
    cmd
}

fn spawn_error(argv: &[String], e: std::io::Error) -> ChildError {
    if e.kind() == std::io::ErrorKind::NotFound {
        if argv[0].contains('/') {
            ChildError::NotInScratch(argv[0].clone())
        } else {
            ChildError::NotOnPath(std::env::var("PATH").unwrap_or_default())
        }
    } else {
        ChildError::NotStarted { what: "", source: e }
    }
}

/// Waits for `child` until `timeout`: its status, or `None` at the timeout (`child` still running).
fn wait_until(child: &mut std::process::Child, timeout: Duration) -> std::io::Result<Option<std::process::ExitStatus>> {
    let started = Instant::now();
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some(status)),
            None if started.elapsed() >= timeout => return Ok(None),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `cmd` (built by [`command`]) to its end or `timeout`, whichever comes first, with
/// everything it started stopped by then.
fn supervise(cmd: Command, argv: &[String], timeout: Duration, keep_stdout: usize) -> Result<Finished, ChildError> {
    if watcher::binary().is_some() {
        supervise_watched(cmd, argv, timeout, keep_stdout)
    } else {
        supervise_group(cmd, argv, timeout, keep_stdout)
    }
}

/// How long a watcher told to stop may take to kill what the command started (it gives up
/// after `watcher::STOP_LIMIT`).
const WATCHER_STOP: Duration = Duration::from_secs(40);

/// `cmd` (cfrun's binary, its first argument [`watcher::ARG`]) starts the watcher, which starts
/// `argv`, stops all it started when it ends, and reports how it ended on a pipe; closing the
/// watcher's stdin stops it all.
fn supervise_watched(
    mut cmd: Command,
    argv: &[String],
    timeout: Duration,
    keep_stdout: usize,
) -> Result<Finished, ChildError> {
    let (report, report_end) =
        status_pipe().map_err(|source| ChildError::NotStarted { what: "a pipe for its watcher: ", source })?;
    let end = report_end.as_raw_fd();
    // The watcher learns the pipe's number from its arguments: moving it to a fixed number could
    // overwrite a pipe that std's spawn keeps open in the child.
    cmd.arg(end.to_string()).args(argv);
    // SAFETY: fcntl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // Kept open across exec for the watcher only (it marks it close-on-exec again).
            if libc::fcntl(end, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ChildError::NotStarted { what: "cfrun's watcher: ", source })?;
    drop(report_end);
    // Never written to: dropping it is the watcher's signal to stop everything.
    let alive = child.stdin.take();
    let drain = Drain::start(&mut child, keep_stdout);
    let ended = wait_until(&mut child, timeout);
    drop(alive);
    let status = match ended {
        Ok(Some(own)) => match read_report(report) {
            Report::Ended(status) => Some(status),
            Report::NotStarted(e) => return Err(spawn_error(argv, e)),
            Report::Nothing => {
                // The watcher itself was ended (SIGKILL) before its program: the program died
                // with it; what it started and left in the group goes now. (The group id stays
                // taken while anything is in the group.)
                // SAFETY: killpg only sends a signal.
                unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
                let done = drain.finish(None, Ending::WatcherKilled)?;
                let how = crate::exit_status::describe(own);
                return Err(ChildError::WatcherKilled { how, stderr: StderrTail(done.stderr.lines) });
            }
        },
        Ok(None) | Err(_) => {
            // Timed out (or not waitable): the watcher, told to stop, kills everything and
            // ends; one that does not is killed, and its program dies with it.
            if !matches!(wait_until(&mut child, WATCHER_STOP), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Err(e) = ended {
                return Err(ChildError::Wait(e));
            }
            None
        }
    };
    drain.finish(status, Ending::of(status))
}

/// A pipe whose both ends close on exec (the watcher's end is kept open for it alone), the
/// reading end not blocking.
fn status_pipe() -> std::io::Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that this function then owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nothing else.
    unsafe { Ok((std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// What a watcher reported of its program.
enum Report {
    /// How it ended.
    Ended(std::process::ExitStatus),
    /// Why it could not be started.
    NotStarted(std::io::Error),
    /// Nothing: the watcher was killed before it could say.
    Nothing,
}

fn read_report(mut report: std::fs::File) -> Report {
    use std::os::unix::process::ExitStatusExt;
    let mut text = Vec::new();
    let _ = (&mut report).take(4096).read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().next().unwrap_or("");
    if let Some(raw) = line.strip_prefix("status ").and_then(|r| r.trim().parse::<i32>().ok()) {
        return Report::Ended(std::process::ExitStatus::from_raw(raw));
    }
    if let Some(why) = line.strip_prefix("spawn notfound ") {
        return Report::NotStarted(std::io::Error::new(std::io::ErrorKind::NotFound, why.to_string()));
    }
    if let Some(why) = line.strip_prefix("spawn other ") {
        return Report::NotStarted(std::io::Error::other(why.to_string()));
    }
    Report::Nothing
}

/// Spawns `cmd` in the group of a shell watcher that kills the group if cfrun dies, and kills
/// the group when the command ends or at `timeout`, whichever comes first.
fn supervise_group(
    mut cmd: Command,
    argv: &[String],
    timeout: Duration,
    keep_stdout: usize,
) -> Result<Finished, ChildError> {
    // The watcher first, and the command joins its group: from the command's first instruction
    // on, a cfrun killed at any moment takes the group with it (a watcher started after the
    // command missed what the command started before it was up).
    let mut guard = Guard::start();
    if let Some(pgid) = guard.pgid() {
        cmd.process_group(pgid);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| spawn_error(argv, e))?;
    let drain = Drain::start(&mut child, keep_stdout);
    let status = match wait_until(&mut child, timeout) {
        Ok(status) => status,
        Err(e) => {
            guard.kill_group(&child);
            let _ = child.wait();
            return Err(ChildError::Wait(e));
        }
    };
    // Whatever the command left running in its group goes too (it would hold the pipes open).
    guard.kill_group(&child);
    let _ = child.wait();
    drain.finish(status, Ending::of(status))
}

/// Where this binary cannot be the watcher (library tests): a shell that leads the command's
/// process group and kills the group if cfrun dies first.
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

/// What a command that ended well printed: the last lines of each stream.
#[derive(Debug)]
pub struct Printed {
    /// Of stdout.
    pub stdout: Tail,
    /// Of stderr.
    pub stderr: Tail,
}

/// Runs the command to completion. `Err` says how it failed, with the tail of its stderr.
pub fn run(spec: &Spec<'_>) -> Result<Printed, ChildError> {
    let mut cmd = command(spec.argv, spec.cwd);
    cmd.env("TMPDIR", spec.cwd.join("tmp"));
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let _ = std::fs::create_dir_all(spec.cwd.join("tmp"));
    let done = supervise(cmd, spec.argv, spec.timeout, 0)?;
    match done.status {
        None => {
            Err(ChildError::TimedOut { seconds: spec.timeout.as_secs_f64(), stderr: StderrTail(done.stderr.lines) })
        }
        Some(s) if s.success() => Ok(Printed { stdout: done.stdout_tail, stderr: done.stderr }),
        Some(s) => {
            Err(ChildError::Exited { status: crate::exit_status::describe(s), stderr: StderrTail(done.stderr.lines) })
        }
    }
}

/// Longest an environment probe may take: it should only print versions.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most a probe may print.
const PROBE_BYTES: usize = 64 * 1024;

/// Runs an environment probe in the current directory and returns its stdout; `announce`d when
/// the plan waits on it (the rechecks around each command are logged at debug level only).
pub fn probe(argv: &[String], announce: bool) -> Result<String, ProbeError> {
    let failed = ProbeError::Failed;
    let here = std::env::current_dir().map_err(|e| failed(e.to_string()))?;
    let shown = argv.join(" ");
    // The plan waits on it (`status` and `dag` too): say what is being waited on.
    if announce {
        tracing::info!("probing the environment: `{shown}` (at most {} s)", PROBE_TIMEOUT.as_secs());
    } else {
        tracing::debug!("probing the environment again: `{shown}`");
    }
    let done = supervise(command(argv, &here), argv, PROBE_TIMEOUT, PROBE_BYTES + 1)
        .map_err(|e| failed(format!("`{shown}` {e}")))?;
    let last = done.stderr.lines.back().map(String::as_str).unwrap_or("(no stderr)");
    match done.status {
        _ if done.stdout.len() > PROBE_BYTES => {
            Err(failed(format!("`{shown}` printed more than {} KiB; print versions only", PROBE_BYTES / 1024)))
        }
        None => Err(ProbeError::TimedOut(format!("`{shown}` did not finish in {} s", PROBE_TIMEOUT.as_secs()))),
        Some(s) if !s.success() => {
            Err(failed(format!("`{shown}` {}: {}", crate::exit_status::describe(s), last.trim())))
        }
        // Hashed as text: a lossy decoding would give two different outputs one key.
        Some(_) => match std::str::from_utf8(&done.stdout) {
            Ok(text) => Ok(format!("{}\n", text.trim_end())),
            Err(e) => Err(failed(format!(
                "`{shown}` printed bytes that are not UTF-8 text (at byte {}); print versions as text",
                e.valid_up_to()
            ))),
        },
    }
}

/// Why a probe gave no answer, the message naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    /// It was still running at [`PROBE_TIMEOUT`] (and was stopped).
    #[error("{0}")]
    TimedOut(String),
    /// It failed, printed too much or printed other than text.
    #[error("{0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe that prints without end is stopped as soon as it passes the cap, not at the
    /// timeout, and the error says why.
    #[test]
    fn a_probe_that_never_stops_printing_is_refused_at_once() {
        let started = Instant::now();
        let Err(ProbeError::Failed(err)) = probe(&["yes".to_string()], true) else {
            panic!("not refused as it prints")
        };
        assert!(err.contains("printed more than 64 KiB"), "{err}");
        assert!(started.elapsed() < PROBE_TIMEOUT / 2, "took {:?}", started.elapsed());
        assert_eq!(probe(&["echo".to_string(), "numpy 2.0".to_string()], true).unwrap(), "numpy 2.0\n");
    }

    /// Output that is not UTF-8 is refused, not decoded lossily into what another output also
    /// decodes to; trailing white space is dropped (the one normalisation the key sees).
    #[test]
    fn a_probe_printing_other_than_utf8_is_refused() {
        let sh = |script: &str| probe(&["sh".to_string(), "-c".to_string(), script.to_string()], true);
        let Err(ProbeError::Failed(err)) = sh("printf 'numpy \\377'") else { panic!("not refused") };
        assert!(err.contains("printed bytes that are not UTF-8 text (at byte 6)"), "{err}");
        assert_eq!(sh("printf 'numpy 2.0  \\n\\n'").unwrap(), "numpy 2.0\n");
    }
}
