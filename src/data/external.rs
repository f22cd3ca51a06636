//! External programs (curl, npm, apt-get, pip, tar, dpkg-deb) and archive unpacking.
//!
//! Every helper returns a one-line `String` on failure because its caller turns
//! failures into lines of the "sources tried" list, not into hard errors.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::catalog::{ArchiveKind, ArchiveSpec};
use crate::shell::find_on_path;

/// Runs `program args...` in `cwd`, killing it after `timeout`.
///
/// Output goes to an unnamed temp file rather than a pipe so a chatty child can
/// never block on a full pipe while we poll; its last line explains failures.
pub fn run(program: &Path, args: &[&OsStr], cwd: &Path, timeout: Duration) -> Result<(), String> {
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
    // the OOM killer) leaves no download or unpacking running on; one killed before the child
    // asked for that (between fork and prctl) is caught by the parent check after it.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and _exit are async-signal-safe and touch no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| format!("`{shown}` could not start: {e}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{shown}` timed out after {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("`{shown}`: cannot wait for it: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    Err(format!("`{shown}` failed ({status}): {}", last_line(log)))
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

/// Unpacks `archive` into `dest`; for zips only members whose base name is in `wanted`.
pub fn unpack(archive: &Path, kind: ArchiveKind, dest: &Path, wanted: &[String]) -> Result<(), String> {
    let timeout = Duration::from_secs(300);
    // The unpacking programs run in `dest`, where a path relative to this process's folder
    // (`CFRUN_DATA=dl`, a stage's `path = "dl"`) names nothing.
    let archive = &std::path::absolute(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    match kind {
        ArchiveKind::Tgz => {
            let tar = find_on_path("tar").ok_or("`tar` is not on PATH; install tar to unpack it")?;
            let args: [&OsStr; 4] = ["xzf".as_ref(), archive.as_os_str(), "-C".as_ref(), dest.as_os_str()];
            run(&tar, &args, dest, timeout)
        }
        ArchiveKind::Deb => {
            let dpkg = find_on_path("dpkg-deb").ok_or("`dpkg-deb` is not on PATH; install dpkg to unpack it")?;
            let args: [&OsStr; 3] = ["-x".as_ref(), archive.as_os_str(), dest.as_os_str()];
            run(&dpkg, &args, dest, timeout)
        }
        ArchiveKind::Zip => unzip_wanted(archive, dest, wanted),
    }
}

fn unzip_wanted(archive: &Path, dest: &Path, wanted: &[String]) -> Result<(), String> {
    let file = File::open(archive).map_err(|e| format!("cannot open {}: {e}", archive.display()))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| format!("{} is not a readable zip: {e}", archive.display()))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("{}: member {i} unreadable: {e}", archive.display()))?;
        // enclosed_name refuses `..` and absolute paths, so nothing lands outside dest.
        let Some(base) = entry.enclosed_name().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        else {
            continue;
        };
        if !wanted.contains(&base) {
            continue;
        }
        let target = dest.join(&base);
        let mut out = File::create(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| format!("cannot extract {base} from {}: {e}", archive.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_last_line_and_timeout() {
        let Some(sh) = find_on_path("sh") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let fail: [&OsStr; 2] = ["-c".as_ref(), "echo first; echo 'the reason' >&2; exit 3".as_ref()];
        let msg = run(&sh, &fail, dir.path(), Duration::from_secs(10)).expect_err("exit 3");
        assert!(msg.contains("the reason"), "{msg}");
        let slow: [&OsStr; 2] = ["-c".as_ref(), "sleep 5".as_ref()];
        let msg = run(&sh, &slow, dir.path(), Duration::from_millis(200)).expect_err("timeout");
        assert!(msg.contains("timed out"), "{msg}");
        assert!(find_on_path("surely-not-a-real-program-xyz").is_none());
    }

    /// A path relative to this process's folder unpacks: the unpacking program runs elsewhere.
    #[test]
    fn an_archive_named_by_a_relative_path_unpacks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/f.txt"), b"inside").unwrap();
        let tar = find_on_path("tar").expect("tar on PATH");
        let args: [&OsStr; 5] = ["czf".as_ref(), "a.tgz".as_ref(), "-C".as_ref(), "src".as_ref(), "f.txt".as_ref()];
        run(&tar, &args, dir.path(), Duration::from_secs(30)).unwrap();
        // The same file, named from here: up to the root, then down.
        let here = std::env::current_dir().unwrap();
        let up = "../".repeat(here.components().count() - 1);
        let relative =
            PathBuf::from(format!("{up}{}", dir.path().join("a.tgz").display().to_string().trim_start_matches('/')));
        assert!(relative.is_relative() && relative.is_file(), "{}", relative.display());
        // Deeper than this folder, so that from where tar runs the name reaches no file by chance.
        let dest = (0..here.components().count()).fold(dir.path().join("dest"), |p, i| p.join(format!("d{i}")));
        std::fs::create_dir_all(&dest).unwrap();
        assert!(!dest.join(&relative).exists(), "the test proves nothing where the name works from dest too");
        unpack(&relative, ArchiveKind::Tgz, &dest, &[]).unwrap();
        assert_eq!(std::fs::read(dest.join("f.txt")).unwrap(), b"inside");
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
