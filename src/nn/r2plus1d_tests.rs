use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::nn::{self, Arch, ImageData, ResNetConfig, Targets, TrainConfig};

fn tiny(classes: usize) -> (R2Plus1DConfig, VarMap, R2Plus1D) {
    let cfg = R2Plus1DConfig::preset("r2plus1d_tiny", 1, classes).unwrap();
    let vm = VarMap::new();
    let model = R2Plus1D::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    nn::init_weights(&vm, 0).unwrap();
    (cfg, vm, model)
}

#[test]
fn output_shapes_for_every_tap() {
    let (_, _, model) = tiny(5);
    let x = Tensor::randn(0f32, 1.0, (2, 1, 8, 16, 16), &Device::Cpu).unwrap();
    let want: [(Tap, [usize; 5]); 5] = [
        (Tap::Conv1, [2, 4, 8, 8, 8]),
        (Tap::Res2, [2, 4, 8, 8, 8]),
        (Tap::Res3, [2, 8, 4, 4, 4]),
        (Tap::Res4, [2, 8, 2, 2, 2]),
        (Tap::Res5, [2, 8, 1, 1, 1]),
    ];
    for (tap, dims) in want {
        for train in [false, true] {
            assert_eq!(model.forward_to(&x, tap, train).unwrap().dims(), dims, "{tap} train={train}");
        }
    }
    assert_eq!(model.embed(&x, false).unwrap().dims(), [2, 8]);
    assert_eq!(model.forward_t(&x, true).unwrap().dims(), [2, 5]);
    // A single image is a one-frame clip; odd frame counts skip the temporal stride.
    let img = Tensor::randn(0f32, 1.0, (3, 1, 16, 16), &Device::Cpu).unwrap();
    assert_eq!(model.forward_to(&img, Tap::Res5, false).unwrap().dims(), [3, 8, 1, 1, 1]);
    let odd = Tensor::randn(0f32, 1.0, (1, 1, 5, 16, 16), &Device::Cpu).unwrap();
    assert_eq!(model.forward_to(&odd, Tap::Res3, false).unwrap().dims(), [1, 8, 5, 4, 4]);
    assert_eq!(mid_width(64, 64, 3, 3), 144, "R(2+1)D paper: 3*9*64*64 / (9*64 + 3*64)");
}

#[test]
fn temporal_conv_reads_the_neighbouring_frames() {
    // Weight (1, 1, 3, 1) = [1, 0, 0]: output frame t is input frame t - 1 (zero for t = 0).
    let weight = Tensor::from_vec(vec![1f32, 0.0, 0.0], (1, 1, 3, 1), &Device::Cpu).unwrap();
    let conv = Temporal { weight, kt: 3 };
    let x = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((4, 1, 3, 1)).unwrap();
    let y = conv.forward(&Frames { x, t: 4 }, 1).unwrap();
    let v: Vec<f32> = y.x.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![0., 0., 0., 0., 1., 2., 3., 4., 5., 6., 7., 8.]);
    let y2 = conv.forward(&Frames { x: y.x.clone(), t: 4 }, 2).unwrap();
    assert_eq!(y2.t, 2);
    let v: Vec<f32> = y2.x.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v, vec![0., 0., 0., 0., 1., 2.], "stride 2 keeps frames 0 and 2");
}

#[test]
fn arch_json_keeps_the_resnet_form_and_tells_video_apart() {
    let r = ResNetConfig::resnet_tiny(1, 3);
    let a: Arch = r.clone().into();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&r).unwrap());
    let v: Arch = R2Plus1DConfig::preset("r2plus1d_small", 1, 7).unwrap().into();
    for arch in [a, v] {
        let back: Arch = serde_json::from_str(&serde_json::to_string(&arch).unwrap()).unwrap();
        assert_eq!(back, arch);
    }
    assert!(Arch::preset("r2plus1d_large", 1, 2).unwrap().is_video());
    assert!(!Arch::preset("resnet_cpu", 1, 2).unwrap().is_video());
}

