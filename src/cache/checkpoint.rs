//! Sealed checkpoints: the resumable state of a running stage, bound to its recipe key and to
//! the digest of its own bytes.
//!
//! ```text
//! checkpoints/<recipe key>/
//!   epoch-0003/...   the files of one checkpoint, written into a fresh temporary folder and renamed
//!   latest           JSON seal: the key, the folder's name, and size and blake3 of each file in it
//! ```
//! A checkpoint is resumed from only if its seal names the key of the folder it sits in and every
//! file re-hashes to the seal (with no file added): one edited, truncated or copied in from
//! another key's run is refused and the stage starts over, so a resumed run never continues from
//! bytes its own run did not write.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsutil::{ensure_real_dir, read_limited, write_atomic};
use super::store::{build_manifest, FileEntry};

const SEAL: &str = "latest";
const SEAL_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Seal {
    format: u32,
    key: String,
    folder: String,
    files: Vec<FileEntry>,
}

/// Makes sure a checkpoint folder is a real directory inside the cache (not a planted link).
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    ensure_real_dir(dir)
}

/// A fresh, private folder inside `dir` to write the next checkpoint into.
pub fn scratch(dir: &Path) -> std::io::Result<tempfile::TempDir> {
    prepare(dir)?;
    tempfile::Builder::new().prefix(".partial-").tempdir_in(dir)
}

/// Moves a written checkpoint (`scratch`) to `dir/name`, seals it as the latest, and removes
/// the older ones.
pub fn commit(dir: &Path, scratch: tempfile::TempDir, name: &str) -> std::io::Result<()> {
    let target = dir.join(name);
    if std::fs::symlink_metadata(&target).is_ok() {
        remove_entry(&target)?;
    }
    let kept = scratch.keep();
    if let Err(e) = std::fs::rename(&kept, &target) {
        let _ = std::fs::remove_dir_all(&kept);
        return Err(e);
    }
    let files = build_manifest(&target).map_err(std::io::Error::other)?.files;
    let seal = Seal { format: SEAL_FORMAT, key: key_of(dir), folder: name.to_string(), files };
    // A rename onto a folder fails: anything but a plain file where the seal goes is cleared.
    if std::fs::symlink_metadata(dir.join(SEAL)).is_ok_and(|m| !m.is_file()) {
        remove_entry(&dir.join(SEAL))?;
    }
    write_atomic(&dir.join(SEAL), &serde_json::to_vec_pretty(&seal).expect("plain data"))?;
    for e in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        let n = e.file_name().to_string_lossy().to_string();
        if n != name && n != SEAL {
            let _ = remove_entry(&e.path());
        }
    }
    Ok(())
}

/// Removes a folder with what it holds, or a file or link, whichever stands at `path`: a
/// damaged checkpoint may have either where a folder belongs.
fn remove_entry(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// The folder of the latest sealed checkpoint in `dir`: `Ok(None)` when there is none, `Err`
/// saying why when there is one that must not be resumed from.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>, String> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(None);
    }
    prepare(dir).map_err(|e| e.to_string())?;
    let seal_path = dir.join(SEAL);
    if std::fs::symlink_metadata(&seal_path).is_err() {
        return Ok(None);
    }
    let bytes = read_limited(&seal_path, 16 << 20).map_err(|e| format!("its seal is unreadable: {e}"))?;
    let seal: Seal = serde_json::from_slice(&bytes).map_err(|e| format!("its seal is damaged: {e}"))?;
    if seal.format != SEAL_FORMAT || seal.key != key_of(dir) {
        return Err(format!("it belongs to another recipe ({}), not to this folder's", seal.key));
    }
    if seal.folder.is_empty() || seal.folder.contains('/') || seal.folder.starts_with('.') {
        return Err(format!("its seal names a bad folder `{}`", seal.folder));
    }
    let folder = dir.join(&seal.folder);
    if std::fs::symlink_metadata(&folder).map_or(true, |m| !m.is_dir()) {
        return Err(format!("{} is not a plain folder", seal.folder));
    }
    let found = build_manifest(&folder).map_err(|e| e.to_string())?.files;
    if found != seal.files {
        let changed = found
            .iter()
            .find(|f| !seal.files.contains(f))
            .or_else(|| seal.files.iter().find(|f| !found.contains(f)))
            .map_or("a file".to_string(), |f| f.path.clone());
        return Err(format!("{changed} does not match the digest sealed when it was written"));
    }
    Ok(Some(folder))
}

