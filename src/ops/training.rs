//! What the ops that build a network share (`train`, `pretext`, `random_net`): the network and
//! optimiser parameter groups (flattened into each op's parameters, so the stage table stays
//! flat and the canonical JSON is unchanged), the training-images input, and per-epoch
//! checkpoints.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::facts::{self, Facts, InputFacts};
use super::ranges::{check_sgd, SgdSettings};
use super::{InputSpec, Kind, OpError, Site, StageCtx, StageProgress};
use crate::cache::checkpoint;
use crate::config::limits;
use crate::config::params::{field_names, ParamError};
use crate::nn::{self, Arch, Augment, EpochStats, Schedule, TrainConfig, TrainObserver, TrainState};

/// The network: a preset, optionally refined.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetParams {
    /// Network preset: `resnet_tiny`, `resnet_small`, `resnet_cpu`, `resnet_gpu` (images) or `r2plus1d_tiny`,
    /// `r2plus1d_small`, `r2plus1d_large`, `r2plus1d_gpu` (clips).
    #[serde(default = "defaults::arch")]
    pub arch: String,
    /// Channels of res2..res5, overriding the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 1, max = MAX_WIDTH)))]
    pub widths: Option<[usize; 4]>,
    /// Basic blocks in res2..res5, overriding the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 1, max = MAX_BLOCKS)))]
    pub blocks: Option<[usize; 4]>,
    /// Channels of conv1, overriding the preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_WIDTH))]
    pub stem_width: Option<usize>,
}

/// Most channels of any layer.
const MAX_WIDTH: usize = 8192;
/// Most basic blocks in one stage.
const MAX_BLOCKS: usize = 64;

