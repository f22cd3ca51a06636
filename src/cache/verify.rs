//! Checking published objects against what their key promises: a quick check (manifest, file
//! list, sizes) for `status`, a full one (every file re-hashed, digests recomputed, the stored
//! manifest compared with the files) before anything is reused, read, kept or shown.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use super::ids::Digest;
use super::manifest::{
    build_manifest, collect_files, object_digest, outputs_of, prune_empty_folders, read_manifest, relative,
};
use super::manifest::{FileEntry, Manifest};
use super::store::{KeyRecord, Store};
use super::CacheError;

/// How thoroughly an object is checked before it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The manifest matches the key and every listed file is present with its size, and no
    /// other file is: a few `stat`s per file, what `status` does by default.
    Quick,
    /// Every file re-hashed, the output digests recomputed from the bytes and the stored
    /// manifest required to list exactly those files: what happens before anything is reused,
    /// read as an input, printed by `show` or `report`, or kept on publish.
    Full,
}

/// What a check found wrong with a published object; each says which object and, where it can,
/// which file.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// The object's path holds something other than a plain folder.
    #[error("object {0} is not a plain folder")]
    NotAFolder(String),
    /// There is nothing at the object's path.
    #[error("object {0} is missing")]
    Missing(String),
    /// Its `manifest.json` is absent or not the bytes cfrun writes.
    #[error("object {0} has no readable manifest")]
    NoManifest(String),
    /// Its files could not be listed, read or hashed (links and odd files included).
    #[error(transparent)]
    Unlisted(#[from] CacheError),
    /// A file's size could not be read for the quick check.
    #[error("{path}: {source}")]
    Unsized {
        /// The file, relative to the object.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The files are the key's, but the stored manifest lists them otherwise.
    #[error("the manifest of object {0} does not list its files as they are (the files themselves are intact)")]
    StaleManifest(String),
    /// A file the manifest lists is not on disk.
    #[error("{file} is missing from object {object}")]
    FileMissing {
        /// The file, relative to the object.
        file: String,
        /// The object's short digest.
        object: String,
    },
    /// A file on disk that the manifest does not list.
    #[error("object {object} holds an unexpected file {file}")]
    Unexpected {
        /// The file, relative to the object.
        file: String,
        /// The object's short digest.
        object: String,
    },
    /// A file whose size or hash differs from the manifest's.
    #[error("{file} in object {object} has changed (expected {want_size} bytes, blake3 {want_hash}; found {have_size} bytes, {have_hash})")]
    Changed {
        /// The file, relative to the object.
        file: String,
        /// The object's short digest.
        object: String,
        /// Its size in the manifest.
        want_size: u64,
        /// Its short hash in the manifest.
        want_hash: String,
        /// Its size on disk.
        have_size: u64,
        /// `blake3 <short hash>`, or `not hashed` after a quick check.
        have_hash: String,
    },
    /// The files match the manifest, but not the digest the key promises.
    #[error("the files of object {0} do not hash to its digest (its manifest was altered)")]
    Digest(String),
}

/// Why a published object cannot be used.
#[derive(Debug)]
pub enum Untrusted {
    /// Its bytes are not what its key promises: evict it and rebuild.
    Damaged(Damage),
    /// This process may not read it: nothing to rebuild, its permissions must change.
    Unreadable(CacheError),
}

impl Store {
    /// Re-hashes an object's files and recomputes its digests. `Err` names the first mismatch.
    pub fn verify(&self, record: &KeyRecord) -> Result<(), Damage> {
        self.check(record, Check::Full)
    }

    /// Checks a published record's object at the given depth. `Err` names the first mismatch.
    pub fn check(&self, record: &KeyRecord, depth: Check) -> Result<(), Damage> {
        self.check_object(&record.object, &record.outputs, depth)
    }

    /// Checks the object `object` against the output digests a key promises for it.
    pub(super) fn check_object(
        &self,
        object: &Digest,
        outputs: &BTreeMap<String, Digest>,
        depth: Check,
    ) -> Result<(), Damage> {
        let dir = self.object_dir(object);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Damage::NotAFolder(object.short())),
            Err(_) => return Err(Damage::Missing(object.short())),
        }
        let stored = read_manifest(&dir);
        let on_disk = match depth {
            Check::Full => build_manifest(&dir)?,
            Check::Quick => {
                let stored = stored.as_ref().ok_or_else(|| Damage::NoManifest(object.short()))?;
                quick_listing(&dir, stored)?
            }
        };
        let files_match_the_key = object_digest(&on_disk) == *object && on_disk.outputs == *outputs;
        // Readers list an object's files from its stored manifest (the report files a run
        // prints, a `command` stage's input copies), so a full check holds it to the disk too.
        let manifest_matches_the_files = depth == Check::Quick || stored.as_ref() == Some(&on_disk);
        match (files_match_the_key, manifest_matches_the_files) {
            (true, true) => {
                if depth == Check::Full {
                    remove_empty_folders(&dir, object);
                }
                Ok(())
            }
            (true, false) if stored.is_some() => Err(Damage::StaleManifest(object.short())),
            _ => Err(describe_difference(object, stored.as_ref(), &on_disk)),
        }
    }

    /// [`Store::check`], telling an object this process may not read from a damaged one: a
    /// folder or file whose permissions keep cfrun out is not damage, since its bytes may be
    /// intact and rebuilding cannot replace what cannot be read either.
    pub fn trust(&self, record: &KeyRecord, depth: Check) -> Result<(), Untrusted> {
        self.check(record, depth).map_err(|why| match self.unreadable(&record.object) {
            Some(denied) => Untrusted::Unreadable(denied),
            None => Untrusted::Damaged(why),
        })
    }

    /// The first part of an object that this process is not allowed to read, with the error
    /// opening it gave.
    fn unreadable(&self, object: &Digest) -> Option<CacheError> {
        fn walk(path: &Path, depth: usize) -> Option<(std::path::PathBuf, std::io::Error)> {
            let denied = |e: std::io::Error| (e.kind() == std::io::ErrorKind::PermissionDenied).then_some(e);
            let meta = fs::symlink_metadata(path).ok()?;
            if meta.is_file() {
                return fs::File::open(path).err().and_then(denied).map(|e| (path.to_path_buf(), e));
            }
            // Outputs nest at most 32 folders (`ops::command`); a deeper tree is damage, which the
            // check itself reports.
            if !meta.is_dir() || depth > 40 {
                return None;
            }
            match fs::read_dir(path) {
                Err(e) => denied(e).map(|e| (path.to_path_buf(), e)),
                Ok(entries) => entries.flatten().find_map(|entry| walk(&entry.path(), depth + 1)),
            }
        }
        walk(&self.object_dir(object), 0).map(|(path, source)| CacheError::Io { path, source })
    }

    /// Fully checks the objects a computation is about to read; the first damaged one is
    /// evicted (so the next run rebuilds it) and reported. One this process may not read is
    /// reported as such and left in place.
    pub fn verify_inputs<'a>(&self, records: impl IntoIterator<Item = &'a KeyRecord>) -> Result<(), CacheError> {
        let mut seen = BTreeSet::new();
        for record in records {
            if !seen.insert(record.object) {
                continue;
            }
            if let Err(untrusted) = self.trust(record, Check::Full) {
                let detail = match untrusted {
                    Untrusted::Unreadable(denied) => return Err(denied),
                    Untrusted::Damaged(detail) => detail,
                };
                if !self.evict(record) {
                    // Repaired by another process since the check above: intact now.
                    continue;
                }
                let instance = record.provenance["instance"].as_str().unwrap_or("an upstream instance").to_string();
                return Err(CacheError::Damaged { instance, detail: Box::new(detail) });
            }
        }
        Ok(())
    }
}

