//! Works out, without running anything, each instance's recipe and key and whether its result is
//! in the cache; for the rest, why not. `status`, `gc`, `show` and the runner share this walk.

use std::collections::BTreeMap;

use crate::cache::store::Check;
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
    /// `cached`, `damaged` (published, but its object failed the check), `stale` (ran before
    /// under this name with another recipe) or `missing`.
    pub fn label(&self) -> &'static str {
        if self.record.is_some() {
            "cached"
        } else if self.reasons.iter().any(|r| matches!(r, DirtyReason::Damaged { .. })) {
            "damaged"
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
        (Err(pending), Some(_)) => vec![pending.clone()],
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
pub fn evaluate_with(plan: &Plan, store: &Store, depth: Check) -> Vec<InstanceState> {
    let mut records: Vec<Option<KeyRecord>> = vec![None; plan.instances.len()];
    let mut states = Vec::with_capacity(plan.instances.len());
    for (i, inst) in plan.instances.iter().enumerate() {
        let recipe = recipe_for(plan, inst, &records);
        let key = recipe.as_ref().ok().map(Recipe::key);
        let mut damage = None;
        let record = key.and_then(|k| store.lookup(&k)).filter(|r| match store.check(r, depth) {
            Ok(()) => true,
            Err(detail) => {
                damage = Some(DirtyReason::Damaged { detail });
                false
            }
        });
        let reasons = match (&record, damage) {
            (Some(_), _) => Vec::new(),
            (None, Some(d)) => vec![d],
            (None, None) => reasons(store, &plan.experiment.name, inst, recipe.as_ref()),
        };
        records[i] = record.clone();
        states.push(InstanceState { recipe: recipe.ok(), key, record, reasons });
    }
    states
}
