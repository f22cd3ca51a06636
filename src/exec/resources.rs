//! The resources of an instance: what its op declares ([`crate::ops::StageKind::JOB`]), then
//! `[executor] in_driver`, then the stage's own `[stages.NAME.resources]`.
//!
//! The defaults fit one node of a small GPU cluster. Training and feature extraction want a GPU
//! (asked for only when the run's device is not the CPU). The tiny bookkeeping ops run in the
//! driver: a job costs seconds of scheduling for milliseconds of work.

use candle_core::DeviceLocation;
use serde_json::Value as Json;

use crate::config::{ExecutorSettings, ResourceOverrides};
use crate::graph::{Instance, Plan};
use crate::ops::Op;

/// What one instance asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resources {
    /// CPUs per task.
    pub cpus: u32,
    /// Memory in MiB.
    pub mem_mb: u64,
    /// GPUs, when the run's device is a GPU.
    pub gpus: u32,
    /// Time limit in minutes.
    pub time_min: u32,
    /// Runs in the driver, not as a job.
    pub in_driver: bool,
}

impl Resources {
    /// The `--device` a cluster job with these resources is started with: the run's when the job
    /// asks for a GPU, else the CPU. Slurm grants a job that asks for none no card, so `cuda` there
    /// would fail, or compute on a card granted to another job.
    pub fn job_device<'a>(&self, run_device: &'a str) -> &'a str {
        if run_device != "cpu" && self.gpus > 0 {
            run_device
        } else {
            "cpu"
        }
    }

    /// Where an instance with these resources computes: a cluster job on its node's device
    /// ([`Self::job_device`]; `cuda` and `auto` as a GPU, which a node that granted one has),
    /// anything else in this process, on `driver`.
    pub fn computes_on(&self, cluster_job: bool, run_device: &str, driver: DeviceLocation) -> DeviceLocation {
        match (cluster_job, self.job_device(run_device)) {
            (false, _) => driver,
            (true, "cpu") => DeviceLocation::Cpu,
            (true, _) => DeviceLocation::Cuda { gpu_id: 0 },
        }
    }
}

/// The op's defaults for an instance with canonical `params` (before the executor's `in_driver`
/// list and the stage's overrides): what the op declares ([`crate::ops::StageKind::JOB`]).
pub fn op_defaults(op: &dyn Op, params: &Json) -> Resources {
    let shape = op.job(params);
    Resources {
        cpus: shape.cpus,
        mem_mb: shape.mem_gb * 1024,
        gpus: shape.gpus,
        time_min: shape.time_min,
        in_driver: shape.in_driver,
    }
}

/// The resources of `inst`: op defaults, then the executor's driver list, then the stage's table.
pub fn for_instance(plan: &Plan, inst: &Instance, settings: &ExecutorSettings) -> Resources {
    let mut r = op_defaults(inst.op, &inst.params);
    if let Some(list) = &settings.in_driver {
        r.in_driver = list.iter().any(|o| o == inst.op.name());
    }
    if let Some(o) = plan.resources.get(&inst.stage) {
        apply(&mut r, o);
    }
    r
}

fn apply(r: &mut Resources, o: &ResourceOverrides) {
    r.cpus = o.cpus.unwrap_or(r.cpus);
    r.mem_mb = o.mem_mb.unwrap_or(r.mem_mb);
    r.gpus = o.gpus.unwrap_or(r.gpus);
    r.time_min = o.time_min.unwrap_or(r.time_min);
    r.in_driver = o.in_driver.unwrap_or(r.in_driver);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Experiment, SourceFile};
    use crate::ops::command::JOB_SLACK_MIN;

    fn plan(text: &str, sets: &[&str]) -> Plan {
        let file = SourceFile::from_text(std::path::Path::new("t.toml"), text.to_string());
        let sets: Vec<_> = sets.iter().map(|s| s.parse().unwrap()).collect();
        Plan::build(Experiment::parse(file, &sets).unwrap()).unwrap()
    }

    const TEXT: &str = r#"
