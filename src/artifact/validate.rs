//! Checks a folder against the on-disk format of its kind (see the table in [`super`] and
//! `docs/FORMATS.md`), for artifacts cfrun did not write itself: the outputs of a `command`
//! stage. Headers are checked before any tensor is loaded, so a wrong dtype or a truncated file
//! is reported as such rather than as a candle error, and memory stays bounded by the file.

use std::collections::BTreeMap;
use std::path::Path;

use super::header::{self, TensorInfo};
use super::Kind;
use super::{Features, FeaturesMeta, ImagesMeta, Labels, LabelsMeta, Metrics, MultiLabels, Permutations};
use crate::selfsup::permutations::{hamming, TILES};

/// Rows per split (`train`, `test`) of an artifact that holds one row per example.
pub type Rows = (usize, usize);

/// What is wrong with an artifact folder; `file` is relative to the folder.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct FormatError {
    /// The offending file (or `.` for the folder itself).
    pub file: String,
    /// What is wrong and what was expected.
    pub why: String,
}

fn err(file: &str, why: impl Into<String>) -> FormatError {
    FormatError { file: file.to_string(), why: why.into() }
}

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

/// The kinds whose artifacts hold one row per example of each split.
pub fn has_rows(kind: Kind) -> bool {
    matches!(kind, Kind::Images | Kind::Clips | Kind::Labels | Kind::Features | Kind::MultiLabels)
}

/// The tensor file of a kind that has one.
fn tensor_file(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Images | Kind::Clips => Some("images.safetensors"),
        Kind::Labels => Some("labels.safetensors"),
        Kind::Features => Some("features.safetensors"),
        Kind::MultiLabels => Some("multilabels.safetensors"),
        Kind::Permutations => Some("permutations.safetensors"),
        Kind::Model => Some("model.safetensors"),
        Kind::Metrics | Kind::Report => None,
    }
}

/// The rows of each split of a (trusted or already validated) artifact, read from its header.
pub fn rows(dir: &Path, kind: Kind) -> Option<Rows> {
    if !has_rows(kind) {
        return None;
    }
    let file = tensor_file(kind)?;
    let info = header::read(&dir.join(file)).ok()?;
    Some((*info.get("train")?.shape.first()?, *info.get("test")?.shape.first()?))
}

/// Checks `dir` as an artifact of `kind`. With `rows`, per-example kinds must have exactly that
/// many rows in each split (the rows of the stage's inputs).
pub fn validate(dir: &Path, kind: Kind, rows: Option<Rows>) -> Result<(), FormatError> {
    check_files(dir, kind)?;
    if let Some(file) = tensor_file(kind) {
        readable_whole(dir, file)?;
    }
    match kind {
        Kind::Images | Kind::Clips => images(dir, kind)?,
        Kind::Labels => labels(dir)?,
        Kind::Features => features(dir)?,
        Kind::MultiLabels => multilabels(dir)?,
        Kind::Permutations => permutations(dir)?,
        Kind::Metrics => metrics(dir)?,
        Kind::Model => model(dir)?,
        Kind::Report => {}
    }
    if let (Some(want), Some(file)) = (rows.filter(|_| has_rows(kind)), tensor_file(kind)) {
        let got = self::rows(dir, kind).expect("checked above");
        if got != want {
            return Err(err(
                file,
                format!(
                    "has {} train and {} test rows, but the stage's inputs have {} and {} (one row per example)",
                    got.0, got.1, want.0, want.1
                ),
            ));
        }
    }
    Ok(())
}

