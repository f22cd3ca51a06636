//! What each kind's files must hold beyond their names: shapes agreeing with `meta.json`, ids
//! in range, finite values, well-formed tag sets and permutations, a network that loads.

use std::collections::BTreeMap;
use std::path::Path;

use super::files::{finite_f32_tensors, json, known_fields, meta, tensors};
use super::{err, FormatError};
use crate::artifact::header::TensorInfo;
use crate::artifact::Kind;
use crate::artifact::{
    Features, FeaturesMeta, ImagesMeta, Labels, LabelsMeta, Metrics, MultiLabels, MultiLabelsMeta, Permutations,
};
use crate::selfsup::permutations::{hamming, TILES};

/// The most classes a label set may declare: far beyond any study (the paper's largest K is
/// 16,000), and small enough that what consumers allocate per class stays bounded.
pub const MAX_CLASSES: usize = 1_000_000;

/// `num_classes` from 1 to [`MAX_CLASSES`], and one name per class when names are given.
fn classes(num_classes: usize, class_names: &[String]) -> Result<(), FormatError> {
    if !(1..=MAX_CLASSES).contains(&num_classes) {
        return Err(err("meta.json", format!("`num_classes` is {num_classes}; it must be from 1 to {MAX_CLASSES}")));
    }
    if !class_names.is_empty() && class_names.len() != num_classes {
        return Err(err(
            "meta.json",
            format!(
                "`class_names` has {} names for {num_classes} classes (give one per class, or none)",
                class_names.len()
            ),
        ));
    }
    Ok(())
}

/// Every size of one example (channels, frames, height, width, feature columns) is at least 1:
/// an empty example leaves consumers nothing to count rows by.
fn nonzero(sizes: &[(&str, usize)]) -> Result<(), FormatError> {
    match sizes.iter().find(|(_, n)| *n == 0) {
        Some((name, _)) => Err(err("meta.json", format!("`{name}` is 0; an example needs at least one"))),
        None => Ok(()),
    }
}

/// The most channels an image may have: beyond any imaging (hyperspectral cubes have a few
/// hundred), and what consumers keep per channel (a histogram of 2 KiB) stays small.
pub const MAX_CHANNELS: usize = 4096;

/// The most bytes one example (channels x frames x height x width) may hold: 1 GiB, far beyond a
/// study's 112 x 112 clips, and the product of the sizes never overflows.
pub const MAX_EXAMPLE_BYTES: usize = 1 << 30;

/// Sizes a consumer can allocate for: at most [`MAX_CHANNELS`] channels and
/// [`MAX_EXAMPLE_BYTES`] per example. With no rows, a file of a few bytes could declare any.
fn example_size(m: &ImagesMeta) -> Result<(), FormatError> {
    if m.channels > MAX_CHANNELS {
        return Err(err("meta.json", format!("`channels` is {}; at most {MAX_CHANNELS} are read", m.channels)));
    }
    let bytes = [m.channels, m.frames, m.height, m.width].iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    if bytes.is_none_or(|b| b > MAX_EXAMPLE_BYTES) {
        return Err(err(
            "meta.json",
            format!(
                "one example of {} channels x {} frames x {} x {} is over {} bytes, the most one may hold",
                m.channels, m.frames, m.height, m.width, MAX_EXAMPLE_BYTES
            ),
        ));
    }
    Ok(())
}

