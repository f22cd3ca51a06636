//! End-to-end tests of training, determinism, resume, distillation, extraction and model files
//! on a small learnable problem: the class of a 1x16x16 image is which quadrant is bright.

use super::quadrants::{quadrant_images, quadrant_recipe};
use super::*;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::BTreeMap;

const SIDE: usize = 16;

/// `n` noisy images with one bright quadrant each, and their labels (the quadrant).
fn quadrants(n: usize, seed: u64) -> (Vec<u8>, Vec<u32>) {
    quadrant_images(n, SIDE, seed)
}

fn config(epochs: usize) -> TrainConfig {
    quadrant_recipe(epochs)
}

fn data(pixels: &[u8]) -> ImageData<'_> {
    ImageData { pixels, n: pixels.len() / (SIDE * SIDE), c: 1, t: 1, h: SIDE, w: SIDE }
}

/// Every var's values by name (the bytes that would be saved).
fn snapshot(vm: &VarMap) -> BTreeMap<String, Vec<f32>> {
    let data = vm.data().lock().unwrap();
    data.iter().map(|(k, v)| (k.clone(), v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())).collect()
}

fn bits(map: &BTreeMap<String, Vec<f32>>) -> BTreeMap<String, Vec<u32>> {
    map.iter().map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
}

fn run(pixels: &[u8], targets: &Targets, cfg: &TrainConfig) -> Trained {
    train(&data(pixels), targets, cfg, &Device::Cpu, None, &mut NoObserver).unwrap()
}

/// Saves the state after `at` epochs into `path`.
struct SaveAt {
    at: usize,
    path: std::path::PathBuf,
    batches: usize,
}

impl TrainObserver for SaveAt {
    fn on_batch(&mut self, _: usize, _: usize, _: usize) {
        self.batches += 1;
    }
    fn on_epoch(&mut self, stats: &EpochStats, state: &TrainState) -> Result<(), NnError> {
        if stats.epoch + 1 == self.at {
            state.save(&self.path)?;
        }
        Ok(())
    }
}

#[test]
fn training_learns_the_quadrant_problem() {
    let (pixels, labels) = quadrants(256, 1);
    let targets = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    let trained = run(&pixels, &targets, &config(4));
    let h = &trained.history;
    assert_eq!(h.len(), 4);
    assert!(h[3].loss < 0.5 * h[0].loss, "{h:?}");
    // Eval-mode accuracy on fresh images.
    let (test_pixels, test_labels) = quadrants(64, 2);
    let (out, k) =
        logits(&trained.weights, &trained.arch, &trained.norm, &data(&test_pixels), 50, &Device::Cpu).unwrap();
    let correct = out
        .chunks_exact(k)
        .zip(&test_labels)
        .filter(|(row, &l)| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 == l as usize)
        .count();
    assert!(correct >= 56, "eval accuracy {correct}/64");
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let (pixels, labels) = quadrants(96, 3);
    let targets = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    // Flips on too, so every augmentation draw is exercised.
    let cfg = TrainConfig { augment: Augment { crop_padding: 2, hflip: true, clip_frames: 0 }, ..config(2) };
    let a = run(&pixels, &targets, &cfg);
    let b = run(&pixels, &targets, &cfg);
    assert_eq!(bits(&snapshot(&a.weights)), bits(&snapshot(&b.weights)));
    let mut other = cfg.clone();
    other.seed = 8;
    let c = run(&pixels, &targets, &other);
    assert_ne!(bits(&snapshot(&a.weights)), bits(&snapshot(&c.weights)));
}

