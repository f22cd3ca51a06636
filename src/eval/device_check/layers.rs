//! Every convolution and batch norm a preset ran on the device, replayed as one op on the device
//! and on the CPU's own kernels: output and every gradient compared, geometry by geometry.
//!
//! Why beside the training comparison: two SGD steps of a deep network on random data are a
//! chaotic map, so that comparison's tolerance follows a measured rounding spread, and for the
//! deep video presets that spread is as large as the update itself: a kernel wrong for one
//! geometry would pass there. A single op is linear in each input (batch norm nearly so), so two
//! correct f32 implementations agree to a few ulps of a dot product (measured on the CPU: at most
//! 1e-5 relative, 5.5e-6 for convolutions), and a wrong one misses by percents. The replays are
//! fresh contiguous f32 tensors of the recorded shapes: they test each kernel's arithmetic at each
//! geometry, not the layouts or the half-precision dtypes training hands it; except batch norm's
//! bf16 activations where the device takes them as they are (the fused CUDA kernels), which get
//! rows of their own against f32 on the same rounded inputs ([`BF16_NORM`]). The tolerance,
//! [`STRICT`], holds where f32 is computed as f32. With TF32 allowed (cuDNN's default math on Ampere and newer, unless
//! `NVIDIA_TF32_OVERRIDE=0`; or `CFRUN_GEMM_TF32=1`) the inputs of every product are rounded to
//! 10 mantissa bits, a relative error of ~3e-4 per product (2^-11 / sqrt 3 on each input); then
//! [`WITH_TF32`] applies to the convolutions, and the check says so. Batch norm has no matrix
//! products and keeps [`STRICT`].

use std::fmt::Write as _;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{check, failed, host, on_device, timed, worse, Check, RelativeL2};
use crate::candle_error::Brief;
use crate::nn::batchnorm::BatchNorm;
use crate::nn::layer_log::LayerCall;

/// Largest relative L2 difference of an output or gradient in strict f32.
const STRICT: f64 = 1e-4;
/// The same where TF32 may round the inputs of the device's products.
const WITH_TF32: f64 = 3e-3;

/// Whether the device computes f32 products in f32: always on the CPU; on a GPU when cuBLAS may
/// not use TF32 (`CFRUN_GEMM_TF32` off, the default) and cuDNN either is not in the build (the
/// convolutions are then im2col + cuBLAS) or is told not to (`NVIDIA_TF32_OVERRIDE=0`, which the
/// environment can say and the kernels cannot).
fn strict_f32(device: &Device) -> bool {
    let override_off = std::env::var("NVIDIA_TF32_OVERRIDE").map(|v| v.trim() == "0").unwrap_or(false);
    device.is_cpu() || (!candle_core::cuda::gemm_reduced_precision_f32() && (!cfg!(feature = "cudnn") || override_off))
}

/// One replayed layer's result: the largest relative difference over its tensors, and which.
struct Replayed {
    difference: f64,
    tensor: &'static str,
}

/// `n` values uniform in `[center - scale, center + scale)`, from `rng`.
fn uniform(rng: &mut ChaCha8Rng, n: usize, scale: f32, center: f32) -> Vec<f32> {
    (0..n).map(|_| center + scale * rng.random_range(-1.0f32..1.0)).collect()
}

/// Named tensors of one side, flattened on the host.
type Side = Vec<(&'static str, Vec<f32>)>;

/// The largest relative difference between the reference's tensors and the device's.
fn compare(reference: &Side, device: &Side) -> Replayed {
    let mut worst = Replayed { difference: 0.0, tensor: "" };
    for ((name, a), (_, b)) in reference.iter().zip(device) {
        let d = if a.len() == b.len() { RelativeL2::of(a, b) } else { f64::INFINITY };
        if worse(d, worst.difference) {
            worst = Replayed { difference: d, tensor: name };
        }
    }
    worst
}

/// Forward and backward of `conv2d` on `device`: the output, and the gradients of the input and
/// the weight under the loss `sum(y * g)`.
fn conv_side(device: &Device, x: &[f32], w: &[f32], g: &[f32], call: &Conv) -> candle_core::Result<Side> {
    let xv = Var::from_tensor(&Tensor::from_slice(x, call.x, device)?)?;
    let wv = Var::from_tensor(&Tensor::from_slice(w, call.w, device)?)?;
    let y = crate::nn::conv::conv2d(xv.as_tensor(), wv.as_tensor(), call.stride, call.padding)?;
    let g = Tensor::from_slice(g, y.dims(), device)?;
    let grads = (&y * &g)?.sum_all()?.backward()?;
    let grad = |v: &Var| grads.get(v.as_tensor()).map(host).unwrap_or_else(|| candle_core::bail!("no gradient"));
    Ok(vec![("output", host(&y)?), ("input gradient", grad(&xv)?), ("weight gradient", grad(&wv)?)])
}

/// A recorded convolution's sizes.
struct Conv<'a> {
    x: &'a [usize],
    w: &'a [usize],
    stride: usize,
    padding: usize,
}

