//! Reading, verifying and atomically caching data files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::FileSpec;
use super::error::DataError;
use crate::cache::fsutil::read_limited;

/// Name of the marker that records which files in a cache folder were verified.
pub const MARKER: &str = ".verified";

/// What the scratch folders of a fetch are named after, in the data folder: `.download-…`,
/// `.package-…`, `.unpack-…`.
pub const SCRATCH: [&str; 3] = ["download", "package", "unpack"];

/// Removes what fetches killed mid-way left in `data_dir`: scratch folders, and partly written
/// files (`.NAME.….part`) in the data sets' own folders. Only for `gc`, which holds this cache
/// alone: not in a data set's folder that links to a shared copy, and no partial file younger
/// than an hour, since another cache's folder may link here and its run be writing one (a data
/// set's file takes seconds to write). Returns how many were removed; what could not be is
/// added to `failures`.
pub fn clear_leftovers(data_dir: &Path, failures: &mut Vec<String>) -> usize {
    use crate::cache::fsutil::clear_entries;
    const SETTLED: std::time::Duration = std::time::Duration::from_secs(3600);
    let scratch = |name: &str| SCRATCH.iter().any(|what| name.starts_with(&format!(".{what}-")));
    let mut removed = clear_entries(data_dir, &scratch, failures);
    let Ok(sets) = fs::read_dir(data_dir) else { return removed };
    for set in sets.flatten() {
        if set.file_type().is_ok_and(|t| t.is_dir()) {
            let dir = set.path();
            let settled = |name: &str| {
                let modified = fs::symlink_metadata(dir.join(name)).and_then(|m| m.modified()).ok();
                modified.and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= SETTLED)
            };
            let partial = |name: &str| name.starts_with('.') && name.ends_with(".part") && settled(name);
            removed += clear_entries(&dir, &partial, failures);
        }
    }
    removed
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a file, gunzipping it when it starts with the gzip magic.
///
/// Reads at most `limit + 1` decompressed bytes so a wrong or hostile archive
/// cannot exhaust memory; the caller's size check then rejects it.
pub fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io("open", path, e))?;
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut file, &mut magic).map_err(|e| DataError::io("read", path, e))?;
    let head = &magic[..got];
    let mut out = Vec::new();
    let cap = limit.saturating_add(1);
    if head == GZIP_MAGIC {
        let reader = head.chain(file);
        MultiGzDecoder::new(reader).take(cap).read_to_end(&mut out).map_err(|e| DataError::io("gunzip", path, e))?;
    } else {
        out.extend_from_slice(head);
        file.take(cap).read_to_end(&mut out).map_err(|e| DataError::io("read", path, e))?;
    }
    Ok(out)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Checks size and SHA-256 of `bytes` against `spec`; `path` is named in errors.