/// Only the files of the format, all regular files (a symlink could point anywhere).
fn check_files(dir: &Path, kind: Kind) -> Result<(), FormatError> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| err(".", format!("cannot list the folder: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| err(".", e.to_string()))?;
        let raw = entry.file_name();
        let name = raw.to_string_lossy().to_string();
        // Names are printed after a run and written into the report page: bytes that are not
        // text, control characters and characters that reorder text would act there, not show.
        if raw.to_str().is_none() {
            return Err(err(&name, "has a name that is not UTF-8"));
        }
        if name.chars().any(crate::config::error::unsafe_to_print) {
            return Err(err(
                &name
                    .chars()
                    .map(|c| if crate::config::error::unsafe_to_print(c) { '?' } else { c })
                    .collect::<String>(),
                "has a control character or one that reorders text in its name",
            ));
        }
        let ty = entry.file_type().map_err(|e| err(&name, e.to_string()))?;
        if !ty.is_file() {
            return Err(err(&name, "is not a regular file (folders and symlinks are not part of any artifact format)"));
        }
        names.push(name);
    }
    let expected: Vec<&str> = match kind {
        Kind::Metrics => vec!["metrics.json"],
        Kind::Model => vec!["model.safetensors", "model.json"],
        Kind::Report => {
            if names.is_empty() {
                return Err(err(".", "the report folder is empty (write .md, .csv, .png or .svg files)"));
            }
            return names.iter().try_for_each(|n| report_file(dir, n));
        }
        other => vec![tensor_file(other).expect("tensor kinds have a file"), "meta.json"],
    };
    for want in &expected {
        if !names.iter().any(|n| n == want) {
            return Err(err(want, format!("is missing (a {kind} artifact holds {})", expected.join(" and "))));
        }
    }
    let optional = optional_file(kind);
    if let Some(extra) = names.iter().find(|n| !expected.contains(&n.as_str()) && Some(n.as_str()) != optional) {
        let may = optional.map(|o| format!(", and may hold {o}")).unwrap_or_default();
        return Err(err(
            extra,
            format!("is not part of a {kind} artifact (it holds {}{may} only)", expected.join(" and ")),
        ));
    }
    if let Some(o) = optional.filter(|o| names.iter().any(|n| n == o)) {
        finite_f32_tensors(dir, o)?;
    }
    Ok(())
}

/// The file beside the format's own that cfrun's ops write for a reader outside cfrun (k-means'
/// and the prototypes' centroids beside their labels, the Jigsaw head beside its trunk), so that
/// a `command` stage may copy such an artifact through unchanged.
fn optional_file(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Labels => Some("centroids.safetensors"),
        Kind::Model => Some("jigsaw_head.safetensors"),
        _ => None,
    }
}

/// Every tensor of `dir/file` is F32 and finite, read a block at a time: nothing reads the file
/// whole (it was loaded twice over, so a command's sparse file of gigabytes took cfrun's memory).
fn finite_f32_tensors(dir: &Path, file: &str) -> Result<(), FormatError> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(file);
    let info = header::read(&path).map_err(|e| err(file, e))?;
    if let Some((name, t)) = info.iter().find(|(_, t)| t.dtype != "F32") {
        return Err(err(file, format!("tensor `{name}` is {}, not F32", t.dtype)));
    }
    let io = |e: std::io::Error| err(file, e.to_string());
    let mut f = std::fs::File::open(&path).map_err(io)?;
    // A multiple of 4, so no value is cut between two blocks.
    let mut block = vec![0u8; 1 << 20];
    for (name, t) in &info {
        f.seek(SeekFrom::Start(t.bytes.start)).map_err(io)?;
        let mut left = t.bytes.end - t.bytes.start;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.read_exact(&mut block[..n]).map_err(io)?;
            let finite = block[..n].chunks_exact(4).all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
            if !finite {
                return Err(err(file, format!("tensor `{name}` holds NaN or infinite values")));
            }
            left -= n as u64;
        }
    }
    Ok(())
}

/// The format's tensor file is at most half this machine's memory: its readers load it whole
/// (and candle's loader holds a second copy while it does), so a larger one would end in an
/// allocation abort that takes every running stage with it, not in an error.
fn readable_whole(dir: &Path, file: &str) -> Result<(), FormatError> {
    let size = std::fs::metadata(dir.join(file)).map_err(|e| err(file, e.to_string()))?.len();
    let memory = crate::config::limits::machine_memory();
    if size > memory / 2 {
        return Err(err(
            file,
            format!(
                "is {}, more than half of this machine's {} of memory; cfrun reads it whole",
                crate::human::bytes(size),
                crate::human::bytes(memory)
            ),
        ));
    }
    Ok(())
}

fn report_file(dir: &Path, name: &str) -> Result<(), FormatError> {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "md" | "csv" | "txt" | "json" | "svg" => {
            if !utf8_text(&dir.join(name)).map_err(|e| err(name, e.to_string()))? {
                return Err(err(name, "is not UTF-8 text"));
            }
        }
        "png" => {
            let mut head = Vec::with_capacity(8);
            let file = std::fs::File::open(dir.join(name)).map_err(|e| err(name, e.to_string()))?;
            std::io::Read::read_to_end(&mut std::io::Read::take(file, 8), &mut head)
                .map_err(|e| err(name, e.to_string()))?;
            if !head.starts_with(b"\x89PNG\r\n\x1a\n") {
                return Err(err(name, "is not a PNG image (bad signature)"));
            }
        }
        _ => return Err(err(name, "has an extension a report does not hold (valid: md, csv, txt, json, svg, png)")),
    }
    Ok(())
}

