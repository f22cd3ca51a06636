//! Per-key file locks, so that two cfrun processes sharing a cache never run the same instance
//! twice. The OS releases the lock when the process dies, so a kill -9 never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::path::Path;

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

/// Tries to take the lock at `path` without blocking.
pub fn try_lock(path: &Path) -> Result<TryLock, CacheError> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(TryLock::Acquired(KeyLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(TryLock::Busy),
        Err(std::fs::TryLockError::Error(e)) => Err(CacheError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Blocks until the lock at `path` is ours.
pub fn lock(path: &Path) -> Result<KeyLock, CacheError> {
    let file = open(path)?;
    file.lock().map_err(CacheError::io(path))?;
    Ok(KeyLock { _file: file })
}

fn open(path: &Path) -> Result<File, CacheError> {
    OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(CacheError::io(path))
}
