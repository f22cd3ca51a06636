//! The Slurm executor's submitting side: the backlog grouped into arrays of one stage and one
//! set of resources, each key claimed before its `sbatch`, a refusal retried later or failed.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use super::claims::{self, Claim};
use super::sbatch::Refused;
use super::{SlurmExecutor, Tracked, Waiting};
use crate::exec::compute::cached;
use crate::exec::executor::Finished;
use crate::exec::interrupt::interrupted;
use crate::exec::job::{jobs_dir_in, write_spec, Job};
use crate::exec::outcome::Outcome;
use crate::exec::resources::Resources;

impl SlurmExecutor {
    /// Submits from the backlog while there is room, grouping same-stage, same-resources jobs
    /// into arrays.
    pub(super) fn flush(&mut self) {
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
    pub(super) fn take_submittable(&mut self, room: usize) -> Vec<Waiting> {
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
    pub(super) fn serve_cached(&mut self, job: &Job) -> bool {
        // An unreadable record goes to a job, which fails naming it.
        let Ok(Some(record)) = cached(&self.store, &job.instance.name, &job.key) else { return false };
        self.done.push(Finished { index: job.index, result: Ok((record, Outcome::Cached)), seconds: 0.0 });
        true
    }

    /// Follows the live jobs another driver already submitted for some of these keys. Returns
    /// the jobs to submit, the right to submit each held in `submitting`, and those to look at
    /// again next round (another driver is submitting the key right now, or the queue did not
    /// answer, where submitting would risk a second job for one key).
    pub(super) fn adopt_claimed(&mut self, take: Vec<Waiting>) -> (Vec<Waiting>, Vec<Waiting>) {
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
                Some(c) if claims::driver_gone(&self.store, &c, self.mark.name()) => {
                    tracing::warn!(
                        "{}: taking over job {}: the cfrun that submitted it is gone (killed outright?); this run \
                         tracks it as its own, and its Ctrl-C cancels it",
                        job.instance.name,
                        c.job_id
                    );
                    self.track(job, c.job_id, c.log, attempts);
                }
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
    pub(super) fn submit_group(&mut self, stage: &str, r: &Resources, attempts: u32, jobs: Vec<Job>) -> Vec<Job> {
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

    pub(super) fn accepted(&mut self) {
        self.submitted += 1;
        self.backoff.accepted();
    }

    /// A refused submission of `jobs`: returned to be tried again when the refusal passes and the
    /// controller has not refused for too long, else failed. A timed-out `sbatch` may still have
    /// queued its job; the copy submitted again then waits on the key's lock and is served the
    /// first one's result.
    pub(super) fn refused(&mut self, jobs: Vec<Job>, refusal: Refused) -> Vec<Job> {
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

    pub(super) fn track(&mut self, job: Job, job_id: String, log: PathBuf, attempts: u32) {
        let claim = Claim {
            job_id: job_id.clone(),
            log: log.clone(),
            instance: job.instance.name.clone(),
            driver: Some(self.mark.name().to_string()),
        };
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

    pub(super) fn fail_all(&mut self, jobs: Vec<Job>, why: &str) {
        for job in jobs {
            self.done.push(Finished { index: job.index, result: Err(why.to_string()), seconds: 0.0 });
        }
    }
}
