//! One instance, ready to compute: its recipe, its key and the published records of its inputs.
//! A [`Job`] owns everything it needs, so it runs the same on a thread of the driver or, written
//! to the cache as a [`JobSpec`], in `cfrun exec` on any node that shares the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::resources::Resources;
use crate::cache::fsutil::{read_limited, write_atomic};

/// A job spec names its inputs' digests and its recipe: kilobytes; anything near this is damage.
const MAX_SPEC_BYTES: u64 = 64 << 20;
use crate::cache::{KeyRecord, Recipe, RecipeKey, Store};
use crate::graph::{instance_name, InputRef, Instance, Plan};

/// One input artifact of a job: the upstream's published record and which output it reads.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// The upstream's record (its object holds the output's files).
    pub record: KeyRecord,
    /// The output read.
    pub output: String,
    /// The upstream instance's name.
    pub instance: String,
    /// The upstream stage's name.
    pub stage: String,
    /// The upstream instance's axis values.
    pub axes: BTreeMap<String, Json>,
}

/// An instance with its inputs resolved to published records.
#[derive(Debug, Clone)]
pub struct Job {
    /// Index of the instance in the plan (meaningless in `cfrun exec`).
    pub index: usize,
    /// The experiment's name, for provenance.
    pub experiment: String,
    /// The instance (its `inputs` are not used once the job exists).
    pub instance: Instance,
    /// What is computed.
    pub recipe: Recipe,
    /// `recipe.key()`.
    pub key: RecipeKey,
    /// Input slot to the artifacts it reads, in the recipe's order.
    pub inputs: BTreeMap<String, Vec<JobInput>>,
    /// What it asks of a cluster.
    pub resources: Resources,
    /// Canonical parameters of the other instances of its stage that read the same inputs,
    /// where its op reads them ([`crate::ops::Op::reads_siblings`]); empty in `cfrun exec`.
    pub siblings: Vec<Json>,
}

/// An instance's input slots and the upstream outputs each reads.
type Inputs = BTreeMap<String, Vec<InputRef>>;

/// For each instance whose op reads its siblings ([`crate::ops::Op::reads_siblings`]), the
/// other instances of its stage that read the same inputs; empty for the rest.
pub fn sibling_lists(plan: &Plan) -> Vec<Vec<usize>> {
    // Keyed by stage and the inputs themselves: same stage, same upstream outputs.
    let mut groups: BTreeMap<(&str, &Inputs), Vec<usize>> = BTreeMap::new();
    for (i, inst) in plan.instances.iter().enumerate() {
        if inst.op.reads_siblings() {
            groups.entry((inst.stage.as_str(), &inst.inputs)).or_default().push(i);
        }
    }
    let mut lists = vec![Vec::new(); plan.instances.len()];
    for members in groups.values() {
        for &i in members {
            lists[i] = members.iter().copied().filter(|&j| j != i).collect();
        }
    }
    lists
}

impl Job {
    /// The job of plan instance `index`, whose inputs are all in `records`.
    pub fn from_plan(
        plan: &Plan,
        index: usize,
        recipe: Recipe,
        resources: Resources,
        records: &[Option<KeyRecord>],
    ) -> Job {
        let inst = &plan.instances[index];
        let inputs = inst
            .inputs
            .iter()
            .map(|(slot, refs)| {
                let list = refs
                    .iter()
                    .map(|r| {
                        let up = &plan.instances[r.instance.0];
                        JobInput {
                            record: records[r.instance.0].clone().expect("inputs are done before dispatch"),
                            output: r.output.clone(),
                            instance: up.name.clone(),
                            stage: up.stage.clone(),
                            axes: up.axes.clone(),
                        }
                    })
                    .collect();
                (slot.clone(), list)
            })
            .collect();
        let key = recipe.key();
        let experiment = plan.experiment.name.clone();
        Job { index, experiment, instance: inst.clone(), recipe, key, inputs, resources, siblings: Vec::new() }
    }

