//! Which files an experiment name was run from.
//!
//! Everything the cache keeps per experiment (the recipes `status` diffs against, the run log,
//! the `--set` lists `gc` keeps, the report's file name) is filed under `[experiment] name`, not
//! under the file: two files that share a name share all of it, and `gc` of one removes what only
//! the other computes. A copied experiment keeps its name, so a researcher meets this by
//! accident. `records/<experiment>/file.path` holds the canonical paths of the last files runs of
//! that name came from, one a line, the latest last (instance records are `<instance>.json`, so
//! none is this file), and a command on one of them is warned of the others still there.

use std::path::{Path, PathBuf};

use super::fsutil::{ensure_real_dir, read_limited, write_atomic};
use super::records::file_name;
use super::store::Store;

/// Most files remembered per name.
const MOST: usize = 16;
/// Longest record read back.
const MAX_BYTES: u64 = 256 * 1024;

impl Store {
    fn experiment_files_path(&self, experiment: &str) -> PathBuf {
        self.root().join("records").join(file_name(experiment)).join("file.path")
    }

    /// The files runs of `experiment` came from, the latest last (none when unrecorded or
    /// unreadable).
    pub fn experiment_files(&self, experiment: &str) -> Vec<PathBuf> {
        let Ok(bytes) = read_limited(&self.experiment_files_path(experiment), MAX_BYTES) else { return Vec::new() };
        String::from_utf8_lossy(&bytes).lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect()
    }

    /// Records that a run of `experiment` comes from `file` (already canonical), as the latest.
    pub fn remember_experiment_file(&self, experiment: &str, file: &Path) -> std::io::Result<()> {
        let mut files = self.experiment_files(experiment);
        if files.last().is_some_and(|last| last == file) {
            return Ok(());
        }
        files.retain(|f| f != file);
        files.push(file.to_path_buf());
        let kept = &files[files.len().saturating_sub(MOST)..];
        let mut text = String::new();
        for f in kept {
            let f = f.to_str().ok_or_else(|| std::io::Error::other("the path is not UTF-8"))?;
            text.push_str(f);
            text.push('\n');
        }
        let path = self.experiment_files_path(experiment);
        if let Some(dir) = path.parent() {
            ensure_real_dir(dir)?;
        }
        write_atomic(&path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_of_a_name_are_kept_latest_last_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.experiment_files("e").is_empty());
        for f in ["/x/a.toml", "/x/b.toml", "/x/a.toml"] {
            store.remember_experiment_file("e", Path::new(f)).unwrap();
        }
        assert_eq!(store.experiment_files("e"), [PathBuf::from("/x/b.toml"), PathBuf::from("/x/a.toml")]);
        assert!(store.experiment_files("other").is_empty());
        for i in 0..40 {
            store.remember_experiment_file("e", Path::new(&format!("/x/{i}.toml"))).unwrap();
        }
        let files = store.experiment_files("e");
        assert_eq!((files.len(), files.last().cloned()), (MOST, Some(PathBuf::from("/x/39.toml"))));
    }
}