pub fn verify(spec: &FileSpec, path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if bytes.len() as u64 != spec.size {
        return Err(DataError::SizeMismatch {
            file: spec.name.clone(),
            path: path.to_path_buf(),
            expected: spec.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = sha256_hex(bytes);
    if actual != spec.sha256 {
        return Err(DataError::HashMismatch {
            file: spec.name.clone(),
            path: path.to_path_buf(),
            expected: spec.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Reads (gunzipping if needed) and verifies one file.
pub fn read_verified(spec: &FileSpec, path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path, spec.size)?;
    verify(spec, path, &bytes)?;
    Ok(bytes)
}

/// Hashes a whole file from disk, for archives that are checked before unpacking.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| DataError::io("read", path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `bytes` to `dir/name` so readers never see a partial file (temp file, fsync, rename),
/// and the rename survives a crash: the folder is synced too, since the marker, written last,
/// must not outlive a file's rename. Unlike the store's own writes, a data set's folder may be a
/// link (to a shared copy), as its readers allow.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, DataError> {
    let dest = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| DataError::io("create a temporary file in", dir, e))?;
    tmp.write_all(bytes).map_err(|e| DataError::io("write", tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| DataError::io("fsync", tmp.path(), e))?;
    tmp.persist(&dest).map_err(|e| DataError::io("rename into place", &dest, e.error))?;
    crate::cache::fsutil::fsync_dir(dir).map_err(|e| DataError::io("fsync", dir, e))?;
    Ok(dest)
}

/// What the marker file records about a verified cache folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Where the files were obtained from.
    pub source: String,
    /// File name to (SHA-256, size) at store time.
    pub files: BTreeMap<String, MarkerEntry>,
}

/// One file's record in the marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerEntry {
    /// SHA-256 of the stored (decompressed) file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Stores verified files in `dir` (created if needed) and then writes the marker.
///
/// The marker goes last so that a crash mid-way leaves no marker claiming
/// files that were never written.
pub fn store(dir: &Path, files: &[(FileSpec, Vec<u8>)], source: &str) -> Result<Vec<PathBuf>, DataError> {
    fs::create_dir_all(dir).map_err(|e| DataError::io("create directory", dir, e))?;
    let mut paths = Vec::with_capacity(files.len());
    let mut marker = Marker { source: source.to_string(), files: BTreeMap::new() };
    for (spec, bytes) in files {
        paths.push(write_atomic(dir, &spec.name, bytes)?);
        marker.files.insert(spec.name.clone(), MarkerEntry { sha256: spec.sha256.clone(), size: spec.size });
    }
    let json = serde_json::to_vec_pretty(&marker)
        .map_err(|e| DataError::io("serialise the marker for", dir, std::io::Error::other(e)))?;
    write_atomic(dir, MARKER, &json)?;
    // Make the renames themselves durable; failure here only weakens crash safety.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(paths)
}

/// How complete a cache folder is, judged cheaply (no hashing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheState {
    /// Generated on demand; nothing is cached.
    NotApplicable,
    /// No file is present.
    Missing,
    /// Some files are present but not all, or sizes or the marker disagree.
    Incomplete,
    /// All files present with the pinned sizes and a marker recording the pinned hashes.
    Verified,
}

/// Judges `dir` against `files` from sizes and the marker only.
pub fn cache_state(dir: &Path, files: &[FileSpec]) -> CacheState {
    let present: Vec<bool> =
        files.iter().map(|f| fs::metadata(dir.join(&f.name)).map(|m| m.len() == f.size).unwrap_or(false)).collect();
    if !present.iter().any(|&p| p) {
        return CacheState::Missing;
    }
    // A link or FIFO planted in its place is refused, not followed or waited on.
    let marker: Option<Marker> =
        read_limited(&dir.join(MARKER), 1 << 20).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let marker_ok =
        marker.is_some_and(|m| files.iter().all(|f| m.files.get(&f.name).is_some_and(|e| e.sha256 == f.sha256)));
    if present.iter().all(|&p| p) && marker_ok {
        CacheState::Verified
    } else {
        CacheState::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn spec_for(name: &str, bytes: &[u8]) -> FileSpec {
        FileSpec { name: name.into(), sha256: sha256_hex(bytes), size: bytes.len() as u64 }
    }

    #[test]
    fn detects_hash_and_size_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = spec_for("f", b"hello world");
        let path = dir.path().join("f");
        fs::write(&path, b"hello worle").expect("write");
        match read_verified(&spec, &path) {
            Err(DataError::HashMismatch { expected, actual, .. }) => {
                assert_eq!(expected, spec.sha256);
                assert_ne!(actual, expected);
            }
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
        fs::write(&path, b"hello").expect("write");
        assert!(matches!(read_verified(&spec, &path), Err(DataError::SizeMismatch { actual: 5, .. })));
        fs::write(&path, b"hello world").expect("write");
        assert_eq!(read_verified(&spec, &path).expect("good"), b"hello world");
    }

    #[test]
    fn reads_gzip_transparently_and_caps_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = vec![42u8; 5000];
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).expect("gz");
        let path = dir.path().join("f.gz");
        fs::write(&path, enc.finish().expect("gz")).expect("write");
        assert_eq!(read_maybe_gz(&path, 5000).expect("gunzip"), data);
        assert_eq!(read_maybe_gz(&path, 10).expect("capped").len(), 11);
    }

    #[test]
    fn store_writes_marker_and_cache_state_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("ds");
        let a = spec_for("a", b"aaa");
        let b = spec_for("b", b"bbbb");
        let specs = [a.clone(), b.clone()];
        assert_eq!(cache_state(&sub, &specs), CacheState::Missing);
        store(&sub, &[(a, b"aaa".to_vec()), (b, b"bbbb".to_vec())], "test").expect("store");
        assert_eq!(cache_state(&sub, &specs), CacheState::Verified);
        fs::remove_file(sub.join(MARKER)).expect("rm");
        assert_eq!(cache_state(&sub, &specs), CacheState::Incomplete);
        // A FIFO or a link to an endless file in the marker's place is refused at once.
        let fifo = std::process::Command::new("mkfifo").arg(sub.join(MARKER)).status().expect("mkfifo");
        assert!(fifo.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let (sub2, specs2) = (sub.clone(), specs.clone());
        std::thread::spawn(move || tx.send(cache_state(&sub2, &specs2)));
        let state = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a FIFO marker is not waited on");
        assert_eq!(state, CacheState::Incomplete);
        fs::remove_file(sub.join(MARKER)).expect("rm");
        std::os::unix::fs::symlink("/dev/zero", sub.join(MARKER)).expect("link");
        assert_eq!(cache_state(&sub, &specs), CacheState::Incomplete);
    }
}
