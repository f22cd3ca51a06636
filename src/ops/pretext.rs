//! `pretext`: self-supervised pre-training (paper §4.2) on images whose labels are discarded.
//!
//! - `task = "rotnet"` (Gidaris et al.): every training image at 0/90/180/270 degrees, a 4-way
//!   classifier, trained by the same loop as `train` (so an epoch is 4N images); flips are off
//!   because a mirrored quarter turn looks like the opposite quarter turn.
//! - `task = "jigsaw"` (Noroozi & Favaro): images upsampled to `grid` pixels, 9 jittered
//!   `tile`-pixel crops shuffled by one of the `permutations` input's P orders, each crop through
//!   the shared trunk, a P-way head over the concatenated features (see [`crate::nn::jigsaw`]).
//!   28 -> 48 pixels gives 16-pixel cells and 13-pixel tiles with up to 3 pixels of jitter.
//!
//! Either way the output is an ordinary model file whose trunk `extract` reads on whole images
//! (for Jigsaw its `fc` is a zeroed placeholder; the head is saved beside it), and a checkpoint
//! is written after every epoch so a killed run resumes with identical weights.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::train::{resume_state, Checkpointer, TrainParams};
use super::{InputSpec, Kind, Op, OpError, OutputSpec, StageCtx};
use crate::artifact::{Images, Metrics, Permutations, Split};
use crate::config::params::{self, ParamError, Params};
use crate::nn::{self, jigsaw, Augment, ImageData, TrainConfig};
use crate::selfsup::rotation::rotation_set;
use crate::selfsup::tiles::{upsample, TileSpec};

/// Parameters of `pretext`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretextParams {
    /// `rotnet` or `jigsaw`.
    pub task: String,
    /// Network preset: `resnet_tiny`, `resnet_small`, `resnet_cpu` or `resnet_gpu`.
    #[serde(default = "defaults::arch")]
    pub arch: String,
    /// Channels of res2..res5, overriding the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widths: Option<[usize; 4]>,
    /// Basic blocks in res2..res5, overriding the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<[usize; 4]>,
    /// Channels of conv1, overriding the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem_width: Option<usize>,
    /// Passes over the (derived) training set.
    pub epochs: usize,
    /// Examples per step (puzzles for Jigsaw, rotated images for RotNet).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Base learning rate.
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// SGD momentum.
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    /// L2 weight decay.
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f64,
    /// Epochs of linear warm-up.
    #[serde(default = "defaults::warmup")]
    pub warmup_epochs: usize,
    /// `cosine` or `constant` decay after warm-up.
    #[serde(default = "defaults::schedule")]
    pub schedule: String,
    /// RotNet: random-crop padding in pixels (0: no crops).
    #[serde(default = "defaults::crop_padding")]
    pub crop_padding: usize,
    /// Jigsaw: side the images are upsampled to (a multiple of 3).
    #[serde(default = "defaults::grid")]
    pub grid: usize,
    /// Jigsaw: side of a tile, at most `grid / 3` (the rest of a cell is jitter).
    #[serde(default = "defaults::tile")]
    pub tile: usize,
    /// Seed of the initial weights, shuffles, permutation draws and jitter.
    pub seed: u64,
}

mod defaults {
    pub fn arch() -> String {
        "resnet_cpu".into()
    }
    pub fn batch_size() -> usize {
        128
    }
    pub fn lr() -> f64 {
        0.1
    }
    pub fn momentum() -> f64 {
        0.9
    }
    pub fn weight_decay() -> f64 {
        5e-4
    }
    pub fn warmup() -> usize {
        1
    }
    pub fn schedule() -> String {
        "cosine".into()
    }
    pub fn crop_padding() -> usize {
        2
    }
    pub fn grid() -> usize {
        48
    }
    pub fn tile() -> usize {
        13
    }
}

const TASKS: &[&str] = &["rotnet", "jigsaw"];

