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

use super::training::{
    check_crop_padding, resume_state, Checkpointer, Decay, NetParams, OptimParams, MAX_CROP_PADDING,
};
use super::{
    Facts, InputFacts, InputSpec, Kind, MetricSpec, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind,
};
use crate::artifact::{Images, Metrics, Permutations, Split};
use crate::config::param_docs::{self, ParamDoc};
use crate::config::params::{self, ParamError, Params};
use crate::nn::{self, jigsaw, Augment, ImageData, TrainConfig};
use crate::selfsup::rotation::rotation_set;
use crate::selfsup::tiles::{upsample, TileNorm, TileSpec};

/// Parameters of `pretext`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PretextParams {
    /// `rotnet` or `jigsaw`.
    pub task: Task,
    /// The network: a ResNet preset (`resnet_tiny`, `resnet_small`, `resnet_cpu` or `resnet_gpu`).
    #[serde(flatten)]
    pub net: NetParams,
    /// The optimiser (`cosine` or `constant` decay; an epoch is the derived training set).
    #[serde(flatten)]
    pub optim: OptimParams,
    /// RotNet: random-crop padding in pixels (0: no crops).
    #[serde(default = "default_crop_padding")]
    #[schemars(range(max = MAX_CROP_PADDING))]
    pub crop_padding: usize,
    /// Jigsaw: side the images are upsampled to (a multiple of 3).
    #[serde(default = "default_grid")]
    #[schemars(range(min = 3 * MIN_TILE, max = MAX_GRID))]
    pub grid: usize,
    /// Jigsaw: side of a tile, at most `grid / 3` (the rest of a cell is jitter).
    #[serde(default = "default_tile")]
    #[schemars(range(min = MIN_TILE, max = MAX_GRID / 3))]
    pub tile: usize,
    /// Jigsaw: what each tile is normalised by: `dataset` (the data set's per-channel mean and
    /// standard deviation, as whole images are) or `per_tile` (each tile's own, Noroozi &
    /// Favaro's guard against telling neighbours apart by brightness or contrast). Left out of
    /// the recipe when `dataset`, so keys of studies written before it existed are unchanged.
    // The canonical form leaves the default out, so the schema would not show it.
    #[schemars(extend("default" = "dataset"))]
    #[serde(default, skip_serializing_if = "TileNorm::is_dataset")]
    pub tile_norm: TileNorm,
    /// Seed of the initial weights, shuffles, permutation draws and jitter.
    pub seed: u64,
}

/// The pretext task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Predict which of four quarter turns an image was given.
    Rotnet,
    /// Predict which permutation shuffled nine tiles.
    Jigsaw,
}

/// Smallest Jigsaw tile side in pixels.
const MIN_TILE: usize = 8;
/// Largest side the images are upsampled to (a multiple of 3).
const MAX_GRID: usize = 255;

fn default_crop_padding() -> usize {
    2
}
fn default_grid() -> usize {
    48
}
fn default_tile() -> usize {
    13
}

impl PretextParams {
    fn tiles(&self) -> TileSpec {
        TileSpec { grid: self.grid, tile: self.tile, norm: self.tile_norm }
    }

    /// The training loop's settings (pretext has no step decay).
    fn train_config(&self, arch: nn::Arch, augment: Augment) -> TrainConfig {
        self.optim.train_config(arch, augment, self.seed, (&[], 0.1))
    }
}

