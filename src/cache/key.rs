//! Recipe keys: what decides whether a stage instance must run.
//!
//! # What goes into a key
//! | input | why |
//! |---|---|
//! | [`RECIPE_FORMAT`] | changing the encoding below must not alias old keys |
//! | op name | two ops with equal parameters compute different things |
//! | op version ([`crate::ops::Op::version`]) | bumped when an op's results change for the same inputs |
//! | every parameter after defaults are filled in and `${axis}` placeholders substituted | the recipe itself; defaults are filled so that writing a default explicitly changes nothing, except for a setting whose default is worked out from the inputs or the preset when the stage runs (`hflip`, a network's `widths`/`blocks`/`stem_width`, a synthetic data set's `classes`/`size`): unset and written out are two keys, for the same bytes |
//! | the seed (a parameter, defaulting to `experiment.seed`) | random draws are part of the recipe |
//! | for each input slot, the *output digest* of each upstream output it reads | upstream content, not upstream recipes: a re-run that produces identical bytes changes no downstream key (early cutoff) |
//! | for gathering inputs (tables), also the upstream stage name and axis values | they label the rows and columns |
//! | the switches set away from their defaults that change a network's bits (`CFRUN_CONV_BACKWARD`, `CFRUN_BN_BACKWARD`, `CFRUN_CONV_CUDNN`, `CFRUN_BN_CUDA`, `CFRUN_GEMM_TF32`), in every stage | a result computed with them is never served for the default arithmetic; none set, nothing is added, so earlier keys still match |
//!
//!
//! The tests: `each_input_changes_the_key` below (one assertion per row above), and
//! `exec::evaluate::key_tests` (one per row below, from experiment files as a user writes them).
//!
//! # How values enter
//! Parameters are typed by their op before they are hashed, so a value is hashed as the op reads
//! it: `1` and `1.0` for a float field are one value, a default written out is the default.
//! Floats are written in Rust's shortest round-trip form; `-0.0` is hashed as written, apart from
//! `0.0` (an op may tell them apart, and no study writes it). NaN and infinities never reach a
//! key: JSON cannot hold them (serde_json would make them `null`, which an optional field reads
//! as unset), so the parser refuses them with the file and line (`tests/bad/65-*`).
//!
//! # A new version of a data set
//! The `dataset` stage's key holds its name, subset sizes, seed and optional `path`, not the
//! bytes of its files: those are checked against the SHA-256 checksums the catalog pins
//! (`data/catalog.rs`), so different files are refused rather than silently used. A new version
//! of a data set therefore means new pins in the catalog, and with them a new `dataset` op
//! version, which changes the key of every dataset stage and, through their output digests,
//! everything downstream. `ops::dataset::tests::a_new_data_set_version_moves_the_op_version`
//! pins the catalog's checksums to the op version (and to `video`'s, which loads its source
//! images itself), so neither moves alone.
//!
//! The optional `path` (a folder to look in first) is a parameter and so part of the key,
//! although the files it points at are verified by checksum: moving the data reruns the
//! stage. Taking it out would mean carrying it beside the parameters (as `resources` are);
//! it stays, as the stricter choice, until a study needs to move its data.
//!
//! # What is deliberately left out
//! | left out | why |
//! |---|---|
//! | the stage's name and the experiment's name | renaming a stage does not change what it computes |
//! | comments, key order, whitespace, the TOML file's path | cosmetic |
//! | the device (cpu/cuda) | results differ only in the last bits; the device is recorded in provenance instead (see README "Devices"), and so is the GPU's own choice of TF32 for cuDNN's convolutions (`gpu_math`) |
//! | the switches that keep the bits (`CFRUN_TRAIN_PIPELINE`, `CFRUN_SGD_UPDATE`, `CFRUN_BN_STATS`, `CFRUN_CONV_COLUMNS`, `CFRUN_CUDA_PARAMS`, thread counts) | tested to compute the same bits either way |
//! | wall time, host, cfrun's own version | provenance, not recipe |
//! | upstream recipe keys | superseded by their output digests |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::canonical;
use super::ids::{Digest, RecipeKey};

/// Version of the recipe encoding; part of every key.
pub const RECIPE_FORMAT: u32 = 1;

/// One upstream output an input slot reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputDigest {
    /// The upstream output's digest.
    pub digest: Digest,
    /// For gathering inputs: the upstream stage's name (tables label rows with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// For gathering inputs: the upstream instance's axis values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axes: Option<BTreeMap<String, Json>>,
}

