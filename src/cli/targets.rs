//! The instances a command line names: for `show`, and for `run`, `status` and `dag` of a part
//! of an experiment.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value as Json;

use super::failure::Failure;
use super::open::load;
use super::Global;
use crate::graph::{InstanceIdx, Plan};

/// `file`'s plan, cut down to `targets` and what they read; the whole plan without targets.
pub(super) fn load_part(file: &Path, g: &Global, targets: &[String]) -> Result<Plan, Failure> {
    let plan = load(file, g)?;
    if targets.is_empty() {
        return Ok(plan);
    }
    let mut roots = Vec::new();
    for (position, asked) in targets.iter().enumerate() {
        roots.extend(select(&plan, file, asked, &format!("target argument #{}", position + 1))?);
    }
    Ok(plan.upstream_of(&roots, targets))
}

/// How a summary says it covers a part: ` (T1 T2 and what they read)`, or nothing for the whole.
pub(super) fn part_note(targets: &[String]) -> String {
    // Thousands of targets (instance names from a script) would make the summary line longer
    // than the run's log.
    const SHOWN: usize = 8;
    let reads = if targets.len() == 1 { "it reads" } else { "they read" };
    match targets.len() {
        0 => String::new(),
        n if n <= SHOWN => format!(" ({} and what {reads})", targets.join(" ")),
        n => {
            let more = n - SHOWN;
            let noun = if more == 1 { "target" } else { "targets" };
            format!(" ({} and {more} more {noun}, and what {reads})", targets[..SHOWN].join(" "))
        }
    }
}

/// For `stage[a=1]` naming a stage but no instance: which of the given axes or values the stage
/// lacks, and the stage's first instances.
fn instances_near(plan: &Plan, asked: &str) -> Option<String> {
    use crate::graph::instance::axis_value_text;
    let (stage, rest) = asked.split_once('[')?;
    let given: Vec<&str> = crate::graph::targets::axis_pairs(rest.strip_suffix(']')?);
    let of_stage: Vec<&crate::graph::Instance> = plan.instances.iter().filter(|i| i.stage == stage).collect();
    if of_stage.is_empty() {
        return None;
    }
    // Each value once, as a target would write it: a string that a list would blur (`a, b`,
    // ` lead`) in quotes.
    let shown_values = |axis: &str| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for v in of_stage.iter().filter_map(|i| i.axes.get(axis)) {
            let text = axis_value_text(v);
            let plain = text.chars().all(|c| c.is_alphanumeric() || "_.+-".contains(c)) && !text.is_empty();
            let text = if plain { text } else { Json::String(text).to_string() };
            if !seen.contains(&text) {
                seen.push(text);
            }
        }
        seen
    };
    let axes: BTreeSet<&str> = of_stage.iter().flat_map(|i| i.axes.keys()).map(String::as_str).collect();
    let has = |axis: &str, text: &str| {
        of_stage.iter().filter_map(|i| i.axes.get(axis)).any(|v| crate::graph::targets::is_written(v, text))
    };
    let lacking = given.iter().find_map(|pair| {
        if pair.is_empty() {
            return Some("a comma too many: an empty `axis=value` pair".to_string());
        }
        let Some((axis, value)) = pair.split_once('=') else {
            return Some(format!("`{pair}` is not `axis=value`"));
        };
        let (axis, value) = (axis.trim(), value.trim());
        if !axes.contains(axis) {
            let list =
                if axes.is_empty() { "none".into() } else { axes.iter().copied().collect::<Vec<_>>().join(", ") };
            return Some(format!("`{stage}` has no axis `{axis}` (its axes: {list})"));
        }
        if has(axis, value) {
            return None;
        }
        // A string value may hold a comma, so `k=4,` asks for the value `4,`; said so when
        // that is the likelier slip.
        let stray = match value.strip_suffix(',') {
            Some(v) if has(axis, v.trim_end()) => " (a comma too many?)",
            _ => "",
        };
        Some(format!("`{stage}` has no {axis}={value}{stray} (its {axis}: {})", shown_values(axis).join(", ")))
    });
    let what = if given.is_empty() {
        format!("`{asked}` names no axis")
    } else {
        lacking.unwrap_or_else(|| format!("no instance of `{stage}` has {} together", given.join(", ")))
    };
    const SHOWN: usize = 12;
    let list: Vec<&str> = of_stage.iter().map(|i| i.name.as_str()).collect();
    let more = if list.len() > SHOWN { format!(" and {} more", list.len() - SHOWN) } else { String::new() };
    let shown: Vec<&str> = list.into_iter().take(SHOWN).collect();
    Some(format!("{what}; instances of `{stage}`: {}{more}", shown.join(", ")))
}

/// The instances `asked` names in `plan` (see [`Plan::select`]); none is a mistake of the
/// command line at `argument`, said with the instances or stages it could have meant.
pub(super) fn select(plan: &Plan, file: &Path, asked: &str, argument: &str) -> Result<Vec<InstanceIdx>, Failure> {
    let selected = plan.select(asked);
    if !selected.is_empty() {
        return Ok(selected);
    }
    if let Some(near) = instances_near(plan, asked) {
        let message = format!("no instance `{asked}` in {}; {near}", file.display());
        return Err(Failure::argument(argument, message));
    }
    let names: Vec<&str> =
        plan.instances.iter().map(|i| i.stage.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let stage = asked.split_once('[').map_or(asked, |(s, _)| s);
    // A misspelling, or the start of exactly one stage's name (`probe` for `probe_noisy`).
    let starting: Vec<&str> = names.iter().copied().filter(|n| n.starts_with(stage)).collect();
    let near = crate::config::suggest::did_you_mean(stage, &names)
        .or(if let [one] = starting.as_slice() { Some(*one) } else { None })
        .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
    let message = format!("no stage or instance `{asked}` in {}{near}; stages: {}", file.display(), names.join(", "));
    Err(Failure::argument(argument, message))
}
