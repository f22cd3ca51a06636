//! `cfrun check-device`: does this device compute what the CPU computes? Trains every network
//! preset for two SGD steps, runs k-means and a linear probe, on the CPU's own kernels (the
//! reference) and on the device, and compares within float-rounding tolerances.
//!
//! On a GPU this is the GPU test subset. On the CPU the "device" side runs candle's generic ops,
//! which is what the GPU runs too, so the comparison is meaningful (and tested) without a GPU.

use std::time::Instant;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cluster::{self, Init, KMeansConfig};
use crate::eval::{self, ProbeConfig};
use crate::nn::{self, Arch, Augment, CpuKernels, ImageData, Schedule, TrainConfig};

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was compared.
    pub what: String,
    /// The largest difference found (relative where the tolerance says so).
    pub difference: f64,
    /// The largest difference accepted.
    pub tolerance: f64,
    /// `difference <= tolerance`.
    pub ok: bool,
    /// Wall seconds of the reference and the device run.
    pub seconds: (f64, f64),
}

fn check(what: String, difference: f64, tolerance: f64, seconds: (f64, f64)) -> Check {
    Check { what, ok: difference <= tolerance, difference, tolerance, seconds }
}

/// Runs `f` on the device side, timed: with candle's generic ops when the device is the CPU.
fn on_device<T>(device: &Device, f: impl FnOnce() -> T) -> (T, f64) {
    if !device.is_cpu() {
        return timed(f);
    }
    nn::set_cpu_kernels(CpuKernels::Candle);
    let out = timed(f);
    nn::set_cpu_kernels(CpuKernels::Fused);
    out
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

/// ||a - b|| / ||a|| over every var of two trained networks together: one number that float
/// reordering keeps small and a wrong kernel does not. Single vars drift further without anything
/// being wrong: a batch-norm bias's gradient is a sum of many terms of both signs, so on random
/// images its rounding error is ~1% of its (tiny) value after one step, on the CPU kernels against
/// candle's ops just as on a GPU. Hence 5e-3 for the weights; the losses agree to ~1e-4 or better.
fn weight_difference(a: &nn::Trained, b: &nn::Trained) -> Result<f64, String> {
    let (a, b) = (a.weights.data().lock().unwrap(), b.weights.data().lock().unwrap());
    let (mut diff, mut norm) = (0f64, 0f64);
    for (name, va) in a.iter() {
        let vb = b.get(name).ok_or_else(|| format!("var {name} missing on the device side"))?;
        let flat = |v: &candle_core::Var| -> Result<Vec<f32>, String> {
            v.as_tensor().to_device(&Device::Cpu).and_then(|t| t.flatten_all()?.to_vec1()).map_err(|e| e.to_string())
        };
        for (x, y) in flat(va)?.iter().zip(flat(vb)?) {
            diff += f64::from(x - y).powi(2);
            norm += f64::from(*x).powi(2);
        }
    }
    Ok((diff / norm.max(1e-30)).sqrt())
}

fn preset_checks(device: &Device, presets: &[String], out: &mut Vec<Check>) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 64;
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let targets = nn::Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 10 };
    for preset in presets {
        let arch = Arch::preset(preset, 1, 10)
            .ok_or_else(|| format!("unknown preset `{preset}`; valid: {}", nn::PRESETS.join(", ")))?;
        // Images of 28 x 28, or clips of 4 frames of 32 x 32 for the video networks.
        let (t, side) = if arch.is_video() { (4, 32) } else { (1, 28) };
        let pixels: Vec<u8> = (0..n * t * side * side).map(|_| rng.random()).collect();
        let data = ImageData { pixels: &pixels, n, c: 1, t, h: side, w: side };
        let cfg = TrainConfig {
            arch,
            epochs: 1,
            batch_size: 32,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 0,
            schedule: Schedule::Constant,
            augment: Augment { crop_padding: 0, hflip: false, clip_frames: 0 },
            seed: 3,
            precision: Default::default(),
        };
        let train = |dev: &Device| nn::train(&data, &targets, &cfg, dev, None, &mut nn::NoObserver);
        let (reference, t0) = timed(|| train(&Device::Cpu));
        let (subject, t1) = on_device(device, || train(device));
        let (reference, subject) = (reference.map_err(|e| e.to_string())?, subject.map_err(|e| e.to_string())?);
        let (la, lb) = (reference.history[0].loss, subject.history[0].loss);
        out.push(check(
            format!("{preset}: forward + backward, loss of 2 steps (relative)"),
            (la - lb).abs() / la,
            1e-3,
            (t0, t1),
        ));
        out.push(check(
            format!("{preset}: weights after 2 SGD steps (relative L2)"),
            weight_difference(&reference, &subject)?,
            5e-3,
            (t0, t1),
        ));
    }
    Ok(())
}

