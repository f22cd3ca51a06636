//! `cfrun gc`: removes cached objects that none of the given experiments uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use serde_json::json;

use super::failure::Failure;
use super::open::{load, open_store_to_read, require_cache_folder};
use super::Global;
use crate::cache::store::holds_nothing;
use crate::cache::{gc as cache_gc, Digest, RecipeKey, Store};
use crate::config::error::ConfigError;
use crate::config::{Experiment, Override};
use crate::exec::evaluate;
use crate::graph::Plan;

pub(super) fn gc(files: &[PathBuf], g: &Global, dry_run: bool, as_given: bool) -> Result<ExitCode, Failure> {
    let plans = files.iter().map(|f| load(f, g)).collect::<Result<Vec<_>, _>>()?;
    // Exclusive: waits for every running cfrun on this cache, and keeps new ones out meanwhile.
    // A cache that does not exist holds nothing to collect, and is not created.
    let empty = holds_nothing(&g.cache);
    let store = if !empty {
        require_cache_folder(&g.cache)?;
        Store::open_exclusive(&g.cache).map_err(Failure::runtime)?
    } else {
        open_store_to_read(g)?
    };
    let given = g.settings();
    // Keys from the records alone: a damaged result is repaired by the next run, not collected,
    // and neither is what hangs below it.
    let mut in_use = BTreeMap::new();
    // The switches that change a network's bits key every stage: what runs under other switches
    // than this gc's computed (and the default arithmetic's results) is kept too.
    let maths = |plan: &Plan| -> Result<Vec<BTreeMap<String, String>>, Failure> {
        let mut maths = vec![BTreeMap::new(), crate::nn::math_switches::in_force()];
        let recorded = store.run_math(&plan.experiment.name).map_err(|e| {
            Failure::runtime(format!("cannot read the switches earlier runs of {} used ({e})", plan.experiment.name))
        })?;
        for math in recorded {
            if !maths.contains(&math) {
                maths.push(math);
            }
        }
        Ok(maths)
    };
    let mut add = |plan: &Plan, maths: &[BTreeMap<String, String>]| {
        for math in maths {
            for (key, published) in crate::nn::math_switches::as_if(math, || evaluate::keys_in_use(plan, &store)) {
                *in_use.entry(key).or_insert(false) |= published;
            }
        }
    };
    let mut earlier = Vec::new();
    // Of each file, the settings record a sweep leaves, where it changes: with `--as-given`
    // only the given list, else those lists that still apply.
    let mut still_recorded: Vec<Option<Vec<Vec<String>>>> = Vec::new();
    let together: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    for (file, plan) in files.iter().zip(&plans) {
        super::open::warn_if_the_name_is_shared(&store, file, &plan.experiment.name, &together);
        let maths = maths(plan)?;
        add(plan, &maths);
        if as_given {
            still_recorded.push(Some(vec![given.clone()]));
            continue;
        }
        let recorded = store.run_settings(&plan.experiment.name).map_err(|e| {
            Failure::runtime(format!(
                "cannot read the --set lists of earlier runs of {} ({e}); `--as-given` collects without them",
                plan.experiment.name
            ))
        })?;
        let mut kept = Vec::new();
        let mut dropped = false;
        for settings in recorded {
            if settings == given {
                kept.push(settings);
                continue;
            }
            let not_applied = plan_under(file, &settings).map(|p| add(&p, &maths)).err();
            match not_applied {
                None => kept.push(settings.clone()),
                Some(_) => dropped = true,
            }
            earlier.push(Earlier { file: file.display().to_string(), settings, not_applied });
        }
        still_recorded.push(dropped.then_some(kept));
    }
    for e in &earlier {
        match &e.not_applied {
            None if !g.json => outln!("keeping what {} computes with {} (an earlier run's)", e.file, e.shown()),
            Some(why) => errln!(
                "{}: an earlier run's {} no longer applies ({why}); what it computed is not kept, and a sweep \
                 forgets it",
                e.file,
                e.shown()
            ),
            None => {}
        }
    }
    let garbage = cache_gc::find(&store, &in_use);
    let total: u64 =
        garbage.objects.iter().map(|(_, s)| s).sum::<u64>() + garbage.checkpoints.iter().map(|(_, s)| s).sum::<u64>();
    let names = last_names(&store, &garbage.keys);
    // A renamed run's results are kept by its file unless `--as-given` leaves its --set out.
    let keep_advice = if as_given {
        "give their files too, or leave out --as-given, to keep them"
    } else {
        "give their files too to keep them"
    };
    if dry_run {
        if g.json {
            let objects: Vec<_> = garbage.objects.iter().map(|(o, _)| o).collect();
            let checkpoints: Vec<_> = garbage.checkpoints.iter().map(|(c, _)| c).collect();
            // Only what would be removed: a dead key's object that a kept key shares stays.
            let named: BTreeMap<String, String> = garbage
                .objects
                .iter()
                .filter_map(|(o, _)| names.get(o).map(|n| (o.to_string(), n.to_string())))
                .collect();
            outln!(
                "{}",
                json!({"dry_run": true, "objects": objects, "keys": garbage.keys.len(), "checkpoints": checkpoints,
                       "bytes": total, "names": named, "earlier_settings": earlier,
                       "others": others(garbage.objects.iter().map(|(o, _)| o), &names, &plans)})
            );
        } else {
            for (obj, size) in &garbage.objects {
                let name = names.get(obj).map(|n| format!(", last computed as {n}")).unwrap_or_default();
                outln!("would remove {obj} ({}{name})", human(*size));
            }
            for (name, size) in &garbage.checkpoints {
                outln!("would remove checkpoint {name} ({})", human(*size));
            }
            outln!(
                "would free {} objects, {} keys and {} checkpoints, {}{}",
                garbage.objects.len(),
                garbage.keys.len(),
                garbage.checkpoints.len(),
                human(total),
                others_note(&others(garbage.objects.iter().map(|(o, _)| o), &names, &plans), keep_advice)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Nothing to sweep where nothing is cached: and a store opened to read holds no lock, so a
    // sweep of its `tmp/` and `locks/` could take a staging folder from a run creating it.
    let (swept, fetches) = if empty {
        (cache_gc::Sweep::default(), 0)
    } else {
        let mut swept = cache_gc::sweep(&store, &garbage);
        // A data set's fetch killed mid-way leaves its scratch folder and partial files.
        let fetches = crate::data::clear_leftovers(&store.data_dir(), &mut swept.failures);
        // What the lists not kept computed is gone: a later gc need not look for them (nor
        // warn again of those the file no longer takes).
        for (plan, kept) in plans.iter().zip(&still_recorded) {
            if let Some(kept) = kept {
                if let Err(e) = store.keep_only_settings(&plan.experiment.name, kept) {
                    swept.failures.push(format!("the --set lists of {}: {e}", plan.experiment.name));
                }
            }
        }
        (swept, fetches)
    };
    let removed_others = others(swept.objects_removed.iter().map(|(o, _)| o), &names, &plans);
    if g.json {
        let objects: Vec<_> = swept.objects_removed.iter().map(|(o, _)| o).collect();
        outln!(
            "{}",
            json!({"dry_run": false, "objects": objects, "keys": swept.keys_removed, "bytes": swept.bytes_freed,
                   "checkpoints": swept.checkpoints_removed, "locks": swept.locks_removed,
                   "staging": swept.staging_removed, "job_specs": swept.specs_removed, "fetch_leftovers": fetches,
                   "failures": swept.failures, "earlier_settings": earlier, "others": removed_others})
        );
    } else {
        for (obj, size) in &swept.objects_removed {
            outln!("removed {obj} ({})", human(*size));
        }
        for f in &swept.failures {
            errln!("could not remove {f}");
        }
        outln!(
            "freed {} objects and {} keys, {} ({} stale checkpoints, {} stale lock files, {} leftover staging \
             folders, {} files of finished jobs, {} leftovers of data set fetches){}",
            swept.objects_removed.len(),
            swept.keys_removed,
            human(swept.bytes_freed),
            swept.checkpoints_removed,
            swept.locks_removed,
            swept.staging_removed,
            swept.specs_removed,
            fetches,
            others_note(&removed_others, "a run of their files computes them again")
        );
    }
    Ok(if swept.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}

/// An earlier run's `--set` list for one of the files, and whether it still applies.
#[derive(Serialize)]
struct Earlier {
    file: String,
    settings: Vec<String>,
    /// Why the file no longer takes these settings (a stage renamed, a field removed); none
    /// when what they compute is kept.
    not_applied: Option<String>,
}

impl Earlier {
    /// `--set A --set B`, as the run was given them.
    fn shown(&self) -> String {
        self.settings.iter().map(|s| format!("--set {}", crate::shell::word(s))).collect::<Vec<_>>().join(" ")
    }
}

/// `file` planned under `settings` (an earlier run's `--set` list); the first problem when it
/// no longer takes them.
fn plan_under(file: &Path, settings: &[String]) -> Result<Plan, String> {
    let overrides = settings.iter().map(|s| s.parse::<Override>()).collect::<Result<Vec<_>, _>>()?;
    let first = |e: ConfigError| e.flatten().first().map(|e| e.to_string()).unwrap_or_else(|| e.to_string());
    let experiment = Experiment::load(file, &overrides).map_err(first)?;
    Plan::build(experiment).map_err(first)
}

/// The instance and experiment an object was last computed as, from the run log.
struct LastName {
    instance: String,
    experiment: String,
}

impl std::fmt::Display for LastName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.instance, self.experiment)
    }
}

/// The name each object of `keys` was last computed under, from the run log: what `gc --dry-run`
/// shows beside a digest. The latest line that computed it (`ran`) wins, under whichever key;
/// a line that served it from the cache names it only where no line computed it.
fn last_names(store: &Store, keys: &[RecipeKey]) -> BTreeMap<Digest, LastName> {
    let object_of: BTreeMap<RecipeKey, Digest> =
        keys.iter().filter_map(|k| Some((*k, store.lookup(k)?.object))).collect();
    let mut computed: BTreeMap<Digest, LastName> = BTreeMap::new();
    let mut served: BTreeMap<Digest, LastName> = BTreeMap::new();
    for entry in store.run_log() {
        let Some(object) = entry.key.and_then(|k| object_of.get(&k)) else { continue };
        let name = LastName { instance: entry.instance, experiment: entry.experiment };
        if entry.outcome == "ran" {
            computed.insert(*object, name);
        } else {
            served.insert(*object, name);
        }
    }
    served.extend(computed);
    served
}

/// Of `objects`, how many each experiment not among `plans` last computed: on a cache several
/// experiments share, `gc FILE` removes the others' results, which a list of digests alone does
/// not make plain.
fn others<'a>(
    objects: impl Iterator<Item = &'a Digest>,
    names: &'a BTreeMap<Digest, LastName>,
    plans: &[Plan],
) -> BTreeMap<&'a str, usize> {
    let given: BTreeSet<&str> = plans.iter().map(|p| p.experiment.name.as_str()).collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for name in objects.filter_map(|o| names.get(o)).filter(|n| !given.contains(n.experiment.as_str())) {
        *count.entry(name.experiment.as_str()).or_default() += 1;
    }
    count
}

/// `; 107 of the objects were last computed by experiments not given here: lr (33), ... (advice)`,
/// or nothing.
fn others_note(count: &BTreeMap<&str, usize>, advice: &str) -> String {
    if count.is_empty() {
        return String::new();
    }
    let total: usize = count.values().sum();
    let mut most: Vec<(&str, usize)> = count.iter().map(|(e, n)| (*e, *n)).collect();
    most.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    const SHOWN: usize = 8;
    let more = if most.len() > SHOWN { format!(" and {} more", most.len() - SHOWN) } else { String::new() };
    let listed: Vec<String> = most.iter().take(SHOWN).map(|(e, n)| format!("{e} ({n})")).collect();
    format!(
        "; {total} of the objects were last computed by experiments not given here: {}{more} ({advice})",
        listed.join(", ")
    )
}

/// Sizes as `gc` prints them: `33.0 KB`, `1.2 GB`.
pub(super) fn human(bytes: u64) -> String {
    crate::human::bytes_to(bytes, 1)
}
