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
