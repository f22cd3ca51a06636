//! External programs (curl, npm, apt-get, pip), and finding archives in a folder.
//!
//! Every helper returns a one-line `String` on failure because its caller turns
//! failures into lines of the "sources tried" list, not into hard errors.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::catalog::ArchiveSpec;

/// How much a child run by [`run`] may write: what it fetches is checked only once whole, so
/// its size is bounded while it comes.
#[derive(Debug, Clone, Copy)]
pub struct WriteBound {
    /// The largest file it may write anywhere, its log too (RLIMIT_FSIZE).
    pub file_bytes: u64,
    /// The most bytes, in all, that `cwd` may hold while it runs.
    pub total_bytes: u64,
    /// The most files and folders that `cwd` may hold while it runs.
    pub entries: usize,
}

impl WriteBound {
    /// One file of at most `bytes`, and room for a few more beside it (curl writes one).
    pub fn one_file(bytes: u64) -> Self {
        Self { file_bytes: bytes, total_bytes: bytes.saturating_mul(2), entries: 64 }
    }
}

/// How often `cwd` is measured against its [`WriteBound`] while the child runs.
const TALLY_EVERY: Duration = Duration::from_millis(500);

/// Runs `program args...` in `cwd`, killing it after `timeout` or once `cwd` holds more than
/// `bound` allows; no file it writes may grow past `bound.file_bytes`.
///
/// Output goes to an unnamed temp file rather than a pipe so a chatty child can
/// never block on a full pipe while we poll; its last line explains failures.
pub fn run(program: &Path, args: &[&OsStr], cwd: &Path, timeout: Duration, bound: WriteBound) -> Result<(), String> {
    let shown = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let log = tempfile::tempfile().map_err(|e| format!("cannot create a log file: {e}"))?;
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(format!("cannot duplicate a log handle: {e}")),
    };
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(out).stderr(err);
    // It dies with the thread that waits for it below, so a cfrun killed outright (SIGKILL,
    // the OOM killer) leaves no download running on; one killed before the child
    // asked for that (between fork and prctl) is caught by the parent check after it.
    let parent = std::process::id() as libc::pid_t;
    let file_limit = file_size_limit(bound.file_bytes);
    // SAFETY: prctl, getppid, setrlimit and _exit are single system calls in glibc (no lock, no
    // allocation), safe between fork and exec, and touch no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if libc::setrlimit(libc::RLIMIT_FSIZE, &file_limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| format!("`{shown}` could not start: {e}"))?;
    let start = Instant::now();
    let mut tallied = start;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{shown}` timed out after {}s", timeout.as_secs()));
            }
            Ok(None) if tallied.elapsed() >= TALLY_EVERY => {
                tallied = Instant::now();
                if let Some(why) = Tally::of(cwd, bound.entries).exceeds(&bound) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("`{shown}` was stopped: {why}, more than it should fetch"));
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("`{shown}`: cannot wait for it: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    // curl dies of SIGXFSZ at the limit; node and Python ignore the signal and fail on EFBIG in
    // their own words, so a file at the limit in `cwd` tells the same story.
    let killed = std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGXFSZ);
    if killed || Tally::of(cwd, bound.entries).largest >= file_limit.rlim_cur {
        let limit = crate::human::bytes(file_limit.rlim_cur);
        return Err(format!("`{shown}` was stopped writing a file past {limit}, more than it should fetch"));
    }
    Err(format!("`{shown}` failed ({status}): {}", last_line(log)))
}

/// What a folder holds, counted without following links.
#[derive(Debug, Default)]
struct Tally {
    bytes: u64,
    entries: usize,
    largest: u64,
}

impl Tally {
    /// Counts `dir`'s tree, stopping one entry past `max_entries` (already too many).
    fn of(dir: &Path, max_entries: usize) -> Self {
        let mut tally = Self::default();
        let mut folders = vec![dir.to_path_buf()];
        while let Some(folder) = folders.pop() {
            for entry in fs::read_dir(&folder).into_iter().flatten().flatten() {
                tally.entries += 1;
                if tally.entries > max_entries {
                    return tally;
                }
                match entry.path().symlink_metadata() {
                    Ok(m) if m.is_dir() => folders.push(entry.path()),
                    Ok(m) if m.is_file() => {
                        tally.bytes = tally.bytes.saturating_add(m.len());
                        tally.largest = tally.largest.max(m.len());
                    }
                    _ => {}
                }
            }
        }
        tally
    }

    /// Why this is more than `bound` allows, if it is.
    fn exceeds(&self, bound: &WriteBound) -> Option<String> {
        if self.entries > bound.entries {
            return Some(format!("it wrote more than {} files and folders", bound.entries));
        }
        (self.bytes > bound.total_bytes)
            .then(|| format!("it wrote more than {} in all", crate::human::bytes(bound.total_bytes)))
    }
}

/// `max_file_bytes` as a file-size limit, lowered to the limit this process already has (only
/// a privileged process may raise its hard limit).
fn file_size_limit(max_file_bytes: u64) -> libc::rlimit {
    let mut current = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut current) };
    let wanted = max_file_bytes as libc::rlim_t;
    libc::rlimit { rlim_cur: wanted.min(current.rlim_cur), rlim_max: wanted.min(current.rlim_max) }
}

/// The last non-empty line of a log file, shortened to keep error lists readable.
fn last_line(mut log: File) -> String {
    let mut text = String::new();
    if log.seek(SeekFrom::Start(0)).is_err() {
        return "no output".into();
    }
    let mut raw = Vec::new();
    if log.read_to_end(&mut raw).is_ok() {
        text = String::from_utf8_lossy(&raw).into_owned();
    }
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output");
    let mut short: String = line.chars().take(200).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    short
}

/// Archives in `dir` whose names match one of `specs`, with their spec: regular files (or links
/// to them) only, since a pipe or a device named like one would block or never end when read.
pub fn find_archives<'a>(dir: &Path, specs: &'a [ArchiveSpec]) -> Vec<(PathBuf, &'a ArchiveSpec)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, &ArchiveSpec)> = entries
        .filter_map(Result::ok)
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            specs.iter().find(|s| name.starts_with(&s.prefix) && name.ends_with(&s.suffix)).map(|s| (e.path(), s))
        })
        .collect();
    // Directory order is arbitrary; sorting keeps the choice reproducible.
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::catalog::ArchiveKind;
    use crate::shell::find_on_path;

    #[test]
    fn run_reports_last_line_and_timeout() {
        let Some(sh) = find_on_path("sh") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let fail: [&OsStr; 2] = ["-c".as_ref(), "echo first; echo 'the reason' >&2; exit 3".as_ref()];
        let msg =
            run(&sh, &fail, dir.path(), Duration::from_secs(10), WriteBound::one_file(u64::MAX)).expect_err("exit 3");
        assert!(msg.contains("the reason"), "{msg}");
        let slow: [&OsStr; 2] = ["-c".as_ref(), "sleep 5".as_ref()];
        let msg = run(&sh, &slow, dir.path(), Duration::from_millis(200), WriteBound::one_file(u64::MAX))
            .expect_err("timeout");
        assert!(msg.contains("timed out"), "{msg}");
        assert!(find_on_path("surely-not-a-real-program-xyz").is_none());
    }

    /// A child writing a file past its limit is stopped there and said so; within it, it runs.
    #[test]
    fn a_child_cannot_write_a_file_past_its_limit() {
        let sh = find_on_path("sh").expect("sh on PATH");
        let dir = tempfile::tempdir().expect("tempdir");
        let write: [&OsStr; 2] = ["-c".as_ref(), "exec head -c 100000 /dev/zero > big".as_ref()];
        let msg = run(&sh, &write, dir.path(), Duration::from_secs(10), WriteBound::one_file(5000))
            .expect_err("past 5000 bytes");
        assert!(msg.contains("stopped writing a file past 5 KB"), "{msg}");
        assert!(fs::metadata(dir.path().join("big")).unwrap().len() <= 5000);
        run(&sh, &write, dir.path(), Duration::from_secs(10), WriteBound::one_file(100_000)).unwrap();
        assert_eq!(fs::metadata(dir.path().join("big")).unwrap().len(), 100_000);
        // A client that ignores SIGXFSZ fails on EFBIG in its own words, and is told the same way.
        fs::remove_file(dir.path().join("big")).unwrap();
        let python = find_on_path("python3").expect("python3 on PATH");
        let ignoring: [&OsStr; 2] = ["-c".as_ref(), "open('big', 'wb').write(bytes(100000))".as_ref()];
        let msg = run(&python, &ignoring, dir.path(), Duration::from_secs(10), WriteBound::one_file(5000))
            .expect_err("EFBIG");
        assert!(msg.contains("stopped writing a file past 5 KB"), "{msg}");
    }

    /// A child whose folder grows past its bound in all, each file within its own limit, is
    /// stopped while it runs (a package client's cache is in that folder too).
    #[test]
    fn a_child_cannot_fill_its_folder() {
        let sh = find_on_path("sh").expect("sh on PATH");
        let dir = tempfile::tempdir().expect("tempdir");
        let many_files: [&OsStr; 2] =
            ["-c".as_ref(), "i=0; while :; do i=$((i+1)); : > f$i; sleep 0.001; done".as_ref()];
        let bound = WriteBound { file_bytes: 1000, total_bytes: 1 << 20, entries: 50 };
        let msg = run(&sh, &many_files, dir.path(), Duration::from_secs(20), bound).expect_err("too many files");
        assert!(msg.contains("was stopped: it wrote more than 50 files and folders"), "{msg}");
        let dir = tempfile::tempdir().expect("tempdir");
        let many_bytes: [&OsStr; 2] =
            ["-c".as_ref(), "i=0; while :; do i=$((i+1)); head -c 1000 /dev/zero > f$i; sleep 0.01; done".as_ref()];
        let bound = WriteBound { file_bytes: 1000, total_bytes: 20_000, entries: 10_000 };
        let msg = run(&sh, &many_bytes, dir.path(), Duration::from_secs(20), bound).expect_err("too many bytes");
        assert!(msg.contains("was stopped: it wrote more than 20 KB in all"), "{msg}");
        // A link is counted as itself, not as what it points to.
        let dir = tempfile::tempdir().expect("tempdir");
        let link: [&OsStr; 2] = ["-c".as_ref(), "ln -s / root && ln -s /dev/zero zero && sleep 1".as_ref()];
        run(&sh, &link, dir.path(), Duration::from_secs(20), WriteBound::one_file(10)).unwrap();
    }

    /// Only regular files (or links to them) are taken for archives: a pipe named like one
    /// would block the hash or the unpacking for good.
    #[test]
    fn only_regular_files_are_archives() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ArchiveSpec { prefix: "data-".into(), suffix: ".tgz".into(), kind: ArchiveKind::Tgz, sha256: None };
        let d = dir.path();
        std::fs::write(d.join("data-1.tgz"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("data-1.tgz"), d.join("data-2.tgz")).unwrap();
        std::os::unix::fs::symlink(d.join("gone"), d.join("data-3.tgz")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("data-4.tgz")).unwrap();
        let fifo = std::ffi::CString::new(d.join("data-5.tgz").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string naming a path in our own temporary folder.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(d.join("data-6.tgz")).unwrap();
        let found: Vec<String> = find_archives(d, std::slice::from_ref(&spec))
            .into_iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["data-1.tgz", "data-2.tgz"]);
    }
}
