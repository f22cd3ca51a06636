//! What ran under each instance name, and the run log.
//!
//! `records/<experiment>/<instance>.json` keeps the recipe last completed under a name, so that
//! `status` can explain a new key as a field-level diff (`kmeans[k=50]: k 40 -> 50`).
//! `runs.jsonl` gets one line per instance per run: key, outcome, wall time.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::fsutil::{open_append, read_limited, write_atomic};
use super::ids::RecipeKey;
use super::key::Recipe;
use super::store::Store;

/// The last recipe completed under an instance name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRecord {
    /// Its key.
    pub key: RecipeKey,
    /// Its recipe.
    pub recipe: Recipe,
}

/// One line of `runs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLogLine {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// Experiment name.
    pub experiment: String,
    /// Instance name.
    pub instance: String,
    /// Recipe key.
    pub key: Option<RecipeKey>,
    /// `cached`, `ran`, `failed` or `skipped`.
    pub outcome: String,
    /// Wall time of the instance in seconds.
    pub seconds: f64,
    /// Error message, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_=,.[]".contains(c) { c } else { '_' }).collect()
}

impl Store {
    fn record_path(&self, experiment: &str, instance: &str) -> PathBuf {
        self.root().join("records").join(sanitize(experiment)).join(format!("{}.json", sanitize(instance)))
    }

    /// The recipe last completed under `instance` in `experiment`.
    pub fn name_record(&self, experiment: &str, instance: &str) -> Option<NameRecord> {
        let bytes = read_limited(&self.record_path(experiment, instance), 64 << 20).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remembers the recipe completed under `instance`.
    pub fn set_name_record(&self, experiment: &str, instance: &str, record: &NameRecord) -> std::io::Result<()> {
        let path = self.record_path(experiment, instance);
        if let Some(dir) = path.parent() {
            super::fsutil::ensure_real_dir(dir)?;
        }
        if self.name_record(experiment, instance).is_some_and(|r| r.key == record.key) {
            return Ok(());
        }
        write_atomic(&path, &serde_json::to_vec_pretty(record).expect("plain data"))
    }

    /// Appends one line to the run log. A single `write` of a short line under O_APPEND keeps
    /// concurrent writers from interleaving; a link in place of the log is refused, not followed.
    pub fn log_run(&self, line: &RunLogLine) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).expect("plain data");
        text.push('\n');
        let mut f = open_append(&self.root().join("runs.jsonl"))?;
        f.write_all(text.as_bytes())
    }
}
