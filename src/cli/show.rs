//! `cfrun show` and `cfrun report`: what is cached, as text or as one HTML page.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::open::{is_unusable_path, load, open_store_to_read, require_folder};
use super::status::{last_failures, reasons_beside};
use super::Global;
use crate::cache::store::{Check, Untrusted};
use crate::exec::evaluate;

pub(super) fn show(file: &Path, g: &Global, stage: &str) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store_to_read(g)?;
    let selected = super::targets::select(&plan, file, stage, "instance argument")?;
    let states = evaluate::evaluate(&plan, &store);
    let failed = last_failures(&plan, &store, &states);
    let mut items = Vec::new();
    // Results that exist but are not shown (damaged, or not readable by this process).
    let mut unshown = 0;
    for idx in selected {
        let inst = &plan.instances[idx.0];
        let st = &states[idx.0];
        let mut item = json!({"instance": inst.name, "state": st.label(), "key": st.key,
                              "params": crate::cache::readable::readable(&inst.params)});
        // What is printed is re-hashed first: a damaged result is reported, never shown.
        let verified = st.record.as_ref().map(|rec| (rec, store.trust(rec, Check::Full)));
        match verified {
            Some((rec, Ok(()))) => {
                let mut files = Vec::new();
                let mut metrics = serde_json::Map::new();
                for out in rec.outputs.keys() {
                    files.extend(store.output_files(rec, out));
                    if let Ok(m) = crate::artifact::Metrics::load(&store.output_dir(&rec.object, out)) {
                        metrics.insert(out.clone(), json!(m.values));
                    }
                }
                item["object"] = json!(store.object_dir(&rec.object));
                item["outputs"] = json!(rec.outputs);
                item["files"] = json!(files);
                item["metrics"] = json!(metrics);
                item["provenance"] = rec.provenance.clone();
                if let Some(params) = item["provenance"].get_mut("params") {
                    *params = crate::cache::readable::readable(params);
                }
            }
            Some((_, Err(Untrusted::Unreadable(denied)))) => {
                unshown += 1;
                errln!("warning: {}: cfrun may not read its cached result ({denied}); not shown", inst.name);
                item["state"] = json!("unreadable");
                item["because"] = json!([format!("cfrun may not read its cached result ({denied})")]);
            }
            Some((_, Err(Untrusted::Damaged(why)))) => {
                unshown += 1;
                errln!("warning: {}: cached result is damaged ({why}); not shown, a run rebuilds it", inst.name);
                item["state"] = json!("damaged");
                item["because"] = json!([format!("cached result is damaged ({why})")]);
            }
            None => {
                unshown += usize::from(matches!(st.label(), "damaged" | "unreadable"));
                item["because"] = json!(reasons_beside(st, failed[idx.0].is_some(), false));
                if let Some(error) = &failed[idx.0] {
                    item["state"] = json!("failed");
                    item["error"] = json!(error);
                }
            }
        }
        items.push(item);
    }
    if g.json {
        outln!("{}", json!(items));
    } else {
        let texts: Vec<String> = items.iter().map(super::show_text::render).collect();
        out!("{}", texts.join("\n"));
    }
    Ok(if unshown == 0 { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}

pub(super) fn report(file: &Path, g: &Global, out: &Path) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store_to_read(g)?;
    super::open::warn_if_the_name_is_shared(&store, file, &plan.experiment.name, &[]);
    require_folder("-o", out)?;
    refuse_inside_cache(out, &g.cache)?;
    let written = crate::html::write(&plan, &store, file, out).map_err(|e| {
        if is_unusable_path(&e.source) {
            Failure::argument(
                "-o",
                format!("-o {} cannot be used: {e}; give a folder that can be created and written", out.display()),
            )
        } else {
            Failure::runtime(e)
        }
    })?;
    let path = written.path;
    if !written.damaged.is_empty() {
        tracing::warn!(
            "{} result(s) failed their check and are shown as damaged, not their numbers: {} (`cfrun run` recomputes them)",
            written.damaged.len(),
            written.damaged.join(", ")
        );
    }
    if g.json {
        outln!("{}", json!({"experiment": plan.experiment.name, "report": path}));
    } else {
        // `--json` gives the path as it is; a person reads it made safe to print.
        outln!("{}", crate::human::printable_path(&path));
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses an output folder inside the folders the cache manages (a folder of its own beside
/// them is fine): a page written into a published object changes its files, and the object then
/// reads as damaged.
fn refuse_inside_cache(out: &Path, cache: &Path) -> Result<(), Failure> {
    // The nearest folder of `out` that exists, resolved as the cache is (links, `..`), and the
    // rest of `out` below it.
    let existing = out.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists()).unwrap_or(Path::new("."));
    let rest = out.strip_prefix(existing).unwrap_or(out);
    let (Ok(at), Ok(cache_root)) = (std::fs::canonicalize(existing), std::fs::canonicalize(cache)) else {
        return Ok(());
    };
    let at = at.join(rest);
    let owned = crate::cache::layout::SUBDIRS.iter().chain(&["jobs"]).find(|d| at.starts_with(cache_root.join(d)));
    if let Some(d) = owned {
        return Err(Failure::argument(
            "-o",
            format!(
                "-o {} lies inside the cache's {d}/ ({}); give a folder outside it (the page would change what the \
                 cache holds)",
                out.display(),
                cache.display()
            ),
        ));
    }
    Ok(())
}