impl Params for PretextParams {
    fn fields() -> Vec<&'static str> {
        params::with_groups(
            &[&["task"], NetParams::fields(), OptimParams::fields()],
            &["crop_padding", "grid", "tile", "tile_norm", "seed"],
        )
    }

    fn docs() -> Vec<ParamDoc> {
        let mut docs = param_docs::describe::<Self>(&Self::fields());
        // The optimiser's group is `train`'s too, whose `step` decay needs milestones pretext lacks.
        if let Some(schedule) = docs.iter_mut().find(|d| d.name == "schedule") {
            schedule.kind = "\"cosine\" | \"constant\"".to_string();
            schedule.doc = "`cosine` or `constant` decay after warm-up.".to_string();
        }
        docs
    }

    fn check_groups(raw: &Json) -> Result<(), ParamError> {
        params::check_group::<NetParams>(raw)?;
        params::check_group::<OptimParams>(raw)
    }

    fn validate(&self) -> Result<(), ParamError> {
        if self.optim.schedule == Decay::Step {
            return Err(ParamError::field("schedule", "`step` is not offered for pretext training", None));
        }
        self.net.validate()?;
        if self.task != Task::Rotnet && self.net.is_video() == Some(true) {
            return Err(ParamError::field(
                "arch",
                format!("task = \"jigsaw\" needs an image ResNet preset, not `{}`", self.net.arch),
                Some("use a resnet preset".to_string()),
            ));
        }
        self.optim.validate()?;
        check_crop_padding(self.crop_padding)?;
        if self.grid < 3 * MIN_TILE || !self.grid.is_multiple_of(3) || self.grid > MAX_GRID {
            let valid = format!("a multiple of 3 from {} to {MAX_GRID}", 3 * MIN_TILE);
            return Err(ParamError::range("grid", self.grid, &valid));
        }
        if self.tile < MIN_TILE || self.tile > self.grid / 3 {
            let valid = format!("between {MIN_TILE} and grid / 3 = {}", self.grid / 3);
            return Err(ParamError::range("tile", self.tile, &valid));
        }
        Ok(())
    }
}

/// The `pretext` op.
pub struct Pretext;

impl StageKind for Pretext {
    type Params = PretextParams;
    // Training wants a GPU and hours.
    const JOB: super::JobShape = super::JobShape::job(2, 8, 1, 12 * 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "pretext",
        // 2: 3x3 stride-1 convolutions by Winograd F(2x2, 3x3) on CPU (different rounding).
        // 3: batch-norm statistics summed in 32 lanes, R(2+1)D as fused ops (different rounding).
        // 5: weight gradients of same-padded stride-1 im2col convolutions from the column matrix
        //    of the output gradient (different rounding).
        // 6: Winograd from 16 channels (was 32), so 16-channel convolutions round differently.
        // 7: fixed depth blocks for matmuls deeper than 512 (linalg::matmul): the bits of
        //    AMD Zen 3 as before, but not of earlier binaries on CPUs whose L1 made gemm block
        //    otherwise (an Intel Xeon), whose cached results must not be served.
        // 8: the heads' products too (nn::dense): a Jigsaw head, 9 x 128 deep with a 1,000-deep
        //    input gradient, had kept candle's matmul and so the machine's blocking; AMD EPYC's
        //    bits as before, not an Intel Xeon's.
        version: 8,
        summary:
            "self-supervised pre-training without labels: RotNet (4 rotations) or Jigsaw (P permutations of 9 tiles)",
        inputs: &[
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
        ],
        outputs: &[
            OutputSpec {
                name: "model",
                kind: Kind::Model,
                doc: "the trunk as a standard model file (extract reads it)",
            },
            OutputSpec { name: "metrics", kind: Kind::Metrics, doc: "pretext loss and accuracy per epoch" },
        ],
        // Of the last epoch; `epochs` is at least 1 and a resumed run keeps its history.
        metrics: &[MetricSpec::always("pretext_loss"), MetricSpec::always("pretext_top1")],
    };

    fn work_estimate(&self, p: &PretextParams) -> f64 {
        p.optim.work_estimate()
    }

