//! The training loop: pure (no files), seeded, resumable bit-exactly.
//!
//! Input: `ImageData` `(n, c, h, w)` u8 and per-image targets (`labels[n]`, and for
//! distillation `teacher_logits[n * num_classes]`, row-major). Each epoch `e` draws its shuffle
//! and its augmentations from one ChaCha8 stream seeded by `(seed, e)`, so resuming at epoch `e`
//! needs only the weights, BN running statistics and momentum buffers of a [`TrainState`].
//! The last batch of an epoch may be smaller than `batch_size` (no sample is dropped).
//!
//! Loss: hard targets use cross-entropy (for tag sets, against the even spread over an image's
//! tags); distillation uses
//! `soft_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - soft_weight) * CE`
//! averaged over the batch (a term whose weight is 0 is not computed at all).

use super::arch::Arch;
use super::checkpoint::build_model;
use super::checkpoint::TrainState;
use super::cuda_params;
use super::data::{fill_batch, ImageData, Normalization};
use super::init::init_weights;
use super::pipeline::Pipeline;
use super::resident::{EpochSums, ResidentImages};
use super::resident_tags::{host_spreads, ResidentTags};
use super::run_config::{EpochStats, Precision, TrainConfig};
use super::running_stats::{self, FlatStats, Handed, StatsUpdate};
use super::schedule::lr_at;
use super::sgd::Sgd;
use super::step_profile::{Phase, StepProfile};
use super::NnError;
use crate::rng;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Instant;

/// The classes each training image belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Truth<'a> {
    /// One class per image: cross-entropy.
    Labels(&'a [u32]),
    /// A set of classes per image (hashtags): image `i` carries `ids[offsets[i]..offsets[i + 1]]`,
    /// and its target spreads evenly over them, as hashtag-prediction training does.
    Tags {
        /// `n + 1` offsets into `ids`.
        offsets: &'a [u32],
        /// The classes, image after image.
        ids: &'a [u32],
    },
}

impl Truth<'_> {
    fn len(&self) -> usize {
        match self {
            Truth::Labels(l) => l.len(),
            Truth::Tags { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    fn classes_of(&self, i: usize) -> &[u32] {
        match self {
            Truth::Labels(l) => std::slice::from_ref(&l[i]),
            Truth::Tags { offsets, ids } => &ids[offsets[i] as usize..offsets[i + 1] as usize],
        }
    }

    fn validate(&self, n: usize, k: usize) -> Result<(), NnError> {
        if self.len() != n {
            return Err(NnError::invalid(format!("{} labels for {n} images", self.len())));
        }
        if let Truth::Tags { offsets, ids } = self {
            let ok = offsets.first() == Some(&0)
                && offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets.last().map(|&o| o as usize) == Some(ids.len());
            if !ok {
                return Err(NnError::invalid("tag sets: offsets must start at 0, grow, and end at the id count"));
            }
        }
        let all: &[u32] = match self {
            Truth::Labels(l) => l,
            Truth::Tags { ids, .. } => ids,
        };
        if let Some(bad) = all.iter().find(|&&l| l as usize >= k) {
            return Err(NnError::invalid(format!("label {bad} out of range for {k} classes")));
        }
        Ok(())
    }
}

/// What the network is trained to predict.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// The classes of [`Truth`]: cross-entropy against one label or an even spread over tags.
    Hard {
        /// Labels or tag sets.
        truth: Truth<'a>,
        /// Number of classes (must equal the architecture's).
        num_classes: usize,
    },
    /// Knowledge distillation from a teacher's logits, mixed with the hard loss on `truth`.
    Distill {
        /// Labels or tag sets (used for the hard term and for the reported accuracy).
        truth: Truth<'a>,
        /// Number of classes (must equal the architecture's).
        num_classes: usize,
        /// `n * num_classes` teacher logits, image after image.
        teacher_logits: &'a [f32],
        /// Softening temperature `T > 0`.
        temperature: f32,
        /// Weight of the soft term, in `[0, 1]`.
        soft_weight: f32,
    },
}

impl Targets<'_> {
    fn truth(&self) -> &Truth<'_> {
        match self {
            Targets::Hard { truth, .. } | Targets::Distill { truth, .. } => truth,
        }
    }

    fn validate(&self, n: usize, arch_classes: usize) -> Result<(), NnError> {
        let (truth, k) = match *self {
            Targets::Hard { truth, num_classes } => (truth, num_classes),
            Targets::Distill { truth, num_classes, teacher_logits, temperature, soft_weight } => {
                if teacher_logits.len() != n * num_classes {
                    return Err(NnError::invalid(format!(
                        "teacher logits: {} values for {n} images x {num_classes} classes",
                        teacher_logits.len()
                    )));
                }
                if temperature.is_nan() || temperature <= 0.0 || !(0.0..=1.0).contains(&soft_weight) {
                    return Err(NnError::invalid(format!(
                        "distillation needs temperature > 0 and soft_weight in [0, 1], got {temperature} and {soft_weight}"
                    )));
                }
                (truth, num_classes)
            }
        };
        if k != arch_classes {
            return Err(NnError::invalid(format!("targets have {k} classes, the network {arch_classes}")));
        }
        truth.validate(n, k)
    }
}