/// Everything a key is computed from, stored next to each published key so that a later run can
/// explain, field by field, why a stage is stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// [`RECIPE_FORMAT`].
    pub format: u32,
    /// The op name.
    pub op: String,
    /// The op's implementation version.
    pub version: u32,
    /// Canonical parameters.
    pub params: Json,
    /// Input slot to the outputs it reads.
    pub inputs: BTreeMap<String, Vec<InputDigest>>,
    /// The switches in force that change a network's bits (environment variable to value;
    /// `nn::math_switches`). Empty, and then left out of the encoding, by default, so keys from
    /// before it existed still match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub math: BTreeMap<String, String>,
}

impl Recipe {
    /// The recipe key: blake3 over a domain tag and the canonical encoding.
    pub fn key(&self) -> RecipeKey {
        let json = serde_json::to_value(self).expect("recipes are plain data");
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"cfrun recipe\0");
        hasher.update(&canonical::encode(&json));
        RecipeKey(*hasher.finalize().as_bytes())
    }
}

/// Why a stage instance is stale, as data (rendered by `cfrun status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DirtyReason {
    /// Never run under this name.
    New,
    /// A parameter changed.
    Param {
        /// Dotted path.
        field: String,
        /// Previous value (`null` if absent).
        old: Json,
        /// New value (`null` if absent).
        new: Json,
    },
    /// An input now reads different bytes.
    Input {
        /// The input slot.
        slot: String,
    },
    /// An upstream instance must run first, so the new input bytes are not known yet.
    UpstreamPending {
        /// The input slot.
        slot: String,
        /// The upstream instance's name.
        upstream: String,
    },
    /// The op's implementation changed.
    OpVersion {
        /// Previous version.
        old: u32,
        /// New version.
        new: u32,
    },
    /// The stage now uses another op.
    Op {
        /// Previous op.
        old: String,
        /// New op.
        new: String,
    },
    /// A switch that changes a network's bits is set, unset or set otherwise (`None`: at its
    /// default).
    Math {
        /// The switch's environment variable.
        switch: String,
        /// Previous value.
        old: Option<String>,
        /// New value.
        new: Option<String>,
    },
    /// Same recipe as last time, but its result is not in this cache (removed, gc'd or corrupt).
    Missing,
    /// The result is published, but its object failed a check: it will be rebuilt.
    Damaged {
        /// What the check found.
        detail: String,
    },
    /// The result is published, but this process may not read its object: a run fails on it
    /// until its permissions are fixed (nothing is rebuilt).
    Unreadable {
        /// The path and the error reading it.
        detail: String,
    },
    /// Not cached, but an interrupted run left a sealed checkpoint the next run resumes from.
    Resumable {
        /// The checkpoint's folder, e.g. `epoch-0003`.
        checkpoint: String,
    },
}

impl std::fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show =
            |v: &Json| if v.is_null() { "(unset)".to_string() } else { super::readable::readable(v).to_string() };
        match self {
            DirtyReason::New => write!(f, "never run"),
            DirtyReason::Param { field, old, new } => write!(f, "{field} {} -> {}", show(old), show(new)),
            DirtyReason::Input { slot } => write!(f, "input `{slot}` changed"),
            DirtyReason::UpstreamPending { slot, upstream } => write!(f, "input `{slot}` waits on {upstream}"),
            DirtyReason::OpVersion { old, new } => write!(f, "op version {old} -> {new}"),
            DirtyReason::Op { old, new } => write!(f, "op {old} -> {new}"),
            DirtyReason::Math { switch, old, new } => {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
                write!(f, "{switch} {} -> {}", show(old), show(new))
            }
            DirtyReason::Missing => write!(f, "result missing from the cache"),
            DirtyReason::Damaged { detail } => write!(f, "cached result is damaged ({detail}); it will be rebuilt"),
            DirtyReason::Unreadable { detail } => {
                write!(f, "cfrun may not read its cached result ({detail}); a run fails on it until its permissions let cfrun in")
            }
            DirtyReason::Resumable { checkpoint } => write!(f, "an interrupted run left {checkpoint} to resume from"),
        }
    }
}

