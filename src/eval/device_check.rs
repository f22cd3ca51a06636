//! `cfrun check-device`: does this device compute what the CPU computes? Trains every network
//! preset for two SGD steps, runs k-means and a linear probe, on the CPU's own kernels (the
//! reference) and on the device, and compares within float-rounding tolerances.
//!
//! On a GPU this is the GPU test subset. On the CPU the "device" side runs candle's generic ops,
//! which is what the GPU runs too, so the comparison is meaningful (and tested) without a GPU.
//!
//! How far two correct f32 implementations of a network may drift apart in two SGD steps is not
//! one number: on random images with unlearnable labels a ReLU network's gradient is a cancelling
//! sum, a pre-activation within rounding of zero can fall on the other side of its ReLU, and each
//! such flip moves the sum by percents (measured: `docs/gpu-prep.md`, "check-device failed on the
//! CPU"). So each preset's training comparison measures its own rounding spread first: the
//! reference run repeated from initial weights perturbed by a relative 2^-20, about the rounding a
//! forward pass accumulates, and the device may differ from the reference by up to
//! `SPREAD_FACTOR` times the largest difference those perturbations made, or by the fixed
//! floors, whichever is larger. A well-conditioned network keeps the floors; a chaotic one gets room
//! in proportion to a measured spread, which the check prints beside its verdict.
//!
//! That room is wide for the deep video presets, and even the floors let a weight gradient that
//! drops one of nine taps pass every training row but one (`docs/gpu-prep.md`). So every
//! convolution and batch norm the device ran is also replayed alone (`device_check/layers.rs`),
//! where f32 agrees to ~1e-5 and a wrong kernel misses by far more.

mod layers;

use std::time::Instant;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::candle_error::Brief;
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
    /// Why the device side could not run this comparison at all (then `ok` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn check(what: String, difference: f64, tolerance: f64, seconds: (f64, f64)) -> Check {
    Check { what, ok: difference <= tolerance, difference, tolerance, seconds, error: None }
}

/// A comparison the device side failed to run: recorded, so that one failing op does not hide
/// the verdicts of every other comparison.
fn failed(what: String, error: impl ToString, tolerance: f64, seconds: (f64, f64)) -> Check {
    Check { what, ok: false, difference: f64::NAN, tolerance, seconds, error: Some(error.to_string()) }
}

/// The device side's result, or `None` with a failed check for `what` pushed in its place.
fn device_result<T, E: ToString>(
    subject: Result<T, E>,
    what: &str,
    tolerance: f64,
    seconds: (f64, f64),
    out: &mut Vec<Check>,
) -> Option<T> {
    subject.map_err(|e| out.push(failed(what.into(), e, tolerance, seconds))).ok()
}

/// Runs `f` on the device side, timed: with candle's generic ops when the device is the CPU.
fn on_device<T>(device: &Device, f: impl FnOnce() -> T) -> (T, f64) {
    if !device.is_cpu() {
        return timed(f);
    }
    nn::with_cpu_kernels(CpuKernels::Candle, || timed(f))
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
    let mut total = RelativeL2::default();
    for (name, va) in a.iter() {
        let vb = b.get(name).ok_or_else(|| format!("var {name} missing on the device side"))?;
        let flat = |v: &candle_core::Var| host(v.as_tensor()).map_err(|e| Brief(&e).to_string());
        total.add(&flat(va)?, &flat(vb)?);
    }
    Ok(total.value())
}

/// `||a - b|| / ||a||`, summed over any number of slice pairs.
#[derive(Default)]
struct RelativeL2 {
    diff: f64,
    norm: f64,
}

impl RelativeL2 {
    fn add(&mut self, a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            self.diff += f64::from(x - y).powi(2);
            self.norm += f64::from(*x).powi(2);
        }
    }

    fn value(&self) -> f64 {
        (self.diff / self.norm.max(1e-30)).sqrt()
    }

    /// `||a - b|| / ||a||` of one pair.
    fn of(a: &[f32], b: &[f32]) -> f64 {
        let mut total = RelativeL2::default();
        total.add(a, b);
        total.value()
    }
}

/// A tensor's values, flattened, on the host.
fn host(t: &candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_device(&Device::Cpu)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()
}

/// Whether `d` is a worse difference than `worst`: NaN is the worst of all and stays so.
fn worse(d: f64, worst: f64) -> bool {
    !worst.is_nan() && (d.is_nan() || d > worst)
}