fn kmeans_check(device: &Device, out: &mut Vec<Check>) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (n, d) = (6000, 64);
    let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let cfg = KMeansConfig {
        k: 50,
        iterations: 10,
        init: Init::Random,
        seed: 5,
        normalize: true,
        max_points_per_centroid: None,
    };
    let (reference, t0) = timed(|| cluster::fit(&x, n, d, &cfg, &mut |_, _| {}));
    let (subject, t1) = on_device(device, || cluster::fit_with_tensors(&x, n, d, &cfg, device, &mut |_, _| {}));
    let (reference, subject) = (reference.map_err(|e| e.to_string())?, subject.map_err(|e| e.to_string())?);
    let (a, b) = (
        reference.inertia_per_iter.last().copied().unwrap_or(0.0),
        subject.inertia_per_iter.last().copied().unwrap_or(0.0),
    );
    out.push(check(
        "k-means 6000 x 64, K=50: final inertia (relative)".into(),
        (a - b).abs() / a.max(1e-12),
        1e-4,
        (t0, t1),
    ));
    let (la, _) = cluster::assign(&reference, &x, n).map_err(|e| e.to_string())?;
    let (lb, _) = cluster::assign(&subject, &x, n).map_err(|e| e.to_string())?;
    let differ = la.iter().zip(&lb).filter(|(p, q)| p != q).count() as f64 / n as f64;
    out.push(check("k-means: share of points assigned differently".into(), differ, 0.005, (t0, t1)));
    Ok(())
}

fn probe_check(device: &Device, out: &mut Vec<Check>) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let d = 32;
    let mut make = |n: usize| {
        let y: Vec<u32> = (0..n).map(|i| (i % 8) as u32).collect();
        let x: Vec<f32> = y
            .iter()
            .flat_map(|&l| (0..d).map(move |j| if j % 8 == l as usize { 1.0f32 } else { 0.0 }))
            .map(|v| v + rng.random_range(-1.5f32..1.5))
            .collect();
        (x, y)
    };
    let (tx, ty) = make(4000);
    let (vx, vy) = make(1000);
    let cfg = ProbeConfig::default();
    let data = eval::ProbeData { train_x: &tx, train_y: &ty, test_x: &vx, test_y: &vy, d, num_classes: 8 };
    let (reference, t0) = timed(|| eval::linear_probe(data, &cfg, &mut |_, _| {}));
    let (subject, t1) = on_device(device, || eval::probe_with_tensors(device, data, &cfg, &mut |_, _| {}));
    let (reference, subject) = (reference.map_err(|e| e.to_string())?, subject.map_err(|e| e.to_string())?);
    out.push(check(
        "linear probe 4000 x 32, 8 classes: test top-1 (points)".into(),
        100.0 * (reference.test_top1 - subject.test_top1).abs(),
        1.0,
        (t0, t1),
    ));
    Ok(())
}

/// Every comparison, in order, for the network `presets`; an error means a side could not run.
pub fn run_checks(device: &Device, presets: &[String]) -> Result<Vec<Check>, String> {
    let mut out = Vec::new();
    preset_checks(device, presets, &mut out)?;
    kmeans_check(device, &mut out)?;
    probe_check(device, &mut out)?;
    Ok(out)
}
