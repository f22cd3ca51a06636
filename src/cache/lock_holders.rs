//! Which processes hold a lock file, from `/proc/locks`: a `gc` waiting on the cache, or a run
//! waiting on `gc`, names whom it waits for, and says so when that process is stopped (it waits
//! until the process is sent SIGCONT or ended, which a bare "waiting" never told).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The most holders named; the rest are counted.
const NAMED: usize = 5;
/// The longest command line shown of a holder.
const COMMAND_CHARS: usize = 80;

/// The processes holding a lock on the file at `path` (other than this one), as `/proc/locks`
/// lists them; none where it cannot be read (not Linux) or the file is gone.
pub fn holders(path: &Path) -> Vec<i32> {
    let Ok(meta) = std::fs::metadata(path) else { return Vec::new() };
    let Ok(table) = std::fs::read_to_string("/proc/locks") else { return Vec::new() };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let me = std::process::id() as i32;
    let mut pids: Vec<i32> =
        table.lines().filter_map(|line| holder(line, major, minor, meta.ino())).filter(|&pid| pid != me).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The pid of a `/proc/locks` line on the file `major:minor:inode`: `1: FLOCK ADVISORY READ 4242
/// fd:01:123 0 EOF` (device numbers in hex); `None` for another file, or an open file
/// description lock, whose pid the kernel writes as -1.
fn holder(line: &str, major: u32, minor: u32, inode: u64) -> Option<i32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // A waiter's line starts `1: -> FLOCK ...`: it holds nothing.
    if fields.get(1) == Some(&"->") {
        return None;
    }
    let (pid, file) = (fields.get(4)?.parse::<i32>().ok()?, fields.get(5)?);
    let mut parts = file.split(':');
    let (maj, min, ino) = (parts.next()?, parts.next()?, parts.next()?);
    let same = u32::from_str_radix(maj, 16).ok()? == major
        && u32::from_str_radix(min, 16).ok()? == minor
        && ino.parse::<u64>().ok()? == inode;
    (same && pid > 0).then_some(pid)
}

/// ` (pid 4242: cfrun run x.toml; pid 4243, stopped: ...)`, naming the holders of the lock at
/// `path`; empty when none can be named.
pub fn described(path: &Path) -> String {
    named(&holders(path))
}

/// [`described`], leaving out the holders of the lock at `besides` (`gc`, which holds the cache
/// lock too once it works, is not among those it waits for).
pub fn described_besides(path: &Path, besides: &Path) -> String {
    let others = holders(besides);
    named(&holders(path).into_iter().filter(|pid| !others.contains(pid)).collect::<Vec<_>>())
}

fn named(pids: &[i32]) -> String {
    if pids.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = pids.iter().take(NAMED).map(|&pid| one(pid)).collect();
    let more = if pids.len() > NAMED { format!("; and {} more", pids.len() - NAMED) } else { String::new() };
    let stopped = pids.iter().any(|&pid| crate::proc_stat::is_stopped(pid));
    let advice =
        if stopped { ". A stopped process holds it until it is sent SIGCONT (`kill -CONT PID`) or ended" } else { "" };
    format!(" (held by {}{more}){advice}", shown.join("; "))
}

fn one(pid: i32) -> String {
    // Arguments are anyone's text: nothing in them may drive the terminal.
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            // One line: an argument's line break would start a log line of its own.
            let words = String::from_utf8_lossy(&bytes).replace(['\0', '\n', '\t'], " ");
            crate::human::printable_cut(words.trim(), COMMAND_CHARS)
        })
        .unwrap_or_default();
    let state = if crate::proc_stat::is_stopped(pid) { ", stopped" } else { "" };
    if command.is_empty() {
        format!("pid {pid}{state}")
    } else {
        format!("pid {pid}{state}: {command}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_holders_of_one_file_from_proc_locks_lines() {
        let line = "1: FLOCK  ADVISORY  READ  4242 fd:01:123 0 EOF";
        assert_eq!(holder(line, 0xfd, 1, 123), Some(4242));
        assert_eq!(holder(line, 0xfd, 1, 124), None, "another file");
        assert_eq!(holder("1: -> FLOCK  ADVISORY  WRITE 77 fd:01:123 0 EOF", 0xfd, 1, 123), None, "a waiter");
        assert_eq!(holder("2: OFDLCK ADVISORY  READ  -1 fd:01:123 0 EOF", 0xfd, 1, 123), None);
    }

    /// A child holding a shared lock, then stopped: named, and said to be stopped.
    #[test]
    fn names_a_stopped_holder() {
        if std::fs::metadata("/proc/locks").is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.lock");
        std::fs::write(&path, b"").unwrap();
        // `--no-fork`: the lock is held by the `sleep` flock(1) becomes, which kill() ends.
        let mut child = std::process::Command::new("flock")
            .args(["--no-fork", "-s", path.to_str().unwrap(), "sleep", "30"])
            .spawn()
            .expect("flock(1) from util-linux");
        let pid = child.id() as i32;
        let seen = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !holders(&path).is_empty()
        });
        assert!(seen, "the child's lock is listed");
        let text = described(&path);
        assert!(text.contains(&format!("pid {pid}: sleep 30")), "{text}");
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let stopped = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            crate::proc_stat::is_stopped(pid)
        });
        assert!(stopped);
        let text = described(&path);
        unsafe { libc::kill(pid, libc::SIGCONT) };
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(text.contains(", stopped") && text.contains("kill -CONT"), "{text}");
    }
}
