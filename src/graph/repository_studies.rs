//! Every study and fixture of the repository, planned: what tests hold the whole front end to.

use std::path::{Path, PathBuf};

use super::Plan;
use crate::config::{ConfigError, Experiment, SourceFile};

/// Each experiment file under `experiments/` and `tests/fixtures/` with its plan (or why it has
/// none). Files with a `command` stage are left out: their environment probe runs while the plan
/// is built (python_tiny's needs numpy), so the CLI tests that set up that environment plan them.
pub(super) fn planned() -> Vec<(PathBuf, Result<Plan, ConfigError>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["experiments", "tests/fixtures"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("a folder of experiments") {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.extension().is_none_or(|e| e != "toml") || text.contains("op = \"command\"") {
                continue;
            }
            let file = SourceFile::read(&path).expect("readable");
            out.push((path, Experiment::parse(file, &[]).and_then(Plan::build)));
        }
    }
    out
}