/// Field-level differences between the recipe last recorded for a stage name and the current one.
pub fn diff(old: &Recipe, new: &Recipe) -> Vec<DirtyReason> {
    let mut out = Vec::new();
    if old.op != new.op {
        out.push(DirtyReason::Op { old: old.op.clone(), new: new.op.clone() });
        return out;
    }
    if old.version != new.version {
        out.push(DirtyReason::OpVersion { old: old.version, new: new.version });
    }
    let switches: std::collections::BTreeSet<&String> = old.math.keys().chain(new.math.keys()).collect();
    for switch in switches {
        let (was, now) = (old.math.get(switch), new.math.get(switch));
        if was != now {
            out.push(DirtyReason::Math { switch: switch.clone(), old: was.cloned(), new: now.cloned() });
        }
    }
    diff_json("", &old.params, &new.params, &mut out);
    let slots: std::collections::BTreeSet<&String> = old.inputs.keys().chain(new.inputs.keys()).collect();
    for slot in slots {
        if old.inputs.get(slot) != new.inputs.get(slot) {
            out.push(DirtyReason::Input { slot: slot.clone() });
        }
    }
    if out.is_empty() {
        out.push(DirtyReason::Missing);
    }
    out
}

fn diff_json(path: &str, old: &Json, new: &Json, out: &mut Vec<DirtyReason>) {
    match (old, new) {
        (Json::Object(a), Json::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                // A key that is not a bare name (a `code` file `w.sh`) is quoted, as TOML would
                // write it: `code."w.sh"`, not `code.w.sh`.
                let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let shown = if bare { k.clone() } else { Json::String(k.clone()).to_string() };
                let p = if path.is_empty() { shown } else { format!("{path}.{shown}") };
                diff_json(&p, a.get(k).unwrap_or(&Json::Null), b.get(k).unwrap_or(&Json::Null), out);
            }
        }
        (Json::Array(a), Json::Array(b)) if a != b && a.iter().chain(b).any(is_structured) => {
            diff_items(path, a, b, out)
        }
        (a, b) if a != b => out.push(DirtyReason::Param { field: path.to_string(), old: a.clone(), new: b.clone() }),
        _ => {}
    }
}

fn is_structured(v: &Json) -> bool {
    matches!(v, Json::Object(_) | Json::Array(_))
}