/// |a - b| / a of two runs' first-epoch losses.
fn loss_difference(a: &nn::Trained, b: &nn::Trained) -> f64 {
    let (la, lb) = (a.history[0].loss, b.history[0].loss);
    (la - lb).abs() / la
}

/// Relative size of the perturbations of the initial weights that measure the rounding spread:
/// 2^-20, about 8 f32 ulps, what a dot product of a few hundred terms accumulates.
const PERTURBATION: f64 = 1.0 / (1u64 << 20) as f64;
/// Perturbed reference runs per preset (the spread is the largest difference among them).
const SPREAD_RUNS: u64 = 2;
/// How many times the measured spread a device may differ from the reference: an order of
/// magnitude, since the device's rounding enters at every op and not only at the start, while a
/// wrong kernel's error does not scale with rounding at all.
const SPREAD_FACTOR: f64 = 10.0;

/// The reference training run again from `start`'s weights with each trainable weight scaled by
/// `1 + PERTURBATION * u`, `u` uniform in [-1, 1] drawn from `seed` (no perturbation when `seed` is
/// `None`: the same run as from scratch).
fn perturbed_run(
    start: &nn::Trained,
    data: &ImageData,
    targets: &nn::Targets,
    cfg: &TrainConfig,
    seed: Option<u64>,
) -> Result<nn::Trained, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.unwrap_or(0));
    // By name, in order, so the draws fall on the same weights every time; copies, because a
    // var's own tensor would share (and train) `start`'s storage.
    let mut scale = |t: &candle_core::Tensor| -> candle_core::Result<candle_core::Tensor> {
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let v: Vec<f32> =
            v.iter().map(|&x| (f64::from(x) * (1.0 + PERTURBATION * rng.random_range(-1.0..=1.0))) as f32).collect();
        candle_core::Tensor::from_vec(v, t.shape(), t.device())
    };
    let tensors = nn::checkpoint::var_tensors(&start.weights)
        .into_iter()
        .map(|(name, t)| {
            let t = if seed.is_some() && nn::sgd::is_trainable(&name) { scale(&t)? } else { t.copy()? };
            Ok((name, t))
        })
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(|e| Brief(&e).to_string())?;
    let weights = nn::checkpoint::varmap_from(tensors, &Device::Cpu).map_err(|e| e.to_string())?;
    let state = nn::TrainState {
        epoch: 0,
        weights,
        momentum: Default::default(),
        norm: start.norm.clone(),
        history: Vec::new(),
        config: cfg.clone(),
    };
    nn::train(data, targets, cfg, &Device::Cpu, Some(state), &mut nn::NoObserver).map_err(|e| e.to_string())
}

/// The largest loss (relative) and weight differences between `reference` and its reruns from
/// perturbed initial weights.
fn rounding_spread(
    reference: &nn::Trained,
    data: &ImageData,
    targets: &nn::Targets,
    cfg: &TrainConfig,
) -> Result<(f64, f64), String> {
    let start = nn::random_network(&cfg.arch, data, cfg.seed, &Device::Cpu).map_err(|e| e.to_string())?;
    let (mut loss, mut weights) = (0f64, 0f64);
    for run in 0..SPREAD_RUNS {
        let other = perturbed_run(&start, data, targets, cfg, Some(run + 1))?;
        loss = loss.max(loss_difference(reference, &other));
        weights = weights.max(weight_difference(reference, &other)?);
    }
    Ok((loss, weights))
}

