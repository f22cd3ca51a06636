//! Third pass: order the stages (rejecting cycles), work out which sweep axes each stage uses, and
//! expand every stage into its instances with typed, validated parameters.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value as Json;

use super::budget::Budget;
use super::instance::{instance_name, InputRef, Instance, InstanceIdx};
use super::placeholder::{axes_used, substitute};
use super::resolve::ResolvedStage;
use crate::config::experiment::REPLICATE_AXIS;
use crate::config::params::About;
use crate::config::{ConfigError, Experiment, NodeValue, Origin, ParamError};
use crate::ops::{Gathered, InputFacts, OutputFacts};
use crate::rng::derive_seed;

/// Starts every stage's slow plan-time work (environment probes) side by side and waits for it,
/// so that N probes take as long as the slowest, not their sum, when the stages are typed.
pub fn warm_up(stages: &[ResolvedStage<'_>]) {
    let work: Vec<_> = stages.iter().filter_map(|s| s.op.warm_up(&Json::Object(s.params.clone()))).collect();
    if work.len() < 2 {
        return;
    }
    std::thread::scope(|scope| {
        for job in work {
            scope.spawn(job);
        }
    });
}

/// Orders stages so that every stage comes after the stages it reads; a cycle is an error that
/// prints the cycle.
pub fn order_stages(exp: &Experiment, stages: &[ResolvedStage<'_>]) -> Result<Vec<usize>, ConfigError> {
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
    let by_name: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.decl.name.as_str(), i)).collect();
    for (i, s) in stages.iter().enumerate() {
        for (stage, _, _) in s.inputs.values().flatten() {
            if let Some(&j) = by_name.get(stage.as_str()) {
                graph.update_edge(nodes[j], nodes[i], ());
            }
        }
    }
    match toposort(&graph, None) {
        Ok(order) => Ok(order.into_iter().map(|n| graph[n]).collect()),
        Err(_) => {
            let mut errors = Vec::new();
            for scc in tarjan_scc(&graph) {
                let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
                if scc.len() < 2 && !self_loop {
                    continue;
                }
                let members: BTreeSet<usize> = scc.iter().map(|n| graph[*n]).collect();
                let cycle = trace_cycle(stages, &by_name, &members);
                let first = &stages[cycle[0]];
                errors.push(exp.error(
                    &first.decl.origin,
                    format!(
                            "stages form a cycle: {}",
                            cycle
                                .iter()
                                .chain(std::iter::once(&cycle[0]))
                                .map(|&i| stages[i].decl.name.as_str())
                                .collect::<Vec<_>>()
                                .join(" -> ")
                        ),
                    Some("a stage cannot depend on its own output; remove one of these references".into()),
                ));
            }
            ConfigError::collect(errors)?;
            Err(exp.error(&exp.stages[0].origin, "stages form a cycle".into(), None))
        }
    }
}

