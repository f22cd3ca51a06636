//! Garbage collection: remove the keys and objects that no given experiment uses.
//!
//! `gc` runs on a store opened with [`Store::open_exclusive`]: every process using the cache
//! holds the cache lock in shared mode, so while `gc` holds it no run is staging, reading or
//! publishing anything, and everything in `tmp/` and every per-key lock file is stale. Keys are
//! removed before their objects (a key never points at a removed object), objects are renamed
//! into `tmp/` before being deleted (never half-deleted under their name), and the report lists
//! exactly what was removed and what could not be. A checkpoint is kept only for a key the
//! experiments still compute and have not published: it is how that run resumes; any other
//! (an edited recipe's, a result's published since) can never be resumed from.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::fsutil::clear_entries;
use super::ids::{Digest, RecipeKey};
use super::store::Store;

/// What `gc` would remove.
#[derive(Debug, Default, Serialize)]
pub struct Garbage {
    /// Keys no experiment uses (or whose record is unreadable, or no longer hashes to its key).
    pub keys: Vec<RecipeKey>,
    /// Objects no kept key points at, with their sizes in bytes.
    pub objects: Vec<(Digest, u64)>,
    /// Checkpoint folders no unfinished instance of the experiments resumes from, with sizes.
    pub checkpoints: Vec<(String, u64)>,
}

/// What `gc` did.
#[derive(Debug, Default, Serialize)]
pub struct Sweep {
    /// Keys removed.
    pub keys_removed: usize,
    /// Objects removed, with their sizes.
    pub objects_removed: Vec<(Digest, u64)>,
    /// Bytes freed by the removed objects and checkpoints.
    pub bytes_freed: u64,
    /// Stale checkpoint folders removed.
    pub checkpoints_removed: usize,
    /// Stale lock files removed.
    pub locks_removed: usize,
    /// Leftover staging folders removed.
    pub staging_removed: usize,
    /// Job specs and claims of jobs that are done (their key published, or no queued job to
    /// read them).
    pub specs_removed: usize,
    /// What could not be removed, with the reason.
    pub failures: Vec<String>,
}

/// Everything in the cache that the experiments to keep do not use. `in_use` holds their keys,
/// each with whether it is published (`exec::evaluate::keys_in_use`).
pub fn find(store: &Store, in_use: &BTreeMap<RecipeKey, bool>) -> Garbage {
    let mut kept_objects = BTreeSet::new();
    let mut keys = Vec::new();
    for key in store.all_keys() {
        // A record whose seal fails is recomputed by the next run; until then the keys below it
        // come from its digests (`keys_in_use`), so it stays too, and its object with it.
        match store.filed(&key).filter(|_| in_use.contains_key(&key)) {
            Some(rec) => {
                kept_objects.insert(rec.object);
            }
            None => keys.push(key),
        }
    }
    // Evicted records: kept while a kept experiment computes the key (the keys below it come
    // from its digests), dropped with the rest otherwise.
    for key in store.all_evicted() {
        if !in_use.contains_key(&key) && !keys.contains(&key) {
            keys.push(key);
        }
    }
    let objects = store
        .all_objects()
        .into_iter()
        .filter(|o| !kept_objects.contains(o))
        .map(|o| (o, store.object_size(&o)))
        .collect();
    let resumable = |name: &str| RecipeKey::parse(name).is_some_and(|k| in_use.get(&k) == Some(&false));
    let checkpoints = super::store::list_dir(&store.root().join("checkpoints"))
        .into_iter()
        .filter(|name| !resumable(name))
        .map(|name| {
            let size = super::store::dir_size(&store.root().join("checkpoints").join(&name));
            (name, size)
        })
        .collect();
    Garbage { keys, objects, checkpoints }
}

/// Removes `garbage`, then the stale lock files and staging folders. `store` must have been
/// opened with [`Store::open_exclusive`].
pub fn sweep(store: &Store, garbage: &Garbage) -> Sweep {
    sweep_with(store, garbage, |key| store.remove_key(key))
}