#[test]
fn resume_at_epoch_2_of_4_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    let (pixels, labels) = quadrants(80, 4);
    let targets = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    let cfg = config(4);
    let mut obs = SaveAt { at: 2, path: path.clone(), batches: 0 };
    let full = train(&data(&pixels), &targets, &cfg, &Device::Cpu, None, &mut obs).unwrap();
    assert_eq!(obs.batches, 4 * 3);
    let state = TrainState::load(&path, &Device::Cpu).unwrap();
    assert_eq!((state.epoch, state.history.len()), (2, 2));
    let mut obs2 = SaveAt { at: 0, path: path.clone(), batches: 0 };
    let resumed = train(&data(&pixels), &targets, &cfg, &Device::Cpu, Some(state), &mut obs2).unwrap();
    assert_eq!(obs2.batches, 2 * 3, "only the remaining epochs run");
    assert_eq!(bits(&snapshot(&full.weights)), bits(&snapshot(&resumed.weights)));
    // Every epoch's loss is bit-identical: the first two came back through the checkpoint's JSON,
    // which serde_json's `float_roundtrip` (on in Cargo.toml) reads back exactly.
    let losses = |t: &Trained| t.history.iter().map(|s| s.loss).collect::<Vec<_>>();
    assert_eq!(losses(&full), losses(&resumed));
    // A different config is refused.
    let mut other = cfg.clone();
    other.lr = 0.2;
    let state = TrainState::load(&path, &Device::Cpu).unwrap();
    assert!(train(&data(&pixels), &targets, &other, &Device::Cpu, Some(state), &mut NoObserver).is_err());
    // So is one of more epochs: its cosine schedule gives its first two epochs other steps.
    let longer = TrainConfig { epochs: 6, ..cfg.clone() };
    let state = TrainState::load(&path, &Device::Cpu).unwrap();
    assert!(train(&data(&pixels), &targets, &longer, &Device::Cpu, Some(state), &mut NoObserver).is_err());
}

#[test]
fn distillation_with_zero_soft_weight_equals_hard_training() {
    let (pixels, labels) = quadrants(64, 5);
    let teacher: Vec<f32> = (0..64 * 4).map(|i| (i % 7) as f32 - 3.0).collect();
    let hard = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    let soft0 = Targets::Distill {
        truth: Truth::Labels(&labels),
        num_classes: 4,
        teacher_logits: &teacher,
        temperature: 4.0,
        soft_weight: 0.0,
    };
    let a = run(&pixels, &hard, &config(2));
    let b = run(&pixels, &soft0, &config(2));
    assert_eq!(bits(&snapshot(&a.weights)), bits(&snapshot(&b.weights)));
    let soft = Targets::Distill {
        truth: Truth::Labels(&labels),
        num_classes: 4,
        teacher_logits: &teacher,
        temperature: 4.0,
        soft_weight: 0.5,
    };
    let c = run(&pixels, &soft, &config(2));
    assert_ne!(bits(&snapshot(&a.weights)), bits(&snapshot(&c.weights)));
}

#[test]
fn distillation_alone_learns_from_a_confident_teacher() {
    let (pixels, labels) = quadrants(256, 6);
    let teacher: Vec<f32> = labels.iter().flat_map(|&l| (0..4).map(move |k| if k == l { 6.0 } else { 0.0 })).collect();
    let targets = Targets::Distill {
        truth: Truth::Labels(&labels),
        num_classes: 4,
        teacher_logits: &teacher,
        temperature: 2.0,
        soft_weight: 1.0,
    };
    let h = run(&pixels, &targets, &config(4)).history;
    assert!(h[3].loss < 0.5 * h[0].loss && h[3].accuracy > 0.9, "{h:?}");
}

#[test]
fn feature_shapes_for_every_tap_and_pool() {
    let (pixels, labels) = quadrants(10, 7);
    let cfg = TrainConfig { epochs: 1, ..config(1) };
    let trained = run(&pixels, &Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 }, &cfg);
    let d = data(&pixels);
    // resnet_tiny: stem 4, widths 4/8/8/8; 16x16 -> 16, 16, 8, 4, 2.
    let maps = [(Tap::Conv1, 4, 16), (Tap::Res2, 4, 16), (Tap::Res3, 8, 8), (Tap::Res4, 8, 4), (Tap::Res5, 8, 2)];
    for (tap, c, s) in maps {
        for (pool, dim) in [(Pool::Avg, c), (Pool::Adaptive(2), c * 4), (Pool::Flatten, c * s * s)] {
            let (f, got) =
                extract(&trained.weights, &trained.arch, &trained.norm, &d, tap, pool, 4, &Device::Cpu).unwrap();
            assert_eq!((got, f.len()), (dim, 10 * dim), "{tap} {pool}");
            assert!(f.iter().all(|v| v.is_finite()));
        }
        assert_eq!(tap.to_string().parse::<Tap>().unwrap(), tap);
    }
    // The pooled res5 feature is what the head sees: logits = fc(res5 avg).
    let (emb, _) =
        extract(&trained.weights, &trained.arch, &trained.norm, &d, Tap::Res5, Pool::Avg, 3, &Device::Cpu).unwrap();
    let (lg, _) = logits(&trained.weights, &trained.arch, &trained.norm, &d, 7, &Device::Cpu).unwrap();
    let vars = trained.weights.data().lock().unwrap();
    let w = vars["fc.weight"].as_tensor();
    let b = vars["fc.bias"].as_tensor();
    let emb = Tensor::from_vec(emb, (10, 8), &Device::Cpu).unwrap();
    let want = emb.matmul(&w.t().unwrap()).unwrap().broadcast_add(b).unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(want.iter().zip(&lg).all(|(a, b)| (a - b).abs() < 1e-4));
}