/// Walks input edges inside one strongly connected component to list the stages of one cycle in
/// data-flow order.
fn trace_cycle(stages: &[ResolvedStage<'_>], by_name: &HashMap<&str, usize>, members: &BTreeSet<usize>) -> Vec<usize> {
    let start = *members.iter().next().expect("non-empty component");
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    let mut cur = start;
    loop {
        // Follow an upstream edge that stays in the component; reading the path backwards gives data flow.
        let next = stages[cur]
            .inputs
            .values()
            .flatten()
            .filter_map(|(s, _, _)| by_name.get(s.as_str()).copied())
            .find(|j| members.contains(j));
        match next {
            Some(j) if seen.contains(&j) => {
                let pos = path.iter().position(|&p| p == j).expect("seen implies on path");
                let mut cycle: Vec<usize> = path[pos..].to_vec();
                cycle.reverse();
                // Start the printed cycle at the stage reported (the first in the file's order).
                if let Some(at) = cycle.iter().position(|&c| c == start) {
                    cycle.rotate_left(at);
                }
                return cycle;
            }
            Some(j) => {
                seen.insert(j);
                path.push(j);
                cur = j;
            }
            None => return path,
        }
    }
}

/// Expands stages (given in topological order) into instances.
pub fn expand(exp: &Experiment, stages: &[ResolvedStage<'_>], order: &[usize]) -> Result<Vec<Instance>, ConfigError> {
    let mut errors = Vec::new();
    let mut stage_axes: HashMap<&str, Vec<String>> = HashMap::new();
    let mut stage_instances: HashMap<&str, Vec<InstanceIdx>> = HashMap::new();
    // A stage's instances by their axis values, so matching inputs is a lookup, not a scan.
    let mut stage_index: HashMap<&str, HashMap<String, Vec<InstanceIdx>>> = HashMap::new();
    let mut budget = Budget::default();
    let mut instances: Vec<Instance> = Vec::new();
    // What is known of each instance's outputs before anything runs, by instance index.
    let mut facts: Vec<OutputFacts> = Vec::new();
    let mut refused = Refused::default();
    // Stages with an instance refused, or fed by one: what gathers them sees an incomplete
    // sweep, and its own checks would only report the first error again in other words.
    let mut incomplete: BTreeSet<&str> = BTreeSet::new();
    // Axes some stage names as `${axis}`; a declared one outside it would vary nothing (unless a
    // stage names an undeclared axis: that error already lists the declared ones, likely a typo).
    let mut used_axes: BTreeSet<String> = BTreeSet::new();
    let mut undeclared_axis = false;

    for &si in order {
        let stage = &stages[si];
        let name = stage.decl.name.as_str();
        if stage.inputs.values().flatten().any(|(upstream, _, _)| incomplete.contains(upstream.as_str())) {
            incomplete.insert(name);
        }
        let mut direct = BTreeSet::new();
        axes_used(&Json::Object(stage.params.clone()), &mut direct);
        used_axes.extend(direct.iter().cloned());
        if let Some((axis, field)) = swept_only_by_labels(exp, stage) {
            errors.push(exp.error(
                &field_origin(stage, &field),
                format!(
                    "`stages.{name}.{field}` uses `${{{axis}}}`, but no other field of `{name}` does: a `{op}` stage \
                     gathers every instance of its inputs whatever its own axes, so its instances would all show \
                     the same results, each named for another value of {axis}",
                    op = stage.op.name()
                ),
                Some(format!(
                    "to show each {axis}, make it one of the stage's dimensions instead and drop `${{{axis}}}` from \
                     `{field}`"
                )),
            ));
        }
        let mut axes: BTreeSet<String> = BTreeSet::new();
        // A placeholder of an undeclared axis stays in the text: its field's type error would
        // follow the error above for every instance.
        let mut names_undeclared = false;
        for axis in &direct {
            if exp.axis(axis).is_some() {
                axes.insert(axis.clone());
            } else {
                let params = Json::Object(stage.params.clone());
                let field = super::placeholder::where_used(&params, axis, "").unwrap_or_default();
                // `replicate` comes from `experiment.replicates`, not from [sweep].
                let valid: Vec<&str> =
                    exp.axes.iter().map(|a| a.name.as_str()).filter(|a| *a != REPLICATE_AXIS).collect();
                undeclared_axis = true;
                names_undeclared = true;
                errors.push(exp.error(
                    &field_origin(stage, &field),
                    format!("`stages.{name}.{field}` uses `${{{axis}}}`, but there is no sweep axis `{axis}`"),
                    Some(if axis == REPLICATE_AXIS {
                        "`replicate` is an axis only where `experiment.replicates` is 2 or more".to_string()
                    } else if valid.is_empty() {
                        "declare it under [sweep], e.g. k = [10, 50]".to_string()
                    } else {
                        format!("axes declared in [sweep]: {}", valid.join(", "))
                    }),
                ));
            }
        }
        if stage.op.replicated(&stage.params) && exp.axis(REPLICATE_AXIS).is_some() {
            axes.insert(REPLICATE_AXIS.to_string());
        }
        if !stage.op.aggregates() {
            for (upstream, _, _) in stage.inputs.values().flatten() {
                if let Some(up) = stage_axes.get(upstream.as_str()) {
                    axes.extend(up.iter().cloned());
                }
            }
        }
        // An aggregating stage that keeps replicates apart gathers per replicate.
        let per_replicate = stage.op.aggregates()
            && !stage.op.gathers_replicates()
            && stage.inputs.values().flatten().any(|(upstream, _, _)| {
                stage_axes.get(upstream.as_str()).is_some_and(|up| up.iter().any(|a| a == REPLICATE_AXIS))
            });
        if per_replicate {
            axes.insert(REPLICATE_AXIS.to_string());
        }
        let axes: Vec<String> = axes.into_iter().collect();
        // Counted before expanding: a generated sweep must not be materialised to be refused.
        if let Err(e) = budget.admit_stage(exp, stage, &axes) {
            errors.push(e);
            return Err(ConfigError::collect(errors).expect_err("one error was just added"));
        }
        let mut mine = Vec::new();
        // Two instances with the same parameters and inputs would compute one result under two
        // names (a sweep listing 1 and 1.0, which are one number to a numeric parameter).
        let mut computes: HashMap<String, String> = HashMap::new();
        // Names taken by this stage's instances, with the axis values that took them.
        let mut named: HashMap<String, String> = HashMap::new();
        // Fed by a stage with refused instances, its instances miss those inputs and may look
        // alike for that alone: the refusal upstream is the error to read, not a duplicate here.
        let fed_incompletely = incomplete.contains(name);
        for assignment in cartesian(exp, &axes) {
            let raw = substitute(&Json::Object(stage.params.clone()), &assignment);
            let raw = inject_seed(stage, raw, exp.seed, assignment.get(REPLICATE_AXIS));
            let params = match stage.op.normalize(&raw) {
                Ok(p) => p,
                Err(e) => {
                    if !names_undeclared {
                        refused.add(&mut errors, exp, stage, &e, &assignment);
                    }
                    incomplete.insert(name);
                    continue;
                }
            };
            let mut inputs = BTreeMap::new();
            for (slot, refs) in &stage.inputs {
                let mut list = Vec::new();
                for (upstream, output, _) in refs {
                    let Some(candidates) = stage_instances.get(upstream.as_str()) else { continue };
                    let same_replicate: Vec<InstanceIdx>;
                    let matching: &[InstanceIdx] = if per_replicate {
                        let mine = assignment.get(REPLICATE_AXIS);
                        same_replicate = candidates
                            .iter()
                            .copied()
                            .filter(|i| instances[i.0].axes.get(REPLICATE_AXIS).is_none_or(|r| Some(r) == mine))
                            .collect();
                        &same_replicate
                    } else if stage.op.aggregates() {
                        candidates
                    } else {
                        // Upstream axes are a subset of this stage's: project and look up.
                        let up_axes = stage_axes.get(upstream.as_str()).map_or(&[][..], |a| a.as_slice());
                        let key = axes_key(up_axes.iter().filter_map(|a| assignment.get_key_value(a)));
                        stage_index.get(upstream.as_str()).and_then(|ix| ix.get(&key)).map_or(&[][..], |v| v)
                    };
                    if let Err(e) = budget.admit_edges(exp, stage, matching.len()) {
                        errors.push(e);
                        return Err(ConfigError::collect(errors).expect_err("one error was just added"));
                    }
                    for &idx in matching {
                        list.push(InputRef { instance: idx, output: output.clone() });
                    }
                }
                inputs.insert(slot.clone(), list);
            }
            if stage.op.aggregates() && !incomplete.contains(name) {
                if let Err(e) = check_gathered(stage, &params, &inputs, &instances) {
                    let e = how_to_gather(exp, stage, e);
                    refused.add(&mut errors, exp, stage, &e, &assignment);
                    continue;
                }
            }
            let (fed, outputs) = match instance_facts(stage, &params, &inputs, &instances, &facts) {
                Ok(f) => f,
                Err(e) => {
                    refused.add(&mut errors, exp, stage, &e, &assignment);
                    incomplete.insert(name);
                    continue;
                }
            };
            let this = instance_name(name, &assignment);
            let wiring: Vec<(&String, Vec<(usize, &String)>)> = inputs
                .iter()
                .map(|(slot, refs)| (slot, refs.iter().map(|r| (r.instance.0, &r.output)).collect()))
                .collect();
            let what = serde_json::to_string(&(&params, wiring)).expect("plain data");
            if let Some(first) = computes.get(&what).filter(|_| !fed_incompletely) {
                errors.push(exp.error(
                    &stage.decl.origin,
                    format!(
                        "instances `{first}` and `{this}` of stage `{name}` have the same parameters and inputs: \
                         they would compute one result under two names"
                    ),
                    Some("list each sweep value once (1 and 1.0 are the same number to a numeric parameter)".into()),
                ));
                incomplete.insert(name);
                continue;
            }
            let values = serde_json::to_string(&assignment).expect("plain data");
            if let Some(first) = named.get(&this) {
                // Values of two axes that read as one name (`a = "x,b=y"` beside `b`): the cache's
                // records and every command that takes an instance name would mix them up.
                errors.push(exp.error(
                    &stage.decl.origin,
                    format!("axis values {first} and {values} of stage `{name}` both name an instance `{this}`"),
                    Some(
                        "an axis value that holds `,` and `=` reads as another axis: choose values without them".into(),
                    ),
                ));
                incomplete.insert(name);
                continue;
            }
            named.insert(this.clone(), values);
            computes.insert(what, this.clone());
            let idx = InstanceIdx(instances.len());
            facts.push(outputs);
            instances.push(Instance {
                name: this,
                stage: name.to_string(),
                op: stage.op,
                axes: assignment,
                params,
                inputs,
                fed,
            });
            mine.push(idx);
        }
        let mut index: HashMap<String, Vec<InstanceIdx>> = HashMap::new();
        for &idx in &mine {
            index.entry(axes_key(instances[idx.0].axes.iter())).or_default().push(idx);
        }
        stage_index.insert(name, index);
        stage_axes.insert(name, axes);
        stage_instances.insert(name, mine);
    }
    let unused = exp.axes.iter().filter(|a| a.name != REPLICATE_AXIS && !used_axes.contains(&a.name));
    let mut swept_by_replaced = BTreeSet::new();
    exp.replaced.iter().for_each(|v| axes_used(v, &mut swept_by_replaced));
    for axis in unused.filter(|_| !undeclared_axis) {
        // A `--set` replaced the field that swept it: a one-off run at a fixed value, not a
        // mistake in the file (a `${axis}` in a comment or in no stage's field excuses nothing).
        if swept_by_replaced.contains(&axis.name) {
            tracing::warn!(axis = %axis.name, "after the --set overrides no stage uses this sweep axis; it varies nothing");
            continue;
        }
        errors.push(exp.error(
            &axis.origin,
            format!("sweep axis `{}` is used by no stage, so it would vary nothing", axis.name),
            Some(format!("write \"${{{}}}\" in the stage fields it should sweep, or remove it", axis.name)),
        ));
    }
    ConfigError::collect(errors)?;
    Ok(instances)
}

/// A declared axis that `stage` writes only in fields that name what it shows (a title, a
/// label, a claim's statement), with the first such field: its instances along that axis would
/// differ only in those names. (An undeclared one has its own error.)
fn swept_only_by_labels(exp: &Experiment, stage: &ResolvedStage<'_>) -> Option<(String, String)> {
    let labelling = stage.op.labelling();
    let (mut naming, mut computing) = (BTreeMap::new(), BTreeSet::new());
    let mut sort = |path: String, value: &Json, labels: bool| {
        let mut here = BTreeSet::new();
        axes_used(value, &mut here);
        if labels {
            for axis in here {
                naming.entry(axis).or_insert_with(|| path.clone());
            }
        } else {
            computing.extend(here);
        }
    };
    for (field, value) in &stage.params {
        // `claims[].statement`: the named fields of each table of the array label; the rest compute.
        let prefix = format!("{field}[].");
        let inner: Vec<&str> = labelling.iter().filter_map(|l| l.strip_prefix(prefix.as_str())).collect();
        match value {
            Json::Array(items) if !inner.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let Json::Object(fields) = item else {
                        sort(format!("{field}[{i}]"), item, false);
                        continue;
                    };
                    for (sub, v) in fields {
                        sort(format!("{field}[{i}].{sub}"), v, inner.contains(&sub.as_str()));
                    }
                }
            }
            _ => sort(field.clone(), value, labelling.contains(&field.as_str())),
        }
    }
    naming.into_iter().find(|(axis, _)| !computing.contains(axis) && exp.axis(axis).is_some())
}

