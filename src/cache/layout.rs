//! What a cache folder holds, and how to tell it from any other folder: `--cache ~` or
//! `--cache .` must not turn a home or a repository into a cache, scattering `objects/`,
//! `keys/` and lock files among the user's own.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::fsutil::read_limited;

/// The folders [`super::Store::open`] creates in every cache.
pub const SUBDIRS: &[&str] = &["objects", "keys", "evicted", "records", "locks", "checkpoints", "tmp", "data"];

/// Everything else a cache's root may hold: its lock files, the run log, the tag, and the
/// folder of Slurm job specs and logs.
const OTHER_ENTRIES: &[&str] = &["cache.lock", "gc.lock", "runs.jsonl", "CACHEDIR.TAG", "jobs"];

/// The `CACHEDIR.TAG` a cache carries (<https://bford.info/cachedir/>): backup tools skip the
/// folder, and cfrun knows the folder for its own by the second line.
pub const TAG_TEXT: &str =
    "Signature: 8a477f597d28d172789f06886806bc55\n# cfrun cache: see `cfrun gc` to reclaim space.\n";

/// Up to `limit` entries of `root` that are not a cache's, which show it is some other folder.
/// None when `root` is missing, empty or cannot be listed (the store then decides), carries
/// cfrun's `CACHEDIR.TAG`, holds only `data/` (data sets copied in before a first run), or holds
/// only a cache's own entries with its lock file (a cache cut short before its tag was written).
/// A project's own `data/`, `tmp/` and `checkpoints/` without the lock are not a cache: `gc`
/// would empty them. Reading stops past `limit`, so a large folder is not listed to its end.
pub fn foreign_entries(root: &Path, limit: usize) -> std::io::Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if read_limited(&root.join("CACHEDIR.TAG"), 4096).is_ok_and(|t| String::from_utf8_lossy(&t).contains("cfrun")) {
        return Ok(Vec::new());
    }
    let (mut foreign, mut own) = (Vec::new(), Vec::new());
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // `.tmp…`: what an interrupted atomic write leaves (tempfile's names).
        if SUBDIRS.contains(&name.as_str()) || OTHER_ENTRIES.contains(&name.as_str()) || name.starts_with(".tmp") {
            own.push(name);
        } else {
            foreign.push(name);
            if foreign.len() > limit {
                break;
            }
        }
    }
    let locked = own.iter().any(|n| n == "cache.lock" || n == "gc.lock");
    if foreign.is_empty() && !locked && own.iter().any(|n| n != "data") {
        // Looks like a cache's folders, but no cfrun process ever locked it.
        foreign = own;
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
        fs::create_dir(root.join("data")).unwrap();
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "data sets copied in before a first run");
        fs::create_dir(root.join("tmp")).unwrap();
        fs::create_dir(root.join("checkpoints")).unwrap();
        assert_eq!(
            foreign_entries(&root, 3).unwrap(),
            ["checkpoints", "data", "tmp"],
            "a project's folders, never locked"
        );
        fs::write(root.join("cache.lock"), b"").unwrap();
        fs::write(root.join(".tmpAbC123"), b"").unwrap();
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "cut short before its tag");
        fs::write(root.join("notes.txt"), b"mine").unwrap();
        fs::create_dir(root.join("src")).unwrap();
        assert_eq!(foreign_entries(&root, 3).unwrap(), ["notes.txt", "src"]);
        assert_eq!(foreign_entries(&root, 1).unwrap().len(), 2, "one past the limit, to say there are more");
        // Another tool's tag (cargo writes the same signature) does not make it cfrun's.
        fs::write(root.join("CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n# cargo\n").unwrap();
        assert_eq!(foreign_entries(&root, 3).unwrap(), ["notes.txt", "src"]);
        fs::write(root.join("CACHEDIR.TAG"), TAG_TEXT).unwrap();
        assert!(foreign_entries(&root, 3).unwrap().is_empty(), "tagged by cfrun: whatever else it holds");
    }
}