    /// The serialisable description `cfrun exec` runs from.
    pub fn spec(&self) -> JobSpec {
        JobSpec {
            experiment: self.experiment.clone(),
            name: self.instance.name.clone(),
            stage: self.instance.stage.clone(),
            axes: self.instance.axes.clone(),
            recipe: self.recipe.clone(),
            inputs: self
                .inputs
                .iter()
                .map(|(slot, list)| {
                    let refs = list
                        .iter()
                        .map(|i| SpecInput {
                            key: i.record.key,
                            output: i.output.clone(),
                            instance: i.instance.clone(),
                            stage: i.stage.clone(),
                            axes: i.axes.clone(),
                        })
                        .collect();
                    (slot.clone(), refs)
                })
                .collect(),
        }
    }
}

/// An input as a job spec names it: the upstream's recipe key, looked up in the cache on the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecInput {
    /// The upstream's recipe key.
    pub key: RecipeKey,
    /// The output read.
    pub output: String,
    /// The upstream instance's name.
    pub instance: String,
    /// The upstream stage's name.
    pub stage: String,
    /// The upstream instance's axis values.
    pub axes: BTreeMap<String, Json>,
}

/// `CACHE/jobs/<key>.json`: what `cfrun exec KEY` computes. Its key is checked against the
/// recipe, and each input's bytes against the digest the recipe holds, before anything runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// The experiment's name.
    pub experiment: String,
    /// The instance's name.
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// Its axis values.
    pub axes: BTreeMap<String, Json>,
    /// The recipe (op, version, params, input digests).
    pub recipe: Recipe,
    /// Input slot to upstream keys.
    pub inputs: BTreeMap<String, Vec<SpecInput>>,
}

/// Why a job spec cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// No spec under that key.
    #[error("no job {key} in {dir}: was it submitted by a cfrun driver on this cache?", dir = .dir.display())]
    Missing {
        /// The key asked for.
        key: String,
        /// Where specs live.
        dir: PathBuf,
    },
    /// The spec is unreadable or does not hash to its key.
    #[error("job spec {}: {why}", .path.display())]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An input is not published, or its bytes differ from what the recipe hashed.
    #[error("input `{slot}` ({instance}): {why}")]
    Input {
        /// The slot.
        slot: String,
        /// The upstream instance.
        instance: String,
        /// What is wrong.
        why: String,
    },
}

/// Where job specs, scripts and logs of the cluster executors live.
pub fn jobs_dir(store: &Store) -> PathBuf {
    jobs_dir_in(store.root())
}

/// [`jobs_dir`] of the cache at `root`, before (or without) opening it.
pub fn jobs_dir_in(root: &Path) -> PathBuf {
    root.join("jobs")
}

fn spec_path(store: &Store, key: &RecipeKey) -> PathBuf {
    jobs_dir(store).join(format!("{}.json", key.hex()))
}

/// Writes the spec of `job` (atomically; an identical spec may already be there).
pub fn write_spec(store: &Store, job: &Job) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(&job.spec()).expect("plain data");
    write_atomic(&spec_path(store, &job.key), &bytes)
}

