//! The content-addressed store on disk.
//!
//! ```text
//! CACHE/
//!   objects/<digest>/<output>/...   the files of every output of one stage instance
//!   objects/<digest>/manifest.json  name, size and blake3 of every file; the output digests
//!   keys/<recipe key>.json          recipe, object digest, output digests, provenance
//!   records/<experiment>/<inst>.json  the recipe last used under an instance name (for `status`)
//!   cache.lock                      shared by every process using the cache, exclusive for `gc`
//!   locks/<recipe key>.lock         held while an instance runs
//!   checkpoints/<recipe key>/       resumable state of a running stage (e.g. training epochs)
//!   tmp/                            staging area on the same file system, for atomic renames
//!   data/                           verified raw data sets
//!   runs.jsonl                      one line per instance per run
//! ```
//! A key is written only after its object is complete and synced, so a crash at any moment leaves
//! either no key or a key whose object is whole. Before an object is reused, read as an input or
//! kept on publish, its files are re-hashed and its output digests recomputed from the bytes (the
//! stored manifest is not trusted); a mismatch is reported and the object rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::fsutil::{ensure_real_dir, fsync_dir, hash_file, plain_file_or_absent, read_limited, write_atomic};
use super::ids::{Digest, RecipeKey};
use super::key::Recipe;
use super::lock::{self, KeyLock, Mode, TryLock};
use super::CacheError;

/// Manifests and key records are small; anything larger is damage, not data.
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// One file of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the object root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// blake3 of the contents.
    pub hash: Digest,
}

/// The manifest stored in every object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Every file, sorted by path.
    pub files: Vec<FileEntry>,
    /// Output name to the digest of that output's files.
    pub outputs: BTreeMap<String, Digest>,
}

/// What `keys/<key>.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// How thoroughly an object is checked before it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The manifest matches the key and every listed file is present with its size, and no
    /// other file is: a few `stat`s per file, what `status` does by default.
    Quick,
    /// Every file re-hashed and the output digests recomputed from the bytes: what happens
    /// before anything is reused, read as an input, printed by `show`, or kept on publish.
    Full,
}

/// A cache directory. Holds the cache lock (shared, or exclusive for `gc`) while it lives.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    _cache_lock: Option<Arc<KeyLock>>,
}

