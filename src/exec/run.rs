//! Runs a plan: cached instances are reused (after verifying their bytes), the rest run in
//! topological order, up to `jobs` at a time. A failure fails its instance and skips only its
//! dependants; every finished artifact stays published.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::Device;
use indicatif::MultiProgress;
use serde::Serialize;

use super::evaluate::recipe_for;
use super::progress::Progress;
use crate::cache::lock::{self, TryLock};
use crate::cache::records::{NameRecord, RunLogLine};
use crate::cache::{KeyRecord, Recipe, RecipeKey, Store};
use crate::graph::{Instance, InstanceIdx, Plan};
use crate::ops::{self, InputArtifact, OpError, StageCtx};

/// How an instance ended in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Reused from the cache.
    Cached,
    /// Computed now.
    Ran,
    /// Its op failed.
    Failed,
    /// Not run because an input failed.
    Skipped,
}

/// The result of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceReport {
    /// Instance name.
    pub name: String,
    /// Recipe key, when known.
    pub key: Option<RecipeKey>,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The error, for failures and skips.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The published record, when it has one.
    #[serde(skip)]
    pub record: Option<KeyRecord>,
}

/// Options of a run.
pub struct RunOptions<'a> {
    /// Instances run side by side at most.
    pub jobs: usize,
    /// Where tensors live.
    pub device: &'a Device,
    /// The device's name for provenance (`cpu`, `cuda:0`).
    pub device_name: String,
    /// Progress bars (when stderr is a terminal).
    pub bars: Option<MultiProgress>,
}

enum Slot {
    Waiting,
    Running,
    Done(Box<KeyRecord>),
    Broken,
}

/// Runs every instance of the plan; returns one report per instance, in plan order.
pub fn run(plan: &Plan, store: &Store, opts: &RunOptions<'_>) -> Vec<InstanceReport> {
    let n = plan.instances.len();
    let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Waiting).collect();
    let mut reports: Vec<Option<InstanceReport>> = vec![None; n];
    let (tx, rx) = mpsc::channel::<(usize, InstanceReport)>();
    let jobs = opts.jobs.max(1);
    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            // Settle everything whose fate is decided without running it.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for i in 0..n {
                    if !matches!(slots[i], Slot::Waiting) {
                        continue;
                    }
                    let inst = &plan.instances[i];
                    let ups: Vec<usize> = inst.inputs.values().flatten().map(|r| r.instance.0).collect();
                    if let Some(&bad) = ups.iter().find(|&&u| matches!(slots[u], Slot::Broken)) {
                        let why = format!("input {} did not complete", plan.instances[bad].name);
                        tracing::warn!("skipping {}: {why}", inst.name);
                        let report = finish(store, plan, inst, None, Outcome::Skipped, 0.0, Some(why));
                        slots[i] = Slot::Broken;
                        reports[i] = Some(report);
                        progressed = true;
                    }
                }
            }
            // Dispatch ready instances.
            for i in 0..n {
                if running >= jobs {
                    break;
                }
                if !matches!(slots[i], Slot::Waiting) {
                    continue;
                }
                let inst = &plan.instances[i];
                let ready = inst.inputs.values().flatten().all(|r| matches!(slots[r.instance.0], Slot::Done(_)));
                if !ready {
                    continue;
                }
                let upstream: Vec<Option<KeyRecord>> = slots
                    .iter()
                    .map(|s| match s {
                        Slot::Done(r) => Some((**r).clone()),
                        _ => None,
                    })
                    .collect();
                slots[i] = Slot::Running;
                running += 1;
                let tx = tx.clone();
                scope.spawn(move || {
                    let report = run_guarded(plan, store, opts, InstanceIdx(i), &upstream);
                    let _ = tx.send((i, report));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((i, report)) = rx.recv() else { break };
            running -= 1;
            slots[i] = match &report.record {
                Some(r) => Slot::Done(Box::new(r.clone())),
                None => Slot::Broken,
            };
            reports[i] = Some(report);
        }
    });
    reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| InstanceReport {
                name: plan.instances[i].name.clone(),
                key: None,
                outcome: Outcome::Skipped,
                seconds: 0.0,
                error: Some("not reached".into()),
                record: None,
            })
        })
        .collect()
}