/// Extraction's network (detached weights) computes the training network's eval-mode forward bit
/// for bit, in f32 on the CPU kernels and in f16 through the device convolution, and its outputs
/// record no autograd graph.
#[test]
fn inference_model_is_the_eval_forward_without_a_graph() {
    let (pixels, labels) = quadrants(8, 9);
    let trained = run(&pixels, &Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 }, &config(1));
    let full = build_model(&trained.arch, &trained.weights, &Device::Cpu, false).unwrap();
    let bare = checkpoint::build_inference_model(&trained.arch, &trained.weights, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (8, 1, SIDE, SIDE), &Device::Cpu).unwrap();
    for dtype in [candle_core::DType::F32, candle_core::DType::F16] {
        let x = x.to_dtype(dtype).unwrap();
        let (a, b) = (full.forward_t(&x, false).unwrap(), bare.forward_t(&x, false).unwrap());
        assert!(a.track_op() && !b.track_op(), "{dtype:?}");
        let bits = |t: &Tensor| -> Vec<u32> {
            let v = t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits(&a), bits(&b), "{dtype:?}");
    }
    let other = ResNetConfig::resnet_cpu(1, 4).into();
    assert!(checkpoint::build_inference_model(&other, &trained.weights, &Device::Cpu).is_err());
}

#[test]
fn model_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (pixels, labels) = quadrants(12, 8);
    let trained = run(&pixels, &Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 }, &config(1));
    trained.save(&path).unwrap();
    let (vm, meta) = load_model(&path, &Device::Cpu).unwrap();
    assert_eq!((&meta.arch, &meta.norm), (&trained.arch, &trained.norm));
    assert_eq!(bits(&snapshot(&vm)), bits(&snapshot(&trained.weights)));
    let d = data(&pixels);
    let a = extract(&vm, &meta.arch, &meta.norm, &d, Tap::Res4, Pool::Adaptive(2), 5, &Device::Cpu).unwrap();
    let b = extract(&trained.weights, &trained.arch, &trained.norm, &d, Tap::Res4, Pool::Adaptive(2), 5, &Device::Cpu)
        .unwrap();
    assert_eq!(a, b);
    // Weights of another architecture are refused rather than padded with random vars.
    let other = ResNetConfig::resnet_cpu(1, 4).into();
    assert!(extract(&vm, &other, &meta.norm, &d, Tap::Res5, Pool::Avg, 5, &Device::Cpu).is_err());
}

#[test]
fn invalid_inputs_are_rejected() {
    let (pixels, labels) = quadrants(8, 9);
    let bad_labels = vec![9u32; 8];
    let cfg = config(1);
    let dev = Device::Cpu;
    let t = Targets::Hard { truth: Truth::Labels(&bad_labels), num_classes: 4 };
    assert!(train(&data(&pixels), &t, &cfg, &dev, None, &mut NoObserver).is_err());
    let t = Targets::Hard { truth: Truth::Labels(&labels[..4]), num_classes: 4 };
    assert!(train(&data(&pixels), &t, &cfg, &dev, None, &mut NoObserver).is_err());
    let short = ImageData { pixels: &pixels[..100], n: 8, c: 1, t: 1, h: SIDE, w: SIDE };
    let t = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    assert!(train(&short, &t, &cfg, &dev, None, &mut NoObserver).is_err());
}

#[test]
fn single_tag_sets_train_like_labels() {
    let (pixels, labels) = quadrants(64, 5);
    let offsets: Vec<u32> = (0..=labels.len() as u32).collect();
    let tags = Targets::Hard { truth: Truth::Tags { offsets: &offsets, ids: &labels }, num_classes: 4 };
    let hard = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    let a = run(&pixels, &hard, &config(2)).history;
    let b = run(&pixels, &tags, &config(2)).history;
    for (x, y) in a.iter().zip(&b) {
        assert!((x.loss - y.loss).abs() < 1e-4 * x.loss.max(1.0), "{a:?} vs {b:?}");
        assert!((x.accuracy - y.accuracy).abs() < 0.05, "{a:?} vs {b:?}");
    }
}

