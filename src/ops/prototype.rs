//! `prototype`: the Prototype baseline of ClusterFit (§4.1.1). Instead of k-means, K is the number
//! of classes of D_cf's own labels: each class's prototype is the mean embedding of its members,
//! and every image is relabelled with its nearest prototype. With tag sets (`weak_tags`), the
//! classes are the tags and an image counts towards every tag it carries; with `by = "class"`
//! the tags are first mapped to the data set classes they denote (non-visual tags dropped,
//! a polysemous tag counting for both of its classes).

use serde::{Deserialize, Serialize};

use super::facts::{self, Facts, InputFacts, OutputFacts};
use super::kmeans::{assignment_metrics, TRUTH_INPUT};
use super::{Kind, OpError, OpSpec, OutputSpec, StageCtx, StageKind};
use crate::artifact::{tensors_io, Features, Labels, LabelsMeta, Metrics, Split};
use crate::cluster;
use crate::config::params::{ParamError, Params};

/// Parameters of `prototype`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrototypeParams {
    /// L2-normalise features first (match the `kmeans` stage it is compared with).
    #[serde(default)]
    pub normalize: bool,
    /// `label`: one prototype per label (per tag for tag sets); `class`: tags mapped to the classes
    /// they denote first (labels from `weak_tags`, which writes that map).
    #[serde(default = "default_by")]
    pub by: String,
}

fn default_by() -> String {
    "label".into()
}

const BY: &[&str] = &["label", "class"];

impl Params for PrototypeParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !BY.contains(&self.by.as_str()) {
            return Err(ParamError::unknown_name("by", "grouping", &self.by, BY));
        }
        Ok(())
    }
}

/// What the prototypes are the means of.
struct Groups {
    /// Per training image, the groups it belongs to.
    sets: Vec<Vec<u32>>,
    /// Number of groups (ids are below it).
    count: usize,
    /// A name per group.
    names: Vec<String>,
}

/// The groups of each training image: its label, its tags, or the classes its tags denote.
fn memberships(labels: &Labels, by_class: bool) -> Result<Groups, OpError> {
    let n = labels.train.len();
    let sets: Vec<Vec<u32>> = match &labels.tags {
        Some((train, _)) => train.iter().map(<[u32]>::to_vec).collect(),
        None => labels.train.iter().map(|&l| vec![l]).collect(),
    };
    if !by_class {
        let names = if labels.meta.class_names.len() == labels.meta.num_classes {
            labels.meta.class_names.clone()
        } else {
            (0..labels.meta.num_classes).map(|c| c.to_string()).collect()
        };
        return Ok(Groups { sets, count: labels.meta.num_classes, names });
    }
    let map = &labels.meta.tag_classes;
    if map.len() != labels.meta.num_classes {
        return Err(OpError::Invalid(format!(
            "by = \"class\" needs labels whose ids map to classes (from `weak_tags`); {} has no such map",
            labels.meta.source
        )));
    }
    let classes = map.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mapped = sets
        .iter()
        .map(|s| {
            let mut c: Vec<u32> = s.iter().flat_map(|&t| map[t as usize].iter().copied()).collect();
            c.sort_unstable();
            c.dedup();
            c
        })
        .collect::<Vec<_>>();
    debug_assert_eq!(mapped.len(), n);
    Ok(Groups { sets: mapped, count: classes, names: (0..classes).map(|c| format!("class {c}")).collect() })
}

/// The `prototype` op.
pub struct Prototype;

