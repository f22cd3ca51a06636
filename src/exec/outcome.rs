//! How an instance ended in a run: what executors report and the scheduler tallies.

use serde::Serialize;

/// How an instance ended in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Reused from the cache.
    Cached,
    /// Computed now.
    Ran,
    /// Its op failed.
    Failed,
    /// Not run because an input failed.
    Skipped,
}
