//! The Slurm executor's watching side: the cache asked first (a published key is done), the
//! queue only about the rest, and a job that ended without publishing classified.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::pending::Look;
use super::queue::{self, QueueEntry, Verdict};
use super::{claims, log_tail, SlurmExecutor, Tracked, PUBLISH_GRACE};
use crate::exec::compute::cached;
use crate::exec::executor::Finished;
use crate::exec::interrupt::interrupted;
use crate::exec::job::Job;
use crate::exec::outcome::Outcome;

impl SlurmExecutor {
    /// Looks at the cache for every tracked job, and at the queue for those not published.
    pub(super) fn poll(&mut self, ask_queue: bool) -> Vec<Finished> {
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
                    let resumes = match crate::cache::checkpoint::latest(&self.store.checkpoint_dir(&t.job.key)) {
                        Ok(Some(_)) => ", it resumes from its last checkpoint",
                        _ => ", from the start (it left no checkpoint)",
                    };
                    tracing::warn!(
                        "{}: job {} {why} (log {}); submitting it again (attempt {} of {}){resumes}",
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
    pub(super) fn never_starts(&self, t: &mut Tracked, q: &QueueEntry) -> Option<Finished> {
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
            Look::LongWait => {
                tracing::warn!(
                    "{name}: job {} has waited {} min in the queue ({}); `sinfo` shows whether the nodes it may use \
                     are down or drained",
                    t.job_id,
                    super::pending::LONG_WAIT.as_secs() / 60,
                    q.reason
                );
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
    pub(super) fn ask_queue(&mut self, ids: &[&str]) -> Result<HashMap<String, queue::QueueEntry>, String> {
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
    /// and a rerun takes it over once the queue answers.
    pub(super) fn give_up_on_queue(&mut self, why: &str) {
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
                "{why}: job {} is left as it is (it may still be running and publish; a rerun takes it over); log {}",
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
    pub(super) fn wait_local(&mut self, d: Duration) -> Vec<Finished> {
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
    pub(super) fn published(&self, t: &Tracked) -> Option<Finished> {
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
