//! `cfrun dag`: the expanded DAG as indented text, Graphviz dot or Mermaid.

use std::fmt::Write as _;

use serde_json::{json, Value as Json};

use super::Plan;

/// Output format of `cfrun dag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DagFormat {
    /// One line per instance with the instances it reads.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Renders the plan's instance graph.
pub fn render(plan: &Plan, format: DagFormat) -> String {
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for inst in &plan.instances {
                let _ = writeln!(out, "{} ({})", inst.name, inst.op.name());
                for (slot, refs) in &inst.inputs {
                    for r in refs {
                        let _ = writeln!(out, "  {slot} <- {}.{}", plan.instances[r.instance.0].name, r.output);
                    }
                }
            }
        }
        DagFormat::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];", plan.experiment.name);
            for (i, inst) in plan.instances.iter().enumerate() {
                let _ = writeln!(out, "  n{i} [label=\"{}\\n{}\"];", inst.name.replace('"', "'"), inst.op.name());
            }
            for (i, inst) in plan.instances.iter().enumerate() {
                for (slot, refs) in &inst.inputs {
                    for r in refs {
                        let _ = writeln!(out, "  n{} -> n{i} [label=\"{}\"];", r.instance.0, slot);
                    }
                }
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, inst) in plan.instances.iter().enumerate() {
                let _ = writeln!(out, "  n{i}[\"{}<br/>{}\"]", inst.name.replace('"', "'"), inst.op.name());
            }
            for (i, inst) in plan.instances.iter().enumerate() {
                for (slot, refs) in &inst.inputs {
                    for r in refs {
                        let _ = writeln!(out, "  n{} -->|{}| n{i}", r.instance.0, slot);
                    }
                }
            }
        }
    }
    out
}

/// The plan's instance graph for `--json`: each instance with its stage, op, axis values,
/// parameters and, per input slot, the `instance.output` references it reads.
pub fn to_json(plan: &Plan) -> Json {
    let instances: Vec<Json> = plan
        .instances
        .iter()
        .map(|inst| {
            let inputs: serde_json::Map<String, Json> = inst
                .inputs
                .iter()
                .map(|(slot, refs)| {
                    let refs: Vec<String> =
                        refs.iter().map(|r| format!("{}.{}", plan.instances[r.instance.0].name, r.output)).collect();
                    (slot.clone(), json!(refs))
                })
                .collect();
            json!({"instance": inst.name, "stage": inst.stage, "op": inst.op.name(), "axes": inst.axes,
                   "params": crate::cache::readable::readable(&inst.params), "inputs": inputs})
        })
        .collect();
    json!({"experiment": plan.experiment.name, "instances": instances})
}
