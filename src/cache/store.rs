//! The content-addressed store on disk.
//!
//! ```text
//! CACHE/
//!   objects/<digest>/<output>/...   the files of every output of one stage instance
//!   objects/<digest>/manifest.json  name, size and blake3 of every file; the output digests
//!   keys/<recipe key>.json          recipe, object digest, output digests, provenance
//!   records/<experiment>/<inst>.json  the recipe last used under an instance name (for `status`)
//!   cache.lock                      shared by every process using the cache, exclusive for `gc`
//!   gc.lock                         the gate: held by a `gc` waiting or working; others pass it to enter
//!   locks/<recipe key>.lock         held while an instance runs
//!   locks/object-<digest>.lock      held while an object is placed or evicted; removed after
//!   checkpoints/<recipe key>/       resumable state of a running stage (e.g. training epochs)
//!   tmp/                            staging area on the same file system, for atomic renames
//!   data/                           verified raw data sets
//!   runs.jsonl                      one line per instance per run
//! ```
//! A key is written only after its object is complete and synced, so a crash at any moment leaves
//! either no key or a key whose object is whole. Before an object is reused, read as an input or
//! kept on publish, its files are re-hashed and its output digests recomputed from the bytes, and
//! the stored manifest must list exactly those files; a mismatch is reported and the object rebuilt.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::fsutil::{clear_entries, ensure_real_dir, fsync_dir, plain_file_or_absent, read_limited, write_atomic};
use super::ids::{Digest, RecipeKey};
use super::key::Recipe;
use super::layout;
use super::lock::{self, KeyLock, Mode, TryLock};
use super::manifest::MAX_RECORD_BYTES;
use super::CacheError;

pub use super::manifest::{build_manifest, object_digest, read_manifest, FileEntry, Manifest};
pub use super::verify::{Check, Untrusted};

/// What `keys/<key>.json` holds. Unknown fields are damage: a renamed `provenance_digest` would
/// otherwise pass for a record from before the seal (so no field may be added here: older cfruns
/// would refuse the record).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The recipe key.
    pub key: RecipeKey,
    /// The object holding the results.
    pub object: Digest,
    /// Output name to output digest (what downstream keys hash).
    pub outputs: BTreeMap<String, Digest>,
    /// What was computed.
    pub recipe: Recipe,
    /// How, where and when it was computed.
    pub provenance: serde_json::Value,
    /// blake3 of the canonical encoding of `provenance`, so that damage to it is seen. The
    /// provenance holds [`RECORD_SEAL`], over the rest of the record, so this seals it all.
    /// Absent in records written before it existed, which are read as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance_digest: Option<Digest>,
}

/// Why the record filed under a key is not served, though there is one.
#[derive(Debug, thiserror::Error)]
pub enum RecordDamage {
    /// This process may not read it (another user's cache): nothing a rebuild would mend.
    #[error("its record {} cannot be read: {source}", path.display())]
    Unreadable {
        /// The record.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Cut short, or not a record at all.
    #[error("its record {} is not a key record ({why})", path.display())]
    NotARecord {
        /// The record.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },
    /// A record of another key, copied under this one's name.
    #[error("its record {} names another key than the one it is filed under", path.display())]
    OtherKey {
        /// The record.
        path: PathBuf,
    },
    /// A field changed since cfrun sealed the record.
    #[error("its record {} was edited since cfrun sealed it", path.display())]
    Edited {
        /// The record.
        path: PathBuf,
    },
}

/// The provenance field sealing the whole record: blake3 of the key, the object, the outputs
/// and the rest of the provenance, so that a record edited to name another intact object (whose
/// outputs the keys below it would then read) is damage. Inside the provenance, not beside it:
/// the cfruns before it refuse a record with a field they do not know, and their `gc` would
/// then have removed every result a newer cfrun computed. The recipe is checked against the key.
const RECORD_SEAL: &str = "record_seal";

/// Whether `root` is not a cache yet: missing, or an empty folder (through a link too). Such a
/// folder is read as an empty cache without making its layout in it.
pub fn holds_nothing(root: &Path) -> bool {
    match fs::read_dir(root) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound && fs::symlink_metadata(root).is_err(),
    }
}

/// The digest a record's provenance is sealed with.
fn provenance_digest(provenance: &serde_json::Value) -> Digest {
    Digest(*blake3::hash(&super::canonical::encode(provenance)).as_bytes())
}

/// The [`RECORD_SEAL`] of a record: over everything it says but the recipe (which hashes to the
/// key) and the seal itself.
fn record_seal(
    key: &RecipeKey,
    object: &Digest,
    outputs: &BTreeMap<String, Digest>,
    provenance: &serde_json::Value,
) -> Digest {
    let mut rest = provenance.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove(RECORD_SEAL);
    }
    let sealed = serde_json::json!({ "key": key, "object": object, "outputs": outputs, "provenance": rest });
    Digest(*blake3::hash(&super::canonical::encode(&sealed)).as_bytes())
}