impl NetParams {
    /// The group's field names, for the including struct's [`crate::config::Params::fields`].
    pub fn fields() -> &'static [&'static str] {
        field_names::<NetParams>()
    }

    /// The preset exists; refinements are positive and far below what would exhaust memory.
    pub fn validate(&self) -> Result<(), ParamError> {
        if !nn::PRESETS.contains(&self.arch.as_str()) {
            let mut e = ParamError::unknown_name("arch", "network preset", &self.arch, nn::PRESETS);
            e.help = e.help.map(|h| format!("{h} (widths, blocks and stem_width refine a preset)"));
            return Err(e);
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
        Ok(())
    }

    /// Whether the preset takes clips (an R(2+1)D); `None` for a name `validate` refuses. The
    /// kind of network does not depend on the channels and classes asked for.
    pub fn is_video(&self) -> Option<bool> {
        Arch::preset(&self.arch, 1, 2).map(|a| a.is_video())
    }

    /// What the network built on the `images` input will be (predicting `classes` classes).
    pub fn model_facts(&self, inputs: &InputFacts, classes: Option<usize>) -> Facts {
        Facts { classes, channels: inputs.get("images").channels, video: self.is_video(), ..Facts::default() }
    }

    /// Refuses an architecture for the other kind of input than the `images` input holds
    /// (images or clips), as `train` and `random_net` do when they run.
    pub fn check_input_kind(&self, inputs: &InputFacts) -> Result<(), ParamError> {
        match self.is_video() {
            Some(video) => facts::arch_fits_images(inputs, &self.arch, video, "images"),
            None => Ok(()),
        }
    }

    /// Refuses a batch whose convolutions' outputs alone, kept for the backward pass, exceed
    /// the host memory of where it computes (`site`; nothing is checked where that is unknown
    /// or the tensors live on a GPU): such a run ends in an allocation abort part-way. A lower
    /// bound (batch norm and ReLU keep about as much again, im2col more), so it never refuses a
    /// batch that fits. `per_row` examples are made from each training image (4 rotations for
    /// RotNet); `frames` is what a clip is cut to, `bytes` the size of one activation value.
    pub fn check_batch_memory(
        &self,
        inputs: &InputFacts,
        site: &Site,
        batch_size: usize,
        per_row: usize,
        frames: Option<usize>,
        bytes: u64,
    ) -> Result<(), ParamError> {
        let Some(memory) = &site.memory else { return Ok(()) };
        let images = inputs.get("images");
        let (Some([rows, _]), Some(channels), Some([h, w])) = (images.rows, images.channels, images.side) else {
            return Ok(());
        };
        let Ok(arch) = self.arch(channels, 2) else { return Ok(()) };
        let t = frames.or(images.frames).unwrap_or(1);
        let each = arch.conv_outputs(t, h, w).saturating_mul(bytes).max(1);
        let batch = batch_size.min(rows.saturating_mul(per_row)).max(1) as u64;
        let (need, have) = (each.saturating_mul(batch), memory.bytes);
        if need <= have {
            return Ok(());
        }
        let example = if t > 1 { format!("{t}x{h}x{w}") } else { format!("{h}x{w}") };
        let help = if each > have {
            // Not even one example fits: a smaller batch cannot help.
            format!(
                "one example alone keeps {}: use a narrower or shallower network{}",
                crate::human::bytes(each),
                if t > 1 { ", or fewer frames (clip_frames)" } else { "" }
            )
        } else {
            format!("use at most {} examples per batch there", have / each)
        };
        Err(ParamError::field(
            "batch_size",
            format!(
                "a batch of {batch} examples of {example} through `{}` keeps at least {} of activations for the \
                 backward pass, more than {} {} of memory",
                self.arch,
                crate::human::bytes(need),
                memory.whose,
                crate::human::bytes(have)
            ),
            Some(help),
        ))
    }

    /// Refuses a network whose weights alone, `copies` f32 values each (the weight, its gradient
    /// and its momentum while training), exceed the host memory of where it computes (`site`;
    /// nothing is checked where that is unknown or the tensors live on a GPU): building one ended
    /// in an allocation abort. A lower bound (the second 3x3 convolution of each block, which
    /// any (2+1)D factorisation keeps at least 8/9 of, and nothing else), so it never refuses a
    /// network that fits.
    pub fn check_weights_memory(&self, site: &Site, copies: u64) -> Result<(), ParamError> {
        let Some(memory) = &site.memory else { return Ok(()) };
        let Ok(mut arch) = self.arch(1, 2) else { return Ok(()) };
        let (_, widths, blocks) = arch.sizes_mut();
        let weights: u64 = widths.iter().zip(blocks.iter()).map(|(&w, &b)| (b as u64) * 8 * (w as u64).pow(2)).sum();
        let need = weights.saturating_mul(4 * copies);
        if need <= memory.bytes {
            return Ok(());
        }
        let field = if self.widths.is_some() {
            "widths"
        } else if self.blocks.is_some() {
            "blocks"
        } else {
            "arch"
        };
        Err(ParamError::field(
            field,
            format!(
                "`{}` with these widths and blocks has at least {weights} weights, {copies} f32 copies of which take \
                 {}, more than {} {} of memory",
                self.arch,
                crate::human::bytes(need),
                memory.whose,
                crate::human::bytes(memory.bytes)
            ),
            Some("use narrower widths or fewer blocks per stage".into()),
        ))
    }

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
}

/// The learning-rate decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Half a cosine down to zero.
    Cosine,
    /// Multiplied by `gamma` at each of `milestones` (`train` only).
    Step,
    /// No decay.
    Constant,
}

/// The optimiser: SGD with momentum, warm-up and a decay.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OptimParams {
    /// Passes over the (derived) training set.
    #[schemars(range(min = 1, max = super::ranges::MAX_EPOCHS))]
    pub epochs: usize,
    /// Examples per step; an epoch's last batch holds what is left over, and a batch of one
    /// example that reaches a 1 x 1 map fails in batch norm, as in PyTorch.
    #[serde(default = "defaults::batch_size")]
    #[schemars(range(min = 1, max = super::ranges::MAX_BATCH_SIZE))]
    pub batch_size: usize,
    /// Base learning rate.
    #[serde(default = "defaults::lr")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub lr: f64,
    /// SGD momentum.
    #[serde(default = "defaults::momentum")]
    #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
    pub momentum: f64,
    /// L2 weight decay, on convolution and linear weights only (not batch-norm scales and shifts, nor biases).
    #[serde(default = "defaults::weight_decay")]
    #[schemars(range(min = 0))]
    pub weight_decay: f64,
    /// Epochs of linear warm-up; below `epochs` unless 0 (write 0 for a one-epoch run).
    #[serde(default = "defaults::warmup")]
    pub warmup_epochs: usize,
    /// `cosine`, `step` or `constant` decay after warm-up.
    #[serde(default = "defaults::schedule")]
    pub schedule: Decay,
}

