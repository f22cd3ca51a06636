//! The scheduler: decides what is ready and hands it to an executor, which decides where it runs.
//! A ready instance's inputs are all published; a failure fails its instance and skips only its
//! dependants; every finished artifact stays published.
//!
//! Readiness is counted, not rescanned: each instance keeps the number of its inputs not yet
//! published, and a finished instance touches only its own dependants, so scheduling a plan costs
//! time linear in its edges. A job clones only its own inputs' records. Of the ready instances,
//! the head of the longest chain of estimated work starts first ([`super::priority`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::compute::now_unix;
use super::evaluate::recipe_for;
use super::executor::{Executor, Finished, RunOptions, StartError};
use super::job::{sibling_lists, Job};
use super::local::LocalExecutor;
use super::outcome::Outcome;
use super::priority::{chain_estimates, ReadyQueue};
use super::processes::ProcessExecutor;
use super::resources::for_instance;
use super::slurm::SlurmExecutor;
use crate::cache::records::{NameRecord, RunLogLine};
use crate::cache::{KeyRecord, RecipeKey, Store};
use crate::config::{ExecutorKind, ExecutorSettings};
use crate::graph::{Instance, Plan};
use crate::human;

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

/// The error of an instance a Ctrl-C stopped after it was handed over, and before.
const STOPPED_RUNNING: &str = "interrupted while running or queued to run";
const STOPPED_BEFORE: &str = "interrupted before it started";

impl InstanceReport {
    /// Whether a Ctrl-C stopped it (rather than a failure of its own or upstream).
    pub fn stopped(&self) -> bool {
        self.record.is_none() && matches!(self.error.as_deref(), Some(STOPPED_RUNNING | STOPPED_BEFORE))
    }
}

/// What a run did.
pub struct RunSummary {
    /// One report per instance, in plan order.
    pub reports: Vec<InstanceReport>,
    /// Jobs submitted to a cluster.
    pub submitted: usize,
    /// Whether Ctrl-C stopped it before every instance ended.
    pub interrupted: bool,
}

/// Runs every instance of the plan with the executor the options name. `Err` when the executor
/// cannot start (e.g. no `sbatch`, or a cache whose locks would not hold across nodes).
pub fn run(plan: &Plan, store: &Store, opts: &RunOptions) -> Result<RunSummary, StartError> {
    let mut executor: Box<dyn Executor> = match opts.executor.kind.unwrap_or_default() {
        ExecutorKind::Local => Box::new(LocalExecutor::new(opts.env.clone(), opts.jobs)),
        ExecutorKind::Slurm => Box::new(SlurmExecutor::new(opts)?),
        ExecutorKind::Processes => Box::new(ProcessExecutor::new(opts)?),
    };
    // The first Ctrl-C ends the run with its summary (a cluster driver cancels its jobs first);
    // a second one ends the process at once.
    super::interrupt::install();
    Ok(schedule(plan, store, executor.as_mut(), &opts.executor))
}

enum State {
    Waiting(usize),
    Running,
    Done,
    Broken,
}

