//! Checks of a plan against the machine a run starts on (folders its parameters name, what the
//! device each instance will compute on can do), made by `cfrun run` before anything runs and by
//! no command that only reads the experiment.

use super::{Instance, Plan};
use crate::config::ConfigError;
use crate::ops::Site;

/// [`crate::ops::Op::preflight`] of every instance `computes` says the run will compute (not
/// those it serves from the cache), against where `site_of` says it will compute, each refusal
/// located at its field and said once per stage; `why` says, of an instance the cache held
/// until it was found damaged or removed, why it is computed (the user may think it cached).
pub fn check(
    plan: &Plan,
    computes: &dyn Fn(&Instance) -> bool,
    site_of: &dyn Fn(&Instance) -> Site,
    why: &dyn Fn(&Instance) -> Option<String>,
) -> Result<(), ConfigError> {
    check_these(plan, plan.instances.iter().filter(|i| computes(i)), site_of, why)
}

/// [`check`] of the one instance named `name` (`cfrun exec FILE INSTANCE`), at `site`.
pub fn check_instance(plan: &Plan, name: &str, site: &Site) -> Result<(), ConfigError> {
    check_these(plan, plan.instances.iter().filter(|i| i.name == name), &|_| site.clone(), &|_| None)
}

fn check_these<'a>(
    plan: &'a Plan,
    instances: impl Iterator<Item = &'a Instance>,
    site_of: &dyn Fn(&Instance) -> Site,
    why: &dyn Fn(&Instance) -> Option<String>,
) -> Result<(), ConfigError> {
    let exp = &plan.experiment;
    // Each refusal once per stage, with the first of its instances that was cached until found
    // damaged or gone (a sweep's first instance may never have run).
    let mut refusals: Vec<(&Instance, crate::config::params::ParamError, Option<String>)> = Vec::new();
    let mut said: std::collections::HashMap<(&str, String), usize> = std::collections::HashMap::new();
    for inst in instances {
        let Err(e) = inst.op.preflight(&inst.params, &inst.fed, &site_of(inst)) else { continue };
        let because = why(inst).map(|w| format!("; {} must be computed again: its {w}", inst.name));
        match said.get(&(inst.stage.as_str(), e.message.clone())) {
            Some(&at) => {
                let first = &mut refusals[at].2;
                if first.is_none() {
                    *first = because;
                }
            }
            None => {
                said.insert((inst.stage.as_str(), e.message.clone()), refusals.len());
                refusals.push((inst, e, because));
            }
        }
    }
    let mut errors = Vec::new();
    for (inst, e, because) in refusals {
        let Some(decl) = exp.stages.iter().find(|s| s.name == inst.stage) else { continue };
        let origin = decl.fields.get(&e.path).map_or_else(|| decl.origin.clone(), |f| f.node.origin.clone());
        let because = because.unwrap_or_default();
        let message = format!("stage `{}` (op {}): {}{because}", inst.stage, inst.op.name(), e.message);
        errors.push(exp.error(&origin, message, e.help.clone()));
    }
    ConfigError::collect(errors)
}
