//! Which instances an aggregating stage gathers once replicates are on.

use std::path::Path;

use super::Plan;
use crate::config::{Experiment, SourceFile};

const REPLICATED: &str = r#"
[experiment]
name = "gather"
seed = 0
replicates = 3

[sweep]
arch = ["resnet_tiny", "resnet_small"]

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
train_size = 100
test_size = 40

[stages.net]
op = "random_net"
images = "shapes.images"
labels = "shapes.labels"
arch = "${arch}"

[stages.feats]
op = "extract"
model = "net.model"
images = "shapes.images"

[stages.joined]
op = "concat"
inputs = ["feats.features"]

[stages.probe]
op = "linear_probe"
features = "joined.features"
labels = "shapes.labels"

[stages.results]
op = "table"
inputs = ["probe.metrics"]
rows = ["source"]
columns = ["metric"]
metrics = ["top1"]
"#;

fn inputs_of(plan: &Plan, instance: &str) -> Vec<String> {
    let inst = plan.instances.iter().find(|i| i.name == instance).unwrap_or_else(|| panic!("no {instance}"));
    inst.inputs.values().flatten().map(|r| plan.instances[r.instance.0].name.clone()).collect()
}

/// `concat` joins the instances of one replicate (over every other axis): joining all
/// replicates would feed each replicate downstream every replicate's networks. A table still
/// gathers every replicate, which it averages over.
#[test]
fn concat_gathers_per_replicate_and_a_table_over_all() {
    let file = SourceFile::from_text(Path::new("gather.toml"), REPLICATED.to_string());
    let plan = Experiment::parse(file, &[]).and_then(Plan::build).expect("a valid plan");
    let joined: Vec<&str> = plan.instances.iter().filter(|i| i.stage == "joined").map(|i| i.name.as_str()).collect();
    assert_eq!(joined, ["joined[replicate=0]", "joined[replicate=1]", "joined[replicate=2]"]);
    assert_eq!(
        inputs_of(&plan, "joined[replicate=1]"),
        ["feats[arch=resnet_tiny,replicate=1]", "feats[arch=resnet_small,replicate=1]"]
    );
    assert_eq!(inputs_of(&plan, "probe[replicate=2]"), ["joined[replicate=2]", "shapes"]);
    let table = inputs_of(&plan, "results");
    assert_eq!(table, ["probe[replicate=0]", "probe[replicate=1]", "probe[replicate=2]"]);
}