/// [`sweep`], removing each key with `remove_key` (a test makes one fail).
fn sweep_with(store: &Store, garbage: &Garbage, remove_key: impl Fn(&RecipeKey) -> std::io::Result<()>) -> Sweep {
    let mut out = Sweep::default();
    for key in &garbage.keys {
        match remove_key(key) {
            Ok(()) => out.keys_removed += 1,
            Err(e) => out.failures.push(format!("key {key}: {e}")),
        }
    }
    // A key that is still there, whatever its removal said, keeps its object: a key never
    // points at a removed object.
    let still_pointed: BTreeSet<Digest> =
        garbage.keys.iter().filter_map(|key| store.filed(key)).map(|record| record.object).collect();
    for (object, size) in &garbage.objects {
        if still_pointed.contains(object) {
            out.failures.push(format!("object {object}: kept, since a key that could not be removed points at it"));
            continue;
        }
        match store.discard(object) {
            Ok(()) => {
                out.objects_removed.push((*object, *size));
                out.bytes_freed += size;
            }
            Err(e) => out.failures.push(format!("object {object}: {e}")),
        }
    }
    for (name, size) in &garbage.checkpoints {
        if store.discard_dir(&store.root().join("checkpoints").join(name)) {
            out.checkpoints_removed += 1;
            out.bytes_freed += size;
        } else {
            out.failures.push(format!("checkpoint {name}: could not be removed"));
        }
    }
    let clear = |sub: &str, stale: &dyn Fn(&str) -> bool, failures: &mut Vec<String>| {
        clear_entries(&store.root().join(sub), stale, failures)
    };
    out.locks_removed = clear("locks", &|_| true, &mut out.failures);
    out.staging_removed = clear("tmp", &|_| true, &mut out.failures);
    // What an atomic write killed before its rename leaves beside the files it writes.
    for sub in ["keys", "evicted", "records", "jobs"] {
        out.staging_removed += clear(sub, &|name| name.starts_with(".tmp"), &mut out.failures);
    }
    // Claims first: a claim whose key is published is done with, and its spec goes with it.
    out.specs_removed = clear("jobs", &|name| stale_claim(store, name), &mut out.failures);
    out.specs_removed += clear("jobs", &|name| stale_spec(store, name), &mut out.failures);
    out
}

/// Whether `jobs/NAME` is the claim (`KEY.claim`) of a job whose key is published: its job is
/// done, and a driver that gave up on the queue before it finished left the claim behind (the
/// spec beside it was kept for it ever after).
fn stale_claim(store: &Store, name: &str) -> bool {
    let Some(key) = name.strip_suffix(".claim").and_then(RecipeKey::parse) else { return false };
    store.filed(&key).is_some()
}