/// Reads the spec of `key` and rebuilds its job from the cache, checking every digest.
pub fn load_job(store: &Store, key_text: &str) -> Result<Job, SpecError> {
    let key = RecipeKey::parse(key_text.trim_start_matches("blake3:"))
        .ok_or_else(|| SpecError::Missing { key: key_text.to_string(), dir: jobs_dir(store) })?;
    let path = spec_path(store, &key);
    let invalid = |why: String| SpecError::Invalid { path: path.clone(), why };
    // Not followed if a link, not waited on if a FIFO, not read past a sane size.
    let bytes = read_limited(&path, MAX_SPEC_BYTES).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SpecError::Missing { key: key_text.to_string(), dir: jobs_dir(store) },
        _ => invalid(e.to_string()),
    })?;
    let spec: JobSpec = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if spec.recipe.key() != key {
        return Err(invalid(format!("its recipe hashes to {}, not to its name", spec.recipe.key())));
    }
    let op = crate::ops::find(&spec.recipe.op).filter(|op| op.version() == spec.recipe.version).ok_or_else(|| {
        invalid(format!("op {} v{} is not what this cfrun runs", spec.recipe.op, spec.recipe.version))
    })?;
    // The key promises the arithmetic the driver had: a job started without a switch the driver
    // ran with (or with one it did not) would publish other bits under it.
    let here = crate::nn::math_switches::in_force();
    if spec.recipe.math != here {
        let describe = crate::nn::math_switches::describe;
        return Err(invalid(format!(
            "it was keyed with the switches {}, but this process has {}: start it with the driver's environment",
            describe(&spec.recipe.math),
            describe(&here)
        )));
    }
    // The driver checked these, but the file is read back from disk: typed and range-checked
    // again, nothing hashed or probed (an `epochs` of 2^62, hashed into a key of its own,
    // panicked).
    op.check_canonical(&spec.recipe.params).map_err(|e| invalid(format!("its parameters: {}", e.message)))?;
    let mut inputs = BTreeMap::new();
    for (slot, refs) in &spec.inputs {
        let hashed = spec.recipe.inputs.get(slot).map(Vec::as_slice).unwrap_or_default();
        if hashed.len() != refs.len() {
            return Err(invalid(format!("input `{slot}` lists {} artifacts, its recipe {}", refs.len(), hashed.len())));
        }
        let mut list = Vec::new();
        for (r, want) in refs.iter().zip(hashed) {
            let bad = |why: String| SpecError::Input { slot: slot.clone(), instance: r.instance.clone(), why };
            let record = store.lookup(&r.key).ok_or_else(|| bad(format!("{} is not in the cache", r.key)))?;
            if record.outputs.get(&r.output) != Some(&want.digest) {
                return Err(bad(format!("output `{}` is not the bytes the recipe hashed", r.output)));
            }
            store.verify(&record).map_err(|damage| bad(damage.to_string()))?;
            // The names label what gathering ops write (table rows, concat's column order), so
            // they must be the ones the recipe hashed; and a name must be its stage and axes.
            if want.stage.as_ref().is_some_and(|s| *s != r.stage) || want.axes.as_ref().is_some_and(|a| *a != r.axes) {
                return Err(bad("its stage or axes are not the ones the recipe hashed".into()));
            }
            if r.instance != instance_name(&r.stage, &r.axes) {
                return Err(bad(format!(
                    "the name does not match its stage and axes (`{}`)",
                    instance_name(&r.stage, &r.axes)
                )));
            }
            list.push(JobInput {
                record,
                output: r.output.clone(),
                instance: r.instance.clone(),
                stage: r.stage.clone(),
                axes: r.axes.clone(),
            });
        }
        inputs.insert(slot.clone(), list);
    }
    if spec.recipe.inputs.keys().any(|slot| !spec.inputs.contains_key(slot)) {
        return Err(invalid("an input of the recipe is missing from the spec".into()));
    }
    if spec.name != instance_name(&spec.stage, &spec.axes) {
        return Err(invalid(format!("its name `{}` is not its stage and axes", spec.name)));
    }
    let instance = Instance {
        name: spec.name,
        stage: spec.stage,
        op,
        axes: spec.axes,
        params: spec.recipe.params.clone(),
        inputs: BTreeMap::new(),
        fed: Default::default(),
    };
    let resources = super::resources::op_defaults(instance.op, &instance.params);
    let (experiment, recipe) = (spec.experiment, spec.recipe);
    Ok(Job { index: 0, experiment, instance, recipe, key, inputs, resources, siblings: Vec::new() })
}
