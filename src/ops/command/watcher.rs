//! The watcher: the process between cfrun and a command stage's program, which ends everything
//! the program started when the program ends, times out or loses cfrun.
//!
//! Why a process of its own: a process group reaches only what stays in it, and a command may
//! start something that leaves (`setsid`, a daemonising server, a framework's detached worker),
//! which would then outlive its stage, holding a GPU or writing into a scratch folder that is
//! being published. The watcher is a child subreaper (`PR_SET_CHILD_SUBREAPER`): every orphan
//! among the program's descendants, whatever group or session it moved to, is handed to the
//! watcher instead of to init, so once the program has ended the watcher can kill its children
//! round after round until it has none left. It is cfrun's own binary, started with [`ARG`]
//! first; cfrun reads how the program ended from [`STATUS_FD`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The first argument that makes cfrun's binary a watcher: `cfrun __cfrun-watch PROGRAM ARGS...`.
pub const ARG: &str = "__cfrun-watch";

/// The descriptor on which the watcher tells cfrun how the program ended: one line,
/// `status RAW` (a wait status) or `spawn notfound|other MESSAGE`.
pub const STATUS_FD: RawFd = 3;

/// The watcher's exit code when cfrun closed its stdin (a timeout, or cfrun gone).
const STOPPED: i32 = 137;

/// How long the watcher keeps killing before it gives up on a process that will not die (one
/// stuck in the kernel): it says so on stderr instead of hanging cfrun.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Set once this binary can be its commands' watcher. Unset (in library tests, whose binary is
/// the test harness), a shell guards the command's process group instead.
static ENABLED: OnceLock<()> = OnceLock::new();

/// If this process was started as a watcher, runs as one and exits; otherwise makes this binary
/// the watcher of the commands it runs. Called first thing in `main`, before any thread exists.
pub fn init() {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(OsStr::new(ARG)) {
        let argv: Vec<OsString> = args.collect();
        std::process::exit(watch(&argv));
    }
    // The watcher finds its children in /proc and is started as /proc/self/exe: without /proc
    // (a bare container), the shell guard is the best there is.
    if Path::new("/proc/self/exe").exists() {
        let _ = ENABLED.set(());
    } else {
        // Said on stderr: logging is not set up yet.
        eprintln!("warning: no /proc: a process a command stage moves out of its group may outlive it");
    }
}

/// The binary to start as a watcher, if this one can be. `/proc/self/exe` is resolved in the
/// forked child, so it is this very binary even when the file was replaced by a rebuild since.
pub(super) fn binary() -> Option<&'static Path> {
    ENABLED.get().map(|()| Path::new("/proc/self/exe"))
}

fn watch(argv: &[OsString]) -> i32 {
    // SAFETY: plain system calls on this process; fd 3 was placed by cfrun for this process
    // (marked close-on-exec first, so the program does not inherit it).
    let mut status = unsafe {
        libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        File::from_raw_fd(STATUS_FD)
    };
    let Some(program) = argv.first() else {
        let _ = writeln!(status, "spawn other no program given to the watcher");
        return 127;
    };
    // cfrun holds the other end of stdin and never writes: end of file means a timeout or a
    // cfrun that is gone, and either way everything goes.
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        stop_everything();
        std::process::exit(STOPPED);
    });
    let me = std::process::id();
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // Killed with the watcher even if the watcher itself is killed outright.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() as u32 != me {
                libc::_exit(STOPPED);
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Err(e) => {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { "notfound" } else { "other" };
            let _ = writeln!(status, "spawn {kind} {e}");
            127
        }
        Ok(mut child) => {
            let waited = child.wait();
            stop_everything();
            match waited {
                Ok(s) => {
                    let _ = writeln!(status, "status {}", s.into_raw());
                    0
                }
                Err(_) => STOPPED,
            }
        }
    }
}

/// Kills every descendant: the children first, then whatever they leave behind, which the
/// kernel hands to this subreaper as they die, until no child is left.
fn stop_everything() {
    static ONCE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _held = ONCE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::process::id() as i32;
    let started = Instant::now();
    loop {
        let children = children_of(me);
        for &pid in &children {
            // SAFETY: only sends a signal, to a process whose parent is this one (so the pid
            // cannot have been reused: an unreaped child keeps it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        loop {
            // SAFETY: reaps any child of this process that has ended; no status is read.
            let reaped = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if reaped > 0 {
                continue;
            }
            if reaped < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                return;
            }
            break;
        }
        if started.elapsed() > STOP_LIMIT {
            eprintln!("cfrun: processes of this command would not end in {} s: {children:?}", STOP_LIMIT.as_secs());
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The processes whose parent is `parent`, read from `/proc`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// The parent pid in `/proc/PID/stat`: the second field after the command name, which is in
/// parentheses and may itself hold spaces and parentheses.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parent_of_a_process_whose_name_has_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("sl) (e p");
        std::fs::copy("/bin/sleep", &program).unwrap();
        let me = std::process::id() as i32;
        let mut child = Command::new(&program).arg("5").spawn().unwrap();
        assert_eq!(parent_of(child.id() as i32), Some(me));
        assert!(children_of(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id() as i32));
    }
}
