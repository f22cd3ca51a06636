//! Why a job is still pending, as `squeue`'s reason says: most reasons clear by waiting
//! (`Resources`, `Priority`, a group limit), but a job that asks for more than its partition, QOS
//! or association allows one job, or that names an account it may not use, is never started as
//! asked. Unnoticed, its driver would wait for it forever without a word.

use std::time::{Duration, Instant};

/// How long a never-clearing reason must hold, from the first look that saw it, before the job
/// is cancelled, at most: one odd reading of the queue does not fail an instance. (A driver that
/// looks more often than every 10 s waits three of its longest spacings instead.)
pub const STUCK_GRACE: Duration = Duration::from_secs(30);

/// How long a job may wait for a reason that clears by itself before its driver says so: a
/// cluster whose nodes are all drained or down leaves it pending for as long as that lasts, and
/// the driver used to wait without a word (the reason showed only in `cfrun status`).
pub const LONG_WAIT: Duration = Duration::from_secs(600);

/// What a pending job's reason means for its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// It starts once the cluster has room (or an aggregate limit frees up): wait.
    Waits,
    /// Held by a person or an administrator: it starts once released, so wait, but say so.
    Held,
    /// Never started as asked: what the reason means, for the message.
    Never(&'static str),
}

/// Classifies `squeue`'s `%r` for a pending job (Slurm's job reason codes).
pub fn classify(reason: &str) -> Pending {
    let never = match reason {
        "PartitionConfig" => "it asks for more CPUs, memory or GPUs than the partition's nodes or limits allow",
        "PartitionTimeLimit" => "its time limit is above the partition's",
        "BadConstraints" => "its constraints cannot be satisfied",
        "DependencyNeverSatisfied" => "a job it depends on ended in a way its dependency excludes",
        "InvalidAccount" | "AccountNotAllowed" => "its account is not valid for this partition",
        "InvalidQOS" | "QOSNotAllowed" => "its QOS is not valid for this partition",
        "JobHeldUser" | "JobHeldAdmin" => return Pending::Held,
        // Not `PartitionNodeLimit`: Slurm also gives it while the nodes a job needs are down or
        // draining, which passes.
        // A per-job maximum (`QOSMaxCpuPerJobLimit`, `AssocMaxWallDurationLimit`, ...) is exceeded by
        // the request itself; the other `*Max*` reasons count jobs or usage and clear as jobs end.
        r if (r.starts_with("QOSMax") || r.starts_with("AssocMax"))
            && (r.contains("PerJob") || r.contains("WallDuration")) =>
        {
            "it asks for more than a per-job limit of its QOS or association"
        }
        _ => return Pending::Waits,
    };
    Pending::Never(never)
}

/// What a driver does about one pending job at one look at the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Nothing to say.
    Quiet,
    /// Name the hold (once per hold).
    Held,
    /// Name the never-clearing reason (the first look that sees one): it is cancelled unless it
    /// starts within the grace.
    Stuck(&'static str),
    /// The reason has held for the grace: cancel the job and fail its instance.
    Cancel(&'static str),
    /// Pending again after it had started: requeued (its node went down, a preemption, an
    /// `scontrol requeue`). Named once each time.
    Requeued,
    /// Seen started for the first time since it was submitted or requeued.
    Started,
    /// Still pending, for a reason that clears by itself, [`LONG_WAIT`] after its first look
    /// (named once per wait).
    LongWait,
}

/// One tracked job's pending history: since when a never-clearing reason has held (whichever
/// one: a reason that flips between two such reasons is still stuck), and whether its hold was
/// named.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    stuck_since: Option<Instant>,
    held_named: bool,
    /// Since when it has been pending (from the first look that saw it so), and whether that
    /// long wait was named.
    waiting_since: Option<Instant>,
    wait_named: bool,
    /// Seen started since it was last pending.
    started: bool,
}

