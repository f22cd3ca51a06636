//! `linear_probe`: the paper's evaluation. A softmax classifier on frozen features (standardised
//! with the train split's statistics), fitted on the train split and scored on the test split.

use serde::{Deserialize, Serialize};

use super::{check_sgd, Kind, OpError, OpSpec, OutputSpec, SgdSettings, StageCtx, StageKind};
use crate::artifact::{Features, Labels, Metrics, Split};
use crate::config::params::{ParamError, Params};
use crate::eval::{self, ProbeConfig};

/// Parameters of `linear_probe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeParams {
    /// Passes over the training split.
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// Mini-batch size.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Initial learning rate.
    #[serde(default = "defaults::lr")]
    pub lr: f32,
    /// L2 penalty.
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f32,
    /// SGD momentum.
    #[serde(default = "defaults::momentum")]
    pub momentum: f32,
    /// Seed of the shuffles.
    pub seed: u64,
}

mod defaults {
    pub fn epochs() -> usize {
        crate::eval::ProbeConfig::default().epochs
    }
    pub fn batch_size() -> usize {
        crate::eval::ProbeConfig::default().batch_size
    }
    pub fn lr() -> f32 {
        crate::eval::ProbeConfig::default().lr
    }
    pub fn weight_decay() -> f32 {
        crate::eval::ProbeConfig::default().weight_decay
    }
    pub fn momentum() -> f32 {
        crate::eval::ProbeConfig::default().momentum
    }
}

impl Params for ProbeParams {
    fn validate(&self) -> Result<(), ParamError> {
        check_sgd(&SgdSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: f64::from(self.lr),
            momentum: f64::from(self.momentum),
            weight_decay: f64::from(self.weight_decay),
        })?;
        Ok(())
    }
}

/// The `linear_probe` op.
pub struct LinearProbe;

impl StageKind for LinearProbe {
    type Params = ProbeParams;
    const SPEC: &'static OpSpec = &OpSpec {
        name: "linear_probe",
        // 2: blocked k-means without a normalised copy / probe with a capped batch size.
        version: 2,
        summary: "softmax regression on frozen, standardised features: train split -> test split top-1",
        inputs: &[super::FEATURES_INPUT, super::labels_input("target labels")],
        outputs: &[OutputSpec {
            name: "metrics",
            kind: Kind::Metrics,
            doc: "top1 (test), train_top1, per-class accuracy",
        }],
        metric_names: &["top1", "train_top1", "top5"],
    };

    fn run(&self, p: ProbeParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let feats = Features::load_any(&ctx.input("features")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        for split in Split::ALL {
            if feats.count(split) != labels.split(split).len() {
                return Err(OpError::Invalid(format!(
                    "{} split: {} feature rows but {} labels; features and labels must come from the same data set",
                    split.as_str(),
                    feats.count(split),
                    labels.split(split).len()
                )));
            }
        }
        let cfg = ProbeConfig {
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            weight_decay: p.weight_decay,
            momentum: p.momentum,
            seed: p.seed,
        };
        ctx.progress.begin("epochs", p.epochs as u64);
        let progress = ctx.progress;
        let result = eval::linear_probe_on(
            ctx.device,
            &feats.train,
            &labels.train,
            &feats.test,
            &labels.test,
            feats.meta.dim,
            labels.meta.num_classes,
            &cfg,
            &mut |_, loss| {
                progress.inc(1);
                progress.message(&format!("loss {loss:.4}"));
            },
        )?;
        progress.finish();
        let mut m = Metrics::default();
        m.values.insert("top1".into(), result.test_top1 * 100.0);
        m.values.insert("train_top1".into(), result.train_top1 * 100.0);
        if let Some(t5) = result.test_top5 {
            m.values.insert("top5".into(), t5 * 100.0);
        }
        m.details = serde_json::json!({
            "per_class_test_acc": result.per_class_test_acc,
            "loss_per_epoch": result.loss_per_epoch,
            "features": feats.meta.source,
            "labels": labels.meta.source,
        });
        tracing::info!("{}: top-1 {:.2}%", ctx.name, result.test_top1 * 100.0);
        m.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}
