//! The cluster side of the CLI: `run`'s executor flags, `cfrun exec` (what a job runs), and the
//! queued/running column of `status`.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::open::{load, open_store_for_job};
use super::Global;
use crate::cache::fs_check;
use crate::cache::{KeyRecord, Store};
use crate::config::executor::MAX_RETRIES;
use crate::config::{ExecutorKind, ExecutorSettings};
use crate::exec::compute::{compute_guarded, ComputeEnv};
use crate::exec::device::{self, DeviceChoice};
use crate::exec::evaluate::{self, InstanceState};
use crate::exec::job::{load_job, Job};
use crate::exec::job_pool::run_on_pool;
use crate::exec::resources::for_instance;
use crate::exec::slurm::{claims, queue};
use crate::graph::Plan;

/// Where `cfrun run` runs instances; each flag overrides the file's `[executor]` field.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// Where instances run: `local` (threads of this process), `processes` (a `cfrun exec`
    /// child process each, on this machine) or `slurm` (sbatch jobs; the cache must be shared
    /// with the nodes). Default: `[executor] kind`, else local.
    #[arg(long, value_enum)]
    executor: Option<ExecutorKind>,
    /// Cluster jobs submitted and not yet finished, at most (default 500).
    #[arg(long)]
    max_jobs: Option<u32>,
    /// Slurm partition of every job.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm account of every job.
    #[arg(long)]
    account: Option<String>,
    /// Slurm QOS of every job.
    #[arg(long)]
    qos: Option<String>,
    /// One more sbatch argument, repeatable (e.g. --sbatch-arg=--constraint=a100).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true, value_name = "ARG")]
    sbatch_args: Vec<String>,
    /// Resubmissions of a job killed, preempted, timed out or lost with its node (default 2,
    /// at most 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=MAX_RETRIES as i64))]
    retries: Option<u32>,
    /// Ops run in the driver instead of as jobs, comma-separated ("" for none). Default:
    /// label_noise,weak_tags,permutations,concat,table,plot.
    #[arg(long, value_delimiter = ',', value_name = "OPS")]
    in_driver: Option<Vec<String>>,
    /// The longest wait, in seconds, between two looks at the cache and the queue (default 10).
    #[arg(long, value_name = "SECONDS")]
    poll_max: Option<f64>,
    /// How long, in seconds, the queue may fail every look before the jobs it hides fail
    /// (default 1800; they are left running, and a rerun takes them over).
    #[arg(long, value_name = "SECONDS")]
    queue_patience: Option<f64>,
}

impl ExecutorArgs {
    /// The user configuration's `[executor]`, the experiment file's over it, these flags over both.
    pub fn settings(&self, file: &ExecutorSettings) -> Result<ExecutorSettings, Failure> {
        let in_driver = self
            .in_driver
            .as_ref()
            .map(|ops| ops.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>());
        let known = crate::ops::names();
        if let Some(bad) = in_driver.iter().flatten().find(|op| !known.contains(&op.as_str())) {
            return Err(Failure::argument(
                "--in-driver",
                format!("--in-driver: unknown op `{bad}`; valid: {}", known.join(", ")),
            ));
        }
        use crate::config::executor::{poll_max_ok, queue_patience_ok, POLL_MAX_VALID, QUEUE_PATIENCE_VALID};
        let seconds = [
            ("--poll-max", self.poll_max, poll_max_ok as fn(f64) -> bool, POLL_MAX_VALID),
            ("--queue-patience", self.queue_patience, queue_patience_ok, QUEUE_PATIENCE_VALID),
        ];
        if let Some((flag, _, _, valid)) = seconds.iter().find(|(_, v, ok, _)| v.is_some_and(|v| !ok(v))) {
            return Err(Failure::argument(*flag, format!("{flag} must be {valid}")));
        }
        if self.max_jobs == Some(0) {
            return Err(Failure::argument("--max-jobs", "--max-jobs must be at least 1"));
        }
        let names = [("--partition", &self.partition), ("--account", &self.account), ("--qos", &self.qos)];
        if let Some((flag, _)) = names.iter().find(|(_, v)| v.as_deref().is_some_and(|v| v.trim().is_empty())) {
            return Err(Failure::argument(
                *flag,
                format!("{flag} must not be empty (leave it out for the experiment file's value or Slurm's default)"),
            ));
        }
        for arg in &self.sbatch_args {
            if let Some(why) = crate::config::executor::sbatch_arg_problem(arg) {
                return Err(Failure::argument("--sbatch-arg", format!("--sbatch-arg={arg}: must be {why}")));
            }
        }
        let flags = ExecutorSettings {
            kind: self.executor,
            max_jobs: self.max_jobs,
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            sbatch_args: self.sbatch_args.clone(),
            retries: self.retries,
            in_driver,
            in_driver_origins: Vec::new(),
            arrays: None,
            poll_max: self.poll_max,
            queue_patience: self.queue_patience,
        };
        let user = crate::config::executor::user_defaults()?;
        if let Some(bad) = user.in_driver.iter().flatten().find(|op| !known.contains(&op.as_str())) {
            return Err(Failure::Other(format!(
                "the user configuration's executor.in_driver: unknown op `{bad}`; valid: {}",
                known.join(", ")
            )));
        }
        Ok(crate::config::executor::merge(&crate::config::executor::merge(&user, file), &flags))
    }
}