impl Store {
    /// Opens (creating if needed) a cache at `root`, holding the cache lock in shared mode for
    /// as long as the store lives; waits while `gc` holds it.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        Self::open_mode(root, Mode::Shared)
    }

    /// Opens a cache for `gc`: waits until no other process uses it, then keeps them out.
    pub fn open_exclusive(root: &Path) -> Result<Store, CacheError> {
        Self::open_mode(root, Mode::Exclusive)
    }

    fn open_mode(root: &Path, mode: Mode) -> Result<Store, CacheError> {
        fs::create_dir_all(root).map_err(CacheError::io(root))?;
        let lock_path = root.join("cache.lock");
        let attempt = match lock::try_lock_mode(&lock_path, mode) {
            // A cache on a read-only file system without a lock file: nothing can change it,
            // `gc` included, so reading it needs no lock.
            Err(CacheError::Io { source, .. })
                if mode == Mode::Shared && source.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
            {
                return Ok(Store { root: root.to_path_buf(), _cache_lock: None });
            }
            other => other?,
        };
        let held = match attempt {
            TryLock::Acquired(l) => l,
            TryLock::Busy => {
                match mode {
                    Mode::Shared => tracing::warn!("waiting for `cfrun gc` to finish with {}", root.display()),
                    Mode::Exclusive => {
                        tracing::warn!("waiting for the cfrun processes using {} to finish", root.display())
                    }
                }
                lock::lock_mode(&lock_path, mode)?
            }
        };
        for sub in ["objects", "keys", "records", "locks", "checkpoints", "tmp", "data"] {
            ensure_real_dir(&root.join(sub)).map_err(CacheError::io(root.join(sub)))?;
        }
        plain_file_or_absent(&root.join("runs.jsonl")).map_err(CacheError::io(root.join("runs.jsonl")))?;
        let tag = root.join("CACHEDIR.TAG");
        if fs::symlink_metadata(&tag).is_err() {
            let text = "Signature: 8a477f597d28d172789f06886806bc55\n# cfrun cache: see `cfrun gc` to reclaim space.\n";
            write_atomic(&tag, text.as_bytes()).map_err(CacheError::io(&tag))?;
        }
        Ok(Store { root: root.to_path_buf(), _cache_lock: Some(Arc::new(held)) })
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

    /// Lock file of a key.
    pub fn lock_path(&self, key: &RecipeKey) -> PathBuf {
        self.root.join("locks").join(format!("{}.lock", key.hex()))
    }

    /// Checkpoint directory of a key (created on demand by the op).
    pub fn checkpoint_dir(&self, key: &RecipeKey) -> PathBuf {
        self.root.join("checkpoints").join(key.hex())
    }

    /// Where verified raw data sets live.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The record of a key, if published. A record that cannot be parsed counts as absent.
    pub fn lookup(&self, key: &RecipeKey) -> Option<KeyRecord> {
        let bytes = read_limited(&self.key_path(key), MAX_RECORD_BYTES).ok()?;
        let record: KeyRecord = serde_json::from_slice(&bytes).ok()?;
        // The stored recipe must still hash to the key it is filed under.
        (record.key == *key && record.recipe.key() == *key).then_some(record)
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
        let manifest = build_manifest(&dir)?;
        let manifest_path = dir.join("manifest.json");
        let mut f = fs::File::create(&manifest_path).map_err(CacheError::io(&manifest_path))?;
        f.write_all(&serde_json::to_vec_pretty(&manifest).expect("plain data"))
            .map_err(CacheError::io(&manifest_path))?;
        f.sync_all().map_err(CacheError::io(&manifest_path))?;
        sync_tree(&dir)?;
        let object = object_digest(&manifest);
        let target = self.object_dir(&object);
        let staged_path = staged.keep();
        let placed = self.place(&staged_path, &target, &object, &manifest.outputs);
        let _ = fs::remove_dir_all(&staged_path);
        placed?;
        fsync_dir(&self.root.join("objects")).map_err(CacheError::io(self.root.join("objects")))?;
        let record = KeyRecord { key, object, outputs: manifest.outputs.clone(), recipe: recipe.clone(), provenance };
        let path = self.key_path(&key);
        write_atomic(&path, &serde_json::to_vec_pretty(&record).expect("plain data")).map_err(CacheError::io(&path))?;
        Ok(record)
    }

    /// Moves a staged object to `target`, or keeps an intact copy already there. Another
    /// process may be placing the same object at the same time; a few rounds settle it.
    fn place(
        &self,
        staged: &Path,
        target: &Path,
        object: &Digest,
        outputs: &BTreeMap<String, Digest>,
    ) -> Result<(), CacheError> {
        let mut last = String::new();
        for _ in 0..5 {
            if fs::symlink_metadata(target).is_ok() {
                match self.check_object(object, outputs, Check::Full) {
                    Ok(()) => return Ok(()),
                    Err(why) => {
                        tracing::warn!("stored object {} is damaged ({why}); replacing it", object.short());
                        self.discard_dir(target);
                        last = why;
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
            source: std::io::Error::other(format!("could not replace a damaged object ({last})")),
        })
    }

    /// Re-hashes an object's files and recomputes its digests. `Err` names the first mismatch.
    pub fn verify(&self, record: &KeyRecord) -> Result<(), String> {
        self.check(record, Check::Full)
    }

    /// Checks a published record's object at the given depth. `Err` names the first mismatch.
    pub fn check(&self, record: &KeyRecord, depth: Check) -> Result<(), String> {
        self.check_object(&record.object, &record.outputs, depth)
    }

    fn check_object(&self, object: &Digest, outputs: &BTreeMap<String, Digest>, depth: Check) -> Result<(), String> {
        let dir = self.object_dir(object);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("object {} is not a plain folder", object.short())),
            Err(_) => return Err(format!("object {} is missing", object.short())),
        }
        let stored = read_manifest(&dir);
        let on_disk = match depth {
            Check::Full => build_manifest(&dir).map_err(|e| e.to_string())?,
            Check::Quick => {
                let stored =
                    stored.as_ref().ok_or_else(|| format!("object {} has no readable manifest", object.short()))?;
                quick_listing(&dir, stored)?
            }
        };
        if object_digest(&on_disk) == *object && on_disk.outputs == *outputs {
            return Ok(());
        }
        Err(describe_difference(object, stored.as_ref(), &on_disk))
    }

    /// Fully checks the objects a computation is about to read; the first damaged one is
    /// evicted (so the next run rebuilds it) and reported.
    pub fn verify_inputs<'a>(&self, records: impl IntoIterator<Item = &'a KeyRecord>) -> Result<(), CacheError> {
        let mut seen = BTreeSet::new();
        for record in records {
            if !seen.insert(record.object) {
                continue;
            }
            if let Err(detail) = self.verify(record) {
                self.evict(record);
                let instance = record.provenance["instance"].as_str().unwrap_or("an upstream instance").to_string();
                return Err(CacheError::Damaged { instance, detail });
            }
        }
        Ok(())
    }

    /// Forgets a key whose object is damaged, moving the object aside so it is rebuilt.
    pub fn evict(&self, record: &KeyRecord) {
        let _ = fs::remove_file(self.key_path(&record.key));
        self.discard_dir(&self.object_dir(&record.object));
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
    /// a file planted beside them is not listed.
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

    /// Removes a key file.
    pub fn remove_key(&self, key: &RecipeKey) -> std::io::Result<()> {
        fs::remove_file(self.key_path(key))
    }

    /// Total size of an object's files.
    pub fn object_size(&self, digest: &Digest) -> u64 {
        dir_size(&self.object_dir(digest))
    }
}

