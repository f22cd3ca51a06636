//! The thread pool a CPU job's kernels run on: one of its own, with the job itself running on
//! one of the pool's threads.
//!
//! Why a pool per job: with one pool shared by side-by-side jobs, every kernel of every job
//! splits its work across all cores and waits for the slowest piece, so the jobs keep
//! interrupting each other. Why the job runs *on* the pool: a thread outside the pool hands
//! every parallel kernel over to the pool and sleeps until it is done, a wake-up and a context
//! switch per kernel, thousands per training epoch; on a pool thread the kernel starts at once
//! and the job's thread does its share. `bench_train` measured 8-16 % more training images per
//! second for resnet_cpu and resnet_small on 2 threads (`benches/profiles/nets.md`).
//! The kernels' results do not depend on the thread count, so artifacts are unchanged.

use super::compute::ComputeEnv;

/// Runs `f` on a pool of its own with this process's threads (the global pool's count, so
/// `RAYON_NUM_THREADS` still rules) split between `jobs` jobs, or on the calling thread for a
/// GPU job (its kernels run on the device).
pub fn run_on_pool<R: Send>(env: &ComputeEnv, jobs: usize, f: impl FnOnce() -> R + Send) -> R {
    if !env.device.is_cpu() {
        return f();
    }
    on_pool((rayon::current_num_threads() / jobs.max(1)).max(1), f)
}

/// Runs `f` on one of the threads of a new pool of `threads` (on the calling thread if the pool
/// cannot be built). The benchmarks run their networks this way, as a job does.
pub fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}