impl Conv<'_> {
    fn output_len(&self) -> usize {
        let out = |side: usize| (side + 2 * self.padding - self.w[2]) / self.stride + 1;
        self.x[0] * self.w[0] * out(self.x[2]) * out(self.x[3])
    }

    fn describe(&self) -> String {
        let [n, cin, h, w] = *self.x else { return format!("{:?}", self.x) };
        format!("{k}x{k}/{s} {cin}->{cout} on {n}x{cin}x{h}x{w}", k = self.w[2], s = self.stride, cout = self.w[0])
    }
}

/// Train-mode batch norm with a residual and a ReLU as recorded, the activations (input, residual,
/// the loss's weights) in `dtype`: the output and the gradients of the input, gamma, beta and the
/// residual.
fn norm_side(
    device: &Device,
    inputs: &NormInputs,
    residual: bool,
    relu: bool,
    dtype: DType,
) -> candle_core::Result<Side> {
    let c = inputs.shape[1];
    let vars = VarMap::new();
    let bn = BatchNorm::new(c, VarBuilder::from_varmap(&vars, DType::F32, device))?;
    let (gamma, beta) = {
        let data = vars.data().lock().unwrap();
        (data["weight"].clone(), data["bias"].clone())
    };
    gamma.set(&Tensor::from_slice(&inputs.gamma, c, device)?)?;
    beta.set(&Tensor::from_slice(&inputs.beta, c, device)?)?;
    let activation = |v: &[f32]| Tensor::from_slice(v, inputs.shape.as_slice(), device)?.to_dtype(dtype);
    let xv = Var::from_tensor(&activation(&inputs.x)?)?;
    let rv = Var::from_tensor(&activation(&inputs.residual)?)?;
    let y = bn.forward_act(xv.as_tensor(), residual.then_some(rv.as_tensor()), relu, true)?;
    let g = activation(&inputs.g)?;
    let grads = (&y * &g)?.sum_all()?.backward()?;
    let grad = |v: &Var| grads.get(v.as_tensor()).map(host).unwrap_or_else(|| candle_core::bail!("no gradient"));
    let mut side = vec![
        ("output", host(&y)?),
        ("input gradient", grad(&xv)?),
        ("gamma gradient", grad(&gamma)?),
        ("beta gradient", grad(&beta)?),
    ];
    if residual {
        side.push(("residual gradient", grad(&rv)?));
    }
    // The running statistics come from the batch variance, which nothing above reads (the fused
    // kernels compute it in a row of their own).
    let data = vars.data().lock().unwrap();
    for (name, key) in [("running mean", "running_mean"), ("running variance", "running_var")] {
        let Some(v) = data.get(key) else { candle_core::bail!("batch norm without its {key}") };
        side.push((name, host(v.as_tensor())?));
    }
    Ok(side)
}

/// A batch norm's inputs: activations with a per-channel offset and spread (as a convolution's
/// output has), gamma near 1, small betas, and the loss's weights.
#[derive(Clone)]
struct NormInputs {
    shape: Vec<usize>,
    x: Vec<f32>,
    residual: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    g: Vec<f32>,
}

/// How close to the ReLU's kink a pre-activation may be for the loss to weigh it: closer, the side
/// it falls on is rounding's choice, and one flip moves the input gradient by `1/sqrt(len)`
/// relative (~3e-3 on a 128 x 64 x 16 x 16 batch, measured before this band existed).
const KINK: f64 = 1e-4;

