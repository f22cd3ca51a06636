//! Asking Slurm about jobs: one `squeue` call for every job in flight (array tasks expanded), and
//! `scontrol show job` only for a job that ended without publishing, to learn why.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A job as `squeue` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `NODE_FAIL`, ...
    pub state: String,
    /// The node it runs on (empty while pending).
    pub node: String,
    /// Why it is not running (`Resources`, `PartitionConfig`, ...; `None` while running).
    pub reason: String,
}

impl QueueEntry {
    /// Whether the job may still publish (queued, running, or on its way back to the queue).
    pub fn active(&self) -> bool {
        is_active(&self.state)
    }
}

/// Whether a Slurm job state means the job has not ended: any state but those that name an end.
/// `SPECIAL_EXIT` is not one: the job was requeued and held (by an epilog, or `scontrol
/// requeuehold state=specialexit`), and runs again once released.
/// A state this cfrun does not know (a newer Slurm's) counts as live: a live job taken for ended
/// would be reported failed or submitted twice, while an ended one taken for live is found ended
/// once the queue forgets it.
pub fn is_active(state: &str) -> bool {
    !matches!(
        state,
        "COMPLETED"
            | "CANCELLED"
            | "FAILED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "OUT_OF_MEMORY"
            | "REVOKED"
    )
}