/// A list of tables (claims, series) is diffed item by item, so one edited claim names its field
/// rather than printing both whole lists; a short list of plain values reads best whole. Items
/// equal at both ends are passed over, so an item added or removed does not make every item after
/// it read as changed.
fn diff_items(path: &str, a: &[Json], b: &[Json], out: &mut Vec<DirtyReason>) {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[head..], &b[head..]);
    let tail = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[..a.len() - tail], &b[..b.len() - tail]);
    for i in 0..a.len().max(b.len()) {
        let item = format!("{path}[{}]", head + i);
        diff_json(&item, a.get(i).unwrap_or(&Json::Null), b.get(i).unwrap_or(&Json::Null), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recipe() -> Recipe {
        let mut inputs = BTreeMap::new();
        inputs.insert("features".to_string(), vec![InputDigest { digest: Digest([7; 32]), stage: None, axes: None }]);
        Recipe {
            format: RECIPE_FORMAT,
            op: "kmeans".into(),
            version: 1,
            params: json!({"k": 50, "seed": 0}),
            inputs,
            math: BTreeMap::new(),
        }
    }

    /// Pins the encoding: if this changes, bump RECIPE_FORMAT (old caches must not alias).
    #[test]
    fn pinned_key() {
        assert_eq!(
            recipe().key().to_string(),
            "blake3:30da1a4bfe58cda51a1f137314465da04812f0884c131399ba3ba4be44fb2d81"
        );
    }

    #[test]
    fn each_input_changes_the_key() {
        let base = recipe().key();
        let mut r = recipe();
        r.op = "other".into();
        assert_ne!(r.key(), base, "op name");
        let mut r = recipe();
        r.version = 2;
        assert_ne!(r.key(), base, "op version");
        let mut r = recipe();
        r.params = json!({"k": 51, "seed": 0});
        assert_ne!(r.key(), base, "parameter");
        let mut r = recipe();
        r.params = json!({"k": 50, "seed": 1});
        assert_ne!(r.key(), base, "seed");
        let mut r = recipe();
        r.inputs.get_mut("features").unwrap()[0].digest = Digest([8; 32]);
        assert_ne!(r.key(), base, "input digest");
        let mut r = recipe();
        r.inputs.get_mut("features").unwrap()[0].stage = Some("feats".into());
        assert_ne!(r.key(), base, "gathered stage name");
        let mut r = recipe();
        r.inputs.get_mut("features").unwrap()[0].axes = Some(BTreeMap::from([("k".to_string(), json!(4))]));
        assert_ne!(r.key(), base, "gathered axis values");
        let mut r = recipe();
        r.format = RECIPE_FORMAT + 1;
        assert_ne!(r.key(), base, "format");
        let mut r = recipe();
        r.math.insert("CFRUN_CONV_BACKWARD".into(), "candle".into());
        assert_ne!(r.key(), base, "a switch that changes the bits");
        let mut other = r.clone();
        other.math.insert("CFRUN_CONV_BACKWARD".into(), "cfrun".into());
        assert_ne!(other.key(), r.key(), "its value");
    }

    /// No switch set: the recipe is encoded as before the field existed (`pinned_key`), and
    /// `status` names a switch that keys a stage apart as it names a parameter.
    #[test]
    fn a_math_switch_is_named_and_absent_by_default() {
        let text = serde_json::to_string(&recipe()).unwrap();
        assert!(!text.contains("math"), "{text}");
        let mut switched = recipe();
        switched.math.insert("CFRUN_GEMM_TF32".into(), "1".into());
        let why: Vec<String> = diff(&recipe(), &switched).iter().map(ToString::to_string).collect();
        assert_eq!(why, ["CFRUN_GEMM_TF32 (unset) -> 1"]);
        let back: Recipe = serde_json::from_str(&serde_json::to_string(&switched).unwrap()).unwrap();
        assert_eq!(back, switched);
    }

    #[test]
    fn param_key_order_does_not_change_the_key() {
        let mut r = recipe();
        r.params = serde_json::from_str(r#"{"seed": 0, "k": 50}"#).unwrap();
        assert_eq!(r.key(), recipe().key());
    }

    #[test]
    fn diff_names_the_field() {
        let mut new = recipe();
        new.params = json!({"k": 40, "seed": 0});
        let reasons = diff(&recipe(), &new);
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].to_string(), "k 50 -> 40");
        assert_eq!(diff(&recipe(), &recipe()), vec![DirtyReason::Missing]);
    }

    fn diffs(old: Json, new: Json) -> Vec<String> {
        let (mut a, mut b) = (recipe(), recipe());
        (a.params, b.params) = (old, new);
        diff(&a, &b).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_list_of_tables_names_the_item_and_field_that_changed() {
        let claim = |name: &str, margin: f64| json!({"name": name, "margin": margin});
        let three = json!({"claims": [claim("a", 0.0), claim("b", 0.0), claim("c", 0.0)]});
        assert_eq!(
            diffs(three.clone(), json!({"claims": [claim("a", 0.0), claim("b", 1.5), claim("c", 0.0)]})),
            ["claims[1].margin 0.0 -> 1.5"]
        );
        // One removed or inserted: the items after it are not called changed.
        assert_eq!(
            diffs(three.clone(), json!({"claims": [claim("a", 0.0), claim("c", 0.0)]})),
            [r#"claims[1] {"margin":0.0,"name":"b"} -> (unset)"#]
        );
        assert_eq!(
            diffs(
                three.clone(),
                json!({"claims": [claim("z", 0.0), claim("a", 0.0), claim("b", 0.0), claim("c", 0.0)]})
            ),
            [r#"claims[0] (unset) -> {"margin":0.0,"name":"z"}"#]
        );
        // A list of plain values reads best whole.
        assert_eq!(diffs(json!({"m": ["top1"]}), json!({"m": ["top1", "top5"]})), [r#"m ["top1"] -> ["top1","top5"]"#]);
    }

    /// A map key that is not a bare name is quoted, so a `code` file's dots do not read as
    /// nesting (`code.w.sh` was printed for the file `w.sh`).
    #[test]
    fn a_key_with_a_dot_is_quoted_in_the_field_path() {
        assert_eq!(
            diffs(json!({"code": {"w.sh": "a"}}), json!({"code": {"w.sh": "b"}})),
            [r#"code."w.sh" "a" -> "b""#]
        );
        assert_eq!(diffs(json!({"params": {"lr_2": 1}}), json!({"params": {"lr_2": 2}})), ["params.lr_2 1 -> 2"]);
    }
}
