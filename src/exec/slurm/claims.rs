//! `CACHE/jobs/<key>.claim`: which Slurm job is computing a key. Written when a job is submitted
//! and removed when it ends, so that `cfrun status` can show queued and running instances with
//! their job ids, and a second driver on the same cache follows the job instead of submitting
//! the key again. A claim is only a hint: the queue says whether its job is alive.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cache::fsutil::write_atomic;
use crate::cache::lock::{try_lock, KeyLock, TryLock};
use crate::cache::{CacheError, RecipeKey, Store};
use crate::exec::job::jobs_dir;

/// One claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The Slurm job id (`123`, or `123_4` for an array task).
    pub job_id: String,
    /// The job's log file.
    pub log: PathBuf,
    /// The instance it computes.
    pub instance: String,
    /// The mark of the driver that submitted it ([`DriverMark`]); absent in claims written
    /// before marks, whose driver is taken to be alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// A driver's mark in the cache: a lock held for as long as it runs, named in every claim it
/// writes. A later driver that finds a live job whose mark nobody holds knows the job's driver
/// is gone (killed outright, its node lost) and takes the job over, so that its own Ctrl-C
/// cancels it; it used to follow such a job as another run's, and leave it to its time limit.
pub struct DriverMark {
    name: String,
    path: PathBuf,
    _lock: KeyLock,
}

impl DriverMark {
    /// Takes a new mark in `locks/` (which `gc` clears when no run holds the cache).
    pub fn take(store: &Store) -> Result<DriverMark, CacheError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("driver-{host}-{}-{nanos}", std::process::id());
        let path = mark_path(store, &name);
        match try_lock(&path)? {
            TryLock::Acquired(lock) => Ok(DriverMark { name, path, _lock: lock }),
            // A name of this process and this instant: only another driver's bug could hold it.
            TryLock::Busy => Err(CacheError::Io {
                path: path.clone(),
                source: std::io::Error::other("the driver mark just made is held by another process"),
            }),
        }
    }

    /// The name claims carry.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for DriverMark {
    fn drop(&mut self) {
        // Removed while still held: a driver that finds it gone takes the same view as one
        // that finds it free.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn mark_path(store: &Store, name: &str) -> PathBuf {
    store.root().join("locks").join(format!("{name}.lock"))
}

/// Whether the driver that submitted `claim`'s job is gone: its mark is held by nobody (or was
/// removed). A claim without a mark, with an odd one, or with `ours` counts as alive.
pub fn driver_gone(store: &Store, claim: &Claim, ours: &str) -> bool {
    let Some(name) = claim.driver.as_deref() else { return false };
    let plain = name.starts_with("driver-") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if name == ours || !plain {
        return false;
    }
    let path = mark_path(store, name);
    match try_lock(&path) {
        Ok(TryLock::Acquired(_free)) => {
            let _ = std::fs::remove_file(&path);
            true
        }
        _ => false,
    }
}

fn path(store: &Store, key: &RecipeKey) -> PathBuf {
    jobs_dir(store).join(format!("{}.claim", key.hex()))
}

/// The claim on `key`, if any.
pub fn read(store: &Store, key: &RecipeKey) -> Option<Claim> {
    serde_json::from_slice(&std::fs::read(path(store, key)).ok()?).ok()
}

/// Records that `claim`'s job computes `key`.
pub fn write(store: &Store, key: &RecipeKey, claim: &Claim) {
    let bytes = serde_json::to_vec(claim).expect("plain data");
    if let Err(e) = write_atomic(&path(store, key), &bytes) {
        tracing::warn!("could not record job {} for {}: {e}", claim.job_id, claim.instance);
    }
}

/// Drops the claim on `key` if it is still `job_id`'s (another driver may have claimed it since).
/// Under the submission lock, so that a claim another driver writes between the look and the
/// removal is not the one removed; while that driver holds the lock its new claim is on the way,
/// and the old one is left for it to replace.
pub fn release(store: &Store, key: &RecipeKey, job_id: &str) {
    let Ok(Some(_submitting)) = lock_submission(store, key) else { return };
    if read(store, key).is_some_and(|c| c.job_id == job_id) {
        let _ = std::fs::remove_file(path(store, key));
    }
}

/// Takes the right to submit a job for `key`, held while the claim is looked at and, if none is
/// live, until the new job's claim is written: two drivers that need the key at once then
/// submit one job, the second following it. `None` when another driver holds it now (it is
/// submitting the key; its claim follows). In `locks/`, which `gc` clears.
pub fn lock_submission(store: &Store, key: &RecipeKey) -> Result<Option<KeyLock>, CacheError> {
    let path = store.root().join("locks").join(format!("{}.submit", key.hex()));
    Ok(match try_lock(&path)? {
        TryLock::Acquired(lock) => Some(lock),
        TryLock::Busy => None,
    })
}