pub(super) fn images(dir: &Path, kind: Kind) -> Result<(), FormatError> {
    let m: ImagesMeta = meta(dir)?;
    nonzero(&[("channels", m.channels), ("height", m.height), ("width", m.width), ("frames", m.frames)])?;
    example_size(&m)?;
    classes(m.num_classes, &m.class_names)?;
    let clips = kind == Kind::Clips;
    if clips != (m.frames > 1) {
        let why = if clips { "clips need `frames` above 1" } else { "images have `frames` = 1 (or omit it)" };
        return Err(err("meta.json", format!("`frames` is {}, but {why}", m.frames)));
    }
    let rank = if clips { 5 } else { 4 };
    let file = "images.safetensors";
    let info = tensors(dir, file, &[("train", "U8", rank), ("test", "U8", rank)])?;
    only_tensors(file, &info, &["train", "test"])?;
    let item: Vec<usize> =
        if clips { vec![m.channels, m.frames, m.height, m.width] } else { vec![m.channels, m.height, m.width] };
    for split in ["train", "test"] {
        if info[split].shape[1..] != item[..] {
            return Err(err(
                file,
                format!("tensor `{split}` has shape {:?}, but meta.json says [N, {item:?}]", info[split].shape),
            ));
        }
    }
    Ok(())
}

/// The tensors of tag sets, all four or none.
const TAG_TENSORS: [&str; 4] = ["train_tag_offsets", "train_tag_ids", "test_tag_offsets", "test_tag_ids"];

pub(super) fn labels(dir: &Path) -> Result<(), FormatError> {
    let m: LabelsMeta = meta(dir)?;
    classes(m.num_classes, &m.class_names)?;
    let file = "labels.safetensors";
    let info = tensors(dir, file, &[("train", "U32", 1), ("test", "U32", 1)])?;
    let mut allowed = vec!["train", "test"];
    if TAG_TENSORS.iter().any(|t| info.contains_key(*t)) {
        tensors(dir, file, &TAG_TENSORS.map(|t| (t, "U32", 1)))?;
        allowed.extend(TAG_TENSORS);
    }
    only_tensors(file, &info, &allowed)?;
    if !m.tag_classes.is_empty() {
        if m.tag_classes.len() != m.num_classes {
            return Err(err(
                "meta.json",
                format!(
                    "`tag_classes` maps {} tags, but there are num_classes = {} (one list of classes per tag, or none)",
                    m.tag_classes.len(),
                    m.num_classes
                ),
            ));
        }
        if let Some(c) = m.tag_classes.iter().flatten().find(|c| **c as usize >= MAX_CLASSES) {
            return Err(err("meta.json", format!("`tag_classes` names class {c}; class ids are below {MAX_CLASSES}")));
        }
    }
    let l = Labels::load(dir).map_err(|e| err(file, e.to_string()))?;
    if let Some((train, test)) = &l.tags {
        for (split, sets) in [("train", train), ("test", test)] {
            if let Some(i) = (0..sets.len()).find(|&i| sets.get(i).windows(2).any(|w| w[0] >= w[1])) {
                return Err(err(
                    file,
                    format!("{split} image {i}'s tag set {:?} is not ascending without repeats", sets.get(i)),
                ));
            }
        }
    }
    for (split, ids) in [("train", &l.train), ("test", &l.test)] {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= l.meta.num_classes) {
            return Err(err(
                "labels.safetensors",
                format!("`{split}` holds id {bad}, but meta.json has num_classes = {}", l.meta.num_classes),
            ));
        }
    }
    Ok(())
}

pub(super) fn features(dir: &Path) -> Result<(), FormatError> {
    let m: FeaturesMeta = meta(dir)?;
    nonzero(&[("dim", m.dim)])?;
    let file = "features.safetensors";
    let info = tensors(dir, file, &[("train", "F32", 2), ("test", "F32", 2)])?;
    only_tensors(file, &info, &["train", "test"])?;
    for split in ["train", "test"] {
        if info[split].shape[1] != m.dim {
            return Err(err(
                file,
                format!("`{split}` has {} columns, but meta.json has dim = {}", info[split].shape[1], m.dim),
            ));
        }
    }
    let f = Features::load(dir).map_err(|e| err(file, e.to_string()))?;
    if f.train.iter().chain(&f.test).any(|v| !v.is_finite()) {
        return Err(err(file, "holds NaN or infinite values"));
    }
    Ok(())
}