/// Clips of a bright bar moving right (class 0) or left (class 1) from random starts: every
/// frame is equally likely in both classes, so only temporal order tells them apart.
fn left_right(n: usize, t: usize, side: usize) -> (Vec<u8>, Vec<u32>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut pixels = vec![0u8; n * t * side * side];
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    for (i, clip) in pixels.chunks_exact_mut(t * side * side).enumerate() {
        let start = rng.random_range(0..side - t);
        for (f, frame) in clip.chunks_exact_mut(side * side).enumerate() {
            let x = if labels[i] == 0 { start + f } else { start + t - 1 - f };
            for y in 2..side - 2 {
                frame[y * side + x] = 255;
            }
        }
    }
    (pixels, labels)
}

#[test]
fn learns_a_direction_that_no_single_frame_shows_and_is_deterministic() {
    let (n, t, side) = (64, 4, 12);
    let (pixels, labels) = left_right(n, t, side);
    let data = ImageData { pixels: &pixels, n, c: 1, t, h: side, w: side };
    let cfg = TrainConfig {
        arch: R2Plus1DConfig { stem_stride: 1, ..R2Plus1DConfig::preset("r2plus1d_tiny", 1, 2).unwrap() }.into(),
        epochs: 12,
        batch_size: 16,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
        warmup_epochs: 0,
        schedule: nn::Schedule::Constant,
        augment: nn::Augment::default(),
        seed: 1,
        precision: Default::default(),
    };
    let targets = Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 2 };
    let a = nn::train(&data, &targets, &cfg, &Device::Cpu, None, &mut nn::NoObserver).unwrap();
    let last = a.history.last().unwrap();
    assert!(last.accuracy > 0.9, "train accuracy {:?}", a.history.iter().map(|h| h.accuracy).collect::<Vec<_>>());
    let b = nn::train(&data, &targets, &cfg, &Device::Cpu, None, &mut nn::NoObserver).unwrap();
    assert_eq!(
        a.history.iter().map(|h| h.loss).collect::<Vec<_>>(),
        b.history.iter().map(|h| h.loss).collect::<Vec<_>>()
    );
    // Clips into an image network are refused, not silently flattened.
    let image_cfg = TrainConfig { arch: ResNetConfig::resnet_tiny(1, 2).into(), ..cfg };
    assert!(nn::train(&data, &targets, &image_cfg, &Device::Cpu, None, &mut nn::NoObserver).is_err());
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0).unwrap().to_scalar().unwrap()
}

/// A tiny-preset network with 3x8x8 clips' worth of weights, and random gamma/beta so BN's
/// affine part is exercised; equal seeds give equal networks.
fn randomised(cfg: &R2Plus1DConfig) -> (VarMap, R2Plus1D) {
    use rand::{Rng, SeedableRng};
    let vm = VarMap::new();
    let model = R2Plus1D::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    nn::init_weights(&vm, 3).unwrap();
    for (name, v) in vm.data().lock().unwrap().iter() {
        if v.rank() == 1 && !name.contains("running") && !name.starts_with("fc") {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(name.bytes().map(u64::from).sum());
            let vals: Vec<f32> = (0..v.elem_count()).map(|_| rng.random_range(0.5..1.5)).collect();
            v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
        }
    }
    (vm, model)
}

fn clips(n: usize, t: usize, side: usize, seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * t * side * side).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, (n, 1, t, side, side), &Device::Cpu).unwrap()
}

