//! The commands behind the CLI.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::MultiProgress;
use serde_json::json;

use super::{Command, DataAction, Global};
use crate::cache::Store;
use crate::config::ExecutorKind;
use crate::config::{ConfigError, Experiment};
use crate::exec::compute::ComputeEnv;
use crate::exec::{self, device, evaluate, Outcome, RunOptions};
use crate::graph::{render, Plan};
use crate::ops;

pub(super) fn dispatch(cmd: Command, g: &Global, bars: Option<MultiProgress>) -> ExitCode {
    let result = match cmd {
        Command::Run { file, jobs, device, executor } => run(&file, g, jobs, device, &executor, bars),
        Command::Exec { target, instance, device } => super::cluster::exec(&target, instance.as_deref(), device, g),
        Command::Status { file } => status(&file, g),
        Command::Dag { file, format } => load(&file, g).map(|plan| {
            print!("{}", render::render(&plan, format));
            ExitCode::SUCCESS
        }),
        Command::Show { file, stage } => show(&file, g, &stage),
        Command::Gc { files, dry_run } => gc(&files, g, dry_run),
        Command::Data { action } => data(action, g),
        Command::Ops => {
            print_ops();
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckDevice { device, presets } => check_device(device, &presets, g),
    };
    result.unwrap_or_else(|e| {
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
            Failure::Other(msg) => eprintln!("error: {msg}"),
        }
        ExitCode::from(2)
    })
}

/// Why a command did not run (exit 2).
pub(super) enum Failure {
    Config(ConfigError),
    Other(String),
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
    Store::open(&g.cache).map_err(|e| Failure::Other(e.to_string()))
}

