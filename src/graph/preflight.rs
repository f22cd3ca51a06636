//! Checks of a plan against the machine a run starts on (folders its parameters name, what the
//! device each instance will compute on can do), made by `cfrun run` before anything runs and by
//! no command that only reads the experiment.

use std::collections::BTreeSet;

use candle_core::DeviceLocation;

use super::{Instance, Plan};
use crate::config::ConfigError;

/// Every instance's [`crate::ops::Op::preflight`] against the device `device_of` says it will
/// compute on, each refusal located at its field and said once per stage.
pub fn check(plan: &Plan, device_of: &dyn Fn(&Instance) -> DeviceLocation) -> Result<(), ConfigError> {
    let exp = &plan.experiment;
    let mut errors = Vec::new();
    let mut said = BTreeSet::new();
    for inst in &plan.instances {
        let Err(e) = inst.op.preflight(&inst.params, &device_of(inst)) else { continue };
        if !said.insert((inst.stage.as_str(), e.message.clone())) {
            continue;
        }
        let Some(decl) = exp.stages.iter().find(|s| s.name == inst.stage) else { continue };
        let origin = decl.fields.get(&e.path).map_or_else(|| decl.origin.clone(), |f| f.node.origin.clone());
        let message = format!("stage `{}` (op {}): {}", inst.stage, inst.op.name(), e.message);
        errors.push(exp.error(&origin, message, e.help.clone()));
    }
    ConfigError::collect(errors)
}
