//! Second pass over the stage declarations: find each stage's op, split its fields into inputs and
//! parameters, and check every reference (dangling stage, unknown output, wrong kind).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::config::messages::type_error;
use crate::config::resources::{parse_resources, RESOURCES_FIELD};
use crate::config::suggest::{did_you_mean, did_you_mean_help};
use crate::config::{ConfigError, Experiment, NodeValue, Origin, ResourceOverrides, StageDecl};
use crate::ops::{self, Op};

/// A stage with its op found and its references checked.
pub struct ResolvedStage<'e> {
    /// The declaration.
    pub decl: &'e StageDecl,
    /// Its op.
    pub op: &'static dyn Op,
    /// Input slot to the `(stage, output)` pairs it reads, with where each was written.
    pub inputs: BTreeMap<String, Vec<(String, String, Origin)>>,
    /// Everything that is not an input: the raw parameters.
    pub params: serde_json::Map<String, Json>,
    /// `[stages.NAME.resources]`, apart from the params.
    pub resources: ResourceOverrides,
}

/// Resolves every stage; all problems are reported together.
pub fn resolve(exp: &Experiment) -> Result<Vec<ResolvedStage<'_>>, ConfigError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let names = ops::names();
    let in_driver = exp.executor.in_driver.iter().flatten().zip(&exp.executor.in_driver_origins);
    for (op, origin) in in_driver.filter(|(op, _)| !names.contains(&op.as_str())) {
        let help = did_you_mean_help(op, &names, format!("valid: {}", names.join(", ")));
        errors.push(exp.error(origin, format!("unknown op in executor.in_driver `{op}`"), Some(help)));
    }
    for decl in &exp.stages {
        let Some(op) = ops::find(&decl.op) else {
            let names = ops::names();
            let help = did_you_mean_help(&decl.op, &names, format!("valid ops: {}", names.join(", ")));
            errors.push(exp.error(
                &decl.op_origin,
                format!("stage `{}`: unknown op `{}`", decl.name, decl.op),
                Some(help),
            ));
            continue;
        };
        let mut inputs = BTreeMap::new();
        let mut params = serde_json::Map::new();
        let mut resources = ResourceOverrides::default();
        let errors_before = errors.len();
        for (field, entry) in &decl.fields {
            // Resources say where the stage runs, not what it computes: kept out of the params
            // (and so out of the recipe key) before the op ever normalizes them.
            if field == RESOURCES_FIELD {
                resources = parse_resources(&exp.file, &decl.name, entry, &mut errors);
                continue;
            }
            if op.input_table() == Some(field.as_str()) {
                declared_inputs(exp, decl, field, entry, &mut inputs, &mut errors);
                continue;
            }
            let Some(spec) = op.inputs().iter().find(|i| i.name == field) else {
                params.insert(field.clone(), entry.node.to_json());
                continue;
            };
            let refs: Vec<&crate::config::Node> = match (&entry.node.value, spec.gather) {
                (NodeValue::Str(_), _) => vec![&entry.node],
                (NodeValue::Array(items), true) if items.is_empty() && spec.required => {
                    errors.push(exp.error(
                        &entry.node.origin,
                        format!("stage `{}` (op {}): `{field}` lists no input", decl.name, op.name()),
                        Some(format!("name at least one \"STAGE.OUTPUT\", e.g. {field} = [\"probe.metrics\"]")),
                    ));
                    continue;
                }
                (NodeValue::Array(items), true) => items.iter().collect(),
                _ => {
                    let expected = if spec.gather {
                        "a reference \"stage.output\" or a list of them"
                    } else {
                        "a reference \"stage.output\""
                    };
                    errors.push(type_error(&exp.file, &entry.node, &format!("stages.{}.{field}", decl.name), expected));
                    continue;
                }
            };
            let mut list = Vec::new();
            for node in refs {
                match check_reference(exp, decl, field, spec, node) {
                    Ok((stage, output)) => list.push((stage, output, node.origin.clone())),
                    Err(e) => errors.push(e),
                }
            }
            inputs.insert(field.clone(), list);
        }
        // Each misspelt field is named once, at the first missing input it resembles.
        let mut named: Vec<&str> = Vec::new();
        for spec in op.inputs().iter().filter(|s| s.required) {
            if !decl.fields.contains_key(spec.name) {
                let kinds: Vec<String> = spec.kinds.iter().map(|k| k.to_string()).collect();
                let add =
                    format!("add {} = \"STAGE.OUTPUT\" naming an output of kind {}", spec.name, kinds.join(" or "));
                // A misspelt input is a field the op does not know: said at its key, not as a
                // missing input at the stage's header (which would leave the typo unnamed).
                let fields = op.param_fields();
                let misspelt = decl.fields.iter().find(|(field, _)| {
                    !fields.contains(&field.as_str())
                        && !named.contains(&field.as_str())
                        && field.as_str() != RESOURCES_FIELD
                        && op.inputs().iter().all(|i| i.name != field.as_str())
                        && did_you_mean(&field.to_lowercase(), &[spec.name]).is_some()
                });
                named.extend(misspelt.map(|(field, _)| field.as_str()));
                errors.push(match misspelt {
                    Some((field, entry)) => exp.error(
                        &entry.key_origin,
                        format!(
                            "stage `{}` (op {}): unknown field `{field}`, and the input `{}` is missing",
                            decl.name,
                            op.name(),
                            spec.name
                        ),
                        Some(format!("did you mean `{}`? {add}", spec.name)),
                    ),
                    None => exp.error(
                        &decl.origin,
                        format!("stage `{}` (op {}): missing required input `{}`", decl.name, op.name(), spec.name),
                        Some(add),
                    ),
                });
            }
        }
        let slots: Vec<&str> = inputs.keys().map(String::as_str).collect();
        // An input refused above is missing from `slots`: the op's own checks would say so again.
        let checked =
            if errors.len() == errors_before { op.check_inputs(&Json::Object(params.clone()), &slots) } else { Ok(()) };
        if let Err(e) = checked {
            let origin = decl.fields.get(&e.path).map_or(decl.origin.clone(), |en| en.node.origin.clone());
            errors.push(exp.error(&origin, format!("stage `{}` (op {}): {}", decl.name, op.name(), e.message), e.help));
        }
        out.push(ResolvedStage { decl, op, inputs, params, resources });
    }
    ConfigError::collect(errors)?;
    Ok(out)
}

