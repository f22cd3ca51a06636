//! The commands behind the CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::MultiProgress;
use serde_json::json;

use super::{Command, DataAction, Global};
use crate::cache::store::{holds_nothing, Check, Untrusted};
use crate::cache::{gc as cache_gc, CacheError, DirtyReason, RecipeKey, Store};
use crate::config::error::printable_cut;
use crate::config::ExecutorKind;
use crate::config::{ConfigError, Experiment};
use crate::exec::compute::ComputeEnv;
use crate::exec::job::{jobs_dir_in, SpecError};
use crate::exec::resources::for_instance;
use crate::exec::{self, device, evaluate, Outcome, RunOptions};
use crate::graph::{render, Instance, Plan};
use crate::ops;

pub(super) fn dispatch(cmd: Command, g: &Global, bars: Option<MultiProgress>) -> ExitCode {
    let result = match cmd {
        // `--set` is global so that it sits anywhere on the line, but these read no experiment:
        // taken silently, an override the user meant for a run would look applied.
        Command::Data { .. }
        | Command::Ops { .. }
        | Command::CheckDevice { .. }
        | Command::Exec { instance: None, .. }
            if !g.set.is_empty() =>
        {
            let name = match cmd {
                Command::Data { .. } => "data",
                Command::Ops { .. } => "ops",
                Command::Exec { .. } => "exec KEY",
                _ => "check-device",
            };
            Err(Failure::Other(format!("--set overrides a field of an experiment file, and `cfrun {name}` reads none")))
        }
        Command::Run { file, jobs, device, executor } => run(&file, g, jobs, device, &executor, bars),
        Command::Exec { target, instance, device, from_driver } => {
            super::cluster::exec(&target, instance.as_deref(), device, from_driver, g)
        }
        Command::Status { file, verify } => status(&file, g, verify),
        Command::Dag { format, .. } if g.json && format != render::DagFormat::Text => Err(Failure::Other(
            "--json prints the DAG as JSON; --format (dot, mermaid) is for text: give one of the two".into(),
        )),
        Command::Dag { file, format } => load(&file, g).map(|plan| {
            if g.json {
                println!("{}", render::to_json(&plan));
            } else {
                print!("{}", render::render(&plan, format));
            }
            ExitCode::SUCCESS
        }),
        Command::Show { file, stage } => show(&file, g, &stage),
        Command::Report { file, out } => report(&file, g, &out),
        Command::Gc { files, dry_run } => gc(&files, g, dry_run),
        Command::Data { action } => data(action, g),
        Command::Ops { op } => super::ops_help::ops(op.as_deref(), g.json).map(|()| ExitCode::SUCCESS),
        Command::CheckDevice { device, presets } => check_device(device, &presets, g),
    };
    result.unwrap_or_else(|e| {
        let code = e.exit_code();
        match e {
            Failure::Config(c) => {
                if g.json {
                    let errors: Vec<_> = c
                        .flatten()
                        .iter()
                        .map(|e| json!({"location": e.location(), "message": e.to_string()}))
                        .collect();
                    println!("{}", json!({"ok": false, "errors": errors}));
                }
                eprint!("{}", c.render());
            }
            Failure::Other(msg) => fail_plainly(g, &msg),
            Failure::Runtime(e) => fail_plainly(g, &error_chain(e.as_ref())),
        }
        ExitCode::from(code)
    })
}

/// Reports an error that has no place in the file: on stderr, and under `--json` on stdout too,
/// so a script reading stdout always gets one object saying what went wrong.
fn fail_plainly(g: &Global, message: &str) {
    if g.json {
        println!("{}", json!({"ok": false, "errors": [{"location": null, "message": message}]}));
    }
    eprintln!("error: {}", crate::config::error::printable(message));
}

