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
pub mod queue;
pub mod sbatch;
pub mod silence;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::backoff::Backoff;
use self::claims::Claim;
use self::pending::Look;
use self::queue::{QueueEntry, Verdict};
use self::sbatch::{Refused, Submitter};
use self::silence::Silence;
use super::compute::cached;
use super::executor::{Executor, Finished, RunOptions, StartError};
use super::interrupt::interrupted;
use super::job::{jobs_dir_in, write_spec, Job};
use super::local::LocalExecutor;
use super::outcome::Outcome;
use super::resources::Resources;
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
        Ok(SlurmExecutor {
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

    /// Submits from the backlog while there is room, grouping same-stage, same-resources jobs
    /// into arrays.
    fn flush(&mut self) {
        let room = self.max_jobs.saturating_sub(self.tracked.len());
        // Once interrupted, nothing more is submitted: what is queued is about to be cancelled.
        if room == 0 || self.backlog.is_empty() || interrupted() || !self.backoff.ready(Instant::now()) {
            return;
        }
        let take = self.take_submittable(room);
        // Each key's right to submit is held until its job's claim is written (`track`).
        let (take, mut deferred) = self.adopt_claimed(take);
        let mut groups: BTreeMap<(String, Resources, u32), Vec<Job>> = BTreeMap::new();
        let mut order = Vec::new();
        for (job, attempts) in take {
            let group = (job.instance.stage.clone(), job.resources.clone(), attempts);
            if !groups.contains_key(&group) {
                order.push(group.clone());
            }
            groups.entry(group).or_default().push(job);
        }
        // Jobs the controller could not take yet go back to the head of the backlog, in order.
        for group in order {
            let jobs = groups.remove(&group).unwrap_or_default();
            if let Some(why) = self.given_up.clone() {
                self.fail_all(jobs, &why);
                continue;
            }
            // A Ctrl-C while submitting stops the submissions (sbatch, in its own process group,
            // does not see it).
            let jobs = match self.backoff.ready(Instant::now()) && !interrupted() {
                true => self.submit_group(&group.0, &group.1, group.2, jobs),
                false => jobs,
            };
            deferred.extend(jobs.into_iter().map(|j| (j, group.2)));
        }
        for item in deferred.into_iter().rev() {
            self.backlog.push_front(item);
        }
        self.given_up = None;
        // The rights of the keys not submitted after all (followed, deferred, failed).
        self.submitting.clear();
    }

    /// Takes up to `room` jobs from the backlog, first come first. One whose recipe a tracked or
    /// taken job computes (its twin under another name, the same key in a later round) stays in
    /// the backlog, to be served once that job publishes, instead of costing an allocation that
    /// would only wait on its lock.
    fn take_submittable(&mut self, room: usize) -> Vec<Waiting> {
        let mut taken: Vec<Waiting> = Vec::new();
        let mut i = 0;
        while taken.len() < room && i < self.backlog.len() {
            let key = self.backlog[i].0.key;
            if self.tracked.iter().any(|t| t.job.key == key) || taken.iter().any(|(j, _)| j.key == key) {
                i += 1;
                continue;
            }
            taken.extend(self.backlog.remove(i));
        }
        taken
    }

    /// Reports `job` as cached if its key is published (verified); whether it was.
    fn serve_cached(&mut self, job: &Job) -> bool {
        // An unreadable record goes to a job, which fails naming it.
        let Ok(Some(record)) = cached(&self.store, &job.instance.name, &job.key) else { return false };
        self.done.push(Finished { index: job.index, result: Ok((record, Outcome::Cached)), seconds: 0.0 });
        true
    }

    /// Follows the live jobs another driver already submitted for some of these keys. Returns
    /// the jobs to submit, the right to submit each held in `submitting`, and those to look at
    /// again next round (another driver is submitting the key right now, or the queue did not
    /// answer, where submitting would risk a second job for one key).
    fn adopt_claimed(&mut self, take: Vec<Waiting>) -> (Vec<Waiting>, Vec<Waiting>) {
        let (mut mine, mut later) = (Vec::new(), Vec::new());
        for (job, attempts) in take {
            match claims::lock_submission(&self.store, &job.key) {
                // Published since it was handed over (by another driver's job): served, not submitted.
                Ok(Some(_)) if self.serve_cached(&job) => {}
                Ok(Some(lock)) => {
                    self.submitting.insert(job.key, lock);
                    mine.push((job, attempts));
                }
                Ok(None) => later.push((job, attempts)),
                Err(e) => {
                    // Without the lock the claim below still catches all but a simultaneous submission.
                    tracing::warn!("{}: {e}; submitting without the submission lock", job.instance.name);
                    mine.push((job, attempts));
                }
            }
        }
        let take = mine;
        let claimed: Vec<Option<Claim>> = take.iter().map(|(j, _)| claims::read(&self.store, &j.key)).collect();
        let ids: Vec<&str> = claimed.iter().flatten().map(|c| c.job_id.as_str()).collect();
        if ids.is_empty() {
            return (take, later);
        }
        let live = match self.ask_queue(&ids) {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!("{e}; the jobs other drivers claimed are looked at again later");
                let (claimed, free): (Vec<_>, Vec<_>) = take.into_iter().zip(claimed).partition(|(_, c)| c.is_some());
                later.extend(claimed.into_iter().map(|(j, _)| j));
                return (free.into_iter().map(|(j, _)| j).collect(), later);
            }
        };
        let mut rest = Vec::new();
        for ((job, attempts), claim) in take.into_iter().zip(claimed) {
            match claim.filter(|c| live.get(&c.job_id).is_some_and(|q| q.active())) {
                Some(c) => {
                    tracing::info!("{}: following job {} (submitted by another cfrun)", job.instance.name, c.job_id);
                    self.tracked.push(Tracked {
                        job,
                        job_id: c.job_id,
                        log: c.log,
                        attempts,
                        since: Instant::now(),
                        adopted: true,
                        completed: None,
                        pending: Default::default(),
                    });
                }
                None => rest.push((job, attempts)),
            }
        }
        (rest, later)
    }

    /// Submits `jobs` (one array, or one job each); returns those to submit again later, the
    /// controller having refused them for a passing reason.
    fn submit_group(&mut self, stage: &str, r: &Resources, attempts: u32, jobs: Vec<Job>) -> Vec<Job> {
        for job in &jobs {
            if let Err(e) = write_spec(&self.store, job) {
                let why = format!("cannot write the job spec into the cache: {e}");
                self.fail_all(jobs, &why);
                return Vec::new();
            }
        }
        let logs = self.submitter.logs.clone();
        if self.arrays && jobs.len() > 1 {
            let list: String = jobs.iter().map(|j| format!("{}\n", j.key.hex())).collect();
            let name = blake3::hash(list.as_bytes()).to_hex()[..16].to_string();
            let path = jobs_dir_in(&self.submitter.cache).join("arrays").join(format!("{name}.txt"));
            if let Err(e) = crate::cache::fsutil::write_atomic(&path, list.as_bytes()) {
                self.fail_all(jobs, &format!("cannot write the array's key list: {e}"));
                return Vec::new();
            }
            return match self.submitter.submit_array(stage, r, &path, jobs.len()) {
                Ok(id) => {
                    tracing::info!("submitted {} instances of {stage} as job array {id}", jobs.len());
                    self.accepted();
                    for (i, job) in jobs.into_iter().enumerate() {
                        let job_id = format!("{id}_{i}");
                        self.track(job, job_id.clone(), logs.join(format!("{job_id}.log")), attempts);
                    }
                    Vec::new()
                }
                Err(e) => self.refused(jobs, e),
            };
        }
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            if interrupted() {
                return std::iter::once(job).chain(jobs).collect();
            }
            if let Some(why) = self.given_up.clone() {
                self.fail_all(std::iter::once(job).chain(jobs).collect(), &why);
                return Vec::new();
            }
            match self.submitter.submit_one(stage, r, &job.key.hex()) {
                Ok(id) => {
                    tracing::info!("submitted {} as job {id}", job.instance.name);
                    self.accepted();
                    let log = logs.join(format!("{id}.log"));
                    self.track(job, id, log, attempts);
                }
                Err(e) => {
                    let later = self.refused(vec![job], e);
                    if !later.is_empty() {
                        return later.into_iter().chain(jobs).collect();
                    }
                }
            }
        }
        Vec::new()
    }

    fn accepted(&mut self) {
        self.submitted += 1;
        self.backoff.accepted();
    }

    /// A refused submission of `jobs`: returned to be tried again when the refusal passes and the
    /// controller has not refused for too long, else failed. A timed-out `sbatch` may still have
    /// queued its job; the copy submitted again then waits on the key's lock and is served the
    /// first one's result.
    fn refused(&mut self, jobs: Vec<Job>, refusal: Refused) -> Vec<Job> {
        if !refusal.passing {
            self.fail_all(jobs, &refusal.message);
            return Vec::new();
        }
        match self.backoff.refused(Instant::now()) {
            Some(pause) => {
                tracing::warn!("{}; submitting again in {} s", refusal.message, pause.as_secs());
                jobs
            }
            None => {
                // Ten minutes without a controller: what waits to be submitted fails now, not one
                // `sbatch` timeout at a time. A later refusal fails at once too, until a
                // submission goes through.
                let why = format!("{} (and every submission for the last ten minutes)", refusal.message);
                // A twin of a tracked job stays: that job may still publish, and serve it.
                let tracked: Vec<_> = self.tracked.iter().map(|t| t.job.key).collect();
                let (twins, waiting): (VecDeque<_>, VecDeque<_>) =
                    self.backlog.drain(..).partition(|(j, _)| tracked.contains(&j.key));
                self.backlog = twins;
                self.fail_all(jobs.into_iter().chain(waiting.into_iter().map(|(j, _)| j)).collect(), &why);
                self.given_up = Some(why);
                Vec::new()
            }
        }
    }

    fn track(&mut self, job: Job, job_id: String, log: PathBuf, attempts: u32) {
        let claim = Claim { job_id: job_id.clone(), log: log.clone(), instance: job.instance.name.clone() };
        claims::write(&self.store, &job.key, &claim);
        // The claim is out: another driver that needs the key now follows this job.
        self.submitting.remove(&job.key);
        let since = Instant::now();
        self.tracked.push(Tracked {
            job,
            job_id,
            log,
            attempts,
            since,
            adopted: false,
            completed: None,
            pending: Default::default(),
        });
    }

    fn fail_all(&mut self, jobs: Vec<Job>, why: &str) {
        for job in jobs {
            self.done.push(Finished { index: job.index, result: Err(why.to_string()), seconds: 0.0 });
        }
    }

    /// Looks at the cache for every tracked job, and at the queue for those not published.
    fn poll(&mut self, ask_queue: bool) -> Vec<Finished> {
        let mut out = Vec::new();
        let mut waiting = Vec::new();
        for t in std::mem::take(&mut self.tracked) {
            match self.published(&t) {
                Some(f) => out.push(f),
                None => waiting.push(t),
            }
        }
        if !ask_queue || waiting.is_empty() {
            self.tracked = waiting;
            return out;
        }
        self.last_queue = Some(Instant::now());
        let ids: Vec<&str> = waiting.iter().map(|t| t.job_id.as_str()).collect();
        let states = match self.ask_queue(&ids) {
            Ok(s) => s,
            Err(e) => {
                // A busy or restarting controller: keep every job and ask again later.
                tracing::warn!("{e}; asking again later");
                self.tracked = waiting;
                return out;
            }
        };
        for mut t in waiting {
            if let Some(q) = states.get(&t.job_id).filter(|q| q.active()) {
                match self.never_starts(&mut t, q) {
                    Some(failed) => out.push(failed),
                    None => self.tracked.push(t),
                }
                continue;
            }
            // Ended: it may have published between the two looks.
            if let Some(f) = self.published(&t) {
                out.push(f);
                continue;
            }
            let first_look = t.completed.is_none();
            let (first_seen, ending) = match t.completed.take() {
                Some(seen) => seen,
                None => {
                    let listed = states.get(&t.job_id).map(queue::Ending::from_queue);
                    (Instant::now(), queue::ending(&t.job_id).or(listed))
                }
            };
            // A job that completed cleanly has published; on a network file system this node
            // may not see the new key file for a while (cached directory attributes), so it is
            // looked for again before the job counts as failed.
            if ending.as_ref().is_some_and(queue::Ending::completed_cleanly) && first_seen.elapsed() < PUBLISH_GRACE {
                if first_look {
                    tracing::info!(
                        "{}: job {} completed, its result not in sight yet; looking again for up to {} s",
                        t.job.instance.name,
                        t.job_id,
                        PUBLISH_GRACE.as_secs()
                    );
                }
                t.completed = Some((first_seen, ending));
                self.tracked.push(t);
                continue;
            }
            claims::release(&self.store, &t.job.key, &t.job_id);
            match queue::verdict(ending.as_ref()) {
                Verdict::Retry(why) if t.attempts <= self.retries => {
                    tracing::warn!(
                        "{}: job {} {why} (log {}); submitting it again (attempt {} of {}), it resumes from its \
                         checkpoint",
                        t.job.instance.name,
                        t.job_id,
                        t.log.display(),
                        t.attempts + 1,
                        self.retries + 1
                    );
                    self.backlog.push_back((t.job, t.attempts + 1));
                }
                Verdict::Cancelled(why) if t.adopted => {
                    // The driver that submitted it was interrupted (or a person cancelled it);
                    // this run still needs the result, so it submits the job as its own.
                    tracing::warn!(
                        "{}: job {} (another cfrun's) was {why}; submitting it for this run",
                        t.job.instance.name,
                        t.job_id
                    );
                    self.backlog.push_back((t.job, t.attempts));
                }
                Verdict::Retry(why) | Verdict::Fail(why) | Verdict::Cancelled(why) => {
                    let tries = if t.attempts > 1 { format!(", after {} attempts", t.attempts) } else { String::new() };
                    let why = format!("job {} {why}{tries}; log {}{}", t.job_id, t.log.display(), log_tail(&t.log, 12));
                    out.push(Finished {
                        index: t.job.index,
                        result: Err(why),
                        seconds: t.since.elapsed().as_secs_f64(),
                    });
                }
            }
        }
        out
    }

    /// A pending job Slurm will never start as asked ([`pending::classify`]): named at the first
    /// look, and once its reason has held for `stuck_grace`, cancelled, its instance failed with
    /// the reason. A job followed from another driver too: it is no use to any run, and the
    /// driver that submitted it may be gone. Only named where the job was offered to several
    /// partitions (the reason may be one partition's).
    fn never_starts(&self, t: &mut Tracked, q: &QueueEntry) -> Option<Finished> {
        let name = &t.job.instance.name;
        let hint = match t.pending.look(&q.state, &q.reason, Instant::now(), self.stuck_grace, !self.several_partitions)
        {
            Look::Quiet => return None,
            Look::Held => {
                tracing::warn!("{name}: job {} is held ({}); it starts once released", t.job_id, q.reason);
                return None;
            }
            Look::Started => {
                tracing::info!("{name}: job {} is running on {}", t.job_id, q.node);
                return None;
            }
            Look::Requeued => {
                tracing::warn!(
                    "{name}: job {} is back in the queue after it had started (a node that went down, a preemption \
                     or a requeue by hand; `{}`); it runs again, from its last checkpoint where it has one",
                    t.job_id,
                    q.reason
                );
                return None;
            }
            Look::Stuck(hint) => {
                let then = if self.several_partitions {
                    "it was offered to several partitions, so it is left to start in another".to_string()
                } else {
                    format!("it is cancelled unless it starts within {} s", self.stuck_grace.as_secs_f64().ceil())
                };
                tracing::warn!("{name}: Slurm keeps job {} pending for `{}`: {hint}; {then}", t.job_id, q.reason);
                return None;
            }
            Look::Cancel(hint) => hint,
        };
        let cancelled = std::process::Command::new("scancel").arg(&t.job_id).status().is_ok_and(|s| s.success());
        if cancelled {
            claims::release(&self.store, &t.job.key, &t.job_id);
        }
        let left = if cancelled { "cancelled" } else { "could not be cancelled (scancel it by hand)" };
        let why = format!(
            "job {} cannot start: Slurm keeps it pending for `{}` ({hint}); it was {left}. Change the stage's \
             [stages.{}.resources] or the executor's partition, account or QOS",
            t.job_id, q.reason, t.job.instance.stage
        );
        Some(Finished { index: t.job.index, result: Err(why), seconds: t.since.elapsed().as_secs_f64() })
    }

    /// The queue's states of `ids`, counting its failures toward giving up ([`Silence`]).
    fn ask_queue(&mut self, ids: &[&str]) -> Result<HashMap<String, queue::QueueEntry>, String> {
        // A look at a dead controller takes its own timeout (about 20 s) to fail: the silence
        // counts from when the look began, not from when it gave up.
        let asked = Instant::now();
        let answer = queue::states(ids);
        match &answer {
            Ok(_) => self.silence.answered(),
            Err(e) => self.silence.failed(asked, e),
        }
        answer
    }

    /// Fails every job in flight or waiting to be submitted: the queue has not answered for too
    /// long (`why`). A submitted job is left as it is, claim and all: it may still be running,
    /// and a rerun follows it once the queue answers.
    fn give_up_on_queue(&mut self, why: &str) {
        if self.tracked.is_empty() && self.backlog.is_empty() {
            return;
        }
        tracing::error!("{why}; the jobs in flight are left as they are and counted failed");
        for t in std::mem::take(&mut self.tracked) {
            // One may have published while the queue was not answering.
            if let Some(f) = self.published(&t) {
                self.done.push(f);
                continue;
            }
            let error = format!(
                "{why}: job {} is left as it is (it may still be running and publish; a rerun follows it); log {}",
                t.job_id,
                t.log.display()
            );
            self.done.push(Finished {
                index: t.job.index,
                result: Err(error),
                seconds: t.since.elapsed().as_secs_f64(),
            });
        }
        let waiting: Vec<Job> = self.backlog.drain(..).map(|(job, _)| job).collect();
        self.fail_all(waiting, &format!("{why}: not submitted"));
    }

    /// Driver-side jobs that end within `d` (returning early when one does or on Ctrl-C).
    fn wait_local(&mut self, d: Duration) -> Vec<Finished> {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end || interrupted() {
                return Vec::new();
            }
            let slice = (end - now).min(Duration::from_millis(50));
            if self.local.in_flight() == 0 {
                std::thread::sleep(slice);
                continue;
            }
            let out = self.local.wait_timeout(slice);
            if !out.is_empty() {
                return out;
            }
        }
    }

    /// The job's record if its key is published (verified: downstream reads these bytes).
    fn published(&self, t: &Tracked) -> Option<Finished> {
        self.store.lookup(&t.job.key)?;
        let record = cached(&self.store, &t.job.instance.name, &t.job.key).ok().flatten()?;
        claims::release(&self.store, &t.job.key, &t.job_id);
        // A followed job computed for the driver that submitted it: here it counts as cached.
        let ours = !t.adopted
            && record.provenance.pointer("/slurm/job_id").and_then(|v| v.as_str()) == Some(t.job_id.as_str());
        let outcome = if ours { Outcome::Ran } else { Outcome::Cached };
        Some(Finished { index: t.job.index, result: Ok((record, outcome)), seconds: t.since.elapsed().as_secs_f64() })
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
        // So does the claim of a job the queue has not confirmed gone: a rerun follows it instead
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
        Err(e) => format!(" (unreadable: {e})"),
    }
}
