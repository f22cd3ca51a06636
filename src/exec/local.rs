//! The local executor: jobs run on threads of this process, `jobs` at a time (on a GPU, each
//! on a stream of its own when there are several, handed on from job to job: see
//! [`super::device::JobDevices`]). On the CPU the jobs handed over together start together and
//! split the threads no running job holds ([`super::job_pool`]).

use std::collections::HashSet;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::backlog::Backlog;
use super::compute::{compute_guarded, ComputeEnv};
use super::device::JobDevices;
use super::executor::{Executor, Finished};
use super::interrupt::interrupted;
use super::job::Job;
use super::job_pool::{widths, JobPools};
use crate::cache::RecipeKey;

/// Threads of this process.
pub struct LocalExecutor {
    env: ComputeEnv,
    jobs: usize,
    pools: Arc<JobPools>,
    /// With several jobs: the devices they compute on, reused from job to job.
    devices: Option<Arc<JobDevices>>,
    backlog: Backlog,
    running: usize,
    /// The keys of the running jobs: a job with the same recipe as a running one waits in the
    /// backlog (then finds it cached) instead of holding a slot blocked on the key's lock.
    running_keys: HashSet<RecipeKey>,
    /// Threads the running jobs hold (always 0 on a GPU).
    held: usize,
    /// Each ended job, with the threads it gives back.
    tx: mpsc::Sender<Ended>,
    rx: mpsc::Receiver<Ended>,
}

/// How often a wait looks for Ctrl-C: short enough that an interrupted run ends at once.
const INTERRUPT_LOOK: Duration = Duration::from_millis(100);

/// A job's report: how it finished, the threads it gives back, its key.
type Ended = (Finished, usize, RecipeKey);

impl LocalExecutor {
    /// Runs at most `jobs` jobs side by side in `env`.
    pub fn new(env: ComputeEnv, jobs: usize) -> LocalExecutor {
        let (tx, rx) = mpsc::channel();
        let pools = Arc::new(JobPools::new(&env));
        let devices = (jobs > 1).then(|| Arc::new(JobDevices::new(env.device.clone())));
        let backlog = Backlog::default();
        let running_keys = HashSet::new();
        LocalExecutor { env, jobs: jobs.max(1), pools, devices, backlog, running: 0, running_keys, held: 0, tx, rx }
    }

    /// Jobs taken and not yet reported.
    pub fn in_flight(&self) -> usize {
        self.running + self.backlog.len()
    }

    /// Starts what the free slots and threads allow, the backlog's first jobs first. Called
    /// before waiting rather than on each submission, so that the jobs of one scheduling round
    /// are known together when the threads are shared out. With more slots than threads
    /// (`--jobs` above the core count) each job still gets one thread, as asked.
    fn fill(&mut self) {
        let total = self.pools.total();
        let starting = self.backlog.take_startable(self.jobs.saturating_sub(self.running), &self.running_keys);
        let widths = widths(total, self.jobs, self.held, starting.len());
        let mut starting = starting.into_iter();
        for threads in widths {
            let Some(job) = starting.next() else { break };
            self.running += 1;
            self.running_keys.insert(job.key);
            self.held += threads;
            let (mut env, tx) = (self.env.clone(), self.tx.clone());
            let devices = self.devices.clone();
            if let Some(d) = &devices {
                env.device = d.take();
            }
            let (started, pools) = (Instant::now(), Arc::clone(&self.pools));
            if total > 0 {
                tracing::debug!("{} starts on {threads} of {total} threads", job.instance.name);
            }
            std::thread::spawn(move || {
                let result = pools.run(threads, || compute_guarded(&env, &job));
                // Back before the report, so the job this one's end lets start finds it free.
                if let Some(d) = devices {
                    d.put(env.device.clone());
                }
                let seconds = started.elapsed().as_secs_f64();
                let _ = tx.send((Finished { index: job.index, result, seconds }, threads, job.key));
            });
        }
        // Those the threads did not stretch go back to the head of the backlog, in order.
        self.backlog.put_back(starting);
    }

    /// Like [`Executor::wait`], but gives up after `timeout` (returning nothing).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Vec<Finished> {
        self.fill();
        if self.running == 0 {
            return Vec::new();
        }
        let Ok(first) = self.rx.recv_timeout(timeout) else { return Vec::new() };
        self.collect(first)
    }

    fn collect(&mut self, first: Ended) -> Vec<Finished> {
        let mut out = Vec::new();
        for (finished, threads, key) in std::iter::once(first).chain(self.rx.try_iter()) {
            self.running -= 1;
            self.held -= threads;
            self.running_keys.remove(&key);
            out.push(finished);
        }
        // Nothing starts here: the scheduler first hands over what these ends made ready, and the
        // next wait starts the whole round together.
        out
    }
}

impl Executor for LocalExecutor {
    /// Queues the job; it starts when the scheduler next waits, beside the others of its round.
    fn submit(&mut self, job: Job) {
        self.backlog.push_back(job);
    }

    /// A job waiting for its twin to finish takes no room: it will start and find its result
    /// cached, so it must not keep the scheduler from handing over another job meanwhile.
    fn has_room(&self) -> bool {
        self.running + self.backlog.needing_slots(&self.running_keys) < self.jobs
    }

    /// Empty at once when interrupted: the scheduler then calls [`Executor::cancel`].
    fn wait(&mut self) -> Vec<Finished> {
        if interrupted() {
            return Vec::new();
        }
        self.fill();
        while self.running > 0 && !interrupted() {
            match self.rx.recv_timeout(INTERRUPT_LOOK) {
                Ok(first) => return self.collect(first),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Vec::new()
    }

    /// Reports the jobs that ended before the Ctrl-C was noticed. The running ones are left to
    /// die with the process: what they publish is whole (publishing is one rename), a training
    /// keeps its last sealed checkpoint, and a command's watcher stops the command when cfrun
    /// exits.
    fn cancel(&mut self) -> Vec<Finished> {
        self.backlog.clear();
        let ended: Vec<Finished> = self.rx.try_iter().map(|(finished, _, _)| finished).collect();
        let abandoned = self.running - ended.len();
        if abandoned > 0 {
            // Logged, not printed: above the bars on a terminal, and no panic where stderr is
            // closed (a log line that cannot be written is dropped).
            tracing::warn!("interrupted: stopping {abandoned} running instance(s)");
        }
        ended
    }
}
