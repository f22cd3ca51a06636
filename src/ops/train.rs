//! `train`: a ResNet (images) or an R(2+1)D (clips) trained from scratch on the labels of any
//! stage that produces labels (a data set, `label_noise`, `kmeans` pseudo-labels, `weak_tags`
//! hashtag sets), or distilled from a teacher model (soft targets at temperature T mixed with the
//! labels). A checkpoint is written after every epoch under the
//! recipe key, so a killed run resumes where it stopped and ends with the same weights.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{check_sgd, InputSpec, Kind, Op, OpError, OutputSpec, SgdSettings, StageCtx};
use crate::artifact::{Images, Labels, Metrics, Split};
use crate::cache::checkpoint;
use crate::config::limits;
use crate::config::params::{self, ParamError, Params};
use crate::nn::{self, Arch, Augment, EpochStats, ImageData, Schedule, TrainConfig, TrainObserver, TrainState};

/// Parameters of `train`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Network preset: `resnet_tiny`, `resnet_small`, `resnet_cpu`, `resnet_gpu` (images) or `r2plus1d_tiny`,
    /// `r2plus1d_small`, `r2plus1d_large`, `r2plus1d_gpu` (clips).
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
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step.
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
    /// `cosine`, `step` or `constant` decay after warm-up.
    #[serde(default = "defaults::schedule")]
    pub schedule: String,
    /// For `step`: epochs at which the rate is multiplied by `gamma`.
    #[serde(default)]
    pub milestones: Vec<usize>,
    /// For `step`: the factor.
    #[serde(default = "defaults::gamma")]
    pub gamma: f64,
    /// Random-crop padding in pixels (0: no crops).
    #[serde(default = "defaults::crop_padding")]
    pub crop_padding: usize,
    /// Clips only: train on random temporal crops of this many frames (temporal jittering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_frames: Option<usize>,
    /// Horizontal flips; defaults to whether the data set allows them (not for digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hflip: Option<bool>,
    /// Distillation: temperature of the teacher's soft targets.
    #[serde(default = "defaults::temperature")]
    pub temperature: f32,
    /// Distillation: weight of the soft term (the labels get 1 - this).
    #[serde(default = "defaults::soft_weight")]
    pub soft_weight: f32,
    /// Fails the stage when the last epoch's training top-1 (%, on the labels it was trained on)
    /// is below this: a network that did not fit its labels gives chance-level features, and a
    /// study must not silently build on them. Unset: no check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_train_top1: Option<f64>,
    /// Seed of the initial weights, shuffles and augmentation.
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
    pub fn gamma() -> f64 {
        0.1
    }
    pub fn crop_padding() -> usize {
        2
    }
    pub fn temperature() -> f32 {
        4.0
    }
    pub fn soft_weight() -> f32 {
        0.5
    }
}

const SCHEDULES: &[&str] = &["cosine", "step", "constant"];
/// Most channels of any layer.
const MAX_WIDTH: usize = 8192;
/// Most basic blocks in one stage.
const MAX_BLOCKS: usize = 64;