/// The scheduling loop.
fn schedule(plan: &Plan, store: &Store, executor: &mut dyn Executor, settings: &ExecutorSettings) -> RunSummary {
    let n = plan.instances.len();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut state: Vec<State> = Vec::with_capacity(n);
    for (i, inst) in plan.instances.iter().enumerate() {
        let ups: Vec<usize> = inst.inputs.values().flatten().map(|r| r.instance.0).collect();
        for &u in &ups {
            dependants[u].push(i);
        }
        state.push(State::Waiting(ups.len()));
    }
    let mut records: Vec<Option<KeyRecord>> = vec![None; n];
    let mut keys: Vec<Option<RecipeKey>> = vec![None; n];
    let mut reports: Vec<Option<InstanceReport>> = vec![None; n];
    let mut ran_by: BTreeMap<RecipeKey, usize> = BTreeMap::new();
    let mut cached_warnings = CachedWarnings::default();
    let mut ready = ReadyQueue::new(chain_estimates(plan, &dependants));
    let siblings = sibling_lists(plan);
    (0..n).filter(|&i| matches!(state[i], State::Waiting(0))).for_each(|i| ready.push(i));
    let mut in_flight = 0usize;
    let started = Instant::now();
    let ledger = Ledger::new(store, plan);
    loop {
        while executor.has_room() {
            let Some(i) = ready.pop() else { break };
            let inst = &plan.instances[i];
            match recipe_for(plan, inst, &records) {
                Ok(recipe) => {
                    let resources = for_instance(plan, inst, settings);
                    let mut job = Job::from_plan(plan, i, recipe, resources, &records);
                    job.siblings = siblings[i].iter().map(|&j| plan.instances[j].params.clone()).collect();
                    keys[i] = Some(job.key);
                    executor.submit(job);
                    state[i] = State::Running;
                    in_flight += 1;
                }
                Err(why) => {
                    let report = ledger.finish(inst, None, Outcome::Skipped, 0.0, Some(why.to_string()));
                    reports[i] = Some(report);
                    fail(&ledger, i, &dependants, &mut state, &mut reports);
                }
            }
        }
        if in_flight == 0 || super::interrupt::interrupted() {
            break;
        }
        let finished = executor.wait();
        if finished.is_empty() {
            // Nothing came back: the executor was interrupted (or lost its jobs).
            break;
        }
        let mut unread = finished.len();
        for Finished { index: i, result, seconds } in finished {
            in_flight -= 1;
            unread -= 1;
            let inst = &plan.instances[i];
            match result {
                Ok((record, outcome)) => {
                    // Instances of one recipe are computed once: say which served the others.
                    let twin = keys[i].and_then(|k| ran_by.get(&k)).filter(|_| outcome == Outcome::Cached);
                    if let Some(&j) = twin {
                        tracing::info!(
                            "{} has the recipe of {}, which this run computed: served from it",
                            inst.name,
                            plan.instances[j].name
                        );
                    }
                    // A result found cached says again what its computation warned of.
                    if outcome == Outcome::Cached && twin.is_none() {
                        cached_warnings.say(inst, &record);
                    }
                    if outcome == Outcome::Ran {
                        if let Some(k) = keys[i] {
                            ran_by.entry(k).or_insert(i);
                        }
                        // Where a long study stands, without counting by hand through the log.
                        let done = reports.iter().filter(|r| r.is_some()).count() + 1;
                        tracing::info!(
                            "ran {} in {} ({done} of {n} instances done, {} running, {} elapsed)",
                            inst.name,
                            human::duration(seconds),
                            in_flight - unread,
                            human::duration(started.elapsed().as_secs_f64())
                        );
                    }
                    reports[i] = Some(ledger.published(inst, record.clone(), outcome, seconds));
                    records[i] = Some(record);
                    state[i] = State::Done;
                    // Its op may have left work for its siblings in memory (`extract`'s taps).
                    siblings[i].iter().for_each(|&j| ready.promote(j));
                    for &d in &dependants[i] {
                        if let State::Waiting(left) = &mut state[d] {
                            *left -= 1;
                            if *left == 0 {
                                ready.push(d);
                            }
                        }
                    }
                }
                Err(why) => {
                    let why = bounded_error(&why);
                    tracing::error!("{} failed: {why}", inst.name);
                    reports[i] = Some(ledger.finish(inst, keys[i], Outcome::Failed, seconds, Some(why)));
                    fail(&ledger, i, &dependants, &mut state, &mut reports);
                }
            }
        }
    }
    if super::interrupt::interrupted() {
        // Reported as they ended, though nothing below them starts any more.
        for Finished { index: i, result, seconds } in executor.cancel() {
            let inst = &plan.instances[i];
            reports[i] = Some(match result {
                Ok((record, outcome)) => ledger.published(inst, record, outcome, seconds),
                Err(why) => ledger.finish(inst, keys[i], Outcome::Failed, seconds, Some(bounded_error(&why))),
            });
        }
    }
    cached_warnings.sum_up();
    tracing::debug!("scheduled {n} instances in {}", human::duration(started.elapsed().as_secs_f64()));
    // A Ctrl-C that came after every instance ended cut nothing short.
    let interrupted = super::interrupt::interrupted() && reports.iter().any(Option::is_none);
    let reports = reports
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let running = matches!(state[i], State::Running);
                let why = match (interrupted, running) {
                    (true, true) => STOPPED_RUNNING,
                    (true, false) => STOPPED_BEFORE,
                    (false, _) => "not reached",
                };
                InstanceReport {
                    name: plan.instances[i].name.clone(),
                    key: keys[i],
                    outcome: Outcome::Skipped,
                    seconds: 0.0,
                    error: Some(why.into()),
                    record: None,
                }
            })
        })
        .collect();
    RunSummary { reports, submitted: executor.submitted(), interrupted }
}

