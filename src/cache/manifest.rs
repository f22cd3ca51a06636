//! Object manifests: the name, size and blake3 of every file of an object, the per-output digests
//! computed from them, and the object digest computed from those.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsutil::{hash_file, read_limited};
use super::ids::Digest;
use super::CacheError;

/// Manifests and key records are small; anything larger is damage, not data.
#[cfg(not(test))]
pub(super) const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Small enough in unit tests that a manifest over it is made in milliseconds.
#[cfg(test)]
pub(super) const MAX_RECORD_BYTES: u64 = 256 << 10;

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

/// The manifest stored in `dir`, if readable, byte for byte as cfrun writes it, and every path
/// in it names a file inside one of the object's outputs. Callers join these paths onto
/// folders, so a path that climbs out (`..`), starts at the root or names no output counts as
/// damage, never as a place to go. The bytes are held to their one written form so that no byte
/// of an object changes unseen, even where the change would parse to the same manifest (a hex
/// digit's case, white space).
pub fn read_manifest(dir: &Path) -> Option<Manifest> {
    let bytes = read_limited(&dir.join("manifest.json"), MAX_RECORD_BYTES).ok()?;
    let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
    let as_written = encode(&manifest) == bytes;
    (as_written && manifest.files.iter().all(|f| is_inside_an_output(&f.path))).then_some(manifest)
}

/// The bytes of `manifest.json`.
pub fn encode(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec_pretty(manifest).expect("plain data")
}

/// Whether `path` is `output/…/file`: two or more `/`-separated parts, none empty, `.` or `..`.
fn is_inside_an_output(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() >= 2 && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'))
}

/// Every file under `dir`. Only plain files and folders belong in an object: a link (which
/// could point anywhere) or any other kind of entry is an error.
pub(super) fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CacheError> {
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

/// Removes every folder under `dir` (not `dir` itself) that holds no file, however deep, and
/// says how many went. An object is its files: an empty folder is in no digest and no manifest,
/// so, published, it would make two copies of one object differ unseen. `remove_dir` takes a
/// folder only while it is empty, so no file can go with one, whoever else reads the object.
pub(super) fn prune_empty_folders(dir: &Path) -> Result<usize, CacheError> {
    /// Prunes below `dir`; whether `dir` is left holding nothing.
    fn prune(dir: &Path, removed: &mut usize) -> Result<bool, CacheError> {
        let mut empty = true;
        for entry in fs::read_dir(dir).map_err(CacheError::io(dir))? {
            let entry = entry.map_err(CacheError::io(dir))?;
            let path = entry.path();
            if entry.file_type().map_err(CacheError::io(&path))?.is_dir() && prune(&path, removed)? {
                fs::remove_dir(&path).map_err(CacheError::io(&path))?;
                *removed += 1;
            } else {
                empty = false;
            }
        }
        Ok(empty)
    }
    let mut removed = 0;
    prune(dir, &mut removed)?;
    Ok(removed)
}

/// `path` below `dir`, `/`-separated as on the Unix systems cfrun runs on. A backslash is an
/// ordinary character in a Unix file name, so it is kept (turning it into `/` would name
/// another path, one [`read_manifest`] then refuses).
pub(super) fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).expect("under dir").to_string_lossy().to_string()
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
pub(super) fn outputs_of(files: &[FileEntry]) -> BTreeMap<String, Digest> {
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