/// The errors of refused instances, each said once per stage: a sweep refused for one reason
/// in every instance prints one error, not one per instance.
#[derive(Default)]
struct Refused {
    said: BTreeSet<(String, String)>,
}

impl Refused {
    fn add(
        &mut self,
        errors: &mut Vec<ConfigError>,
        exp: &Experiment,
        stage: &ResolvedStage<'_>,
        e: &ParamError,
        assignment: &BTreeMap<String, Json>,
    ) {
        if self.said.insert((stage.decl.name.clone(), e.message.clone())) {
            errors.push(param_error(exp, stage, e, assignment));
        }
    }
}

/// A lookup key for a set of axis values (given in name order).
fn axes_key<'a>(values: impl Iterator<Item = (&'a String, &'a Json)>) -> String {
    let mut key = String::new();
    for (name, value) in values {
        key.push_str(name);
        key.push('=');
        key.push_str(&value.to_string());
        key.push('\0');
    }
    key
}

/// Every combination of the given axes' values, as maps from axis name to value.
fn cartesian(exp: &Experiment, axes: &[String]) -> Vec<BTreeMap<String, Json>> {
    let mut out = vec![BTreeMap::new()];
    for name in axes {
        let axis = exp.axis(name).expect("axes were checked against [sweep]");
        out = out
            .into_iter()
            .flat_map(|partial| {
                axis.values.iter().map(move |v| {
                    let mut next = partial.clone();
                    next.insert(name.clone(), v.clone());
                    next
                })
            })
            .collect();
    }
    out
}