    fn check_inputs(&self, raw: &Json, slots: &[&str]) -> Result<(), ParamError> {
        // Said before anything runs, not after the stages upstream of it have.
        if raw.get("task").and_then(Json::as_str) == Some("jigsaw") && !slots.contains(&"permutations") {
            return Err(ParamError::field(
                "task",
                "task = \"jigsaw\" needs the `permutations` input",
                Some("add permutations = \"STAGE.permutations\", naming a `permutations` stage".into()),
            ));
        }
        // Tiles are cut from the whole image: Jigsaw takes no padded random crops.
        if raw.get("task").and_then(Json::as_str) == Some("jigsaw") && raw.get("crop_padding").is_some() {
            return Err(ParamError::field(
                "crop_padding",
                "`crop_padding` is a RotNet setting (padded random crops), but `task` is \"jigsaw\", whose tiles \
                 are jittered instead",
                Some("drop crop_padding, or set task = \"rotnet\"".into()),
            ));
        }
        // Jigsaw's settings on RotNet would do nothing but change the key.
        if raw.get("task").and_then(Json::as_str) == Some("rotnet") {
            let jigsaw_only = ["grid", "tile", "tile_norm"].into_iter().find(|f| raw.get(f).is_some());
            let field = jigsaw_only.or(slots.contains(&"permutations").then_some("permutations"));
            if let Some(field) = field {
                return Err(ParamError::field(
                    field,
                    format!("`{field}` is a Jigsaw setting, but `task` is \"rotnet\""),
                    Some(format!("drop {field}, or set task = \"jigsaw\"")),
                ));
            }
        }
        Ok(())
    }

    fn preflight(&self, p: &PretextParams, fed: &InputFacts, site: &crate::ops::Site) -> Result<(), ParamError> {
        // Each weight, its gradient and its momentum.
        p.net.check_weights_memory(site, 3)?;
        // Jigsaw trains a trunk on tiles, not the preset on whole images: not estimated here.
        if p.task == Task::Rotnet {
            p.net.check_batch_memory(fed, site, p.optim.batch_size, 4, None, 4)?;
        }
        Ok(())
    }

    fn facts(&self, p: &PretextParams, inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        // A task a sweep chooses is known only here, per instance: `check_inputs` saw `${axis}`.
        if p.task == Task::Jigsaw && inputs.each("permutations").is_empty() {
            return Err(ParamError::field(
                "task",
                "task = \"jigsaw\" needs the `permutations` input",
                Some("add permutations = \"STAGE.permutations\", naming a `permutations` stage".into()),
            ));
        }
        let model = Facts { pretext: Some(true), ..p.net.model_facts(inputs, (p.task == Task::Rotnet).then_some(4)) };
        Ok(OutputFacts::from([("model".to_string(), model)]))
    }