/// Progress callbacks; `on_epoch` is where a runner saves a checkpoint.
pub trait TrainObserver {
    /// After each optimiser step.
    fn on_batch(&mut self, epoch: usize, batch: usize, batches: usize);
    /// After each epoch; `state` shares the live weights, so save it now rather than keep it.
    /// An error stops training and is returned by [`train`].
    fn on_epoch(&mut self, stats: &EpochStats, state: &TrainState) -> Result<(), NnError>;
}

/// An observer that does nothing.
pub struct NoObserver;

impl TrainObserver for NoObserver {
    fn on_batch(&mut self, _: usize, _: usize, _: usize) {}
    fn on_epoch(&mut self, _: &EpochStats, _: &TrainState) -> Result<(), NnError> {
        Ok(())
    }
}

/// A trained network: weights, what is needed to rebuild and feed it, and its history.
pub struct Trained {
    /// All vars, BN running statistics included.
    pub weights: VarMap,
    /// The architecture.
    pub arch: Arch,
    /// The input normalisation used in training.
    pub norm: Normalization,
    /// One entry per epoch (including epochs run before a resume).
    pub history: Vec<EpochStats>,
}

/// Trains `cfg.arch` on `data` from scratch or from `resume`, reporting to `obs`. On a device
/// other than the CPU the data set stays on the device, unless `CFRUN_TRAIN_PIPELINE` says
/// otherwise ([`super::pipeline`]).
pub fn train(
    data: &ImageData,
    targets: &Targets,
    cfg: &TrainConfig,
    device: &Device,
    resume: Option<TrainState>,
    obs: &mut dyn TrainObserver,
) -> Result<Trained, NnError> {
    train_with(data, targets, cfg, device, resume, obs, Paths::for_device(device))
}

/// How a training run feeds its batches and updates batch norm's running statistics; each way
/// trains the same bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paths {
    /// How batches reach the network ([`super::pipeline`]).
    pub pipeline: Pipeline,
    /// Layer by layer or all at once ([`super::running_stats`]).
    pub stats: StatsUpdate,
}

impl Paths {
    /// What the switches force, or else the device's ways.
    pub(crate) fn for_device(device: &Device) -> Self {
        Paths { pipeline: super::pipeline::pipeline_for(device), stats: running_stats::stats_update_for(device) }
    }
}