/// Stages whose op draws random numbers get the experiment seed unless they set their own. In
/// replicate r > 0 a replicated op's seed becomes a fresh stream derived from that seed and r;
/// replicate 0 keeps it unchanged, so declaring replicates keeps every key that already ran.
fn inject_seed(stage: &ResolvedStage<'_>, raw: Json, seed: u64, replicate: Option<&Json>) -> Json {
    let mut raw = raw;
    if stage.op.param_fields().contains(&"seed") {
        if let Json::Object(map) = &mut raw {
            let entry = map.entry("seed").or_insert(Json::from(seed));
            let r = replicate.and_then(Json::as_u64).unwrap_or(0);
            if let (true, Some(base)) = (stage.op.replicated(&stage.params) && r > 0, entry.as_u64()) {
                *entry = Json::from(replicate_seed(base, r));
            }
        }
    }
    raw
}

/// The seed of replicate `r` (> 0) of a stage whose replicate-0 seed is `base`; kept below 2^63
/// so that it reads back as a TOML integer.
pub fn replicate_seed(base: u64, r: u64) -> u64 {
    derive_seed(base, "replicate", r) & (i64::MAX as u64)
}

/// An error naming a stage of the file that the aggregator does not gather says to add it to
/// `inputs`, as its output of a kind `inputs` takes (`probe2.metrics`): a stage left out of
/// `inputs` is otherwise easily read as one that does not exist.
fn how_to_gather(exp: &Experiment, stage: &ResolvedStage<'_>, e: ParamError) -> ParamError {
    let Some(About::Ungathered(name)) = e.about.as_deref() else { return e };
    let Some(named) = exp.stage(name) else { return e };
    // Its outputs that the gathering input takes (a probe's metrics; none of an `extract`).
    let fits: Vec<String> = stage
        .op
        .inputs()
        .iter()
        .filter(|spec| spec.gather)
        .flat_map(|spec| super::resolve::outputs_of_kind(named, spec))
        .map(|r| format!("\"{r}\""))
        .collect();
    let help = match fits.as_slice() {
        [] => format!("`{name}` is a stage of this file, but it writes nothing this stage can gather"),
        fits => {
            format!("`{name}` is a stage of this file that `inputs` leaves out: add {} to `inputs`", fits.join(" or "))
        }
    };
    ParamError { help: Some(help), ..e }
}

