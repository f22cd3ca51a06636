//! The content-addressed store on disk.
//!
//! ```text
//! CACHE/
//!   objects/<digest>/<output>/...   the files of every output of one stage instance
//!   objects/<digest>/manifest.json  name, size and blake3 of every file; the output digests
//!   keys/<recipe key>.json          recipe, object digest, output digests, provenance
//!   records/<experiment>/<inst>.json  the recipe last used under an instance name (for `status`)
//!   locks/<recipe key>.lock         held while an instance runs
//!   checkpoints/<recipe key>/       resumable state of a running stage (e.g. training epochs)
//!   tmp/                            staging area on the same file system, for atomic renames
//!   data/                           verified raw data sets
//!   runs.jsonl                      one line per instance per run
//! ```
//! A key is written only after its object is complete and synced, so a crash at any moment leaves
//! either no key or a key whose object is whole. Objects are verified against their manifest
//! before use; a mismatch is reported and the object rebuilt.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsutil::{fsync_dir, hash_file, write_atomic};
use super::ids::{Digest, RecipeKey};
use super::key::Recipe;
use super::CacheError;

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

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) a cache at `root`.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        for sub in ["objects", "keys", "records", "locks", "checkpoints", "tmp", "data"] {
            fs::create_dir_all(root.join(sub)).map_err(CacheError::io(root.join(sub)))?;
        }
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let text = "Signature: 8a477f597d28d172789f06886806bc55\n# cfrun cache: see `cfrun gc` to reclaim space.\n";
            write_atomic(&tag, text.as_bytes()).map_err(CacheError::io(&tag))?;
        }
        Ok(Store { root: root.to_path_buf() })
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
        let bytes = fs::read(self.key_path(key)).ok()?;
        let record: KeyRecord = serde_json::from_slice(&bytes).ok()?;
        (record.key == *key).then_some(record)
    }

    /// A fresh staging directory on the cache's file system.
    pub fn staging_dir(&self) -> Result<tempfile::TempDir, CacheError> {
        tempfile::Builder::new()
            .prefix("stage-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(CacheError::io(self.root.join("tmp")))
    }

    /// Hashes and syncs a staged object, moves it into `objects/`, then publishes the key.
    /// `staged` holds one folder per output.
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
        if target.exists() {
            // Same bytes already stored (e.g. by another recipe): keep the existing copy.
            let _ = fs::remove_dir_all(&staged_path);
        } else if let Err(e) = fs::rename(&staged_path, &target) {
            if !target.exists() {
                let _ = fs::remove_dir_all(&staged_path);
                return Err(CacheError::Io { path: target, source: e });
            }
            let _ = fs::remove_dir_all(&staged_path);
        }
        fsync_dir(&self.root.join("objects")).map_err(CacheError::io(self.root.join("objects")))?;
        let record = KeyRecord { key, object, outputs: manifest.outputs.clone(), recipe: recipe.clone(), provenance };
        let path = self.key_path(&key);
        write_atomic(&path, &serde_json::to_vec_pretty(&record).expect("plain data")).map_err(CacheError::io(&path))?;
        Ok(record)
    }

    /// Re-hashes an object's files against its manifest. `Err` names the first mismatch.
    pub fn verify(&self, record: &KeyRecord) -> Result<(), String> {
        let dir = self.object_dir(&record.object);
        let manifest: Manifest = fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| format!("object {} has no readable manifest", record.object.short()))?;
        if object_digest(&manifest) != record.object || manifest.outputs != record.outputs {
            return Err(format!("manifest of object {} does not match its digest", record.object.short()));
        }
        for f in &manifest.files {
            let path = dir.join(&f.path);
            let (size, hash) = hash_file(&path).map_err(|e| format!("{}: {e}", f.path))?;
            if size != f.size || hash != f.hash {
                return Err(format!(
                    "{} in object {} has changed (expected {}, found {})",
                    f.path,
                    record.object.short(),
                    f.hash.short(),
                    hash.short()
                ));
            }
        }
        Ok(())
    }

    /// Forgets a key whose object is damaged, moving the object aside so it is rebuilt.
    pub fn evict(&self, record: &KeyRecord) {
        let _ = fs::remove_file(self.key_path(&record.key));
        let dir = self.object_dir(&record.object);
        let aside = self.root.join("tmp").join(format!("corrupt-{}", record.object.hex()));
        let _ = fs::remove_dir_all(&aside);
        let _ = fs::rename(&dir, &aside);
        let _ = fs::remove_dir_all(&aside);
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

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CacheError> {
    for entry in fs::read_dir(dir).map_err(CacheError::io(dir))? {
        let entry = entry.map_err(CacheError::io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(CacheError::io(&path))?.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push(path);
        }
    }
    let _ = root;
    Ok(())
}

/// Hashes every file under `dir` (except the manifest itself) into a manifest.
pub fn build_manifest(dir: &Path) -> Result<Manifest, CacheError> {
    let mut paths = Vec::new();
    collect_files(dir, dir, &mut paths)?;
    let mut files = Vec::new();
    for path in paths {
        let rel = path.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
        if rel == "manifest.json" {
            continue;
        }
        let (size, hash) = hash_file(&path).map_err(CacheError::io(&path))?;
        files.push(FileEntry { path: rel, size, hash });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut per_output: BTreeMap<String, blake3::Hasher> = BTreeMap::new();
    for f in &files {
        let (output, rest) = f.path.split_once('/').unwrap_or(("", f.path.as_str()));
        let h = per_output.entry(output.to_string()).or_default();
        h.update(rest.as_bytes());
        h.update(&[0]);
        h.update(&f.size.to_le_bytes());
        h.update(&f.hash.0);
    }
    let outputs = per_output.into_iter().map(|(k, h)| (k, Digest(*h.finalize().as_bytes()))).collect();
    Ok(Manifest { files, outputs })
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
