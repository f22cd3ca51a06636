//! `cfrun show` and `cfrun report`: what is cached, as text or as one HTML page.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::open::{is_unusable_path, load, open_store_to_read, require_folder};
use super::status::{last_failures, reasons_beside};
use super::Global;
use crate::cache::store::{Check, Untrusted};
use crate::exec::evaluate;

/// For `stage[a=1]` naming a stage but no instance (an axis left out, `replicate` most often):
/// that stage's instances with those values, which name every axis, or its first ones.
pub(super) fn instances_near(plan: &crate::graph::Plan, asked: &str) -> Option<String> {
    let (stage, rest) = asked.split_once('[')?;
    let given: Vec<&str> = axis_pairs(rest.strip_suffix(']')?);
    let of_stage: Vec<&crate::graph::Instance> = plan.instances.iter().filter(|i| i.stage == stage).collect();
    if of_stage.is_empty() {
        return None;
    }
    // Each `axis=value` given is compared with the instance's own axes, not with its name cut
    // at commas (a string value may hold one).
    let has = |i: &crate::graph::Instance, pair: &str| {
        pair.split_once('=').is_some_and(|(axis, value)| {
            i.axes.get(axis.trim()).is_some_and(|v| crate::graph::instance::axis_value_text(v) == value.trim())
        })
    };
    let matching: Vec<&str> =
        of_stage.iter().filter(|i| given.iter().all(|g| has(i, g))).map(|i| i.name.as_str()).collect();
    let of_stage: Vec<&str> = of_stage.iter().map(|i| i.name.as_str()).collect();
    let (what, list) = if matching.is_empty() || given.is_empty() {
        (format!("instances of `{stage}`"), of_stage)
    } else {
        (format!("instances of `{stage}` with {}", given.join(", ")), matching)
    };
    const SHOWN: usize = 12;
    let more = if list.len() > SHOWN { format!(" and {} more", list.len() - SHOWN) } else { String::new() };
    let shown: Vec<&str> = list.into_iter().take(SHOWN).collect();
    Some(format!("{what}: {}{more} (an instance names every axis, in alphabetical order)", shown.join(", ")))
}

/// `a=1,s=x,y` as `a=1` and `s=x,y`: a comma starts a new pair only before `name=`, so a string
/// axis value may hold commas.
fn axis_pairs(text: &str) -> Vec<&str> {
    let starts_pair = |rest: &str| {
        let rest = rest.trim_start();
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        name_end > 0 && rest[name_end..].starts_with('=')
    };
    let mut pairs = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(',') {
        if starts_pair(&text[i + 1..]) {
            pairs.push(text[start..i].trim());
            start = i + 1;
        }
    }
    pairs.push(text[start..].trim());
    pairs.retain(|p| !p.is_empty());
    pairs
}

pub(super) fn show(file: &Path, g: &Global, stage: &str) -> Result<ExitCode, Failure> {
    let plan = load(file, g)?;
    let store = open_store_to_read(g)?;
    let selected = plan.select(stage);
    if selected.is_empty() {
        if let Some(near) = instances_near(&plan, stage) {
            return Err(Failure::Other(format!("no instance `{stage}` in {}; {near}", file.display())));
        }
        let names: BTreeSet<&str> = plan.instances.iter().map(|i| i.stage.as_str()).collect();
        return Err(Failure::Other(format!(
            "no stage or instance `{stage}` in {}; stages: {}",
            file.display(),
            names.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
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
    require_folder("-o", out)?;
    refuse_inside_cache(out, &g.cache)?;
    let written = crate::html::write(&plan, &store, file, out).map_err(|e| {
        if is_unusable_path(&e.source) {
            Failure::Other(format!(
                "-o {} cannot be used: {e}; give a folder that can be created and written",
                out.display()
            ))
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
        outln!("{}", path.display());
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
        return Err(Failure::Other(format!(
            "-o {} lies inside the cache's {d}/ ({}); give a folder outside it (the page would change what the \
             cache holds)",
            out.display(),
            cache.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A comma inside a string value stays in it; one before `name=` starts the next pair.
    #[test]
    fn axis_pairs_split_only_before_a_name() {
        assert_eq!(super::axis_pairs("k=4,replicate=0"), ["k=4", "replicate=0"]);
        assert_eq!(super::axis_pairs("s=a,b, t=1"), ["s=a,b", "t=1"]);
        assert_eq!(super::axis_pairs(""), Vec::<&str>::new());
    }
}
