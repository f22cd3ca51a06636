//! The Slurm executor: each ready instance becomes a job (`sbatch`; a job array when several
//! instances of one stage are ready with the same resources), at most `max_jobs` in flight.
//!
//! The cache is the truth of what finished: a published key means done. The queue is asked only
//! about jobs whose key is not published yet, with one `squeue` call for all of them, and less
//! often the longer nothing changes. A job that ended without publishing is classified: killed,
//! preempted, timed out or lost jobs are submitted again (the stage resumes from its checkpoint in
//! the cache), up to `retries` times; any other failure is reported with its log's last lines.
//! A submission the controller could not take for now is tried again later ([`backoff`]).
//! Tiny ops run in the driver (those whose `JOB` is [`crate::ops::JobShape::IN_DRIVER`]).

pub mod backoff;
pub mod claims;
pub mod pending;
mod poll;
pub mod queue;
pub mod sbatch;
pub mod silence;
mod submit;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::backoff::Backoff;
use self::sbatch::Submitter;
use self::silence::Silence;
use super::executor::{Executor, Finished, RunOptions, StartError};
use super::interrupt::interrupted;
use super::job::{jobs_dir_in, Job};
use super::local::LocalExecutor;
use crate::cache::fs_check;
use crate::cache::lock::KeyLock;
use crate::cache::{RecipeKey, Store};

/// Built-in defaults of the `[executor]` fields that matter here.
const DEFAULT_MAX_JOBS: usize = 500;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_POLL_MAX: f64 = 10.0;
/// The queue is asked at most this often, however busy the run.
const MIN_QUEUE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a job that completed cleanly is given for its published key to show on this node
/// (an NFS client caches directory attributes up to 60 s by default, `acdirmax`).
const PUBLISH_GRACE: Duration = Duration::from_secs(90);

/// A job waiting to be submitted, with the attempt it will be.
type Waiting = (Job, u32);

struct Tracked {
    job: Job,
    job_id: String,
    log: PathBuf,
    attempts: u32,
    since: Instant,
    /// Submitted by another driver and only followed here: its result is that driver's run.
    adopted: bool,
    /// How it ended, once the queue says it did and it completed without its key in sight yet.
    completed: Option<(Instant, Option<queue::Ending>)>,
    /// What its pending reasons have been ([`pending::Watch`]).
    pending: pending::Watch,
}

/// Runs jobs on a Slurm cluster that shares the cache.
pub struct SlurmExecutor {
    store: Store,
    submitter: Submitter,
    local: LocalExecutor,
    max_jobs: usize,
    retries: u32,
    arrays: bool,
    backlog: VecDeque<(Job, u32)>,
    tracked: Vec<Tracked>,
    done: Vec<Finished>,
    submitted: usize,
    /// Pauses submissions while the controller refuses them for a passing reason.
    backoff: Backoff,
    /// Gives up on the jobs in flight once the queue has failed every look for too long.
    silence: Silence,
    /// The right to submit each key of the flush under way, held until its job's claim is written.
    submitting: HashMap<RecipeKey, KeyLock>,
    /// Why submitting was given up in the flush under way: its other groups fail without an
    /// `sbatch` each.
    given_up: Option<String>,
    delay: Duration,
    poll_max: Duration,
    last_queue: Option<Instant>,
    /// How long a never-clearing pending reason holds before its job is cancelled.
    stuck_grace: Duration,
    /// This driver's mark, named in each claim it writes ([`claims::DriverMark`]).
    mark: claims::DriverMark,
    /// Jobs are offered to more than one partition (`partition = "a,b"`, or a `--partition` of
    /// `sbatch_args`): a pending reason may be one partition's, so no job is cancelled for it.
    several_partitions: bool,
}