/// The lock on one object's folder ([`Store::lock_object`]). Its file is removed as it is
/// released, so `locks/` does not keep one per object; a process waiting on the removed file
/// sees it gone and locks a fresh one (`lock::lock`).
pub(super) struct ObjectLock {
    path: PathBuf,
    _held: KeyLock,
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        // Still held here: the lock is released after this, when `_held` is dropped.
        let _ = fs::remove_file(&self.path);
    }
}

/// A cache directory. Holds the cache lock (shared, or exclusive for `gc`) while it lives.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    _cache_lock: Option<Arc<KeyLock>>,
    /// `gc` holds the gate from before it waits until it is done.
    _gate: Option<Arc<KeyLock>>,
}

/// Whether opening a store passes through the gate that a waiting `gc` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Wait while a `gc` waits or works.
    Pass,
    /// Go straight to the cache lock: for a cluster job, whose driver already holds the cache
    /// (a `gc` waiting on that driver would otherwise wait on a job that waits on it).
    Skip,
}

impl Store {
    /// Opens (creating if needed) a cache at `root`, holding the cache lock in shared mode for
    /// as long as the store lives; waits while `gc` holds it. When no other process uses the
    /// cache, first removes what interrupted runs left in `tmp/`.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        let store = Self::open_mode(root, Mode::Shared, Gate::Pass, true)?;
        if super::fsutil::on_read_only_mount(&store.root) {
            if holds_nothing(&store.root) {
                return Err(CacheError::Io {
                    path: store.root,
                    source: std::io::Error::new(
                        std::io::ErrorKind::ReadOnlyFilesystem,
                        "the cache is on a read-only file system and holds nothing: a run could neither reuse nor \
                         store a result (give --cache a writable folder)",
                    ),
                });
            }
            tracing::warn!(
                "{} is on a read-only file system: what it holds is served, anything that must run fails",
                store.root.display()
            );
        }
        Ok(store)
    }

    /// Opens a cache only to read it (`status`, `show`, `report`): one that does not exist yet,
    /// or is an empty folder, reads as empty and is not created, so a mistyped `--cache` leaves
    /// nothing behind.
    pub fn open_to_read(root: &Path) -> Result<Store, CacheError> {
        if holds_nothing(root) {
            return Ok(Store { root: root.to_path_buf(), _cache_lock: None, _gate: None });
        }
        Self::open_mode(root, Mode::Shared, Gate::Pass, false)
    }

    /// Opens a cache for a job that a driver submitted (`cfrun exec`): like [`Store::open`], but
    /// not held up by a `gc` that is waiting for the driver to finish.
    pub fn open_for_job(root: &Path) -> Result<Store, CacheError> {
        Self::open_mode(root, Mode::Shared, Gate::Skip, false)
    }

    /// Opens a cache for `gc`: waits until no other process uses it, then keeps them out.
    pub fn open_exclusive(root: &Path) -> Result<Store, CacheError> {
        Self::open_mode(root, Mode::Exclusive, Gate::Pass, false)
    }

    /// `tidy`: clear `tmp/` first if no other process uses the cache ([`Store::clear_leftovers`]).
    fn open_mode(root: &Path, mode: Mode, gate: Gate, tidy: bool) -> Result<Store, CacheError> {
        // The root may be a link (a cache kept on a larger disk): everything below it is reached
        // through the link's target, since no link inside the cache is ever followed.
        let resolved = match fs::symlink_metadata(root) {
            Ok(m) if m.file_type().is_symlink() => Some(fs::canonicalize(root).map_err(CacheError::io(root))?),
            _ => None,
        };
        let root = resolved.as_deref().unwrap_or(root);
        fs::create_dir_all(root).map_err(CacheError::io(root))?;
        // `flock` keeps no queue: while any process holds the cache lock shared, new ones get it
        // too, and a stream of runs would hold `gc` off for ever. So `gc` first closes a gate,
        // and every other process passes it (holding it shared for a moment) before it takes
        // the cache lock: once `gc` waits, whoever comes later waits behind it.
        let gate_lock = match gate {
            Gate::Skip => None,
            Gate::Pass => Self::pass_gate(root, mode)?,
        };
        let lock_path = root.join("cache.lock");
        if tidy && gate_lock.is_some() {
            Self::clear_leftovers(root, &lock_path);
        }
        let attempt = match lock::try_lock_mode(&lock_path, mode) {
            // A cache on a read-only file system without a lock file: nothing can change it,
            // `gc` included, so reading it needs no lock.
            Err(CacheError::Io { source, .. })
                if mode == Mode::Shared && source.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
            {
                return Ok(Store { root: root.to_path_buf(), _cache_lock: None, _gate: None });
            }
            other => other?,
        };
        let held = match attempt {
            TryLock::Acquired(l) => l,
            TryLock::Busy => {
                match mode {
                    // The cache lock is held alone by `gc`, or for a moment by another cfrun
                    // clearing what interrupted runs left (`clear_leftovers`).
                    Mode::Shared => tracing::warn!(
                        "waiting for `cfrun gc`, or another cfrun clearing what interrupted runs left, to finish with {}{}",
                        root.display(),
                        super::lock_holders::described(&lock_path)
                    ),
                    Mode::Exclusive => tracing::warn!(
                        "waiting for the cfrun processes using {} to finish{}",
                        root.display(),
                        super::lock_holders::described(&lock_path)
                    ),
                }
                lock::lock_mode(&lock_path, mode)?
            }
        };
        // Only `gc` keeps the gate closed; everyone else is in and lets it go.
        let gate_lock = gate_lock.filter(|_| mode == Mode::Exclusive);
        for sub in layout::SUBDIRS {
            ensure_real_dir(&root.join(sub)).map_err(CacheError::io(root.join(sub)))?;
        }
        plain_file_or_absent(&root.join("runs.jsonl")).map_err(CacheError::io(root.join("runs.jsonl")))?;
        let tag = root.join("CACHEDIR.TAG");
        if fs::symlink_metadata(&tag).is_err() {
            write_atomic(&tag, layout::TAG_TEXT.as_bytes()).map_err(CacheError::io(&tag))?;
        }
        Ok(Store { root: root.to_path_buf(), _cache_lock: Some(Arc::new(held)), _gate: gate_lock.map(Arc::new) })
    }

    /// Removes what runs killed or interrupted left in `tmp/` (staging and scratch folders) when
    /// no other process uses the cache: every live one holds the cache lock, so taking it
    /// exclusively, for a moment, proves them all gone. The gate is held, so no `gc` is at work.
    fn clear_leftovers(root: &Path, lock_path: &Path) {
        let Ok(TryLock::Acquired(_alone)) = lock::try_lock_mode(lock_path, Mode::Exclusive) else { return };
        let tmp = root.join("tmp");
        if ensure_real_dir(&tmp).is_err() {
            return; // refused with its error below, where every folder is checked
        }
        let mut failures = Vec::new();
        let removed = clear_entries(&tmp, &|_| true, &mut failures);
        if removed > 0 {
            tracing::info!("removed {removed} folder(s) that an interrupted run left in {}", tmp.display());
        }
        for f in failures {
            tracing::warn!("cannot remove what an interrupted run left: {f}");
        }
    }

    /// Takes the gate (`gc.lock`) in `mode`, waiting (and saying so) while a `gc` holds it.
    /// `None` on a read-only file system without the lock file, where no `gc` can run.
    /// Any process but `gc` goes on without the gate where it cannot open it (a cache it may only
    /// read, made before the gate existed): the gate only spares `gc` a wait without end, and
    /// the cache lock alone still keeps `gc` out while this process works.
    fn pass_gate(root: &Path, mode: Mode) -> Result<Option<KeyLock>, CacheError> {
        let path = root.join("gc.lock");
        match lock::try_lock_mode(&path, mode) {
            // A cache this process may not change (a read-only mount, another user's cache read
            // by `status`) has no gate and needs none from it; anything else in the way leaves
            // `gc` unable to close the gate, which the user must hear of.
            Err(CacheError::Io { source, .. })
                if mode == Mode::Shared
                    && matches!(
                        source.kind(),
                        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                    ) =>
            {
                Ok(None)
            }
            Err(e) if mode == Mode::Shared => {
                tracing::warn!("going on without the gate that keeps later runs out while `cfrun gc` waits: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
            Ok(TryLock::Acquired(l)) => Ok(Some(l)),
            Ok(TryLock::Busy) => {
                match mode {
                    // `gc` itself may be waiting, on the processes using the cache: named too.
                    Mode::Shared => {
                        let users = super::lock_holders::described_besides(&root.join("cache.lock"), &path);
                        let waits = if users.is_empty() {
                            String::new()
                        } else {
                            format!("; it waits for the processes using it{users}")
                        };
                        tracing::warn!(
                            "waiting for `cfrun gc` to finish with {}{}{waits}",
                            root.display(),
                            super::lock_holders::described(&path)
                        )
                    }
                    Mode::Exclusive => tracing::warn!(
                        "waiting for another `cfrun gc` on {}{}",
                        root.display(),
                        super::lock_holders::described(&path)
                    ),
                }
                lock::lock_mode(&path, mode).map(Some)
            }
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of an object.
    pub fn object_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join("objects").join(digest.hex())
    }

    /// Directory of one output of an object.
    pub fn output_dir(&self, object: &Digest, output: &str) -> PathBuf {
        self.object_dir(object).join(output)
    }

    fn key_path(&self, key: &RecipeKey) -> PathBuf {
        self.root.join("keys").join(format!("{}.json", key.hex()))
    }

    fn evicted_path(&self, key: &RecipeKey) -> PathBuf {
        self.root.join("evicted").join(format!("{}.json", key.hex()))
    }

    /// Lock file of a key.
    pub fn lock_path(&self, key: &RecipeKey) -> PathBuf {
        self.root.join("locks").join(format!("{}.lock", key.hex()))
    }

    /// Waits for the lock on an object's folder, held while the folder is checked and then
    /// placed, replaced or removed, so that one process's eviction of a damaged copy can never
    /// remove the intact copy another has just placed (both see the same folder). `Ok(None)`
    /// where the lock file may not be made (a read-only cache, or one whose `locks/` this user
    /// may not write): nobody can place or remove anything there either.
    pub(super) fn lock_object(&self, object: &Digest) -> Result<Option<ObjectLock>, CacheError> {
        let path = self.root.join("locks").join(format!("object-{}.lock", object.hex()));
        match lock::lock(&path) {
            Ok(held) => Ok(Some(ObjectLock { path, _held: held })),
            Err(CacheError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                tracing::debug!("object {} is not locked: {source}", object.short());
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Checkpoint directory of a key (created on demand by the op).
    pub fn checkpoint_dir(&self, key: &RecipeKey) -> PathBuf {
        self.root.join("checkpoints").join(key.hex())
    }

    /// Where verified raw data sets live.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The record of a key, if published. A record that cannot be parsed, or whose recipe or
    /// provenance no longer matches what it was sealed with, counts as absent (and the instance
    /// is computed again, which rewrites it).
    pub fn lookup(&self, key: &RecipeKey) -> Option<KeyRecord> {
        self.lookup_or_damage(key).ok().flatten()
    }

    /// [`Store::lookup`], telling a key never published (`Ok(None)`) from a record filed under
    /// it that is no sound record (`Err`, what is wrong with it). Either way nothing is served.
    pub fn lookup_or_damage(&self, key: &RecipeKey) -> Result<Option<KeyRecord>, RecordDamage> {
        let path = self.key_path(key);
        let bytes = match read_limited(&path, MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // Only a permission is beyond a rebuild; a folder, a link or a huge file in the
            // record's place is damage the next run clears.
            Err(source) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(RecordDamage::Unreadable { path, source })
            }
            Err(e) => return Err(RecordDamage::NotARecord { path, why: e.to_string() }),
        };
        let record: KeyRecord = serde_json::from_slice(&bytes)
            .map_err(|e| RecordDamage::NotARecord { path: path.clone(), why: e.to_string() })?;
        if record.key != *key || record.recipe.key() != *key {
            return Err(RecordDamage::OtherKey { path });
        }
        if !Self::sealed(&record) {
            return Err(RecordDamage::Edited { path });
        }
        Ok(Some(record))
    }

    /// The record of a key whose object was found damaged and evicted, until the key is
    /// published again or `gc` drops it: the digests its outputs had, from which the keys below
    /// it are still worked out (`gc` keeps those intact results). Never served as a result, so,
    /// as with [`Store::filed`], its seal is not asked for: a record edited since it was set
    /// aside still names the digests the keys below it were computed from.
    pub fn evicted(&self, key: &RecipeKey) -> Option<KeyRecord> {
        Self::parse_record(&self.evicted_path(key), key)
    }

    /// The record filed under a published key whose recipe still hashes to it, sealed or not.
    /// One whose provenance no longer matches its seal is never served ([`Store::lookup`]
    /// refuses it and the run recomputes the key), but `gc` works out the keys below it from its
    /// digests, as from an evicted record, instead of dropping every intact result computed from it.
    pub fn filed(&self, key: &RecipeKey) -> Option<KeyRecord> {
        Self::parse_record(&self.key_path(key), key)
    }

    /// A record filed under `key` whose stored recipe still hashes to it.
    fn parse_record(path: &Path, key: &RecipeKey) -> Option<KeyRecord> {
        let record: KeyRecord = serde_json::from_slice(&read_limited(path, MAX_RECORD_BYTES).ok()?).ok()?;
        (record.key == *key && record.recipe.key() == *key).then_some(record)
    }

    /// Whether a record is as cfrun wrote it: its provenance by its digest, the rest by the
    /// provenance's [`RECORD_SEAL`]; a record from before either is read as it is.
    fn sealed(record: &KeyRecord) -> bool {
        if record.provenance_digest.is_some_and(|d| d != provenance_digest(&record.provenance)) {
            return false;
        }
        match record.provenance.get(RECORD_SEAL) {
            None => true,
            Some(seal) => serde_json::from_value::<Digest>(seal.clone()).is_ok_and(|seal| {
                seal == record_seal(&record.key, &record.object, &record.outputs, &record.provenance)
            }),
        }
    }

    /// A fresh staging directory on the cache's file system.
    pub fn staging_dir(&self) -> Result<tempfile::TempDir, CacheError> {
        tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(CacheError::io(self.root.join("tmp")))
    }

    /// Hashes and syncs a staged object, moves it into `objects/`, then publishes the key.
    /// `staged` holds one folder per output. An object already stored under the same digest is
    /// kept only if its bytes still hash to that digest; a damaged one is replaced by the
    /// bytes just computed, so a rebuild repairs the cache instead of publishing the damage.
    pub fn publish(
        &self,
        staged: tempfile::TempDir,
        key: RecipeKey,
        recipe: &Recipe,
        provenance: serde_json::Value,
    ) -> Result<KeyRecord, CacheError> {
        let dir = staged.path().to_path_buf();
        super::manifest::prune_empty_folders(&dir)?;
        let manifest = build_manifest(&dir)?;
        let encoded = super::manifest::encode(&manifest);
        if encoded.len() as u64 > MAX_RECORD_BYTES {
            return Err(CacheError::TooManyFiles { files: manifest.files.len(), bytes: encoded.len() as u64 });
        }
        let manifest_path = dir.join("manifest.json");
        let mut f = fs::File::create(&manifest_path).map_err(CacheError::io(&manifest_path))?;
        f.write_all(&encoded).map_err(CacheError::io(&manifest_path))?;
        f.sync_all().map_err(CacheError::io(&manifest_path))?;
        sync_tree(&dir)?;
        let object = object_digest(&manifest);
        let target = self.object_dir(&object);
        let staged_path = staged.keep();
        let placed = self.place(&staged_path, &target, &object, &manifest.outputs);
        let _ = fs::remove_dir_all(&staged_path);
        placed?;
        fsync_dir(&self.root.join("objects")).map_err(CacheError::io(self.root.join("objects")))?;
        let outputs = manifest.outputs.clone();
        let mut provenance = provenance;
        let seal = record_seal(&key, &object, &outputs, &provenance);
        if let Some(map) = provenance.as_object_mut() {
            map.insert(RECORD_SEAL.into(), serde_json::to_value(seal).expect("a digest"));
        }
        let record = KeyRecord {
            key,
            object,
            outputs,
            recipe: recipe.clone(),
            provenance_digest: Some(provenance_digest(&provenance)),
            provenance,
        };
        let path = self.key_path(&key);
        self.clear_folder_at(&path).map_err(CacheError::io(&path))?;
        write_atomic(&path, &serde_json::to_vec_pretty(&record).expect("plain data")).map_err(CacheError::io(&path))?;
        let _ = fs::remove_file(self.evicted_path(&key));
        Ok(record)
    }

    /// Removes a folder standing where a record file goes (made by hand: nothing of cfrun's is
    /// one), moved into `tmp/` first so that it never stands half-removed under the record's
    /// name. A rename onto it would fail with "Is a directory" on every run, and only a person
    /// could clear it. Anything else at `path` is left to the atomic rename to replace. Whether
    /// there was one.
    fn clear_folder_at(&self, path: &Path) -> std::io::Result<bool> {
        if !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Ok(false);
        }
        let aside = tempfile::Builder::new().prefix("damaged-").tempdir_in(self.root.join("tmp"))?.keep();
        let moved = aside.join("record");
        fs::rename(path, &moved)?;
        tracing::warn!("removed a folder that stood where the record {} goes", path.display());
        // The record's place is clear: what cannot be removed now is left in `tmp/` for gc.
        if let Err(e) = fs::remove_dir_all(&aside) {
            tracing::warn!("could not remove {} (gc removes it later): {e}", aside.display());
        }
        Ok(true)
    }

    /// Moves a staged object to `target`, or keeps an intact copy already there, under the
    /// object's lock (an eviction waits for it). A folder that cannot be moved aside or replaced
    /// gets a few rounds before the publish fails.
    fn place(
        &self,
        staged: &Path,
        target: &Path,
        object: &Digest,
        outputs: &BTreeMap<String, Digest>,
    ) -> Result<(), CacheError> {
        let _placing = self.lock_object(object)?;
        let mut last = None;
        for _ in 0..5 {
            if fs::symlink_metadata(target).is_ok() {
                match self.check_object(object, outputs, Check::Full) {
                    Ok(()) => return Ok(()),
                    Err(why) => {
                        tracing::warn!("stored object {} is damaged ({why}); replacing it", object.short());
                        self.discard_dir(target);
                        last = Some(why);
                        continue;
                    }
                }
            }
            if let Err(e) = fs::rename(staged, target) {
                if fs::symlink_metadata(target).is_err() {
                    return Err(CacheError::Io { path: target.to_path_buf(), source: e });
                }
                continue;
            }
            return Ok(());
        }
        Err(CacheError::Io {
            path: target.to_path_buf(),
            source: std::io::Error::other(match last {
                Some(why) => format!("could not replace a damaged object ({why})"),
                None => "could not place the object: another process kept replacing it".to_string(),
            }),
        })
    }

    /// Forgets a key whose object is damaged, moving the object aside so it is rebuilt. Its
    /// record moves to `evicted/` ([`Store::evicted`]), so that a rebuild that never finishes
    /// does not cost the results below it at the next `gc`; not while the key is being computed,
    /// nor once it has been published again (that record stays, for the new result to replace
    /// or because it is the new result). The object is checked once more first, under the
    /// object's lock: another process may have put its bytes back since the caller's check
    /// (objects are content-addressed), and those must not be thrown away. Returns whether it
    /// was evicted.
    pub fn evict(&self, record: &KeyRecord) -> bool {
        // Without the lock (a full disk, say) the eviction goes ahead as it did before there was
        // one: the worst a race then costs is a rebuild, never wrong bytes.
        let _removing = self.lock_object(&record.object).ok().flatten();
        if self.verify(record).is_ok() {
            return false;
        }
        // The record is set aside only while nobody computes its key (whoever does will publish
        // a fresh one, which must stay; this process, holding the key's lock, overwrites it) and
        // while it still names this object: the caller's copy may be older than the file.
        if let Ok(TryLock::Acquired(_computing)) = lock::try_lock(&self.lock_path(&record.key)) {
            let current = Self::parse_record(&self.key_path(&record.key), &record.key);
            if current.is_none_or(|r| r.object == record.object) {
                let _ = fs::rename(self.key_path(&record.key), self.evicted_path(&record.key));
            }
        }
        self.discard_dir(&self.object_dir(&record.object));
        true
    }

    /// Removes a folder of the cache by first renaming it into `tmp/`, so that nobody ever sees
    /// it half-deleted under its real name. Returns whether it is gone.
    pub fn discard_dir(&self, dir: &Path) -> bool {
        let Ok(holder) = tempfile::Builder::new().prefix("discard-").tempdir_in(self.root.join("tmp")) else {
            return fs::remove_dir_all(dir).is_ok();
        };
        let aside = holder.path().join("x");
        if fs::rename(dir, &aside).is_err() {
            return fs::symlink_metadata(dir).is_err();
        }
        let _ = fs::remove_dir_all(&aside);
        true
    }

    /// Removes an object (for `gc`): renamed into `tmp/` first, then deleted.
    pub fn discard(&self, object: &Digest) -> std::io::Result<()> {
        let dir = self.object_dir(object);
        let holder = tempfile::Builder::new().prefix("discard-").tempdir_in(self.root.join("tmp"))?;
        let aside = holder.path().join("x");
        fs::rename(&dir, &aside)?;
        fs::remove_dir_all(&aside)
    }

    /// The files of one output of a published object, as its manifest lists them (sorted);
    /// a file planted beside them is not listed, and a manifest with a path that leaves its
    /// output lists nothing. Call it on a record that passed the full check.
    pub fn output_files(&self, record: &KeyRecord, output: &str) -> Vec<PathBuf> {
        let dir = self.object_dir(&record.object);
        let Some(manifest) = read_manifest(&dir) else { return Vec::new() };
        let prefix = format!("{output}/");
        manifest.files.iter().filter(|f| f.path.starts_with(&prefix)).map(|f| dir.join(&f.path)).collect()
    }

    /// Every published key.
    pub fn all_keys(&self) -> Vec<RecipeKey> {
        list_dir(&self.root.join("keys"))
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").and_then(RecipeKey::parse))
            .collect()
    }

    /// Every stored object.
    pub fn all_objects(&self) -> Vec<Digest> {
        list_dir(&self.root.join("objects")).into_iter().filter_map(|n| Digest::parse(&n)).collect()
    }

    /// Keys of evicted records ([`Store::evicted`]).
    pub fn all_evicted(&self) -> Vec<RecipeKey> {
        list_dir(&self.root.join("evicted"))
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").and_then(RecipeKey::parse))
            .collect()
    }

    /// Removes a key's record, published or evicted.
    pub fn remove_key(&self, key: &RecipeKey) -> std::io::Result<()> {
        let folders = self.clear_folder_at(&self.key_path(key))? | self.clear_folder_at(&self.evicted_path(key))?;
        let removed = [self.key_path(key), self.evicted_path(key)].map(fs::remove_file);
        match removed {
            _ if folders => Ok(()),
            [Ok(()), _] | [_, Ok(())] => Ok(()),
            [Err(e), _] if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            [_, Err(e)] => Err(e),
        }
    }

    /// The disk space an object takes ([`dir_size`]).
    pub fn object_size(&self, digest: &Digest) -> u64 {
        dir_size(&self.object_dir(digest))
    }
}

/// The names of the entries of `dir` (none if it cannot be read).
pub(super) fn list_dir(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// The disk space `dir` takes: the blocks of its files and folders, itself included. What a
/// removal frees; the files' lengths alone said 16 MB of a cache of many small results that
/// took 337 MB.
pub fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let own = fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
    let Ok(rd) = fs::read_dir(dir) else { return own };
    own + rd
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.blocks() * 512).unwrap_or(0),
        })
        .sum::<u64>()
}

