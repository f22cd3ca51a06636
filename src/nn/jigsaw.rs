//! Jigsaw (Noroozi & Favaro 2016) on the shared ResNet trunk: each of a puzzle's 9 tiles goes
//! through the same trunk (the ResNet up to its pooled res5, no `fc`), the 9 features are
//! concatenated in slot order, and a linear head over `9 * D` predicts which of the P
//! permutations shuffled the tiles.
//!
//! Shapes: tiles `(B * 9, C, t, t)` -> trunk `(B * 9, D)` -> `(B, 9 * D)` -> head `(B, P)`.
//!
//! Vars: the trunk's are the standard ResNet names (built with a 1-output `fc` that training never
//! touches), the head's are `jigsaw.weight` `(P, 9 D)` and `jigsaw.bias`. [`save`] writes the
//! trunk as an ordinary model file (its `fc` zeroed: a Jigsaw network has no whole-image
//! classifier) that `extract` reads like any other, and the head beside it.
//!
//! Training mirrors [`super::train()`]: epoch `e` draws its shuffle and, per image in batch order,
//! the permutation index and the 9 crop offsets `(dy, dx)` from one ChaCha8 stream seeded by
//! `(seed, e)`, so a run resumed from a [`TrainState`] is bit-identical to an uninterrupted one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::Rng;

use super::arch::Arch;
use super::cuda_params;
use super::data::{ImageData, Normalization};
use super::init::init_weights;
use super::jigsaw_resident::{fill_host_puzzles, Draws, ResidentPuzzles};
use super::pipeline::Pipeline;
use super::resident::EpochSums;
use super::resnet::{ResNet, ResNetConfig};
use super::run_config::TrainConfig;
use super::running_stats::{self, FlatStats};
use super::schedule::lr_at;
use super::sgd::Sgd;
use super::train::{finish_epoch, permutation, EpochTally, Paths, TrainObserver, Trained};
use super::{NnError, TrainState};
use crate::rng;
use crate::selfsup::permutations::{Perm, TILES};
use crate::selfsup::tiles::{TileNorm, TileSpec};

/// Var-name prefix of the Jigsaw head.
pub const HEAD_PREFIX: &str = "jigsaw.";

/// The trunk and the permutation classifier.
pub struct JigsawNet {
    trunk: ResNet,
    head: Linear,
}

impl JigsawNet {
    /// Builds (or, for vars already in `vb`'s map, reuses) the trunk of `arch` and a head for
    /// `classes` permutations.
    pub fn new(arch: &ResNetConfig, classes: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let trunk = ResNet::new(arch, vb.clone())?;
        let head = candle_nn::linear(TILES * arch.widths[3], classes, vb.pp("jigsaw"))?;
        Ok(JigsawNet { trunk, head })
    }

    /// `(B * 9, C, t, t)` tiles, slot after slot per puzzle -> `(B, P)` logits.
    pub fn forward_t(&self, tiles: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let f = self.trunk.embed(tiles, train)?;
        let (n, d) = f.dims2()?;
        super::dense::linear(&self.head, &f.reshape((n / TILES, TILES * d))?)
    }
}

/// The trunk architecture a Jigsaw network uses for `arch`: the same with a 1-output `fc`.
pub fn trunk_arch(arch: &ResNetConfig) -> ResNetConfig {
    ResNetConfig { num_classes: 1, ..arch.clone() }
}

/// Trains a Jigsaw network on `data` (images already `spec.grid` pixels square) with the
/// permutation set `perms`; `cfg.arch` must be a [`trunk_arch`]. Reports to `obs` like
/// [`super::train()`] and returns every var, head included. Off the CPU the puzzles are cut on
/// the device (`nn/jigsaw_resident.rs`), as [`super::train()`]'s batches are built there.
pub fn train_jigsaw(
    data: &ImageData,
    perms: &[Perm],
    spec: &TileSpec,
    cfg: &TrainConfig,
    device: &Device,
    resume: Option<TrainState>,
    obs: &mut dyn TrainObserver,
) -> Result<Trained, NnError> {
    train_jigsaw_with(data, Puzzles { perms, spec }, cfg, device, resume, obs, Paths::for_device(device))
}

/// The pretext task: the permutation set and the puzzles' geometry.
struct Puzzles<'a> {
    perms: &'a [Perm],
    spec: &'a TileSpec,
}

