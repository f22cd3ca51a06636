//! `cfrun ops OP`'s parameter help held against what the plan does, over every study and
//! fixture: every documented default is the value a stage that leaves the field out is planned
//! with, and every documented range and choice is what the op accepts (a range of a field of a
//! list of tables, such as `claims[].margin`, in the stage's first table).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value as Json};

use crate::config::param_docs::{Bounds, ParamDoc};
use crate::ops;

#[test]
fn every_op_documents_each_of_its_parameters() {
    for op in ops::registry() {
        let docs = op.param_docs();
        let top: Vec<&str> = docs.iter().map(|d| d.name.as_str()).filter(|n| !n.contains('.')).collect();
        assert_eq!(top, op.param_fields(), "{}: the help lists the fields the op parses, in order", op.name());
        for d in &docs {
            assert!(!d.doc.is_empty(), "{}: `{}` has no doc comment", op.name(), d.name);
            assert!(!d.kind.is_empty() && !d.kind.contains("$ref"), "{}: `{}` is typed {}", op.name(), d.name, d.kind);
            assert!(!(d.required && d.default.is_some()), "{}: `{}` is required with a default", op.name(), d.name);
        }
    }
}

/// The tests below (and `facts_tests`) reach an op only through the stages of the studies and
/// fixtures that use it, so an op that no file plans would pass them without being probed.
#[test]
fn every_op_is_planned_by_some_study_or_fixture() {
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for (path, plan) in super::repository_studies::planned() {
        let plan = plan.unwrap_or_else(|e| panic!("{} does not plan: {e}", path.display()));
        used.extend(plan.instances.iter().map(|i| i.op.name()));
    }
    // `planned` leaves out files with a `command` stage (their environment probe runs while they
    // are planned), so `command`'s parameter docs are outside these tests; the CLI tests that set
    // up its programs' environment plan it, and `ops::command`'s unit tests check its timeout's range.
    let unused: Vec<&str> =
        ops::names().into_iter().filter(|name| *name != "command" && !used.contains(name)).collect();
    assert!(
        unused.is_empty(),
        "no file these tests plan (under experiments/ or tests/fixtures/, without a `command` \
         stage) has a stage of {unused:?}, so its documented defaults, ranges, choices and facts go \
         untested: add a tiny fixture that uses it (tests/fixtures/clusterfit_tiny.toml is one to copy)"
    );
}

#[test]
fn documented_defaults_are_what_every_study_is_planned_with() {
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    let mut compared = 0;
    for (path, plan) in super::repository_studies::planned() {
        let plan = plan.expect("every study plans");
        for instance in &plan.instances {
            let stage = plan.experiment.stages.iter().find(|s| s.name == instance.stage).expect("its stage");
            for doc in instance.op.param_docs() {
                let Some(default) = &doc.default else { continue };
                if doc.name.contains('.') || stage.fields.contains_key(&doc.name) {
                    continue;
                }
                // Writing the documented default must plan the same instance. (Comparing values
                // alone would miss the fields a canonical form leaves out at their default, so
                // that keys stay as they were before the field existed.)
                let mut written = instance.params.clone();
                written[&doc.name] = default.clone();
                let planned = instance.op.normalize(&written).expect("the default is valid");
                assert_eq!(
                    planned,
                    instance.params,
                    "{}: `{}` written as its documented default {default} plans another `{}`",
                    path.display(),
                    doc.name,
                    instance.stage
                );
                compared += 1;
                checked.insert(instance.op.name());
            }
        }
    }
    assert!(checked.len() >= 14, "only {} ops had a default to compare: {checked:?}", checked.len());
    assert!(compared >= 200, "only {compared} defaults compared");
}

/// Settings some bounds hold under: another field's value that makes the bound reachable (a
/// gamma is for step decay, a 24-pixel grid takes tiles of 8 at most). Written beside the probed
/// value, on both sides of the bound.
fn companions(op: &str, field: &str) -> Json {
    match (op, field) {
        ("train", "gamma" | "milestones") => json!({"schedule": "step"}),
        ("pretext", "grid") => json!({"tile": 8}),
        ("pretext", "tile") => json!({"grid": 255}),
        ("canvas", "min_objects") => json!({"max_objects": 4}),
        ("canvas", "max_objects") => json!({"min_objects": 1}),
        ("video", "num_verbs") => json!({"label_space": "sports"}),
        ("extract", "clips_per_video") => json!({"clip_frames": 1}),
        ("linear_probe", "tol") => json!({"solver": "lbfgs"}),
        ("weak_tags", "nonvisual") => json!({"nonvisual_rate": 0.0, "drop": 0.0}),
        ("weak_tags", "synonyms") => json!({"extra": 0.0}),
        _ => json!({}),
    }
}