/// `cfrun exec`: computes one job in this process and publishes it; exit 0 when its key is
/// published, 1 when the stage failed, 2 when the job cannot be read.
pub fn exec(
    target: &str,
    instance: Option<&str>,
    choice: DeviceChoice,
    from_driver: bool,
    g: &Global,
) -> Result<ExitCode, Failure> {
    if from_driver {
        end_with_the_driver();
    }
    // A file and an instance named by hand are checked, and the device opened, before the cache
    // is touched, as `run` does: a mistake there leaves no cache behind and exits 2.
    let by_hand = match instance {
        Some(name) => {
            let plan = load(Path::new(target), g)?;
            let at = instance_at(&plan, name)?;
            Some((plan, at))
        }
        None => None,
    };
    let (device, device_name) = device::open(choice).map_err(|e| match by_hand {
        Some(_) if !from_driver => Failure::Other(e.to_string()),
        // A job's node without the device it was promised is the job's failure.
        _ => Failure::runtime(e),
    })?;
    let store = open_store_for_job(g, instance.is_none().then_some(target))?;
    if !from_driver {
        fs_check::require_shared_locks(store.root()).map_err(|e| Failure::Other(e.to_string()))?;
    }
    let (job, plan) = match by_hand {
        Some((plan, at)) => (job_from_file(&plan, &store, at)?, Some(plan)),
        None => (load_job(&store, target).map_err(|e| Failure::Other(e.to_string()))?, None),
    };
    if let Some(plan) = &plan {
        // As `cfrun run` checks before anything runs, against this process's device and memory
        // (a job read from a key was checked by the driver that wrote it; `load_job` checks its
        // parameters again).
        let site = crate::ops::Site::here(device.location());
        crate::graph::preflight::check_instance(plan, &job.instance.name, &site)?;
        super::open::remember_settings(&store, Path::new(target), plan, g);
    }
    let env = ComputeEnv { store: store.clone(), device, device_name, bars: None, provenance: job_provenance() };
    let computed = {
        // A job under Slurm inherits the submitting shell's `ulimit -f` too.
        let _signals = super::signals::SignalsFailWrites::while_running();
        run_on_pool(&env, || compute_guarded(&env, &job))
    };
    match computed {
        Ok((record, outcome)) => {
            if let Some(plan) = plan {
                crate::exec::run::remember_name(&store, &plan.experiment.name, &job.instance.name, &record);
            }
            let outcome = serde_json::to_value(&outcome).unwrap_or_default();
            if g.json {
                outln!("{}", json!({"instance": job.instance.name, "key": record.key, "outcome": outcome}));
            } else {
                outln!("{} {} {}", outcome.as_str().unwrap_or_default(), job.instance.name, record.key);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            if g.json {
                outln!("{}", json!({"instance": job.instance.name, "outcome": "failed", "error": why.to_string()}));
            }
            // A driver's child: the driver logs this error and lists it in its summary.
            if from_driver && g.json {
                return Ok(ExitCode::from(super::exit::FAILED));
            }
            errln!(
                "error: {} failed: {}",
                job.instance.name,
                crate::config::error::printable_cut(&why.to_string(), super::terminal::TERMINAL_REPORT_CHARS)
            );
            Ok(ExitCode::from(super::exit::FAILED))
        }
    }
}

/// Ends this process and its group once stdin closes: the driver that started it (`--executor
/// processes`) holds the other end and never writes, so the end of input means the driver has
/// died. What the job started goes with it, as it would with a thread of the driver; a result it
/// already published stays (publishing is one rename), a training keeps its last sealed
/// checkpoint.
fn end_with_the_driver() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        loop {
            match std::io::Read::read(&mut stdin, &mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        // This process leads its group (the driver made it so): the group goes at once, with
        // what the job started without a watcher of its own (a data set's downloader). Nothing
        // is printed: stderr was the driver's pipe, closed with it. Started by hand in someone
        // else's group (the flag is hidden, not guarded), only this process goes: the group is
        // its caller's, a shell among them.
        // SAFETY: getpgrp and getpid read this process's ids; kill signals it or its own group.
        unsafe {
            let leads = libc::getpgrp() == libc::getpid();
            libc::kill(if leads { 0 } else { libc::getpid() }, libc::SIGKILL);
        }
    });
}