#[test]
fn tag_sets_spread_the_target_over_every_tag() {
    // Every image carries its quadrant's tag and one of two tags that say nothing about the image;
    // the best prediction is the quadrant tag, and a prediction counts as right when it is in the set.
    let (pixels, labels) = quadrants(256, 6);
    let mut offsets = vec![0u32];
    let mut ids = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        ids.extend([l, 4 + (i % 2) as u32]);
        offsets.push(ids.len() as u32);
    }
    let targets = Targets::Hard { truth: Truth::Tags { offsets: &offsets, ids: &ids }, num_classes: 6 };
    let mut cfg = config(4);
    cfg.arch = ResNetConfig::resnet_tiny(1, 6).into();
    let h = run(&pixels, &targets, &cfg).history;
    // The uniform two-tag target has entropy ln 2: the loss cannot fall below it.
    assert!(h[3].loss > std::f64::consts::LN_2 - 1e-3 && h[3].loss < h[0].loss, "{h:?}");
    assert!(h[3].accuracy > 0.9, "{h:?}");
    let bad_ids: Vec<u32> = ids.iter().map(|&t| t + 6).collect();
    let bad = Targets::Hard { truth: Truth::Tags { offsets: &offsets, ids: &bad_ids }, num_classes: 6 };
    assert!(train(&data(&pixels), &bad, &cfg, &Device::Cpu, None, &mut NoObserver).is_err());
}

/// The device-resident pipeline, run on the CPU device, trains bit-identically to the host one,
/// with its sums read per epoch or after every batch:
/// the same batches, targets, losses and sums, for labels, tag sets and distillation (batch 32
/// over 70 images, so the last batch is short).
#[test]
fn resident_pipeline_equals_host_pipeline() {
    use super::pipeline::Pipeline;
    use super::running_stats::StatsUpdate;
    use super::train::{train_with, Paths};
    let (pixels, labels) = quadrants(70, 11);
    let teacher: Vec<f32> = (0..70 * 4).map(|i| (i % 7) as f32 - 3.0).collect();
    // Tag sets: the true quadrant, and for every third image also the next one.
    let (mut offsets, mut ids) = (vec![0u32], Vec::new());
    for (i, &l) in labels.iter().enumerate() {
        ids.push(l);
        if i % 3 == 0 {
            ids.push((l + 1) % 4);
        }
        offsets.push(ids.len() as u32);
    }
    let tags = Truth::Tags { offsets: &offsets, ids: &ids };
    let distill = |truth, soft_weight| Targets::Distill {
        truth,
        num_classes: 4,
        teacher_logits: &teacher,
        temperature: 3.0,
        soft_weight,
    };
    let cases = [
        Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 },
        Targets::Hard { truth: tags, num_classes: 4 },
        distill(Truth::Labels(&labels), 0.5),
        distill(tags, 1.0),
    ];
    let cfg = TrainConfig { augment: Augment { crop_padding: 2, hflip: true, clip_frames: 0 }, ..config(2) };
    for (case, targets) in cases.iter().enumerate() {
        let go = |pipeline| {
            let paths = Paths { pipeline, stats: StatsUpdate::PerLayer };
            train_with(&data(&pixels), targets, &cfg, &Device::Cpu, None, &mut NoObserver, paths).unwrap()
        };
        let curve =
            |t: &Trained| t.history.iter().map(|s| (s.loss.to_bits(), s.accuracy.to_bits())).collect::<Vec<_>>();
        let host = go(Pipeline::Host);
        for p in [Pipeline::ResidentSynced, Pipeline::Resident] {
            let resident = go(p);
            assert_eq!(bits(&snapshot(&host.weights)), bits(&snapshot(&resident.weights)), "case {case}, {p:?}");
            assert_eq!(curve(&host), curve(&resident), "case {case}, {p:?}");
        }
    }
}

