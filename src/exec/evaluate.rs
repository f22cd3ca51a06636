//! Works out, without running anything, each instance's recipe and key and whether its result is
//! in the cache; for the rest, why not. `status`, `gc`, `show`, `report` and the runner share this walk.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::cache::store::{Check, RecordDamage, Untrusted};
use crate::cache::{DirtyReason, InputDigest, KeyRecord, Recipe, RecipeKey, Store};
use crate::graph::{Instance, Plan};

/// Where one instance stands.
#[derive(Debug, Clone)]
pub struct InstanceState {
    /// Its recipe, when every input's bytes are known.
    pub recipe: Option<Recipe>,
    /// Its key, likewise.
    pub key: Option<RecipeKey>,
    /// The published result, if cached.
    pub record: Option<KeyRecord>,
    /// Why it must run (empty when cached).
    pub reasons: Vec<DirtyReason>,
}

impl InstanceState {
    /// `cached`, `damaged` (published, but its object failed the check), `unreadable` (published,
    /// but this process may not read it), `stale` (ran before under this name with another
    /// recipe) or `missing`.
    pub fn label(&self) -> &'static str {
        if self.record.is_some() {
            "cached"
        } else if self.reasons.iter().any(|r| matches!(r, DirtyReason::Damaged { .. })) {
            "damaged"
        } else if self.reasons.iter().any(|r| matches!(r, DirtyReason::Unreadable { .. })) {
            "unreadable"
        } else if self.reasons.iter().any(|r| matches!(r, DirtyReason::New)) {
            "missing"
        } else {
            "stale"
        }
    }
}

/// The recipe of `inst` given the published records of its inputs, or the first input that is
/// not available yet.
pub fn recipe_for(plan: &Plan, inst: &Instance, records: &[Option<KeyRecord>]) -> Result<Recipe, DirtyReason> {
    let op = inst.op;
    let mut inputs = BTreeMap::new();
    for (slot, refs) in &inst.inputs {
        let gather = op.inputs().iter().any(|s| s.name == slot && s.gather);
        let mut list = Vec::new();
        for r in refs {
            let up = &plan.instances[r.instance.0];
            let digest = records[r.instance.0]
                .as_ref()
                .and_then(|rec| rec.outputs.get(&r.output).copied())
                .ok_or_else(|| DirtyReason::UpstreamPending { slot: slot.clone(), upstream: up.name.clone() })?;
            list.push(InputDigest {
                digest,
                stage: gather.then(|| up.stage.clone()),
                axes: gather.then(|| up.axes.clone()),
            });
        }
        inputs.insert(slot.clone(), list);
    }
    Ok(Recipe {
        format: crate::cache::key::RECIPE_FORMAT,
        op: op.name().to_string(),
        version: op.version(),
        params: inst.params.clone(),
        inputs,
        math: crate::nn::math_switches::in_force(),
    })
}

/// Why `inst` (with `recipe`, if known) is not cached, from what was recorded under its name.
pub fn reasons(
    store: &Store,
    experiment: &str,
    inst: &Instance,
    recipe: Result<&Recipe, &DirtyReason>,
) -> Vec<DirtyReason> {
    let previous = store.name_record(experiment, &inst.name);
    match (recipe, previous) {
        (Err(pending), None) => vec![DirtyReason::New, pending.clone()],
        // Its own settings' changes are named too, beside the input it waits on: the inputs are
        // taken as they were, so only the op, its version and its parameters can differ.
        (Err(pending), Some(prev)) => {
            let own = Recipe {
                format: crate::cache::key::RECIPE_FORMAT,
                op: inst.op.name().to_string(),
                version: inst.op.version(),
                params: inst.params.clone(),
                inputs: prev.recipe.inputs.clone(),
                math: crate::nn::math_switches::in_force(),
            };
            let mut why = crate::cache::key::diff(&prev.recipe, &own);
            why.retain(|r| !matches!(r, DirtyReason::Missing));
            why.push(pending.clone());
            why
        }
        (Ok(_), None) => vec![DirtyReason::New],
        (Ok(now), Some(prev)) => crate::cache::key::diff(&prev.recipe, now),
    }
}

