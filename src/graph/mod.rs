//! The experiment as a DAG of stage instances: references resolved, cycles rejected, sweeps
//! expanded, parameters typed. Everything here happens before anything runs.

pub mod budget;
pub mod expand;
#[cfg(test)]
mod facts_tests;
#[cfg(test)]
mod front_end_fuzz;
#[cfg(test)]
mod gather_tests;
pub mod instance;
#[cfg(test)]
mod param_docs_tests;
pub mod placeholder;
pub mod preflight;
pub mod render;
#[cfg(test)]
mod repository_studies;
pub mod resolve;
pub mod targets;

use std::collections::BTreeMap;

pub use instance::{instance_name, InputRef, Instance, InstanceIdx};

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
    /// The command line's targets when this plan is part of the experiment
    /// ([`Plan::upstream_of`]); empty for the whole.
    pub targets: Vec<String>,
}

impl Plan {
    /// Runs every check and expands the sweeps.
    pub fn build(experiment: Experiment) -> Result<Plan, ConfigError> {
        let stages = resolve::resolve(&experiment)?;
        expand::warm_up(&stages);
        let order = expand::order_stages(&experiment, &stages)?;
        let instances = expand::expand(&experiment, &stages, &order)?;
        let resources = stages
            .iter()
            .filter(|s| s.resources != ResourceOverrides::default())
            .map(|s| (s.decl.name.clone(), s.resources.clone()))
            .collect();
        drop(stages);
        Ok(Plan { experiment, instances, resources, targets: Vec::new() })
    }
}
