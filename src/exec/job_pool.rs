//! The thread pools CPU jobs' kernels run on: one per running job, with the job itself running on
//! one of its pool's threads, and this process's threads shared out between the jobs that start
//! together.
//!
//! Why a pool per job: with one pool shared by side-by-side jobs, every kernel of every job
//! splits its work across all cores and waits for the slowest piece, so the jobs keep
//! interrupting each other. Why the job runs *on* the pool: a thread outside the pool hands
//! every parallel kernel over to the pool and sleeps until it is done, a wake-up and a context
//! switch per kernel, thousands per training epoch; on a pool thread the kernel starts at once
//! and the job's thread does its share. `bench_train` measured 8-16 % more training images per
//! second for resnet_cpu and resnet_small on 2 threads (`benches/profiles/nets.md`).
//! Why shares rather than a fixed `threads / jobs`: an edited stage reruns as a chain, one job at
//! a time, and a fixed share left all but `1 / jobs` of the machine idle for it. Now jobs that
//! start together split the threads no running job holds, so a lone job gets them all and a wide
//! sweep still gets one each: a data set and a lone resnet_small training ran 1.47x faster with
//! the default `--jobs` of a 2-core machine (`benches/profiles/scheduling.md`).
//! The kernels' results do not depend on the thread count, so artifacts are unchanged.

use std::sync::{Arc, Mutex};

use super::compute::ComputeEnv;

/// The most threads `RAYON_NUM_THREADS` may ask for: 1,024, or four per core on a machine with
/// more than 256; past that a run stalls (10,000 threads took 75 s and 2 GB to start before a
/// cached run answered).
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).saturating_mul(4).max(1024)
}

/// Refuses a `RAYON_NUM_THREADS` that rayon would ignore without a word (`abc`, `-1`, ` 4`) or
/// that asks for more than [`max_threads`]; 0 is rayon's own default (one per core), and an
/// empty one is as if unset.
pub fn threads_from_env() -> Result<(), crate::nn::env_flag::SwitchError> {
    use crate::nn::env_flag::{value_from_env, SwitchError};
    const ENV: &str = "RAYON_NUM_THREADS";
    let most = max_threads();
    value_from_env(ENV, |value| match value.parse::<usize>() {
        Ok(n) if n <= most => Ok(()),
        // `export RAYON_NUM_THREADS=`: unset in all but name, as rayon reads it.
        _ if value.is_empty() => Ok(()),
        _ => Err(SwitchError::Invalid {
            env: ENV.into(),
            value: value.into(),
            expected: format!("a number of threads from 1 to {most}, or 0 for one per core"),
        }),
    })
    .map(|_| ())
}

/// The pools of an executor's jobs, built on first use and kept for later jobs of the same width:
/// a pool per job would start its threads again for every job (a sweep runs thousands of small
/// ones).
pub struct JobPools {
    /// This process's threads: the global pool's count, so `RAYON_NUM_THREADS` still rules.
    total: usize,
    cpu: bool,
    idle: Mutex<Vec<Arc<rayon::ThreadPool>>>,
}

impl JobPools {
    /// Pools for the jobs of `env`, sharing this process's threads.
    pub fn new(env: &ComputeEnv) -> JobPools {
        Self::with_threads(rayon::current_num_threads().max(1), env.device.is_cpu())
    }

    fn with_threads(total: usize, cpu: bool) -> JobPools {
        JobPools { total, cpu, idle: Mutex::new(Vec::new()) }
    }

    /// The threads shared out between jobs; 0 for a GPU, whose jobs hold none (their kernels run
    /// on the device).
    pub fn total(&self) -> usize {
        if self.cpu {
            self.total
        } else {
            0
        }
    }