impl NormInputs {
    /// Draws the inputs of a batch norm on `shape`; with a ReLU, the loss gives no weight to
    /// pre-activations within [`KINK`] of zero.
    fn draw(shape: &[usize], residual: bool, relu: bool, rng: &mut ChaCha8Rng) -> Self {
        let (c, plane) = (shape[1], shape[2..].iter().product::<usize>());
        let len: usize = shape.iter().product();
        let offsets = uniform(rng, c, 1.0, 0.0);
        let spreads = uniform(rng, c, 0.5, 1.0);
        let x: Vec<f32> = uniform(rng, len, 1.0, 0.0)
            .into_iter()
            .enumerate()
            .map(|(i, u)| offsets[i / plane % c] + spreads[i / plane % c] * u)
            .collect();
        let mut inputs = NormInputs {
            shape: shape.to_vec(),
            residual: uniform(rng, len, 1.0, 0.0),
            gamma: uniform(rng, c, 0.2, 1.0),
            beta: uniform(rng, c, 0.2, 0.0),
            g: uniform(rng, len, 1.0, 0.0),
            x,
        };
        if relu {
            let z = inputs.pre_activation(residual);
            inputs.g.iter_mut().zip(z).filter(|(_, z)| z.abs() < KINK).for_each(|(g, _)| *g = 0.0);
        }
        inputs
    }

    /// The same inputs with the activations (input, residual, the loss's weights) rounded to bf16,
    /// so that an f32 reference and a bf16 subject start from the same values.
    fn rounded_to_bf16(&self) -> candle_core::Result<Self> {
        let round = |v: &[f32]| -> candle_core::Result<Vec<f32>> {
            Tensor::from_slice(v, v.len(), &Device::Cpu)?.to_dtype(DType::BF16)?.to_dtype(DType::F32)?.to_vec1()
        };
        Ok(NormInputs {
            shape: self.shape.clone(),
            x: round(&self.x)?,
            residual: round(&self.residual)?,
            gamma: self.gamma.clone(),
            beta: self.beta.clone(),
            g: round(&self.g)?,
        })
    }

    /// `gamma * (x - mean) / sqrt(var + eps) + beta (+ residual)` with the batch statistics, in f64.
    fn pre_activation(&self, residual: bool) -> Vec<f64> {
        let (n, c) = (self.shape[0], self.shape[1]);
        let plane: usize = self.shape[2..].iter().product();
        let at = |b: usize, ch: usize| (b * c + ch) * plane;
        let mut z = vec![0f64; self.x.len()];
        for ch in 0..c {
            let values = || (0..n).flat_map(move |b| at(b, ch)..at(b, ch) + plane);
            let m = (n * plane) as f64;
            let mean = values().map(|i| f64::from(self.x[i])).sum::<f64>() / m;
            let var = values().map(|i| (f64::from(self.x[i]) - mean).powi(2)).sum::<f64>() / m;
            let scale = f64::from(self.gamma[ch]) / (var + crate::nn::batchnorm::EPS).sqrt();
            for i in values() {
                let r = if residual { f64::from(self.residual[i]) } else { 0.0 };
                z[i] = scale * (f64::from(self.x[i]) - mean) + f64::from(self.beta[ch]) + r;
            }
        }
        z
    }
}

/// The worst layer of one kind so far, and the seconds of both sides.
struct Worst {
    layers: usize,
    difference: f64,
    at: String,
    seconds: (f64, f64),
}

impl Worst {
    fn new() -> Self {
        Worst { layers: 0, difference: 0.0, at: String::new(), seconds: (0.0, 0.0) }
    }

    fn add(&mut self, replayed: Replayed, layer: String, seconds: (f64, f64)) {
        self.layers += 1;
        self.seconds.0 += seconds.0;
        self.seconds.1 += seconds.1;
        if worse(replayed.difference, self.difference) {
            self.difference = replayed.difference;
            self.at = format!("{layer}, {}", replayed.tensor);
        }
    }