/// The stage's parameters with `field` set to `value` and its companions written, and the path
/// an error about it names; a field of a list of tables (`claims[].margin`) is set in the first
/// table, `None` where the stage has none.
fn with_value(params: &Json, op: &str, field: &str, value: Json) -> Option<(Json, String)> {
    let mut params = params.clone();
    for (name, v) in companions(op, field).as_object().into_iter().flatten() {
        params[name] = v.clone();
    }
    match field.split_once("[].") {
        None => {
            params[field] = value;
            Some((params, field.to_string()))
        }
        Some((list, inner)) => {
            let first = params.get_mut(list)?.as_array_mut()?.first_mut()?;
            first.as_object_mut()?.insert(inner.to_string(), value);
            Some((params, format!("{list}[0].{inner}")))
        }
    }
}

/// A value of `doc`'s type (a list of them, for a list) for the number `x`: a whole number
/// where the field takes one; a list of fixed length gets that many, any other list one.
fn written(doc: &ParamDoc, x: f64) -> Json {
    let number = if doc.kind.contains("integer") { Json::from(x as i64) } else { Json::from(x) };
    let Some(items) = doc.kind.strip_prefix("array of ") else { return number };
    let words: Vec<&str> = items.split_whitespace().collect();
    let fixed = match words.as_slice() {
        [_, "to", ..] => None,
        [n, ..] => n.parse::<usize>().ok(),
        [] => None,
    };
    Json::from(vec![number; fixed.unwrap_or(1)])
}

/// Values just outside `bounds` and the inclusive bounds themselves: (outside, at the bound).
fn probes(bounds: &Bounds, integer: bool) -> (Vec<f64>, Vec<f64>) {
    let step = |m: f64| if integer { 1.0 } else { m.abs().max(1.0) * 1e-3 };
    let mut outside = Vec::new();
    let mut at = Vec::new();
    if let Some(m) = bounds.minimum {
        outside.push(m - step(m));
        at.push(m);
    }
    if let Some(m) = bounds.exclusive_minimum {
        outside.push(m);
    }
    // Past 2^53 a float cannot say one more; such maxima are the type's own.
    if let Some(m) = bounds.maximum.filter(|m| *m < 9e15) {
        outside.push(m + step(m));
        at.push(m);
    }
    if let Some(m) = bounds.exclusive_maximum {
        outside.push(m);
    }
    (outside, at)
}

/// The quoted choices of a closed list (`"cosine" | "constant"`), or none for another type.
fn choices(kind: &str) -> Vec<Json> {
    let parts: Vec<&str> = kind.split(" | ").collect();
    if parts.len() < 2 || !parts.iter().all(|p| p.starts_with('"') && p.ends_with('"')) {
        return Vec::new();
    }
    parts.iter().map(|p| Json::from(p.trim_matches('"'))).collect()
}

#[test]
fn documented_ranges_and_choices_are_what_the_ops_accept() {
    // For every documented bound: a value just outside it is refused at that field in every
    // study's stage; the bound itself, and each documented choice of a closed list, is accepted
    // by some stage of the op (others may refuse it for another field's sake: a warm-up as long
    // as the run, an architecture a precision is not offered for).
    let mut accepted: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    let mut refused = 0;
    for (path, plan) in super::repository_studies::planned() {
        let plan = plan.expect("every study plans");
        for instance in &plan.instances {
            let op = instance.op.name();
            for doc in instance.op.param_docs() {
                // A table's own fields are probed, not the table itself.
                if doc.name.contains('.') && !doc.name.contains("[].") {
                    continue;
                }
                let (outside, at) = probes(&doc.bounds, doc.kind.contains("integer"));
                for x in outside {
                    let value = written(&doc, x);
                    let Some((params, field)) = with_value(&instance.params, op, &doc.name, value.clone()) else {
                        continue;
                    };
                    let planned = instance.op.normalize(&params);
                    let at_field = planned
                        .as_ref()
                        .err()
                        .is_some_and(|e| e.path == field || e.path.starts_with(&format!("{field}[")));
                    assert!(
                        at_field,
                        "{}: `{field}` = {value} is outside the documented {} of `{}` but gives {planned:?}",
                        path.display(),
                        doc.kind,
                        instance.stage
                    );
                    refused += 1;
                }
                // A table's choices come with fields of their own (a `trend` claim's `along`):
                // only top-level choices are tried.
                let listed = if doc.name.contains('.') { Vec::new() } else { choices(&doc.kind) };
                let inside = at.into_iter().map(|x| written(&doc, x)).chain(listed);
                for value in inside {
                    let key = (op.to_string(), doc.name.clone(), value.to_string());
                    let Some((params, _)) = with_value(&instance.params, op, &doc.name, value) else { continue };
                    *accepted.entry(key).or_default() |= instance.op.normalize(&params).is_ok();
                }
            }
        }
    }
    let never: Vec<_> = accepted.iter().filter(|(_, ok)| !**ok).map(|(k, _)| k).collect();
    assert!(never.is_empty(), "documented values no study's stage accepts: {never:#?}");
    assert!(refused >= 500, "only {refused} values outside a documented range tried");
    assert!(accepted.len() >= 100, "only {} documented bounds and choices tried", accepted.len());
}