impl PretextParams {
    /// The same network and optimiser as `train` parameters (for their checks and presets).
    fn as_train(&self) -> TrainParams {
        TrainParams {
            arch: self.arch.clone(),
            widths: self.widths,
            blocks: self.blocks,
            stem_width: self.stem_width,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            warmup_epochs: self.warmup_epochs,
            schedule: self.schedule.clone(),
            milestones: Vec::new(),
            gamma: 0.1,
            crop_padding: self.crop_padding,
            hflip: Some(false),
            clip_frames: None,
            temperature: 1.0,
            soft_weight: 0.0,
            min_train_top1: None,
            seed: self.seed,
        }
    }

    fn tiles(&self) -> TileSpec {
        TileSpec { grid: self.grid, tile: self.tile }
    }
}

impl Params for PretextParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !TASKS.contains(&self.task.as_str()) {
            return Err(ParamError::field(
                "task",
                format!("unknown pretext task `{}`", self.task),
                Some(format!("valid: {}", TASKS.join(", "))),
            ));
        }
        if self.schedule == "step" {
            return Err(ParamError::field("schedule", "`step` is not offered for pretext training", None));
        }
        self.as_train().validate()?;
        if self.grid == 0 || !self.grid.is_multiple_of(3) || self.grid > 256 {
            return Err(ParamError::range("grid", self.grid, "a multiple of 3 up to 255"));
        }
        if self.tile < 8 || self.tile > self.grid / 3 {
            return Err(ParamError::range("tile", self.tile, &format!("between 8 and grid / 3 = {}", self.grid / 3)));
        }
        Ok(())
    }
}

/// The `pretext` op.
pub struct Pretext;

