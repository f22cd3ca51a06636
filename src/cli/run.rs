//! `cfrun run`: an experiment from the command line to its summary and exit code.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::MultiProgress;
use serde_json::json;

use super::failure::Failure;
use super::open::{open_store, remember_settings};
use super::signals::SignalsFailWrites;
use super::terminal::{report_for_terminal, TERMINAL_REPORT_CHARS};
use super::Global;
use crate::cache::key::DirtyReason;
use crate::config::error::printable_cut;
use crate::config::ExecutorKind;
use crate::exec::compute::ComputeEnv;
use crate::exec::resources::for_instance;
use crate::exec::{self, device, Outcome, RunOptions};
use crate::graph::Instance;
use crate::ops;

/// Instances side by side when `--jobs` is not given: one per usable core on the CPU, else one
/// (a GPU's kernels already fill it).
pub(super) fn default_jobs(choice: device::DeviceChoice) -> usize {
    match choice {
        device::DeviceChoice::Cpu => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        _ => 1,
    }
}

/// User plus system CPU seconds this process (all its threads) and its ended children (jobs run
/// as processes, `command` stages) have used so far.
pub(super) fn cpu_seconds() -> f64 {
    let of = |who: libc::c_int| {
        // SAFETY: getrusage fills the zeroed struct it is given and reads nothing else.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

/// What the cache at `--cache` holds now of `plan` (the quick check `status` makes): the
/// instances it serves, and of those it held until they were found damaged or removed, the
/// reason; nothing where there is no cache yet. The run evaluates again as it schedules: this
/// look only spares served instances the preflight.
fn cached_now(plan: &crate::graph::Plan, g: &Global) -> CachedNow {
    // A folder that is no cache is refused when the run opens it; read here, it would become one.
    if crate::cache::store::holds_nothing(&g.cache) || super::open::require_cache_folder(&g.cache).is_err() {
        return Default::default();
    }
    let Ok(store) = crate::cache::Store::open_to_read(&g.cache) else { return Default::default() };
    let states = crate::exec::evaluate::evaluate(plan, &store);
    let mut now = CachedNow::default();
    for (inst, st) in plan.instances.iter().zip(states) {
        if st.record.is_some() {
            now.served.insert(inst.name.clone());
        } else if let Some(lost) = st.reasons.iter().find_map(|r| match r {
            DirtyReason::Damaged { detail } => Some(format!("cached result is damaged: {detail}")),
            DirtyReason::Missing => Some("cached result is no longer in the cache".to_string()),
            _ => None,
        }) {
            now.lost.insert(inst.name.clone(), lost);
        }
    }
    now
}

/// See [`cached_now`].
#[derive(Default)]
struct CachedNow {
    served: std::collections::BTreeSet<String>,
    lost: std::collections::BTreeMap<String, String>,
}

pub(super) fn run(
    file: &Path,
    targets: &[String],
    g: &Global,
    jobs: Option<usize>,
    choice: device::DeviceChoice,
    executor: &super::cluster::ExecutorArgs,
    bars: Option<MultiProgress>,
) -> Result<ExitCode, Failure> {
    let plan = super::targets::load_part(file, g, targets)?;
    let settings = executor.settings(&plan.experiment.executor)?;
    let slurm = settings.kind == Some(ExecutorKind::Slurm);
    let mut device_flag =
        clap::ValueEnum::to_possible_value(&choice).map(|v| v.get_name().to_string()).unwrap_or_default();
    if slurm && choice == device::DeviceChoice::Auto && device::cuda_built_in().is_err() {
        // The jobs run this binary, which would fall back to the CPU on a GPU it was granted.
        tracing::info!("--device auto: this cfrun has no CUDA, so every job computes on the CPU and asks for no GPU");
        device_flag = "cpu".into();
    }
    // Under Slurm this process computes only the stages kept in the driver: it opens the asked
    // device only when one of those asks for a GPU, so a login node without one drives GPU jobs.
    let resources = |inst: &Instance| for_instance(&plan, inst, &settings);
    // Of each instance that asks for a GPU: whether the driver runs it.
    let asking_for_gpus: Vec<bool> =
        plan.instances.iter().map(resources).filter(|r| r.gpus > 0).map(|r| r.in_driver).collect();
    let driver_choice = if slurm && !asking_for_gpus.contains(&true) { device::DeviceChoice::Cpu } else { choice };
    if slurm && choice == device::DeviceChoice::Cuda && asking_for_gpus.contains(&false) {
        // The jobs run this binary: refused here, not in every job after its wait for a GPU.
        device::cuda_built_in().map_err(|e| Failure::Other(format!("the jobs that ask for a GPU: {e}")))?;
    }
    // Nothing has run yet: a device that cannot be had is a precondition of the command line.
    let (dev, device_name) = device::open(driver_choice).map_err(|e| Failure::Other(e.to_string()))?;
    let driver_location = dev.location();
    // What the cache holds is served, not computed: it is not checked against this machine (a
    // `command`'s program need not be on PATH for its result to be served).
    let cached = cached_now(&plan, g);
    let computes = |inst: &Instance| !cached.served.contains(inst.name.as_str());
    crate::graph::preflight::check(
        &plan,
        &computes,
        &|inst| {
            let r = resources(inst);
            let job = slurm && !r.in_driver;
            let device = r.computes_on(job, &device_flag, driver_location);
            if job {
                crate::ops::Site::job(device, r.mem_mb)
            } else {
                crate::ops::Site::here(device)
            }
        },
        &|inst| cached.lost.get(&inst.name).cloned(),
    )?;
    if slurm {
        exec::slurm::require_sbatch().map_err(|e| Failure::Other(e.to_string()))?;
    }
    // Only now: a run refused above leaves no cache behind.
    let store = open_store(g)?;
    if slurm {
        // A precondition, not a failure: a cache whose locks do not hold across nodes is refused
        // before any job is submitted (the executor checks again for library callers).
        crate::cache::fs_check::require_shared_locks(store.root()).map_err(|e| Failure::Other(e.to_string()))?;
    }
    remember_settings(&store, file, &plan, g);
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let env = ComputeEnv { store: store.clone(), device: dev, device_name, bars, provenance: Default::default() };
    let jobs = jobs.unwrap_or_else(|| default_jobs(driver_choice));
    let opts = RunOptions { jobs, env, device_flag, executor: settings, quiet: g.quiet };
    let summary = {
        let _signals = SignalsFailWrites::while_running();
        exec::run(&plan, &store, &opts).map_err(|e| {
            if e.is_refusal() {
                Failure::Other(e.to_string())
            } else {
                Failure::runtime(e)
            }
        })?
    };
    // The run is over: its bars go (a Ctrl-C left the last frame of each on the screen, and the
    // jobs it abandoned would draw on under the summary).
    if let Some(bars) = &opts.env.bars {
        let _ = bars.clear();
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let reports = &summary.reports;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
    let (ran, cached, failed, skipped) =
        (count(Outcome::Ran), count(Outcome::Cached), count(Outcome::Failed), count(Outcome::Skipped));
    /// Report files of one instance printed (markdown) or named (the rest) after a run.
    const SHOWN_REPORT_FILES: usize = 20;
    let mut report_files = Vec::new();
    for (inst, rep) in plan.instances.iter().zip(reports) {
        let Some(record) = &rep.record else { continue };
        let op = inst.op;
        let reports = op.output_names(&inst.params);
        for out in reports.iter().filter(|o| op.output_kind(&inst.params, o) == Some(ops::Kind::Report)) {
            // The files the object's manifest lists (verified when the record was), never
            // whatever else sits in the folder.
            report_files.push((inst.name.clone(), store.output_files(record, out)));
        }
    }
    // Verdicts come last, after the tables they summarise.
    report_files.sort_by_key(|(name, _)| plan.instances.iter().any(|i| &i.name == name && i.op.judges()));
    // After a hang-up stdout and stderr may be a closed terminal (EIO), where `println!` would
    // panic (exit 101, not 129): stdout goes through `outln!` and stderr's errors are ignored.
    if g.json {
        let reports_json: Vec<_> = report_files.iter().map(|(n, f)| json!({"instance": n, "files": f})).collect();
        // `instance` as in every other command's output; `name` stays for the scripts that read it.
        let instances: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut v = json!(r);
                v["instance"] = json!(r.name);
                v
            })
            .collect();
        outln!(
            "{}",
            json!({"ok": failed + skipped == 0, "experiment": plan.experiment.name, "targets": plan.targets,
                   "wall_seconds": wall,
                   "cpu_seconds": cpu,
                   "ran": ran, "cached": cached, "failed": failed, "skipped": skipped,
                   "submitted": summary.submitted, "interrupted": summary.interrupted,
                   "instances": instances, "reports": reports_json})
        );
    } else {
        for (name, files) in &report_files {
            let is = |f: &&std::path::PathBuf, md: bool| f.extension().is_some_and(|e| (e == "md") == md);
            let markdown: Vec<_> = files.iter().filter(|f| is(f, true)).collect();
            let others: Vec<_> = files.iter().filter(|f| is(f, false)).collect();
            for f in markdown.iter().take(SHOWN_REPORT_FILES) {
                // A command's report may hold anything: escapes are shown, not obeyed, and a
                // long one is cut with its path named (the page and the file have it whole).
                if let Some(shown) = report_for_terminal(f) {
                    outln!("## {name}\n\n{shown}");
                }
            }
            for f in others.iter().take(SHOWN_REPORT_FILES) {
                outln!("{name}: {}", f.display());
            }
            // A command's report of thousands of files would bury the run's own output.
            let left =
                markdown.len().saturating_sub(SHOWN_REPORT_FILES) + others.len().saturating_sub(SHOWN_REPORT_FILES);
            if left > 0 {
                // The folder holding them all (the output's, or one below it).
                let mut dir = files.first().and_then(|f| f.parent());
                while let Some(d) = dir.filter(|d| !files.iter().all(|f| f.starts_with(d))) {
                    dir = d.parent();
                }
                if let Some(dir) = dir {
                    outln!("{name}: and {left} more files under {}", dir.display());
                }
            }
        }
        // After a Ctrl-C, the instances it stopped are summed up below, not listed one by one.
        for r in reports.iter().filter(|r| r.error.is_some() && !r.stopped()) {
            let _ = writeln!(
                std::io::stderr(),
                "{} {}: {}",
                if r.outcome == Outcome::Failed { "FAILED" } else { "skipped" },
                r.name,
                printable_cut(r.error.as_deref().unwrap_or(""), TERMINAL_REPORT_CHARS)
            );
        }
        let jobs = if opts.executor.kind == Some(ExecutorKind::Slurm) {
            format!(", {} Slurm submissions", summary.submitted)
        } else {
            // How busy the machine's cores were: the "never idle" figure of a local run.
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            format!(", CPU {:.2} of {cores} cores", cpu / wall.max(1e-9))
        };
        // `-q` keeps stderr to warnings and errors: the failures above, not the tally.
        if !g.quiet {
            let _ = writeln!(
                std::io::stderr(),
                "{}: {} instances{}, {ran} ran, {cached} cached, {failed} failed, {skipped} skipped in {}{jobs}",
                plan.experiment.name,
                reports.len(),
                super::targets::part_note(&plan.targets),
                crate::human::duration(wall)
            );
        }
    }
    if let Some(text) = super::disk_full::hint(reports.iter().filter_map(|r| r.error.as_deref()), store.root()) {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
    if summary.interrupted {
        let _ = writeln!(std::io::stderr(), "interrupted: every finished instance is cached; run again to continue");
        return Ok(ExitCode::from(match exec::interrupt::signal() {
            Some(libc::SIGTERM) => super::exit::TERMINATED,
            Some(libc::SIGHUP) => super::exit::HUNG_UP,
            _ => super::exit::INTERRUPTED,
        }));
    }
    Ok(if failed + skipped == 0 { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}