/// The recipe every preset is checked with: one epoch of two batches of `batch_size` (the data
/// sets here hold two), unaugmented, at a constant learning rate.
fn two_steps(arch: Arch, batch_size: usize) -> TrainConfig {
    TrainConfig {
        arch,
        epochs: 1,
        batch_size,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        warmup_epochs: 0,
        schedule: Schedule::Constant,
        augment: Augment { crop_padding: 0, hflip: false, clip_frames: 0 },
        seed: 3,
        precision: Default::default(),
    }
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
        guarded(preset, out, |out| {
            let cfg = two_steps(arch, 32);
            let train = |dev: &Device| nn::train(&data, &targets, &cfg, dev, None, &mut nn::NoObserver);
            let (reference, t0) = timed(|| train(&Device::Cpu));
            let ((subject, calls), t1) = on_device(device, || nn::layer_log::recording(|| train(device)));
            let reference = reference.map_err(|e| e.to_string())?;
            layers::layer_checks(device, preset, &calls, out);
            let what = format!("{preset}: 2 training steps on the device");
            let Some(subject) = device_result(subject, &what, 1e-3, (t0, t1), out) else { return Ok(()) };
            let (spread_loss, spread_weights) = rounding_spread(&reference, &data, &targets, &cfg)?;
            out.push(check(
                format!("{preset}: forward + backward, loss of 2 steps (relative; rounding spread {spread_loss:.1e})"),
                loss_difference(&reference, &subject),
                1e-3f64.max(SPREAD_FACTOR * spread_loss),
                (t0, t1),
            ));
            let what =
                format!("{preset}: weights after 2 SGD steps (relative L2; rounding spread {spread_weights:.1e})");
            let tolerance = 5e-3f64.max(SPREAD_FACTOR * spread_weights);
            out.push(match weight_difference(&reference, &subject) {
                Ok(difference) => check(what, difference, tolerance, (t0, t1)),
                // Reading the device's weights back is the device side's failure too.
                Err(e) => failed(what, e, tolerance, (t0, t1)),
            });
            Ok(())
        })?;
    }
    Ok(())
}

/// Half precision (bf16 on a GPU; f16 on the CPU, which has no bf16 matmul) against f32, both on
/// the device: resnet_tiny for 4 epochs on bright quadrants (learnable, so the loss curve means
/// something), the same recipe and seed. Half must fit the task (at most 10 % of the training
/// images wrong in the last epoch) and stay near f32's loss every epoch (relative to the loss, or
/// to 0.05 once it is smaller). f16 gets the unit test's 10 %
/// (`nn::tests::mixed_precision_tracks_f32_on_a_short_run`; measured 3.8 % in the last epoch,
/// under 1 % before, while a relative 2^-20 in the initial weights moves no epoch's loss by more
/// than 3e-7: the gap is f16's rounding, not chaos). bf16 rounds 8 times as coarsely (8 mantissa
/// bits against 11) and has not been measured, since no CPU kernel runs it; if its gap grew in
/// proportion it would be ~30 %, so it gets 50 %: the row then tells a bf16 run that trains from
/// one that does not (a run that learns nothing stays near ln 4 = 1.39, 7 times f32's last loss)
/// and prints the gap.
fn precision_check(device: &Device, out: &mut Vec<Check>) {
    let half = if device.is_cpu() { nn::Precision::F16 } else { nn::Precision::Bf16 };
    let tolerance = if half == nn::Precision::F16 { 0.1 } else { 0.5 };
    let side = 16;
    let (pixels, labels) = nn::quadrants::quadrant_images(256, side, 12);
    let data = ImageData { pixels: &pixels, n: 256, c: 1, t: 1, h: side, w: side };
    let targets = nn::Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 4 };
    let cfg = nn::quadrants::quadrant_recipe(4);
    let run = |cfg: &TrainConfig| {
        on_device(device, || {
            nn::train(&data, &targets, cfg, device, None, &mut nn::NoObserver).map_err(|e| e.to_string())
        })
    };
    let (full, t0) = run(&cfg);
    let (reduced, t1) = run(&TrainConfig { precision: half, ..cfg.clone() });
    let name = format!("{half:?}").to_lowercase();
    let tracks = format!(
        "{name} against f32 on the device, resnet_tiny 4 epochs: largest loss difference of an epoch (relative; seconds: f32 / {name} run)"
    );
    let fits = format!("{name}: share of training images wrong in the last epoch");
    match (full, reduced) {
        (Ok(full), Ok(reduced)) => {
            let worst = full
                .history
                .iter()
                .zip(&reduced.history)
                .map(|(a, b)| (a.loss - b.loss).abs() / a.loss.max(0.05))
                .fold(0f64, |w, d| if worse(d, w) { d } else { w });
            out.push(check(tracks, worst, tolerance, (t0, t1)));
            let wrong = reduced.history.last().map_or(f64::NAN, |e| 1.0 - e.accuracy);
            out.push(check(fits, wrong, 0.1, (t0, t1)));
        }
        (full, reduced) => {
            let e = full.err().or(reduced.err()).unwrap_or_default();
            out.push(failed(tracks, &e, tolerance, (t0, t1)));
            out.push(failed(fits, e, 0.1, (t0, t1)));
        }
    }
}