/// The state of every listed job (ids like `123` or `123_4`) that Slurm still remembers; a job
/// missing from the map ended long enough ago to be forgotten. One `squeue` call.
pub fn states(ids: &[&str]) -> Result<HashMap<String, QueueEntry>, String> {
    let mut bases: Vec<&str> = ids.iter().map(|id| id.split('_').next().unwrap_or(id)).collect();
    bases.sort_unstable();
    bases.dedup();
    if bases.is_empty() {
        return Ok(HashMap::new());
    }
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--states=all", "--format=%i|%T|%N|%r", "--jobs"])
        .arg(bases.join(","))
        .process_group(0)
        .output()
        .map_err(|e| format!("cannot run squeue: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Every listed job is gone (squeue refuses a list of only unknown ids).
        if stderr.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(format!("squeue failed: {}", stderr.trim()));
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

/// The id of this user's job whose comment is `comment` (of an array, the array's id), if the
/// queue holds one, live or recently ended. One `squeue` call (the user by uid, which every
/// Slurm takes; `--me` needs 20.11).
pub fn find_by_comment(comment: &str) -> Result<Option<String>, String> {
    // SAFETY: getuid cannot fail and touches no memory.
    let user = format!("--user={}", unsafe { libc::getuid() });
    // Its own process group, as `sbatch`'s: a Ctrl-C that killed this look would leave a job the
    // controller took untracked, and so never cancelled.
    let out = Command::new("squeue")
        .args(["--noheader", user.as_str(), "--states=all", "--format=%F|%k"])
        .process_group(0)
        .output()
        .map_err(|e| format!("cannot run squeue: {e}"))?;
    if !out.status.success() {
        return Err(format!("squeue failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(job_with_comment(&String::from_utf8_lossy(&out.stdout), comment))
}

/// Of `%F|%k` lines, the id on the first line whose comment is `comment`.
fn job_with_comment(text: &str, comment: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (id, c) = line.trim().split_once('|')?;
        let id = id.trim();
        (c.trim() == comment && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
    })
}

/// Parses `%i|%T|%N|%r` lines.
pub fn parse_squeue(text: &str) -> HashMap<String, QueueEntry> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().split('|');
            let id = parts.next()?.trim();
            let state = parts.next()?.trim();
            let node = parts.next().unwrap_or("").trim();
            let reason = parts.next().unwrap_or("").trim();
            let entry = QueueEntry { state: state.into(), node: node.into(), reason: reason.into() };
            (!id.is_empty()).then(|| (id.to_string(), entry))
        })
        .collect()
}

/// How long Slurm remembers an ended job (`MinJobAge` of `scontrol show config`); `None` when it
/// cannot be read or is 0 (never forgotten).
pub fn min_job_age() -> Option<std::time::Duration> {
    let out = Command::new("scontrol").args(["show", "config"]).process_group(0).output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_min_job_age(&String::from_utf8_lossy(&out.stdout))
}

/// The `MinJobAge = N sec` line of `scontrol show config`.
fn parse_min_job_age(text: &str) -> Option<std::time::Duration> {
    let line = text.lines().find(|l| l.trim_start().starts_with("MinJobAge"))?;
    let value = line.split_once('=')?.1.trim();
    let seconds: u64 = value.split_whitespace().next()?.parse().ok()?;
    (seconds > 0).then(|| std::time::Duration::from_secs(seconds))
}

/// The partitions among `names` that the controller says do not exist, and the ones it has;
/// nothing where it did not answer (then `sbatch` says so for each job).
pub fn unknown_partitions(names: &[&str]) -> (Vec<String>, Vec<String>) {
    let ask = |args: &[&str]| Command::new("scontrol").args(args).process_group(0).output().ok();
    let unknown: Vec<String> = names
        .iter()
        .filter(|name| {
            ask(&["show", "partition", name, "-o"]).is_some_and(|o| {
                !o.status.success()
                    && String::from_utf8_lossy(&o.stdout).contains(&format!("Partition {name} not found"))
            })
        })
        .map(|n| n.to_string())
        .collect();
    if unknown.is_empty() {
        return (unknown, Vec::new());
    }
    let known = ask(&["show", "partition", "-o"])
        .filter(|o| o.status.success())
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.lines()
                .filter_map(|l| l.strip_prefix("PartitionName=")?.split_whitespace().next().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (unknown, known)
}

/// How a job ended, from `scontrol show job` (when Slurm still remembers it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ending {
    /// `JobState`.
    pub state: String,
    /// The exit status of the batch script.
    pub exit_code: i32,
    /// The signal that killed it (0 when none).
    pub signal: i32,
    /// `Reason`.
    pub reason: String,
    /// Read from `squeue`'s state alone (`scontrol show job` did not answer): the exit code and
    /// signal are not known.
    pub from_queue: bool,
}

impl Ending {
    /// What `squeue` said of an ended job, for when `scontrol show job` does not answer: a failed
    /// look is no reason to take a job Slurm still lists for one that vanished (and run it again).
    pub fn from_queue(q: &QueueEntry) -> Ending {
        Ending { state: q.state.clone(), from_queue: true, ..Ending::default() }
    }

    /// Completed with exit status 0 and no signal: the job's `cfrun exec` published its key.
    pub fn completed_cleanly(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == 0 && self.signal == 0
    }
}

/// `scontrol show job ID`, or `None` when Slurm has forgotten the job.
pub fn ending(id: &str) -> Option<Ending> {
    // Its own process group: a Ctrl-C must not kill the look and leave the job "forgotten".
    let out = Command::new("scontrol").args(["show", "job", id]).process_group(0).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse_ending(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses the `JobState=`, `ExitCode=A:B` and `Reason=` fields of `scontrol show job`.
pub fn parse_ending(text: &str) -> Ending {
    let mut e = Ending::default();
    for word in text.split_whitespace() {
        if let Some(v) = word.strip_prefix("JobState=") {
            e.state = v.to_string();
        } else if let Some(v) = word.strip_prefix("ExitCode=") {
            let (code, sig) = v.split_once(':').unwrap_or((v, "0"));
            e.exit_code = code.parse().unwrap_or(0);
            e.signal = sig.parse().unwrap_or(0);
        } else if let Some(v) = word.strip_prefix("Reason=") {
            e.reason = v.to_string();
        }
    }
    e
}

/// What to do about a job that ended without publishing its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The node or the scheduler took the job away (or it was killed): run it again.
    Retry(String),
    /// The stage itself failed: report it.
    Fail(String),
    /// Cancelled (`scancel`), by a person or by the driver that submitted it on Ctrl-C: report
    /// it, unless this driver only followed the job for its own run, which still needs it.
    Cancelled(String),
}

/// Classifies an ended job. `None` means Slurm no longer remembers it.
pub fn verdict(ending: Option<&Ending>) -> Verdict {
    let Some(e) = ending else {
        return Verdict::Retry("vanished from the queue without publishing".into());
    };
    let state = e.state.as_str();
    // The states that name their cause come before the signal: a person's `scancel` of a
    // running job ends CANCELLED with signal 15, and an OOM kill OUT_OF_MEMORY with a signal too;
    // neither would go better a second time.
    match state {
        "NODE_FAIL" | "PREEMPTED" | "TIMEOUT" | "BOOT_FAIL" | "DEADLINE" => Verdict::Retry(format!("ended {state}")),
        "OUT_OF_MEMORY" => Verdict::Fail("ran out of memory: raise the stage's resources.mem".into()),
        "CANCELLED" if matches!(e.reason.as_str(), "" | "None") => Verdict::Cancelled("cancelled".into()),
        "CANCELLED" => Verdict::Cancelled(format!("cancelled ({})", e.reason)),
        _ if killed_from_outside(e.signal) => Verdict::Retry(format!("killed by signal {} ({state})", e.signal)),
        _ if e.signal != 0 => Verdict::Fail(crashed(e.signal, state)),
        _ if matches!(e.exit_code, 137 | 143) => {
            Verdict::Retry(format!("killed (exit {} = signal {}, {state})", e.exit_code, e.exit_code - 128))
        }
        "COMPLETED" => Verdict::Fail(
            "the job completed but its result never showed in the cache: do the nodes share this cache directory?"
                .into(),
        ),
        _ if e.from_queue => Verdict::Fail(format!(
            "ended {state} (squeue's word: `scontrol show job` did not answer, so its exit code is not known)"
        )),
        _ => Verdict::Fail(format!("ended {state} with exit code {}", e.exit_code)),
    }
}

/// Whether a job's signal came from outside it (`kill`, the out-of-memory killer, a node
/// shutting down), which a second attempt may survive. An abort or a bad memory access is the
/// job's own doing and would only repeat.
fn killed_from_outside(signal: i32) -> bool {
    [libc::SIGKILL, libc::SIGTERM, libc::SIGHUP, libc::SIGINT].contains(&signal)
}

/// Why a job that crashed by its own signal failed, with the likely cure where there is one.
fn crashed(signal: i32, state: &str) -> String {
    let hint = if signal == libc::SIGABRT {
        "; a failed allocation (`memory allocation of N bytes failed` in its log) means the stage needs more \
         memory: raise its resources.mem"
    } else {
        ""
    };
    format!("crashed: {} ({state}), which a second attempt would repeat{hint}", signal_words(signal))
}

/// A signal by name where it is a common one.
fn signal_words(signal: i32) -> String {
    use std::os::unix::process::ExitStatusExt;
    let described = crate::exit_status::describe(std::process::ExitStatus::from_raw(signal));
    described.strip_prefix("was ").unwrap_or(&described).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_and_array_tasks() {
        let m = parse_squeue("12_0|COMPLETED|vm|None\n12_1|RUNNING|vm|None\n13|PENDING||PartitionConfig\n");
        assert_eq!(m["12_1"], QueueEntry { state: "RUNNING".into(), node: "vm".into(), reason: "None".into() });
        assert_eq!((m["13"].node.as_str(), m["13"].reason.as_str()), ("", "PartitionConfig"));
        assert!(m["13"].active() && !m["12_0"].active());
        for live in ["RUNNING", "COMPLETING", "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "A_STATE_OF_A_NEWER_SLURM"] {
            assert!(is_active(live), "{live}");
        }
        for ended in ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"] {
            assert!(!is_active(ended), "{ended}");
        }
    }

    #[test]
    fn min_job_age_is_read_from_the_config() {
        let text = "Configuration data as of 2026-12-04T06:00:00\nMaxJobCount             = 10000\n\
                    MinJobAge               = 300 sec\nMpiDefault              = none\n";
        assert_eq!(parse_min_job_age(text), Some(std::time::Duration::from_secs(300)));
        assert_eq!(parse_min_job_age("MinJobAge = 0 sec\n"), None, "0: never forgotten");
        assert_eq!(parse_min_job_age("MaxJobCount = 1\n"), None);
    }

    #[test]
    fn only_a_clean_completion_counts_as_published() {
        let clean = parse_ending("JobId=9\n   JobState=COMPLETED Reason=None\n   ExitCode=0:0\n");
        assert!(clean.completed_cleanly());
        assert!(!Ending { exit_code: 1, ..clean.clone() }.completed_cleanly());
        assert!(!Ending { state: "FAILED".into(), ..clean }.completed_cleanly());
    }

    #[test]
    fn a_job_is_found_by_its_comment() {
        let text = "560|cfrun:abc\n561|(null)\n562|cfrun:abcd\n56x|cfrun:bad\n";
        assert_eq!(job_with_comment(text, "cfrun:abcd"), Some("562".to_string()));
        assert_eq!(job_with_comment(text, "cfrun:ab"), None);
        assert_eq!(job_with_comment(text, "cfrun:bad"), None, "an id like sbatch's: digits only");
    }

    #[test]
    fn endings_are_classified() {
        let killed = parse_ending("JobId=7 JobName=x\n   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)\n   Requeue=1 ExitCode=0:9\n");
        assert_eq!((killed.state.as_str(), killed.exit_code, killed.signal), ("FAILED", 0, 9));
        assert!(matches!(verdict(Some(&killed)), Verdict::Retry(_)));
        let failed = Ending { state: "FAILED".into(), exit_code: 1, ..Default::default() };
        assert!(matches!(verdict(Some(&failed)), Verdict::Fail(_)));
        for s in ["NODE_FAIL", "PREEMPTED", "TIMEOUT"] {
            let e = Ending { state: s.into(), ..Default::default() };
            assert!(matches!(verdict(Some(&e)), Verdict::Retry(_)), "{s}");
        }
        assert!(matches!(verdict(None), Verdict::Retry(_)));
        let cancelled = Ending { state: "CANCELLED".into(), ..Default::default() };
        assert!(matches!(verdict(Some(&cancelled)), Verdict::Cancelled(_)));
        // What Slurm reports for a running job a person cancelled, and for an OOM kill: failed,
        // not resubmitted (they once were, the signal being checked first).
        let scancelled = parse_ending("JobId=8\n   JobState=CANCELLED Reason=None\n   ExitCode=0:15\n");
        assert_eq!(scancelled.signal, 15);
        assert_eq!(verdict(Some(&scancelled)), Verdict::Cancelled("cancelled".into()), "Slurm's `None` is not shown");
        // Only squeue's word (scontrol did not answer): a failure is reported, not run again.
        let listed = QueueEntry { state: "FAILED".into(), node: "vm".into(), reason: "NonZeroExitCode".into() };
        let ending = Ending::from_queue(&listed);
        assert!(
            matches!(verdict(Some(&ending)), Verdict::Fail(ref why) if why.contains("scontrol show job")),
            "{ending:?}"
        );
        assert!(Ending::from_queue(&QueueEntry { state: "COMPLETED".into(), ..listed.clone() }).completed_cleanly());
        let oom = Ending { state: "OUT_OF_MEMORY".into(), signal: 125, ..Default::default() };
        assert_eq!(verdict(Some(&oom)), Verdict::Fail("ran out of memory: raise the stage's resources.mem".into()));
        // The job's own crash (an abort on a failed allocation, a bad memory access) fails at
        // once: it was submitted three times, the same way each time.
        let aborted = parse_ending("JobId=9\n   JobState=FAILED Reason=NonZeroExitCode\n   ExitCode=0:6\n");
        let Verdict::Fail(why) = verdict(Some(&aborted)) else { panic!("an abort retried") };
        assert!(why.starts_with("crashed: killed by SIGABRT") && why.contains("resources.mem"), "{why}");
        let segv = Ending { state: "FAILED".into(), signal: libc::SIGSEGV, ..Default::default() };
        let Verdict::Fail(why) = verdict(Some(&segv)) else { panic!("a segfault retried") };
        assert!(why.contains("SIGSEGV") && !why.contains("resources.mem"), "{why}");
        let term = Ending { state: "FAILED".into(), signal: libc::SIGTERM, ..Default::default() };
        assert!(matches!(verdict(Some(&term)), Verdict::Retry(_)));
    }
}
