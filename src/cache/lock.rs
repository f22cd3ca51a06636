//! File locks. Per-key locks make sure two cfrun processes sharing a cache never run the same
//! instance twice; the cache lock (`CACHE/cache.lock`) is held in shared mode by every process
//! that uses the cache and in exclusive mode by `gc`, so `gc` never removes what a running
//! process has staged, is reading, or is about to publish. The OS releases a lock when its
//! process dies, so a kill -9 never leaves a stale lock.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fsutil::open_lock_file;
use super::CacheError;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

/// Outcome of trying to take a lock without waiting.
pub enum TryLock {
    /// We hold it.
    Acquired(KeyLock),
    /// Another process holds it.
    Busy,
}

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Many holders at once (processes using the cache).
    Shared,
    /// One holder, no shared ones (`gc`).
    Exclusive,
}

/// Tries to take the exclusive lock at `path` without blocking.
pub fn try_lock(path: &Path) -> Result<TryLock, CacheError> {
    try_lock_mode(path, Mode::Exclusive)
}

/// Tries to take the lock at `path` in `mode` without blocking.
pub fn try_lock_mode(path: &Path, mode: Mode) -> Result<TryLock, CacheError> {
    loop {
        let file = open_lock_file(path).map_err(CacheError::io(path))?;
        let got = match mode {
            Mode::Shared => file.try_lock_shared(),
            Mode::Exclusive => file.try_lock(),
        };
        match got {
            Ok(()) if still_at(path, &file) => return Ok(TryLock::Acquired(KeyLock { _file: file })),
            Ok(()) => continue,
            Err(std::fs::TryLockError::WouldBlock) => return Ok(TryLock::Busy),
            Err(std::fs::TryLockError::Error(e)) => return Err(CacheError::Io { path: path.to_path_buf(), source: e }),
        }
    }
}

/// Blocks until the exclusive lock at `path` is ours.
pub fn lock(path: &Path) -> Result<KeyLock, CacheError> {
    lock_mode(path, Mode::Exclusive)
}

/// Blocks until the lock at `path` is ours in `mode`.
pub fn lock_mode(path: &Path, mode: Mode) -> Result<KeyLock, CacheError> {
    loop {
        let file = open_lock_file(path).map_err(CacheError::io(path))?;
        match mode {
            Mode::Shared => file.lock_shared(),
            Mode::Exclusive => file.lock(),
        }
        .map_err(CacheError::io(path))?;
        if still_at(path, &file) {
            return Ok(KeyLock { _file: file });
        }
    }
}

/// Whether the file we locked is still the one at `path`: `gc` removes stale lock files, and a
/// lock on a removed file would exclude no one.
fn still_at(path: &Path, file: &File) -> bool {
    match (std::fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.lock");
        let a = lock_mode(&path, Mode::Shared).unwrap();
        let b = lock_mode(&path, Mode::Shared).unwrap();
        assert!(matches!(try_lock_mode(&path, Mode::Exclusive).unwrap(), TryLock::Busy));
        drop((a, b));
        let TryLock::Acquired(x) = try_lock_mode(&path, Mode::Exclusive).unwrap() else { panic!("free") };
        assert!(matches!(try_lock_mode(&path, Mode::Shared).unwrap(), TryLock::Busy));
        drop(x);
    }

    #[test]
    fn a_lock_file_replaced_by_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        assert!(lock(&path).is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }
}