/// [`run_one`], with a panic inside the stage turned into that stage's failure: the scheduler
/// must hear back from every instance it started, or it would wait for it forever. Staging
/// folders and locks are released by their destructors while the panic unwinds.
fn run_guarded(
    plan: &Plan,
    store: &Store,
    opts: &RunOptions<'_>,
    idx: InstanceIdx,
    upstream: &[Option<KeyRecord>],
) -> InstanceReport {
    let started = Instant::now();
    let run = std::panic::AssertUnwindSafe(|| {
        // A fault-injection point for the tests: the instance named here panics.
        if std::env::var("CFRUN_FAILPOINT_PANIC").is_ok_and(|v| v == plan.instances[idx.0].name) {
            panic!("failpoint CFRUN_FAILPOINT_PANIC");
        }
        run_one(plan, store, opts, idx, upstream)
    });
    std::panic::catch_unwind(run).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let inst = &plan.instances[idx.0];
        let why = format!("internal error (a bug in cfrun; please report it): panicked: {msg}");
        tracing::error!("{} failed: {why}", inst.name);
        finish(store, plan, inst, None, Outcome::Failed, started.elapsed().as_secs_f64(), Some(why))
    })
}

fn run_one(
    plan: &Plan,
    store: &Store,
    opts: &RunOptions<'_>,
    idx: InstanceIdx,
    upstream: &[Option<KeyRecord>],
) -> InstanceReport {
    let inst = &plan.instances[idx.0];
    let started = Instant::now();
    let recipe = match recipe_for(plan, inst, upstream) {
        Ok(r) => r,
        Err(why) => return finish(store, plan, inst, None, Outcome::Skipped, 0.0, Some(why.to_string())),
    };
    let key = recipe.key();
    match execute(plan, store, opts, inst, &recipe, key, upstream) {
        Ok((record, outcome)) => {
            let secs = started.elapsed().as_secs_f64();
            if outcome == Outcome::Ran {
                tracing::info!("ran {} in {:.1}s", inst.name, secs);
            }
            let mut report = finish(store, plan, inst, Some(key), outcome, secs, None);
            let _ = store.set_name_record(&plan.experiment.name, &inst.name, &NameRecord { key, recipe });
            report.record = Some(record);
            report
        }
        Err(e) => {
            let secs = started.elapsed().as_secs_f64();
            tracing::error!("{} failed: {e}", inst.name);
            finish(store, plan, inst, Some(key), Outcome::Failed, secs, Some(e.to_string()))
        }
    }
}