impl OptimParams {
    /// The group's field names, for the including struct's [`crate::config::Params::fields`].
    pub fn fields() -> &'static [&'static str] {
        field_names::<OptimParams>()
    }

    /// The scheduler's guess of the run's CPU-seconds ([`crate::ops::Op::work_estimate`]): an
    /// epoch of the studies' networks takes 3-4 s on one core (resnet_small on 5,000 images,
    /// r2plus1d_small on 2,000 clips), where most other stages take about a second in all.
    pub fn work_estimate(&self) -> f64 {
        4.0 * self.epochs as f64
    }

    /// SGD ranges, and a warm-up shorter than the run.
    pub fn validate(&self) -> Result<(), ParamError> {
        check_sgd(&SgdSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        })?;
        if self.warmup_epochs >= self.epochs && self.warmup_epochs > 0 {
            // The default of 1 trips a one-epoch run whose file never names a warm-up.
            let default = defaults::warmup();
            return Err(ParamError::field(
                "warmup_epochs",
                format!(
                    "`warmup_epochs` is {} ({default} unless set), but must be fewer than `epochs` ({})",
                    self.warmup_epochs, self.epochs
                ),
                Some(format!(
                    "set warmup_epochs = 0 for a run this short, or raise `epochs` above {}",
                    self.warmup_epochs
                )),
            ));
        }
        Ok(())
    }

    /// The training loop's settings for `arch`; `step` is what the decay is at its milestones
    /// (only `train` has milestones).
    pub fn train_config(&self, arch: Arch, augment: Augment, seed: u64, step: (&[usize], f64)) -> TrainConfig {
        let schedule = match self.schedule {
            Decay::Cosine => Schedule::Cosine,
            Decay::Step => Schedule::Step { milestones: step.0.to_vec(), gamma: step.1 },
            Decay::Constant => Schedule::Constant,
        };
        TrainConfig {
            arch,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            warmup_epochs: self.warmup_epochs,
            schedule,
            augment,
            seed,
            precision: Default::default(),
        }
    }
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
    pub fn schedule() -> super::Decay {
        super::Decay::Cosine
    }
}

/// Most random-crop padding in pixels: a few; more would crop away the object.
pub const MAX_CROP_PADDING: usize = 8;

/// Warns of a network published as trained whose run says otherwise: a mean loss that rose by
/// half from the first epoch to the last (a learning rate too high; a loss that went NaN fails
/// earlier), or a last training top-1 barely above chance. `train` asks only where no
/// `min_train_top1` would refuse the network; `remedy` ends the message.
pub fn warn_of_a_failed_fit(name: &str, history: &[EpochStats], classes: usize, remedy: Option<&str>) {
    let remedy = remedy.map(|r| format!("; {r}")).unwrap_or_default();
    let (Some(first), Some(last)) = (history.first(), history.last()) else { return };
    let chance = 100.0 / classes.max(1) as f64;
    let top1 = last.accuracy * 100.0;
    // Half again: a noisy plateau may end a little above where it began, a divergence far above.
    if history.len() >= 2 && last.loss > 1.5 * first.loss {
        tracing::warn!(
            "{name}: the mean loss rose from {:.3} (epoch 1) to {:.3} (epoch {}), train top-1 {top1:.1} %: the \
             training diverged (lower lr?){remedy}",
            first.loss,
            last.loss,
            history.len()
        );
    } else if top1 < 1.5 * chance {
        tracing::warn!(
            "{name}: train top-1 {top1:.1} % in the last epoch ({}) is within 1.5x of chance ({chance:.1} % for \
             {classes} classes): the network barely fits its labels{remedy}",
            history.len()
        );
    }
}