/// Marks `i` broken and skips everything downstream of it, each naming the input that failed.
fn fail(
    ledger: &Ledger<'_>,
    i: usize,
    dependants: &[Vec<usize>],
    state: &mut [State],
    reports: &mut [Option<InstanceReport>],
) {
    state[i] = State::Broken;
    let mut stack = vec![i];
    while let Some(bad) = stack.pop() {
        for &d in &dependants[bad] {
            if !matches!(state[d], State::Waiting(_)) {
                continue;
            }
            let inst = &ledger.plan.instances[d];
            let why = format!("input {} did not complete", ledger.plan.instances[bad].name);
            tracing::warn!("skipping {}: {why}", inst.name);
            reports[d] = Some(ledger.finish(inst, None, Outcome::Skipped, 0.0, Some(why)));
            state[d] = State::Broken;
            stack.push(d);
        }
    }
}

/// Points `instance`'s name at the key just completed, which `status` diffs edits against and
/// `gc` falls back on; a failure costs only that bookkeeping, so it is said once, not per instance.
pub fn remember_name(store: &Store, experiment: &str, instance: &str, record: &KeyRecord) {
    let name_record = NameRecord { key: record.key, recipe: record.recipe.clone() };
    if let Err(e) = store.set_name_record(experiment, instance, &name_record) {
        warn_once(
            &NAME_RECORD_WARNED,
            format_args!(
                "could not record which result {instance} names (said once per run; `status` will not \
                 explain later edits of instances that failed this way): {e}"
            ),
        );
    }
}

static RUN_LOG_WARNED: AtomicBool = AtomicBool::new(false);
static NAME_RECORD_WARNED: AtomicBool = AtomicBool::new(false);

/// A warning about the cache's bookkeeping, given the first time only: a read-only or
/// misconfigured cache would otherwise repeat it for every instance.
fn warn_once(said: &AtomicBool, message: std::fmt::Arguments) {
    if !said.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

/// Longest failure message kept (logged, in the run log, in the summary): an op may quote its
/// input in one (a metrics file of two million names), and the run log's readers skip lines
/// over 1 MiB, so a failure that long read as never run.
const MAX_ERROR_CHARS: usize = 8_000;

/// A stage's failure message, at most [`MAX_ERROR_CHARS`], control characters escaped.
fn bounded_error(why: &str) -> String {
    crate::config::error::printable_cut(why, MAX_ERROR_CHARS)
}

/// The warnings that results found cached recorded when they were computed, said again: in
/// full for a stage's first few instances, then counted, since a sweep of thousands repeating
/// one warning buried the run's own output (2,857 lines on a rerun where nothing ran).
#[derive(Default)]
struct CachedWarnings {
    /// Per stage: the instances whose warnings were said, and those passed over.
    stages: BTreeMap<String, (usize, usize)>,
}

impl CachedWarnings {
    /// Instances of one stage whose warnings are said in full.
    const IN_FULL: usize = 3;

    fn say(&mut self, inst: &Instance, record: &KeyRecord) {
        let warned: Vec<&str> = record
            .provenance
            .get("warnings")
            .and_then(|w| w.as_array())
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str())
            .collect();
        if warned.is_empty() {
            return;
        }
        let (said, passed) = self.stages.entry(inst.stage.clone()).or_default();
        if *said == Self::IN_FULL {
            *passed += 1;
            return;
        }
        *said += 1;
        for w in warned {
            tracing::warn!("{} (cached; when it was computed): {w}", inst.name);
        }
    }

    fn sum_up(&self) {
        for (stage, (_, passed)) in self.stages.iter().filter(|(_, (_, passed))| *passed > 0) {
            tracing::warn!(
                "{passed} more cached instances of `{stage}` warned when they were computed (`cfrun show` gives each)"
            );
        }
    }
}

