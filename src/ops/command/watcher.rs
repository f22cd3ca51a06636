//! The watcher: the process between cfrun and a command stage's program, which ends everything
//! the program started when the program ends, times out or loses cfrun.
//!
//! Why a process of its own: a process group reaches only what stays in it, and a command may
//! start something that leaves (`setsid`, a daemonising server, a framework's detached worker),
//! which would then outlive its stage, holding a GPU or writing into a scratch folder that is
//! being published. The watcher is a child subreaper (`PR_SET_CHILD_SUBREAPER`): every orphan
//! among the program's descendants, whatever group or session it moved to, is handed to the
//! watcher instead of to init, so once the program has ended the watcher can kill its children
//! round after round until it has none left. It is cfrun's own binary, started as
//! `cfrun __cfrun-watch FD PROGRAM ARGS...`; cfrun reads how the program ended from FD. A
//! signal that would end the watcher (SIGTERM from `pkill` or Slurm, SIGHUP, SIGINT) is passed
//! on to the program instead, and the watcher cleans up once the program has ended.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::proc_stat;

/// The first argument that makes cfrun's binary a watcher: `cfrun __cfrun-watch FD PROGRAM
/// ARGS...`, where FD is the descriptor on which the watcher tells cfrun how the program ended:
/// one line, `status RAW` (a wait status) or `spawn notfound|other MESSAGE`.
pub const ARG: &str = "__cfrun-watch";

/// Signals passed on to the program rather than ending the watcher (which could not clean up).
const PASSED_ON: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// The program's pid once started (0 before), for the signal handler.
static PROGRAM: AtomicI32 = AtomicI32::new(0);

/// The watcher's exit code when cfrun closed its stdin (a timeout, or cfrun gone).
const STOPPED: i32 = 137;

/// How long the watcher keeps killing before it gives up on a process that will not die (one
/// stuck in the kernel): it says so on stderr instead of hanging cfrun.
const STOP_LIMIT: Duration = Duration::from_secs(30);

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
    match can_watch() {
        Ok(()) => {
            let _ = ENABLED.set(());
        }
        // Said on stderr: logging is not set up yet.
        Err(why) => eprintln!("warning: {why}: a process a command stage moves out of its group may outlive it"),
    }
}

/// Whether this binary can start itself as a watcher: it is started as `/proc/self/exe`, which
/// must be this binary (not a loader that started it: `ld-linux.so cfrun`, qemu-user), and finds
/// its children in `/proc`, which must show this process's pid namespace (not a sandbox's outer one).
fn can_watch() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let shown = std::fs::read_link("/proc/self").map_err(|_| "no /proc".to_string())?;
    if shown.to_str() != Some(std::process::id().to_string().as_str()) {
        return Err("/proc shows another pid namespace".into());
    }
    let exe = std::fs::metadata("/proc/self/exe").map_err(|e| format!("/proc/self/exe: {e}"))?;
    // The file this very function's code was mapped from.
    let here = init as *const () as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    let inode = maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
        (start..end).contains(&here).then(|| fields.nth(3)?.parse::<u64>().ok())?
    });
    if inode != Some(exe.ino()) {
        return Err("this binary was started through a loader".into());
    }
    Ok(())
}

/// The binary to start as a watcher (or as any other helper of this process), if this one can
/// be. `/proc/self/exe` is resolved in the forked child, so it is this very binary even when the
/// file was replaced by a rebuild since.
pub fn binary() -> Option<&'static Path> {
    ENABLED.get().map(|()| Path::new("/proc/self/exe"))
}

fn watch(argv: &[OsString]) -> i32 {
    let Some(fd) = argv.first().and_then(|a| a.to_str()).and_then(|a| a.parse::<RawFd>().ok()) else {
        eprintln!("cfrun: `{ARG}` is cfrun's own, for the commands of its stages");
        return 2;
    };
    // SAFETY: plain system calls on this process; `fd` was left open by cfrun for this process
    // (marked close-on-exec first, so the program does not inherit it).
    let mut status = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        File::from_raw_fd(fd)
    };
    let Some(program) = argv.get(1) else {
        let _ = writeln!(status, "spawn other no program given to the watcher");
        return 127;
    };
    pass_signals_on();
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
    cmd.args(&argv[2..]).stdin(Stdio::null());
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // Killed with the watcher even if the watcher itself is killed outright.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // cfrun ignores it while a run goes on; the command gets the default back.
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
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
            PROGRAM.store(child.id() as i32, Ordering::SeqCst);
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

/// Makes the signals in [`PASSED_ON`] reach the program instead of ending the watcher. The
/// program starts with default handlers again (exec resets handled signals).
fn pass_signals_on() {
    extern "C" fn pass_on(signal: libc::c_int) {
        let pid = PROGRAM.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe; the pid is this process's unreaped child.
            unsafe { libc::kill(pid, signal) };
        }
    }
    for signal in PASSED_ON {
        // SAFETY: installs a handler that only reads an atomic and calls kill.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = pass_on as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
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
        .filter(|&pid| proc_stat::parent_of(pid) == Some(parent))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_children() {
        let me = std::process::id() as i32;
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(children_of(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
