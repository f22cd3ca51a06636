//! `cfrun ops OP`'s parameter help held against what the plan does: every documented default is
//! the value a stage that leaves the field out is planned with, over every study and fixture.

use std::collections::BTreeSet;

use crate::ops;

#[test]
fn every_op_documents_each_of_its_parameters() {
    for op in ops::registry() {
        let docs = op.param_docs();
        let top: Vec<&str> = docs.iter().map(|d| d.name.as_str()).filter(|n| !n.contains('.')).collect();
        assert_eq!(top, op.param_fields(), "{}: the help lists the fields the op parses, in order", op.name());
        for d in &docs {
            assert!(!d.doc.is_empty(), "{}: `{}` has no doc comment", op.name(), d.name);
            assert!(!d.kind.is_empty() && !d.kind.contains("$ref"), "{}: `{}` is typed {}", op.name(), d.name, d.kind);
            assert!(!(d.required && d.default.is_some()), "{}: `{}` is required with a default", op.name(), d.name);
        }
    }
}

#[test]
fn documented_defaults_are_what_every_study_is_planned_with() {
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    let mut compared = 0;
    for (path, plan) in super::repository_studies::planned() {
        let plan = plan.expect("every study plans");
        for instance in &plan.instances {
            let stage = plan.experiment.stages.iter().find(|s| s.name == instance.stage).expect("its stage");
            for doc in instance.op.param_docs() {
                let Some(default) = &doc.default else { continue };
                if doc.name.contains('.') || stage.fields.contains_key(&doc.name) {
                    continue;
                }
                // Writing the documented default must plan the same instance. (Comparing values
                // alone would miss the fields a canonical form leaves out at their default, so
                // that keys stay as they were before the field existed.)
                let mut written = instance.params.clone();
                written[&doc.name] = default.clone();
                let planned = instance.op.normalize(&written).expect("the default is valid");
                assert_eq!(
                    planned,
                    instance.params,
                    "{}: `{}` written as its documented default {default} plans another `{}`",
                    path.display(),
                    doc.name,
                    instance.stage
                );
                compared += 1;
                checked.insert(instance.op.name());
            }
        }
    }
    assert!(checked.len() >= 14, "only {} ops had a default to compare: {checked:?}", checked.len());
    assert!(compared >= 200, "only {compared} defaults compared");
}
