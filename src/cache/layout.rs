//! What a cache folder holds, and how to tell it from any other folder: `--cache ~` or
//! `--cache .` must not turn a home or a repository into a cache, scattering `objects/`,
//! `keys/` and lock files among the user's own.

use std::fs;
use std::path::Path;

use super::fsutil::read_limited;

/// The folders [`super::Store::open`] creates in every cache.
pub const SUBDIRS: &[&str] = &["objects", "keys", "records", "locks", "checkpoints", "tmp", "data"];

/// Everything else a cache's root may hold: its lock files, the run log, the tag, and the
/// folder of Slurm job specs and logs.
const OTHER_ENTRIES: &[&str] = &["cache.lock", "gc.lock", "runs.jsonl", "CACHEDIR.TAG", "jobs"];

/// The `CACHEDIR.TAG` a cache carries (<https://bford.info/cachedir/>): backup tools skip the
/// folder, and cfrun knows the folder for its own by the second line.
pub const TAG_TEXT: &str =
    "Signature: 8a477f597d28d172789f06886806bc55\n# cfrun cache: see `cfrun gc` to reclaim space.\n";

/// Up to `limit` entries of `root` that are not a cache's, which show it is some other folder.
/// None when `root` is missing or empty, carries cfrun's `CACHEDIR.TAG`, or holds nothing but
/// a cache's own entries (a cache cut short before its tag was written). Reading stops at
/// `limit`, so a large folder is not listed to its end.
pub fn foreign_entries(root: &Path, limit: usize) -> std::io::Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if read_limited(&root.join("CACHEDIR.TAG"), 4096).is_ok_and(|t| String::from_utf8_lossy(&t).contains("cfrun")) {
        return Ok(Vec::new());
    }
    let mut foreign = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // `.tmp…`: what an interrupted atomic write leaves (tempfile's names).
        let own =
            SUBDIRS.contains(&name.as_str()) || OTHER_ENTRIES.contains(&name.as_str()) || name.starts_with(".tmp");
        if !own {
            foreign.push(name);
            if foreign.len() >= limit {
                break;
            }
        }
    }
    foreign.sort();
    Ok(foreign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_a_cache_when_empty_tagged_or_holding_only_a_caches_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "missing");
        fs::create_dir(&root).unwrap();
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "empty");
        fs::create_dir(root.join("objects")).unwrap();
        fs::write(root.join("cache.lock"), b"").unwrap();
        fs::write(root.join(".tmpAbC123"), b"").unwrap();
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "cut short before its tag");
        fs::write(root.join("notes.txt"), b"mine").unwrap();
        fs::create_dir(root.join("src")).unwrap();
        assert_eq!(foreign_entries(&root, 3).unwrap(), ["notes.txt", "src"]);
        assert_eq!(foreign_entries(&root, 1).unwrap().len(), 1, "stops at the limit");
        // Another tool's tag (cargo writes the same signature) does not make it cfrun's.
        fs::write(root.join("CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n# cargo\n").unwrap();
        assert_eq!(foreign_entries(&root, 3).unwrap(), ["notes.txt", "src"]);
        fs::write(root.join("CACHEDIR.TAG"), TAG_TEXT).unwrap();
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "tagged by cfrun: whatever else it holds");
    }
}
