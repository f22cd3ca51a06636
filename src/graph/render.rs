//! `cfrun dag`: the expanded DAG as indented text, Graphviz dot or Mermaid.

use std::fmt::Write as _;

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
