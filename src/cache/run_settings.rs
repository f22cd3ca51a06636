//! The `--set` lists an experiment's runs used, each kept once.
//!
//! `gc FILE` keeps what FILE computes as it reads now; a run with `--set
//! experiment.replicates=6` computed other keys, and before this record a later `gc FILE`
//! without that `--set` removed hours of finished work. `records/<experiment>/settings.jsonl`
//! holds one JSON array of `PATH=VALUE` strings per line: the name ends in `.jsonl`, so no
//! instance's record (`<instance>.json`) is ever this file. Lines are appended as runs start,
//! each under `O_APPEND` in one write, so runs of one experiment side by side never lose
//! each other's; a line seen twice (two runs raced past the check) is read once.
//!
//! `records/<experiment>/math.jsonl` keeps, the same way, each map of the switches that change a
//! network's bits (`nn::math_switches`) a run used: they key every stage, so a `gc` under other
//! switches than a run's would otherwise see none of its results in use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::fsutil::{ensure_real_dir, read_limited, write_atomic};
use super::records::{append_line, file_name};
use super::store::Store;

/// Largest settings record read: about 10,000 runs with distinct settings of a few fields.
/// A larger one is an error for `gc`, which must not forget what it cannot read.
const MAX_BYTES: u64 = 4 << 20;

impl Store {
    fn settings_path(&self, experiment: &str) -> PathBuf {
        self.root().join("records").join(file_name(experiment)).join("settings.jsonl")
    }

    fn math_path(&self, experiment: &str) -> PathBuf {
        self.root().join("records").join(file_name(experiment)).join("math.jsonl")
    }

    /// The distinct `--set` lists runs of `experiment` used, oldest first; none when nothing
    /// was recorded. An unreadable line (cut by a crash or a full disk) is skipped: it was
    /// appended before its run computed anything, and that run records it again when rerun.
    pub fn run_settings(&self, experiment: &str) -> std::io::Result<Vec<Vec<String>>> {
        distinct_lines(&self.settings_path(experiment))
    }

    /// Records that a run of `experiment` uses `settings` (its `--set` list as written; empty
    /// for the file as it reads, which a `gc --set` would otherwise not keep), unless recorded
    /// already.
    pub fn remember_settings(&self, experiment: &str, settings: &[String]) -> std::io::Result<()> {
        remember_line(&self.settings_path(experiment), &settings.to_vec())
    }

    /// The distinct maps of bit-changing switches runs of `experiment` used, oldest first (read
    /// as [`Store::run_settings`] is).
    pub fn run_math(&self, experiment: &str) -> std::io::Result<Vec<BTreeMap<String, String>>> {
        distinct_lines(&self.math_path(experiment))
    }

    /// Records that a run of `experiment` computes under the switches `math`, unless recorded
    /// already.
    pub fn remember_math(&self, experiment: &str, math: &BTreeMap<String, String>) -> std::io::Result<()> {
        remember_line(&self.math_path(experiment), math)
    }

    /// Replaces the record of `experiment`'s settings by `kept`, in one atomic write (a crash
    /// midway leaves the old record, never none): after a `gc` removed what the others computed
    /// (`--as-given`, or lists the file no longer takes). Called only under the exclusive cache
    /// lock, so no run appends meanwhile.
    pub fn keep_only_settings(&self, experiment: &str, kept: &[Vec<String>]) -> std::io::Result<()> {
        let text: String =
            kept.iter().map(|settings| serde_json::to_string(settings).expect("plain strings") + "\n").collect();
        write_atomic(&self.settings_path(experiment), text.as_bytes())
    }
}

