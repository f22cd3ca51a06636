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
