//! `train`: a ResNet (images) or an R(2+1)D (clips) trained from scratch on the labels of any
//! stage that produces labels (a data set, `label_noise`, `kmeans` pseudo-labels, `weak_tags`
//! hashtag sets), or distilled from a teacher model (soft targets at temperature T mixed with the
//! labels). A checkpoint is written after every epoch under the
//! recipe key, so a killed run resumes where it stopped and ends with the same weights.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::facts::{self, InputFacts, OutputFacts};
use super::training::{
    check_crop_padding, resume_state, warn_of_a_failed_fit, Checkpointer, Decay, NetParams, OptimParams,
    MAX_CROP_PADDING, TRAINING_IMAGES,
};
use super::{InputSpec, Kind, MetricSpec, OpError, OpSpec, OutputSpec, Site, StageCtx, StageKind};
use crate::artifact::{Images, Labels, Metrics, Split};
use crate::cache::checkpoint;
use crate::config::params::{self, ParamError, Params};
use crate::nn::{self, Augment, ImageData, Precision};

/// Parameters of `train`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrainParams {
    /// The network.
    #[serde(flatten)]
    pub net: NetParams,
    /// The optimiser.
    #[serde(flatten)]
    pub optim: OptimParams,
    /// For `step` (refused otherwise): epochs at which the rate is multiplied by `gamma`, strictly
    /// increasing and each below `epochs`.
    #[serde(default)]
    #[schemars(inner(range(min = 1)))]
    pub milestones: Vec<usize>,
    /// For `step`: the factor (any other value than the default is refused without `step`).
    #[serde(default = "default_gamma")]
    #[schemars(range(max = 1), extend("exclusiveMinimum" = 0))]
    pub gamma: f64,
    /// Random-crop padding in pixels (0: no crops).
    #[serde(default = "default_crop_padding")]
    #[schemars(range(max = MAX_CROP_PADDING))]
    pub crop_padding: usize,
    /// Clips only: train on random temporal crops of this many frames (temporal jittering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub clip_frames: Option<usize>,
    /// Horizontal flips; defaults to whether the data set allows them (not for digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hflip: Option<bool>,
    /// Distillation: temperature of the teacher's soft targets (written only with a `teacher`).
    #[serde(default = "default_temperature")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub temperature: f32,
    /// Distillation: weight of the soft term, the labels getting 1 - this (written only with a
    /// `teacher`).
    #[serde(default = "default_soft_weight")]
    #[schemars(range(min = 0, max = 1))]
    pub soft_weight: f32,
    /// Fails the stage when the last epoch's training top-1 (%, on the labels it was trained on)
    /// is below this: a network that did not fit its labels gives chance-level features, and a
    /// study must not silently build on them. Unset: no check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_train_top1: Option<f64>,
    /// Arithmetic of activations and convolutions: `f32` (default), or mixed precision `bf16`
    /// (GPU only) or `f16`, with f32 master weights and batch norm; mixed precision is offered for
    /// the resnet presets, not the r2plus1d ones. Left out of the recipe when f32, so keys of
    /// studies written before it existed are unchanged.
    // The canonical form leaves the default out, so the schema would not show it.
    #[schemars(extend("default" = "f32"))]
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Seed of the initial weights, shuffles and augmentation.
    pub seed: u64,
}

fn default_gamma() -> f64 {
    0.1
}
fn default_crop_padding() -> usize {
    2
}
fn default_temperature() -> f32 {
    4.0
}
fn default_soft_weight() -> f32 {
    0.5
}