    /// Runs `f` on a thread of an idle pool of `threads` threads (built if none is idle), or on
    /// the calling thread for a GPU job or when no pool can be built.
    pub fn run<R: Send>(&self, threads: usize, f: impl FnOnce() -> R + Send) -> R {
        if !self.cpu {
            return f();
        }
        let threads = threads.clamp(1, self.total);
        let pool = self.idle.lock().ok().and_then(|mut idle| {
            let at = idle.iter().position(|p| p.current_num_threads() == threads)?;
            Some(idle.swap_remove(at))
        });
        let Some(pool) =
            pool.or_else(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok().map(Arc::new))
        else {
            return f();
        };
        let out = pool.install(f);
        if let Ok(mut idle) = self.idle.lock() {
            // Widths come and go with the plan's shape: keep at most twice the machine's threads
            // asleep, the oldest pools dropped first.
            idle.push(pool);
            while idle.iter().map(|p| p.current_num_threads()).sum::<usize>() > 2 * self.total {
                idle.remove(0);
            }
        }
        out
    }
}

/// Threads for each of `starting` jobs out of `free`: an even split, the remainder to the first
/// (the scheduler's most urgent), each at least 1 and at most `cap` (the machine's threads).
pub fn shares(free: usize, starting: usize, cap: usize) -> Vec<usize> {
    (0..starting)
        .map(|i| (free / starting.max(1) + usize::from(i < free % starting.max(1))).clamp(1, cap.max(1)))
        .collect()
}

/// The threads of each of `starting` jobs that start together, given the machine's `total`
/// (0 on a GPU, whose jobs hold none), the executor's `jobs` slots and the threads the running
/// jobs hold: the free ones shared out (one each when there are more slots than threads).
pub fn widths(total: usize, jobs: usize, held: usize, starting: usize) -> Vec<usize> {
    if total == 0 {
        return vec![0; starting];
    }
    let free = total.max(jobs).saturating_sub(held);
    shares(free, starting.min(free), total)
}

/// Runs `f` as the one job of this process, on all its threads (see [`JobPools::run`]).
pub fn run_on_pool<R: Send>(env: &ComputeEnv, f: impl FnOnce() -> R + Send) -> R {
    let pools = JobPools::new(env);
    pools.run(pools.total, f)
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

    /// A CPU job runs on a thread of a pool of the width it was given (within 1 and the
    /// machine's threads), later jobs of that width reuse the pool, and the idle pools never hold
    /// more than twice the machine's threads.
    #[test]
    fn jobs_run_on_a_reused_pool_of_their_width() {
        let pools = JobPools::with_threads(3, true);
        let on =
            |threads| pools.run(threads, || (rayon::current_thread_index().is_some(), rayon::current_num_threads()));
        let seen: Vec<_> = [3, 3, 1, 1, 9, 0].into_iter().map(on).collect();
        assert_eq!(seen, [(true, 3), (true, 3), (true, 1), (true, 1), (true, 3), (true, 1)]);
        assert_eq!(pools.idle.lock().unwrap().len(), 2);
        // Two side by side: two pools, both kept.
        let shared = &pools;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let a = s.spawn(move || shared.run(1, move || rx.recv().unwrap()));
            pools.run(1, || tx.send(()).unwrap());
            a.join().unwrap();
        });
        let widths: Vec<usize> = pools.idle.lock().unwrap().iter().map(|p| p.current_num_threads()).collect();
        assert!(widths.iter().sum::<usize>() <= 6 && widths.contains(&1), "{widths:?}");
    }

    /// Jobs starting together split the free threads evenly, the first ones taking the
    /// remainder; a lone job takes them all, up to the machine's.
    #[test]
    fn starting_jobs_split_the_free_threads() {
        assert_eq!(shares(2, 1, 2), [2]);
        assert_eq!(shares(2, 2, 2), [1, 1]);
        assert_eq!(shares(16, 3, 16), [6, 5, 5]);
        assert_eq!(shares(4, 1, 2), [2]);
        assert_eq!(shares(0, 2, 2), [1, 1]);
        assert_eq!(shares(5, 0, 8), Vec::<usize>::new());
    }

    /// A GPU job runs on the calling thread.
    #[test]
    fn gpu_jobs_run_on_the_calling_thread() {
        let pools = JobPools::with_threads(2, false);
        let caller = std::thread::current().id();
        assert_eq!(pools.total(), 0);
        assert_eq!(pools.run(2, || std::thread::current().id()), caller);
        assert!(pools.idle.lock().unwrap().is_empty());
    }
}
