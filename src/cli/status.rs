//! `cfrun status`: what would run, and why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::open::open_store_to_read;
use super::Global;
use crate::cache::store::Check;
use crate::cache::{DirtyReason, RecipeKey, Store};
use crate::config::error::printable_cut;
use crate::exec::evaluate;
use crate::graph::Plan;

pub(super) fn status(file: &Path, targets: &[String], g: &Global, verify: bool) -> Result<ExitCode, Failure> {
    let plan = super::targets::load_part(file, g, targets)?;
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
                       "reasons": st.reasons, "because": reasons_beside(st, failed[i].is_some(), live.contains_key(&i)),
                       "same_recipe_as": twin_of[i], "error": failed[i]})
            })
            .collect();
        outln!("{}", json!({"experiment": plan.experiment.name, "targets": plan.targets, "instances": items}));
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
            let mut why = reasons_beside(st, failed[i].is_some(), live.contains_key(&i));
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
        let _ = writeln!(
            text,
            "{} of {} instances cached{}",
            cached,
            states.len(),
            super::targets::part_note(&plan.targets)
        );
        out!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The error of each instance whose last run failed with the recipe it has now and published
/// nothing since (`None` for the others): `status` and `show` say so instead of "never run".
pub(super) fn last_failures(plan: &Plan, store: &Store, states: &[evaluate::InstanceState]) -> Vec<Option<String>> {
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

/// Why an instance is not cached, as words. Beside a failure, without "never run" (it ran) and
/// without its checkpoint counted as an interrupted run's; while a job computes it (`computing`),
/// without "never run" and with its checkpoint as the job's progress.
pub(super) fn reasons_beside(st: &evaluate::InstanceState, failed: bool, computing: bool) -> Vec<String> {
    st.reasons
        .iter()
        .filter_map(|r| match r {
            DirtyReason::New if failed || computing => None,
            DirtyReason::Resumable { .. } if failed => None,
            DirtyReason::Resumable { checkpoint } if computing => Some(format!("last checkpoint {checkpoint}")),
            other => Some(other.to_string()),
        })
        .collect()
}
