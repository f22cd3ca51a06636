//! `label_noise`: the paper's controlled noise (§3.2, footnote 2): exactly round(p% of N) training
//! labels are replaced by a label drawn uniformly from the *other* classes. Test labels are kept.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{facts, InputFacts, Kind, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Labels, LabelsMeta};
use crate::config::params::{ParamError, Params};

/// Parameters of `label_noise`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelNoiseParams {
    /// Percentage of training labels replaced, 0..=100.
    #[schemars(range(min = 0, max = 100))]
    pub percent: f64,
    /// Seed of the draw.
    pub seed: u64,
}

impl Params for LabelNoiseParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !(0.0..=100.0).contains(&self.percent) || !self.percent.is_finite() {
            return Err(ParamError::range("percent", self.percent, "between 0 and 100"));
        }
        Ok(())
    }
}

/// Replaces `round(percent% of n)` labels by a uniformly drawn different class.
pub fn corrupt(labels: &[u32], num_classes: usize, percent: f64, seed: u64) -> Vec<u32> {
    let mut out = labels.to_vec();
    if num_classes < 2 {
        return out;
    }
    let count = ((percent / 100.0) * labels.len() as f64).round() as usize;
    let mut rng = crate::rng::seeded(seed);
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.shuffle(&mut rng);
    for &i in &order[..count.min(labels.len())] {
        let draw = rng.random_range(0..num_classes as u32 - 1);
        out[i] = if draw >= labels[i] { draw + 1 } else { draw };
    }
    out
}

/// The `label_noise` op.
pub struct LabelNoise;

impl StageKind for LabelNoise {
    type Params = LabelNoiseParams;
    const JOB: super::JobShape = super::JobShape::IN_DRIVER;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "label_noise",
        version: 1,
        summary: "replaces exactly round(p% of N) training labels by a uniformly drawn other class",
        inputs: &[super::labels_input("clean labels")],
        outputs: &[OutputSpec { name: "labels", kind: Kind::Labels, doc: "noisy training labels, clean test labels" }],
        metrics: &[],
    };

    fn facts(&self, _p: &LabelNoiseParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        // Only the one id per example would be corrupted; the tag sets would be lost.
        facts::plain_labels(inputs, "labels", "corrupt")?;
        Ok(OutputFacts::from([("labels".to_string(), inputs.get("labels"))]))
    }

    fn run(&self, p: LabelNoiseParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let clean = Labels::load(&ctx.input("labels")?.dir)?;
        let train = corrupt(&clean.train, clean.meta.num_classes, p.percent, p.seed);
        let changed = train.iter().zip(&clean.train).filter(|(a, b)| a != b).count();
        tracing::info!("{}: {changed} of {} training labels replaced", ctx.name, train.len());
        let c = clean.meta.num_classes as f64;
        // Replacements go to another class: from (C - 1) / C on, a label says nothing of its
        // image's class, and beyond it points away from it.
        if c >= 2.0 && p.percent * c >= 100.0 * (c - 1.0) {
            tracing::warn!(
                "{}: at {}% noise over {c} classes the training labels carry no information about the images' \
                 classes (from {:.1}% on, a label is as likely any class as the right one; above it, less likely)",
                ctx.name,
                p.percent,
                100.0 * (c - 1.0) / c
            );
        }
        let meta = LabelsMeta { source: format!("{} with {}% noise", clean.meta.source, p.percent), ..clean.meta };
        Labels { meta, train, test: clean.test, tags: None }.save(&ctx.output_dir("labels")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_exactly_the_requested_count_to_other_classes() {
        let labels: Vec<u32> = (0..1000).map(|i| i % 10).collect();
        for (p, expect) in [(0.0, 0), (25.0, 250), (50.0, 500), (33.3, 333), (100.0, 1000)] {
            let noisy = corrupt(&labels, 10, p, 7);
            let changed = noisy.iter().zip(&labels).filter(|(a, b)| a != b).count();
            assert_eq!(changed, expect, "p = {p}");
            assert!(noisy.iter().all(|&l| l < 10));
        }
        assert_eq!(corrupt(&labels, 10, 50.0, 7), corrupt(&labels, 10, 50.0, 7));
        assert_ne!(corrupt(&labels, 10, 50.0, 7), corrupt(&labels, 10, 50.0, 8));
    }

    #[test]
    fn replacement_is_uniform_over_other_classes() {
        let labels = vec![0u32; 40_000];
        let noisy = corrupt(&labels, 5, 100.0, 1);
        let mut counts = [0usize; 5];
        noisy.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts[0], 0);
        for c in &counts[1..] {
            assert!((9_500..10_500).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn percent_out_of_range_is_rejected() {
        let e = crate::config::params::normalize::<LabelNoiseParams>(&serde_json::json!({"percent": 150, "seed": 0}))
            .unwrap_err();
        assert_eq!(e.path, "percent");
    }
}
