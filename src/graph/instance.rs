//! Stage instances: one per combination of the sweep axes a stage uses.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::ops::{InputFacts, Op};

/// Index of an instance in [`super::Plan::instances`] (topological order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceIdx(pub usize);

/// A reference from an input slot to one output of one upstream instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputRef {
    /// The upstream instance.
    pub instance: InstanceIdx,
    /// Which of its outputs.
    pub output: String,
}

/// One runnable unit: a stage with concrete axis values and fully typed parameters.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Display name, e.g. `kmeans[k=50,p=25]`.
    pub name: String,
    /// The stage it comes from.
    pub stage: String,
    /// Its op.
    pub op: &'static dyn Op,
    /// The axis values this instance was expanded with (only the axes the stage uses).
    pub axes: BTreeMap<String, Json>,
    /// Canonical parameters (defaults filled, placeholders substituted).
    pub params: Json,
    /// Input slot name to the upstream outputs it reads (one, or many for gathering inputs).
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    /// What the plan knows of those outputs (sizes, classes), for checks against the machine.
    pub fed: InputFacts,
}

/// Renders an axis value the way instance names show it (strings without quotes).
pub fn axis_value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `stage[a=1,b=x]`, or just `stage` without axes.
pub fn instance_name(stage: &str, axes: &BTreeMap<String, Json>) -> String {
    if axes.is_empty() {
        return stage.to_string();
    }
    let parts: Vec<String> = axes.iter().map(|(k, v)| format!("{k}={}", axis_value_text(v))).collect();
    format!("{stage}[{}]", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_list_axes_alphabetically() {
        let mut axes = BTreeMap::new();
        axes.insert("p".to_string(), Json::from(25));
        axes.insert("k".to_string(), Json::from(50));
        assert_eq!(instance_name("kmeans", &axes), "kmeans[k=50,p=25]");
        assert_eq!(instance_name("fashion", &BTreeMap::new()), "fashion");
        axes.insert("target".to_string(), Json::from("mnist"));
        assert_eq!(instance_name("probe", &axes), "probe[k=50,p=25,target=mnist]");
    }
}
