//! `cfrun gc`: removes cached objects that none of the given experiments uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::open::{load, open_store_to_read, require_cache_folder};
use super::Global;
use crate::cache::store::holds_nothing;
use crate::cache::{gc as cache_gc, RecipeKey, Store};
use crate::exec::evaluate;

pub(super) fn gc(files: &[PathBuf], g: &Global, dry_run: bool) -> Result<ExitCode, Failure> {
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
            outln!(
                "{}",
                json!({"dry_run": true, "objects": objects, "keys": garbage.keys.len(), "checkpoints": checkpoints,
                       "bytes": total, "names": named})
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
                "would free {} objects, {} keys and {} checkpoints, {}",
                garbage.objects.len(),
                garbage.keys.len(),
                garbage.checkpoints.len(),
                human(total)
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
        (swept, fetches)
    };
    if g.json {
        let objects: Vec<_> = swept.objects_removed.iter().map(|(o, _)| o).collect();
        outln!(
            "{}",
            json!({"dry_run": false, "objects": objects, "keys": swept.keys_removed, "bytes": swept.bytes_freed,
                   "checkpoints": swept.checkpoints_removed, "locks": swept.locks_removed,
                   "staging": swept.staging_removed, "job_specs": swept.specs_removed, "fetch_leftovers": fetches,
                   "failures": swept.failures})
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
             folders, {} finished job specs, {} leftovers of data set fetches)",
            swept.objects_removed.len(),
            swept.keys_removed,
            human(swept.bytes_freed),
            swept.checkpoints_removed,
            swept.locks_removed,
            swept.staging_removed,
            swept.specs_removed,
            fetches
        );
    }
    Ok(if swept.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}

/// The name each object of `keys` was last computed under (`instance` of `experiment`), from
/// the run log: what `gc --dry-run` shows beside a digest.
pub(super) fn last_names(store: &Store, keys: &[RecipeKey]) -> BTreeMap<crate::cache::Digest, String> {
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
pub(super) fn human(bytes: u64) -> String {
    crate::human::bytes_to(bytes, 1)
}