/// The manifest as the folder's listing and sizes suggest it: the stored hashes for files whose
/// path and size match, a marker hash for anything else (so the digests then differ).
fn quick_listing(dir: &Path, stored: &Manifest) -> Result<Manifest, Damage> {
    let mut paths = Vec::new();
    collect_files(dir, &mut paths)?;
    let by_path: BTreeMap<&str, &FileEntry> = stored.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut files = Vec::new();
    for path in paths {
        let rel = relative(dir, &path);
        if rel == "manifest.json" {
            continue;
        }
        let size = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(source) => return Err(Damage::Unsized { path: rel, source }),
        };
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

/// Removes the empty folders of an intact object: publishing leaves none (earlier versions did,
/// from a stage that made one), and readers list an object's files from its manifest, so they are
/// not damage to rebuild, only a difference between two copies of one object that nothing would
/// show. Where they cannot go (a read-only cache), they stay, harmless.
fn remove_empty_folders(dir: &Path, object: &Digest) {
    if let Ok(removed @ 1..) = prune_empty_folders(dir) {
        tracing::warn!("removed {removed} empty folder(s) from object {} (no digest covers them)", object.short());
    }
}

/// The first file that differs between the stored manifest and the disk.
fn describe_difference(object: &Digest, stored: Option<&Manifest>, on_disk: &Manifest) -> Damage {
    let short = object.short();
    let Some(stored) = stored else { return Damage::NoManifest(short) };
    let want: BTreeMap<&str, &FileEntry> = stored.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let have: BTreeMap<&str, &FileEntry> = on_disk.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let names: BTreeSet<&str> = want.keys().chain(have.keys()).copied().collect();
    for name in names {
        let file = name.to_string();
        match (want.get(name), have.get(name)) {
            (Some(_), None) => return Damage::FileMissing { file, object: short },
            (None, Some(_)) => return Damage::Unexpected { file, object: short },
            (Some(w), Some(h)) if w.size != h.size || w.hash != h.hash => {
                let have_hash = if h.hash == Digest([0; 32]) {
                    "not hashed".to_string()
                } else {
                    format!("blake3 {}", h.hash.short())
                };
                return Damage::Changed {
                    file,
                    object: short,
                    want_size: w.size,
                    want_hash: w.hash.short(),
                    have_size: h.size,
                    have_hash,
                };
            }
            _ => {}
        }
    }
    Damage::Digest(short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::tests::publish;

    #[test]
    fn a_damaged_input_is_refused_and_evicted() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"good bytes", 0);
        store.verify_inputs([&rec]).unwrap();
        fs::write(store.output_dir(&rec.object, "out").join("data.bin"), b"evil bytes").unwrap();
        assert!(store.check(&rec, Check::Quick).is_ok(), "same size: only a full check sees it");
        let err = store.verify_inputs([&rec]).unwrap_err().to_string();
        assert!(err.contains("input demo is damaged") && err.contains("data.bin"), "{err}");
        assert!(store.lookup(&rec.key).is_none(), "the damaged result is forgotten");
        assert_eq!(store.evicted(&rec.key).map(|r| r.outputs), Some(rec.outputs.clone()), "kept aside for gc");
        assert!(!store.object_dir(&rec.object).exists());
        assert_eq!(store.all_evicted(), vec![rec.key]);
        // Rebuilt: published again, and no longer evicted.
        assert_eq!(publish(&store, b"good bytes", 0).object, rec.object);
        assert!(store.lookup(&rec.key).is_some() && store.evicted(&rec.key).is_none());
    }

    /// Another process may put a damaged object's bytes back between a check and the eviction
    /// that follows it: the eviction checks again and keeps them.
    #[test]
    fn an_object_repaired_meanwhile_is_not_evicted() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"good bytes", 0);
        assert!(!store.evict(&rec));
        assert!(store.lookup(&rec.key).is_some() && store.evicted(&rec.key).is_none());
        store.verify_inputs([&rec]).unwrap();
    }

    /// An eviction waits while another holds the object's lock (placing a copy): it then checks
    /// the copy that one left, keeps it when intact, and the lock's file is gone after.
    #[test]
    fn an_eviction_waits_for_a_placement_and_keeps_what_it_placed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"good bytes", 0);
        let file = store.output_dir(&rec.object, "out").join("data.bin");
        fs::write(&file, b"evil bytes").unwrap();
        let placing = store.lock_object(&rec.object).unwrap().unwrap();
        std::thread::scope(|s| {
            let evictor = s.spawn(|| store.evict(&rec));
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!evictor.is_finished(), "the eviction waits for the lock");
            fs::write(&file, b"good bytes").unwrap();
            drop(placing);
            assert!(!evictor.join().unwrap(), "the copy placed meanwhile is kept");
        });
        store.verify(&rec).unwrap();
        assert!(store.lookup(&rec.key).is_some());
        assert_eq!(fs::read_dir(root.path().join("locks")).unwrap().count(), 0, "no lock file is left");
    }

    /// Placing takes the object's lock too: a publish of an object another holds waits for it.
    #[test]
    fn a_placement_waits_for_the_objects_lock() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"good bytes", 0);
        let held = store.lock_object(&rec.object).unwrap().unwrap();
        std::thread::scope(|s| {
            let placer = s.spawn(|| publish(&store, b"good bytes", 1).object);
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!placer.is_finished(), "the placement waits for the lock");
            drop(held);
            assert_eq!(placer.join().unwrap(), rec.object);
        });
    }

    /// An eviction through a stale copy of a record leaves the key's fresh record alone: the key
    /// was published again since (another object), and only the damaged object goes.
    #[test]
    fn an_eviction_through_a_stale_record_keeps_the_fresh_one() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let stale = publish(&store, b"first bytes", 0);
        let fresh = publish(&store, b"other bytes", 0);
        assert_eq!(stale.key, fresh.key);
        assert_ne!(stale.object, fresh.object);
        fs::write(store.output_dir(&stale.object, "out").join("data.bin"), b"evil bytes!").unwrap();
        assert!(store.evict(&stale));
        assert!(!store.object_dir(&stale.object).exists(), "the damaged object goes");
        assert_eq!(store.lookup(&fresh.key).map(|r| r.object), Some(fresh.object), "the fresh record stays");
        assert!(store.evicted(&fresh.key).is_none());
    }

    /// Rewrites the stored manifest of `rec`'s object through `edit`, in the form cfrun writes,
    /// so that only the edit can be what a check finds.
    fn edit_manifest(store: &Store, rec: &KeyRecord, edit: impl FnOnce(&mut Manifest)) {
        let path = store.object_dir(&rec.object).join("manifest.json");
        let mut manifest: Manifest = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut manifest);
        fs::write(&path, crate::cache::manifest::encode(&manifest)).unwrap();
    }

    #[test]
    fn a_manifest_that_no_longer_lists_the_files_fails_the_full_check() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"bytes", 0);
        // Rewritten as written: intact. With other white space, or a hex digit in upper case:
        // the same manifest once parsed, but not the bytes cfrun wrote, so damage all the same.
        edit_manifest(&store, &rec, |_| {});
        store.verify(&rec).unwrap();
        let path = store.object_dir(&rec.object).join("manifest.json");
        let written = fs::read(&path).unwrap();
        let compact: serde_json::Value = serde_json::from_slice(&written).unwrap();
        fs::write(&path, serde_json::to_vec(&compact).unwrap()).unwrap();
        assert!(store.verify(&rec).unwrap_err().to_string().contains("no readable manifest"));
        fs::write(&path, &written).unwrap();
        store.verify(&rec).unwrap();
        let cased = publish(&store, b"case", 2);
        let path = store.object_dir(&cased.object).join("manifest.json");
        let text = fs::read_to_string(&path).unwrap();
        let at = text.find("blake3:").unwrap() + "blake3:".len();
        let digit = text[at..].find(|c: char| c.is_ascii_lowercase()).unwrap() + at;
        let upper = format!("{}{}{}", &text[..digit], text[digit..=digit].to_uppercase(), &text[digit + 1..]);
        fs::write(&path, upper).unwrap();
        assert!(store.verify(&cased).unwrap_err().to_string().contains("no readable manifest"));
        // A file dropped from the list: readers would miss it.
        edit_manifest(&store, &rec, |m| m.files.clear());
        let why = store.verify(&rec).unwrap_err().to_string();
        assert!(why.contains("does not list its files") && why.contains("intact"), "{why}");
        // A hash flipped, the file untouched.
        let rec = publish(&store, b"other bytes", 1);
        edit_manifest(&store, &rec, |m| m.files[0].hash = Digest([0; 32]));
        assert!(store.verify(&rec).unwrap_err().to_string().contains("does not list its files"));
        // No manifest at all.
        fs::remove_file(store.object_dir(&rec.object).join("manifest.json")).unwrap();
        assert!(store.verify(&rec).unwrap_err().to_string().contains("no readable manifest"));
    }

    #[test]
    fn a_manifest_path_that_leaves_its_output_is_damage_and_lists_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let rec = publish(&store, b"bytes", 0);
        assert_eq!(store.output_files(&rec, "out").len(), 1);
        for planted in ["out/../../../elsewhere.txt", "/etc/passwd", "out//data.bin", "out/./data.bin", "data.bin"] {
            edit_manifest(&store, &rec, |m| m.files[0].path = planted.to_string());
            assert!(read_manifest(&store.object_dir(&rec.object)).is_none(), "{planted}");
            assert!(store.output_files(&rec, "out").is_empty(), "{planted}");
            assert!(store.verify(&rec).is_err(), "{planted}");
        }
    }

    /// Publishing leaves no empty folder in an object (one staged beside the files, and one
    /// holding only empty folders, are gone and the digest is the one without them). One found in
    /// a published object (an earlier version's, or planted) is no damage: the quick check lets
    /// it be, the full check removes it and keeps the result.
    #[test]
    fn an_empty_folder_is_never_published_and_one_found_later_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let plain = publish(&store, b"bytes", 0);
        let staged = store.staging_dir().unwrap();
        fs::create_dir_all(staged.path().join("out/nested/deeper")).unwrap();
        fs::create_dir_all(staged.path().join("unwritten")).unwrap();
        fs::write(staged.path().join("out/data.bin"), b"bytes").unwrap();
        let recipe = crate::cache::store::tests::demo_recipe(1);
        let rec = store.publish(staged, recipe.key(), &recipe, serde_json::json!({"instance": "demo"})).unwrap();
        assert_eq!(rec.object, plain.object, "the empty folders are in no digest");
        let dir = store.object_dir(&rec.object);
        assert!(!dir.join("out/nested").exists() && !dir.join("unwritten").exists());
        store.verify(&rec).unwrap();

        fs::create_dir_all(dir.join("out/planted/inner")).unwrap();
        fs::create_dir_all(dir.join("other")).unwrap();
        store.check(&rec, Check::Quick).unwrap();
        assert!(dir.join("out/planted/inner").exists(), "a quick check changes nothing");
        store.verify_inputs([&rec]).unwrap();
        assert!(!dir.join("out/planted").exists() && !dir.join("other").exists(), "removed by the full check");
        assert!(dir.join("out/data.bin").exists() && store.lookup(&rec.key).is_some(), "the result is kept");
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
        assert!(store.verify(&rec).unwrap_err().to_string().contains("symbolic link"));
    }
}