/// The device-resident input pipeline (what training on a GPU feeds its networks): augmented
/// batches of images and of clips gathered on the device, tag spreads and Jigsaw puzzles made
/// there, against the host's, bit for bit.
fn pipeline_check(device: &Device, out: &mut Vec<Check>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let cases = [
        ("images 3 x 28 x 28, crops of padding 4, flips", (48, 3, 1, 28), 0),
        ("clips 8 x 32 x 32, 4 frames drawn, crops, flips", (12, 1, 8, 32), 4),
    ];
    for (what, (n, c, t, side), clip_frames) in cases {
        let pixels: Vec<u8> = (0..n * c * t * side * side).map(|_| rng.random()).collect();
        let data = ImageData { pixels: &pixels, n, c, t, h: side, w: side };
        let aug = Augment { crop_padding: 4, hflip: true, clip_frames };
        let what = format!("device-built batches, {what}: share of values not the host's bit for bit");
        out.push(exact(what, || nn::batches_differing_from_host(&data, &aug, 11, device)));
    }
    out.push(exact(
        "device-written tag spreads, 64 images of 0-5 tags among 30: share of values not the host's bit for bit".into(),
        || nn::spreads_differing_from_host(device),
    ));
    out.push(exact(
        "device-cut Jigsaw puzzles, 3 x 30 x 30 images, tiles of 8 with jitter: share of values not the host's bit for bit"
            .into(),
        || nn::puzzles_differing_from_host(device),
    ));
}

/// A comparison with tolerance 0: `count` gives the values that differ bit for bit and of how
/// many, timed as the device side.
fn exact(what: String, count: impl FnOnce() -> Result<(usize, usize), nn::NnError>) -> Check {
    let (result, seconds) = timed(count);
    match result {
        Ok((differing, total)) => check(what, differing as f64 / total as f64, 0.0, (0.0, seconds)),
        Err(e) => failed(what, e, 0.0, (0.0, seconds)),
    }
}

/// The optimiser's flat update and batch norm's flat running statistics (the defaults off the
/// CPU) against their per-parameter and per-layer updates on the device, bit for bit: each pair
/// must train the same bits for the choice to stay out of the recipe key, and only the device's
/// kernels can show it.
fn update_check(device: &Device, out: &mut Vec<Check>) {
    let what = "SGD: flat update against per parameter on the device, 5 steps: share of values not bit for bit";
    out.push(exact(what.into(), || nn::sgd::flat_update_differing(device)));
    let what = "BN running statistics: flat against per layer on the device, 5 steps: share of values not bit for bit";
    out.push(exact(what.into(), || nn::running_stats::flat_differing(device)));
}

/// The weight gradient's column matrix built on the device (candle's im2col kernel, launched by
/// cfrun) against the CPU's gather: a pure copy, so any differing value is a wrong index or a
/// misread argument.
fn columns_check(device: &Device, out: &mut Vec<Check>) {
    let what = "convolution weight gradient's column matrix (im2col), 4 geometries, 2 layouts, f32 and bf16: share of values not the CPU's bit for bit";
    out.push(exact(what.into(), || nn::im2col::columns_differing(device)));
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
    let reference = reference.map_err(|e| e.to_string())?;
    let Some(subject) = device_result(subject, "k-means 6000 x 64, K=50 on the device", 1e-4, (t0, t1), out) else {
        return Ok(());
    };
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
    let reference = reference.map_err(|e| e.to_string())?;
    let what = "linear probe 4000 x 32, 8 classes on the device";
    let Some(subject) = device_result(subject, what, 1.0, (t0, t1), out) else { return Ok(()) };
    out.push(check(
        "linear probe 4000 x 32, 8 classes: test top-1 (points)".into(),
        100.0 * (reference.test_top1 - subject.test_top1).abs(),
        1.0,
        (t0, t1),
    ));
    Ok(())
}

/// Every comparison, in order, for the network `presets`; a device side that fails is a failed
/// check carrying its error, and an error here means the CPU reference itself could not run.
pub fn run_checks(device: &Device, presets: &[String]) -> Result<Vec<Check>, String> {
    let mut out = Vec::new();
    preset_checks(device, presets, &mut out)?;
    guarded("device-built batches", &mut out, |out| {
        pipeline_check(device, out);
        Ok(())
    })?;
    guarded("optimiser update", &mut out, |out| {
        update_check(device, out);
        Ok(())
    })?;
    guarded("convolution columns", &mut out, |out| {
        columns_check(device, out);
        Ok(())
    })?;
    guarded("half precision", &mut out, |out| {
        precision_check(device, out);
        Ok(())
    })?;
    guarded("k-means", &mut out, |out| kmeans_check(device, out))?;
    guarded("linear probe", &mut out, |out| probe_check(device, out))?;
    Ok(out)
}