/// Random-crop padding is a few pixels ([`MAX_CROP_PADDING`] at most).
pub fn check_crop_padding(crop_padding: usize) -> Result<(), ParamError> {
    if crop_padding > MAX_CROP_PADDING {
        return Err(ParamError::range("crop_padding", crop_padding, &format!("at most {MAX_CROP_PADDING}")));
    }
    Ok(())
}

/// The images or clips a network is built for (input normalisation, channels, frames); shared by
/// `train` and `random_net`.
pub const TRAINING_IMAGES: InputSpec = InputSpec {
    name: "images",
    kinds: &[Kind::Images, Kind::Clips],
    required: true,
    gather: false,
    doc: "training images or clips",
};

/// Saves a checkpoint after every epoch: each epoch written into a fresh folder, renamed, then
/// sealed with its digest (see [`crate::cache::checkpoint`]), so a kill at any moment leaves a
/// loadable checkpoint or none, and an edited one is never resumed from.
pub struct Checkpointer<'a> {
    /// The instance training, named in its log lines (jobs side by side share the log).
    pub name: &'a str,
    /// The checkpoint folder (tied to the recipe key).
    pub dir: &'a Path,
    /// Progress reporting.
    pub progress: &'a dyn StageProgress,
    /// Total epochs, for messages.
    pub epochs: usize,
    /// The device the stage computes on, written into each checkpoint.
    pub device: &'a candle_core::Device,
    /// This process's pace, for the time the stage's remaining epochs will take.
    clock: EpochClock,
}

impl<'a> Checkpointer<'a> {
    /// Checkpoints of `ctx`'s stage, training for `epochs`.
    pub fn for_stage(ctx: &'a StageCtx<'_>, epochs: usize) -> Self {
        Checkpointer {
            name: ctx.name,
            dir: &ctx.checkpoint_dir,
            progress: ctx.progress,
            epochs,
            device: ctx.device,
            clock: EpochClock::default(),
        }
    }
}

/// When this process's first batch of training ended, and in which epoch (a resumed run starts
/// past 0): the epochs it has trained since tell how long the rest will take. A bar's own ETA
/// covers only the epoch under way.
#[derive(Default)]
struct EpochClock {
    start: Option<(std::time::Instant, usize)>,
}

impl EpochClock {
    /// Notes the first epoch this process trains (later calls change nothing).
    fn begin(&mut self, epoch: usize) {
        self.start.get_or_insert((std::time::Instant::now(), epoch));
    }

    /// Seconds the epochs after the first `done` of `epochs` will take at this process's pace;
    /// `None` before one epoch ends here or when none is left.
    fn left(&self, done: usize, epochs: usize) -> Option<f64> {
        let (start, first) = self.start?;
        let here = done.checked_sub(first).filter(|&n| n > 0)?;
        let rest = epochs.checked_sub(done).filter(|&n| n > 0)?;
        Some(start.elapsed().as_secs_f64() / here as f64 * rest as f64)
    }
}

/// The file in a checkpoint that names the kind of device that wrote it (sealed with the rest).
const DEVICE_FILE: &str = "device";

/// `cpu`, `cuda` or `metal`: which arithmetic a state was computed with (the card's index does
/// not change it).
fn device_kind(device: &candle_core::Device) -> &'static str {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu",
        candle_core::DeviceLocation::Cuda { .. } => "cuda",
        candle_core::DeviceLocation::Metal { .. } => "metal",
    }
}

/// The kind of device that wrote the checkpoint in `folder`, when it is not `device`'s. A
/// checkpoint from before devices were recorded names none: its device is unknown, so it counts
/// as another's (one retrain, against a run that might mix two devices' arithmetic).
fn written_on_another_device(folder: &Path, device: &candle_core::Device) -> Option<String> {
    let Ok(written) = std::fs::read_to_string(folder.join(DEVICE_FILE)) else {
        return Some("an unnamed device (a cfrun from before checkpoints named theirs)".into());
    };
    let written = written.trim();
    (written != device_kind(device)).then(|| written.to_string())
}