impl SlurmExecutor {
    /// Checks that Slurm answers and that the cache's locks hold across nodes.
    pub fn new(opts: &RunOptions) -> Result<SlurmExecutor, StartError> {
        let store = opts.env.store.clone();
        fs_check::require_shared_locks(store.root())?;
        require_sbatch()?;
        // Checked before anything runs: `sbatch` would refuse each job, after the stages before
        // it had run.
        if let Some(partitions) = &opts.executor.partition {
            let names: Vec<&str> = partitions.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
            let (unknown, known) = queue::unknown_partitions(&names);
            if !unknown.is_empty() {
                return Err(StartError::UnknownPartition { unknown, known });
            }
        }
        let cache = std::fs::canonicalize(store.root()).map_err(StartError::folder(store.root()))?;
        // Absolute, as the cache: a job may start in another folder (`--chdir`, a submit folder
        // the nodes do not share), where a relative log or key list is not found.
        let logs = jobs_dir_in(&cache).join("logs");
        std::fs::create_dir_all(&logs).map_err(StartError::folder(&logs))?;
        let arrays = jobs_dir_in(&cache).join("arrays");
        std::fs::create_dir_all(&arrays).map_err(StartError::folder(&arrays))?;
        let exe = std::env::current_exe().map_err(StartError::OwnBinary)?;
        let s = &opts.executor;
        let submitter = Submitter {
            exe,
            cache,
            logs,
            device: opts.device_flag.clone(),
            partition: s.partition.clone(),
            account: s.account.clone(),
            qos: s.qos.clone(),
            extra: s.sbatch_args.clone(),
        };
        let mut poll_max = Duration::from_secs_f64(s.poll_max.unwrap_or(DEFAULT_POLL_MAX));
        // A job that ends and is forgotten between two looks could only be guessed at ("vanished")
        // and submitted again: the queue is asked at least twice per MinJobAge.
        if let Some(age) = queue::min_job_age().filter(|age| poll_max > *age / 2) {
            let bound = (age / 2).max(MIN_QUEUE_INTERVAL);
            tracing::info!(
                "poll_max {:.0} s is above half of Slurm's MinJobAge ({} s): the queue is asked every {} s at most",
                poll_max.as_secs_f64(),
                age.as_secs(),
                bound.as_secs()
            );
            poll_max = bound;
        }
        let locks = store.root().join("locks");
        let mark = claims::DriverMark::take(&store)
            .map_err(|e| StartError::Folder { path: locks, source: std::io::Error::other(e.to_string()) })?;
        Ok(SlurmExecutor {
            mark,
            store,
            submitter,
            local: LocalExecutor::new(opts.env.clone(), opts.jobs),
            max_jobs: s.max_jobs.map_or(DEFAULT_MAX_JOBS, |m| m as usize),
            retries: s.retries.unwrap_or(DEFAULT_RETRIES),
            arrays: s.arrays.unwrap_or(true),
            backlog: VecDeque::new(),
            tracked: Vec::new(),
            done: Vec::new(),
            submitted: 0,
            backoff: Backoff::default(),
            silence: Silence::new(s.queue_patience.map_or(silence::DEFAULT_PATIENCE, Duration::from_secs_f64)),
            submitting: HashMap::new(),
            given_up: None,
            delay: Duration::from_millis(200).min(poll_max),
            poll_max,
            last_queue: None,
            // Three looks at the queue at the longest spacing, at most `STUCK_GRACE`.
            stuck_grace: pending::STUCK_GRACE.min(poll_max * 3),
            several_partitions: s.partition.as_deref().is_some_and(|p| p.contains(','))
                || s.sbatch_args.iter().any(|a| a.starts_with("-p") || a.starts_with("--partition")),
        })
    }
}

impl Executor for SlurmExecutor {
    fn submit(&mut self, job: Job) {
        if job.resources.in_driver {
            return self.local.submit(job);
        }
        if !self.serve_cached(&job) {
            self.backlog.push_back((job, 1));
        }
    }

