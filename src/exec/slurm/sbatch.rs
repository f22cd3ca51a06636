//! `sbatch` command lines: one job per instance, or one job array for several instances of one
//! stage with the same resources (a task reads its key from a list file by its array index).
//! Every job runs `cfrun exec --cache CACHE KEY`, the same code a local run uses.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exec::resources::Resources;
use crate::shell::quote;

/// What every submission shares.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// The `cfrun` binary the jobs run (absolute).
    pub exe: PathBuf,
    /// The cache (absolute).
    pub cache: PathBuf,
    /// Where job logs go.
    pub logs: PathBuf,
    /// The run's `--device`: that of every job that asks for a GPU (the others compute on the CPU,
    /// [`Resources::job_device`]).
    pub device: String,
    /// `--partition`, `--account`, `--qos`.
    pub partition: Option<String>,
    /// See `partition`.
    pub account: Option<String>,
    /// See `partition`.
    pub qos: Option<String>,
    /// Extra arguments, as written.
    pub extra: Vec<String>,
}

impl Submitter {
    /// The arguments of a submission, without `--wrap` (tested on its own).
    pub fn args(&self, name: &str, r: &Resources, array: Option<usize>) -> Vec<String> {
        let log = if array.is_some() { "%A_%a.log" } else { "%j.log" };
        // sbatch expands `%` patterns in the whole path (`%u`, the user): a `%` of the folder's
        // own is written `%%`, or the job cannot open its log and Slurm kills it.
        let logs = self.logs.to_string_lossy().replace('%', "%%");
        let mut a = vec![
            "--parsable".to_string(),
            format!("--job-name=cfrun:{name}"),
            format!("--output={}", Path::new(&logs).join(log).display()),
            format!("--cpus-per-task={}", r.cpus),
            format!("--mem={}M", r.mem_mb),
            format!("--time={}", r.time_min),
        ];
        if r.job_device(&self.device) != "cpu" {
            a.push(format!("--gres=gpu:{}", r.gpus));
        }
        for (flag, v) in [("partition", &self.partition), ("account", &self.account), ("qos", &self.qos)] {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        }
        if let Some(n) = array {
            a.push(format!("--array=0-{}", n - 1));
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The batch script of a job with resources `r`: `key` is a shell word (a quoted key, or an
    /// expansion reading the list).
    fn script(&self, r: &Resources, prelude: &str, key: &str) -> String {
        // The switches that change a network's bits are in every key: the job gets the driver's
        // whatever sbatch passes on (`--export=NONE` passes nothing), and its spec is checked.
        let math: String =
            crate::nn::math_switches::in_force().iter().map(|(k, v)| format!("export {k}={}\n", quote(v))).collect();
        format!(
            "{prelude}{math}export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\nexec {} exec --cache {} --device {} {key}",
            quote(&self.exe.to_string_lossy()),
            quote(&self.cache.to_string_lossy()),
            r.job_device(&self.device)
        )
    }

    /// Submits one job; returns its id.
    pub fn submit_one(&self, name: &str, r: &Resources, key: &str) -> Result<String, Refused> {
        let script = self.script(r, "", &quote(key));
        sbatch(&self.args(name, r, None), &script)
    }

    /// Submits an array whose task `i` computes line `i + 1` of `list`; returns the array's id.
    pub fn submit_array(&self, name: &str, r: &Resources, list: &Path, n: usize) -> Result<String, Refused> {
        let prelude = format!("key=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {})\n", quote(&list.to_string_lossy()));
        let script = self.script(r, &prelude, "\"$key\"");
        sbatch(&self.args(name, r, Some(n)), &script)
    }
}

/// Why `sbatch` gave no job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What it said.
    pub message: String,
    /// The controller was not reached or too busy: the same submission may pass later.
    pub passing: bool,
}

/// What `sbatch` prints when the controller could not take a job for now, not because the job is
/// wrong (Slurm's messages for a timeout, a controller down or restarting, one too busy).
const PASSING_REFUSALS: &[&str] = &[
    TIMED_OUT,
    "Unable to contact slurm controller",
    "Slurm temporarily unable to accept job",
    "Resource temporarily unavailable",
];

impl Refused {
    fn from_stderr(stderr: &str) -> Refused {
        let passing = PASSING_REFUSALS.iter().any(|p| stderr.contains(p));
        Refused { message: format!("sbatch refused the job: {}", stderr.trim()), passing }
    }

    fn permanent(message: String) -> Refused {
        Refused { message, passing: false }
    }
}

/// A comment no other submission carries: `cfrun:` and 16 hex digits of the process, the time
/// and a counter.
fn submission_comment() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = format!("{}:{}:{n}", std::process::id(), now.as_nanos());
    format!("cfrun:{}", &blake3::hash(seed.as_bytes()).to_hex()[..16])
}

/// What `sbatch` prints when its answer timed out: the controller may have taken the job.
const TIMED_OUT: &str = "Socket timed out on send/recv operation";

/// The waits between looks for the job of a timed-out `sbatch` while `squeue` itself fails.
const LOOK_AGAIN: [std::time::Duration; 3] =
    [std::time::Duration::from_secs(2), std::time::Duration::from_secs(5), std::time::Duration::from_secs(10)];

fn sbatch(args: &[String], script: &str) -> Result<String, Refused> {
    // Each submission carries a comment of its own, so that one whose answer timed out can be
    // found in the queue instead of submitted twice (the user's `--comment` in `sbatch_args`,
    // coming later, wins; then a timed-out job is submitted again).
    let comment = submission_comment();
    // A process group of its own: a Ctrl-C in the terminal reaches the whole foreground group,
    // and an `sbatch` killed after the controller took the job would leave it queued untracked
    // (the driver cancels only what it knows of). The driver handles the interrupt itself.
    let out = Command::new("sbatch")
        .arg(format!("--comment={comment}"))
        .args(args)
        .arg(format!("--wrap={script}"))
        .process_group(0)
        .output()
        .map_err(|e| Refused::permanent(format!("cannot run sbatch: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains(TIMED_OUT) {
            // One look that works is taken as the answer (a job the controller records only
            // after it runs untracked beside the one submitted anew); a look that fails (the
            // controller still busy) is tried again, as submitting anew at once could do the same.
            let mut waits = LOOK_AGAIN.iter();
            loop {
                match (super::queue::find_by_comment(&comment), waits.next()) {
                    (Ok(Some(id)), _) => {
                        tracing::warn!("sbatch timed out, but the controller took the job: {id}");
                        return Ok(id);
                    }
                    (Ok(None), _) | (Err(_), None) => break,
                    (Err(e), Some(wait)) => {
                        tracing::warn!("sbatch timed out, and looking for its job failed ({e}); again in {wait:?}");
                        std::thread::sleep(*wait);
                    }
                }
            }
        }
        return Err(Refused::from_stderr(&stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Refused::permanent(format!("sbatch printed no job id: {}", text.trim())));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_map_to_sbatch_flags() {
        let s = Submitter {
            exe: "/bin/cfrun".into(),
            cache: "/shared/cache".into(),
            logs: "/shared/cache/jobs/logs".into(),
            device: "cuda".into(),
            partition: Some("gpu".into()),
            account: None,
            qos: Some("long".into()),
            extra: vec!["--constraint=a100".into()],
        };
        let r = Resources { cpus: 4, mem_mb: 16384, gpus: 1, time_min: 720, in_driver: false };
        let a = s.args("train", &r, Some(8)).join(" ");
        for want in [
            "--cpus-per-task=4",
            "--mem=16384M",
            "--time=720",
            "--gres=gpu:1",
            "--partition=gpu",
            "--qos=long",
            "--array=0-7",
            "--constraint=a100",
            "%A_%a.log",
        ] {
            assert!(a.contains(want), "{want} in {a}");
        }
        assert!(!a.contains("--account"));
        let cpu = Submitter { device: "cpu".into(), ..s.clone() };
        assert!(!cpu.args("train", &r, None).join(" ").contains("--gres"));
        assert!(s.script(&r, "", "'k'").contains("exec '/bin/cfrun' exec --cache '/shared/cache' --device cuda 'k'"));
        // A job that asks for no GPU is granted none: it computes on the CPU (it was started with
        // `--device cuda` and no `--gres`).
        let kmeans = Resources { gpus: 0, ..r.clone() };
        assert!(!s.args("kmeans", &kmeans, None).join(" ").contains("--gres"));
        assert!(s.script(&kmeans, "", "'k'").contains("--device cpu 'k'"));
        // The driver's switches that change the bits go into the script, whatever sbatch passes.
        assert!(!s.script(&r, "", "'k'").contains("CFRUN_"), "none by default");
        let tf32 = std::collections::BTreeMap::from([("CFRUN_GEMM_TF32".to_string(), "1".to_string())]);
        let script = crate::nn::math_switches::as_if(&tf32, || s.script(&r, "", "'k'"));
        assert!(script.contains("export CFRUN_GEMM_TF32='1'\n"), "{script}");
        // A `%` of the cache's path is escaped from sbatch's patterns; the log's own are not.
        let odd = Submitter { logs: "/shared/c%u/jobs/logs".into(), ..s.clone() };
        assert!(odd.args("train", &r, None).contains(&"--output=/shared/c%%u/jobs/logs/%j.log".to_string()));
    }

    #[test]
    fn a_controller_that_did_not_answer_is_a_passing_refusal() {
        let timeout = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n";
        assert!(Refused::from_stderr(timeout).passing);
        let down = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)";
        assert!(Refused::from_stderr(down).passing);
        let gres = "sbatch: error: Invalid generic resource (gres) specification\n";
        let r = Refused::from_stderr(gres);
        assert!(!r.passing);
        assert_eq!(r.message, "sbatch refused the job: sbatch: error: Invalid generic resource (gres) specification");
    }
}