fn sync_tree(dir: &Path) -> Result<(), CacheError> {
    for entry in fs::read_dir(dir).map_err(CacheError::io(dir))? {
        let entry = entry.map_err(CacheError::io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(CacheError::io(&path))?.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path).and_then(|f| f.sync_all()).map_err(CacheError::io(&path))?;
        }
    }
    fsync_dir(dir).map_err(CacheError::io(dir))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cache::key::RECIPE_FORMAT;

    /// A run opening the cache removes what a killed run left in `tmp/` (a scratch folder with
    /// read-only inputs, a staging folder), but only when no other process uses the cache; a
    /// reader (`status`) or a job opening it leaves `tmp/` alone.
    #[test]
    fn opening_alone_clears_what_killed_runs_left_and_never_under_a_live_one() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let live = Store::open(root.path()).unwrap();
        let staged = live.staging_dir().unwrap().keep();
        let inputs = root.path().join("tmp/command-x/in/features");
        fs::create_dir_all(&inputs).unwrap();
        fs::write(inputs.join("f.bin"), b"x").unwrap();
        fs::set_permissions(&inputs, fs::Permissions::from_mode(0o500)).unwrap();
        // Another process uses the cache (its folders may be live): nothing is removed.
        let second = Store::open(root.path()).unwrap();
        assert!(staged.exists() && inputs.exists());
        drop((live, second));
        drop(Store::open_to_read(root.path()).unwrap());
        drop(Store::open_for_job(root.path()).unwrap());
        assert!(staged.exists() && inputs.exists(), "readers and jobs leave tmp/ alone");
        let _alone = Store::open(root.path()).unwrap();
        assert_eq!(list_dir(&root.path().join("tmp")), Vec::<String>::new());
    }

    /// Publishes one output `out/data.bin` holding `text` under a recipe seeded `seed`.
    pub(crate) fn publish(store: &Store, text: &[u8], seed: u64) -> KeyRecord {
        let staged = store.staging_dir().unwrap();
        fs::create_dir(staged.path().join("out")).unwrap();
        fs::write(staged.path().join("out/data.bin"), text).unwrap();
        let recipe = demo_recipe(seed);
        store.publish(staged, recipe.key(), &recipe, serde_json::json!({"instance": "demo"})).unwrap()
    }

    /// The recipe of a `demo` op seeded `seed`, with no inputs.
    pub(crate) fn demo_recipe(seed: u64) -> Recipe {
        Recipe {
            format: RECIPE_FORMAT,
            op: "demo".into(),
            version: 1,
            params: serde_json::json!({ "seed": seed }),
            inputs: BTreeMap::new(),
            math: BTreeMap::new(),
        }
    }

    #[test]
    fn a_gate_that_cannot_be_opened_holds_up_only_gc() {
        let root = tempfile::tempdir().unwrap();
        drop(Store::open(root.path()).unwrap());
        // Where the gate cannot be opened (here a folder in its place; for a user who may only
        // read the cache, a missing file), a run goes on and gc refuses.
        fs::remove_file(root.path().join("gc.lock")).unwrap();
        fs::create_dir(root.path().join("gc.lock")).unwrap();
        drop(Store::open(root.path()).unwrap());
        assert!(Store::open_exclusive(root.path()).is_err());
    }

    #[test]
    fn a_file_name_with_a_backslash_is_stored_and_verified() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let staged = store.staging_dir().unwrap();
        fs::create_dir(staged.path().join("out")).unwrap();
        fs::write(staged.path().join("out").join("..\\odd"), b"bytes").unwrap();
        let recipe = demo_recipe(0);
        let rec = store.publish(staged, recipe.key(), &recipe, serde_json::json!({})).unwrap();
        store.verify(&rec).unwrap();
        assert_eq!(store.output_files(&rec, "out"), vec![store.output_dir(&rec.object, "out").join("..\\odd")]);
    }

    #[test]
    fn an_edited_record_is_damage_and_never_served() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"bytes", 0);
        let other = publish(&store, b"other bytes", 1);
        let path = store.key_path(&rec.key);
        let text = fs::read_to_string(&path).unwrap();
        assert!(store.lookup(&rec.key).is_some());
        let damage = |edited: &str| {
            fs::write(&path, edited).unwrap();
            let found = store.lookup_or_damage(&rec.key);
            assert!(store.lookup(&rec.key).is_none(), "an edited record is not served");
            found.expect_err("an edited record is damage, not a key never published").to_string()
        };
        let edited = damage(&text.replace("\"instance\": \"demo\"", "\"instance\": \"dem0\""));
        assert!(edited.contains("was edited since cfrun sealed it"), "{edited}");
        // Another intact object and its outputs, named by hand: the keys below would read them.
        let mut swapped: serde_json::Value = serde_json::from_str(&text).unwrap();
        swapped["object"] = serde_json::to_value(other.object).unwrap();
        swapped["outputs"] = serde_json::to_value(&other.outputs).unwrap();
        assert!(damage(&swapped.to_string()).contains("was edited"));
        // The whole-record seal is part of the sealed provenance: it cannot just be dropped.
        let mut unsealed: serde_json::Value = serde_json::from_str(&text).unwrap();
        unsealed["provenance"].as_object_mut().unwrap().remove(RECORD_SEAL).unwrap();
        assert!(damage(&unsealed.to_string()).contains("was edited"));
        // Nor can the provenance's digest be renamed away (once read as a record from before it).
        assert!(damage(&text.replace("\"provenance_digest\"", "\"provenance_digesX\"")).contains("is not a key record"));
        assert!(damage("{").contains("is not a key record"));
        assert!(damage(&fs::read_to_string(store.key_path(&other.key)).unwrap()).contains("names another key"));
        // A record from before the whole-record seal, its provenance sealed alone: read as it is,
        // and its provenance still checked.
        unsealed["provenance_digest"] = serde_json::to_value(provenance_digest(&unsealed["provenance"])).unwrap();
        fs::write(&path, unsealed.to_string()).unwrap();
        assert_eq!(store.lookup(&rec.key).unwrap().provenance["instance"], "demo");
        unsealed["provenance"]["instance"] = "dem0".into();
        assert!(damage(&unsealed.to_string()).contains("was edited"));
        // From before both seals: read as it is.
        unsealed.as_object_mut().unwrap().remove("provenance_digest").unwrap();
        fs::write(&path, unsealed.to_string()).unwrap();
        assert_eq!(store.lookup(&rec.key).unwrap().provenance["instance"], "dem0");
        fs::remove_file(&path).unwrap();
        assert!(matches!(store.lookup_or_damage(&rec.key), Ok(None)), "never published is no damage");
        // A folder in its place is damage the next run clears, not a permission to ask for.
        fs::create_dir(&path).unwrap();
        assert!(matches!(store.lookup_or_damage(&rec.key), Err(RecordDamage::NotARecord { .. })));
    }

    /// Outputs whose manifest would be more than a reader takes are refused at publish, with
    /// nothing published: published, they read as damage on every later run (found by review:
    /// 112,000 files made a 70 MB manifest, rebuilt on each run).
    #[test]
    fn outputs_of_too_many_files_are_refused_not_published_as_damage() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let staged = store.staging_dir().unwrap();
        fs::create_dir(staged.path().join("out")).unwrap();
        let files = (MAX_RECORD_BYTES / 100) as usize;
        for i in 0..files {
            fs::write(staged.path().join("out").join(format!("{i:0>40}")), b"").unwrap();
        }
        let recipe = demo_recipe(0);
        let err = store.publish(staged, recipe.key(), &recipe, serde_json::json!({})).unwrap_err();
        assert!(matches!(err, CacheError::TooManyFiles { .. }), "{err}");
        assert!(err.to_string().contains(&format!("the outputs hold {files} files")), "{err}");
        assert!(err.to_string().contains("reads back; write fewer files (one archive"), "{err}");
        assert!(store.lookup(&recipe.key()).is_none());
        assert_eq!(list_dir(&root.path().join("objects")), Vec::<String>::new());
    }

    #[test]
    fn publishing_over_a_damaged_copy_replaces_it() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let first = publish(&store, b"same bytes", 0);
        let file = store.output_dir(&first.object, "out").join("data.bin");
        fs::write(&file, b"SAME bytes").unwrap();
        let second = publish(&store, b"same bytes", 1);
        assert_eq!(second.object, first.object);
        assert_eq!(fs::read(&file).unwrap(), b"same bytes");
        store.verify(&first).unwrap();
    }
}
