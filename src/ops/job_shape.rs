//! What a stage kind asks of a cluster by default: a job's CPUs, memory, GPUs and time limit,
//! or a place in the driver. `exec::resources` applies `[executor] in_driver` and the stage's
//! own `[stages.NAME.resources]` on top.

/// One job's default request, declared by its op as [`super::StageKind::JOB`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobShape {
    /// CPUs per task.
    pub cpus: u32,
    /// Memory in GiB.
    pub mem_gb: u64,
    /// GPUs, asked for only when the run's device is not the CPU.
    pub gpus: u32,
    /// Time limit in minutes.
    pub time_min: u32,
    /// Runs in the driver rather than as a job.
    pub in_driver: bool,
}

impl JobShape {
    /// A job of `cpus`, `mem_gb` GiB, `gpus` and `time_min` minutes.
    pub const fn job(cpus: u32, mem_gb: u64, gpus: u32, time_min: u32) -> JobShape {
        JobShape { cpus, mem_gb, gpus, time_min, in_driver: false }
    }

    /// A small job: one CPU, 1 GiB, ten minutes (an op that declares nothing gets this).
    pub const SMALL: JobShape = JobShape::job(1, 1, 0, 10);

    /// Bookkeeping in the driver: milliseconds of work on small artifacts (labels, metrics),
    /// where a job would cost seconds of scheduling.
    pub const IN_DRIVER: JobShape = JobShape { in_driver: true, ..JobShape::SMALL };
}