/// [`train`] with the ways chosen by the caller (the tests run each on the CPU).
pub(crate) fn train_with(
    data: &ImageData,
    targets: &Targets,
    cfg: &TrainConfig,
    device: &Device,
    resume: Option<TrainState>,
    obs: &mut dyn TrainObserver,
    paths: Paths,
) -> Result<Trained, NnError> {
    let pipeline = paths.pipeline;
    data.validate()?;
    cfg.arch.validate()?;
    targets.validate(data.n, cfg.arch.num_classes())?;
    if data.n == 0 || cfg.batch_size == 0 || data.c != cfg.arch.in_channels() {
        return Err(NnError::invalid(format!(
            "need images, batch_size > 0 and {} input channels; got n={} batch_size={} c={}",
            cfg.arch.in_channels(),
            data.n,
            cfg.batch_size,
            data.c
        )));
    }
    if data.t > 1 && !cfg.arch.is_video() {
        return Err(NnError::invalid(format!("{}-frame clips need a video network (an r2plus1d preset)", data.t)));
    }
    if !cfg.precision.is_f32() && cfg.arch.is_video() {
        return Err(NnError::invalid("mixed precision is offered for the resnet presets, not for clip networks"));
    }
    if cfg.precision == Precision::Bf16 && device.is_cpu() {
        return Err(NnError::invalid(format!("{}; use f16 or f32", super::run_config::BF16_ON_CPU)));
    }
    let (varmap, start, norm, mut history, buffers) = match resume {
        Some(state) => {
            state.check_resumable(cfg)?;
            (state.weights, state.epoch, state.norm, state.history, state.momentum)
        }
        None => (VarMap::new(), 0, Normalization::from_data(data)?, Vec::new(), BTreeMap::new()),
    };
    norm.check_channels(data.c)?;
    let fresh = start == 0 && history.is_empty() && varmap.all_vars().is_empty();
    let model = build_model(&cfg.arch, &varmap, device, fresh)?;
    if fresh {
        init_weights(&varmap, cfg.seed)?;
    }
    let mut sgd = Sgd::new(&varmap, cfg.momentum, cfg.weight_decay, buffers)?;
    let lut = norm.lut();
    let frames = data.frames_out(cfg.augment.clip_frames);
    let (n, bs, len) = (data.n, cfg.batch_size, data.c * frames * data.h * data.w);
    let batches = n.div_ceil(bs);
    let resident = match pipeline {
        Pipeline::Resident | Pipeline::ResidentSynced => Resident::upload(data, targets, &lut, cfg, device)?,
        Pipeline::Host => None,
    };
    if pipeline != Pipeline::Host && resident.is_none() {
        tracing::info!("data set too large to index on the device in u32: batches are built on the host");
    }
    let synced = pipeline == Pipeline::ResidentSynced;
    tracing::debug!(pipeline = ?if resident.is_some() { pipeline } else { Pipeline::Host }, "batch pipeline");
    // What a throughput means in arithmetic: the bench turns img/s into FLOP/s with this.
    tracing::debug!(forward_macs = cfg.arch.forward_macs(frames, data.h, data.w), "network size per example");
    tracing::debug!(update = ?paths.stats, "bn running statistics");
    let mut stats = FlatStats::default();
    // The forward pass, its batch norms' running-statistics updates collected when they go flat.
    let forward = |x: &Tensor| -> Result<(Tensor, Vec<Handed>), NnError> {
        let (logits, handed) = running_stats::collecting_if(paths.stats, || model.forward_t(x, true));
        Ok((logits?, handed))
    };
    let shape = |b| cfg.arch.input_shape(b, data.c, frames, data.h, data.w);
    // Inputs in the activations' dtype; the layers cast their f32 weights to it (a no-op in f32).
    let dtype = cfg.precision.dtype();
    let mut xbuf = vec![0f32; if resident.is_some() { 0 } else { bs.min(n) * len }];
    for epoch in start..cfg.epochs {
        let t0 = Instant::now();
        let mut rng = rng::stream(cfg.seed, "epoch", epoch as u64);
        let order = permutation(n, &mut rng);
        let first_lr = lr_at(cfg.lr, &cfg.schedule, cfg.warmup_epochs, cfg.epochs, batches, epoch * batches);
        let batch_of = |b: usize| &order[b * bs..((b + 1) * bs).min(n)];
        let lr_of =
            |b: usize| lr_at(cfg.lr, &cfg.schedule, cfg.warmup_epochs, cfg.epochs, batches, epoch * batches + b);
        let mut prof = StepProfile::start(device);
        let (loss_sum, correct) = match &resident {
            Some(res) => {
                let mut sums = EpochSums::new(device)?;
                for b in 0..batches {
                    prof.step();
                    let idx = batch_of(b);
                    let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), device)?;
                    let x = res.images.batch(idx, Some(&mut rng))?.reshape(shape(idx.len()))?.to_dtype(dtype)?;
                    prof.mark(Phase::Batch)?;
                    // The network's ops only: the batch and its targets change every step, and
                    // would each stay in candle's cache (`cuda_params`).
                    let (logits, handed) = cuda_params::during(device, || forward(&x))?;
                    prof.mark(Phase::Forward)?;
                    let target = res.hard_target(targets.truth(), idx, &ids, logits.dim(1)?)?;
                    let loss = res.loss(&logits, targets, &target, &ids)?;
                    let grads = cuda_params::during(device, || loss.backward())?;
                    prof.mark(Phase::Backward)?;
                    cuda_params::during(device, || -> Result<(), NnError> {
                        sgd.step(&grads, lr_of(b))?;
                        Ok(stats.apply(handed)?)
                    })?;
                    sums.add(&loss, idx.len(), &target.correct(&logits)?)?;
                    if synced {
                        sums.read()?;
                    }
                    prof.mark(Phase::Update)?;
                    obs.on_batch(epoch, b, batches);
                }
                sums.read()?
            }
            None => {
                let (mut loss_sum, mut correct) = (0.0, 0usize);
                for b in 0..batches {
                    prof.step();
                    let idx = batch_of(b);
                    let xb = &mut xbuf[..idx.len() * len];
                    fill_batch(data, idx, &lut, &cfg.augment, Some(&mut rng), xb);
                    let x = Tensor::from_slice(xb, shape(idx.len()), device)?.to_dtype(dtype)?;
                    prof.mark(Phase::Batch)?;
                    let truth = targets.truth();
                    let (logits, handed) = cuda_params::during(device, || forward(&x))?;
                    prof.mark(Phase::Forward)?;
                    // Targets built on the host: outside the cache.
                    let loss = batch_loss(&logits, targets, idx)?;
                    let grads = cuda_params::during(device, || loss.backward())?;
                    prof.mark(Phase::Backward)?;
                    cuda_params::during(device, || -> Result<(), NnError> {
                        sgd.step(&grads, lr_of(b))?;
                        Ok(stats.apply(handed)?)
                    })?;
                    loss_sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
                    let pred = logits.argmax(1)?.to_vec1::<u32>()?;
                    correct += pred.iter().zip(idx).filter(|(p, &i)| truth.classes_of(i).contains(p)).count();
                    prof.mark(Phase::Update)?;
                    obs.on_batch(epoch, b, batches);
                }
                (loss_sum, correct)
            }
        };
        prof.report(epoch);
        // The checkpoint the observer writes reads the running statistics from their Vars.
        stats.write_back()?;
        let tally = EpochTally { epoch, loss_sum, correct, n, first_lr, started: t0 };
        finish_epoch(tally, &mut history, &varmap, &sgd, &norm, cfg, obs)?;
    }
    Ok(Trained { weights: varmap, arch: cfg.arch.clone(), norm, history })
}