    /// One layer replayed on the CPU (`reference`) and on the device (`subject`), each with its
    /// seconds: their comparison added, or the first error of either side kept in `slot`.
    fn replay(
        &mut self,
        slot: &mut Option<String>,
        layer: String,
        (reference, t0): (candle_core::Result<Side>, f64),
        (subject, t1): (candle_core::Result<Side>, f64),
    ) {
        match (reference, subject) {
            (Ok(reference), Ok(subject)) => self.add(compare(&reference, &subject), layer, (t0, t1)),
            (Err(e), _) => note_error(slot, format!("{layer} (CPU reference): {}", Brief(&e))),
            (_, Err(e)) => note_error(slot, format!("{layer}: {}", Brief(&e))),
        }
    }
}

/// Keeps the first error of a kind: the one to read first.
fn note_error(slot: &mut Option<String>, e: String) {
    slot.get_or_insert(e);
}

/// Largest relative L2 difference of a bf16 batch norm from the f32 one on the same (bf16-rounded)
/// inputs: the outputs and the activations' gradients are rounded to bf16, 2^-9 relative each.
const BF16_NORM: f64 = 1e-2;

/// Whether train-mode batch norm on `device` takes bf16 activations as they are (the fused CUDA
/// kernels, `CFRUN_BN_CUDA=fused`): then mixed precision runs that path, and it gets rows of its own.
fn norms_take_bf16(device: &Device) -> bool {
    Tensor::zeros((1, 1, 1, 1), DType::BF16, device).is_ok_and(|t| crate::nn::batchnorm::fuses(&t))
}