/// Whether a file is UTF-8 text, read a block at a time: a text output of gigabytes is checked
/// in bounded memory (it was read whole, taking cfrun's memory with it).
fn utf8_text(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    // Bytes of a character cut by the end of the last block, carried to the next.
    let mut carried = 0;
    loop {
        let n = file.read(&mut buf[carried..])?;
        if n == 0 {
            return Ok(carried == 0);
        }
        let filled = carried + n;
        match std::str::from_utf8(&buf[..filled]) {
            Ok(_) => carried = 0,
            // Cut at the end (no error length): keep the start of that character.
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..filled, 0);
                carried = filled - valid;
            }
            Err(_) => return Ok(false),
        }
    }
}

/// The header of a tensor file, with each named tensor of the given dtype and rank.
fn tensors(dir: &Path, file: &str, want: &[(&str, &str, usize)]) -> Result<BTreeMap<String, TensorInfo>, FormatError> {
    let info = header::read(&dir.join(file)).map_err(|e| err(file, e))?;
    for &(name, dtype, rank) in want {
        let Some(t) = info.get(name) else {
            let have: Vec<&str> = info.keys().map(String::as_str).collect();
            return Err(err(file, format!("has no tensor `{name}` (it has: {})", have.join(", "))));
        };
        if t.dtype != dtype {
            return Err(err(file, format!("tensor `{name}` is {}, but must be {dtype}", t.dtype)));
        }
        if t.shape.len() != rank {
            return Err(err(file, format!("tensor `{name}` has shape {:?}, but must have {rank} dimensions", t.shape)));
        }
    }
    Ok(info)
}

fn meta<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, FormatError> {
    json(dir, "meta.json")
}

/// The largest JSON file of an artifact read here: far above any meta.json (a million class
/// names) or metrics.json cfrun writes, and small enough to read whole.
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Reads `dir/file` as `T`: at most [`MAX_JSON_BYTES`], and no key twice in one object (a JSON
/// reader keeps one of the two silently, so which value counts would depend on the reader).
fn json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, FormatError> {
    let path = dir.join(file);
    let size = std::fs::metadata(&path).map_err(|e| err(file, e.to_string()))?.len();
    if size > MAX_JSON_BYTES {
        return Err(err(
            file,
            format!(
                "is {size} bytes; a JSON file of an artifact may be at most {MAX_JSON_BYTES} bytes ({} MiB)",
                MAX_JSON_BYTES >> 20
            ),
        ));
    }
    let text = std::fs::read(&path).map_err(|e| err(file, e.to_string()))?;
    super::strict_json::distinct_keys(&text).map_err(|e| err(file, format!("{e}{}", non_json_number(&text))))?;
    serde_json::from_slice(&text).map_err(|e| err(file, format!("{e}{}", non_json_number(&text))))
}

/// A hint where the text's first JSON syntax error stands at `NaN`, `Infinity` or `-Infinity`,
/// which JSON lacks; else nothing.
fn non_json_number(text: &[u8]) -> &'static str {
    let Err(e) = serde_json::from_slice::<serde_json::Value>(text) else { return "" };
    let Some(line) = text.split(|&b| b == b'\n').nth(e.line().saturating_sub(1)) else { return "" };
    let at = &line[e.column().saturating_sub(1).min(line.len())..];
    if e.is_syntax() && [&b"NaN"[..], b"Infinity", b"-Infinity"].iter().any(|t| at.starts_with(t)) {
        "; JSON has no NaN or Infinity (Python's json.dump writes them unless allow_nan=False): every value must be a finite number"
    } else {
        ""
    }
}

