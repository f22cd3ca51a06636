//! The seam between the scheduler and where jobs run. The scheduler decides *what* is ready and
//! hands it over; an executor decides *where* it runs (threads of this process, Slurm jobs) and
//! reports each job back exactly once.

use std::path::PathBuf;

use super::compute::ComputeEnv;
use super::job::Job;
use super::outcome::Outcome;
use crate::cache::fs_check::NotShareable;
use crate::cache::KeyRecord;
use crate::config::ExecutorSettings;

/// Why an executor could not start; nothing was submitted or run.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--executor slurm` on a machine where `sbatch` does not answer.
    #[error(
        "--executor slurm: `sbatch` is not on PATH (is this a Slurm login node? \
         scripts/slurm-local.sh starts a one-node cluster)"
    )]
    NoSbatch,
    /// A partition the cluster does not have.
    #[error(
        "--executor slurm: the cluster has no partition {} (executor.partition or --partition; its partitions: {})",
        .unknown.join(", "), if .known.is_empty() { "not listed".to_string() } else { .known.join(", ") }
    )]
    UnknownPartition {
        /// The names the controller did not find.
        unknown: Vec<String>,
        /// The names it has.
        known: Vec<String>,
    },
    /// A cluster run on a cache whose locks would not hold across nodes.
    #[error(transparent)]
    NotShareable(#[from] NotShareable),
    /// A folder the executor keeps its files in could not be found or made.
    #[error("{}: {source}", .path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path of this binary, which jobs and children run, is unknown.
    #[error("cannot find the cfrun binary: {0}")]
    OwnBinary(std::io::Error),
}

impl StartError {
    /// Whether the run was refused for what the user asked (exit 2), not for a failure while
    /// starting (exit 1).
    pub fn is_refusal(&self) -> bool {
        matches!(self, StartError::NoSbatch | StartError::NotShareable(_) | StartError::UnknownPartition { .. })
    }

    /// Turns an I/O error on the folder `path` into a `Folder` error.
    pub fn folder(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
        move |source| StartError::Folder { path: path.to_path_buf(), source }
    }
}

/// A job that ended, one way or the other.
#[derive(Debug)]
pub struct Finished {
    /// The job's plan index.
    pub index: usize,
    /// Its published record and whether it was computed now or found, or why it failed.
    pub result: Result<(KeyRecord, Outcome), String>,
    /// Seconds from hand-over to the end.
    pub seconds: f64,
}

/// Runs jobs somewhere.
pub trait Executor {
    /// Takes a job; it may wait in the executor's own queue until a slot is free.
    fn submit(&mut self, job: Job);
    /// Whether a job submitted now would start at once. The scheduler hands over ready jobs
    /// only while this holds, so the rest wait in its queue, longest chain first, instead of in
    /// the executor's in the order they became ready. A cluster executor, which batches what
    /// it is given into arrays, takes everything.
    fn has_room(&self) -> bool {
        true
    }
    /// Blocks until at least one job has ended and returns every ended job; empty when nothing
    /// is in flight or the run was interrupted.
    fn wait(&mut self) -> Vec<Finished>;
    /// Stops everything in flight (on interrupt). Returns the jobs found ended meanwhile (a
    /// result published just before the Ctrl-C is reported as such, not as interrupted); the
    /// others are abandoned.
    fn cancel(&mut self) -> Vec<Finished> {
        Vec::new()
    }
    /// Jobs sent to a cluster so far (0 for local runs).
    fn submitted(&self) -> usize {
        0
    }
}

/// Options of a run.
pub struct RunOptions {
    /// Instances run side by side at most (local executor, and driver-side stages).
    pub jobs: usize,
    /// Where jobs compute in this process.
    pub env: ComputeEnv,
    /// The `--device` value jobs on a cluster are started with.
    pub device_flag: String,
    /// `[executor]` merged with the command line.
    pub executor: ExecutorSettings,
    /// Only warnings and errors from jobs run in other processes, as from this one.
    pub quiet: bool,
}
