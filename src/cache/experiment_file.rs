//! Which file an experiment name was last run from.
//!
//! Everything the cache keeps per experiment (the recipes `status` diffs against, the run log,
//! the `--set` lists `gc` keeps, the report's file name) is filed under `[experiment] name`, not
//! under the file: two files that share a name share all of it, and `gc` of one removes what only
//! the other computes. A copied experiment keeps its name, so a researcher meets this by
//! accident. `records/<experiment>/file.path` holds the canonical path of the file the last run
//! of that name came from (instance records are `<instance>.json`, so none is this file), and a
//! command on another file of that name is warned.

use std::path::{Path, PathBuf};

use super::fsutil::{ensure_real_dir, read_limited, write_atomic};
use super::records::file_name;
use super::store::Store;

/// Longest path read back.
const MAX_BYTES: u64 = 64 * 1024;

impl Store {
    fn experiment_file_path(&self, experiment: &str) -> PathBuf {
        self.root().join("records").join(file_name(experiment)).join("file.path")
    }

    /// The file the last run of `experiment` came from, if recorded and readable.
    pub fn experiment_file(&self, experiment: &str) -> Option<PathBuf> {
        let bytes = read_limited(&self.experiment_file_path(experiment), MAX_BYTES).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        Some(PathBuf::from(text))
    }

    /// Records that a run of `experiment` comes from `file` (already canonical).
    pub fn remember_experiment_file(&self, experiment: &str, file: &Path) -> std::io::Result<()> {
        let path = self.experiment_file_path(experiment);
        if let Some(dir) = path.parent() {
            ensure_real_dir(dir)?;
        }
        let text = file.to_str().ok_or_else(|| std::io::Error::other("the path is not UTF-8"))?;
        write_atomic(&path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_file_of_a_name_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.experiment_file("e"), None);
        store.remember_experiment_file("e", Path::new("/x/a.toml")).unwrap();
        store.remember_experiment_file("e", Path::new("/x/b.toml")).unwrap();
        assert_eq!(store.experiment_file("e"), Some(PathBuf::from("/x/b.toml")));
        assert_eq!(store.experiment_file("other"), None);
    }
}