/// Lets an aggregating op check its parameters against what it gathers.
fn check_gathered(
    stage: &ResolvedStage<'_>,
    params: &Json,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    instances: &[Instance],
) -> Result<(), ParamError> {
    let gathered: Vec<Gathered<'_>> = inputs
        .values()
        .flatten()
        .map(|r| {
            let up = &instances[r.instance.0];
            let inputs = up.inputs.iter().filter(|(_, refs)| !refs.is_empty()).map(|(slot, _)| slot.as_str()).collect();
            Gathered {
                stage: &up.stage,
                op: up.op,
                axes: &up.axes,
                inputs,
                unwritten: up.op.unwritten_metrics(&up.fed),
            }
        })
        .collect();
    stage.op.check_gathered(params, &gathered)
}

/// Lets an op check its inputs' facts against each other and its parameters, and say what is
/// known of its outputs; returns the inputs' facts too, kept for the checks against the machine.
fn instance_facts(
    stage: &ResolvedStage<'_>,
    params: &Json,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    instances: &[Instance],
    facts: &[OutputFacts],
) -> Result<(InputFacts, OutputFacts), ParamError> {
    let mut known = InputFacts::default();
    for (slot, refs) in inputs {
        for r in refs {
            let up = r.instance.0;
            known.insert(slot, &instances[up].name, facts[up].get(&r.output).copied().unwrap_or_default());
        }
    }
    let outputs = stage.op.facts(params, &known)?;
    Ok((known, outputs))
}

