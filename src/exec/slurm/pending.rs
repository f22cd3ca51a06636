//! Why a job is still pending, as `squeue`'s reason says: most reasons clear by waiting
//! (`Resources`, `Priority`, a group limit), but a job that asks for more than its partition, QOS
//! or association allows one job, or that names an account it may not use, is never started as
//! asked. Unnoticed, its driver would wait for it forever without a word.

use std::time::Duration;

/// How long a never-clearing reason must hold, from the first look that saw it, before the job
/// is cancelled, at most: one odd reading of the queue does not fail an instance. (A driver that
/// looks more often than every 10 s waits three of its longest spacings instead.)
pub const STUCK_GRACE: Duration = Duration::from_secs(30);

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
        "PartitionNodeLimit" => "its node count is outside the partition's limits",
        "BadConstraints" => "its constraints cannot be satisfied",
        "DependencyNeverSatisfied" => "a job it depends on ended in a way its dependency excludes",
        "InvalidAccount" | "AccountNotAllowed" => "its account is not valid for this partition",
        "InvalidQOS" | "QOSNotAllowed" => "its QOS is not valid for this partition",
        "JobHeldUser" | "JobHeldAdmin" => return Pending::Held,
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "PartitionNodeLimit",
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