/// The network `train` would start from (weights drawn from `seed`, batch-norm statistics at
/// their initial values, inputs normalised with `data`'s statistics), never trained: the
/// random-features floor a learned representation must beat.
pub fn random_network(arch: &Arch, data: &ImageData, seed: u64, device: &Device) -> Result<Trained, NnError> {
    data.validate()?;
    arch.validate()?;
    let norm = Normalization::from_data(data)?;
    norm.check_channels(data.c)?;
    let varmap = VarMap::new();
    build_model(arch, &varmap, device, true)?;
    init_weights(&varmap, seed)?;
    Ok(Trained { weights: varmap, arch: arch.clone(), norm, history: Vec::new() })
}

/// What one epoch of a training loop counted.
pub(crate) struct EpochTally {
    /// 0-based epoch index.
    pub epoch: usize,
    /// Loss summed over the epoch's examples.
    pub loss_sum: f64,
    /// Examples predicted right.
    pub correct: usize,
    /// Examples in the epoch.
    pub n: usize,
    /// Learning rate of the epoch's first step.
    pub first_lr: f64,
    /// When the epoch began.
    pub started: Instant,
}

/// Ends an epoch of any training loop (images, clips, Jigsaw puzzles): records its statistics in
/// `history` and hands the observer a resumable state (where the runner writes its checkpoint).
pub(crate) fn finish_epoch(
    t: EpochTally,
    history: &mut Vec<EpochStats>,
    varmap: &VarMap,
    sgd: &Sgd,
    norm: &Normalization,
    cfg: &TrainConfig,
    obs: &mut dyn TrainObserver,
) -> Result<(), NnError> {
    let seconds = t.started.elapsed().as_secs_f64();
    let stats = EpochStats {
        epoch: t.epoch,
        loss: t.loss_sum / t.n as f64,
        accuracy: t.correct as f64 / t.n as f64,
        lr: t.first_lr,
        seconds,
        images_per_sec: t.n as f64 / seconds.max(1e-9),
    };
    tracing::debug!(epoch = t.epoch, loss = stats.loss, accuracy = stats.accuracy, seconds, "epoch done");
    history.push(stats.clone());
    let state = TrainState {
        epoch: t.epoch + 1,
        weights: varmap.clone(),
        momentum: sgd.buffers()?,
        norm: norm.clone(),
        history: history.clone(),
        config: cfg.clone(),
    };
    obs.on_epoch(&stats, &state)
}