/// The targets as the run log keeps them: those that fit in 256 KiB, then a count of the rest,
/// since a reader skips a line over 1 MiB, and with it the run's targets and that instance.
fn logged_targets(targets: &[String]) -> Vec<String> {
    const BUDGET: usize = 256 << 10;
    let mut used = 0;
    let kept = targets.iter().take_while(|t| {
        used += t.len() + 4;
        used <= BUDGET
    });
    let mut out: Vec<String> = kept.cloned().collect();
    if out.len() < targets.len() {
        out.push(format!("(and {} more)", targets.len() - out.len()));
    }
    out
}

/// What a run writes of each instance into the run log, each line naming the run.
struct Ledger<'a> {
    store: &'a Store,
    plan: &'a Plan,
    /// This run's id: the process and the moment it began scheduling.
    run: String,
    /// Whether a line has carried the run's targets: one does, since a copy in every line made
    /// the log grow as instances times targets (623 MB for a run given 4,998 instances).
    targets_logged: std::cell::Cell<bool>,
}

impl<'a> Ledger<'a> {
    fn new(store: &'a Store, plan: &'a Plan) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Ledger {
            store,
            plan,
            run: format!("{nanos:x}-{}", std::process::id()),
            targets_logged: std::cell::Cell::new(false),
        }
    }

    /// Logs how `inst` ended and gives its report.
    fn finish(
        &self,
        inst: &Instance,
        key: Option<RecipeKey>,
        outcome: Outcome,
        seconds: f64,
        error: Option<String>,
    ) -> InstanceReport {
        let line = RunLogLine {
            time: now_unix(),
            experiment: self.plan.experiment.name.clone(),
            instance: inst.name.clone(),
            key,
            outcome: serde_json::to_value(&outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            seconds,
            error: error.clone(),
            run: Some(self.run.clone()),
            targets: match self.targets_logged.replace(true) {
                false => logged_targets(&self.plan.targets),
                true => Vec::new(),
            },
        };
        if let Err(e) = self.store.log_run(&line) {
            warn_once(&RUN_LOG_WARNED, format_args!("could not append to the run log (said once per run): {e}"));
        }
        InstanceReport { name: inst.name.clone(), key, outcome, seconds, error, record: None }
    }

    /// The report of an instance whose result is published: its name now points at the key.
    fn published(&self, inst: &Instance, record: KeyRecord, outcome: Outcome, seconds: f64) -> InstanceReport {
        remember_name(self.store, &self.plan.experiment.name, &inst.name, &record);
        let mut report = self.finish(inst, Some(record.key), outcome, seconds, None);
        report.record = Some(record);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of long targets keep the log's line under what its readers take, and say how
    /// many were left out; a few are kept as given.
    #[test]
    fn the_logged_targets_fit_in_a_line_and_count_what_did_not() {
        let few = vec!["probe[k=4]".to_string(), "clusters".to_string()];
        assert_eq!(logged_targets(&few), few);
        let many: Vec<String> = (0..20_000).map(|i| format!("stage[axis={i:0>60}]")).collect();
        let kept = logged_targets(&many);
        assert!(serde_json::to_string(&kept).unwrap().len() < 300 << 10);
        assert_eq!(kept.last().unwrap(), &format!("(and {} more)", 20_000 - (kept.len() - 1)));
    }
}