/// Replays `calls` (recorded from `preset`'s training on the device) and appends one check for its
/// convolutions and one for its batch norms (and one for its batch norms in bf16, where the device
/// takes bf16 activations as they are: [`norms_take_bf16`]); an error on either side fails that
/// kind's check.
pub(super) fn layer_checks(device: &Device, preset: &str, calls: &[LayerCall], out: &mut Vec<Check>) {
    // Batch norm has no matrix products, so TF32 never touches it.
    let (conv_tolerance, arithmetic) =
        if strict_f32(device) { (STRICT, "strict f32") } else { (WITH_TF32, "TF32 allowed") };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut convs, mut norms, mut halves) = (Worst::new(), Worst::new(), Worst::new());
    let mut errors: [Option<String>; 3] = [None, None, None];
    let bf16 = norms_take_bf16(device);
    for call in calls {
        match call {
            LayerCall::Conv { x, w, stride, padding } => {
                let conv = Conv { x, w, stride: *stride, padding: *padding };
                let fan_in = (w[1] * w[2] * w[3]) as f32;
                let xs = uniform(&mut rng, x.iter().product(), 1.0, 0.0);
                let ws = uniform(&mut rng, w.iter().product(), (3.0 / fan_in).sqrt(), 0.0);
                let gs = uniform(&mut rng, conv.output_len(), 1.0, 0.0);
                let reference = timed(|| conv_side(&Device::Cpu, &xs, &ws, &gs, &conv));
                let subject = on_device(device, || conv_side(device, &xs, &ws, &gs, &conv));
                convs.replay(&mut errors[0], conv.describe(), reference, subject);
            }
            LayerCall::Norm { x, residual, relu } => {
                let inputs = NormInputs::draw(x, *residual, *relu, &mut rng);
                let mut layer =
                    format!("batch norm on {}", x.iter().map(usize::to_string).collect::<Vec<_>>().join("x"));
                if *residual {
                    layer.push_str(" + residual");
                }
                if *relu {
                    layer.push_str(" + ReLU");
                }
                let reference = timed(|| norm_side(&Device::Cpu, &inputs, *residual, *relu, DType::F32));
                let subject = on_device(device, || norm_side(device, &inputs, *residual, *relu, DType::F32));
                norms.replay(&mut errors[1], layer.clone(), reference, subject);
                if bf16 {
                    let rounded = inputs.rounded_to_bf16();
                    let side = |d: &Device, dtype| {
                        rounded
                            .as_ref()
                            .map_err(|e| candle_core::Error::Msg(e.to_string()))
                            .and_then(|r| norm_side(d, r, *residual, *relu, dtype))
                    };
                    let reference = timed(|| side(&Device::Cpu, DType::F32));
                    let subject = on_device(device, || side(device, DType::BF16));
                    halves.replay(&mut errors[2], layer, reference, subject);
                }
            }
        }
    }
    let mut kinds = vec![("convolutions", convs, conv_tolerance, arithmetic), ("batch norms", norms, STRICT, "f32")];
    if bf16 {
        kinds.push(("batch norms in bf16", halves, BF16_NORM, "bf16 activations against f32 on the same inputs"));
    }
    for ((kind, worst, tolerance, arithmetic), error) in kinds.into_iter().zip(errors) {
        let mut what = format!("{preset}: {} {kind} one by one, output and gradients ({arithmetic}", worst.layers);
        if !worst.at.is_empty() {
            let _ = write!(what, "; worst: {}", worst.at);
        }
        what.push(')');
        // Every network has both kinds, so none recorded means the recording is broken.
        let error = error.or_else(|| (worst.layers == 0).then(|| format!("no {kind} were recorded")));
        out.push(match error {
            Some(e) => failed(what, e, tolerance, worst.seconds),
            None => check(what, worst.difference, tolerance, worst.seconds),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_conv() -> Conv<'static> {
        Conv { x: &[3, 2, 7, 7], w: &[4, 2, 3, 3], stride: 2, padding: 1 }
    }

    fn draws(conv: &Conv) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let xs = uniform(&mut rng, conv.x.iter().product(), 1.0, 0.0);
        let ws = uniform(&mut rng, conv.w.iter().product(), 0.3, 0.0);
        let gs = uniform(&mut rng, conv.output_len(), 1.0, 0.0);
        (xs, ws, gs)
    }

    /// candle's generic convolution agrees with the CPU kernels far inside the tolerance, and a
    /// convolution that is wrong by one weight tap, or whose weight gradient is scaled, does not.
    #[test]
    fn a_wrong_convolution_misses_and_a_right_one_agrees() {
        let conv = small_conv();
        let (xs, ws, gs) = draws(&conv);
        let reference = conv_side(&Device::Cpu, &xs, &ws, &gs, &conv).unwrap();
        let (generic, _) = on_device(&Device::Cpu, || conv_side(&Device::Cpu, &xs, &ws, &gs, &conv));
        let right = compare(&reference, &generic.unwrap());
        assert!(right.difference < STRICT / 10.0, "{} in the {}", right.difference, right.tensor);
        let mut tap = ws.clone();
        tap[5] += 0.05;
        let wrong = compare(&reference, &conv_side(&Device::Cpu, &xs, &tap, &gs, &conv).unwrap());
        assert!(wrong.difference > WITH_TF32, "{} in the {}", wrong.difference, wrong.tensor);
        let mut scaled = reference.clone();
        scaled[2].1.iter_mut().for_each(|v| *v *= 1.001);
        let wrong = compare(&reference, &scaled);
        assert!(wrong.difference > STRICT && wrong.tensor == "weight gradient");
        scaled[1].1[0] = f32::NAN;
        assert_eq!(compare(&reference, &scaled).tensor, "input gradient");
    }

    /// The same for batch norm with a residual and a ReLU: the generic path agrees with the CPU
    /// kernel; inputs 1 % larger (the input gradient shrinks by 1 %) do not; and the loss gives no
    /// weight to pre-activations at the kink, only to them.
    #[test]
    fn batch_norm_paths_agree_and_a_scaled_input_misses() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let inputs = NormInputs::draw(&[4, 3, 5, 5], true, true, &mut rng);
        let reference = norm_side(&Device::Cpu, &inputs, true, true, DType::F32).unwrap();
        assert_eq!(reference.len(), 7);
        let (generic, _) = on_device(&Device::Cpu, || norm_side(&Device::Cpu, &inputs, true, true, DType::F32));
        let right = compare(&reference, &generic.unwrap());
        assert!(right.difference < STRICT / 10.0, "{} in the {}", right.difference, right.tensor);
        // A batch variance 1 % off reaches nothing but the running variance, and is caught there.
        let mut off = reference.clone();
        let (name, running_var) = &mut off[6];
        assert_eq!(*name, "running variance");
        running_var.iter_mut().for_each(|v| *v = 0.9 + (*v - 0.9) * 1.01);
        let wrong = compare(&reference, &off);
        assert!(wrong.difference > STRICT && wrong.tensor == "running variance", "{}", wrong.difference);
        let mut spread = NormInputs::draw(&[4, 3, 5, 5], true, true, &mut ChaCha8Rng::seed_from_u64(2));
        spread.x.iter_mut().for_each(|v| *v *= 1.01);
        let moved = compare(&reference, &norm_side(&Device::Cpu, &spread, true, true, DType::F32).unwrap());
        assert!(moved.difference > WITH_TF32, "{} in the {}", moved.difference, moved.tensor);
        // Exactly the weights at pre-activations within the band are zero, and a batch of this
        // size has some.
        let wide = NormInputs::draw(&[64, 8, 16, 16], true, true, &mut ChaCha8Rng::seed_from_u64(3));
        let z = wide.pre_activation(true);
        let near = z.iter().filter(|z| z.abs() < KINK).count();
        assert!(wide.g.iter().zip(&z).all(|(g, z)| (*g == 0.0) == (z.abs() < KINK)));
        assert!(near > 0, "no pre-activation of 131,072 within {KINK} of the kink");
    }

    /// The bf16 rows' plumbing and tolerance: inputs rounded to bf16 (every value on bf16's grid, the
    /// gammas untouched); the CPU never takes bf16 as it is, so it gets no such rows; the f32
    /// reference with its activations' tensors rounded to bf16 (what the device's bf16 outputs
    /// cost) stays well inside the tolerance, and a 3 % larger input does not (1 % moves the input
    /// gradient by 0.99 %, at the tolerance itself).
    #[test]
    fn bf16_rows_admit_bf16_rounding_and_not_more() {
        let inputs = NormInputs::draw(&[4, 3, 5, 5], true, true, &mut ChaCha8Rng::seed_from_u64(4));
        let rounded = inputs.rounded_to_bf16().unwrap();
        assert!(rounded.x.iter().chain(&rounded.g).all(|v| v.to_bits() & 0xffff == 0));
        assert_eq!(rounded.gamma, inputs.gamma);
        assert!(!norms_take_bf16(&Device::Cpu));
        let reference = norm_side(&Device::Cpu, &rounded, true, true, DType::F32).unwrap();
        let to_bf16 = |v: &Vec<f32>| {
            let t = Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap();
            t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
        };
        let as_device: Side = reference
            .iter()
            .map(|(name, v)| {
                (
                    *name,
                    if ["gamma", "beta", "running"].iter().any(|f32_side| name.starts_with(f32_side)) {
                        v.clone()
                    } else {
                        to_bf16(v)
                    },
                )
            })
            .collect();
        let rounding = compare(&reference, &as_device);
        assert!(rounding.difference > 0.0 && rounding.difference < BF16_NORM / 2.0, "{}", rounding.difference);
        let mut scaled = rounded.clone();
        scaled.x.iter_mut().for_each(|v| *v *= 1.03);
        let moved = compare(&reference, &norm_side(&Device::Cpu, &scaled, true, true, DType::F32).unwrap());
        assert!(moved.difference > BF16_NORM, "{} in the {}", moved.difference, moved.tensor);
    }

    /// A recorded network's layers all replay and pass on the CPU, one check per kind, naming the
    /// count and the worst layer; a kind with nothing recorded fails.
    #[test]
    fn replays_each_kind_into_one_check() {
        let calls = vec![
            LayerCall::Conv { x: vec![2, 1, 8, 8], w: vec![4, 1, 3, 3], stride: 1, padding: 1 },
            LayerCall::Conv { x: vec![2, 4, 8, 8], w: vec![8, 4, 3, 3], stride: 2, padding: 1 },
            LayerCall::Norm { x: vec![2, 4, 8, 8], residual: false, relu: true },
        ];
        let mut out = Vec::new();
        layer_checks(&Device::Cpu, "p", &calls, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|c| c.ok && c.tolerance == STRICT), "{out:?}");
        assert!(out[0].what.starts_with("p: 2 convolutions one by one") && out[0].what.contains("worst: 3x3/"));
        assert!(out[1].what.starts_with("p: 1 batch norms") && out[1].what.contains("2x4x8x8 + ReLU"));
        let mut none = Vec::new();
        layer_checks(&Device::Cpu, "q", &calls[..2], &mut none);
        assert!(none[0].ok && !none[1].ok, "{none:?}");
        assert_eq!(none[1].error.as_deref(), Some("no batch norms were recorded"));
    }
}