/// Whether `jobs/NAME` is a job spec (`KEY.json`, which the cluster executors write for
/// `cfrun exec`) that nothing will read. While `gc` holds the cache no child process runs, so only
/// a Slurm job still queued can need one, and its driver wrote that job's claim (`KEY.claim`)
/// beside it; a spec without a claim is done with (every run writes one per job, so they add up).
fn stale_spec(store: &Store, name: &str) -> bool {
    let Some(hex) = name.strip_suffix(".json") else { return false };
    RecipeKey::parse(hex).is_some() && !store.root().join("jobs").join(format!("{hex}.claim")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One published object per seed (the store's own test helper).
    fn publish(store: &Store, seed: u64) -> crate::cache::KeyRecord {
        crate::cache::store::tests::publish(store, &seed.to_le_bytes(), seed)
    }

    #[test]
    fn keeps_what_is_live_and_removes_the_rest_with_its_locks() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(root.path()).unwrap();
        let (live, dead) = (publish(&store, 1), publish(&store, 2));
        std::fs::write(store.lock_path(&dead.key), b"").unwrap();
        let garbage = find(&store, &BTreeMap::from([(live.key, true)]));
        assert_eq!(garbage.keys, vec![dead.key]);
        assert_eq!(garbage.objects.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![dead.object]);
        let swept = sweep(&store, &garbage);
        assert!(swept.failures.is_empty(), "{:?}", swept.failures);
        assert_eq!((swept.keys_removed, swept.objects_removed.len(), swept.locks_removed), (1, 1, 1));
        assert!(store.lookup(&dead.key).is_none() && !store.object_dir(&dead.object).exists());
        store.verify(&live).unwrap();
    }

    /// A key that could not be removed keeps its object, so it never points at nothing; the
    /// other garbage still goes.
    #[test]
    fn a_key_that_stays_keeps_its_object() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(root.path()).unwrap();
        let (stuck, dead) = (publish(&store, 1), publish(&store, 2));
        let garbage = find(&store, &BTreeMap::new());
        assert_eq!(garbage.objects.len(), 2);
        let refused = |key: &RecipeKey| {
            if *key == stuck.key {
                Err(std::io::Error::other("refused"))
            } else {
                store.remove_key(key)
            }
        };
        let swept = sweep_with(&store, &garbage, refused);
        assert_eq!((swept.keys_removed, swept.objects_removed.len()), (1, 1), "{:?}", swept.failures);
        assert_eq!(swept.objects_removed[0].0, dead.object);
        assert!(swept.failures.iter().any(|f| f.contains("refused")), "{:?}", swept.failures);
        assert!(
            swept.failures.iter().any(|f| f.contains(&format!("object {}: kept", stuck.object))),
            "{:?}",
            swept.failures
        );
        store.verify(&store.lookup(&stuck.key).expect("still filed")).unwrap();
        assert!(!store.object_dir(&dead.object).exists());
    }

    /// An evicted record stays while its key is in use (the keys below it are worked out from
    /// it), goes with the rest otherwise; what interrupted atomic writes left goes too, and a
    /// staging folder left read-only (a killed `command` stage's inputs) is emptied.
    #[test]
    fn evicted_records_follow_their_keys_and_leftovers_go() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(root.path()).unwrap();
        let [kept, dropped] = [1u64, 2].map(|n| {
            let rec = publish(&store, n);
            std::fs::write(store.output_dir(&rec.object, "out").join("data.bin"), b"damage").unwrap();
            assert!(store.evict(&rec));
            rec
        });
        let leftovers = ["keys", "evicted", "records", "jobs"].map(|d| store.root().join(d).join(".tmpXy12Z"));
        for path in &leftovers {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"{").unwrap();
        }
        let scratch = store.root().join("tmp/command-x/in/features");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("f.bin"), b"x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        for dir in [&scratch, scratch.parent().unwrap()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let garbage = find(&store, &BTreeMap::from([(kept.key, false)]));
        assert_eq!(garbage.keys, vec![dropped.key]);
        let swept = sweep(&store, &garbage);
        assert!(swept.failures.is_empty(), "{:?}", swept.failures);
        assert_eq!(swept.keys_removed, 1);
        assert!(store.evicted(&kept.key).is_some() && store.evicted(&dropped.key).is_none());
        assert!(leftovers.iter().all(|p| !p.exists()), "{leftovers:?}");
        assert!(!store.root().join("tmp/command-x").exists());
    }

    #[test]
    fn job_specs_go_unless_a_queued_job_may_still_read_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs = store.root().join("jobs");
        std::fs::create_dir_all(jobs.join("logs")).unwrap();
        let (done, queued) = ("a".repeat(64), "b".repeat(64));
        for name in [format!("{done}.json"), format!("{queued}.json"), format!("{queued}.claim"), "notes.json".into()] {
            std::fs::write(jobs.join(name), b"{}").unwrap();
        }
        let swept = sweep(&store, &Garbage::default());
        assert_eq!(swept.specs_removed, 1);
        let left: BTreeSet<String> = super::super::store::list_dir(&jobs).into_iter().collect();
        let expected: BTreeSet<String> =
            [format!("{queued}.json"), format!("{queued}.claim"), "notes.json".into(), "logs".into()].into();
        assert_eq!(left, expected, "the queued job's spec, its claim, what is not a spec and the logs stay");
        // A claim left by a driver that gave up on the queue, its job since published: both go.
        let published = publish(&store, 7).key.hex();
        for name in [format!("{published}.json"), format!("{published}.claim")] {
            std::fs::write(jobs.join(name), b"{}").unwrap();
        }
        let swept = sweep(&store, &Garbage::default());
        assert_eq!(swept.specs_removed, 2);
        let left: BTreeSet<String> = super::super::store::list_dir(&jobs).into_iter().collect();
        assert_eq!(left, expected);
    }

    /// A checkpoint survives only while its key is in use and unpublished: the run it belongs
    /// to can still resume from it. An abandoned recipe's, a published key's and a folder that
    /// names no key go.
    #[test]
    fn keeps_only_the_checkpoints_an_unfinished_instance_resumes_from() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(root.path()).unwrap();
        let done = publish(&store, 1);
        let [running, abandoned] = [7u64, 8].map(|n| {
            let key = crate::cache::store::tests::demo_recipe(n).key();
            std::fs::create_dir_all(store.checkpoint_dir(&key).join("epoch-0001")).unwrap();
            std::fs::write(store.checkpoint_dir(&key).join("epoch-0001/state"), b"weights").unwrap();
            key
        });
        std::fs::create_dir_all(store.checkpoint_dir(&done.key)).unwrap();
        std::fs::create_dir_all(root.path().join("checkpoints/not-a-key")).unwrap();
        let in_use = BTreeMap::from([(done.key, true), (running, false)]);
        let garbage = find(&store, &in_use);
        let mut names: Vec<&str> = garbage.checkpoints.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        let mut want = vec![abandoned.hex(), done.key.hex(), "not-a-key".to_string()];
        want.sort();
        assert_eq!(names, want);
        let swept = sweep(&store, &garbage);
        assert_eq!(swept.checkpoints_removed, 3, "{:?}", swept.failures);
        assert!(swept.bytes_freed >= 7, "the abandoned checkpoint's bytes are counted");
        assert!(store.checkpoint_dir(&running).join("epoch-0001/state").exists());
        assert!(!store.checkpoint_dir(&abandoned).exists() && !store.checkpoint_dir(&done.key).exists());
    }

    /// What could not be removed is reported as a failure, never counted as freed.
    #[test]
    fn an_object_that_cannot_be_removed_is_not_reported_as_freed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(root.path()).unwrap();
        let dead = publish(&store, 3);
        // Removal goes through tmp/; with tmp/ unusable, removing the object fails.
        std::fs::remove_dir_all(root.path().join("tmp")).unwrap();
        std::fs::write(root.path().join("tmp"), b"not a folder").unwrap();
        let swept = sweep(&store, &find(&store, &BTreeMap::new()));
        assert!(swept.objects_removed.is_empty() && swept.bytes_freed == 0);
        assert!(swept.failures.iter().any(|f| f.contains(&dead.object.to_string())), "{:?}", swept.failures);
        assert!(store.object_dir(&dead.object).exists());
    }
}