/// [`train_jigsaw`] with the batch pipeline and the running-statistics update chosen by the
/// caller (the tests run each on the CPU).
fn train_jigsaw_with(
    data: &ImageData,
    puzzles: Puzzles,
    cfg: &TrainConfig,
    device: &Device,
    resume: Option<TrainState>,
    obs: &mut dyn TrainObserver,
    paths: Paths,
) -> Result<Trained, NnError> {
    let Puzzles { perms, spec } = puzzles;
    let Paths { pipeline, stats: stats_update } = paths;
    data.validate()?;
    cfg.arch.validate()?;
    spec.validate().map_err(|e| NnError::invalid(e.to_string()))?;
    let Arch::ResNet(arch) = &cfg.arch else {
        return Err(NnError::invalid("jigsaw trains an image ResNet trunk, not a video network"));
    };
    if data.h != spec.grid || data.w != spec.grid || data.c != arch.in_channels || arch.num_classes != 1 {
        return Err(NnError::invalid(format!(
            "jigsaw needs {0}x{0} images with {1} channels and a trunk arch; got {2}x{3}x{4}, {5} outputs",
            spec.grid, arch.in_channels, data.c, data.h, data.w, arch.num_classes
        )));
    }
    if perms.len() < 2 || data.n == 0 || cfg.batch_size == 0 {
        return Err(NnError::invalid(format!(
            "jigsaw needs at least 2 permutations, images and batch_size > 0; got {}, {}, {}",
            perms.len(),
            data.n,
            cfg.batch_size
        )));
    }
    let (varmap, start, norm, mut history, buffers) = match resume {
        Some(state) => {
            state.check_resumable(cfg)?;
            (state.weights, state.epoch, state.norm, state.history, state.momentum)
        }
        None => (VarMap::new(), 0, Normalization::from_data(data)?, Vec::new(), BTreeMap::new()),
    };
    let fresh = varmap.all_vars().is_empty();
    let model = JigsawNet::new(arch, perms.len(), VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    if fresh {
        init_weights(&varmap, cfg.seed)?;
    }
    let mut sgd = Sgd::new(&varmap, cfg.momentum, cfg.weight_decay, buffers)?;
    let lut = norm.lut();
    let (n, bs, c, t) = (data.n, cfg.batch_size, data.c, spec.tile);
    let puzzle_len = TILES * c * t * t;
    let batches = n.div_ceil(bs);
    let resident = match pipeline {
        Pipeline::Host => None,
        Pipeline::Resident | Pipeline::ResidentSynced => ResidentPuzzles::upload(data.pixels, c, spec, &lut, device)?,
    };
    let synced = pipeline == Pipeline::ResidentSynced;
    tracing::debug!(pipeline = ?if resident.is_some() { pipeline } else { Pipeline::Host }, "jigsaw pipeline");
    tracing::debug!(update = ?stats_update, "bn running statistics");
    let mut stats = FlatStats::default();
    let mut xbuf = vec![0f32; if resident.is_some() { 0 } else { bs.min(n) * puzzle_len }];
    for epoch in start..cfg.epochs {
        let t0 = Instant::now();
        let mut rng = rng::stream(cfg.seed, "epoch", epoch as u64);
        let order = permutation(n, &mut rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        let mut sums = EpochSums::new(device)?;
        let first_lr = lr_at(cfg.lr, &cfg.schedule, cfg.warmup_epochs, cfg.epochs, batches, epoch * batches);
        for b in 0..batches {
            let idx = &order[b * bs..((b + 1) * bs).min(n)];
            // Per image in batch order: its permutation, then its 9 crop offsets.
            let mut labels = Vec::with_capacity(idx.len());
            let mut offsets = Vec::with_capacity(idx.len());
            for _ in idx {
                labels.push(rng.random_range(0..perms.len()) as u32);
                offsets.push(std::array::from_fn(|_| {
                    (rng.random_range(0..=spec.jitter()), rng.random_range(0..=spec.jitter()))
                }));
            }
            let chosen: Vec<&Perm> = labels.iter().map(|&class| &perms[class as usize]).collect();
            let draws = Draws { images: idx, perms: &chosen, offsets: &offsets };
            let x = match &resident {
                Some(res) => res.batch(&draws)?,
                None => {
                    let x = &mut xbuf[..idx.len() * puzzle_len];
                    fill_host_puzzles(data.pixels, c, spec, &lut, &draws, x);
                    Tensor::from_slice(x, (idx.len() * TILES, c, t, t), device)?
                }
            };
            let x = match spec.norm {
                TileNorm::Dataset => x,
                TileNorm::PerTile => standardize_tiles(&x)?,
            };
            let y = Tensor::from_slice(&labels, idx.len(), device)?;
            let lr = lr_at(cfg.lr, &cfg.schedule, cfg.warmup_epochs, cfg.epochs, batches, epoch * batches + b);
            // The network's ops only, as in `train`: the puzzles and their labels change every
            // step and would each stay in candle's cache (`cuda_params`).
            let (logits, handed) = cuda_params::during(device, || {
                running_stats::collecting_if(stats_update, || model.forward_t(&x, true))
            });
            let logits = logits?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = cuda_params::during(device, || loss.backward())?;
            cuda_params::during(device, || -> Result<(), NnError> {
                sgd.step(&grads, lr)?;
                Ok(stats.apply(handed)?)
            })?;
            if resident.is_some() {
                // On the device, read once per epoch (every batch with `resident-sync`).
                sums.add(&loss, idx.len(), &logits.argmax(1)?.eq(&y)?.to_dtype(DType::F64)?.sum_all()?)?;
                if synced {
                    sums.read()?;
                }
            } else {
                loss_sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
                let pred = logits.argmax(1)?.to_vec1::<u32>()?;
                correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            }
            obs.on_batch(epoch, b, batches);
        }
        if resident.is_some() {
            (loss_sum, correct) = sums.read()?;
        }
        // The checkpoint the observer writes reads the running statistics from their Vars.
        stats.write_back()?;
        let tally = EpochTally { epoch, loss_sum, correct, n, first_lr, started: t0 };
        finish_epoch(tally, &mut history, &varmap, &sgd, &norm, cfg, obs)?;
    }
    Ok(Trained { weights: varmap, arch: cfg.arch.clone(), norm, history })
}

/// Each tile's channels of `(B * 9, C, t, t)` tiles shifted and scaled to mean 0 and standard
/// deviation 1 (unbiased, as Noroozi & Favaro's loaders compute it), a constant channel set
/// to 0. The same tensor ops on either pipeline's tiles, so both keep the same bits. Any per-tile
/// affine change of the values (the data set's normalisation included) cancels, up to rounding.
fn standardize_tiles(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let flat = x.reshape((n, c, h * w))?;
    let centred = flat.broadcast_sub(&flat.mean_keepdim(2)?)?;
    let var = (centred.sqr()?.sum_keepdim(2)? / (h * w).saturating_sub(1).max(1) as f64)?;
    let std = var.sqrt()?;
    // A constant channel is told by its range, not its std: the f32 mean of n equal values is
    // not always that value, so the centred values share a rounding error whose own std would
    // scale them to about +-1. Such a channel is set to 0 (and divided by 1).
    let constant = flat.max_keepdim(2)?.eq(&flat.min_keepdim(2)?)?.to_dtype(std.dtype())?;
    let std = (&std + &constant)?;
    let kept = (constant.ones_like()? - &constant)?;
    centred.broadcast_mul(&kept)?.broadcast_div(&std)?.reshape((n, c, h, w))
}

/// Writes `dir/model.safetensors` (the trunk as a standard model, `fc` zeroed) and
/// `dir/jigsaw_head.safetensors` (the head's vars).
pub fn save(trained: &Trained, dir: &Path) -> Result<(), NnError> {
    let data = trained.weights.data().lock().expect("VarMap lock poisoned").clone();
    let trunk = VarMap::new();
    let mut head = std::collections::HashMap::new();
    {
        let mut out = trunk.data().lock().expect("VarMap lock poisoned");
        for (name, var) in data {
            if name.starts_with(HEAD_PREFIX) {
                head.insert(name, var.as_tensor().clone());
            } else if name.starts_with("fc.") {
                out.insert(name, candle_core::Var::from_tensor(&var.as_tensor().zeros_like()?)?);
            } else {
                out.insert(name, var);
            }
        }
    }
    super::save_model(&dir.join("model.safetensors"), &trunk, &trained.arch, &trained.norm)?;
    candle_core::safetensors::save(&head, dir.join("jigsaw_head.safetensors"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::running_stats::StatsUpdate;
    use crate::nn::{Augment, NoObserver, Schedule};
    use crate::selfsup::permutations::max_hamming_set;

    /// Two epochs of resnet_tiny's trunk on `channels`-channel images.
    fn recipe(channels: usize, batch_size: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            arch: trunk_arch(&ResNetConfig::resnet_tiny(channels, 10)).into(),
            epochs: 2,
            batch_size,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 0,
            schedule: Schedule::Cosine,
            augment: Augment::default(),
            seed,
            precision: Default::default(),
        }
    }

    /// The puzzles cut on the device (run here on the CPU device) train the host's bits, with the
    /// sums read per epoch or after every batch: weights, running statistics, the head and the
    /// curve. Jitter on, two channels, a short last batch.
    /// With either normalisation of the tiles; per tile trains other bits than the data set's.
    #[test]
    fn the_puzzle_pipelines_train_the_same_bits() {
        let (n, c) = (11, 2);
        let pixels: Vec<u8> = (0..n * c * 24 * 24).map(|v| ((v * 29 + v / 24 * 5) % 256) as u8).collect();
        let data = ImageData { pixels: &pixels, n, c, t: 1, h: 24, w: 24 };
        let (perms, _) = max_hamming_set(5, 0);
        let cfg = recipe(2, 4, 3);
        let go = |pipeline, norm| {
            let spec = TileSpec { grid: 24, tile: 6, norm };
            let puzzles = Puzzles { perms: &perms, spec: &spec };
            let paths = Paths { pipeline, stats: StatsUpdate::PerLayer };
            train_jigsaw_with(&data, puzzles, &cfg, &Device::Cpu, None, &mut NoObserver, paths).unwrap()
        };
        let mut seen = Vec::new();
        for norm in [TileNorm::Dataset, TileNorm::PerTile] {
            let host = bits(&go(Pipeline::Host, norm));
            for pipeline in [Pipeline::ResidentSynced, Pipeline::Resident] {
                assert_eq!(bits(&go(pipeline, norm)), host, "{pipeline:?}, {norm:?}");
            }
            seen.push(host);
        }
        assert_ne!(seen[0], seen[1], "per-tile normalisation changed nothing");
    }

    /// Per tile and channel: mean 0 and unbiased standard deviation 1, a constant channel all
    /// 0, and a tile made brighter and more contrasted (2 v + 30) gives the same values, so
    /// brightness and contrast tell no tile from its neighbours.
    #[test]
    fn tiles_are_standardised_each_on_its_own() {
        let (t, dev) = (4, Device::Cpu);
        let a: Vec<f32> = (0..t * t).map(|v| ((v * 7) % 11) as f32).collect();
        let brighter: Vec<f32> = a.iter().map(|v| 2.0 * v + 30.0).collect();
        // 0.1 is one whose f32 mean over 16 values is not 0.1 exactly.
        let constant = vec![0.1f32; t * t];
        let values: Vec<f32> = [a.clone(), constant, brighter, a].concat();
        let x = Tensor::from_vec(values, (2, 2, t, t), &dev).unwrap();
        let y = standardize_tiles(&x).unwrap().reshape((4, t * t)).unwrap().to_vec2::<f32>().unwrap();
        for row in [&y[0], &y[2], &y[3]] {
            let mean = row.iter().sum::<f32>() / row.len() as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (row.len() - 1) as f32;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "mean {mean}, var {var}");
        }
        assert!(y[1].iter().all(|&v| v == 0.0), "{:?}", y[1]);
        for (p, q) in y[0].iter().zip(&y[2]) {
            assert!((p - q).abs() < 1e-5, "{p} against {q}");
        }
        assert_eq!(y[0], y[3]);
    }

    /// Every var's bits by name, and the curve's (loss, accuracy) bits by epoch.
    type Bits = (BTreeMap<String, Vec<u32>>, Vec<(u64, u64)>);

    fn bits(t: &Trained) -> Bits {
        let vars = t.weights.data().lock().unwrap().clone();
        let weights = vars
            .iter()
            .map(|(k, v)| {
                let values = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (k.clone(), values.iter().map(|x| x.to_bits()).collect())
            })
            .collect();
        let curve = t.history.iter().map(|e| (e.loss.to_bits(), e.accuracy.to_bits())).collect();
        (weights, curve)
    }

    /// With candle's generic batch norm (the ops a GPU runs, whose layers hand their statistics
    /// over; the CPU's own kernels update them inside the op) the running statistics updated
    /// for all layers at once after each step train the per-layer update's bits, through both
    /// puzzle pipelines.
    #[test]
    fn flat_running_statistics_train_the_per_layer_bits() {
        let spec = TileSpec { grid: 24, tile: 6, norm: TileNorm::Dataset };
        let (n, c) = (10, 1);
        let pixels: Vec<u8> = (0..n * c * 24 * 24).map(|v| ((v * 23 + v / 24 * 3) % 256) as u8).collect();
        let data = ImageData { pixels: &pixels, n, c, t: 1, h: 24, w: 24 };
        let (perms, _) = max_hamming_set(4, 0);
        let cfg = recipe(1, 4, 5);
        crate::nn::with_cpu_kernels(crate::nn::CpuKernels::Candle, || {
            let go = |pipeline, stats| {
                let puzzles = Puzzles { perms: &perms, spec: &spec };
                let paths = Paths { pipeline, stats };
                bits(&train_jigsaw_with(&data, puzzles, &cfg, &Device::Cpu, None, &mut NoObserver, paths).unwrap())
            };
            let per_layer = go(Pipeline::Host, StatsUpdate::PerLayer);
            assert!(per_layer.0.keys().any(|k| k.ends_with("running_var")));
            for pipeline in [Pipeline::Host, Pipeline::Resident] {
                let before = running_stats::handed_on_this_thread();
                assert_eq!(go(pipeline, StatsUpdate::Flat), per_layer, "{pipeline:?}");
                assert!(running_stats::handed_on_this_thread() > before, "{pipeline:?}: no layer handed over");
            }
        });
    }

    #[test]
    fn trains_saves_a_loadable_trunk_and_resumes_bit_exactly() {
        let spec = TileSpec { grid: 24, tile: 7, norm: TileNorm::Dataset };
        let n = 12;
        let pixels: Vec<u8> = (0..n * 24 * 24).map(|v| ((v * 31 + v / 24 * 7) % 256) as u8).collect();
        let data = ImageData { pixels: &pixels, n, c: 1, t: 1, h: 24, w: 24 };
        let (perms, _) = max_hamming_set(4, 0);
        let cfg = recipe(1, 5, 1);
        let dev = Device::Cpu;
        let full = train_jigsaw(&data, &perms, &spec, &cfg, &dev, None, &mut NoObserver).unwrap();
        assert_eq!(full.history.len(), 2);
        assert!(full.history.iter().all(|e| e.loss.is_finite()));

        // Save after epoch 1 and stop there (as a kill would), then resume from the file.
        struct StopAfterOne(std::path::PathBuf);
        impl TrainObserver for StopAfterOne {
            fn on_batch(&mut self, _: usize, _: usize, _: usize) {}
            fn on_epoch(&mut self, _: &crate::nn::EpochStats, s: &TrainState) -> Result<(), NnError> {
                s.save(&self.0)?;
                Err(NnError::invalid("stopped"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state.safetensors");
        let stopped = train_jigsaw(&data, &perms, &spec, &cfg, &dev, None, &mut StopAfterOne(state_path.clone()));
        assert!(stopped.is_err());
        assert!(TrainState::load(&state_path, &dev).is_err(), "the head is not part of the ResNet");
        let state = TrainState::load_with_head(&state_path, &dev, Some(HEAD_PREFIX)).unwrap();
        let resumed = train_jigsaw(&data, &perms, &spec, &cfg, &dev, Some(state), &mut NoObserver).unwrap();
        let get = |t: &Trained, k: &str| {
            t.weights.data().lock().unwrap()[k].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        for k in ["jigsaw.weight", "res5.0.conv2.weight", "bn1.running_mean"] {
            assert_eq!(get(&full, k), get(&resumed, k), "{k}");
        }

        save(&full, dir.path()).unwrap();
        let (weights, meta) = crate::nn::load_model(&dir.path().join("model.safetensors"), &dev).unwrap();
        assert_eq!(meta.arch.num_classes(), 1);
        let whole = ImageData { pixels: &pixels[..2 * 576], n: 2, c: 1, t: 1, h: 24, w: 24 };
        let (feats, d) = crate::nn::extract(
            &weights,
            &meta.arch,
            &meta.norm,
            &whole,
            crate::nn::Tap::Res4,
            crate::nn::Pool::Avg,
            2,
            &dev,
        )
        .unwrap();
        assert_eq!((feats.len(), d), (16, 8));
        assert!(dir.path().join("jigsaw_head.safetensors").exists());
    }
}
