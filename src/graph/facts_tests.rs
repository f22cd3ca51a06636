//! The facts each op states before anything runs ([`crate::ops::facts`]), checked through whole
//! plans: what they refuse several stages downstream of where a size was set, and that no study
//! of the repository is refused by them.

use std::path::Path;

use super::Plan;
use crate::config::{ConfigError, Experiment, SourceFile};

fn plan(text: &str) -> Result<Plan, ConfigError> {
    Experiment::parse(SourceFile::from_text(Path::new("facts.toml"), text.to_string()), &[]).and_then(Plan::build)
}

fn refusal(text: &str) -> String {
    plan(text).expect_err("the plan is refused").to_string()
}

const TWO_SETS: &str = r#"
[experiment]
name = "facts"
seed = 0

[stages.small]
op = "dataset"
name = "synthetic"
classes = 4
train_size = 100
test_size = 40

[stages.large]
op = "dataset"
name = "synthetic"
classes = 4
train_size = 300
test_size = 100
"#;

/// An untrained image network on the small set, for the tests that need a model.
const SMALL_NET: &str = r#"
[stages.net]
op = "random_net"
images = "small.images"
labels = "small.labels"
arch = "resnet_tiny"
"#;

#[test]
fn every_study_and_fixture_in_the_repository_passes_its_facts() {
    let planned = super::repository_studies::planned();
    for (path, built) in &planned {
        assert!(
            built.is_ok(),
            "{}: {}",
            path.display(),
            built.as_ref().err().map(|e| e.to_string()).unwrap_or_default()
        );
    }
    assert!(planned.len() >= 20, "only {} studies and fixtures found", planned.len());
}

#[test]
fn rows_reach_through_noise_and_clustering_to_the_probe() {
    let text = format!(
        r#"{TWO_SETS}
[stages.noisy]
op = "label_noise"
labels = "large.labels"
percent = 20

[stages.clusters]
op = "kmeans"
features = "large.images"
truth = "noisy.labels"
k = 8

[stages.probe]
op = "linear_probe"
features = "small.images"
labels = "clusters.labels"
"#
    );
    let e = refusal(&text);
    assert!(e.contains("stage `probe`"), "{e}");
    assert!(
        e.contains(
            "`labels` (from `clusters`) has 300/100 (train/test) examples but `features` (from `small`) has 100/40"
        ),
        "both sources are named, since either may be at fault: {e}"
    );
    assert!(plan(&text.replace("small.images", "large.images")).is_ok());
}

#[test]
fn joined_features_must_share_their_rows() {
    let text = format!(
        r#"{TWO_SETS}
{SMALL_NET}
[stages.a]
op = "extract"
model = "net.model"
images = "small.images"

[stages.b]
op = "extract"
model = "net.model"
images = "large.images"

[stages.joined]
op = "concat"
inputs = ["a.features", "b.features"]

[stages.clusters]
op = "kmeans"
features = "joined.features"
k = 200
"#
    );
    let e = refusal(&text);
    assert!(e.contains("stage `joined`") && e.contains("joined features must describe the same images"), "{e}");
    assert!(e.contains("`b` has 300/100 rows (train/test) but `a` has 100/40"), "the instances that differ: {e}");
    // Once they match, the joined rows are known downstream: 200 clusters of 100 points are refused.
    let e = refusal(&text.replace("large.images", "small.images"));
    assert!(e.contains("`k` is 200, more than the 100 training rows"), "{e}");
}

#[test]
fn outputs_a_command_writes_are_unknown_and_pass() {
    let text = format!(
        r#"{TWO_SETS}
[stages.own]
op = "command"
argv = ["true"]
inputs = {{ images = "small.images" }}
outputs = {{ features = "features" }}

[stages.clusters]
op = "kmeans"
features = "own.features"
k = 5000
"#
    );
    assert!(plan(&text).is_ok(), "nothing is known of what a command writes");
}

#[test]
fn canvases_carry_their_own_counts_and_the_objects_classes() {
    let text = format!(
        r#"{TWO_SETS}
[stages.canvas]
op = "canvas"
images = "small.images"
labels = "small.labels"
train_size = 50
test_size = 20

{SMALL_NET}
[stages.feats]
op = "extract"
model = "net.model"
images = "canvas.images"

[stages.map]
op = "map_probe"
features = "feats.features"
labels = "canvas.multilabels"
"#
    );
    assert!(plan(&text).is_ok(), "{}", plan(&text).err().map(|e| e.to_string()).unwrap_or_default());
    let e = refusal(&text.replace("images = \"canvas.images\"", "images = \"large.images\""));
    assert!(e.contains("stage `map`") && e.contains("`labels` (from `canvas`) has 50/20 (train/test)"), "{e}");
}