/// The distinct values of a record's lines, oldest first; none when there is no record.
fn distinct_lines<T: DeserializeOwned + Eq + std::hash::Hash + Clone>(path: &Path) -> std::io::Result<Vec<T>> {
    let bytes = match read_limited(path, MAX_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // A set beside the list: the record may hold some 400,000 short lines, which a search
    // of the list per line took minutes to read (and every run reads it).
    let mut seen = Vec::new();
    let mut known = std::collections::HashSet::new();
    for line in bytes.split(|&b| b == b'\n') {
        if let Ok(value) = serde_json::from_slice::<T>(line) {
            if known.insert(value.clone()) {
                seen.push(value);
            }
        }
    }
    Ok(seen)
}

/// Appends `value` to the record at `path` unless it holds it already.
fn remember_line<T: Serialize + DeserializeOwned + Eq + std::hash::Hash + Clone>(
    path: &Path,
    value: &T,
) -> std::io::Result<()> {
    // A record that cannot be read (past its size limit) is not appended to: `gc` refuses
    // it until `--as-given` rewrites it, and each run adding a line would only grow it.
    if distinct_lines::<T>(path)?.contains(value) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        ensure_real_dir(dir)?;
    }
    append_line(path, &serde_json::to_string(value).expect("plain data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn settings_are_kept_once_each_per_experiment_and_survive_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.run_settings("exp").unwrap().is_empty(), "nothing recorded");
        let six = set(&["experiment.replicates=6"]);
        let two = set(&["stages.probe.lr=0.1", "experiment.seed=2"]);
        store.remember_settings("exp", &six).unwrap();
        store.remember_settings("exp", &two).unwrap();
        store.remember_settings("exp", &six).unwrap();
        store.remember_settings("other", &two).unwrap();
        assert_eq!(store.run_settings("exp").unwrap(), [six.clone(), two.clone()]);
        assert_eq!(store.run_settings("other").unwrap(), std::slice::from_ref(&two));
        // A line cut by a full disk costs only itself, and the next append starts a line.
        let path = store.settings_path("exp");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"[\"stages.x");
        std::fs::write(&path, bytes).unwrap();
        let three = set(&["stages.kmeans.k=3"]);
        store.remember_settings("exp", &three).unwrap();
        assert_eq!(store.run_settings("exp").unwrap(), [six.clone(), two.clone(), three]);
        store.keep_only_settings("exp", std::slice::from_ref(&six)).unwrap();
        assert_eq!(store.run_settings("exp").unwrap(), std::slice::from_ref(&six));
        store.keep_only_settings("exp", &[vec![], six.clone()]).unwrap();
        assert_eq!(store.run_settings("exp").unwrap(), [vec![], six.clone()], "the file as it reads, and six");
        // A record too large to read is an error, never read as empty: gc would forget it.
        std::fs::write(store.settings_path("other"), vec![b' '; MAX_BYTES as usize + 1]).unwrap();
        assert!(store.run_settings("other").is_err());
        // ... and not appended to: it would only grow.
        assert!(store.remember_settings("other", &six).is_err());
        assert_eq!(std::fs::metadata(store.settings_path("other")).unwrap().len(), MAX_BYTES + 1);
    }

    /// The largest record readable holds some 400,000 short lines: every one distinct, then
    /// each twice, they are read in order, each once (a search per line took minutes).
    #[test]
    fn a_record_at_its_size_limit_is_read_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = store.settings_path("big");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let lines: Vec<String> = (0..).map(|i| format!("[\"{i:x}\"]\n")).take(400_000).collect();
        let text = lines.concat();
        assert!(text.len() as u64 <= MAX_BYTES);
        std::fs::write(&path, &text).unwrap();
        let read = store.run_settings("big").unwrap();
        assert_eq!(read.len(), lines.len());
        assert_eq!((read[0].clone(), read[399_999].clone()), (set(&["0"]), set(&[&format!("{:x}", 399_999)])));
        let twice: String = lines[..1000].iter().flat_map(|l| [l.as_str(), l.as_str()]).collect();
        std::fs::write(&path, twice).unwrap();
        assert_eq!(store.run_settings("big").unwrap().len(), 1000);
    }
}