/// Evaluates every instance of the plan against the cache, with the quick object check.
pub fn evaluate(plan: &Plan, store: &Store) -> Vec<InstanceState> {
    evaluate_with(plan, store, Check::Quick)
}

/// Evaluates every instance of the plan against the cache; a published object that fails the
/// `depth` check counts as not cached, with a [`DirtyReason::Damaged`] saying why.
///
/// Instances are taken in waves (each reads the records of earlier waves only), and the
/// instances of a wave in parallel: the walk is system calls (reading key records, listing and
/// checking objects), which on a machine with slow ones is most of what `status` costs.
pub fn evaluate_with(plan: &Plan, store: &Store, depth: Check) -> Vec<InstanceState> {
    let n = plan.instances.len();
    let mut records: Vec<Option<KeyRecord>> = vec![None; n];
    let mut states: Vec<Option<InstanceState>> = vec![None; n];
    for wave in waves(plan) {
        let done: Vec<InstanceState> =
            wave.par_iter().map(|&i| evaluate_one(plan, store, depth, &plan.instances[i], &records)).collect();
        for (&i, state) in wave.iter().zip(done) {
            records[i] = state.record.clone();
            states[i] = Some(state);
        }
    }
    states.into_iter().map(|s| s.expect("every instance is in one wave")).collect()
}

/// Every key of `plan` that can be computed from the key records in the store, each with whether
/// it is published. Objects are not checked: a damaged object's record still names the outputs
/// its key promised, and a rebuild gives those bytes again, so what hangs below it keeps its
/// keys; so does what hangs below an evicted one ([`Store::evicted`]) whose rebuild has not
/// finished. This is what `gc` keeps, where a checked walk would drop a damaged result's intact
/// descendants. Below a record that is unreadable, missing or set aside beyond use, where an
/// instance's key cannot be worked out, the key last completed under its name is kept when its
/// recipe agrees with the plan on all that is known (`last_key_under_name`).
pub fn keys_in_use(plan: &Plan, store: &Store) -> BTreeMap<RecipeKey, bool> {
    let mut records: Vec<Option<KeyRecord>> = Vec::with_capacity(plan.instances.len());
    // Of each instance without a readable record: whether its key is the one last completed
    // under its name (its record damaged since), not one never computed (an edit upstream).
    let mut completed_before: Vec<bool> = Vec::with_capacity(plan.instances.len());
    let mut keys = BTreeMap::new();
    for inst in &plan.instances {
        let key = match recipe_for(plan, inst, &records) {
            Ok(r) => Some(r.key()),
            Err(_) => last_key_under_name(plan, store, inst, &records, &completed_before),
        };
        let record = key.and_then(|k| store.lookup(&k));
        if let Some(k) = key {
            keys.insert(k, record.is_some());
        }
        let record = record.or_else(|| key.and_then(|k| store.evicted(&k).or_else(|| store.filed(&k))));
        let last = || store.name_record(&plan.experiment.name, &inst.name).map(|n| n.key);
        completed_before.push(record.is_none() && key.is_some() && last() == key);
        records.push(record);
    }
    keys
}

