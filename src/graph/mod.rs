//! The experiment as a DAG of stage instances: references resolved, cycles rejected, sweeps
//! expanded, parameters typed. Everything here happens before anything runs.

pub mod expand;
pub mod instance;
pub mod placeholder;
pub mod render;
pub mod resolve;

use std::collections::BTreeMap;

use petgraph::graph::DiGraph;

pub use instance::{InputRef, Instance, InstanceIdx};

use crate::config::{ConfigError, Experiment, ResourceOverrides};

/// A validated, expanded experiment: instances in topological order.
#[derive(Debug)]
pub struct Plan {
    /// The experiment it came from.
    pub experiment: Experiment,
    /// Instances; every instance comes after the instances it reads.
    pub instances: Vec<Instance>,
    /// Stage name to its `[stages.NAME.resources]` overrides (stages without any are absent).
    pub resources: BTreeMap<String, ResourceOverrides>,
}

impl Plan {
    /// Runs every check and expands the sweeps.
    pub fn build(experiment: Experiment) -> Result<Plan, ConfigError> {
        let stages = resolve::resolve(&experiment)?;
        let order = expand::order_stages(&experiment, &stages)?;
        let instances = expand::expand(&experiment, &stages, &order)?;
        let resources = stages
            .iter()
            .filter(|s| s.resources != ResourceOverrides::default())
            .map(|s| (s.decl.name.clone(), s.resources.clone()))
            .collect();
        drop(stages);
        Ok(Plan { experiment, instances, resources })
    }

    /// Instances that read `idx`'s outputs.
    pub fn dependants(&self, idx: InstanceIdx) -> Vec<InstanceIdx> {
        (0..self.instances.len())
            .map(InstanceIdx)
            .filter(|&j| self.instances[j.0].inputs.values().flatten().any(|r| r.instance == idx))
            .collect()
    }

    /// The instance graph (edges from producer to consumer), for renderers and schedulers.
    pub fn graph(&self) -> DiGraph<InstanceIdx, String> {
        let mut g = DiGraph::new();
        let nodes: Vec<_> = (0..self.instances.len()).map(|i| g.add_node(InstanceIdx(i))).collect();
        for (i, inst) in self.instances.iter().enumerate() {
            for (slot, refs) in &inst.inputs {
                for r in refs {
                    g.add_edge(nodes[r.instance.0], nodes[i], format!("{}->{slot}", r.output));
                }
            }
        }
        g
    }

    /// Instances of stage `name`, or the instance named exactly `name`.
    pub fn select(&self, name: &str) -> Vec<InstanceIdx> {
        (0..self.instances.len())
            .map(InstanceIdx)
            .filter(|&i| self.instances[i.0].name == name || self.instances[i.0].stage == name)
            .collect()
    }
}
