//! The thread pools CPU jobs' kernels run on: one per job slot, with the job itself running on
//! one of its pool's threads.
//!
//! Why a pool per slot: with one pool shared by side-by-side jobs, every kernel of every job
//! splits its work across all cores and waits for the slowest piece, so the jobs keep
//! interrupting each other. Why the job runs *on* the pool: a thread outside the pool hands
//! every parallel kernel over to the pool and sleeps until it is done, a wake-up and a context
//! switch per kernel, thousands per training epoch; on a pool thread the kernel starts at once
//! and the job's thread does its share. `bench_train` measured 8-16 % more training images per
//! second for resnet_cpu and resnet_small on 2 threads (`benches/profiles/nets.md`).
//! The kernels' results do not depend on the thread count, so artifacts are unchanged.

use std::sync::{Arc, Mutex};

use super::compute::ComputeEnv;

/// The pools of an executor's job slots, built on first use and kept for the next job: a pool
/// per job would start its threads again for every job (a sweep runs thousands of small ones).
pub struct JobPools {
    threads: usize,
    cpu: bool,
    idle: Mutex<Vec<Arc<rayon::ThreadPool>>>,
}

impl JobPools {
    /// Pools for `jobs` side-by-side jobs in `env`, this process's threads (the global pool's
    /// count, so `RAYON_NUM_THREADS` still rules) split between them.
    pub fn new(env: &ComputeEnv, jobs: usize) -> JobPools {
        let threads = (rayon::current_num_threads() / jobs.max(1)).max(1);
        Self::with_threads(threads, env.device.is_cpu())
    }

    fn with_threads(threads: usize, cpu: bool) -> JobPools {
        JobPools { threads, cpu, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on a thread of an idle pool (built if none is idle), or on the calling thread
    /// for a GPU job (its kernels run on the device) or when no pool can be built.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if !self.cpu {
            return f();
        }
        let pool = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let Some(pool) =
            pool.or_else(|| rayon::ThreadPoolBuilder::new().num_threads(self.threads).build().ok().map(Arc::new))
        else {
            return f();
        };
        let out = pool.install(f);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(pool);
        }
        out
    }
}

/// Runs `f` as the one job of this process (see [`JobPools::run`]).
pub fn run_on_pool<R: Send>(env: &ComputeEnv, f: impl FnOnce() -> R + Send) -> R {
    JobPools::new(env, 1).run(f)
}

/// Runs `f` on one of the threads of a new pool of `threads` (on the calling thread if the pool
/// cannot be built). The benchmarks run their networks this way, as a job does.
pub fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU job runs on a thread of a pool of the slot's size, and later jobs reuse the pool
    /// instead of building another.
    #[test]
    fn jobs_run_on_a_reused_pool_of_their_slot() {
        let pools = JobPools::with_threads(3, true);
        let seen: Vec<_> = (0..5)
            .map(|_| pools.run(|| (rayon::current_thread_index().is_some(), rayon::current_num_threads())))
            .collect();
        assert!(seen.iter().all(|&(on_pool, n)| on_pool && n == 3), "{seen:?}");
        assert_eq!(pools.idle.lock().unwrap().len(), 1);
        // Two side by side: two pools, both kept.
        let shared = &pools;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let a = s.spawn(move || shared.run(move || rx.recv().unwrap()));
            pools.run(|| tx.send(()).unwrap());
            a.join().unwrap();
        });
        assert!(pools.idle.lock().unwrap().len() <= 2);
    }

    /// A GPU job runs on the calling thread.
    #[test]
    fn gpu_jobs_run_on_the_calling_thread() {
        let pools = JobPools::with_threads(2, false);
        let caller = std::thread::current().id();
        assert_eq!(pools.run(|| std::thread::current().id()), caller);
        assert!(pools.idle.lock().unwrap().is_empty());
    }
}