/// The index of the instance called `name` in `plan`.
fn instance_at(plan: &Plan, name: &str) -> Result<usize, Failure> {
    plan.instances.iter().position(|inst| inst.name == name).ok_or_else(|| {
        Failure::Other(format!(
            "no instance `{name}` in {}; `cfrun dag FILE` lists them",
            plan.experiment.file.path.display()
        ))
    })
}

fn job_from_file(plan: &Plan, store: &Store, i: usize) -> Result<Job, Failure> {
    let name = &plan.instances[i].name;
    // Only the instance's ancestors matter: walked in plan (topological) order.
    let needed = plan.needed_by(&[crate::graph::InstanceIdx(i)]);
    let mut records: Vec<Option<KeyRecord>> = vec![None; plan.instances.len()];
    for j in (0..i).filter(|&j| needed[j]) {
        let key = evaluate::recipe_for(plan, &plan.instances[j], &records).ok().map(|r| r.key());
        records[j] = key.and_then(|k| store.lookup(&k));
    }
    let recipe = evaluate::recipe_for(plan, &plan.instances[i], &records)
        .map_err(|why| Failure::Other(format!("{name}: its inputs are not all cached ({why})")))?;
    let resources = for_instance(plan, &plan.instances[i], &plan.experiment.executor);
    Ok(Job::from_plan(plan, i, recipe, resources, &records))
}

/// Where this job runs, for provenance: the Slurm job id and node when under Slurm.
fn job_provenance() -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok();
    map.insert("host".into(), json!(host));
    if let Some(job) = var("SLURM_JOB_ID") {
        let job_id = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
            (Some(array), Some(task)) => format!("{array}_{task}"),
            _ => job,
        };
        map.insert("slurm".into(), json!({"job_id": job_id, "node": var("SLURMD_NODENAME").or(host)}));
    }
    map
}

/// A Slurm job computing an instance right now.
pub struct LiveJob {
    /// Its id.
    pub id: String,
    /// `PENDING`, `RUNNING`, ...
    pub state: String,
    /// Where it runs.
    pub node: String,
    /// Why it is pending (`Resources`, `PartitionConfig`, ...).
    pub reason: String,
}

impl LiveJob {
    /// `queued` or `running`, for the status column.
    pub fn label(&self) -> &'static str {
        if self.state == "PENDING" {
            "queued"
        } else {
            "running"
        }
    }

    /// `job 12 on node1`.
    pub fn describe(&self) -> String {
        if self.node.is_empty() && !matches!(self.reason.as_str(), "" | "None") {
            format!("job {} ({}: {})", self.id, self.state.to_lowercase(), self.reason)
        } else if self.node.is_empty() {
            format!("job {} ({})", self.id, self.state.to_lowercase())
        } else {
            format!("job {} on {}", self.id, self.node)
        }
    }
}

/// The live Slurm job of every missing instance that a driver submitted (one `squeue` call).
pub fn live_jobs(store: &Store, states: &[InstanceState]) -> HashMap<usize, LiveJob> {
    let claimed: Vec<(usize, String)> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.record.is_none())
        .filter_map(|(i, s)| s.key.and_then(|k| claims::read(store, &k)).map(|c| (i, c.job_id)))
        .collect();
    if claimed.is_empty() {
        return HashMap::new();
    }
    let ids: Vec<&str> = claimed.iter().map(|(_, id)| id.as_str()).collect();
    let queue = queue::states(&ids).unwrap_or_default();
    claimed
        .into_iter()
        .filter_map(|(i, id)| {
            let q = queue.get(&id).filter(|q| q.active())?;
            Some((i, LiveJob { id, state: q.state.clone(), node: q.node.clone(), reason: q.reason.clone() }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_job_says_where_it_runs_or_why_it_waits() {
        let job = |state: &str, node: &str, reason: &str| LiveJob {
            id: "12_3".into(),
            state: state.into(),
            node: node.into(),
            reason: reason.into(),
        };
        assert_eq!(job("RUNNING", "gpu7", "None").describe(), "job 12_3 on gpu7");
        assert_eq!(job("PENDING", "", "PartitionConfig").describe(), "job 12_3 (pending: PartitionConfig)");
        assert_eq!(job("PENDING", "", "None").describe(), "job 12_3 (pending)", "Slurm's `None` is not shown");
        assert_eq!(
            (job("PENDING", "", "Priority").label(), job("RUNNING", "n1", "None").label()),
            ("queued", "running")
        );
    }
}