[experiment]
name = "r"
[stages.shapes]
op = "dataset"
name = "synthetic"
[stages.noisy]
op = "label_noise"
labels = "shapes.labels"
percent = 10
[stages.noisy.resources]
mem = "2G"
"#;

    #[test]
    fn stage_overrides_win_and_never_reach_the_key() {
        let p = plan(TEXT, &[]);
        let bare = plan(&TEXT.replace("[stages.noisy.resources]\nmem = \"2G\"\n", ""), &[]);
        let set = plan(TEXT, &["stages.noisy.resources.cpus=3", "stages.shapes.resources.in_driver=true"]);
        let s = ExecutorSettings::default();
        let noisy = |p: &Plan| p.instances.iter().find(|i| i.stage == "noisy").unwrap().clone();
        let r = for_instance(&p, &noisy(&p), &s);
        assert_eq!((r.mem_mb, r.cpus, r.in_driver), (2048, 1, true));
        let r = for_instance(&set, &noisy(&set), &s);
        assert_eq!((r.mem_mb, r.cpus), (2048, 3));
        assert!(for_instance(&set, &set.instances[0], &s).in_driver);
        // The params, and so the recipe keys, are those of the file without resources.
        assert_eq!(noisy(&p).params, noisy(&bare).params);
        assert_eq!(noisy(&set).params, noisy(&bare).params);
        let none = ExecutorSettings { in_driver: Some(vec![]), ..Default::default() };
        assert!(!for_instance(&bare, &noisy(&bare), &none).in_driver);
    }

    #[test]
    fn a_command_jobs_time_limit_outlasts_its_programs_timeout() {
        let text = |timeout: &str| {
            format!(
                "[experiment]\nname = \"r\"\n[stages.c]\nop = \"command\"\nargv = [\"true\"]\n\
                 outputs = {{ m = \"metrics\" }}\n{timeout}"
            )
        };
        let minutes = |timeout: &str, sets: &[&str]| {
            let p = plan(&text(timeout), sets);
            for_instance(&p, &p.instances[0], &ExecutorSettings::default()).time_min
        };
        assert_eq!(minutes("", &[]), 60 + JOB_SLACK_MIN, "the default timeout is an hour");
        assert_eq!(minutes("timeout = 7201\n", &[]), 121 + JOB_SLACK_MIN);
        assert_eq!(minutes("timeout = 5\n", &[]), 1 + JOB_SLACK_MIN);
        assert_eq!(
            minutes("timeout = 7201\n[stages.c.resources]\ntime = \"0:30:00\"\n", &[]),
            30,
            "a stage's own limit wins"
        );
    }

    #[test]
    fn only_a_job_that_asks_for_a_gpu_gets_the_runs_device() {
        let op = |name: &str| crate::ops::find(name).expect("an op");
        let (train, kmeans) = (op_defaults(op("train"), &Json::Null), op_defaults(op("kmeans"), &Json::Null));
        assert_eq!(
            (train.job_device("cuda"), train.job_device("auto"), train.job_device("cpu")),
            ("cuda", "auto", "cpu")
        );
        assert_eq!((kmeans.job_device("cuda"), kmeans.job_device("auto")), ("cpu", "cpu"));
        let none = Resources { gpus: 0, ..train.clone() };
        assert_eq!(none.job_device("cuda"), "cpu");
        // What bf16's check is made against: the job's device, not the driver's.
        let cpu = DeviceLocation::Cpu;
        assert!(matches!(train.computes_on(true, "cuda", cpu), DeviceLocation::Cuda { .. }));
        assert!(matches!(train.computes_on(true, "auto", cpu), DeviceLocation::Cuda { .. }));
        assert!(matches!(none.computes_on(true, "cuda", cpu), DeviceLocation::Cpu));
        assert!(matches!(train.computes_on(false, "cuda", cpu), DeviceLocation::Cpu), "kept in the driver");
    }

    /// docs/CLUSTER.md's table of defaults and its list of in-driver ops are what the ops
    /// declare: an op with a row of its own must match it, and an op without one must have the
    /// shape of the "any other op" row, so a new op with the default shape needs no row, and one
    /// declaring another shape without its row fails here.
    #[test]
    fn the_documented_defaults_are_the_ops_own() {
        let doc = include_str!("../../docs/CLUSTER.md");
        let names = |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_string).collect() };
        let mut seen = std::collections::BTreeSet::new();
        let mut other = None;
        // (CPUs, MiB, GPUs, minutes) of a row; no minutes where the time is "its `timeout` + 10
        // min" (`a_command_jobs_time_limit_...` checks that one).
        let shape = |cells: &[&str]| -> (u32, u64, u32, Option<u32>) {
            let minutes = match cells[4].split_once(' ') {
                Some((n, "h")) => Some(n.parse::<u32>().unwrap() * 60),
                Some((n, "min")) => Some(n.parse().unwrap()),
                _ => None,
            };
            let mem = cells[2].trim_end_matches(" GiB").parse::<u64>().unwrap() * 1024;
            (cells[1].parse().unwrap(), mem, cells[3].parse().unwrap(), minutes)
        };
        let table =
            doc.lines().skip_while(|l| !l.starts_with("| ops | CPUs")).skip(2).take_while(|l| l.starts_with('|'));
        for row in table {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let (cpus, mem, gpus, minutes) = shape(&cells);
            for name in names(cells[0]) {
                let op = crate::ops::find(&name).unwrap_or_else(|| panic!("`{name}` in CLUSTER.md is no op"));
                let r = op_defaults(op, &Json::Null);
                let documented = (cpus, mem, gpus, minutes.unwrap_or(r.time_min));
                assert_eq!(
                    (r.cpus, r.mem_mb, r.gpus, r.time_min),
                    documented,
                    "`{name}` asks for (CPUs, MiB, GPUs, minutes) on the left; docs/CLUSTER.md's row says {row}"
                );
                seen.insert(name);
            }
            if cells[0].starts_with("any other op") {
                other = Some(((cpus, mem, gpus, minutes.expect("a time for any other op")), row));
            }
        }
        let (other, other_row) = other.expect("CLUSTER.md's table has an \"any other op\" row");
        let listed = doc
            .split("**Tiny stages run in the driver**: ")
            .nth(1)
            .unwrap()
            .split(" take milliseconds")
            .next()
            .unwrap();
        let in_driver: Vec<String> = names(listed);
        for name in crate::ops::names() {
            let op = crate::ops::find(name).unwrap();
            assert_eq!(
                op_defaults(op, &Json::Null).in_driver,
                in_driver.iter().any(|n| n == name),
                "`{name}`: whether it runs in the driver (its `JOB`) and docs/CLUSTER.md's \"Tiny stages run in \
                 the driver\" list disagree"
            );
            if !seen.contains(name) && !in_driver.iter().any(|n| n == name) {
                let r = op_defaults(op, &Json::Null);
                let defaults = (r.cpus, r.mem_mb, r.gpus, r.time_min);
                let (cpus, mem_mb, gpus, minutes) = defaults;
                // As the table writes them: whole hours in hours.
                let time = if minutes % 60 == 0 { format!("{} h", minutes / 60) } else { format!("{minutes} min") };
                let row = format!("| `{name}` | {cpus} | {} GiB | {gpus} | {time} |", mem_mb / 1024);
                assert_eq!(
                    defaults, other,
                    "`{name}` asks for another shape than docs/CLUSTER.md's \"any other op\" row \
                     ({other_row}) and has no row of its own; add this one to the table under `| ops | CPUs`:\n{row}"
                );
            }
        }
    }
}