/// A set of distinct permutations, as many as `meta.json` says.
pub(super) fn permutations(dir: &Path) -> Result<(), FormatError> {
    let file = "permutations.safetensors";
    let _: crate::artifact::permutations::PermutationsMeta = meta(dir)?;
    let info = tensors(dir, file, &[("perms", "U8", 2)])?;
    only_tensors(file, &info, &["perms"])?;
    if info["perms"].shape[1] != TILES {
        return Err(err(file, format!("tensor `perms` has shape {:?}, but must be [P, {TILES}]", info["perms"].shape)));
    }
    // The distance is what a Jigsaw study reports of its set, so it is recomputed, not trusted;
    // the bound keeps that to some 5e7 pairs, and is read from the header so that a file of any
    // size is refused before it is loaded.
    let rows = info["perms"].shape[0];
    if rows > MAX_PERMUTATIONS {
        return Err(err(file, format!("holds {rows} permutations; at most {MAX_PERMUTATIONS} are read")));
    }
    let p = Permutations::load(dir).map_err(|e| err(file, e.to_string()))?;
    if p.meta.count != p.perms.len() {
        return Err(err(
            file,
            format!("holds {} permutations, but meta.json has count = {}", p.perms.len(), p.meta.count),
        ));
    }
    let distinct: std::collections::BTreeSet<_> = p.perms.iter().collect();
    if distinct.len() != p.perms.len() {
        return Err(err(file, format!("holds {} repeated permutations", p.perms.len() - distinct.len())));
    }
    let min = p
        .perms
        .iter()
        .enumerate()
        .flat_map(|(i, a)| p.perms[i + 1..].iter().map(move |b| hamming(a, b)))
        .min()
        .unwrap_or(TILES as u32);
    if min != p.meta.min_hamming {
        return Err(err(
            "meta.json",
            format!(
                "`min_hamming` is {}, but the permutations' smallest Hamming distance is {min}",
                p.meta.min_hamming
            ),
        ));
    }
    Ok(())
}

/// Most permutations a set may hold: the `permutations` op's largest `count`.
const MAX_PERMUTATIONS: usize = 10_000;

/// A network the format allows: F32 weights, all finite (read before anything is built, so a
/// tensor of another dtype is refused, not converted), fitting the architecture `model.json`
/// declares; batch norms' running variances at least 0 and an input normalisation of positive,
/// finite standard deviations and finite means. A negative variance or standard deviation
/// gives NaN or features scaled by 1e29 that a probe scores at chance, not an error.
pub(super) fn model(dir: &Path) -> Result<(), FormatError> {
    let file = "model.safetensors";
    let side: serde_json::Value = json(dir, "model.json")?;
    known_fields::<crate::nn::checkpoint::ModelMeta>("model.json", "", &side)?;
    known_fields::<crate::nn::Normalization>("model.json", "norm.", &side["norm"])?;
    arch_fields(&side["arch"])?;
    finite_f32_tensors(dir, file)?;
    let (weights, meta) =
        crate::nn::load_model(&dir.join(file), &candle_core::Device::Cpu).map_err(|e| err(file, e.to_string()))?;
    for (name, t) in crate::nn::checkpoint::var_tensors(&weights) {
        if !name.ends_with("running_var") {
            continue;
        }
        let values =
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| err(file, format!("`{name}`: {e}")))?;
        if let Some(v) = values.iter().find(|v| **v < 0.0) {
            return Err(err(file, format!("batch norm statistic `{name}` holds {v:?}; a variance is at least 0")));
        }
    }
    let norm = &meta.norm;
    if norm.mean.len() != norm.std.len() {
        return Err(err(
            "model.json",
            format!(
                "`norm` has {} means and {} standard deviations (one each per channel)",
                norm.mean.len(),
                norm.std.len()
            ),
        ));
    }
    if let Some(s) = norm.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(err("model.json", format!("`norm.std` holds {s:?}; each must be a finite number above 0")));
    }
    if let Some(m) = norm.mean.iter().find(|m| !m.is_finite()) {
        return Err(err("model.json", format!("`norm.mean` holds {m:?}; each must be a finite number")));
    }
    Ok(())
}