fn read_manifest(dir: &Path) -> Option<Manifest> {
    let bytes = read_limited(&dir.join("manifest.json"), MAX_RECORD_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The manifest as the folder's listing and sizes suggest it: the stored hashes for files whose
/// path and size match, a marker hash for anything else (so the digests then differ).
fn quick_listing(dir: &Path, stored: &Manifest) -> Result<Manifest, String> {
    let mut paths = Vec::new();
    collect_files(dir, &mut paths).map_err(|e| e.to_string())?;
    let by_path: BTreeMap<&str, &FileEntry> = stored.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut files = Vec::new();
    for path in paths {
        let rel = relative(dir, &path);
        if rel == "manifest.json" {
            continue;
        }
        let size = fs::symlink_metadata(&path).map(|m| m.len()).map_err(|e| format!("{rel}: {e}"))?;
        let hash = match by_path.get(rel.as_str()) {
            Some(f) if f.size == size => f.hash,
            _ => Digest([0; 32]),
        };
        files.push(FileEntry { path: rel, size, hash });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let outputs = outputs_of(&files);
    Ok(Manifest { files, outputs })
}

/// A sentence naming the first file that differs between the stored manifest and the disk.
fn describe_difference(object: &Digest, stored: Option<&Manifest>, on_disk: &Manifest) -> String {
    let short = object.short();
    let Some(stored) = stored else { return format!("object {short} has no readable manifest") };
    let want: BTreeMap<&str, &FileEntry> = stored.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let have: BTreeMap<&str, &FileEntry> = on_disk.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let names: BTreeSet<&str> = want.keys().chain(have.keys()).copied().collect();
    for name in names {
        match (want.get(name), have.get(name)) {
            (Some(_), None) => return format!("{name} is missing from object {short}"),
            (None, Some(_)) => return format!("object {short} holds an unexpected file {name}"),
            (Some(w), Some(h)) if w.size != h.size || w.hash != h.hash => {
                return format!(
                    "{name} in object {short} has changed (expected {} bytes, blake3 {}; found {} bytes, {})",
                    w.size,
                    w.hash.short(),
                    h.size,
                    if h.hash == Digest([0; 32]) {
                        "not hashed".to_string()
                    } else {
                        format!("blake3 {}", h.hash.short())
                    }
                )
            }
            _ => {}
        }
    }
    format!("the files of object {short} do not hash to its digest (its manifest was altered)")
}

fn list_dir(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Every file under `dir`. Only plain files and folders belong in an object: a link (which
/// could point anywhere) or any other kind of entry is an error.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CacheError> {
    for entry in fs::read_dir(dir).map_err(CacheError::io(dir))? {
        let entry = entry.map_err(CacheError::io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(CacheError::io(&path))?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        } else {
            let what = if kind.is_symlink() { "a symbolic link" } else { "not a plain file" };
            return Err(CacheError::Io { path, source: std::io::Error::other(format!("{what} inside an object")) });
        }
    }
    Ok(())
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/")
}

/// Hashes every file under `dir` (except the manifest itself) into a manifest.
pub fn build_manifest(dir: &Path) -> Result<Manifest, CacheError> {
    let mut paths = Vec::new();
    collect_files(dir, &mut paths)?;
    let mut files = Vec::new();
    for path in paths {
        let rel = relative(dir, &path);
        if rel == "manifest.json" {
            continue;
        }
        let (size, hash) = hash_file(&path).map_err(CacheError::io(&path))?;
        files.push(FileEntry { path: rel, size, hash });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let outputs = outputs_of(&files);
    Ok(Manifest { files, outputs })
}

/// The per-output digests of a sorted file list.
fn outputs_of(files: &[FileEntry]) -> BTreeMap<String, Digest> {
    let mut per_output: BTreeMap<String, blake3::Hasher> = BTreeMap::new();
    for f in files {
        let (output, rest) = f.path.split_once('/').unwrap_or(("", f.path.as_str()));
        let h = per_output.entry(output.to_string()).or_default();
        h.update(rest.as_bytes());
        h.update(&[0]);
        h.update(&f.size.to_le_bytes());
        h.update(&f.hash.0);
    }
    per_output.into_iter().map(|(k, h)| (k, Digest(*h.finalize().as_bytes()))).collect()
}

/// The object digest: blake3 over the output names and digests.
pub fn object_digest(manifest: &Manifest) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"cfrun object\0");
    for (name, d) in &manifest.outputs {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(&d.0);
    }
    Digest(*h.finalize().as_bytes())
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
mod tests {
    use super::*;
    use crate::cache::key::RECIPE_FORMAT;

    fn publish(store: &Store, text: &[u8], seed: u64) -> KeyRecord {
        let staged = store.staging_dir().unwrap();
        fs::create_dir(staged.path().join("out")).unwrap();
        fs::write(staged.path().join("out/data.bin"), text).unwrap();
        let recipe = Recipe {
            format: RECIPE_FORMAT,
            op: "demo".into(),
            version: 1,
            params: serde_json::json!({ "seed": seed }),
            inputs: BTreeMap::new(),
        };
        store.publish(staged, recipe.key(), &recipe, serde_json::json!({"instance": "demo"})).unwrap()
    }

    #[test]
    fn a_damaged_input_is_refused_and_evicted() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"good bytes", 0);
        store.verify_inputs([&rec]).unwrap();
        fs::write(store.output_dir(&rec.object, "out").join("data.bin"), b"evil bytes").unwrap();
        assert_eq!(store.check(&rec, Check::Quick), Ok(()), "same size: only a full check sees it");
        let err = store.verify_inputs([&rec]).unwrap_err().to_string();
        assert!(err.contains("input demo is damaged") && err.contains("data.bin"), "{err}");
        assert!(store.lookup(&rec.key).is_none(), "the damaged result is forgotten");
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

    #[test]
    fn a_link_inside_an_object_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"bytes", 0);
        let file = store.output_dir(&rec.object, "out").join("data.bin");
        let elsewhere = root.path().join("elsewhere.bin");
        fs::write(&elsewhere, b"bytes").unwrap();
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(store.verify(&rec).unwrap_err().contains("symbolic link"));
    }
}