/// Reuses or computes one instance, holding its key's lock while computing.
fn execute(
    plan: &Plan,
    store: &Store,
    opts: &RunOptions<'_>,
    inst: &Instance,
    recipe: &Recipe,
    key: RecipeKey,
    upstream: &[Option<KeyRecord>],
) -> Result<(KeyRecord, Outcome), OpError> {
    if let Some(record) = cached(store, inst, &key) {
        return Ok((record, Outcome::Cached));
    }
    let lock_path = store.lock_path(&key);
    let _guard = match lock::try_lock(&lock_path).map_err(cache_err)? {
        TryLock::Acquired(g) => g,
        TryLock::Busy => {
            tracing::info!("waiting for lock on {} (another cfrun is computing it)", inst.name);
            lock::lock(&lock_path).map_err(cache_err)?
        }
    };
    // Another process may have published it while we waited.
    if let Some(record) = cached(store, inst, &key) {
        return Ok((record, Outcome::Cached));
    }
    let op = ops::find(&inst.op).expect("plans only hold known ops");
    let staging = store.staging_dir().map_err(cache_err)?;
    let mut inputs: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
    for (slot, refs) in &inst.inputs {
        let list = refs
            .iter()
            .map(|r| {
                let up = &plan.instances[r.instance.0];
                let rec = upstream[r.instance.0].as_ref().expect("inputs are done before dispatch");
                let kind =
                    ops::find(&up.op).and_then(|o| o.output_kind(&up.params, &r.output)).expect("checked by graph");
                InputArtifact {
                    dir: store.output_dir(&rec.object, &r.output),
                    kind,
                    instance: up.name.clone(),
                    stage: up.stage.clone(),
                    axes: up.axes.clone(),
                }
            })
            .collect();
        inputs.insert(slot.clone(), list);
    }
    // No byte enters a computation unless it still hashes to the digest its key promises.
    store
        .verify_inputs(inst.inputs.values().flatten().filter_map(|r| upstream[r.instance.0].as_ref()))
        .map_err(cache_err)?;
    tracing::info!("running {} ({})", inst.name, key.short());
    let progress = Progress::new(&inst.name, opts.bars.clone());
    let started = Instant::now();
    let mut ctx = StageCtx {
        instance: inst,
        inputs,
        staging: staging.path(),
        checkpoint_dir: store.checkpoint_dir(&key),
        data_dir: store.data_dir(),
        device: opts.device,
        progress: &progress,
    };
    op.run(&mut ctx)?;
    progress.finish();
    for out in op.output_names(&inst.params) {
        if !staging.path().join(&out).is_dir() {
            return Err(OpError::Invalid(format!("op {} did not write its output `{out}`", op.name())));
        }
    }
    let provenance = serde_json::json!({
        "instance": inst.name,
        "experiment": plan.experiment.name,
        "op": inst.op,
        "op_version": op.version(),
        "params": inst.params,
        "inputs": inst.inputs.iter().map(|(slot, refs)| (slot.clone(), refs.iter().map(|r| {
            let up = &plan.instances[r.instance.0];
            serde_json::json!({"instance": up.name, "output": r.output,
                "digest": upstream[r.instance.0].as_ref().and_then(|rec| rec.outputs.get(&r.output)).map(|d| d.to_string())})
        }).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
        "seed": inst.params.get("seed"),
        "device": opts.device_name,
        "threads": rayon::current_num_threads(),
        "cfrun_version": env!("CARGO_PKG_VERSION"),
        "started_unix": now_unix() - started.elapsed().as_secs_f64(),
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    let record = store.publish(staging, key, recipe, provenance).map_err(cache_err)?;
    let _ = std::fs::remove_dir_all(store.checkpoint_dir(&key));
    Ok((record, Outcome::Ran))
}

/// The verified record of `key`; a damaged object is reported, evicted and treated as missing.
fn cached(store: &Store, inst: &Instance, key: &RecipeKey) -> Option<KeyRecord> {
    let record = store.lookup(key)?;
    match store.verify(&record) {
        Ok(()) => Some(record),
        Err(why) => {
            tracing::warn!("{}: cached result is corrupt ({why}); rebuilding it", inst.name);
            store.evict(&record);
            None
        }
    }
}

fn cache_err(e: crate::cache::CacheError) -> OpError {
    OpError::Invalid(e.to_string())
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn finish(
    store: &Store,
    plan: &Plan,
    inst: &Instance,
    key: Option<RecipeKey>,
    outcome: Outcome,
    seconds: f64,
    error: Option<String>,
) -> InstanceReport {
    let line = RunLogLine {
        time: now_unix(),
        experiment: plan.experiment.name.clone(),
        instance: inst.name.clone(),
        key,
        outcome: serde_json::to_value(&outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        seconds,
        error: error.clone(),
    };
    if let Err(e) = store.log_run(&line) {
        tracing::warn!("could not append to the run log: {e}");
    }
    InstanceReport { name: inst.name.clone(), key, outcome, seconds, error, record: None }
}
