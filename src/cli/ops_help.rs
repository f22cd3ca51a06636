//! `cfrun ops [OP]`: the stage kinds, their inputs and outputs, and (for one op) each parameter's
//! type, default and meaning, as text or JSON.

use serde_json::{json, Value as Json};

use super::failure::Failure;
use crate::config::param_docs::ParamDoc;
use crate::config::suggest::did_you_mean;
use crate::ops::{self, MetricSpec, Op, Written};

/// Width the parameter descriptions are wrapped to.
const TEXT_WIDTH: usize = 100;

/// Prints every op in brief, or `name` with its parameters in full; an unknown name is a usage
/// error naming the valid ones.
pub(super) fn ops(name: Option<&str>, json: bool) -> Result<(), Failure> {
    let chosen: Vec<&dyn Op> = match name {
        None => ops::registry().to_vec(),
        Some(name) => vec![ops::find(name).ok_or_else(|| unknown(name))?],
    };
    if json {
        let described: Vec<Json> = chosen.iter().map(|op| describe(*op)).collect();
        let out = if name.is_some() { described[0].clone() } else { Json::from(described) };
        outln!("{out}");
        return Ok(());
    }
    for op in &chosen {
        print_op(*op, name.is_some());
    }
    if name.is_none() {
        outln!("\n`cfrun ops OP` gives each parameter's type, range, default and meaning.");
    }
    Ok(())
}

fn unknown(name: &str) -> Failure {
    let names: Vec<&str> = ops::registry().iter().map(|op| op.name()).collect();
    let hint = did_you_mean(name, &names).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
    Failure::argument("op argument", format!("unknown op `{name}`{hint}; valid: {}", names.join(", ")))
}

fn print_op(op: &dyn Op, in_full: bool) {
    outln!("{} (v{}): {}", op.name(), op.version(), op.summary());
    for i in op.inputs() {
        let kinds: Vec<String> = i.kinds.iter().map(|k| k.to_string()).collect();
        let req = if i.required { "required" } else { "optional" };
        let many = if i.gather { ", gathers all instances" } else { "" };
        outln!("  input  {:<10} {} ({req}{many}): {}", i.name, kinds.join("|"), i.doc);
    }
    for o in op.outputs() {
        outln!("  output {:<10} {}: {}", o.name, o.kind, o.doc);
    }
    if !op.metrics().is_empty() {
        // A table or claim naming another metric of this op is refused before anything runs, so
        // the names, and which a stage may lack, are part of what a user must know to write one.
        outln!("  metrics (the names tables, plots and claims read): {}", metrics_by_when(op.metrics()));
    }
    if let Some(table) = op.input_table() {
        outln!("  input  {table:<10} any kind: a table NAME = \"STAGE.OUTPUT\", one input per entry");
        outln!("  output {:<10} declared per stage as outputs = {{ NAME = \"KIND\" }}", "(declared)");
    }
    if !in_full {
        outln!("  params {}", op.param_fields().join(", "));
        return;
    }
    let docs = param_docs(op);
    let width = docs.iter().map(|d| d.name.len()).max().unwrap_or(0) + 2;
    outln!("  parameters");
    for d in &docs {
        outln!("    {:<width$}{}", d.name, usage(d));
        for line in wrap(&d.doc, TEXT_WIDTH.saturating_sub(4 + width).max(40)) {
            outln!("    {:<width$}{line}", "");
        }
    }
}

/// `integer >= 0, default 128`: the type and what a stage that leaves the field out gets.
fn usage(d: &ParamDoc) -> String {
    let given = match (&d.default, &d.default_from, d.required) {
        (_, _, true) => "required".to_string(),
        (Some(v), _, false) => format!("default {v}"),
        (None, Some(from), false) => format!("default {from}"),
        (None, None, false) => "optional (unset)".to_string(),
    };
    format!("{}, {given}", d.kind)
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// The op's parameter docs with an `f32` default shown as written (`0.1`), not widened to the
/// `f64` the schema holds (`0.10000000149011612`), as `dag` and `show` show parameters.
fn param_docs(op: &dyn Op) -> Vec<ParamDoc> {
    let mut docs = op.param_docs();
    for d in &mut docs {
        d.default = d.default.as_ref().map(crate::cache::readable::readable);
    }
    docs
}

/// The metrics grouped by when they are written, those always written first:
/// `top1, train_top1; with more than five classes: top5`.
fn metrics_by_when(metrics: &[MetricSpec]) -> String {
    // `None`: always written.
    let mut groups: Vec<(Option<String>, Vec<&str>)> = Vec::new();
    for m in metrics {
        let when = (m.written != Written::Always).then(|| m.when());
        match groups.iter_mut().find(|(w, _)| *w == when) {
            Some((_, names)) => names.push(m.name),
            None => groups.push((when, vec![m.name])),
        }
    }
    groups.sort_by_key(|(when, _)| when.is_some());
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(when, names)| match when {
            None => names.join(", "),
            Some(when) => format!("{when}: {}", names.join(", ")),
        })
        .collect();
    parts.join("; ")
}

/// One op as `--json ops` gives it: what the text shows, parameters in full.
fn describe(op: &dyn Op) -> Json {
    let inputs: Vec<Json> = op
        .inputs()
        .iter()
        .map(|i| {
            let kinds: Vec<String> = i.kinds.iter().map(|k| k.to_string()).collect();
            json!({"name": i.name, "kinds": kinds, "required": i.required, "gathers": i.gather, "doc": i.doc})
        })
        .collect();
    let outputs: Vec<Json> =
        op.outputs().iter().map(|o| json!({"name": o.name, "kind": o.kind.to_string(), "doc": o.doc})).collect();
    let written: serde_json::Map<String, Json> =
        op.metrics().iter().map(|m| (m.name.to_string(), json!(m.when()))).collect();
    json!({"op": op.name(), "version": op.version(), "summary": op.summary(), "inputs": inputs,
           "outputs": outputs, "metrics": op.metric_names(), "metrics_written": written,
           "input_table": op.input_table(), "params": op.param_fields(), "parameters": param_docs(op)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_wrap_at_spaces_within_the_width() {
        let lines = wrap("one two three four five", 9);
        assert_eq!(lines, ["one two", "three", "four five"]);
        assert_eq!(wrap("unbreakable-word x", 5), ["unbreakable-word", "x"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn usage_says_required_default_or_unset() {
        let doc = |required, default| ParamDoc {
            name: "k".into(),
            kind: "integer >= 0".into(),
            required,
            default,
            default_from: None,
            doc: String::new(),
            bounds: Default::default(),
            item_kind: None,
        };
        assert_eq!(usage(&doc(true, None)), "integer >= 0, required");
        assert_eq!(usage(&doc(false, Some(json!(128)))), "integer >= 0, default 128");
        assert_eq!(usage(&doc(false, Some(json!("cosine")))), "integer >= 0, default \"cosine\"");
        assert_eq!(usage(&doc(false, None)), "integer >= 0, optional (unset)");
        let from = ParamDoc { default_from: Some("the experiment's `seed`".into()), ..doc(false, None) };
        assert_eq!(usage(&from), "integer >= 0, default the experiment's `seed`");
    }
}