impl Op for Pretext {
    fn name(&self) -> &'static str {
        "pretext"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "self-supervised pre-training without labels: RotNet (4 rotations) or Jigsaw (P permutations of 9 tiles)"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[
            InputSpec {
                name: "images",
                kinds: &[Kind::Images],
                required: true,
                gather: false,
                doc: "training images (their labels are never read)",
            },
            InputSpec {
                name: "permutations",
                kinds: &[Kind::Permutations],
                required: false,
                gather: false,
                doc: "Jigsaw's permutation set (required for task = \"jigsaw\", unused by rotnet)",
            },
        ]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[
            OutputSpec {
                name: "model",
                kind: Kind::Model,
                doc: "the trunk as a standard model file (extract reads it)",
            },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "pretext loss and accuracy per epoch" },
        ]
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["pretext_loss", "pretext_top1"]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<PretextParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<PretextParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: PretextParams = ctx.params()?;
        let tp = p.as_train();
        let images = Images::load(&ctx.input("images")?.dir)?;
        let m = &images.meta;
        let n = images.count(Split::Train);
        crate::cache::checkpoint::prepare(&ctx.checkpoint_dir)
            .map_err(OpError::io("creating the checkpoint folder"))?;
        let out = ctx.output_dir("model");
        std::fs::create_dir_all(&out).map_err(OpError::io("creating the model folder"))?;
        let (trained, examples, unit) = if p.task == "rotnet" {
            let (pixels, labels) = rotation_set(&images.train, n, m.channels, m.height, m.width)?;
            let data = ImageData { pixels: &pixels, n: 4 * n, c: m.channels, t: 1, h: m.height, w: m.width };
            let cfg = TrainConfig {
                arch: tp.arch(m.channels, 4)?,
                epochs: p.epochs,
                batch_size: p.batch_size,
                lr: p.lr,
                momentum: p.momentum,
                weight_decay: p.weight_decay,
                warmup_epochs: p.warmup_epochs,
                schedule: tp.schedule(),
                augment: Augment { crop_padding: p.crop_padding, hflip: false, clip_frames: 0 },
                seed: p.seed,
            };
            let resume = resume_state(&ctx.checkpoint_dir, &cfg, ctx.device, None);
            log_resume(ctx, resume.as_ref().map(|s| s.epoch), cfg.epochs);
            let mut obs = Checkpointer { dir: &ctx.checkpoint_dir, progress: ctx.progress, epochs: cfg.epochs };
            let targets = nn::Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 4 };
            let trained = nn::train(&data, &targets, &cfg, ctx.device, resume, &mut obs)?;
            trained.save(&out.join("model.safetensors"))?;
            (trained, 4 * n, "rotated images")
        } else {
            let perms_in = ctx.optional_input("permutations").ok_or_else(|| {
                OpError::Invalid(format!(
                    "{}: task = \"jigsaw\" needs the `permutations` input (a `permutations` stage's output)",
                    ctx.instance.name
                ))
            })?;
            let perms = Permutations::load(&perms_in.dir)?;
            let spec = p.tiles();
            let pixels = upsample(&images.train, n, m.channels, m.height, m.width, spec.grid);
            let data = ImageData { pixels: &pixels, n, c: m.channels, t: 1, h: spec.grid, w: spec.grid };
            let cfg = TrainConfig {
                arch: match tp.arch(m.channels, 1)? {
                    nn::Arch::ResNet(r) => jigsaw::trunk_arch(&r).into(),
                    _ => {
                        return Err(OpError::Invalid(format!("jigsaw needs an image ResNet preset, not `{}`", p.arch)))
                    }
                },
                epochs: p.epochs,
                batch_size: p.batch_size,
                lr: p.lr,
                momentum: p.momentum,
                weight_decay: p.weight_decay,
                warmup_epochs: p.warmup_epochs,
                schedule: tp.schedule(),
                augment: Augment::default(),
                seed: p.seed,
            };
            let resume = resume_state(&ctx.checkpoint_dir, &cfg, ctx.device, Some(jigsaw::HEAD_PREFIX));
            log_resume(ctx, resume.as_ref().map(|s| s.epoch), cfg.epochs);
            let mut obs = Checkpointer { dir: &ctx.checkpoint_dir, progress: ctx.progress, epochs: cfg.epochs };
            let trained = jigsaw::train_jigsaw(&data, &perms.perms, &spec, &cfg, ctx.device, resume, &mut obs)?;
            jigsaw::save(&trained, &out)?;
            (trained, n, "puzzles (x9 tiles)")
        };
        let mut metrics = Metrics::default();
        if let Some(last) = trained.history.last() {
            metrics.values.insert("pretext_loss".into(), last.loss);
            metrics.values.insert("pretext_top1".into(), last.accuracy * 100.0);
            let secs: f64 = trained.history.iter().map(|e| e.seconds).sum();
            tracing::info!(
                "{}: {} pre-training throughput {:.0} {unit}/s",
                ctx.instance.name,
                p.task,
                (examples * trained.history.len()) as f64 / secs.max(1e-9)
            );
        }
        let curve: Vec<Json> = trained
            .history
            .iter()
            .map(|e| serde_json::json!({"epoch": e.epoch + 1, "loss": e.loss, "accuracy": e.accuracy, "lr": e.lr}))
            .collect();
        metrics.details =
            serde_json::json!({ "task": p.task, "curve": curve, "arch": trained.arch, "examples": examples });
        metrics.save(&ctx.output_dir("metrics"))
    }
}

fn log_resume(ctx: &StageCtx<'_>, epoch: Option<usize>, epochs: usize) {
    if let Some(e) = epoch {
        tracing::info!("{}: resuming after epoch {e} of {epochs}", ctx.instance.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: Json) -> Json {
        let mut v = serde_json::json!({"task": "jigsaw", "epochs": 2, "seed": 0});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let e = |extra| params::normalize::<PretextParams>(&raw(extra)).unwrap_err().path;
        assert_eq!(e(serde_json::json!({"task": "colorize"})), "task");
        assert_eq!(e(serde_json::json!({"grid": 50})), "grid");
        assert_eq!(e(serde_json::json!({"tile": 17})), "tile");
        assert_eq!(e(serde_json::json!({"epochs": 0})), "epochs");
        assert!(params::normalize::<PretextParams>(&raw(serde_json::json!({}))).is_ok());
    }
}