#[test]
fn jigsaw_refuses_a_video_network_before_it_runs() {
    let text = format!(
        r#"{TWO_SETS}
[stages.perms]
op = "permutations"
count = 10

[stages.pre]
op = "pretext"
task = "jigsaw"
images = "small.images"
permutations = "perms.permutations"
arch = "r2plus1d_tiny"
epochs = 2
"#
    );
    let e = refusal(&text);
    assert!(e.contains("stage `pre`") && e.contains("needs an image ResNet preset, not `r2plus1d_tiny`"), "{e}");
}

#[test]
fn an_image_network_reads_clips_only_one_frame_at_a_time() {
    let text = format!(
        r#"{TWO_SETS}
[stages.clips]
op = "video"
source = "synthetic"
train_size = 20
test_size = 10
frames = 4

{SMALL_NET}
[stages.frames]
op = "extract"
model = "net.model"
images = "clips.clips"
clip_frames = 1
clips_per_video = 4
"#
    );
    assert!(plan(&text).is_ok(), "{}", plan(&text).err().map(|e| e.to_string()).unwrap_or_default());
    let e = refusal(&text.replace("clip_frames = 1", "clip_frames = 2"));
    assert!(e.contains("stage `frames`") && e.contains("the model takes images but `images` holds clips"), "{e}");
    let e = refusal(&text.replace("clip_frames = 1", "clip_frames = 5"));
    assert!(e.contains("`clip_frames` is 5, but `images` holds clips of 4 frames"), "{e}");
}

#[test]
fn weak_tags_predict_their_vocabulary_not_the_classes() {
    let text = format!(
        r#"{TWO_SETS}
[stages.tags]
op = "weak_tags"
labels = "small.labels"
synonyms = 2
polysemous = 1
nonvisual = 3

[stages.teacher]
op = "train"
images = "small.images"
labels = "tags.labels"
arch = "resnet_tiny"
epochs = 2

[stages.student]
op = "train"
images = "small.images"
labels = "small.labels"
teacher = "teacher.model"
arch = "resnet_tiny"
epochs = 2
"#
    );
    // 4 classes x 2 synonyms + 1 polysemous + 3 non-visual tags.
    let e = refusal(&text);
    assert!(e.contains("the teacher predicts 12 classes but `labels` has 4"), "{e}");
    assert!(plan(&text.replace("labels = \"small.labels\"\nteacher", "labels = \"tags.labels\"\nteacher")).is_ok());
}

/// Features and labels of as many rows are paired only when they are the same examples: two
/// generated sets of other seeds are refused; two stages loading the same whole real set, whose
/// seed draws nothing, are not.
#[test]
fn rows_of_other_examples_are_not_paired() {
    let probe = |a: &str, b: &str| {
        format!(
            "[experiment]\nname = \"e\"\nseed = 0\n\n[stages.a]\nop = \"dataset\"\n{a}\n\n[stages.b]\n\
             op = \"dataset\"\n{b}\n\n[stages.probe]\nop = \"linear_probe\"\nfeatures = \"a.images\"\n\
             labels = \"b.labels\"\n"
        )
    };
    let synthetic = "name = \"synthetic\"\nclasses = 4\ntrain_size = 64\ntest_size = 16";
    let e = refusal(&probe(synthetic, &format!("{synthetic}\nseed = 1")));
    assert!(e.contains("have as many rows, but of other examples"), "{e}");
    plan(&probe(synthetic, synthetic)).expect("one set, loaded twice");
    plan(&probe("name = \"mnist\"", "name = \"mnist\"\nseed = 7")).expect("the whole set, whatever the seed");
    let e = refusal(&probe("name = \"mnist\"\ntrain_size = 500", "name = \"mnist\"\ntrain_size = 500\nseed = 7"));
    assert!(e.contains("of other examples"), "{e}");
    // Training reads the train split only: another test subset beside the same train subset is
    // the same training data.
    let train = "[experiment]\nname = \"e\"\nseed = 0\n\n[stages.a]\nop = \"dataset\"\nname = \"mnist\"\n\
                 train_size = 500\n\n[stages.b]\nop = \"dataset\"\nname = \"mnist\"\ntrain_size = 500\n\
                 test_size = 100\n\n[stages.net]\nop = \"train\"\nimages = \"a.images\"\nlabels = \"b.labels\"\n\
                 arch = \"resnet_tiny\"\nepochs = 2\nbatch_size = 50\n";
    plan(train).expect("the same train split");
    let e = refusal(&train.replace("test_size = 100", "test_size = 100\nseed = 3"));
    assert!(e.contains("of other examples"), "{e}");
}