/// The folder the seal in `dir` names, if it is sealed for `dir`'s key: a quick look for
/// `status` (no file is re-hashed; [`latest`] does that before anything is resumed).
pub fn sealed_folder(dir: &Path) -> Option<String> {
    let bytes = read_limited(&dir.join(SEAL), 16 << 20).ok()?;
    let seal: Seal = serde_json::from_slice(&bytes).ok()?;
    (seal.format == SEAL_FORMAT && seal.key == key_of(dir)).then_some(seal.folder)
}

/// The recipe key a checkpoint folder belongs to: its name (`checkpoints/<key hex>`).
fn key_of(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        let s = scratch(dir).unwrap();
        std::fs::write(s.path().join("state.bin"), bytes).unwrap();
        commit(dir, s, name).unwrap();
    }

    /// Found by a review: a file where the next checkpoint's folder goes made every rerun fail
    /// at that epoch ("Not a directory"), instead of being replaced like a damaged folder.
    #[test]
    fn a_file_or_link_where_a_checkpoint_goes_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ab12");
        write(&dir, "epoch-0003", b"three");
        std::fs::write(dir.join("epoch-0004"), b"x").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("epoch-0005")).unwrap();
        std::fs::write(dir.join("stray"), b"x").unwrap();
        // And a folder where the seal goes (a rename onto it fails).
        std::fs::remove_file(dir.join(SEAL)).unwrap();
        std::fs::create_dir_all(dir.join(SEAL).join("x")).unwrap();
        write(&dir, "epoch-0004", b"four");
        assert_eq!(latest(&dir).unwrap(), Some(dir.join("epoch-0004")));
        write(&dir, "epoch-0005", b"five");
        assert_eq!(latest(&dir).unwrap(), Some(dir.join("epoch-0005")));
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left.len(), 2, "the latest and its seal only: {left:?}");
    }

    #[test]
    fn a_sealed_checkpoint_is_found_and_an_edited_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ab12");
        assert_eq!(latest(&dir).unwrap(), None);
        write(&dir, "epoch-0001", b"one");
        write(&dir, "epoch-0002", b"two");
        assert_eq!(latest(&dir).unwrap(), Some(dir.join("epoch-0002")));
        assert!(!dir.join("epoch-0001").exists(), "older checkpoints are removed");
        std::fs::write(dir.join("epoch-0002/state.bin"), b"tw0").unwrap();
        assert!(latest(&dir).unwrap_err().contains("state.bin"));
        std::fs::write(dir.join("epoch-0002/state.bin"), b"two").unwrap();
        std::fs::write(dir.join("epoch-0002/extra"), b"").unwrap();
        assert!(latest(&dir).is_err(), "a planted file is refused");
    }

    #[test]
    fn a_checkpoint_copied_from_another_key_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("aaaa");
        write(&a, "epoch-0001", b"state");
        let b = root.path().join("bbbb");
        std::fs::create_dir(&b).unwrap();
        std::fs::create_dir(b.join("epoch-0001")).unwrap();
        std::fs::copy(a.join("epoch-0001/state.bin"), b.join("epoch-0001/state.bin")).unwrap();
        std::fs::copy(a.join("latest"), b.join("latest")).unwrap();
        assert!(latest(&b).unwrap_err().contains("another recipe"));
    }
}
