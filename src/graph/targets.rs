//! Part of an experiment: the instances a command line names, and everything they read.
//!
//! `cfrun run FILE probe[k=50]` computes one branch of a sweep without editing the file; the
//! instances kept are the same instances, with the same keys, as in the whole plan, so what the
//! part computes is what the whole run would have served from the cache.

use serde_json::Value as Json;

use super::instance::axis_value_text;
use super::{InstanceIdx, Plan};

impl Plan {
    /// The instances `asked` names: the instance of that exact name, every instance of the stage
    /// of that name, or, for `stage[axis=value,...]` naming some of the stage's axes, every
    /// instance of the stage with those values (`probe[k=50]` holds each replicate and target).
    pub fn select(&self, asked: &str) -> Vec<InstanceIdx> {
        let exact: Vec<InstanceIdx> = (0..self.instances.len())
            .map(InstanceIdx)
            .filter(|&i| self.instances[i.0].name == asked || self.instances[i.0].stage == asked)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let Some((stage, pairs)) = asked.split_once('[').and_then(|(s, rest)| Some((s, rest.strip_suffix(']')?)))
        else {
            return Vec::new();
        };
        let given: Vec<(&str, &str)> = axis_pairs(pairs)
            .into_iter()
            .map(|pair| pair.split_once('=').map(|(a, v)| (a.trim(), v.trim())))
            .collect::<Option<_>>()
            .unwrap_or_default();
        if given.is_empty() {
            return Vec::new();
        }
        (0..self.instances.len())
            .map(InstanceIdx)
            .filter(|&i| {
                let inst = &self.instances[i.0];
                // Each value is compared with the instance's own axis, not with its name cut at
                // commas (a string value may hold one).
                inst.stage == stage
                    && given.iter().all(|(axis, value)| inst.axes.get(*axis).is_some_and(|v| is_written(v, value)))
            })
            .collect()
    }

    /// Of each instance, whether it is one of `roots` or read by one, directly or not.
    pub fn needed_by(&self, roots: &[InstanceIdx]) -> Vec<bool> {
        let mut needed = vec![false; self.instances.len()];
        let mut todo: Vec<usize> = roots.iter().map(|r| r.0).collect();
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut needed[i], true) {
                todo.extend(self.instances[i].inputs.values().flatten().map(|r| r.instance.0));
            }
        }
        needed
    }

    /// This plan cut down to `roots` and every instance they read, directly or not: the order
    /// kept, the inputs renumbered; `targets` says what named the roots (for the run log).
    pub fn upstream_of(self, roots: &[InstanceIdx], targets: &[String]) -> Plan {
        let keep = self.needed_by(roots);
        // Old index to new: the instances before `i` that stay.
        let new_index: Vec<usize> = keep
            .iter()
            .scan(0, |next, &k| {
                let at = *next;
                *next += usize::from(k);
                Some(at)
            })
            .collect();
        let Plan { experiment, instances, resources, .. } = self;
        let instances = instances
            .into_iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(mut inst, _)| {
                for r in inst.inputs.values_mut().flatten() {
                    r.instance = InstanceIdx(new_index[r.instance.0]);
                }
                inst
            })
            .collect();
        Plan { experiment, instances, resources, targets: targets.to_vec() }
    }
}

/// Whether `text` names the axis value `v`: a number by value (`1e-3` is `0.001`, `4.0` is `4`),
/// anything else as the instance's name writes it.
pub fn is_written(v: &Json, text: &str) -> bool {
    match (v.as_f64(), text.parse::<f64>()) {
        (Some(x), Ok(y)) => x == y,
        _ => axis_value_text(v) == text,
    }
}