impl Watch {
    /// What to do about a job the queue lists as `state` for `reason` at `now`. `may_cancel` is
    /// false where the reason may be one partition's of several the job was offered to (then the
    /// job is only named).
    pub fn look(&mut self, state: &str, reason: &str, now: Instant, grace: Duration, may_cancel: bool) -> Look {
        // A requeued job shows one of these (a hold flag is shown instead of `PENDING`);
        // `SPECIAL_EXIT` is requeued and held, whatever reason the queue gives.
        let pending = matches!(state, "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SPECIAL_EXIT");
        // Each start and each requeue begins the pending history afresh.
        if pending && std::mem::take(&mut self.started) {
            *self = Watch::default();
            return Look::Requeued;
        }
        if matches!(state, "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED") && !self.started {
            *self = Watch { started: true, ..Watch::default() };
            return Look::Started;
        }
        let class = match state {
            "SPECIAL_EXIT" => Pending::Held,
            _ if pending => classify(reason),
            _ => Pending::Waits,
        };
        let hint = match class {
            Pending::Never(hint) => hint,
            Pending::Held => {
                // A hold stops the clock: released, the job gets its full grace again.
                self.stuck_since = None;
                return if std::mem::replace(&mut self.held_named, true) { Look::Quiet } else { Look::Held };
            }
            Pending::Waits => {
                self.stuck_since = None;
                self.held_named = false;
                if !pending {
                    return Look::Quiet;
                }
                let since = *self.waiting_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= LONG_WAIT && !std::mem::replace(&mut self.wait_named, true) {
                    return Look::LongWait;
                }
                return Look::Quiet;
            }
        };
        self.held_named = false;
        match self.stuck_since {
            None => {
                self.stuck_since = Some(now);
                Look::Stuck(hint)
            }
            Some(since) if may_cancel && now.saturating_duration_since(since) >= grace => Look::Cancel(hint),
            Some(_) => Look::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_never_clearing_reason_is_named_then_cancelled_after_the_grace() {
        let (t0, grace) = (Instant::now(), Duration::from_secs(30));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Watch::default();
        assert_eq!(w.look("PENDING", "Priority", at(0), grace, true), Look::Quiet);
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(1), grace, true), Look::Stuck(_)));
        assert_eq!(w.look("PENDING", "PartitionConfig", at(30), grace, true), Look::Quiet, "29 s in");
        // Another never-clearing reason does not restart the clock.
        assert!(matches!(w.look("PENDING", "PartitionTimeLimit", at(31), grace, true), Look::Cancel(_)));

