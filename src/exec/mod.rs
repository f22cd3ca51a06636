//! Scheduling and running stage instances, progress reporting, device selection.

pub mod device;
pub mod device_check;
pub mod evaluate;
pub mod progress;
pub mod run;

pub use run::{run, InstanceReport, Outcome, RunOptions};