/// The entries of an op's input table (`command`'s `inputs = { NAME = "STAGE.OUTPUT" }`), each
/// an input slot of its own.
fn declared_inputs(
    exp: &Experiment,
    decl: &StageDecl,
    field: &str,
    entry: &crate::config::source::Entry,
    inputs: &mut BTreeMap<String, Vec<(String, String, Origin)>>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(table) = entry.node.as_table() else {
        let expected = "a table of input names to references, e.g. { features = \"feats.features\" }";
        errors.push(type_error(&exp.file, &entry.node, &format!("stages.{}.{field}", decl.name), expected));
        return;
    };
    for (slot, e) in table {
        if slot.is_empty() || !slot.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            errors.push(exp.error(
                &e.key_origin,
                format!("input name `{slot}` in `stages.{}.{field}` is not valid", decl.name),
                Some("use letters, digits, `_` and `-` (it names a folder the command reads)".into()),
            ));
            continue;
        }
        let path = format!("{field}.{slot}");
        match check_reference(exp, decl, &path, &ops::command::ANY_INPUT, &e.node) {
            Ok((stage, output)) => {
                inputs.insert(slot.clone(), vec![(stage, output, e.node.origin.clone())]);
            }
            Err(err) => errors.push(err),
        }
    }
}

/// A stage's fields as the raw JSON its op's output lookups read.
fn raw_fields(decl: &StageDecl) -> Json {
    Json::Object(decl.fields.iter().map(|(k, e)| (k.clone(), e.node.to_json())).collect())
}