impl Params for TrainParams {
    fn validate(&self) -> Result<(), ParamError> {
        if !nn::PRESETS.contains(&self.arch.as_str()) {
            return Err(ParamError::field(
                "arch",
                format!("unknown network preset `{}`", self.arch),
                Some(format!("valid: {} (widths, blocks and stem_width refine a preset)", nn::PRESETS.join(", "))),
            ));
        }
        if self.clip_frames == Some(0) {
            return Err(ParamError::range("clip_frames", 0, "at least 1"));
        }
        check_sgd(&SgdSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        })?;
        if self.warmup_epochs >= self.epochs && self.warmup_epochs > 0 {
            return Err(ParamError::range("warmup_epochs", self.warmup_epochs, "fewer than `epochs`"));
        }
        if !SCHEDULES.contains(&self.schedule.as_str()) {
            return Err(ParamError::field(
                "schedule",
                format!("unknown schedule `{}`", self.schedule),
                Some(format!("valid: {}", SCHEDULES.join(", "))),
            ));
        }
        if self.widths.is_some_and(|w| w.contains(&0)) {
            return Err(ParamError::range("widths", "a zero width", "positive channel counts"));
        }
        if self.stem_width == Some(0) {
            return Err(ParamError::range("stem_width", 0, "a positive channel count"));
        }
        if self.blocks.is_some_and(|b| b.contains(&0)) {
            return Err(ParamError::range("blocks", "a zero block count", "at least 1 block per stage"));
        }
        // Sizes that allocate per unit: far past anything trainable, short of an allocation abort.
        for w in self.widths.iter().flatten() {
            limits::at_most("widths", *w, MAX_WIDTH)?;
        }
        if let Some(s) = self.stem_width {
            limits::at_most("stem_width", s, MAX_WIDTH)?;
        }
        for b in self.blocks.iter().flatten() {
            limits::at_most("blocks", *b, MAX_BLOCKS)?;
        }
        if self.clip_frames.is_some_and(|f| f > 64) {
            return Err(ParamError::range("clip_frames", self.clip_frames.unwrap_or(0), "at most 64"));
        }
        if self.schedule == "step" {
            if !(self.gamma > 0.0 && self.gamma <= 1.0) {
                return Err(ParamError::range("gamma", self.gamma, "in (0, 1] (the rate is multiplied by it)"));
            }
            if let Some(m) = self.milestones.iter().find(|m| **m == 0 || **m >= self.epochs) {
                return Err(ParamError::range("milestones", m, &format!("epochs between 1 and {}", self.epochs - 1)));
            }
            if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
                return Err(ParamError::range("milestones", format!("{:?}", self.milestones), "strictly increasing"));
            }
        } else if !self.milestones.is_empty() {
            return Err(ParamError::field(
                "milestones",
                "`milestones` only apply to schedule = \"step\"",
                Some("remove them, or set schedule = \"step\"".to_string()),
            ));
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(ParamError::range("temperature", self.temperature, "positive"));
        }
        if !(0.0..=1.0).contains(&self.soft_weight) {
            return Err(ParamError::range("soft_weight", self.soft_weight, "in [0, 1]"));
        }
        if self.crop_padding > 8 {
            return Err(ParamError::range("crop_padding", self.crop_padding, "at most 8"));
        }
        if let Some(floor) = self.min_train_top1 {
            if !(0.0..=100.0).contains(&floor) {
                return Err(ParamError::range("min_train_top1", floor, "a percentage in [0, 100]"));
            }
        }
        Ok(())
    }
}

impl TrainParams {
    /// The architecture for `channels` input channels and `classes` outputs.
    pub fn arch(&self, channels: usize, classes: usize) -> Result<Arch, OpError> {
        let mut arch = Arch::preset(&self.arch, channels, classes)
            .ok_or_else(|| OpError::Invalid(format!("unknown preset {}", self.arch)))?;
        let (stem, widths, blocks) = arch.sizes_mut();
        if let Some(w) = self.widths {
            *widths = w;
        }
        if let Some(b) = self.blocks {
            *blocks = b;
        }
        if let Some(s) = self.stem_width {
            *stem = s;
        }
        Ok(arch)
    }

    /// The learning-rate decay after warm-up.
    pub(crate) fn schedule(&self) -> Schedule {
        match self.schedule.as_str() {
            "step" => Schedule::Step { milestones: self.milestones.clone(), gamma: self.gamma },
            "constant" => Schedule::Constant,
            _ => Schedule::Cosine,
        }
    }
}

/// Saves a checkpoint after every epoch: each epoch written into a fresh folder, renamed, then
/// sealed with its digest (see [`crate::cache::checkpoint`]), so a kill at any moment leaves a
/// loadable checkpoint or none, and an edited one is never resumed from.
pub(crate) struct Checkpointer<'a> {
    /// The checkpoint folder (tied to the recipe key).
    pub(crate) dir: &'a Path,
    /// Progress reporting.
    pub(crate) progress: &'a crate::exec::progress::Progress,
    /// Total epochs, for messages.
    pub(crate) epochs: usize,
}

impl TrainObserver for Checkpointer<'_> {
    fn on_batch(&mut self, epoch: usize, batch: usize, batches: usize) {
        if batch == 0 {
            self.progress.begin(&format!("epoch {}/{}", epoch + 1, self.epochs), batches as u64);
        }
        self.progress.inc(1);
    }

    fn on_epoch(&mut self, stats: &EpochStats, state: &TrainState) -> Result<(), nn::NnError> {
        self.progress.message(&format!("loss {:.3} acc {:.1}%", stats.loss, stats.accuracy * 100.0));
        let io = |e: std::io::Error| nn::NnError::invalid(format!("checkpoint in {}: {e}", self.dir.display()));
        let scratch = checkpoint::scratch(self.dir).map_err(io)?;
        state.save(&scratch.path().join("state.safetensors"))?;
        checkpoint::commit(self.dir, scratch, &format!("epoch-{:04}", stats.epoch + 1)).map_err(io)?;
        tracing::info!(
            "epoch {}/{}: loss {:.4}, train acc {:.2}%, {:.0} img/s (checkpoint saved)",
            stats.epoch + 1,
            self.epochs,
            stats.loss,
            stats.accuracy * 100.0,
            stats.images_per_sec
        );
        Ok(())
    }
}