impl Params for TrainParams {
    fn fields() -> Vec<&'static str> {
        params::with_groups(
            &[NetParams::fields(), OptimParams::fields()],
            &[
                "milestones",
                "gamma",
                "crop_padding",
                "clip_frames",
                "hflip",
                "temperature",
                "soft_weight",
                "min_train_top1",
                "precision",
                "seed",
            ],
        )
    }

    fn check_groups(raw: &Json) -> Result<(), ParamError> {
        params::check_group::<NetParams>(raw)?;
        params::check_group::<OptimParams>(raw)
    }

    fn validate(&self) -> Result<(), ParamError> {
        self.net.validate()?;
        if !self.precision.is_f32() && self.net.is_video() == Some(true) {
            return Err(ParamError::field(
                "precision",
                format!(
                    "precision = \"{}\" is offered for the resnet presets, not for {}",
                    self.precision.name(),
                    self.net.arch
                ),
                Some("use precision = \"f32\"".to_string()),
            ));
        }
        if self.clip_frames == Some(0) {
            return Err(ParamError::range("clip_frames", 0, "at least 1"));
        }
        self.optim.validate()?;
        if self.clip_frames.is_some_and(|f| f > 64) {
            return Err(ParamError::range("clip_frames", self.clip_frames.unwrap_or(0), "at most 64"));
        }
        if self.optim.schedule == Decay::Step {
            if !(self.gamma > 0.0 && self.gamma <= 1.0) {
                return Err(ParamError::range("gamma", self.gamma, "in (0, 1] (the rate is multiplied by it)"));
            }
            let epochs = self.optim.epochs;
            if let Some(m) = self.milestones.iter().find(|m| **m == 0 || **m >= epochs) {
                return Err(ParamError::range("milestones", m, &format!("epochs between 1 and {}", epochs - 1)));
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
        } else if self.gamma != default_gamma() {
            // It is part of the key: an unused value would retrain the network for nothing.
            return Err(ParamError::field(
                "gamma",
                "`gamma` only applies to schedule = \"step\"",
                Some("remove it, or set schedule = \"step\"".to_string()),
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(ParamError::range("temperature", self.temperature, "a positive number"));
        }
        if !(0.0..=1.0).contains(&self.soft_weight) {
            return Err(ParamError::range("soft_weight", self.soft_weight, "in [0, 1]"));
        }
        check_crop_padding(self.crop_padding)?;
        if let Some(floor) = self.min_train_top1 {
            if !(0.0..=100.0).contains(&floor) {
                return Err(ParamError::range("min_train_top1", floor, "a percentage in [0, 100]"));
            }
        }
        Ok(())
    }
}

/// Crops a teacher's logits are averaged over where the student is cut to `clip_frames`: the
/// studies' extraction protocol (`clips_per_video = 3`).
const TEACHER_CROPS: usize = 3;

/// The teacher's logits on the training split, in eval mode. On clips cut to `clip_frames`
/// (> 0) they are averaged over [`TEACHER_CROPS`] evenly spaced crops of that many frames, as
/// `extract` reads features: a network trained on crops of 8 frames and run on whole clips of 10
/// downsamples time elsewhere (an odd count is not strided) and predicts little of what it
/// learnt (13 % top-1 on its own tags against 40 % on a crop, measured on weak_videos).
fn teacher_logits(
    weights: &candle_nn::VarMap,
    meta: &nn::ModelMeta,
    data: &ImageData,
    clip_frames: usize,
    device: &candle_core::Device,
) -> Result<Vec<f32>, OpError> {
    if clip_frames == 0 || clip_frames >= data.t {
        return Ok(nn::logits(weights, &meta.arch, &meta.norm, data, 256, device)?.0);
    }
    let offsets = super::extract::crop_offsets(data.t, clip_frames, TEACHER_CROPS);
    let mut sum: Vec<f32> = Vec::new();
    for &offset in &offsets {
        let pixels = data.temporal_crop(offset, clip_frames);
        let crop = ImageData { pixels: &pixels, t: clip_frames, ..*data };
        let logits = nn::logits(weights, &meta.arch, &meta.norm, &crop, 256, device)?.0;
        if sum.is_empty() {
            sum = logits;
        } else {
            sum.iter_mut().zip(logits).for_each(|(s, v)| *s += v);
        }
    }
    let count = offsets.len() as f32;
    sum.iter_mut().for_each(|s| *s /= count);
    Ok(sum)
}

/// The `train` op.
pub struct Train;

impl StageKind for Train {
    type Params = TrainParams;
    // Training wants a GPU and hours.
    const JOB: super::JobShape = super::JobShape::job(2, 8, 1, 12 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "train",
        // 2: 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) on CPU (different rounding).
        // 3: batch-norm statistics summed in 32 lanes, R(2+1)D as fused ops (different rounding).
        // 5: weight gradients of same-padded stride-1 im2col convolutions from the column matrix
        //    of the output gradient (different rounding).
        // 6: Winograd from 16 channels (was 32), so 16-channel convolutions round differently.
        // 7: fixed depth blocks for matmuls deeper than 512 (linalg::matmul): the bits of
        //    AMD Zen 3 as before, but not of earlier binaries on CPUs whose L1 made gemm block
        //    otherwise (an Intel Xeon), whose cached results must not be served.
        // 8: a teacher's logits on clips cut to `clip_frames` are averaged over 3 crops of that
        //    length (they were taken on whole clips, which a network trained on crops misreads).
        // 9: the classifier's products too (nn::dense): with more than 512 classes or a batch
        //    over 512 its gradients were candle's matmul, blocked by the machine's L1; AMD
        //    EPYC's bits as before, not an Intel Xeon's.
        version: 9,
        summary: "trains a ResNet (images) or R(2+1)D (clips) from scratch on labels, or distils; resumable per epoch",
        inputs: &[
            TRAINING_IMAGES,
            super::labels_input(
                "targets: data set labels, noisy labels, cluster ids or tag sets (even spread over an image's tags)",
            ),
            InputSpec {
                name: "teacher",
                kinds: &[Kind::Model],
                required: false,
                gather: false,
                doc: "distil from this model's soft targets (temperature, soft_weight)",
            },
        ],
        outputs: &[
            OutputSpec { name: "model", kind: Kind::Model, doc: "weights (safetensors), architecture, normalisation" },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "training curve: loss and accuracy per epoch" },
        ],
        // Of the last epoch; `epochs` is at least 1 and a resumed run keeps its history.
        metrics: &[MetricSpec::always("train_loss"), MetricSpec::always("train_top1")],
    };

    fn work_estimate(&self, p: &TrainParams) -> f64 {
        p.optim.work_estimate()
    }

    fn preflight(&self, p: &TrainParams, fed: &InputFacts, site: &Site) -> Result<(), ParamError> {
        if p.precision == Precision::Bf16 && matches!(site.device, candle_core::DeviceLocation::Cpu) {
            return Err(ParamError::field(
                "precision",
                nn::run_config::BF16_ON_CPU,
                Some(
                    "on the CPU use precision = \"f32\" (the default) or \"f16\"; for bf16 run with --device cuda \
                     (under --executor slurm, with the stage asking for a GPU: resources.gpus = 1)"
                        .into(),
                ),
            ));
        }
        // Each weight, its gradient and its momentum.
        p.net.check_weights_memory(site, 3)?;
        let bytes = p.precision.dtype().size_in_bytes() as u64;
        p.net.check_batch_memory(fed, site, p.optim.batch_size, 1, p.clip_frames, bytes)
    }

    fn check_inputs(&self, raw: &Json, slots: &[&str]) -> Result<(), ParamError> {
        // Distillation settings with nothing to distil from would do nothing but change the key.
        if let Some(field) = ["temperature", "soft_weight"].into_iter().find(|f| raw.get(f).is_some()) {
            if !slots.contains(&"teacher") {
                return Err(ParamError::field(
                    field,
                    format!("`{field}` is a distillation setting, but no `teacher` is given"),
                    Some(format!("add teacher = \"STAGE.model\", or drop {field}")),
                ));
            }
        }
        Ok(())
    }

    fn facts(&self, p: &TrainParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        facts::same_rows(inputs, "images", "labels", &[0])?;
        let (images, labels, teacher) = (inputs.get("images"), inputs.get("labels"), inputs.get("teacher"));
        p.net.check_input_kind(inputs)?;
        let model = p.net.model_facts(inputs, labels.classes);
        if let (Some(true), Some(false)) = (p.hflip, images.hflip_ok) {
            return Err(ParamError::field(
                "hflip",
                "`hflip` is true, but the images fed to `images` change meaning when mirrored",
                Some("remove it: by default only what keeps its meaning mirrored is flipped".to_string()),
            ));
        }
        facts::clip_frames_fit(inputs, "images", p.clip_frames)?;
        if teacher.pretext == Some(true) {
            return Err(ParamError::field(
                "teacher",
                "the teacher is a `pretext` network, whose head predicts rotations or tile orders, not the classes \
                 of `labels`",
                Some("distil from a network trained on these labels' classes (a `train` stage)".to_string()),
            ));
        }
        if let (Some(t), Some(l)) = (teacher.classes, labels.classes) {
            if t != l {
                return Err(ParamError::field(
                    "teacher",
                    format!("the teacher predicts {t} classes but `labels` has {l}"),
                    Some("distil into labels of the teacher's own classes".to_string()),
                ));
            }
        }
        // The teacher's logits are taken on crops of the student's `clip_frames` (whole clips
        // without it).
        facts::model_fits_images(inputs, "teacher", "images", p.clip_frames)?;
        Ok(OutputFacts::from([("model".to_string(), model)]))
    }

    fn run(&self, p: TrainParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
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
        let arch = p.net.arch(m.channels, labels.meta.num_classes)?;
        if (m.frames > 1) != arch.is_video() {
            return Err(OpError::Invalid(format!(
                "arch = \"{}\" takes {}, but {} holds {}; use {}",
                p.net.arch,
                if arch.is_video() { "clips" } else { "images" },
                m.dataset,
                if m.frames > 1 { "clips" } else { "images" },
                if m.frames > 1 { "an r2plus1d preset" } else { "a resnet preset" }
            )));
        }
        if let Some(f) = p.clip_frames.filter(|&f| f > m.frames) {
            return Err(OpError::Invalid(format!(
                "clip_frames = {f} but the clips have {} frames; use at most {}",
                m.frames, m.frames
            )));
        }
        let augment = Augment { crop_padding: p.crop_padding, hflip, clip_frames: p.clip_frames.unwrap_or(0) };
        if !p.precision.is_f32() && arch.is_video() {
            return Err(OpError::Invalid(format!(
                "precision = \"{}\" is offered for the resnet presets, not for {}; use precision = \"f32\"",
                p.precision.name(),
                p.net.arch
            )));
        }
        // Again here, as `cfrun run` did before anything ran: a cluster job may land on a CPU node.
        StageKind::preflight(self, &p, &InputFacts::default(), &Site::device(ctx.device.location()))
            .map_err(|e| OpError::Invalid(format!("{}; {}", e.message, e.help.unwrap_or_default())))?;
        let mut cfg = p.optim.train_config(arch, augment, p.seed, (&p.milestones, p.gamma));
        cfg.precision = p.precision;
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
                Some(teacher_logits(&weights, &meta, &data, p.clip_frames.unwrap_or(0), ctx.device)?)
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
        checkpoint::prepare(&ctx.checkpoint_dir)
            .map_err(OpError::io(format!("creating the checkpoint folder {}", ctx.checkpoint_dir.display())))?;
        let resume = resume_state(&ctx.checkpoint_dir, &cfg, ctx.device, None);
        if let Some(s) = &resume {
            tracing::info!("{}: resuming after epoch {} of {}", ctx.name, s.epoch, cfg.epochs);
        }
        let mut obs = Checkpointer::for_stage(ctx, cfg.epochs);
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
        if p.min_train_top1.is_none() {
            let remedy = "set min_train_top1 to refuse such a network";
            warn_of_a_failed_fit(ctx.name, &trained.history, labels.meta.num_classes, Some(remedy));
        }
        let out = ctx.output_dir("model");
        std::fs::create_dir_all(&out).map_err(OpError::io("creating the model folder"))?;
        trained.save(&out.join("model.safetensors"))?;
        let mut metrics = Metrics::default();
        if let Some(last) = trained.history.last() {
            metrics.values.insert("train_loss".into(), last.loss);
            metrics.values.insert("train_top1".into(), last.accuracy * 100.0);
            let secs: f64 = trained.history.iter().map(|e| e.seconds).sum();
            tracing::info!("{}: {:.0} images/s", ctx.name, (n * trained.history.len()) as f64 / secs.max(1e-9));
        }
        // Wall times differ between runs, so they stay out of the content-hashed artifact
        // (they are in the log and the provenance); the curve keeps loss, accuracy and rate.
        let curve: Vec<Json> = trained
            .history
            .iter()
            .map(|e| serde_json::json!({"epoch": e.epoch + 1, "loss": e.loss, "accuracy": e.accuracy, "lr": e.lr}))
            .collect();
        metrics.details = serde_json::json!({ "curve": curve, "arch": cfg.arch, "labels": labels.meta.source });
        metrics.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `precision` enters the canonical parameters (and so the recipe key) only when it is not
    /// the default: keys of existing studies stay as they were, and writing "f32" out is the
    /// same recipe as leaving it out.
    #[test]
    fn precision_enters_the_key_only_when_not_f32() {
        let with = |extra: Json| {
            let mut raw = json!({"epochs": 2, "seed": 0});
            raw.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            params::normalize::<TrainParams>(&raw).unwrap()
        };
        let base = with(json!({}));
        assert!(base.get("precision").is_none());
        assert_eq!(with(json!({"precision": "f32"})), base);
        assert_eq!(with(json!({"precision": "bf16"}))["precision"], "bf16");
        assert_ne!(with(json!({"precision": "f16"})), base);
        let bad = params::normalize::<TrainParams>(&json!({"epochs": 2, "seed": 0, "precision": "fp8"})).unwrap_err();
        assert_eq!(bad.path, "precision");
    }

    /// On clips cut to `clip_frames`, a teacher is read on crops of that length, averaged as
    /// `extract` averages them: not on the whole clips, which a network trained on crops misreads.
    #[test]
    fn a_teacher_reads_clips_as_its_student_is_cut() {
        let raw = json!({"arch": "r2plus1d_tiny", "epochs": 2, "seed": 0});
        let p: TrainParams = params::parse(&params::normalize::<TrainParams>(&raw).unwrap()).unwrap();
        let arch = p.net.arch(1, 3).unwrap();
        let (n, t, h, w) = (4, 10, 8, 8);
        let pixels: Vec<u8> = (0..n * t * h * w).map(|i| (i * 37 % 251) as u8).collect();
        let data = ImageData { pixels: &pixels, n, c: 1, t, h, w };
        let cpu = candle_core::Device::Cpu;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        nn::random_network(&arch, &data, 3, &cpu).unwrap().save(&path).unwrap();
        let (weights, meta) = nn::load_model(&path, &cpu).unwrap();
        let on = |view: &ImageData| nn::logits(&weights, &meta.arch, &meta.norm, view, 256, &cpu).unwrap().0;
        let whole = on(&data);
        assert_eq!(teacher_logits(&weights, &meta, &data, 0, &cpu).unwrap(), whole);
        assert_eq!(teacher_logits(&weights, &meta, &data, t, &cpu).unwrap(), whole);
        let crops: Vec<Vec<f32>> = [0, 1, 2]
            .iter()
            .map(|&offset| {
                let px = data.temporal_crop(offset, 8);
                on(&ImageData { pixels: &px, t: 8, ..data })
            })
            .collect();
        let mean: Vec<f32> = (0..whole.len()).map(|i| (crops[0][i] + crops[1][i] + crops[2][i]) / 3.0).collect();
        let read = teacher_logits(&weights, &meta, &data, 8, &cpu).unwrap();
        assert_eq!(read, mean);
        assert_ne!(read, whole);
    }
}