        // A hold stops the clock, and is named once.
        let mut w = Watch::default();
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(0), grace, true), Look::Stuck(_)));
        assert_eq!(w.look("PENDING", "JobHeldUser", at(10), grace, true), Look::Held);
        assert_eq!(w.look("PENDING", "JobHeldUser", at(20), grace, true), Look::Quiet);
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(40), grace, true), Look::Stuck(_)), "a new grace");
        assert_eq!(w.look("PENDING", "PartitionConfig", at(60), grace, true), Look::Quiet);
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(70), grace, true), Look::Cancel(_)));

        // Starting clears it; a job offered to several partitions is only named.
        let mut w = Watch::default();
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(0), grace, false), Look::Stuck(_)));
        assert_eq!(w.look("PENDING", "PartitionConfig", at(100), grace, false), Look::Quiet);
        assert_eq!(w.look("RUNNING", "None", at(101), grace, true), Look::Started);
        assert_eq!(w.look("PENDING", "PartitionConfig", at(102), grace, true), Look::Requeued);
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(103), grace, true), Look::Stuck(_)));
    }

    /// A job pending again after it ran was requeued: said once, and again after it runs anew;
    /// a never-clearing reason after it is judged afresh.
    #[test]
    fn a_job_pending_after_it_started_was_requeued() {
        let (t0, grace) = (Instant::now(), Duration::from_secs(30));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Watch::default();
        assert_eq!(w.look("PENDING", "Priority", at(0), grace, true), Look::Quiet);
        assert_eq!(w.look("RUNNING", "None", at(1), grace, true), Look::Started);
        assert_eq!(w.look("RUNNING", "None", at(1), grace, true), Look::Quiet, "said once");
        assert_eq!(w.look("PENDING", "BeginTime", at(2), grace, true), Look::Requeued);
        assert_eq!(w.look("PENDING", "BeginTime", at(3), grace, true), Look::Quiet);
        assert_eq!(w.look("COMPLETING", "None", at(4), grace, true), Look::Started);
        assert_eq!(w.look("PENDING", "NodeDown", at(5), grace, true), Look::Requeued);
        assert!(matches!(w.look("PENDING", "PartitionConfig", at(6), grace, true), Look::Stuck(_)));
        // Requeued with a hold: the hold's state, then named as a hold.
        assert_eq!(w.look("RUNNING", "None", at(7), grace, true), Look::Started);
        assert_eq!(w.look("REQUEUE_HOLD", "JobHeldAdmin", at(8), grace, true), Look::Requeued);
        assert_eq!(w.look("REQUEUE_HOLD", "JobHeldAdmin", at(9), grace, true), Look::Held);
        // Held in `SPECIAL_EXIT` (the reason as Slurm 22 gives it): requeued, then a hold, once.
        let special = "job requeued in held state";
        assert_eq!(w.look("RUNNING", "None", at(10), grace, true), Look::Started);
        assert_eq!(w.look("SPECIAL_EXIT", special, at(11), grace, true), Look::Requeued);
        assert_eq!(w.look("SPECIAL_EXIT", special, at(12), grace, true), Look::Held);
        assert_eq!(w.look("SPECIAL_EXIT", special, at(13), grace, true), Look::Quiet);
    }

    /// A job pending for a reason that clears by itself (all nodes drained, say) is named once
    /// after [`LONG_WAIT`], and again after it started and waits anew.
    #[test]
    fn a_long_wait_is_named_once() {
        let (t0, grace) = (Instant::now(), Duration::from_secs(30));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let wait = LONG_WAIT.as_secs();
        let mut w = Watch::default();
        assert_eq!(w.look("PENDING", "ReqNodeNotAvail", at(0), grace, true), Look::Quiet);
        assert_eq!(w.look("PENDING", "Resources", at(wait - 1), grace, true), Look::Quiet);
        assert_eq!(w.look("PENDING", "Resources", at(wait), grace, true), Look::LongWait);
        assert_eq!(w.look("PENDING", "Resources", at(wait + 60), grace, true), Look::Quiet, "named once");
        assert_eq!(w.look("RUNNING", "None", at(wait + 61), grace, true), Look::Started);
        assert_eq!(w.look("PENDING", "NodeDown", at(wait + 62), grace, true), Look::Requeued);
        assert_eq!(w.look("PENDING", "Resources", at(wait + 63), grace, true), Look::Quiet);
        assert_eq!(w.look("PENDING", "Resources", at(2 * wait + 63), grace, true), Look::LongWait, "a new wait");
    }

    #[test]
    fn only_a_request_beyond_a_limit_is_never_started() {
        for waits in ["Resources", "Priority", "None", "BeginTime", "Dependency", "ReqNodeNotAvail", "AssocGrpCpuLimit"]
        {
            assert_eq!(classify(waits), Pending::Waits, "{waits}");
        }
        // Counts of jobs clear as other jobs end.
        for waits in ["QOSMaxJobsPerUserLimit", "AssocMaxJobsLimit", "QOSMaxSubmitJobPerUserLimit"] {
            assert_eq!(classify(waits), Pending::Waits, "{waits}");
        }
        for never in [
            "PartitionConfig",
            "PartitionTimeLimit",
            "BadConstraints",
            "InvalidAccount",
            "QOSMaxCpuPerJobLimit",
            "QOSMaxWallDurationPerJobLimit",
            "AssocMaxWallDurationLimit",
        ] {
            assert!(matches!(classify(never), Pending::Never(_)), "{never}");
        }
        assert_eq!(classify("JobHeldUser"), Pending::Held);
    }
}