fn run(
    file: &Path,
    g: &Global,
    jobs: usize,
    choice: device::DeviceChoice,
    executor: &super::cluster::ExecutorArgs,
    bars: Option<MultiProgress>,
) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let settings = executor.settings(&plan.experiment.executor)?;
    let store = open_store(g)?;
    let (dev, device_name) = device::open(choice).map_err(Failure::Other)?;
    let started = Instant::now();
    let env = ComputeEnv { store: store.clone(), device: dev, device_name, bars, provenance: Default::default() };
    let device_flag = clap::ValueEnum::to_possible_value(&choice).map(|v| v.get_name().to_string()).unwrap_or_default();
    let opts = RunOptions { jobs, env, device_flag, executor: settings };
    let summary = exec::run(&plan, &store, &opts).map_err(Failure::Other)?;
    let reports = &summary.reports;
    let wall = started.elapsed().as_secs_f64();
    let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
    let (ran, cached, failed, skipped) =
        (count(Outcome::Ran), count(Outcome::Cached), count(Outcome::Failed), count(Outcome::Skipped));
    let mut report_files = Vec::new();
    for (inst, rep) in plan.instances.iter().zip(reports) {
        let Some(record) = &rep.record else { continue };
        let op = ops::find(&inst.op).expect("known op");
        for out in op.outputs().iter().filter(|o| o.kind == ops::Kind::Report) {
            let dir = store.output_dir(&record.object, out.name);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            report_files.push((inst.name.clone(), files));
        }
    }
    if g.json {
        let reports_json: Vec<_> = report_files.iter().map(|(n, f)| json!({"instance": n, "files": f})).collect();
        println!(
            "{}",
            json!({"ok": failed + skipped == 0, "experiment": plan.experiment.name, "wall_seconds": wall,
                   "ran": ran, "cached": cached, "failed": failed, "skipped": skipped,
                   "submitted": summary.submitted, "interrupted": summary.interrupted,
                   "instances": reports, "reports": reports_json})
        );
    } else {
        for (name, files) in &report_files {
            for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
                if let Ok(text) = std::fs::read_to_string(f) {
                    println!("## {name}\n\n{text}");
                }
            }
            for f in files.iter().filter(|f| f.extension().is_some_and(|e| e != "md")) {
                println!("{name}: {}", f.display());
            }
        }
        for r in reports.iter().filter(|r| r.error.is_some()) {
            eprintln!(
                "{} {}: {}",
                if r.outcome == Outcome::Failed { "FAILED" } else { "skipped" },
                r.name,
                r.error.as_deref().unwrap_or("")
            );
        }
        let jobs = if opts.executor.kind == Some(ExecutorKind::Slurm) {
            format!(", {} Slurm submissions", summary.submitted)
        } else {
            String::new()
        };
        eprintln!(
            "{}: {} instances, {ran} ran, {cached} cached, {failed} failed, {skipped} skipped in {wall:.1}s{jobs}",
            plan.experiment.name,
            reports.len()
        );
    }
    if summary.interrupted {
        eprintln!("interrupted: every finished instance is cached; run again to continue");
        return Ok(ExitCode::from(130));
    }
    Ok(if failed + skipped == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn status(file: &Path, g: &Global) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store(g)?;
    let states = evaluate::evaluate(&plan, &store);
    let live = super::cluster::live_jobs(&store, &states);
    let label = |i: usize, st: &evaluate::InstanceState| live.get(&i).map_or(st.label(), |j| j.label());
    if g.json {
        let items: Vec<_> = plan
            .instances
            .iter()
            .zip(&states)
            .enumerate()
            .map(|(i, (inst, st))| {
                let job = live.get(&i).map(|j| json!({"id": j.id, "state": j.state, "node": j.node}));
                json!({"instance": inst.name, "state": label(i, st), "key": st.key, "job": job,
                       "reasons": st.reasons, "because": st.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", json!({"experiment": plan.experiment.name, "instances": items}));
    } else {
        let width = plan.instances.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for (i, (inst, st)) in plan.instances.iter().zip(&states).enumerate() {
            let mut why: Vec<String> = st.reasons.iter().map(|r| r.to_string()).collect();
            if let Some(job) = live.get(&i) {
                why.insert(0, job.describe());
            }
            let why = if why.is_empty() { String::new() } else { format!("  {}", why.join("; ")) };
            println!("{:<7} {:<width$}{why}", label(i, st), inst.name);
        }
        let cached = states.iter().filter(|s| s.record.is_some()).count();
        println!("{} of {} instances cached", cached, states.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn show(file: &Path, g: &Global, stage: &str) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store(g)?;
    let selected = plan.select(stage);
    if selected.is_empty() {
        let names: BTreeSet<&str> = plan.instances.iter().map(|i| i.stage.as_str()).collect();
        return Err(Failure::Other(format!(
            "no stage or instance `{stage}` in {}; stages: {}",
            file.display(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let states = evaluate::evaluate(&plan, &store);
    let mut items = Vec::new();
    for idx in selected {
        let inst = &plan.instances[idx.0];
        let st = &states[idx.0];
        let mut item = json!({"instance": inst.name, "state": st.label(), "key": st.key, "params": inst.params});
        if let Some(rec) = &st.record {
            let dir = store.object_dir(&rec.object);
            let mut files = Vec::new();
            let mut metrics = serde_json::Map::new();
            for out in rec.outputs.keys() {
                let odir = dir.join(out);
                if let Ok(rd) = std::fs::read_dir(&odir) {
                    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
                    names.sort();
                    files.extend(names);
                }
                if let Ok(m) = crate::artifact::Metrics::load(&odir) {
                    metrics.insert(out.clone(), json!(m.values));
                }
            }
            item["object"] = json!(dir);
            item["outputs"] = json!(rec.outputs);
            item["files"] = json!(files);
            item["metrics"] = json!(metrics);
            item["provenance"] = rec.provenance.clone();
        } else {
            item["because"] = json!(st.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>());
        }
        items.push(item);
    }
    if g.json {
        println!("{}", json!(items));
    } else {
        for item in &items {
            println!("{}", serde_json::to_string_pretty(item).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(files: &[PathBuf], g: &Global, dry_run: bool) -> Result<ExitCode, Failure> {
    let store = open_store(g)?;
    let mut live_keys = BTreeSet::new();
    for file in files {
        let plan = load(file, g)?;
        for st in evaluate::evaluate(&plan, &store) {
            if let Some(rec) = st.record {
                live_keys.insert(rec.key);
            }
        }
    }
    let mut live_objects = BTreeSet::new();
    let mut dead_keys = Vec::new();
    for key in store.all_keys() {
        match store.lookup(&key) {
            Some(rec) if live_keys.contains(&key) => {
                live_objects.insert(rec.object);
            }
            _ => dead_keys.push(key),
        }
    }
    let dead_objects: Vec<_> = store.all_objects().into_iter().filter(|o| !live_objects.contains(o)).collect();
    let mut freed = 0u64;
    for obj in &dead_objects {
        let size = store.object_size(obj);
        freed += size;
        if !g.json {
            println!("{} {} ({})", if dry_run { "would remove" } else { "removing" }, obj, human(size));
        }
        if !dry_run {
            let _ = std::fs::remove_dir_all(store.object_dir(obj));
        }
    }
    if !dry_run {
        for key in &dead_keys {
            let _ = store.remove_key(key);
        }
        let _ = std::fs::remove_dir_all(store.root().join("tmp"));
        let _ = std::fs::create_dir_all(store.root().join("tmp"));
    }
    if g.json {
        println!("{}", json!({"dry_run": dry_run, "objects": dead_objects, "keys": dead_keys.len(), "bytes": freed}));
    } else {
        println!(
            "{} {} objects and {} keys, {}",
            if dry_run { "would free" } else { "freed" },
            dead_objects.len(),
            dead_keys.len(),
            human(freed)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else {
        format!("{mb:.1} MB")
    }
}

fn data(action: DataAction, g: &Global) -> Result<ExitCode, Failure> {
    let store = open_store(g)?;
    match action {
        DataAction::List => {
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
            let files = crate::data::fetch(parsed, &opts).map_err(|e| Failure::Other(e.to_string()))?;
            for f in files {
                println!("{}", f.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_ops() {
    for op in ops::registry() {
        println!("{} (v{}): {}", op.name(), op.version(), op.summary());
        for i in op.inputs() {
            let kinds: Vec<String> = i.kinds.iter().map(|k| k.to_string()).collect();
            let req = if i.required { "required" } else { "optional" };
            let many = if i.gather { ", gathers all instances" } else { "" };
            println!("  input  {:<10} {} ({req}{many}): {}", i.name, kinds.join("|"), i.doc);
        }
        for o in op.outputs() {
            println!("  output {:<10} {}: {}", o.name, o.kind, o.doc);
        }
        println!("  params {}", op.param_fields().join(", "));
    }
}

fn check_device(choice: device::DeviceChoice, presets: &[String], g: &Global) -> Result<ExitCode, Failure> {
    let (device, name) = device::open(choice).map_err(Failure::Other)?;
    let checks = crate::exec::device_check::run_checks(&device, presets).map_err(Failure::Other)?;
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
        }
        println!("{}", if ok { "all checks passed" } else { "some checks FAILED" });
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