fn images(dir: &Path, kind: Kind) -> Result<(), FormatError> {
    let m: ImagesMeta = meta(dir)?;
    nonzero(&[("channels", m.channels), ("height", m.height), ("width", m.width), ("frames", m.frames)])?;
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

fn labels(dir: &Path) -> Result<(), FormatError> {
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

fn features(dir: &Path) -> Result<(), FormatError> {
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
fn permutations(dir: &Path) -> Result<(), FormatError> {
    let file = "permutations.safetensors";
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
    // The distance is what a Jigsaw study reports of its set, so it is recomputed, not trusted;
    // the bound keeps that to some 5e7 pairs.
    if p.perms.len() > MAX_PERMUTATIONS {
        return Err(err(file, format!("holds {} permutations; at most {MAX_PERMUTATIONS} are read", p.perms.len())));
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
fn model(dir: &Path) -> Result<(), FormatError> {
    let file = "model.safetensors";
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

fn multilabels(dir: &Path) -> Result<(), FormatError> {
    let meta: super::MultiLabelsMeta = meta(dir)?;
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

fn metrics(dir: &Path) -> Result<(), FormatError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::labels::TagSets;
    use crate::artifact::PermutationsMeta;

    fn labels_dir(num_classes: usize, class_names: Vec<String>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let meta = LabelsMeta { num_classes, class_names, source: "test".into(), tag_classes: vec![] };
        Labels { meta, train: vec![0, 1, 2], test: vec![3], tags: None }.save(dir.path()).unwrap();
        dir
    }

    /// Labels from k-means carry their centroids: copied through by a `command` stage they are
    /// accepted, when F32 and finite; any other extra file is still refused, naming what may be.
    #[test]
    fn labels_may_carry_their_centroids() {
        let dir = labels_dir(4, vec![]);
        let centroids = dir.path().join("centroids.safetensors");
        crate::artifact::tensors::save_matrix(&centroids, "centroids", &[0.5, 1.0, -2.0, 0.0], 2, 2).unwrap();
        validate(dir.path(), Kind::Labels, Some((3, 1))).unwrap();
        crate::artifact::tensors::save_matrix(&centroids, "centroids", &[0.5, f32::NAN, -2.0, 0.0], 2, 2).unwrap();
        let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
        assert!(e.contains("centroids.safetensors") && e.contains("NaN"), "{e}");
        // Past the first block of the check, which reads the file a block at a time.
        let mut values = vec![0.25f32; 600_000];
        values[599_999] = f32::INFINITY;
        crate::artifact::tensors::save_matrix(&centroids, "centroids", &values, 1000, 600).unwrap();
        let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
        assert!(e.contains("tensor `centroids` holds NaN or infinite values"), "{e}");
        values[599_999] = 0.0;
        crate::artifact::tensors::save_matrix(&centroids, "centroids", &values, 1000, 600).unwrap();
        validate(dir.path(), Kind::Labels, None).unwrap();
        std::fs::remove_file(&centroids).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("may hold centroids.safetensors only"), "{e}");
    }

    /// A tensor file larger than half the machine's memory is refused before any of it is read
    /// (a sparse file: instant to make, as a command could).
    #[test]
    fn a_tensor_file_too_large_to_read_whole_is_refused() {
        let dir = labels_dir(4, vec![]);
        let file = std::fs::OpenOptions::new().write(true).open(dir.path().join("labels.safetensors")).unwrap();
        file.set_len(crate::config::limits::machine_memory() / 2 + 1).unwrap();
        let e = validate(dir.path(), Kind::Labels, None).unwrap_err().to_string();
        assert!(e.starts_with("labels.safetensors: is ") && e.contains("more than half of this machine's"), "{e}");
    }

    /// A command's metrics.json is read without guessing: a name given twice, a misspelt field,
    /// a name that would act on a terminal and a file too large to read whole are each refused
    /// with what is wrong; an ordinary file passes.
    #[test]
    fn metrics_written_by_a_command_are_read_strictly() {
        let check = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("metrics.json"), text).unwrap();
            validate(dir.path(), Kind::Metrics, None).map_err(|e| e.to_string())
        };
        check(r#"{"values": {"top1": 81.2, "loss": 0.5}, "details": {"curve": [1, 2]}}"#).unwrap();
        let e = check(r#"{"values": {"top1": 1, "top1": 2}, "details": {}}"#).unwrap_err();
        assert!(e.contains("`$.values.top1` is given twice"), "{e}");
        let e = check(r#"{"values": {"top1": 1}, "detials": {}}"#).unwrap_err();
        assert!(e.contains("unknown field \"detials\"; a metrics file holds `values` and `details`"), "{e}");
        for bad in ["NaN", "Infinity", "-Infinity"] {
            let e = check(&format!("{{\"values\": {{\"x\": {bad}}}}}")).unwrap_err();
            assert!(e.contains("JSON has no NaN or Infinity"), "{bad}: {e}");
        }
        let e = check(r#"{"values": {"x": nope}}"#).unwrap_err();
        assert!(!e.contains("NaN"), "{e}");
        let e = check("{\"values\": {\"a\\u001b]0;x\": 1}}").unwrap_err();
        assert!(e.contains(r#"value name "a\u{1b}]0;x" is empty or holds a control character"#), "{e}");
        let e = check(r#"{"values": {"": 1}}"#).unwrap_err();
        assert!(e.contains("value name \"\" is empty"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("metrics.json")).unwrap();
        f.set_len(MAX_JSON_BYTES + 1).unwrap();
        let e = validate(dir.path(), Kind::Metrics, None).unwrap_err().to_string();
        assert!(
            e.contains("is 67108865 bytes; a JSON file of an artifact may be at most 67108864 bytes (64 MiB)"),
            "{e}"
        );
    }

    /// A report's file names reach the terminal and the page: one with an escape sequence, a
    /// character that reorders text or bytes that are not UTF-8 is refused (an audit's escape
    /// retitled the terminal after a run), an ordinary one with spaces and accents is not.
    #[test]
    fn report_file_names_that_would_act_instead_of_show_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let bad: [&[u8]; 4] = [b"\x1b]0;title\x07.txt", "\u{202e}txt.md".as_bytes(), b"a\nb.md", b"\xff\xfe.md"];
        for name in bad {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(name)), "x").unwrap();
            let e = validate(dir.path(), Kind::Report, None).unwrap_err();
            assert!(e.why.contains("in its name") || e.why.contains("not UTF-8"), "{name:?}: {e:?}");
            assert!(!e.file.contains('\x1b') && !e.file.contains('\n'), "{:?}", e.file);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("résumé table.md"), "x").unwrap();
        validate(dir.path(), Kind::Report, None).unwrap();
    }

    /// UTF-8 is checked a block at a time: a character cut by a block's end is still text,
    /// a bad byte anywhere is not.
    #[test]
    fn utf8_is_checked_across_block_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let mut text = "a".repeat((1 << 16) - 1).into_bytes();
        text.extend("é€😀".repeat(30_000).as_bytes());
        std::fs::write(&path, &text).unwrap();
        assert!(utf8_text(&path).unwrap());
        text.push(0xc3); // a character cut by the end of the file
        std::fs::write(&path, &text).unwrap();
        assert!(!utf8_text(&path).unwrap());
        text.pop();
        text[100_000] = 0xff;
        std::fs::write(&path, &text).unwrap();
        assert!(!utf8_text(&path).unwrap());
    }

    /// A command's labels that declare absurdly many classes, or names that do not fit them,
    /// are refused where they are checked; before, 2^31 classes passed and a probe downstream
    /// aborted the whole run allocating for them.
    #[test]
    fn class_counts_out_of_bounds_and_misfit_names_are_refused() {
        assert!(validate(labels_dir(4, vec![]).path(), Kind::Labels, None).is_ok());
        let huge = validate(labels_dir(1 << 31, vec![]).path(), Kind::Labels, None).unwrap_err();
        assert!(huge.to_string().contains("`num_classes` is 2147483648; it must be from 1 to 1000000"), "{huge}");
        let names = validate(labels_dir(4, vec!["a".into()]).path(), Kind::Labels, None).unwrap_err();
        assert!(names.to_string().contains("`class_names` has 1 names for 4 classes"), "{names}");
    }

    #[test]
    fn features_without_columns_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let meta = FeaturesMeta { dim: 0, source: "test".into() };
        Features { meta, train: vec![], test: vec![] }.save(dir.path()).unwrap();
        let e = validate(dir.path(), Kind::Features, None).unwrap_err();
        assert!(e.to_string().contains("`dim` is 0"), "{e}");
    }

    #[test]
    fn permutations_must_be_as_many_as_declared_and_distinct() {
        let check = |count: usize, perms: Vec<[u8; 9]>| {
            let dir = tempfile::tempdir().unwrap();
            let meta = PermutationsMeta { count, min_hamming: 2, source: "test".into() };
            Permutations { meta, perms }.save(dir.path()).unwrap();
            validate(dir.path(), Kind::Permutations, None).map_err(|e| e.to_string())
        };
        let (a, b) = ([0, 1, 2, 3, 4, 5, 6, 7, 8], [1, 0, 2, 3, 4, 5, 6, 7, 8]);
        assert!(check(2, vec![a, b]).is_ok());
        let c = [1, 2, 0, 3, 4, 5, 6, 7, 8];
        let e = check(2, vec![a, c]).unwrap_err();
        assert!(e.contains("`min_hamming` is 2, but the permutations' smallest Hamming distance is 3"), "{e}");
        assert!(check(5, vec![a, b]).unwrap_err().contains("holds 2 permutations, but meta.json has count = 5"));
        assert!(check(2, vec![a, a]).unwrap_err().contains("1 repeated"));
    }

    /// A model folder of resnet_tiny (4 classes, 1 channel) with fresh weights, for editing.
    fn model_dir() -> tempfile::TempDir {
        use crate::nn::{build_model, init_weights, save_model, Arch, Normalization};
        let dir = tempfile::tempdir().unwrap();
        let arch = Arch::preset("resnet_tiny", 1, 4).unwrap();
        let vm = candle_nn::VarMap::new();
        build_model(&arch, &vm, &candle_core::Device::Cpu, true).unwrap();
        init_weights(&vm, 1).unwrap();
        let norm = Normalization { mean: vec![0.2], std: vec![0.3] };
        save_model(&dir.path().join("model.safetensors"), &vm, &arch, &norm).unwrap();
        dir
    }

    /// Edits `model.json` in place.
    fn edit_model_json(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = dir.join("model.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    /// Rewrites one tensor of `model.safetensors` through `f`.
    fn edit_weight(dir: &Path, suffix: &str, f: impl Fn(&candle_core::Tensor) -> candle_core::Tensor) {
        let path = dir.join("model.safetensors");
        let mut all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        // The first in name order: the map's own order changes from run to run.
        let name = all.keys().filter(|k| k.ends_with(suffix)).min().unwrap().clone();
        let edited = f(&all[&name]);
        all.insert(name, edited);
        candle_core::safetensors::save(&all, &path).unwrap();
    }

    /// Weights that fit and are finite but mean nothing (a negative variance, another dtype, a
    /// standard deviation at or below 0), and a model.json declaring a network far larger than
    /// its weights, are refused with the tensor or field named; the last without building the
    /// declared network (a billion classes: 32 GB), which used to take the machine's memory.
    #[test]
    fn a_model_that_would_compute_garbage_or_exhaust_memory_is_refused() {
        let check = |dir: &tempfile::TempDir| validate(dir.path(), Kind::Model, None).map_err(|e| e.to_string());
        check(&model_dir()).unwrap();
        let dir = model_dir();
        edit_weight(dir.path(), "running_var", |t| (t.ones_like().unwrap() * -1.0).unwrap());
        let e = check(&dir).unwrap_err();
        assert!(e.contains("running_var") && e.contains("a variance is at least 0"), "{e}");
        let dir = model_dir();
        edit_weight(dir.path(), "bn1.weight", |t| t.to_dtype(candle_core::DType::F64).unwrap());
        let e = check(&dir).unwrap_err();
        assert!(e.contains("bn1.weight") && e.contains("is F64, not F32"), "{e}");
        for std in [-1e-30, 0.0] {
            let dir = model_dir();
            edit_model_json(dir.path(), |v| v["norm"]["std"] = serde_json::json!([std]));
            let e = check(&dir).unwrap_err();
            assert!(e.contains("`norm.std` holds") && e.contains("above 0"), "{e}");
        }
        let dir = model_dir();
        edit_model_json(dir.path(), |v| v["arch"]["num_classes"] = serde_json::json!(1_000_000_000u64));
        let e = check(&dir).unwrap_err();
        assert!(e.contains("shape mismatch for fc.weight") && e.contains("[1000000000,"), "{e}");
        let dir = model_dir();
        edit_model_json(dir.path(), |v| v["arch"]["widths"] = serde_json::json!([100_000, 100_000, 100_000, 100_000]));
        let e = check(&dir).unwrap_err();
        assert!(e.contains("weights do not fit the architecture"), "{e}");
    }

    /// Stray tensors (half a tag set, a NaN beside the features), tag sets out of order or
    /// repeating a tag, a tag map of the wrong length or naming an absurd class, and multi-hot
    /// rows of another width than the classes are refused before anything reads them.
    #[test]
    fn stray_tensors_and_malformed_tag_sets_are_refused() {
        use crate::artifact::tensors;
        let tagged = |sets: &[Vec<u32>], tag_classes: Vec<Vec<u32>>| {
            let dir = tempfile::tempdir().unwrap();
            let meta = LabelsMeta { num_classes: 4, class_names: vec![], source: "t".into(), tag_classes };
            let t = TagSets { offsets: vec![0], ids: vec![] };
            let mut labels = Labels { meta, train: vec![0; sets.len()], test: vec![0], tags: Some((t.clone(), t)) };
            let mut offsets = vec![0u32];
            let mut ids = Vec::new();
            for s in sets {
                ids.extend(s);
                offsets.push(ids.len() as u32);
            }
            labels.tags = Some((TagSets { offsets, ids }, TagSets { offsets: vec![0, 1], ids: vec![0] }));
            labels.save(dir.path()).unwrap();
            dir
        };
        let check = |dir: &tempfile::TempDir, kind| validate(dir.path(), kind, None).map_err(|e| e.to_string());
        check(&tagged(&[vec![0, 2], vec![]], vec![]), Kind::Labels).unwrap();
        check(&tagged(&[vec![0, 2], vec![1]], vec![vec![0], vec![1], vec![], vec![0, 1]]), Kind::Labels).unwrap();
        let e = check(&tagged(&[vec![2, 0]], vec![]), Kind::Labels).unwrap_err();
        assert!(e.contains("train image 0's tag set [2, 0] is not ascending without repeats"), "{e}");
        assert!(check(&tagged(&[vec![3, 3]], vec![]), Kind::Labels).unwrap_err().contains("without repeats"));
        let e = check(&tagged(&[vec![0]], vec![vec![0]]), Kind::Labels).unwrap_err();
        assert!(e.contains("`tag_classes` maps 1 tags, but there are num_classes = 4"), "{e}");
        let e =
            check(&tagged(&[vec![0]], vec![vec![0], vec![], vec![], vec![4_294_967_295]]), Kind::Labels).unwrap_err();
        assert!(e.contains("`tag_classes` names class 4294967295"), "{e}");
        // Half a tag set: only the test split's tensors, with ids far out of range.
        let dir = labels_dir(4, vec![]);
        let path = dir.path().join("labels.safetensors");
        let mut all = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        let cpu = candle_core::Device::Cpu;
        all.insert("test_tag_offsets".into(), candle_core::Tensor::new(&[0u32, 1], &cpu).unwrap());
        all.insert("test_tag_ids".into(), candle_core::Tensor::new(&[99u32], &cpu).unwrap());
        candle_core::safetensors::save(&all, &path).unwrap();
        let e = check(&dir, Kind::Labels).unwrap_err();
        assert!(e.contains("has no tensor `train_tag_offsets`"), "{e}");
        // A stray NaN tensor beside features.
        let dir = tempfile::tempdir().unwrap();
        let meta = FeaturesMeta { dim: 2, source: "t".into() };
        Features { meta, train: vec![1.0, 2.0], test: vec![3.0, 4.0] }.save(dir.path()).unwrap();
        check(&dir, Kind::Features).unwrap();
        let path = dir.path().join("features.safetensors");
        let mut all = candle_core::safetensors::load(&path, &cpu).unwrap();
        all.insert("junk".into(), candle_core::Tensor::new(&[f32::NAN], &cpu).unwrap());
        candle_core::safetensors::save(&all, &path).unwrap();
        let e = check(&dir, Kind::Features).unwrap_err();
        assert!(e.contains("holds a tensor `junk` the format lacks"), "{e}");
        // Multi-hot rows of 3 columns for 5 classes.
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::artifact::MultiLabelsMeta { num_classes: 5, class_names: vec![], source: "t".into() };
        tensors::save_splits(dir.path(), "multilabels.safetensors", (&[0u8, 1, 0][..], &[1u8, 0, 0][..]), &[3], &meta)
            .unwrap();
        let e = check(&dir, Kind::MultiLabels).unwrap_err();
        assert!(e.contains("`train` has 3 columns, but meta.json has num_classes = 5"), "{e}");
    }

    #[test]
    fn a_model_with_a_nan_weight_is_refused() {
        let dir = model_dir();
        edit_weight(dir.path(), "bn1.weight", |t| t.affine(0.0, f64::NAN).unwrap());
        let e = validate(dir.path(), Kind::Model, None).unwrap_err();
        assert!(e.to_string().contains("tensor `bn1.weight` holds NaN"), "{e}");
    }
}