impl StageKind for Prototype {
    type Params = PrototypeParams;
    const JOB: super::JobShape = super::JobShape::job(2, 8, 0, 4 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "prototype",
        // 2: metrics gain test_purity (shared reporting with `kmeans`).
        // 3: the fused nearest-centroid kernel sums dot products in another order (near ties may flip).
        // 4: with `truth`, `ami` and `test_ami` (adjusted mutual information) too.
        version: 4,
        summary: "nearest-class-mean pseudo-labels: one prototype per label (tag) of D_cf, K = number of labels",
        inputs: &[
            super::FEATURES_INPUT,
            super::labels_input("D_cf's labels or tag sets, whose class means become the prototypes"),
            TRUTH_INPUT,
        ],
        outputs: &[
            OutputSpec {
                name: "labels",
                kind: Kind::Labels,
                doc: "nearest-prototype ids of every split (+ prototypes)",
            },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "number of prototypes, sizes, purity/NMI/AMI" },
        ],
        metrics: &[],
    };

    fn facts(&self, p: &PrototypeParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        if p.by == "class" {
            facts::tags_mapped(inputs, "labels", "by", "by = \"class\"")?;
        }
        facts::same_rows(inputs, "features", "labels", &[0])?;
        facts::same_rows(inputs, "features", "truth", &[0, 1])?;
        facts::plain_labels(inputs, "truth", "score the prototypes' purity against")?;
        // Labels without members get no prototype: the classes are known only once it runs.
        Ok(OutputFacts::from([("labels".to_string(), Facts::rows_of(inputs.get("features")))]))
    }

    fn run(&self, p: PrototypeParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let feats = Features::load_any(&ctx.input("features")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        let (d, n) = (feats.meta.dim, feats.count(Split::Train));
        if labels.train.len() != n {
            return Err(OpError::Invalid(format!(
                "{n} feature rows but {} labels; features and labels must describe the same images",
                labels.train.len()
            )));
        }
        let Groups { sets, count: classes, names } = memberships(&labels, p.by == "class")?;
        let (model, kept) = cluster::class_means(&feats.train, n, d, classes, p.normalize, |i| &sets[i])?;
        if model.k < 2 {
            return Err(OpError::Invalid(format!(
                "only {} label(s) have members; prototypes need at least 2 to label anything",
                model.k
            )));
        }
        let (train, inertia) = cluster::assign(&model, &feats.train, n)?;
        let (test, _) = cluster::assign(&model, &feats.test, feats.count(Split::Test))?;
        tracing::info!("{}: {} prototypes from {classes} labels", ctx.name, model.k);
        let mut metrics = Metrics::default();
        metrics.values.insert("k".into(), model.k as f64);
        metrics.values.insert("inertia".into(), inertia);
        let why = "no image is nearer to their prototype than to another";
        let sizes = assignment_metrics(ctx, (&train, &test), model.k, why, &mut metrics)?;
        let class_names: Vec<String> = kept.iter().map(|&c| names[c as usize].clone()).collect();
        metrics.details = serde_json::json!({"prototypes": class_names, "sizes": sizes});
        let out = ctx.output_dir("labels");
        let meta = LabelsMeta {
            num_classes: model.k,
            class_names,
            source: format!("prototypes of {} on {}", labels.meta.source, feats.meta.source),
            tag_classes: Vec::new(),
        };
        Labels { meta, train, test, tags: None }.save(&out)?;
        tensors_io::save_matrix(&out.join("centroids.safetensors"), "centroids", &model.centroids, model.k, d)?;
        metrics.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::labels::TagSets;

    fn tagged() -> Labels {
        // Tags: 0 = #a (class 0), 1 = #b (class 1), 2 = #a_or_b (both), 3 = #love (none).
        let sets = vec![vec![0], vec![1, 3], vec![2], vec![3]];
        Labels {
            meta: LabelsMeta {
                num_classes: 4,
                class_names: vec!["#a".into(), "#b".into(), "#a_or_b".into(), "#love".into()],
                source: "test".into(),
                tag_classes: vec![vec![0], vec![1], vec![0, 1], vec![]],
            },
            train: vec![0, 1, 2, 3],
            test: vec![],
            tags: Some((TagSets::from_sets(&sets), TagSets::from_sets(&[]))),
        }
    }

    #[test]
    fn tags_map_to_the_classes_they_denote() {
        let g = memberships(&tagged(), true).unwrap();
        assert_eq!(g.count, 2);
        assert_eq!(g.sets, vec![vec![0], vec![1], vec![0, 1], vec![]]);
        let g = memberships(&tagged(), false).unwrap();
        assert_eq!((g.count, g.sets[1].clone(), g.names[3].as_str()), (4, vec![1, 3], "#love"));
    }

    #[test]
    fn class_grouping_needs_a_tag_map() {
        let mut plain = tagged();
        plain.meta.tag_classes.clear();
        plain.tags = None;
        assert!(memberships(&plain, true).is_err());
        assert_eq!(memberships(&plain, false).unwrap().sets, vec![vec![0], vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn class_grouping_of_labels_known_to_be_plain_is_refused_before_anything_runs() {
        let plan = |labels: Facts, by: &str| {
            let mut inputs = InputFacts::default();
            inputs.insert("labels", "upstream", labels);
            Prototype.facts(&PrototypeParams { normalize: false, by: by.into() }, &inputs)
        };
        let (rows, classes) = (Some([100, 40]), Some(12));
        assert_eq!(plan(Facts::labels(rows, classes), "class").unwrap_err().path, "by");
        assert!(plan(Facts::tags(rows, classes), "class").is_ok(), "weak_tags' tag sets map to classes");
        assert!(plan(Facts::default(), "class").is_ok(), "labels of unknown making are left to the run");
        assert!(plan(Facts::labels(rows, classes), "label").is_ok());
    }
}