fn field_origin(stage: &ResolvedStage<'_>, path: &str) -> Origin {
    // Paths look like `schedule.gamma` or `claims[2].a`: table keys, each optionally indexed.
    let mut node: Option<&crate::config::Node> = None;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indices) = match seg.find('[') {
            Some(at) => (&seg[..at], &seg[at..]),
            None => (seg, ""),
        };
        let next = match node {
            None => stage.decl.fields.get(key).map(|e| &e.node),
            Some(n) => n.as_table().and_then(|t| t.get(key)).map(|e| &e.node),
        };
        let Some(mut cur) = next else { break };
        for idx in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
            match (&cur.value, idx.parse::<usize>()) {
                (NodeValue::Array(items), Ok(i)) if i < items.len() => cur = &items[i],
                _ => break,
            }
        }
        node = Some(cur);
    }
    node.map_or_else(|| stage.decl.origin.clone(), |n| n.origin.clone())
}

fn param_error(
    exp: &Experiment,
    stage: &ResolvedStage<'_>,
    e: &ParamError,
    assignment: &BTreeMap<String, Json>,
) -> ConfigError {
    // An unknown field of the stage points at its key; one inside a nested table (a claim's) at
    // what it was given.
    let origin = match stage.decl.fields.get(&e.path) {
        Some(entry) if e.unknown_field => entry.key_origin.clone(),
        _ => field_origin(stage, &e.path),
    };
    let mut message = format!("stage `{}` (op {}): {}", stage.decl.name, stage.op.name(), e.message);
    let used: Vec<String> = stage
        .params
        .get(e.path.split('.').next().unwrap_or_default())
        .map(|v| {
            let mut s = BTreeSet::new();
            axes_used(v, &mut s);
            s.into_iter().filter_map(|a| assignment.get(&a).map(|val| format!("{a} = {val}"))).collect()
        })
        .unwrap_or_default();
    if !used.is_empty() {
        message.push_str(&format!(" (with sweep value {})", used.join(", ")));
    }
    exp.error(&origin, message, e.help.clone())
}