/// A uniformly random permutation of `0..n` (Fisher-Yates; spelled out so the order cannot
/// change with a `rand` release).
pub(crate) fn permutation(n: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// The hard target of one batch: its labels, or each image's even spread over its tags.
pub(crate) enum HardTarget {
    /// `(b,)` u32 labels.
    Labels(Tensor),
    /// `(b, k)` f32: `1 / |tags|` at each tag of an image, 0 elsewhere.
    Spread(Tensor),
}

impl HardTarget {
    /// Built on the host from `truth` for images `idx`.
    fn from_host(truth: &Truth, idx: &[usize], k: usize, dev: &Device) -> Result<Self, NnError> {
        Ok(match truth {
            Truth::Labels(l) => {
                let y: Vec<u32> = idx.iter().map(|&i| l[i]).collect();
                HardTarget::Labels(Tensor::from_vec(y, idx.len(), dev)?)
            }
            Truth::Tags { offsets, ids } => {
                HardTarget::Spread(Tensor::from_vec(host_spreads(offsets, ids, idx, k), (idx.len(), k), dev)?)
            }
        })
    }

    /// The mean loss: cross-entropy against the labels or the spread (an image without tags
    /// contributes nothing).
    fn loss(&self, logits: &Tensor) -> Result<Tensor, NnError> {
        match self {
            HardTarget::Labels(y) => Ok(candle_nn::loss::cross_entropy(logits, y)?),
            HardTarget::Spread(q) => {
                let b = logits.dim(0)?;
                let logp = candle_nn::ops::log_softmax(logits, 1)?;
                Ok(((q * logp)?.sum_all()? * (-1.0 / b as f64))?)
            }
        }
    }

    /// How many arg-max predictions are right (one of the image's classes), as a device scalar.
    pub(crate) fn correct(&self, logits: &Tensor) -> Result<Tensor, NnError> {
        let pred = logits.argmax(1)?;
        let hits = match self {
            HardTarget::Labels(y) => pred.eq(y)?,
            HardTarget::Spread(q) => q.gather(&pred.unsqueeze(1)?, 1)?.gt(0.0)?,
        };
        Ok(hits.to_dtype(DType::F64)?.sum_all()?)
    }
}

/// Teacher probabilities and log-probabilities at temperature `t` for images `idx`, computed
/// in f64 and rounded to f32 (`(idx.len() * k,)` each).
fn teacher_rows(teacher_logits: &[f32], k: usize, t: f32, idx: impl Iterator<Item = usize>) -> (Vec<f32>, Vec<f32>) {
    let mut logp = Vec::new();
    for i in idx {
        let row = &teacher_logits[i * k..(i + 1) * k];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64 / t as f64;
        let lse = row.iter().map(|&v| (v as f64 / t as f64 - max).exp()).sum::<f64>().ln() + max;
        logp.extend(row.iter().map(|&v| v as f64 / t as f64 - lse));
    }
    let p: Vec<f32> = logp.iter().map(|v| v.exp() as f32).collect();
    (p, logp.into_iter().map(|v| v as f32).collect())
}

/// `soft_weight * T^2 * KL(p || softmax(logits / T)) + (1 - soft_weight) * hard`, batch mean,
/// from the teacher's `(b, k)` probabilities `p` and log-probabilities `logp`.
fn distill_loss(
    logits: &Tensor,
    hard: Option<Tensor>,
    (p, logp): (Tensor, Tensor),
    t: f32,
    sw: f32,
) -> Result<Tensor, NnError> {
    let b = logits.dim(0)?;
    let student = candle_nn::ops::log_softmax(&(logits / t as f64)?, 1)?;
    let kl = (p * (logp - student)?)?.sum_all()?;
    let soft = (kl * ((t as f64) * (t as f64) / b as f64))?;
    Ok(match hard {
        Some(ce) => ((soft * sw as f64)? + (ce * (1.0 - sw as f64))?)?,
        None => soft,
    })
}

/// The mean loss of one batch built on the host (see the module docs).
fn batch_loss(logits: &Tensor, targets: &Targets, idx: &[usize]) -> Result<Tensor, NnError> {
    let dev = logits.device();
    let k = logits.dim(1)?;
    let Targets::Distill { teacher_logits, temperature: t, soft_weight: sw, .. } = *targets else {
        return HardTarget::from_host(targets.truth(), idx, k, dev)?.loss(logits);
    };
    let hard = if sw < 1.0 { Some(HardTarget::from_host(targets.truth(), idx, k, dev)?.loss(logits)?) } else { None };
    if sw == 0.0 {
        return Ok(hard.expect("soft_weight 0 keeps the hard term"));
    }
    let b = idx.len();
    let (p, logp) = teacher_rows(teacher_logits, k, t, idx.iter().copied());
    let teacher = (Tensor::from_vec(p, (b, k), dev)?, Tensor::from_vec(logp, (b, k), dev)?);
    distill_loss(logits, hard, teacher, t, sw)
}

/// The hard targets on the device.
enum ResidentTruth {
    /// `(n,)` u32 labels.
    Labels(Tensor),
    /// Tag sets, spread per batch on the device.
    Tags(ResidentTags),
    /// Tag sets too many for the padded table: spread per batch on the host.
    OnHost,
}

/// The data set and targets resident on the device ([`Pipeline::Resident`]).
struct Resident {
    images: ResidentImages,
    truth: ResidentTruth,
    /// Distillation: the teacher's `(n, k)` probabilities and log-probabilities at temperature T.
    teacher: Option<(Tensor, Tensor)>,
}

impl Resident {
    /// Uploads everything training reads; `None` when the data set is too large (see
    /// [`ResidentImages::upload`]).
    fn upload(
        data: &ImageData,
        targets: &Targets,
        lut: &[[f32; 256]],
        cfg: &TrainConfig,
        dev: &Device,
    ) -> Result<Option<Self>, NnError> {
        let Some(images) = ResidentImages::upload(data, lut, &cfg.augment, dev)? else { return Ok(None) };
        let truth = match targets.truth() {
            Truth::Labels(l) => ResidentTruth::Labels(Tensor::from_slice(l, l.len(), dev)?),
            Truth::Tags { offsets, ids } => {
                ResidentTags::upload(offsets, ids, dev)?.map_or(ResidentTruth::OnHost, ResidentTruth::Tags)
            }
        };
        let teacher = match *targets {
            Targets::Distill { num_classes: k, teacher_logits, temperature: t, soft_weight: sw, .. } if sw > 0.0 => {
                let (p, logp) = teacher_rows(teacher_logits, k, t, 0..data.n);
                Some((Tensor::from_vec(p, (data.n, k), dev)?, Tensor::from_vec(logp, (data.n, k), dev)?))
            }
            _ => None,
        };
        Ok(Some(Resident { images, truth, teacher }))
    }

    /// The hard target of images `idx` (`ids` on the device) over `k` classes: gathered labels,
    /// or tag spreads written on the device (on the host when the table was too wide).
    fn hard_target(&self, truth: &Truth, idx: &[usize], ids: &Tensor, k: usize) -> Result<HardTarget, NnError> {
        match &self.truth {
            ResidentTruth::Labels(labels) => Ok(HardTarget::Labels(labels.index_select(ids, 0)?)),
            ResidentTruth::Tags(tags) => Ok(HardTarget::Spread(tags.spread(ids, k)?)),
            ResidentTruth::OnHost => HardTarget::from_host(truth, idx, k, ids.device()),
        }
    }

    /// The batch loss, computed as [`batch_loss`] computes it from the same values.
    fn loss(&self, logits: &Tensor, targets: &Targets, hard: &HardTarget, ids: &Tensor) -> Result<Tensor, NnError> {
        let Targets::Distill { temperature: t, soft_weight: sw, .. } = *targets else {
            return hard.loss(logits);
        };
        let ce = if sw < 1.0 { Some(hard.loss(logits)?) } else { None };
        match &self.teacher {
            Some((p, logp)) => distill_loss(logits, ce, (p.index_select(ids, 0)?, logp.index_select(ids, 0)?), t, sw),
            None => Ok(ce.expect("soft_weight 0 keeps the hard term")),
        }
    }
}