/// Batch norm's running statistics updated for all layers at once after each step train the
/// same bits as layer by layer, through both pipelines, with candle's generic batch norm (the
/// ops a GPU runs; the CPU's own kernels update their statistics in the op). The per-epoch
/// checkpoints hold them too: resumed from the flat run's second epoch, a run ends the same.
#[test]
fn flat_running_statistics_train_the_per_layer_bits() {
    use super::pipeline::Pipeline;
    use super::running_stats::StatsUpdate;
    use super::train::{train_with, Paths};
    use super::{with_cpu_kernels, CpuKernels};
    /// Keeps what the runner would checkpoint after epoch 2 (the state's VarMap shares its Vars
    /// with the run, so the values are copied, as a checkpoint file would hold them).
    struct Keep(Option<TrainState>);
    impl TrainObserver for Keep {
        fn on_batch(&mut self, _: usize, _: usize, _: usize) {}
        fn on_epoch(&mut self, stats: &EpochStats, state: &TrainState) -> Result<(), NnError> {
            if stats.epoch == 1 {
                let weights = VarMap::new();
                for (name, var) in state.weights.data().lock().unwrap().iter() {
                    let copy = candle_core::Var::from_tensor(&var.as_tensor().copy()?)?;
                    weights.data().lock().unwrap().insert(name.clone(), copy);
                }
                self.0 = Some(TrainState { weights, ..state.clone() });
            }
            Ok(())
        }
    }
    let (pixels, labels) = quadrants(70, 13);
    let targets = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    let cfg = config(3);
    with_cpu_kernels(CpuKernels::Candle, || {
        for pipeline in [Pipeline::Host, Pipeline::Resident] {
            let go = |stats, resume, obs: &mut dyn TrainObserver| {
                let paths = Paths { pipeline, stats };
                train_with(&data(&pixels), &targets, &cfg, &Device::Cpu, resume, obs, paths).unwrap()
            };
            let mut kept = Keep(None);
            let per_layer = go(StatsUpdate::PerLayer, None, &mut NoObserver);
            let before = super::running_stats::handed_on_this_thread();
            let flat = go(StatsUpdate::Flat, None, &mut kept);
            assert!(super::running_stats::handed_on_this_thread() > before, "{pipeline:?}: no layer handed over");
            let resumed = go(StatsUpdate::PerLayer, kept.0.take(), &mut NoObserver);
            let all = bits(&snapshot(&per_layer.weights));
            assert!(all.keys().any(|k| k.ends_with("running_var")));
            assert_eq!(all, bits(&snapshot(&flat.weights)), "{pipeline:?}");
            assert_eq!(all, bits(&snapshot(&resumed.weights)), "{pipeline:?} resumed");
        }
    });
}

/// Mixed precision (f16 activations and convolutions, f32 weights and batch norm; bf16 takes
/// the same path but candle's CPU backend cannot multiply bf16) on a short run: it learns like
/// f32 and its weights and BN statistics stay f32.
#[test]
fn mixed_precision_tracks_f32_on_a_short_run() {
    let (pixels, labels) = quadrants(256, 12);
    let targets = Targets::Hard { truth: Truth::Labels(&labels), num_classes: 4 };
    let f32_run = run(&pixels, &targets, &config(4));
    let cfg = TrainConfig { precision: Precision::F16, ..config(4) };
    let half_run = run(&pixels, &targets, &cfg);
    let (a, b) = (&f32_run.history, &half_run.history);
    for (x, y) in a.iter().zip(b) {
        assert!((x.loss - y.loss).abs() <= 0.1 * x.loss.max(0.05), "epoch {}: f32 {} f16 {}", x.epoch, x.loss, y.loss);
    }
    assert!(b[3].loss < 0.5 * b[0].loss && b[3].accuracy > 0.9, "{b:?}");
    let vm = half_run.weights.data().lock().unwrap();
    assert!(vm.values().all(|v| v.dtype() == candle_core::DType::F32), "master weights and BN statistics stay f32");
}

/// A thread's kernel override holds on that thread only, nests, and is undone afterwards, also
/// when the closure panics; other threads keep the process-wide choice meanwhile.
#[test]
fn cpu_kernel_override_is_per_thread_and_scoped() {
    let global = cpu_kernels();
    with_cpu_kernels(CpuKernels::Candle, || {
        assert_eq!(cpu_kernels(), CpuKernels::Candle as u8);
        assert_eq!(std::thread::spawn(cpu_kernels).join().unwrap(), global);
        with_cpu_kernels(CpuKernels::Layers, || assert_eq!(cpu_kernels(), CpuKernels::Layers as u8));
        assert_eq!(cpu_kernels(), CpuKernels::Candle as u8);
    });
    assert_eq!(cpu_kernels(), global);
    let panicked = std::panic::catch_unwind(|| with_cpu_kernels(CpuKernels::Candle, || panic!("inside")));
    assert!(panicked.is_err());
    assert_eq!(cpu_kernels(), global);
}