/// An error and its sources, one after the other.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// Why a command stopped: invalid input (exit 2, nothing ran) or a failure while working (exit 1).
pub(super) enum Failure {
    /// The experiment file is invalid.
    Config(ConfigError),
    /// The command line or a precondition is invalid.
    Other(String),
    /// Something failed while working: the cache, the device, a download, a write. Kept typed
    /// (its sources are printed) and never reported as invalid input.
    Runtime(Box<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    /// Wraps a runtime error.
    pub(super) fn runtime(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Failure {
        Failure::Runtime(e.into())
    }

    /// The exit code it ends the command with.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) | Failure::Other(_) => super::exit::INVALID,
            Failure::Runtime(_) => super::exit::FAILED,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

pub(super) fn load(file: &Path, g: &Global) -> Result<Plan, Failure> {
    let exp = Experiment::load(file, &g.set)?;
    Ok(Plan::build(exp)?)
}

pub(super) fn open_store(g: &Global) -> Result<Store, Failure> {
    require_cache_folder(&g.cache)?;
    Store::open(&g.cache).map_err(Failure::runtime)
}

/// Opens the cache for a command that only reads it: a missing one is said to be empty, and is
/// not created.
fn open_store_to_read(g: &Global) -> Result<Store, Failure> {
    require_cache_folder(&g.cache)?;
    if !g.cache.exists() {
        tracing::warn!("--cache {} does not exist: nothing is cached there (a run creates it)", g.cache.display());
    } else if holds_nothing(&g.cache) {
        tracing::warn!(
            "--cache {} is an empty folder: nothing is cached there (a run makes it a cache)",
            g.cache.display()
        );
    }
    Store::open_to_read(&g.cache).map_err(Failure::runtime)
}

/// Opens the cache for `cfrun exec`, which a waiting `gc` does not hold up (its driver may be
/// what that `gc` waits for); for a job by `key`, only a cache that has a jobs folder.
pub(super) fn open_store_for_job(g: &Global, key: Option<&str>) -> Result<Store, Failure> {
    require_cache_folder(&g.cache)?;
    // A job by key was written by a driver into this cache's jobs folder: without one there is
    // no job to run, and opening the store would make a cache where none was.
    let jobs = jobs_dir_in(&g.cache);
    if let Some(key) = key.filter(|_| !jobs.is_dir()) {
        return Err(Failure::Other(SpecError::Missing { key: key.to_string(), dir: jobs }.to_string()));
    }
    Store::open_for_job(&g.cache).map_err(Failure::runtime)
}

/// A command-line path that must be a folder (or not exist yet) and is something else: the
/// command line is wrong, which is exit 2, not a failure of the work.
fn require_folder(option: &str, path: &Path) -> Result<(), Failure> {
    let usage = |what: String| {
        Err(Failure::Other(format!("{option} {} {what}; give a folder (it is created if missing)", path.display())))
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => usage("is not a folder".into()),
        Ok(_) => Ok(()),
        // A link to nothing would be neither followed nor replaced when the folder is made.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(path).is_ok() => {
            usage("is a link to nothing".into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => usage(format!("cannot be looked at ({e})")),
    }
}

/// The `--cache` folder: missing, empty, or a cache already. Any other folder (a home, a
/// repository) is refused before anything is created in it.
fn require_cache_folder(path: &Path) -> Result<(), Failure> {
    /// How many of the other folder's entries the error names.
    const SHOWN: usize = 3;
    require_folder("--cache", path)?;
    let mut foreign =
        crate::cache::layout::foreign_entries(path, SHOWN).map_err(|e| Failure::runtime(CacheError::io(path)(e)))?;
    if foreign.is_empty() {
        return Ok(());
    }
    let more = foreign.len() > SHOWN;
    foreign.truncate(SHOWN);
    Err(Failure::Other(format!(
        "--cache {} is a folder of other files ({}{}), not a cfrun cache; give a new or empty folder, or an \
         existing cache",
        path.display(),
        foreign.join(", "),
        if more { ", …" } else { "" }
    )))
}

/// Instances side by side when `--jobs` is not given: one per usable core on the CPU, else one
/// (a GPU's kernels already fill it).
fn default_jobs(choice: device::DeviceChoice) -> usize {
    match choice {
        device::DeviceChoice::Cpu => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        _ => 1,
    }
}

/// User plus system CPU seconds this process (all its threads) and its ended children (jobs run
/// as processes, `command` stages) have used so far.
fn cpu_seconds() -> f64 {
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

/// Most of a report (or a stage's error) printed on the terminal after a run.
pub(super) const TERMINAL_REPORT_CHARS: usize = 64 * 1024;
/// Most of a report file read for the terminal: [`TERMINAL_REPORT_CHARS`] characters and more.
const TERMINAL_REPORT_BYTES: u64 = 4 * TERMINAL_REPORT_CHARS as u64;

/// A markdown report as the terminal shows it: escapes shown, not obeyed, CRLF read as a line
/// end, and past [`TERMINAL_REPORT_CHARS`] cut with a note naming the file.
fn report_for_terminal(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).ok()?;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, TERMINAL_REPORT_BYTES + 1), &mut bytes).ok()?;
    let cut_bytes = bytes.len() as u64 > TERMINAL_REPORT_BYTES;
    bytes.truncate(TERMINAL_REPORT_BYTES as usize);
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    let cut_chars = text.chars().nth(TERMINAL_REPORT_CHARS).is_some();
    let mut shown = printable_cut(&text, TERMINAL_REPORT_CHARS);
    if cut_bytes || cut_chars {
        if !cut_chars {
            shown.push_str("… (cut)");
        }
        shown.push_str(&format!(" — the whole report is {}", path.display()));
    }
    Some(shown)
}

/// While instances run, a write to a closed stdout or stderr (`cfrun run FILE 2>&1 | head`)
/// fails quietly instead of ending the process with SIGPIPE part-way through a study (the log
/// lines are lost, the results are not), and a write past the file size limit (`ulimit -f`)
/// fails with "File too large" naming the file instead of SIGXFSZ killing the run without a
/// word. Commands get both defaults back (`std::process` restores SIGPIPE; the command stage
/// SIGXFSZ). Afterwards the summary ends quietly on a closed pipe again, like other Unix tools.
pub(super) struct SignalsFailWrites;

impl SignalsFailWrites {
    /// Until dropped.
    pub(super) fn while_running() -> SignalsFailWrites {
        for signal in [libc::SIGPIPE, libc::SIGXFSZ] {
            // SAFETY: sets the disposition of one signal; no handler runs Rust code.
            unsafe { libc::signal(signal, libc::SIG_IGN) };
        }
        SignalsFailWrites
    }
}

impl Drop for SignalsFailWrites {
    fn drop(&mut self) {
        for signal in [libc::SIGPIPE, libc::SIGXFSZ] {
            // SAFETY: as above, back to the defaults `main` set.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
}

fn run(
    file: &Path,
    g: &Global,
    jobs: Option<usize>,
    choice: device::DeviceChoice,
    executor: &super::cluster::ExecutorArgs,
    bars: Option<MultiProgress>,
) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
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
    crate::graph::preflight::check(&plan, &|inst| {
        let r = resources(inst);
        let job = slurm && !r.in_driver;
        let device = r.computes_on(job, &device_flag, driver_location);
        if job {
            crate::ops::Site::job(device, r.mem_mb)
        } else {
            crate::ops::Site::here(device)
        }
    })?;
    if slurm {
        exec::slurm::require_sbatch().map_err(Failure::Other)?;
    }
    // Only now: a run refused above leaves no cache behind.
    let store = open_store(g)?;
    if slurm {
        // A precondition, not a failure: a cache whose locks do not hold across nodes is refused
        // before any job is submitted (the executor checks again for library callers).
        crate::cache::fs_check::require_shared_locks(store.root()).map_err(|e| Failure::Other(e.to_string()))?;
    }
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let env = ComputeEnv { store: store.clone(), device: dev, device_name, bars, provenance: Default::default() };
    let jobs = jobs.unwrap_or_else(|| default_jobs(driver_choice));
    let opts = RunOptions { jobs, env, device_flag, executor: settings, quiet: g.quiet };
    let summary = {
        let _signals = SignalsFailWrites::while_running();
        exec::run(&plan, &store, &opts).map_err(Failure::runtime)?
    };
    let reports = &summary.reports;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
    let (ran, cached, failed, skipped) =
        (count(Outcome::Ran), count(Outcome::Cached), count(Outcome::Failed), count(Outcome::Skipped));
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
    report_files.sort_by_key(|(name, _)| plan.instances.iter().any(|i| &i.name == name && i.op.name() == "claims"));
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
        println!(
            "{}",
            json!({"ok": failed + skipped == 0, "experiment": plan.experiment.name, "wall_seconds": wall,
                   "cpu_seconds": cpu,
                   "ran": ran, "cached": cached, "failed": failed, "skipped": skipped,
                   "submitted": summary.submitted, "interrupted": summary.interrupted,
                   "instances": instances, "reports": reports_json})
        );
    } else {
        for (name, files) in &report_files {
            for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
                // A command's report may hold anything: escapes are shown, not obeyed, and a
                // long one is cut with its path named (the page and the file have it whole).
                if let Some(shown) = report_for_terminal(f) {
                    println!("## {name}\n\n{shown}");
                }
            }
            for f in files.iter().filter(|f| f.extension().is_some_and(|e| e != "md")) {
                println!("{name}: {}", f.display());
            }
        }
        // After a Ctrl-C, the instances it stopped are summed up below, not listed one by one.
        for r in reports.iter().filter(|r| r.error.is_some() && !r.stopped()) {
            eprintln!(
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
            eprintln!(
                "{}: {} instances, {ran} ran, {cached} cached, {failed} failed, {skipped} skipped in {wall:.1}s{jobs}",
                plan.experiment.name,
                reports.len()
            );
        }
    }
    if summary.interrupted {
        // Not `eprintln!`: after a hang-up stderr may be a closed terminal, and this must not panic.
        let _ = writeln!(std::io::stderr(), "interrupted: every finished instance is cached; run again to continue");
        return Ok(ExitCode::from(match exec::interrupt::signal() {
            Some(libc::SIGTERM) => super::exit::TERMINATED,
            Some(libc::SIGHUP) => super::exit::HUNG_UP,
            _ => super::exit::INTERRUPTED,
        }));
    }
    Ok(if failed + skipped == 0 { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}

fn status(file: &Path, g: &Global, verify: bool) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store_to_read(g)?;
    let states = evaluate::evaluate_with(&plan, &store, if verify { Check::Full } else { Check::Quick });
    let live = super::cluster::live_jobs(&store, &states);
    let failed = last_failures(&plan, &store, &states);
    let label = |i: usize, st: &evaluate::InstanceState| {
        live.get(&i).map_or(if failed[i].is_some() { "failed" } else { st.label() }, |j| j.label())
    };
    // An instance whose recipe an earlier one of this plan shares is computed once, by that one:
    // the run serves it from the other's result.
    let mut first_with: BTreeMap<&RecipeKey, usize> = BTreeMap::new();
    let twin_of: Vec<Option<&str>> = states
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let key = st.key.as_ref().filter(|_| st.record.is_none())?;
            let first = *first_with.entry(key).or_insert(i);
            (first != i).then(|| plan.instances[first].name.as_str())
        })
        .collect();
    if g.json {
        let items: Vec<_> = plan
            .instances
            .iter()
            .zip(&states)
            .enumerate()
            .map(|(i, (inst, st))| {
                let job = live.get(&i).map(|j| json!({"id": j.id, "state": j.state, "node": j.node}));
                json!({"instance": inst.name, "state": label(i, st), "key": st.key, "job": job,
                       "reasons": st.reasons, "because": reasons_beside(st, failed[i].is_some()),
                       "same_recipe_as": twin_of[i], "error": failed[i]})
            })
            .collect();
        println!("{}", json!({"experiment": plan.experiment.name, "instances": items}));
    } else {
        let width = plan.instances.iter().map(|i| i.name.len()).max().unwrap_or(0);
        let damaged: BTreeSet<&str> = plan
            .instances
            .iter()
            .zip(&states)
            .filter(|(_, st)| st.label() == "damaged")
            .map(|(inst, _)| inst.name.as_str())
            .collect();
        // One write for the whole listing, not one system call per instance.
        let mut text = String::new();
        for (i, (inst, st)) in plan.instances.iter().zip(&states).enumerate() {
            let mut why = reasons_beside(st, failed[i].is_some());
            // The first line in the listing; the rest (the command's last lines of stderr, say)
            // indented below it.
            let mut rest = None;
            if let Some(error) = &failed[i] {
                let (first, more) = error.split_once('\n').unwrap_or((error, ""));
                why.insert(0, format!("failed in its last run: {first}"));
                rest = Some(more).filter(|m| !m.trim().is_empty());
            }
            if let Some(job) = live.get(&i) {
                why.insert(0, job.describe());
            }
            if let Some(twin) = twin_of[i] {
                why.push(format!("same recipe as {twin}: computed once"));
            }
            // Run before and waiting only on damaged results: their rebuild is the same bytes on
            // the same device, and then this one is reused, not run.
            let only_damage = !st.reasons.is_empty()
                && st.reasons.iter().all(|r| {
                    matches!(r, DirtyReason::UpstreamPending { upstream, .. } if damaged.contains(upstream.as_str()))
                });
            if only_damage && failed[i].is_none() {
                why.push("its own result is kept if the rebuild gives the same bytes".into());
            }
            let why = if why.is_empty() { String::new() } else { format!("  {}", why.join("; ")) };
            let _ = writeln!(text, "{:<7} {:<width$}{why}", label(i, st), inst.name);
            for line in rest.iter().flat_map(|r| r.lines()) {
                let _ = writeln!(text, "          {}", line.trim_start());
            }
        }
        let cached = states.iter().filter(|s| s.record.is_some()).count();
        let _ = writeln!(text, "{} of {} instances cached", cached, states.len());
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// For `stage[a=1]` naming a stage but no instance (an axis left out, `replicate` most often):
/// that stage's instances with those values, which name every axis, or its first ones.
fn instances_near(plan: &crate::graph::Plan, asked: &str) -> Option<String> {
    let (stage, rest) = asked.split_once('[')?;
    let given: Vec<&str> = rest.strip_suffix(']')?.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    let of_stage: Vec<&str> = plan.instances.iter().filter(|i| i.stage == stage).map(|i| i.name.as_str()).collect();
    if of_stage.is_empty() {
        return None;
    }
    let pairs = |name: &str| -> Vec<String> {
        name.split_once('[').map_or(Vec::new(), |(_, r)| r.trim_end_matches(']').split(',').map(String::from).collect())
    };
    let matching: Vec<&str> =
        of_stage.iter().copied().filter(|n| given.iter().all(|g| pairs(n).iter().any(|p| p == g))).collect();
    let (what, list) = if matching.is_empty() || given.is_empty() {
        (format!("instances of `{stage}`"), of_stage)
    } else {
        (format!("instances of `{stage}` with {}", given.join(", ")), matching)
    };
    const SHOWN: usize = 12;
    let more = if list.len() > SHOWN { format!(" and {} more", list.len() - SHOWN) } else { String::new() };
    let shown: Vec<&str> = list.into_iter().take(SHOWN).collect();
    Some(format!("{what}: {}{more} (an instance names every axis, in alphabetical order)", shown.join(", ")))
}

fn show(file: &Path, g: &Global, stage: &str) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store_to_read(g)?;
    let selected = plan.select(stage);
    if selected.is_empty() {
        if let Some(near) = instances_near(&plan, stage) {
            return Err(Failure::Other(format!("no instance `{stage}` in {}; {near}", file.display())));
        }
        let names: BTreeSet<&str> = plan.instances.iter().map(|i| i.stage.as_str()).collect();
        return Err(Failure::Other(format!(
            "no stage or instance `{stage}` in {}; stages: {}",
            file.display(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let states = evaluate::evaluate(&plan, &store);
    let failed = last_failures(&plan, &store, &states);
    let mut items = Vec::new();
    let mut damaged = 0;
    for idx in selected {
        let inst = &plan.instances[idx.0];
        let st = &states[idx.0];
        let mut item = json!({"instance": inst.name, "state": st.label(), "key": st.key,
                              "params": crate::cache::readable::readable(&inst.params)});
        // What is printed is re-hashed first: a damaged result is reported, never shown.
        let verified = st.record.as_ref().map(|rec| (rec, store.trust(rec, Check::Full)));
        match verified {
            Some((rec, Ok(()))) => {
                let mut files = Vec::new();
                let mut metrics = serde_json::Map::new();
                for out in rec.outputs.keys() {
                    files.extend(store.output_files(rec, out));
                    if let Ok(m) = crate::artifact::Metrics::load(&store.output_dir(&rec.object, out)) {
                        metrics.insert(out.clone(), json!(m.values));
                    }
                }
                item["object"] = json!(store.object_dir(&rec.object));
                item["outputs"] = json!(rec.outputs);
                item["files"] = json!(files);
                item["metrics"] = json!(metrics);
                item["provenance"] = rec.provenance.clone();
                if let Some(params) = item["provenance"].get_mut("params") {
                    *params = crate::cache::readable::readable(params);
                }
            }
            Some((_, Err(Untrusted::Unreadable(denied)))) => {
                eprintln!("warning: {}: cfrun may not read its cached result ({denied}); not shown", inst.name);
                item["state"] = json!("unreadable");
                item["because"] = json!([format!("cfrun may not read its cached result ({denied})")]);
            }
            Some((_, Err(Untrusted::Damaged(why)))) => {
                damaged += 1;
                eprintln!("warning: {}: cached result is damaged ({why}); not shown, a run rebuilds it", inst.name);
                item["state"] = json!("damaged");
                item["because"] = json!([format!("cached result is damaged ({why})")]);
            }
            None => {
                damaged += usize::from(st.label() == "damaged");
                item["because"] = json!(reasons_beside(st, failed[idx.0].is_some()));
                if let Some(error) = &failed[idx.0] {
                    item["state"] = json!("failed");
                    item["error"] = json!(error);
                }
            }
        }
        items.push(item);
    }
    if g.json {
        println!("{}", json!(items));
    } else {
        let texts: Vec<String> = items.iter().map(super::show_text::render).collect();
        print!("{}", texts.join("\n"));
    }
    Ok(if damaged == 0 { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}

fn report(file: &Path, g: &Global, out: &Path) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store_to_read(g)?;
    require_folder("-o", out)?;
    let path = crate::html::write(&plan, &store, file, out).map_err(Failure::runtime)?;
    if g.json {
        println!("{}", json!({"experiment": plan.experiment.name, "report": path}));
    } else {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(files: &[PathBuf], g: &Global, dry_run: bool) -> Result<ExitCode, Failure> {
    let plans = files.iter().map(|f| load(f, g)).collect::<Result<Vec<_>, _>>()?;
    // Exclusive: waits for every running cfrun on this cache, and keeps new ones out meanwhile.
    // A cache that does not exist holds nothing to collect, and is not created.
    let store = if !holds_nothing(&g.cache) {
        require_cache_folder(&g.cache)?;
        Store::open_exclusive(&g.cache).map_err(Failure::runtime)?
    } else {
        open_store_to_read(g)?
    };
    // Keys from the records alone: a damaged result is repaired by the next run, not collected,
    // and neither is what hangs below it.
    let mut in_use = BTreeMap::new();
    for plan in &plans {
        for (key, published) in evaluate::keys_in_use(plan, &store) {
            *in_use.entry(key).or_insert(false) |= published;
        }
    }
    let garbage = cache_gc::find(&store, &in_use);
    let total: u64 =
        garbage.objects.iter().map(|(_, s)| s).sum::<u64>() + garbage.checkpoints.iter().map(|(_, s)| s).sum::<u64>();
    if dry_run {
        let names = last_names(&store, &garbage.keys);
        if g.json {
            let objects: Vec<_> = garbage.objects.iter().map(|(o, _)| o).collect();
            let checkpoints: Vec<_> = garbage.checkpoints.iter().map(|(c, _)| c).collect();
            // Only what would be removed: a dead key's object that a kept key shares stays.
            let named: BTreeMap<String, &String> =
                garbage.objects.iter().filter_map(|(o, _)| names.get(o).map(|n| (o.to_string(), n))).collect();
            println!(
                "{}",
                json!({"dry_run": true, "objects": objects, "keys": garbage.keys.len(), "checkpoints": checkpoints,
                       "bytes": total, "names": named})
            );
        } else {
            for (obj, size) in &garbage.objects {
                let name = names.get(obj).map(|n| format!(", last computed as {n}")).unwrap_or_default();
                println!("would remove {obj} ({}{name})", human(*size));
            }
            for (name, size) in &garbage.checkpoints {
                println!("would remove checkpoint {name} ({})", human(*size));
            }
            println!(
                "would free {} objects, {} keys and {} checkpoints, {}",
                garbage.objects.len(),
                garbage.keys.len(),
                garbage.checkpoints.len(),
                human(total)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let swept = cache_gc::sweep(&store, &garbage);
    if g.json {
        let objects: Vec<_> = swept.objects_removed.iter().map(|(o, _)| o).collect();
        println!(
            "{}",
            json!({"dry_run": false, "objects": objects, "keys": swept.keys_removed, "bytes": swept.bytes_freed,
                   "checkpoints": swept.checkpoints_removed, "locks": swept.locks_removed,
                   "staging": swept.staging_removed, "job_specs": swept.specs_removed,
                   "failures": swept.failures})
        );
    } else {
        for (obj, size) in &swept.objects_removed {
            println!("removed {obj} ({})", human(*size));
        }
        for f in &swept.failures {
            eprintln!("could not remove {f}");
        }
        println!(
            "freed {} objects and {} keys, {} ({} stale checkpoints, {} stale lock files, {} leftover staging \
             folders, {} finished job specs)",
            swept.objects_removed.len(),
            swept.keys_removed,
            human(swept.bytes_freed),
            swept.checkpoints_removed,
            swept.locks_removed,
            swept.staging_removed,
            swept.specs_removed
        );
    }
    Ok(if swept.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}

/// The error of each instance whose last run failed with the recipe it has now and published
/// nothing since (`None` for the others): `status` and `show` say so instead of "never run".
fn last_failures(plan: &Plan, store: &Store, states: &[evaluate::InstanceState]) -> Vec<Option<String>> {
    let (_, last) = crate::html::history::read(&store.root().join("runs.jsonl"), &plan.experiment.name);
    plan.instances
        .iter()
        .zip(states)
        .map(|(inst, st)| {
            let line =
                last.get(&inst.name).filter(|l| st.record.is_none() && l.outcome == "failed" && l.key == st.key)?;
            Some(printable_cut(line.error.as_deref().unwrap_or(""), 4000))
        })
        .collect()
}

/// Why an instance is not cached, as words; beside a failure, without "never run" (it ran) and
/// without its checkpoint counted as an interrupted run's.
fn reasons_beside(st: &evaluate::InstanceState, failed: bool) -> Vec<String> {
    let said_by_failure = |r: &&DirtyReason| failed && matches!(r, DirtyReason::New | DirtyReason::Resumable { .. });
    st.reasons.iter().filter(|r| !said_by_failure(r)).map(|r| r.to_string()).collect()
}

/// The name each object of `keys` was last computed under (`instance` of `experiment`), from
/// the run log: what `gc --dry-run` shows beside a digest.
fn last_names(store: &Store, keys: &[RecipeKey]) -> BTreeMap<crate::cache::Digest, String> {
    let wanted: BTreeSet<&RecipeKey> = keys.iter().collect();
    let mut name_of_key: BTreeMap<RecipeKey, String> = BTreeMap::new();
    for entry in store.run_log() {
        if let Some(key) = entry.key.filter(|k| wanted.contains(k)) {
            name_of_key.insert(key, format!("{} of {}", entry.instance, entry.experiment));
        }
    }
    name_of_key.into_iter().filter_map(|(key, name)| Some((store.lookup(&key)?.object, name))).collect()
}

/// Sizes as `gc` prints them: `33.0 KB`, `1.2 GB`.
fn human(bytes: u64) -> String {
    crate::config::limits::human_bytes_to(bytes, 1)
}

fn data(action: DataAction, g: &Global) -> Result<ExitCode, Failure> {
    match action {
        DataAction::List => {
            let store = open_store_to_read(g)?;
            let listing = crate::data::describe_sources(&store.data_dir());
            if g.json {
                println!("{}", serde_json::to_string(&listing).unwrap_or_default());
            } else {
                for d in listing {
                    println!("{d}");
                }
            }
        }
        DataAction::Fetch { name } => {
            let parsed: crate::data::DatasetName = name.parse().map_err(|_| {
                Failure::Other(format!(
                    "unknown data set `{name}`; valid: {}",
                    crate::data::DatasetName::valid_names().join(", ")
                ))
            })?;
            // Only a valid name creates the cache.
            let store = open_store(g)?;
            let opts = crate::ops::dataset::DatasetParams {
                name: name.clone(),
                path: None,
                train_size: None,
                test_size: None,
                classes: None,
                size: None,
                seed: 0,
            }
            .load_options(store.data_dir());
            let files = crate::data::fetch(parsed, &opts).map_err(Failure::runtime)?;
            if g.json {
                println!("{}", json!({"dataset": name, "files": files}));
            } else {
                for f in files {
                    println!("{}", f.display());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_device(choice: device::DeviceChoice, presets: &[String], g: &Global) -> Result<ExitCode, Failure> {
    // A preset name is input: an unknown one is a usage error, before any device is opened.
    if let Some(bad) = presets.iter().find(|p| !crate::nn::PRESETS.contains(&p.as_str())) {
        return Err(Failure::Other(format!("unknown preset `{bad}`; valid: {}", crate::nn::PRESETS.join(", "))));
    }
    // Asking a CPU-only binary to check a GPU is a usage error; a GPU that does not answer is
    // the check's own verdict.
    let (device, name) = device::open(choice).map_err(|e| match e {
        device::DeviceError::NotBuiltIn => Failure::Other(e.to_string()),
        device::DeviceError::Unusable(_) => Failure::runtime(e),
    })?;
    let checks = crate::eval::device_check::run_checks(&device, presets).map_err(Failure::runtime)?;
    let ok = checks.iter().all(|c| c.ok);
    if g.json {
        println!("{}", json!({"device": name, "ok": ok, "checks": checks}));
    } else {
        println!("device check: {name} against cfrun's CPU kernels");
        for c in &checks {
            println!(
                "  {}  {:<62} {:>10.3e} (tolerance {:.0e})  {:.2} s / {:.2} s",
                if c.ok { "ok  " } else { "FAIL" },
                c.what,
                c.difference,
                c.tolerance,
                c.seconds.0,
                c.seconds.1
            );
            if let Some(e) = &c.error {
                println!("        the device side failed: {e}");
            }
        }
        println!("{}", if ok { "all checks passed" } else { "some checks FAILED" });
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}
