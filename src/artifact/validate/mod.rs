//! Checks a folder against the on-disk format of its kind (see the table in [`super`] and
//! `docs/FORMATS.md`), for artifacts cfrun did not write itself: the outputs of a `command`
//! stage. Headers are checked before any tensor is loaded, so a wrong dtype or a truncated file
//! is reported as such rather than as a candle error, and memory stays bounded by the file.

mod files;
mod kinds;
#[cfg(test)]
mod tests;

use std::path::Path;

use super::header;
use super::Kind;
use files::{finite_f32_tensors, readable_whole, report_file};

pub use files::MAX_JSON_BYTES;
pub use kinds::MAX_CLASSES;

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

pub(super) fn err(file: &str, why: impl Into<String>) -> FormatError {
    FormatError { file: file.to_string(), why: why.into() }
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
        Kind::Images | Kind::Clips => kinds::images(dir, kind)?,
        Kind::Labels => kinds::labels(dir)?,
        Kind::Features => kinds::features(dir)?,
        Kind::MultiLabels => kinds::multilabels(dir)?,
        Kind::Permutations => kinds::permutations(dir)?,
        Kind::Metrics => kinds::metrics(dir)?,
        Kind::Model => kinds::model(dir)?,
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
