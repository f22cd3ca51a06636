//! `weak_tags`: turns clean class labels into weak "hashtags" (see [`crate::data::hashtags`] for
//! the model): a vocabulary of synonyms, polysemous and non-visual tags, with label noise and
//! missing tags. Both splits are tagged, each from its own stream; every image keeps at least one
//! tag. `train` sees the whole tag set of each image (the target spreads evenly over it).

use serde::{Deserialize, Serialize};

use super::{Facts, InputFacts, Kind, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind};
use crate::artifact::validate::MAX_JSON_BYTES;
use crate::artifact::{labels::TagSets, Labels, LabelsMeta, Metrics};
use crate::config::params::{ParamError, Params};
use crate::data::hashtags::{TagModel, TagStats};
use crate::rng::derive_seed;

/// Parameters of `weak_tags`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeakTagsParams {
    /// Tags naming each class (linguistic ambiguity).
    #[serde(default = "defaults::synonyms")]
    #[schemars(range(min = 1, max = 1_000))]
    pub synonyms: usize,
    /// Tags shared by two classes (polysemy); at most half the classes.
    #[serde(default = "defaults::polysemous")]
    #[schemars(range(max = 100_000))]
    pub polysemous: usize,
    /// Tags naming nothing visual (`#love`); at least 1 when `nonvisual_rate` or `drop` is above 0.
    #[serde(default = "defaults::nonvisual")]
    #[schemars(range(max = 100_000))]
    pub nonvisual: usize,
    /// Probability that the tagged class is a wrong one (label noise).
    #[serde(default = "defaults::noise")]
    #[schemars(range(min = 0, max = 1))]
    pub noise: f64,
    /// Probability that a class with a polysemous tag is tagged with it.
    #[serde(default = "defaults::polysemy")]
    #[schemars(range(min = 0, max = 1))]
    pub polysemy: f64,
    /// Probability of a second synonym of the same class (0 unless `synonyms` >= 2).
    #[serde(default = "defaults::extra")]
    #[schemars(range(min = 0, max = 1))]
    pub extra: f64,
    /// Probability that each visual tag is missing.
    #[serde(default = "defaults::drop")]
    #[schemars(range(min = 0, max = 1))]
    pub drop: f64,
    /// Probability of a non-visual tag.
    #[serde(default = "defaults::nonvisual_rate")]
    #[schemars(range(min = 0, max = 1))]
    pub nonvisual_rate: f64,
    /// Seed of the polysemous pairing and of the draws.
    pub seed: u64,
}

mod defaults {
    pub fn synonyms() -> usize {
        3
    }
    pub fn polysemous() -> usize {
        2
    }
    pub fn nonvisual() -> usize {
        5
    }
    pub fn noise() -> f64 {
        0.1
    }
    pub fn polysemy() -> f64 {
        0.3
    }
    pub fn extra() -> f64 {
        0.2
    }
    pub fn drop() -> f64 {
        0.1
    }
    pub fn nonvisual_rate() -> f64 {
        0.3
    }
}

impl WeakTagsParams {
    fn model(&self) -> TagModel {
        TagModel {
            synonyms: self.synonyms,
            polysemous: self.polysemous,
            nonvisual: self.nonvisual,
            noise: self.noise,
            polysemy: self.polysemy,
            extra: self.extra,
            drop: self.drop,
            nonvisual_rate: self.nonvisual_rate,
        }
    }
}

impl Params for WeakTagsParams {
    fn validate(&self) -> Result<(), ParamError> {
        // The class count is only known at run time; here, everything but the polysemous bound.
        self.model().check(usize::MAX).map_err(|(field, got, valid)| ParamError::range(field, got, &valid))?;
        // Every tag is a named vocabulary entry: bound the vocabulary long before memory is.
        crate::config::limits::at_most("synonyms", self.synonyms, 1_000)?;
        crate::config::limits::at_most("nonvisual", self.nonvisual, 100_000)?;
        crate::config::limits::at_most("polysemous", self.polysemous, 100_000)
    }
}

fn stats_metrics(prefix: &str, s: &TagStats, m: &mut Metrics) {
    let n = s.images.max(1) as f64;
    for (name, v) in [
        ("noisy_rate", s.noisy as f64 / n),
        ("polysemous_rate", s.polysemous as f64 / n),
        ("extra_rate", s.extra as f64 / n),
        ("drop_rate", s.dropped as f64 / s.visual_drawn.max(1) as f64),
        ("nonvisual_rate", s.nonvisual as f64 / n),
        ("refilled_rate", s.refilled as f64 / n),
        ("tags_per_image", s.tags as f64 / n),
    ] {
        m.values.insert(format!("{prefix}{name}"), v);
    }
}

/// The `weak_tags` op.
pub struct WeakTags;