/// The key last completed under `inst`'s name, if its recipe is the plan's in every part the
/// plan still knows: the same op, version and parameters, the same digest for each input whose
/// record is readable, and each other input's key the one completed before under its own name.
/// An input whose record was damaged (a truncated file, one deleted by hand) hides the keys
/// below it; their results are intact, and its rebuild (deterministic) gives the same digests,
/// so `gc` keeps them rather than throwing away finished work. An input edited since (a key
/// never computed) hides nothing worth keeping: what hangs below its old key goes.
fn last_key_under_name(
    plan: &Plan,
    store: &Store,
    inst: &Instance,
    records: &[Option<KeyRecord>],
    completed_before: &[bool],
) -> Option<RecipeKey> {
    let last = store.name_record(&plan.experiment.name, &inst.name)?;
    let r = &last.recipe;
    let same_inputs = r.inputs.len() == inst.inputs.len()
        && inst.inputs.iter().all(|(slot, refs)| {
            r.inputs.get(slot).is_some_and(|digests| {
                digests.len() == refs.len()
                    && refs.iter().zip(digests).all(|(re, d)| match records[re.instance.0].as_ref() {
                        Some(rec) => rec.outputs.get(&re.output) == Some(&d.digest),
                        None => completed_before[re.instance.0],
                    })
            })
        });
    let agrees = r.key() == last.key
        && r.format == crate::cache::key::RECIPE_FORMAT
        && r.op == inst.op.name()
        && r.version == inst.op.version()
        && r.params == inst.params
        && same_inputs;
    agrees.then_some(last.key)
}

/// Instance indices grouped by depth in the graph: an instance's wave follows all its inputs'
/// waves. Instances come in dependency order, so one pass finds every depth.
fn waves(plan: &Plan) -> Vec<Vec<usize>> {
    let mut depth = vec![0usize; plan.instances.len()];
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, inst) in plan.instances.iter().enumerate() {
        let d = inst.inputs.values().flatten().map(|r| depth[r.instance.0] + 1).max().unwrap_or(0);
        depth[i] = d;
        if waves.len() <= d {
            waves.resize_with(d + 1, Vec::new);
        }
        waves[d].push(i);
    }
    waves
}

/// Where `inst` stands, given the records of the instances before it.
fn evaluate_one(
    plan: &Plan,
    store: &Store,
    depth: Check,
    inst: &Instance,
    records: &[Option<KeyRecord>],
) -> InstanceState {
    let recipe = recipe_for(plan, inst, records);
    let key = recipe.as_ref().ok().map(Recipe::key);
    let mut damage = None;
    let filed = key.and_then(|k| match store.lookup_or_damage(&k) {
        Ok(record) => record,
        Err(RecordDamage::Unreadable { path, source }) => {
            damage = Some(DirtyReason::Unreadable { detail: format!("{}: {source}", path.display()) });
            None
        }
        Err(other) => {
            damage = Some(DirtyReason::Damaged { detail: other.to_string() });
            None
        }
    });
    let record = filed.filter(|r| match store.trust(r, depth) {
        Ok(()) => true,
        Err(Untrusted::Damaged(detail)) => {
            damage = Some(DirtyReason::Damaged { detail: detail.to_string() });
            false
        }
        Err(Untrusted::Unreadable(denied)) => {
            damage = Some(DirtyReason::Unreadable { detail: denied.to_string() });
            false
        }
    });
    let mut reasons = match (&record, damage) {
        (Some(_), _) => Vec::new(),
        (None, Some(d)) => vec![d],
        (None, None) => reasons(store, &plan.experiment.name, inst, recipe.as_ref()),
    };
    if record.is_none() {
        if let Some(checkpoint) = key.and_then(|k| crate::cache::checkpoint::sealed_folder(&store.checkpoint_dir(&k))) {
            reasons.push(DirtyReason::Resumable { checkpoint });
        }
    }
    InstanceState { recipe: recipe.ok(), key, record, reasons }
}

#[cfg(test)]
mod key_tests {
    //! One test per deliberately left-out item of the recipe key (`cache::key`'s table), at the
    //! level where a user meets it: two experiment files that differ only in that item give
    //! root instances the same key.

    use std::path::Path;

    use crate::cache::key::Recipe;
    use crate::config::{Experiment, SourceFile};
    use crate::graph::Plan;

    const BASE: &str = "[experiment]\nname = \"a\"\nseed = 3\n\n[stages.shapes]\nop = \"dataset\"\nname = \"synthetic\"\ntrain_size = 40\ntest_size = 20\n";