/// The last sealed checkpoint in `dir`, if any and if it belongs to this configuration; a
/// network with a pretext head names its vars' prefix (see [`TrainState::load_with_head`]).
/// A checkpoint that fails its seal is reported and ignored: the stage trains from the start.
pub(crate) fn resume_state(
    dir: &Path,
    cfg: &TrainConfig,
    device: &candle_core::Device,
    head_prefix: Option<&str>,
) -> Option<TrainState> {
    let folder = match checkpoint::latest(dir) {
        Ok(found) => found?,
        Err(why) => {
            tracing::warn!("not resuming from the checkpoint in {}: {why}; training from the start", dir.display());
            return None;
        }
    };
    let state = TrainState::load_with_head(&folder.join("state.safetensors"), device, head_prefix).ok()?;
    state.check_resumable(cfg).ok()?;
    Some(state)
}

/// The images or clips a network is built for (input normalisation, channels, frames); shared by
/// `train` and `random_net`.
pub(super) const TRAINING_IMAGES: InputSpec = InputSpec {
    name: "images",
    kinds: &[Kind::Images, Kind::Clips],
    required: true,
    gather: false,
    doc: "training images or clips",
};

/// The `train` op.
pub struct Train;

impl Op for Train {
    fn name(&self) -> &'static str {
        "train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn summary(&self) -> &'static str {
        "trains a ResNet (images) or R(2+1)D (clips) from scratch on labels, or distils; resumable per epoch"
    }
    fn inputs(&self) -> &'static [InputSpec] {
        &[
            TRAINING_IMAGES,
            InputSpec {
                name: "labels",
                kinds: &[Kind::Labels],
                required: true,
                gather: false,
                doc:
                    "targets: data set labels, noisy labels, cluster ids or tag sets (even spread over an image's tags)",
            },
            InputSpec {
                name: "teacher",
                kinds: &[Kind::Model],
                required: false,
                gather: false,
                doc: "distil from this model's soft targets (temperature, soft_weight)",
            },
        ]
    }
    fn outputs(&self) -> &'static [OutputSpec] {
        &[
            OutputSpec { name: "model", kind: Kind::Model, doc: "weights (safetensors), architecture, normalisation" },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "training curve: loss and accuracy per epoch" },
        ]
    }
    fn metric_names(&self) -> &'static [&'static str] {
        &["train_loss", "train_top1"]
    }
    fn param_fields(&self) -> &'static [&'static str] {
        params::field_names::<TrainParams>()
    }
    fn normalize(&self, raw: &Json) -> Result<Json, ParamError> {
        params::normalize::<TrainParams>(raw)
    }
    fn run(&self, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let p: TrainParams = ctx.params()?;
        let images = Images::load(&ctx.input("images")?.dir)?;
        let labels = Labels::load(&ctx.input("labels")?.dir)?;
        let n = images.count(Split::Train);
        if labels.train.len() != n {
            return Err(OpError::Invalid(format!(
                "{n} training images but {} labels; images and labels must describe the same data set",
                labels.train.len()
            )));
        }
        let hflip = match p.hflip {
            Some(true) if !images.meta.hflip_ok => {
                return Err(OpError::Invalid(format!(
                    "hflip = true, but {} does not allow horizontal flips (mirrored images change meaning)",
                    images.meta.dataset
                )))
            }
            Some(v) => v,
            None => images.meta.hflip_ok,
        };
        let m = &images.meta;
        let arch = p.arch(m.channels, labels.meta.num_classes)?;
        if (m.frames > 1) != arch.is_video() {
            return Err(OpError::Invalid(format!(
                "arch = \"{}\" takes {}, but {} holds {}; use {}",
                p.arch,
                if arch.is_video() { "clips" } else { "images" },
                m.dataset,
                if m.frames > 1 { "clips" } else { "images" },
                if m.frames > 1 { "an r2plus1d preset" } else { "a resnet preset" }
            )));
        }
        if p.clip_frames.is_some_and(|f| f > m.frames) {
            return Err(OpError::Invalid(format!(
                "clip_frames = {:?} but the clips have {} frames",
                p.clip_frames, m.frames
            )));
        }
        let cfg = TrainConfig {
            arch,
            epochs: p.epochs,
            batch_size: p.batch_size,
            lr: p.lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            warmup_epochs: p.warmup_epochs,
            schedule: p.schedule(),
            augment: Augment { crop_padding: p.crop_padding, hflip, clip_frames: p.clip_frames.unwrap_or(0) },
            seed: p.seed,
        };
        let data = ImageData { pixels: &images.train, n, c: m.channels, t: m.frames, h: m.height, w: m.width };
        let teacher_logits = match ctx.optional_input("teacher") {
            Some(t) => {
                let (weights, meta) = nn::load_model(&t.dir.join("model.safetensors"), ctx.device)?;
                if meta.arch.num_classes() != labels.meta.num_classes {
                    return Err(OpError::Invalid(format!(
                        "the teacher predicts {} classes but the labels have {}",
                        meta.arch.num_classes(),
                        labels.meta.num_classes
                    )));
                }
                Some(nn::logits(&weights, &meta.arch, &meta.norm, &data, 256, ctx.device)?.0)
            }
            None => None,
        };
        // Tag sets (weak hashtags) are trained against as sets; everything else as one label.
        let truth = match &labels.tags {
            Some((train_tags, _)) => nn::Truth::Tags { offsets: &train_tags.offsets, ids: &train_tags.ids },
            None => nn::Truth::Labels(&labels.train),
        };
        let targets = match &teacher_logits {
            Some(t) => nn::Targets::Distill {
                truth,
                num_classes: labels.meta.num_classes,
                teacher_logits: t,
                temperature: p.temperature,
                soft_weight: p.soft_weight,
            },
            None => nn::Targets::Hard { truth, num_classes: labels.meta.num_classes },
        };
        checkpoint::prepare(&ctx.checkpoint_dir).map_err(OpError::io("creating the checkpoint folder"))?;
        let resume = resume_state(&ctx.checkpoint_dir, &cfg, ctx.device, None);
        if let Some(s) = &resume {
            tracing::info!("{}: resuming after epoch {} of {}", ctx.instance.name, s.epoch, cfg.epochs);
        }
        let mut obs = Checkpointer { dir: &ctx.checkpoint_dir, progress: ctx.progress, epochs: cfg.epochs };
        let trained = nn::train(&data, &targets, &cfg, ctx.device, resume, &mut obs)?;
        if let (Some(floor), Some(last)) = (p.min_train_top1, trained.history.last()) {
            let got = last.accuracy * 100.0;
            if got.is_nan() || got < floor {
                return Err(OpError::Invalid(format!(
                    "training did not fit its labels: train top-1 {got:.1} % after {} epochs is below \
                     min_train_top1 = {floor} % (chance is {:.1} % for {} classes; loss {:.3}); what depends on \
                     this network is skipped. Check lr, epochs and the labels",
                    trained.history.len(),
                    100.0 / labels.meta.num_classes.max(1) as f64,
                    labels.meta.num_classes,
                    last.loss
                )));
            }
        }
        let out = ctx.output_dir("model");
        std::fs::create_dir_all(&out).map_err(OpError::io("creating the model folder"))?;
        trained.save(&out.join("model.safetensors"))?;
        let mut metrics = Metrics::default();
        if let Some(last) = trained.history.last() {
            metrics.values.insert("train_loss".into(), last.loss);
            metrics.values.insert("train_top1".into(), last.accuracy * 100.0);
            let secs: f64 = trained.history.iter().map(|e| e.seconds).sum();
            tracing::info!(
                "{}: {:.0} images/s",
                ctx.instance.name,
                (n * trained.history.len()) as f64 / secs.max(1e-9)
            );
        }
        // Wall times differ between runs, so they stay out of the content-hashed artifact
        // (they are in the log and the provenance); the curve keeps loss, accuracy and rate.
        let curve: Vec<Json> = trained
            .history
            .iter()
            .map(|e| serde_json::json!({"epoch": e.epoch + 1, "loss": e.loss, "accuracy": e.accuracy, "lr": e.lr}))
            .collect();
        metrics.details = serde_json::json!({ "curve": curve, "arch": cfg.arch, "labels": labels.meta.source });
        metrics.save(&ctx.output_dir("metrics"))
    }
}