impl TrainObserver for Checkpointer<'_> {
    fn on_batch(&mut self, epoch: usize, batch: usize, batches: usize) {
        if batch == 0 {
            self.clock.begin(epoch);
            let left = self.clock.left(epoch, self.epochs).map(|s| format!(", {} to go", crate::human::duration(s)));
            self.progress
                .begin(&format!("epoch {}/{}{}", epoch + 1, self.epochs, left.unwrap_or_default()), batches as u64);
        }
        self.progress.inc(1);
    }

    fn on_epoch(&mut self, stats: &EpochStats, state: &TrainState) -> Result<(), nn::NnError> {
        self.progress.message(&format!("loss {:.3} acc {:.1}%", stats.loss, stats.accuracy * 100.0));
        let left = self
            .clock
            .left(stats.epoch + 1, self.epochs)
            .map(|s| format!("; about {} to go", crate::human::duration(s)))
            .unwrap_or_default();
        // A diverged network would otherwise be published as trained, and its NaN weights found
        // (if at all) stages later; nor is its state worth a checkpoint to resume from.
        if !stats.loss.is_finite() {
            return Err(nn::NnError::invalid(format!(
                "training diverged: the mean loss of epoch {} of {} is {} (lr {:.3e} then); \
                 lower `lr` or raise `warmup_epochs`",
                stats.epoch + 1,
                self.epochs,
                stats.loss,
                stats.lr
            )));
        }
        let io = |source: std::io::Error| nn::NnError::Io { path: self.dir.to_path_buf(), source };
        let scratch = checkpoint::scratch(self.dir).map_err(io)?;
        state.save(&scratch.path().join("state.safetensors"))?;
        std::fs::write(scratch.path().join(DEVICE_FILE), device_kind(self.device)).map_err(io)?;
        checkpoint::commit(self.dir, scratch, &format!("epoch-{:04}", stats.epoch + 1)).map_err(io)?;
        tracing::info!(
            "{} epoch {}/{}: loss {:.4}, train acc {:.2}%, {:.0} img/s (checkpoint saved{left})",
            self.name,
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
/// So is one written on another kind of device: a CPU run resumed from a GPU's epochs would
/// publish neither device's bits, and the CPU's promise is the same bits every time.
pub fn resume_state(
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
    if let Some(other) = written_on_another_device(&folder, device) {
        tracing::warn!(
            "not resuming from the checkpoint in {}: it was written on {other} and this run computes on {}; \
             training from the start",
            dir.display(),
            device_kind(device)
        );
        return None;
    }
    let resumable = TrainState::load_with_head(&folder.join("state.safetensors"), device, head_prefix)
        .and_then(|state| state.check_resumable(cfg).map(|()| state));
    match resumable {
        Ok(state) => Some(state),
        Err(why) => {
            tracing::warn!("not resuming from the checkpoint in {}: {why}; training from the start", folder.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value as Json};

    use super::EpochClock;
    use crate::config::params::{normalize, ParamError, Params};
    use crate::ops::pretext::PretextParams;
    use crate::ops::random_net::RandomNetParams;
    use crate::ops::train::TrainParams;

    /// Every field a struct lists is one it writes, and the other way round: the hand-written
    /// lists of the structs that flatten groups cannot drift from the structs.
    fn fields_match<P: Params>(full: Json) {
        let canonical = normalize::<P>(&full).unwrap();
        let mut written: Vec<&str> = canonical.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = P::fields();
        written.sort();
        listed.sort();
        assert_eq!(written, listed);
    }

    /// The time to go is this process's seconds per epoch times the epochs not yet trained, a
    /// resumed run counting only the epochs it trained itself; nothing is said before one epoch
    /// ends here, or after the last.
    #[test]
    fn time_to_go_is_this_process_pace_times_the_epochs_left() {
        let mut clock = EpochClock::default();
        assert_eq!(clock.left(0, 10), None);
        clock.begin(2); // resumed after epoch 2
        assert_eq!(clock.start.map(|(_, first)| first), Some(2));
        assert_eq!(clock.left(2, 10), None);
        let now = std::time::Instant::now();
        let Some(started) = now.checked_sub(std::time::Duration::from_secs(8)) else { return }; // a clock just booted
        clock.start = Some((started, 2));
        clock.begin(3); // a later epoch changes nothing
        assert_eq!(clock.start, Some((started, 2)));
        let left = clock.left(4, 10).unwrap(); // 2 epochs in 8 s, 6 to go
        assert!((24.0..25.0).contains(&left), "{left}");
        assert_eq!(clock.left(10, 10), None);
    }

    #[test]
    fn a_checkpoint_names_the_device_that_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = candle_core::Device::Cpu;
        assert!(super::written_on_another_device(dir.path(), &cpu).is_some(), "none named: unknown, not resumed");
        std::fs::write(dir.path().join(super::DEVICE_FILE), "cpu").unwrap();
        assert_eq!(super::written_on_another_device(dir.path(), &cpu), None);
        std::fs::write(dir.path().join(super::DEVICE_FILE), "cuda").unwrap();
        assert_eq!(super::written_on_another_device(dir.path(), &cpu), Some("cuda".to_string()));
    }

    #[test]
    fn flattened_structs_list_exactly_their_fields() {
        let net = json!({"arch": "resnet_tiny", "widths": [4, 4, 4, 4], "blocks": [1, 1, 1, 1], "stem_width": 4});
        let optim = json!({"epochs": 3, "batch_size": 8, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                           "warmup_epochs": 1, "schedule": "step"});
        let with = |a: &Json, b: &Json, own: Json| {
            let mut m = a.as_object().unwrap().clone();
            m.extend(b.as_object().unwrap().clone());
            m.extend(own.as_object().unwrap().clone());
            Json::Object(m)
        };
        fields_match::<TrainParams>(with(
            &net,
            &optim,
            json!({"milestones": [2], "gamma": 0.5, "crop_padding": 2, "clip_frames": 4, "hflip": false,
                   "temperature": 2.0, "soft_weight": 0.5, "min_train_top1": 10.0, "precision": "f16", "seed": 1}),
        ));
        let mut optim_pretext = optim.clone();
        optim_pretext["schedule"] = json!("cosine");
        fields_match::<PretextParams>(with(
            &net,
            &optim_pretext,
            json!({"task": "rotnet", "crop_padding": 2, "grid": 48, "tile": 13, "tile_norm": "per_tile", "seed": 1}),
        ));
        fields_match::<RandomNetParams>(with(&net, &json!({}), json!({"seed": 1})));
    }

    #[test]
    fn errors_inside_a_group_name_their_field() {
        let err = |raw: Json| -> ParamError { normalize::<TrainParams>(&raw).unwrap_err() };
        let e = err(json!({"epochs": 2, "seed": 0, "lr": "fast"}));
        assert_eq!(e.path, "lr");
        assert!(e.message.contains("lr"), "{}", e.message);
        let e = err(json!({"epochs": 2, "seed": 0, "schedule": "cosin"}));
        assert_eq!((e.path.as_str(), e.message.as_str()), ("schedule", "unknown schedule `cosin`"));
        assert!(e.help.unwrap().starts_with("did you mean `cosine`?"));
        let e = err(json!({"epochs": 2, "seed": 0, "widths": [1, 2]}));
        assert_eq!(e.path, "widths");
        let e = err(json!({"seed": 0}));
        assert!(e.message.contains("missing required field `epochs`"), "{}", e.message);
        let e = err(json!({"epochs": 2, "seed": 0, "learning_rate": 0.1}));
        assert_eq!(e.path, "learning_rate");
        assert!(e.help.unwrap().contains("valid parameters: arch, widths"));
        let e = normalize::<PretextParams>(&json!({"task": "rotnet", "epochs": 2, "seed": 0, "schedule": "step"}));
        assert_eq!(e.unwrap_err().path, "schedule");
        let e = normalize::<PretextParams>(&json!({"task": "rotnet", "epochs": 2, "seed": 0, "milestones": [1]}));
        assert_eq!(e.unwrap_err().path, "milestones", "train's own fields are not pretext's");
    }
}