/// Runs one part of the comparisons; a panic inside it (a CUDA error candle unwraps, say) becomes
/// a failed check named for the part, after whatever rows the part had recorded, so that the
/// report still carries every other part's verdict.
fn guarded(
    part: &str,
    out: &mut Vec<Check>,
    f: impl FnOnce(&mut Vec<Check>) -> Result<(), String>,
) -> Result<(), String> {
    match crate::panics::catch(|| f(out)) {
        Ok(result) => result,
        Err(msg) => {
            out.push(failed(format!("{part}: did not finish"), format!("panicked: {msg}"), 0.0, (0.0, 0.0)));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device side that errors becomes a failed check that carries the error (and serialises
    /// it), while a device side that runs passes its result on and records nothing.
    #[test]
    fn a_device_failure_is_a_failed_check_not_an_abort() {
        let mut out = Vec::new();
        let ran: Option<u32> = device_result(Ok::<u32, String>(7), "a", 1.0, (0.1, 0.2), &mut out);
        assert_eq!(ran, Some(7));
        assert!(out.is_empty());
        let err =
            device_result(Err::<u32, _>("CUDA_ERROR_ILLEGAL_ADDRESS"), "b on the device", 1e-3, (0.1, 0.2), &mut out);
        assert_eq!(err, None);
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert!(!c.ok && c.difference.is_nan() && c.what == "b on the device");
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["error"], "CUDA_ERROR_ILLEGAL_ADDRESS");
        assert!(serde_json::to_value(check("c".into(), 0.0, 1.0, (0.0, 0.0))).unwrap().get("error").is_none());
    }

    /// A part that panics keeps the rows it recorded, gains a failed row carrying the panic, and
    /// the parts after it still run; a part's own error still ends the run.
    #[test]
    fn a_panicking_part_is_a_failed_check_not_an_abort() {
        let mut out = Vec::new();
        let part = guarded("first", &mut out, |out| {
            out.push(check("before the panic".into(), 0.0, 1.0, (0.0, 0.0)));
            panic!("CUDA_ERROR_LAUNCH_FAILED")
        });
        assert_eq!(part, Ok(()));
        let second = guarded("second", &mut out, |out| {
            out.push(check("second".into(), 0.0, 1.0, (0.0, 0.0)));
            Ok(())
        });
        assert_eq!(second, Ok(()));
        let rows: Vec<_> = out.iter().map(|c| (c.what.as_str(), c.ok, c.error.as_deref())).collect();
        assert_eq!(
            rows,
            [
                ("before the panic", true, None),
                ("first: did not finish", false, Some("panicked: CUDA_ERROR_LAUNCH_FAILED")),
                ("second", true, None)
            ]
        );
        assert_eq!(guarded("third", &mut out, |_| Err("reference failed".into())), Err("reference failed".into()));
    }

    /// Unperturbed, the rerun from the initial weights is the reference run bit for bit, so the
    /// spread measures the perturbation and nothing else; perturbed, it moves the result by more
    /// than nothing and by far less than a wrong kernel would.
    #[test]
    fn rounding_spread_comes_from_the_perturbation_alone() {
        let n = 16;
        let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i * 131 % 253) as u8).collect();
        let data = ImageData { pixels: &pixels, n, c: 1, t: 1, h: 28, w: 28 };
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
        let targets = nn::Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 4 };
        let cfg = two_steps(Arch::preset("resnet_tiny", 1, 4).unwrap(), 8);
        let reference = nn::train(&data, &targets, &cfg, &Device::Cpu, None, &mut nn::NoObserver).unwrap();
        let start = nn::random_network(&cfg.arch, &data, cfg.seed, &Device::Cpu).unwrap();
        let same = perturbed_run(&start, &data, &targets, &cfg, None).unwrap();
        assert_eq!(same.history[0].loss.to_bits(), reference.history[0].loss.to_bits());
        assert_eq!(weight_difference(&reference, &same).unwrap(), 0.0);
        let (loss, weights) = rounding_spread(&reference, &data, &targets, &cfg).unwrap();
        assert!(weights > 0.0 && weights < 1e-4, "weight spread {weights}");
        assert!(loss < 1e-4, "loss spread {loss}");
    }
}
