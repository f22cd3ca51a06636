//! Scheduling stage instances (what is ready), executors (where it runs: this process, child
//! processes or a Slurm cluster), computing one instance, progress reporting, device selection.

pub mod backlog;
pub mod compute;
pub mod cuda_events;
pub mod cuda_pool;
pub mod declared_metrics;
pub mod device;
pub mod evaluate;
pub mod executor;
pub mod interrupt;
pub mod job;
pub mod job_pool;
pub mod local;
pub mod outcome;
pub mod priority;
pub mod processes;
pub mod progress;
pub mod resources;
pub mod run;
pub mod slurm;
pub mod warnings;

pub use executor::{RunOptions, StartError};
pub use outcome::Outcome;
pub use run::{run, InstanceReport, RunSummary};