    fn run(&self, p: PretextParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        let images = Images::load(&ctx.input("images")?.dir)?;
        let m = &images.meta;
        let n = images.count(Split::Train);
        crate::cache::checkpoint::prepare(&ctx.checkpoint_dir)
            .map_err(OpError::io("creating the checkpoint folder"))?;
        let out = ctx.output_dir("model");
        std::fs::create_dir_all(&out).map_err(OpError::io("creating the model folder"))?;
        let (trained, examples, unit, classes) = if p.task == Task::Rotnet {
            let (pixels, labels) = rotation_set(&images.train, n, m.channels, m.height, m.width)?;
            let data = ImageData { pixels: &pixels, n: 4 * n, c: m.channels, t: 1, h: m.height, w: m.width };
            let augment = Augment { crop_padding: p.crop_padding, hflip: false, clip_frames: 0 };
            let cfg = p.train_config(p.net.arch(m.channels, 4)?, augment);
            let resume = resume_state(&ctx.checkpoint_dir, &cfg, ctx.device, None);
            log_resume(ctx, resume.as_ref().map(|s| s.epoch), cfg.epochs);
            let mut obs = Checkpointer::for_stage(ctx, cfg.epochs);
            let targets = nn::Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 4 };
            let trained = nn::train(&data, &targets, &cfg, ctx.device, resume, &mut obs)?;
            trained.save(&out.join("model.safetensors"))?;
            (trained, 4 * n, "rotated images", 4)
        } else {
            let perms_in = ctx.optional_input("permutations").ok_or_else(|| {
                OpError::Invalid(format!(
                    "{}: task = \"jigsaw\" needs the `permutations` input (a `permutations` stage's output)",
                    ctx.name
                ))
            })?;
            let perms = Permutations::load(&perms_in.dir)?;
            let spec = p.tiles();
            let pixels = upsample(&images.train, n, m.channels, m.height, m.width, spec.grid);
            let data = ImageData { pixels: &pixels, n, c: m.channels, t: 1, h: spec.grid, w: spec.grid };
            let arch = match p.net.arch(m.channels, 1)? {
                nn::Arch::ResNet(r) => jigsaw::trunk_arch(&r).into(),
                _ => {
                    return Err(OpError::Invalid(format!("jigsaw needs an image ResNet preset, not `{}`", p.net.arch)))
                }
            };
            let cfg = p.train_config(arch, Augment::default());
            let resume = resume_state(&ctx.checkpoint_dir, &cfg, ctx.device, Some(jigsaw::HEAD_PREFIX));
            log_resume(ctx, resume.as_ref().map(|s| s.epoch), cfg.epochs);
            let mut obs = Checkpointer::for_stage(ctx, cfg.epochs);
            let trained = jigsaw::train_jigsaw(&data, &perms.perms, &spec, &cfg, ctx.device, resume, &mut obs)?;
            jigsaw::save(&trained, &out)?;
            (trained, n, "puzzles (x9 tiles)", perms.perms.len())
        };
        super::training::warn_of_a_failed_fit(ctx.name, &trained.history, classes, None);
        let mut metrics = Metrics::default();
        if let Some(last) = trained.history.last() {
            metrics.values.insert("pretext_loss".into(), last.loss);
            metrics.values.insert("pretext_top1".into(), last.accuracy * 100.0);
            let secs: f64 = trained.history.iter().map(|e| e.seconds).sum();
            tracing::info!(
                "{}: {} pre-training throughput {:.0} {unit}/s",
                ctx.name,
                if p.task == Task::Rotnet { "rotnet" } else { "jigsaw" },
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
        metrics.save(&ctx.output_dir("metrics")).map_err(OpError::from)
    }
}

fn log_resume(ctx: &StageCtx<'_>, epoch: Option<usize>, epochs: usize) {
    if let Some(e) = epoch {
        tracing::info!("{}: resuming after epoch {e} of {epochs}", ctx.name);
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
        let e = |extra| crate::config::params::normalize::<PretextParams>(&raw(extra)).unwrap_err().path;
        assert_eq!(e(serde_json::json!({"task": "colorize"})), "task");
        assert_eq!(e(serde_json::json!({"grid": 50})), "grid");
        assert_eq!(e(serde_json::json!({"tile": 17})), "tile");
        assert_eq!(e(serde_json::json!({"epochs": 0})), "epochs");
        assert!(crate::config::params::normalize::<PretextParams>(&raw(serde_json::json!({}))).is_ok());
        assert_eq!(e(serde_json::json!({"tile_norm": "per_image"})), "tile_norm");
    }

    /// `tile_norm` enters the canonical parameters (and so the recipe key) only when it is not
    /// the default: keys of existing studies stay as they were, and writing "dataset" out is the
    /// same recipe as leaving it out.
    #[test]
    fn tile_norm_enters_the_key_only_when_per_tile() {
        let norm = |extra| crate::config::params::normalize::<PretextParams>(&raw(extra)).unwrap();
        let base = norm(serde_json::json!({}));
        assert!(base.get("tile_norm").is_none());
        assert_eq!(norm(serde_json::json!({"tile_norm": "dataset"})), base);
        assert_eq!(norm(serde_json::json!({"tile_norm": "per_tile"}))["tile_norm"], "per_tile");
    }

    /// Jigsaw's settings on a RotNet stage would change its key and nothing else: refused.
    #[test]
    fn jigsaw_settings_are_refused_on_rotnet() {
        let rotnet = serde_json::json!({"task": "rotnet", "epochs": 2, "seed": 0, "tile_norm": "per_tile"});
        let err = Pretext.check_inputs(&rotnet, &["images"]).unwrap_err();
        assert_eq!(err.path, "tile_norm");
    }
}
