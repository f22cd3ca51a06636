//! The local executor: jobs run on threads of this process, `jobs` at a time (on a GPU, each
//! on a stream of its own when there are several, handed on from job to job: see
//! [`super::device::JobDevices`]).

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::compute::{compute_guarded, ComputeEnv};
use super::device::JobDevices;
use super::executor::{Executor, Finished};
use super::job::Job;
use super::job_pool::JobPools;

/// Threads of this process.
pub struct LocalExecutor {
    env: ComputeEnv,
    jobs: usize,
    pools: Arc<JobPools>,
    /// With several jobs: the devices they compute on, reused from job to job.
    devices: Option<Arc<JobDevices>>,
    backlog: VecDeque<Job>,
    running: usize,
    tx: mpsc::Sender<Finished>,
    rx: mpsc::Receiver<Finished>,
}

impl LocalExecutor {
    /// Runs at most `jobs` jobs side by side in `env`.
    pub fn new(env: ComputeEnv, jobs: usize) -> LocalExecutor {
        let (tx, rx) = mpsc::channel();
        let pools = Arc::new(JobPools::new(&env, jobs));
        let devices = (jobs > 1).then(|| Arc::new(JobDevices::new(env.device.clone())));
        LocalExecutor { env, jobs: jobs.max(1), pools, devices, backlog: VecDeque::new(), running: 0, tx, rx }
    }

    /// Jobs taken and not yet reported.
    pub fn in_flight(&self) -> usize {
        self.running + self.backlog.len()
    }

    fn fill(&mut self) {
        while self.running < self.jobs {
            let Some(job) = self.backlog.pop_front() else { break };
            self.running += 1;
            let (mut env, tx) = (self.env.clone(), self.tx.clone());
            let devices = self.devices.clone();
            if let Some(d) = &devices {
                env.device = d.take();
            }
            let (started, pools) = (Instant::now(), Arc::clone(&self.pools));
            std::thread::spawn(move || {
                let result = pools.run(|| compute_guarded(&env, &job));
                // Back before the report, so the job this one's end lets start finds it free.
                if let Some(d) = devices {
                    d.put(env.device.clone());
                }
                let _ = tx.send(Finished { index: job.index, result, seconds: started.elapsed().as_secs_f64() });
            });
        }
    }

    /// Like [`Executor::wait`], but gives up after `timeout` (returning nothing).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Vec<Finished> {
        if self.running == 0 {
            return Vec::new();
        }
        let Ok(first) = self.rx.recv_timeout(timeout) else { return Vec::new() };
        self.collect(first)
    }

    fn collect(&mut self, first: Finished) -> Vec<Finished> {
        let mut out = vec![first];
        out.extend(self.rx.try_iter());
        self.running -= out.len();
        self.fill();
        out
    }
}

impl Executor for LocalExecutor {
    fn submit(&mut self, job: Job) {
        self.backlog.push_back(job);
        self.fill();
    }

    fn has_room(&self) -> bool {
        self.backlog.is_empty() && self.running < self.jobs
    }

    fn wait(&mut self) -> Vec<Finished> {
        if self.running == 0 {
            return Vec::new();
        }
        match self.rx.recv() {
            Ok(first) => self.collect(first),
            Err(_) => Vec::new(),
        }
    }
}