    fn wait(&mut self) -> Vec<Finished> {
        loop {
            self.flush();
            if !self.done.is_empty() {
                return std::mem::take(&mut self.done);
            }
            if self.tracked.is_empty() && self.backlog.is_empty() && self.local.in_flight() == 0 {
                return Vec::new();
            }
            let mut out = self.wait_local(self.delay);
            if interrupted() {
                // Kept for `cancel` to report: the scheduler stops taking results now.
                self.done.append(&mut out);
                return Vec::new();
            }
            let ask_queue = self.last_queue.is_none_or(|t| t.elapsed() >= self.delay.max(MIN_QUEUE_INTERVAL));
            out.extend(self.poll(ask_queue));
            if let Some(why) = self.silence.exhausted(Instant::now()) {
                self.give_up_on_queue(&why);
            }
            out.append(&mut self.done);
            if out.is_empty() {
                self.delay = (self.delay.mul_f64(1.5)).min(self.poll_max);
            } else {
                self.delay = Duration::from_millis(200).min(self.poll_max);
                return out;
            }
        }
    }

    fn cancel(&mut self) -> Vec<Finished> {
        // What ended before the Ctrl-C was noticed: driver-side jobs the last wait saw end, and
        // jobs whose key is published.
        let mut ended = std::mem::take(&mut self.done);
        let mut live = Vec::new();
        for t in std::mem::take(&mut self.tracked) {
            match self.published(&t) {
                Some(f) => ended.push(f),
                None => live.push(t),
            }
        }
        self.tracked = live;
        // Only the jobs this driver submitted: a followed one belongs to the driver that
        // submitted it, whose run goes on.
        // Nor one that completed and whose result is on its way to this node: nothing to cancel.
        let ids: Vec<String> =
            self.tracked.iter().filter(|t| !t.adopted && t.completed.is_none()).map(|t| t.job_id.clone()).collect();
        if ids.is_empty() {
            return ended;
        }
        // Not `eprintln!`: with stderr closed under a run, it would panic before the `scancel`.
        let _ = writeln!(std::io::stderr(), "interrupted: cancelling {} Slurm job(s)", ids.len());
        let status = std::process::Command::new("scancel").args(&ids).status();
        // Wait (a little) until the queue agrees, so that the caller can trust it is empty; a
        // controller that refused the cancel is not asked (it would only fail for 30 s more).
        let mut gone = false;
        if status.is_ok_and(|s| s.success()) {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !gone && Instant::now() < deadline {
                match queue::states(&refs) {
                    Ok(s) if s.values().all(|q| !q.active()) => gone = true,
                    _ => std::thread::sleep(Duration::from_millis(250)),
                }
            }
        }
        if !gone {
            tracing::warn!(
                "the queue has not confirmed the cancel; these jobs may still run (scancel them by hand), and a \
                 rerun follows them: {}",
                ids.join(" ")
            );
        }
        // A followed job's claim stays: its driver still tracks it, and `status` still shows it.
        // So does the claim of a job the queue has not confirmed gone: a rerun takes it over instead
        // of submitting its key again, and `status` shows it running.
        for t in std::mem::take(&mut self.tracked).into_iter().filter(|t| !t.adopted) {
            if gone || t.completed.is_some() {
                claims::release(&self.store, &t.job.key, &t.job_id);
            }
        }
        ended
    }

    fn submitted(&self) -> usize {
        self.submitted
    }
}

/// Refuses a machine without a working `sbatch`: nothing could be submitted.
pub fn require_sbatch() -> Result<(), StartError> {
    let probe = std::process::Command::new("sbatch").arg("--version").output();
    if probe.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    Err(StartError::NoSbatch)
}

/// The last `n` lines of a log, indented, or a note that it cannot be read.
fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(n)..];
            if tail.is_empty() {
                " (empty)".into()
            } else {
                format!("; last lines:\n    {}", tail.join("\n    "))
            }
        }
        // Slurm opens the log as the job starts: one cancelled while pending has none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            " (no log: the job never started, or its node could not write into the cache)".into()
        }
        Err(e) => format!(" (unreadable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    /// A job's last lines, or why there are none: a job cancelled while pending has no log,
    /// which read as "unreadable: No such file or directory".
    #[test]
    fn a_log_tail_says_why_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("7.log");
        assert!(log_tail(&log, 2).contains("no log: the job never started"));
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), "; last lines:\n    b\n    c");
        std::fs::write(&log, "").unwrap();
        assert_eq!(log_tail(&log, 2), " (empty)");
    }
}