/// The fused ops (stem and blocks, with and without projection shortcuts, temporal strides
/// 1 and 2) against one op per layer: outputs in train and eval mode, every var's gradient
/// and the running statistics.
#[test]
fn fused_ops_match_per_layer_ops() {
    // Frames 8 (every temporal stride applies), 3 (none does) and 1 (images).
    for (i, &(t, side, stem_stride)) in [(8, 12, 2), (3, 8, 1), (1, 8, 1)].iter().enumerate() {
        let mut cfg = R2Plus1DConfig::preset("r2plus1d_tiny", 1, 3).unwrap();
        cfg.stem_stride = stem_stride;
        cfg.widths = [4, 6, 6, 8];
        cfg.blocks = [2, 1, 1, 1];
        let ((vma, a), (vmb, b)) = (randomised(&cfg), randomised(&cfg));
        let x = clips(9, t, side, i as u64);
        for (name, tap) in [("conv1", Tap::Conv1), ("res5", Tap::Res5)] {
            let ya = a.frames_to_with(&x, tap, false, true).unwrap().x;
            let yb = b.frames_to_with(&x, tap, false, false).unwrap().x;
            assert!(max_diff(&ya, &yb) < 1e-4, "eval {name} case {i}: {}", max_diff(&ya, &yb));
        }
        let ya = a.frames_to_with(&x, Tap::Res5, true, true).unwrap();
        let yb = b.frames_to_with(&x, Tap::Res5, true, false).unwrap();
        assert_eq!((ya.x.dims(), ya.t), (yb.x.dims(), yb.t));
        assert!(max_diff(&ya.x, &yb.x) < 1e-4, "train case {i}: {}", max_diff(&ya.x, &yb.x));
        let up = clips(ya.x.elem_count(), 1, 1, 99).reshape(ya.x.shape()).unwrap();
        let ga = (ya.x * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (yb.x * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let (da, db) = (vma.data().lock().unwrap(), vmb.data().lock().unwrap());
        let mut checked = 0;
        for (name, va) in da.iter() {
            let vb = &db[name];
            if name.contains("running") {
                assert!(max_diff(va.as_tensor(), vb.as_tensor()) < 1e-4, "{name} case {i}");
            } else if !name.starts_with("fc") {
                let (p, q) = (ga.get(va.as_tensor()).unwrap(), gb.get(vb.as_tensor()).unwrap());
                let scale = 1.0 + q.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(max_diff(p, q) < 1e-3 * scale, "grad {name} case {i}: {} (scale {scale})", max_diff(p, q));
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked} gradients compared");
    }
}

/// A training step's loss and gradients are bit-identical with 1 and 3 threads.
#[test]
fn fused_training_step_is_independent_of_the_thread_count() {
    let cfg = R2Plus1DConfig::preset("r2plus1d_tiny", 1, 3).unwrap();
    let x = clips(20, 4, 12, 7);
    let y = Tensor::from_vec((0..20u32).map(|i| i % 3).collect::<Vec<_>>(), 20, &Device::Cpu).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (vm, model) = randomised(&cfg);
            let loss = candle_nn::loss::cross_entropy(&model.forward_t(&x, true).unwrap(), &y).unwrap();
            let grads = loss.backward().unwrap();
            let mut out = vec![loss.to_scalar::<f32>().unwrap()];
            let data = vm.data().lock().unwrap();
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for v in names.into_iter().map(|n| &data[n]) {
                let t = grads.get(v.as_tensor()).cloned().unwrap_or_else(|| v.as_tensor().clone());
                out.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            out
        })
    };
    let (one, three) = (run(1), run(3));
    assert_eq!(
        one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        three.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

/// The count agrees with the convolutions a forward pass runs, recorded one by one: spatial,
/// temporal (a 1x1 conv over the stacked shifted frames) and shortcut convolutions, for an even
/// clip (the temporal strides apply), an odd one (they are skipped) and a single image.
#[test]
fn forward_macs_match_the_convolutions_a_forward_pass_runs() {
    use crate::nn::layer_log::{recorded_conv_macs, recorded_conv_outputs, recording_counted};
    use crate::nn::{with_cpu_kernels, CpuKernels};
    let mut wide = R2Plus1DConfig::preset("r2plus1d_small", 2, 6).unwrap();
    wide.blocks = [2, 1, 1, 2];
    wide.temporal_kernel = 5;
    for cfg in [R2Plus1DConfig::preset("r2plus1d_tiny", 1, 5).unwrap(), wide] {
        let vm = VarMap::new();
        let net = R2Plus1D::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        for (t, h, w) in [(8, 16, 16), (5, 13, 9), (1, 12, 12)] {
            let xs = Tensor::zeros((1, cfg.in_channels, t, h, w), DType::F32, &Device::Cpu).unwrap();
            let (logits, calls) =
                recording_counted(|| with_cpu_kernels(CpuKernels::Layers, || net.forward_t(&xs, false)));
            assert_eq!(logits.unwrap().dims(), &[1, cfg.num_classes]);
            let head = (cfg.widths[3] * cfg.num_classes) as u64;
            assert_eq!(cfg.forward_macs(t, h, w), recorded_conv_macs(&calls) + head, "{cfg:?} at {t}x{h}x{w}");
            assert_eq!(cfg.conv_outputs(t, h, w), recorded_conv_outputs(&calls), "{cfg:?} at {t}x{h}x{w}");
        }
    }
}