impl StageKind for WeakTags {
    type Params = WeakTagsParams;
    const JOB: super::JobShape = super::JobShape::IN_DRIVER;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "weak_tags",
        version: 1,
        summary: "weak hashtags from clean labels: synonyms, polysemy, non-visual tags, noise, missing tags",
        inputs: &[super::labels_input("clean labels")],
        outputs: &[
            OutputSpec {
                name: "labels",
                kind: Kind::Labels,
                doc: "tag sets per image (ids = tags; its lowest tag id as the single label, which may be a non-visual tag)",
            },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "the rates drawn, tags per image, vocabulary" },
        ],
        metrics: &[],
    };

    fn facts(&self, p: &WeakTagsParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        let (clean, model) = (inputs.get("labels"), p.model());
        if let Some(classes) = clean.classes {
            model.check_for(classes).map_err(|(field, got, valid)| {
                ParamError::field(
                    field,
                    format!("`{field}` is {got}, but must be {valid}: the clean labels have {classes} classes"),
                    None,
                )
            })?;
        }
        // The vocabulary's size depends on the class count only (which classes pair up is drawn).
        let tags = clean.classes.map(|c| model.vocabulary_len(c));
        Ok(OutputFacts::from([("labels".to_string(), Facts::tags(clean.rows, tags).of(clean.examples))]))
    }

    fn run(&self, p: WeakTagsParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let clean = Labels::load(&ctx.input("labels")?.dir)?;
        let classes = clean.meta.num_classes;
        let model = p.model();
        model.check_for(classes).map_err(|(field, _, valid)| {
            OpError::Invalid(format!("`{field}` must be {valid} for {} with {classes} classes", clean.meta.source))
        })?;
        let class_names: Vec<String> = if clean.meta.class_names.len() == classes {
            clean.meta.class_names.clone()
        } else {
            (0..classes).map(|c| format!("class{c}")).collect()
        };
        // The names go into the labels' meta.json, which a reader takes only up to its limit.
        let bytes = model.names_len(&class_names);
        if bytes as u64 > MAX_JSON_BYTES {
            return Err(OpError::Invalid(format!(
                "`synonyms` = {} over the {classes} class names of {} would make {bytes} bytes of tag names, more than the {MAX_JSON_BYTES} a label file's meta.json may hold: lower `synonyms` or shorten the class names",
                p.synonyms, clean.meta.source
            )));
        }
        let vocab = model.vocabulary(&class_names, p.seed);
        let (train, train_stats) = model.tag(&vocab, &clean.train, derive_seed(p.seed, "weak_tags/train", 0));
        let (test, test_stats) = model.tag(&vocab, &clean.test, derive_seed(p.seed, "weak_tags/test", 0));
        tracing::info!(
            "{}: {} tags; {:.2} tags per training image, {:.1}% noisy, {:.1}% of visual tags missing",
            ctx.name,
            vocab.len(),
            train_stats.tags as f64 / train_stats.images.max(1) as f64,
            100.0 * train_stats.noisy as f64 / train_stats.images.max(1) as f64,
            100.0 * train_stats.dropped as f64 / train_stats.visual_drawn.max(1) as f64,
        );
        let first = |sets: &[Vec<u32>]| sets.iter().map(|s| s[0]).collect::<Vec<u32>>();
        let labels = Labels {
            meta: LabelsMeta {
                num_classes: vocab.len(),
                class_names: vocab.names.clone(),
                source: format!("weak tags of {}", clean.meta.source),
                tag_classes: vocab.tag_classes(),
            },
            train: first(&train),
            test: first(&test),
            tags: Some((TagSets::from_sets(&train), TagSets::from_sets(&test))),
        };
        labels.save(&ctx.output_dir("labels"))?;
        let mut metrics = Metrics::default();
        metrics.values.insert("vocabulary".into(), vocab.len() as f64);
        stats_metrics("", &train_stats, &mut metrics);
        stats_metrics("test_", &test_stats, &mut metrics);
        let mut per_tag = vec![0usize; vocab.len()];
        train.iter().flatten().for_each(|&t| per_tag[t as usize] += 1);
        metrics.details = serde_json::json!({
            "tags": vocab.names.iter().zip(&per_tag).map(|(n, c)| serde_json::json!({"tag": n, "images": c})).collect::<Vec<_>>(),
        });
        metrics.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_to_one_name_their_field() {
        let e = crate::config::params::normalize::<WeakTagsParams>(&serde_json::json!({"drop": 2.0, "seed": 0}))
            .unwrap_err();
        assert_eq!(e.path, "drop");
        let e = crate::config::params::normalize::<WeakTagsParams>(&serde_json::json!({"synonyms": 0, "seed": 0}))
            .unwrap_err();
        assert_eq!(e.path, "synonyms");
        assert!(crate::config::params::normalize::<WeakTagsParams>(&serde_json::json!({"seed": 0})).is_ok());
    }
}