fn check_reference(
    exp: &Experiment,
    decl: &StageDecl,
    field: &str,
    spec: &ops::InputSpec,
    node: &crate::config::Node,
) -> Result<(String, String), ConfigError> {
    let field_path = format!("stages.{}.{field}", decl.name);
    let Some(text) = node.as_str() else {
        return Err(type_error(
            &exp.file,
            node,
            &field_path,
            "a reference in quotes, \"STAGE.OUTPUT\" (e.g. \"fashion.labels\")",
        ));
    };
    let Some((stage, output)) = text.split_once('.') else {
        // A stage's bare name (`teacher = "n_pre"`) most likely means its output of the kind
        // the field takes.
        let fits: Vec<String> = exp
            .stage(text)
            .map(|s| outputs_of_kind(s, spec).into_iter().map(|r| format!("\"{r}\"")).collect())
            .unwrap_or_default();
        let help = match fits.as_slice() {
            [] => "write \"STAGE.OUTPUT\", e.g. \"fashion.labels\"".to_string(),
            [one] => format!("write \"STAGE.OUTPUT\": {one}, the output of `{text}` that `{field}` can take"),
            many => {
                format!("write \"STAGE.OUTPUT\": `{text}`'s outputs that `{field}` can take are {}", many.join(", "))
            }
        };
        return Err(exp.error(&node.origin, format!("`{field_path}` = \"{text}\" is not a reference"), Some(help)));
    };
    let Some(target) = exp.stage(stage) else {
        let names: Vec<&str> = exp.stages.iter().map(|s| s.name.as_str()).collect();
        let help = did_you_mean_help(stage, &names, format!("stages in this file: {}", names.join(", ")));
        return Err(exp.error(
            &node.origin,
            format!("`{field_path}` refers to stage `{stage}`, which does not exist"),
            Some(help),
        ));
    };
    // An unknown op upstream is reported at its own stage; nothing more to check here.
    let Some(target_op) = ops::find(&target.op) else { return Ok((stage.into(), output.into())) };
    let Some(out_kind) = target_op.output_kind(&raw_fields(target), output) else {
        let outs = target_op.output_names(&raw_fields(target));
        if outs.iter().any(|o| o == output) {
            // Declared with a kind that is not one (a `command` stage's `outputs`): reported at
            // that stage; here it would read as "no output `metrics`, it produces: metrics".
            return Ok((stage.into(), output.into()));
        }
        return Err(exp.error(
            &node.origin,
            format!("`{field_path}`: stage `{stage}` (op {}) has no output `{output}`", target_op.name()),
            Some(format!("it produces: {}", outs.join(", "))),
        ));
    };
    if !spec.kinds.contains(&out_kind) {
        let kinds: Vec<String> = spec.kinds.iter().map(|k| k.to_string()).collect();
        let candidates: Vec<String> =
            exp.stages.iter().filter(|s| s.name != decl.name).flat_map(|s| outputs_of_kind(s, spec)).take(12).collect();
        let help = if candidates.is_empty() {
            format!("`{field}` takes {}", kinds.join(" or "))
        } else {
            format!("`{field}` takes {}; outputs of that kind here: {}", kinds.join(" or "), candidates.join(", "))
        };
        return Err(exp.error(
            &node.origin,
            format!("`{field_path}`: `{text}` is {out_kind}, but `{field}` expects {}", kinds.join(" or ")),
            Some(help),
        ));
    }
    Ok((stage.to_string(), output.to_string()))
}

/// A stage's outputs that an input of `spec` can take, as references (`n_pre.model`).
pub(super) fn outputs_of_kind(stage: &StageDecl, spec: &ops::InputSpec) -> Vec<String> {
    let Some(op) = ops::find(&stage.op) else { return Vec::new() };
    let raw = raw_fields(stage);
    op.output_names(&raw)
        .into_iter()
        .filter(|o| op.output_kind(&raw, o).is_some_and(|k| spec.kinds.contains(&k)))
        .map(|o| format!("{}.{o}", stage.name))
        .collect()
}