/// `model.json`'s `arch`, when it reads as an image network, holds no other field. A video
/// network's own reader refuses any (its fields include all of an image network's), so a video
/// `arch` with a misspelt field read as an image network, the rest ignored.
fn arch_fields(arch: &serde_json::Value) -> Result<(), FormatError> {
    use crate::artifact::known_fields::{field_names, unknown_key};
    use crate::nn::{Arch, R2Plus1DConfig, ResNetConfig};
    use serde::Deserialize;
    if !matches!(Arch::deserialize(arch), Ok(Arch::ResNet(_))) {
        return Ok(());
    }
    let (image, video) = (field_names::<ResNetConfig>(), field_names::<R2Plus1DConfig>());
    let Some(first) = unknown_key(arch, image) else { return Ok(()) };
    // A key neither network has is the likelier mistake than a video network's own.
    let key = unknown_key(arch, video).unwrap_or(first);
    Err(err(
        "model.json",
        format!(
            "has an unknown field `arch.{key}` (an image network's `arch` holds: {}; a video network's: {})",
            image.join(", "),
            video.join(", ")
        ),
    ))
}

/// The tensors of `file` are exactly `allowed`: a stray one (a NaN, ids out of range, half of
/// a tag set) would be published unchecked, and a later reader might take it for its own.
fn only_tensors(file: &str, info: &BTreeMap<String, TensorInfo>, allowed: &[&str]) -> Result<(), FormatError> {
    match info.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => {
            Err(err(file, format!("holds a tensor `{extra}` the format lacks (it has only: {})", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

pub(super) fn multilabels(dir: &Path) -> Result<(), FormatError> {
    let meta: MultiLabelsMeta = meta(dir)?;
    classes(meta.num_classes, &meta.class_names)?;
    let file = "multilabels.safetensors";
    let info = tensors(dir, file, &[("train", "U8", 2), ("test", "U8", 2)])?;
    only_tensors(file, &info, &["train", "test"])?;
    for split in ["train", "test"] {
        if info[split].shape[1] != meta.num_classes {
            return Err(err(
                file,
                format!(
                    "`{split}` has {} columns, but meta.json has num_classes = {} (one 0/1 column per class)",
                    info[split].shape[1], meta.num_classes
                ),
            ));
        }
    }
    let m = MultiLabels::load(dir).map_err(|e| err(file, e.to_string()))?;
    if m.train.iter().chain(&m.test).any(|&v| v > 1) {
        return Err(err(file, "holds values other than 0 and 1 (multi-hot rows)"));
    }
    Ok(())
}

pub(super) fn metrics(dir: &Path) -> Result<(), FormatError> {
    // Unknown fields are refused here, where a command's file is published, not in every load:
    // a misspelt `details` would vanish without a word, while results published before this
    // check must still read.
    let value: serde_json::Value = json(dir, "metrics.json")?;
    if !value.is_object() {
        return Err(err(
            "metrics.json",
            "must be a JSON object: {\"values\": {\"name\": number, ...}} (and optionally \"details\")",
        ));
    }
    if let Some(field) = value.as_object().and_then(|o| o.keys().find(|k| !["values", "details"].contains(&k.as_str())))
    {
        return Err(err(
            "metrics.json",
            format!("unknown field {field:?}; a metrics file holds `values` and `details`"),
        ));
    }
    let m: Metrics = serde_json::from_value(value).map_err(|e| err("metrics.json", e.to_string()))?;
    if let Some((name, v)) = m.values.iter().find(|(_, v)| !v.is_finite()) {
        return Err(err("metrics.json", format!("value `{name}` is {v}, not a finite number")));
    }
    // Metric names become table cells, claim rows and page text.
    if let Some(name) = m.values.keys().find(|n| n.is_empty() || n.chars().any(crate::config::error::unsafe_to_print)) {
        return Err(err(
            "metrics.json",
            format!("value name {name:?} is empty or holds a control character or one that reorders text"),
        ));
    }
    Ok(())
}
