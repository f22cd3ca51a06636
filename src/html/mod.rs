//! `cfrun report`: one self-contained HTML page per experiment, for people. It shows the stage
//! graph with each instance's state, every report output (tables rendered from their markdown,
//! CSV to download, figures inline), the training curve of every network, each instance's
//! provenance on demand and the run history. Everything is inline (CSS, images as `data:` URIs,
//! charts as SVG) and a content security policy forbids any fetch, so the file can be mailed,
//! archived or opened offline. The page holds no script.

mod chart;
mod dag;
mod encode;
pub mod history;
mod markdown;
mod page;

use std::path::{Path, PathBuf};

use crate::cache::store::Check;
use crate::cache::{KeyRecord, Store};
use crate::exec::evaluate;
use crate::graph::Plan;
use crate::ops::Kind;

/// Most cells of one report file's tables the page shows (a CSV's, or all of a markdown file's):
/// a browser lays out a table of a million cells in half a minute, and one of five million not in
/// three (a 10 MB file, within the byte limits).
const TABLE_CELLS_SHOWN: usize = 20_000;

/// What the page shows of one instance.
pub struct InstanceView {
    /// Instance name.
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// Its op.
    pub op: String,
    /// `cached`, `ran` (in the latest run), `failed`, `skipped`, `stale` or `missing`.
    pub state: &'static str,
    /// The published result, when there is one.
    pub record: Option<KeyRecord>,
    /// The error of the latest run, for failed and skipped instances.
    pub error: Option<String>,
    /// Its folder per output (when published), with the output's kind.
    pub outputs: Vec<(String, Kind, PathBuf)>,
    /// Whether it writes a table or figure (a `report` output), published or not.
    pub reports: bool,
}

/// A problem writing the page.
#[derive(Debug, thiserror::Error)]
#[error("writing the report {}: {source}", path.display())]
pub struct HtmlError {
    /// The file or folder.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// Builds the page of `plan` from what `store` holds (nothing is run) and writes it to
/// `dir/<experiment>.html`, returning the path.
pub fn write(plan: &Plan, store: &Store, source: &Path, dir: &Path) -> Result<Written, HtmlError> {
    let (runs, views) = read(plan, store);
    let damaged =
        views.iter().filter(|v| matches!(v.state, "damaged" | "unreadable")).map(|v| v.name.clone()).collect();
    let html = page::page(plan, &views, &runs, source);
    std::fs::create_dir_all(dir).map_err(|e| HtmlError { path: dir.to_path_buf(), source: e })?;
    let path = dir.join(format!("{}.html", plan.experiment.name));
    let fail = |e| HtmlError { path: path.clone(), source: e };
    crate::cache::fsutil::write_atomic(&path, html.as_bytes()).map_err(fail)?;
    // The temporary file it was written as is private; a page is for sharing.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(fail)?;
    Ok(Written { path, damaged })
}

/// A page written.
pub struct Written {
    /// Where.
    pub path: PathBuf,
    /// The instances whose published result failed its check (shown as damaged, not their numbers).
    pub damaged: Vec<String>,
}

/// The run history and what the page shows of each instance.
fn read(plan: &Plan, store: &Store) -> (Vec<history::Run>, Vec<InstanceView>) {
    // Every byte the page shows comes from an object re-hashed first: a damaged one is shown
    // as damaged, not its numbers.
    let states = evaluate::evaluate_with(plan, store, Check::Full);
    let (runs, last) = history::read(&store.root().join("runs.jsonl"), &plan.experiment.name);
    let views: Vec<InstanceView> = plan
        .instances
        .iter()
        .zip(states)
        .map(|(inst, st)| {
            // The last run's outcome speaks for the recipe it had; after an edit it is history.
            let latest = last.get(&inst.name).filter(|l| l.key == st.key);
            let ran_last = latest.is_some_and(|l| l.outcome == "ran");
            let state = match (&st.record, latest.map(|l| l.outcome.as_str())) {
                (Some(_), _) if ran_last => "ran",
                (Some(_), _) => "cached",
                (None, Some("failed")) => "failed",
                (None, Some("skipped")) => "skipped",
                (None, _) => st.label(),
            };
            let error = if st.record.is_none() { latest.and_then(|l| l.error.clone()) } else { None };
            let op = inst.op;
            let reports =
                op.output_names(&inst.params).iter().any(|o| op.output_kind(&inst.params, o) == Some(Kind::Report));
            let outputs = st
                .record
                .as_ref()
                .map(|rec| {
                    op.output_names(&inst.params)
                        .into_iter()
                        .filter_map(|o| {
                            let kind = op.output_kind(&inst.params, &o)?;
                            let dir = store.output_dir(&rec.object, &o);
                            Some((o, kind, dir))
                        })
                        .collect()
                })
                .unwrap_or_default();
            InstanceView {
                name: inst.name.clone(),
                stage: inst.stage.clone(),
                op: op.name().to_string(),
                state,
                record: st.record,
                error,
                outputs,
                reports,
            }
        })
        .collect();
    (runs, views)
}