/// `a=1,s=x,y` as `a=1` and `s=x,y`: a comma starts a new pair only before `name=`, so a string
/// axis value may hold commas. A stray comma before a pair leaves an empty pair, which names
/// nothing; an empty text has no pairs.
pub fn axis_pairs(text: &str) -> Vec<&str> {
    let starts_pair = |rest: &str| {
        let rest = rest.trim_start();
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        name_end > 0 && rest[name_end..].starts_with('=')
    };
    let mut pairs = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(',') {
        if starts_pair(&text[i + 1..]) {
            pairs.push(text[start..i].trim());
            start = i + 1;
        }
    }
    pairs.push(text[start..].trim());
    if pairs == [""] {
        pairs.clear();
    }
    pairs
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Experiment, SourceFile};

    fn tiny() -> Plan {
        let text = include_str!("../../tests/fixtures/clusterfit_tiny.toml");
        let file = SourceFile::from_text(Path::new("clusterfit_tiny.toml"), text.to_string());
        Experiment::parse(file, &[]).and_then(Plan::build).expect("a valid plan")
    }

    fn names(plan: &Plan, idx: &[InstanceIdx]) -> Vec<String> {
        idx.iter().map(|i| plan.instances[i.0].name.clone()).collect()
    }

    /// A comma inside a string value stays in it; one before `name=` starts the next pair.
    #[test]
    fn axis_pairs_split_only_before_a_name() {
        assert_eq!(axis_pairs("k=4,replicate=0"), ["k=4", "replicate=0"]);
        assert_eq!(axis_pairs("s=a,b, t=1"), ["s=a,b", "t=1"]);
        assert_eq!(axis_pairs(""), Vec::<&str>::new());
        assert_eq!(axis_pairs(",k=4"), ["", "k=4"]);
    }

    #[test]
    fn a_stage_an_instance_or_some_axes_select() {
        let plan = tiny();
        assert_eq!(
            names(&plan, &plan.select("clusters")),
            ["clusters[k=4,p=0]", "clusters[k=4,p=50]", "clusters[k=12,p=0]", "clusters[k=12,p=50]"]
        );
        assert_eq!(names(&plan, &plan.select("clusters[k=12,p=50]")), ["clusters[k=12,p=50]"]);
        assert_eq!(names(&plan, &plan.select("clusters[p=50]")), ["clusters[k=4,p=50]", "clusters[k=12,p=50]"]);
        // Numbers by value, however the command line writes them.
        assert_eq!(names(&plan, &plan.select("clusters[p=5e1,k=12.0]")), ["clusters[k=12,p=50]"]);
        assert_eq!(names(&plan, &plan.select(" clusters[ k = 4 ]")), Vec::<String>::new(), "the stage's name exactly");
        for nothing in [
            "clusters[p=25]",
            "clusters[q=0]",
            "clusters[]",
            "clusters[p]",
            "cluster",
            "clusters[p=0",
            "clusters[,k=4]",
        ] {
            assert!(plan.select(nothing).is_empty(), "{nothing}");
        }
    }

    /// What a part keeps is every instance its targets read and nothing else, in the whole
    /// plan's order, each input pointing at the same instance as before.
    #[test]
    fn a_part_keeps_what_its_targets_read() {
        let whole = tiny();
        let roots = whole.select("clusterfit[k=4,p=50]");
        let names_whole: Vec<String> = whole.instances.iter().map(|i| i.name.clone()).collect();
        let inputs_whole: Vec<Vec<String>> = whole
            .instances
            .iter()
            .map(|i| i.inputs.values().flatten().map(|r| names_whole[r.instance.0].clone()).collect())
            .collect();
        let part = whole.upstream_of(&roots, &["clusterfit[k=4,p=50]".to_string()]);
        let kept: Vec<&str> = part.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            kept,
            [
                "shapes",
                "noisy[p=50]",
                "pretrain[p=50]",
                "pre_feats[p=50]",
                "clusters[k=4,p=50]",
                "clusterfit[k=4,p=50]"
            ]
        );
        for (at_part, inst) in part.instances.iter().enumerate() {
            let at = names_whole.iter().position(|n| *n == inst.name).expect("an instance of the whole plan");
            let inputs: Vec<String> =
                inst.inputs.values().flatten().map(|r| part.instances[r.instance.0].name.clone()).collect();
            assert_eq!(inputs, inputs_whole[at], "{}", inst.name);
            assert!(inst.inputs.values().flatten().all(|r| r.instance.0 < at_part), "topological order");
        }
    }
}