    /// The recipe of the first instance of an experiment written as `text` at `path`.
    fn root_recipe(path: &str, text: &str) -> Recipe {
        let exp = Experiment::parse(SourceFile::from_text(Path::new(path), text.to_string()), &[]).unwrap();
        let plan = Plan::build(exp).unwrap();
        super::recipe_for(&plan, &plan.instances[0], &[None]).unwrap()
    }

    fn key(path: &str, text: &str) -> String {
        root_recipe(path, text).key().to_string()
    }

    #[test]
    fn stage_and_experiment_names_are_left_out() {
        let base = key("a.toml", BASE);
        assert_eq!(key("a.toml", &BASE.replace("name = \"a\"", "name = \"b\"")), base, "experiment name");
        assert_eq!(key("a.toml", &BASE.replace("[stages.shapes]", "[stages.pictures]")), base, "stage name");
    }

    #[test]
    fn comments_order_whitespace_and_the_file_path_are_left_out() {
        let base = key("a.toml", BASE);
        assert_eq!(key("elsewhere/b.toml", BASE), base, "file path");
        let commented = BASE.replace("train_size = 40", "# the subset\ntrain_size   =   40   # rows");
        assert_eq!(key("a.toml", &commented), base, "comments and whitespace");
        let reordered = BASE.replace("train_size = 40\ntest_size = 20\n", "test_size = 20\ntrain_size = 40\n");
        assert_eq!(key("a.toml", &reordered), base, "key order");
    }

    #[test]
    fn defaults_written_out_change_nothing_but_a_value_does() {
        let base = key("a.toml", BASE);
        // The seed defaults to experiment.seed: writing it out is the same recipe.
        assert_eq!(key("a.toml", &format!("{BASE}seed = 3\n")), base, "an explicit default");
        assert_ne!(key("a.toml", &format!("{BASE}seed = 4\n")), base, "a parameter value");
        assert_ne!(key("a.toml", &BASE.replace("seed = 3", "seed = 4")), base, "the experiment seed it defaults to");
    }

    /// Device, wall time, host and cfrun's version are provenance: the recipe has no field for
    /// them (nor for upstream recipe keys, superseded by output digests), so nothing about the
    /// machine can enter a key.
    #[test]
    fn the_recipe_holds_exactly_the_key_inputs() {
        let r = serde_json::to_value(root_recipe("a.toml", BASE)).unwrap();
        let fields: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["format", "inputs", "op", "params", "version"]);
        let input = serde_json::to_value(crate::cache::key::InputDigest {
            digest: crate::cache::Digest([0; 32]),
            stage: Some("s".into()),
            axes: Some(Default::default()),
        })
        .unwrap();
        let fields: Vec<&str> = input.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["axes", "digest", "stage"]);
    }

    /// Floats: `1` and `1.0` for a float field are one value (typed before hashing); `-0.0` stays
    /// distinct from `0.0`; NaN and infinities are refused before anything is hashed.
    #[test]
    fn float_edge_cases() {
        let noise = |v: &str| {
            format!("{BASE}\n[stages.noisy]\nop = \"label_noise\"\nlabels = \"shapes.labels\"\npercent = {v}\n")
        };
        let params = |v: &str| {
            let exp = Experiment::parse(SourceFile::from_text(Path::new("a.toml"), noise(v)), &[]).unwrap();
            Plan::build(exp).unwrap().instances[1].params.clone()
        };
        assert_eq!(params("10"), params("10.0"), "an integer written for a float field");
        let (zero, negative_zero) = (params("0.0"), params("-0.0"));
        assert_ne!(
            crate::cache::canonical::encode(&zero),
            crate::cache::canonical::encode(&negative_zero),
            "-0.0 is hashed as written"
        );
        for bad in ["nan", "inf", "-inf"] {
            let err = Experiment::parse(SourceFile::from_text(Path::new("a.toml"), noise(bad)), &[]).unwrap_err();
            assert!(err.to_string().contains("is not a number any cfrun field takes"), "{bad}: {err}");
        }
    }
}
