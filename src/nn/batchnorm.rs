//! Batch normalisation over the channels of NCHW tensors, fused with an optional residual add
//! and ReLU: `y = act(gamma * (x - mean) / sqrt(var + eps) + beta + residual)`.
//!
//! Shapes: `x` and `residual` `(N, C, H, W)`; `weight` (gamma), `bias` (beta), `running_mean`,
//! `running_var` `(C,)`, stored under those names (PyTorch's) in the VarMap.
//!
//! PyTorch semantics: train mode normalises with the batch mean and biased variance and updates
//! `running = (1 - momentum) * running + momentum * batch` with the *unbiased* variance
//! (momentum 0.1, eps 1e-5); eval mode normalises with the running statistics. The running
//! statistics are Vars (so they are saved with the weights) but never receive gradients.
//!
//! On CPU the whole thing is one custom op with a hand-written backward (candle's generic
//! version is ~10 single-threaded passes over the activation plus a strided copy); elsewhere it
//! runs on generic candle ops, which the tests also use as the reference, with the
//! normalisation's gradient in one formula in train mode (`CFRUN_BN_BACKWARD=candle` leaves it to
//! candle's autograd, for an A/B), or, with `CFRUN_BN_CUDA=fused` on a CUDA device, cfrun's own
//! kernels ([`super::bn_cuda`]; candle's backward wins when both are set).

use super::backward_switch::Backward;
use super::bn_kernels::{self, Dims};
use super::cpu::{f32_slice, with_f32};
use super::running_stats;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use std::sync::Arc;

/// PyTorch's default epsilon.
pub(crate) const EPS: f64 = 1e-5;

/// A batch-norm layer with true train (batch statistics) and eval (running statistics) modes.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

/// [`refuse_single_values`] where only the count of values per channel, `m`, is known.
fn refuse_one_value(m: f64) -> Result<()> {
    if m > 1.0 {
        return Ok(());
    }
    Err(one_value_error("got one"))
}

/// The refusal of a train-mode batch with one value per channel; `got` says what came.
fn one_value_error(got: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "batch norm in train mode needs more than one value per channel, {got} (a batch of one example \
         at a 1 x 1 map): choose a batch_size that leaves no batch of one example (the last batch of an \
         epoch holds what is left over)"
    ))
}

/// Refuses a train-mode batch with one value per channel (a batch of one example reaching a
/// 1 x 1 map), as PyTorch does: its variance is 0, so the layer outputs beta alone, and the
/// running variance would be pulled towards 0, inflating every later eval-mode activation.
fn refuse_single_values(x: &Tensor) -> Result<()> {
    let dims = x.dims();
    let channels = dims.get(1).copied().unwrap_or(0).max(1);
    if x.elem_count() / channels > 1 {
        return Ok(());
    }
    Err(one_value_error(&format!("got input of shape {dims:?}")))
}

impl BatchNorm {
    /// Creates (or fetches from `vb`) gamma = 1, beta = 0, running mean 0 and running var 1.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let rm = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let rv = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(BatchNorm { weight, bias, running_mean: Var::from_tensor(&rm)?, running_var: Var::from_tensor(&rv)? })
    }

    /// `act(bn(x) + residual)`; in train mode this also updates the running statistics.
    pub fn forward_act(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool, train: bool) -> Result<Tensor> {
        if train {
            refuse_single_values(x)?;
            super::layer_log::note(|| super::layer_log::LayerCall::Norm {
                x: x.dims().to_vec(),
                residual: residual.is_some(),
                relu,
            });
        }
        if super::use_fast_kernels(x.device(), x.dtype()) {
            self.forward_cpu(x, residual, relu, train)
        } else if train && fuses(x) {
            self.forward_fused(x, residual, relu)
        } else {
            self.forward_generic(x, residual, relu, train)
        }
    }

    fn forward_cpu(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool, train: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let d = Dims::of(x.dims());
        let (mean, invstd) = if train {
            let (mean, var) = with_f32(&x, |xs| bn_kernels::channel_stats(xs, d))?;
            self.update_running_from(&mean, &var, d.m())?;
            bn_kernels::invstd(&mean, &var, EPS)
        } else {
            self.running_invstd()?
        };
        let op = BnActOp { mean: Arc::new(mean), invstd: Arc::new(invstd), batch_stats: train, relu };
        let gb = Tensor::stack(&[&self.weight, &self.bias], 0)?;
        match residual {
            None => x.apply_op2(&gb, op),
            Some(r) => x.apply_op3(&gb, &r.contiguous()?, op),
        }
    }

    /// Train mode on a CUDA device with [`super::bn_cuda`]'s kernels.
    fn forward_fused(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        // Contiguous once, here, for both ops: each would copy a strided input again.
        let x = x.contiguous()?;
        let stats = super::bn_cuda::batch_stats(&x.detach(), EPS)?;
        self.update_running_biased(&stats.get(0)?, &stats.get(1)?, (n * h * w) as f64)?;
        let gb = Tensor::stack(&[&self.weight, &self.bias], 0)?;
        super::bn_cuda::normalize(&x, &gb, &stats, residual, relu)
    }

    /// `(mean, invstd)` from the running statistics (eval mode).
    pub(crate) fn running_invstd(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let mean = self.running_mean.as_tensor().to_vec1::<f32>()?;
        let var = self.running_var.as_tensor().to_vec1::<f32>()?;
        Ok((mean, var.iter().map(|&v| (1.0 / (v as f64 + EPS).sqrt()) as f32).collect()))
    }

    /// Updates the running statistics from a batch's mean and biased variance over `m` values.
    pub(crate) fn update_running_from(&self, mean: &[f64], var: &[f64], m: usize) -> Result<()> {
        // The fused CPU paths (`fused`, `fused_video`) reach the statistics here, not through
        // `forward_act`.
        refuse_one_value(m as f64)?;
        let c = mean.len();
        let m = m as f64;
        let unbiased: Vec<f32> = var.iter().map(|v| (v * m / (m - 1.0).max(1.0)) as f32).collect();
        let mean: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
        let dev = self.running_mean.device();
        self.update_running(&Tensor::from_vec(mean, c, dev)?, &Tensor::from_vec(unbiased, c, dev)?)
    }

    /// Gamma and beta (trainable vars).
    pub(crate) fn affine(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    /// Reference implementation with generic candle ops (used on non-CPU devices and in tests).
    pub(crate) fn forward_generic(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        self.forward_generic_with(x, residual, relu, train, super::backward_switch::BN.get())
    }

    /// [`Self::forward_generic`] with the train-mode backward chosen by the caller.
    fn forward_generic_with(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
        backward: Backward,
    ) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let normalized = if train {
            // With cfrun's backward the statistics come from a detached x, and the normalisation
            // gets its gradient from one formula (`NormalizeGrad`) instead of candle's autograd
            // through the mean, the centring, the variance and the division. The forward ops are
            // the same either way, so are its bits.
            let explicit = x.track_op() && backward == Backward::Cfrun;
            let src = if explicit { x.detach() } else { x.clone() };
            let mean = src.mean_keepdim((0, 2, 3))?;
            let centred = src.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
            self.update_running_biased(&mean, &var, (n * h * w) as f64)?;
            let std = (var + EPS)?.sqrt()?;
            if explicit {
                x.apply_op3(&centred, &std, NormalizeGrad)?
            } else {
                centred.broadcast_div(&std)?
            }
        } else {
            let rm = self.running_mean.as_detached_tensor().reshape((1, c, 1, 1))?;
            let rv = self.running_var.as_detached_tensor().reshape((1, c, 1, 1))?;
            x.broadcast_sub(&rm)?.broadcast_div(&(rv + EPS)?.sqrt()?)?
        };
        let y = normalized
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// [`Self::update_running`] from the batch mean and biased variance of `m` values per channel,
    /// unless a training loop collects the updates to apply them for all layers at once
    /// ([`super::running_stats`]).
    fn update_running_biased(&self, mean: &Tensor, var: &Tensor, m: f64) -> Result<()> {
        refuse_one_value(m)?;
        if running_stats::hand_over(&self.running_mean, &self.running_var, mean, var, m)? {
            return Ok(());
        }
        let unbiased = (var.detach().flatten_all()? * running_stats::unbiasing(m))?;
        self.update_running(&mean.detach().flatten_all()?, &unbiased)
    }

    /// `running = (1 - momentum) * running + momentum * batch`, outside the autograd graph.
    fn update_running(&self, mean: &Tensor, unbiased_var: &Tensor) -> Result<()> {
        running_stats::update_layer(&self.running_mean, &self.running_var, mean, unbiased_var)
    }
}

/// Whether train mode on `x` runs [`super::bn_cuda`]'s kernels, which take f32 and bf16 activations
/// as they are (candle's backward, when forced, keeps the generic ops).
pub(crate) fn fuses(x: &Tensor) -> bool {
    super::backward_switch::BN.get() == Backward::Cfrun && super::bn_cuda::applies(x)
}

/// `xhat = (x - mean) / std` over the batch, divided inside the op from the centred input and
/// the std passed in (candle's own division kernel on the same layouts as `broadcast_div`, so the
/// same bits), with the gradient `dx = (g - mean(g) - xhat * mean(g * xhat)) / std` (means over
/// N, H, W). Dividing here, not beforehand, spares the full-size copy a precomputed output costs.
#[derive(Clone, Copy, Debug)]
struct NormalizeGrad;

impl NormalizeGrad {
    /// `centred / std`, the `(1, C, 1, 1)` std broadcast over the centred input's shape.
    fn divide<S: BackendStorage>(centred: &S, cl: &Layout, std: &S, sl: &Layout) -> Result<(S, Shape)> {
        let xhat = centred.binary_impl::<candle_core::op::Div>(std, cl, &sl.broadcast_as(cl.shape().clone())?)?;
        Ok((xhat, cl.shape().clone()))
    }
}

impl CustomOp3 for NormalizeGrad {
    fn name(&self) -> &'static str {
        "cfrun-bn-normalize"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        centred: &CpuStorage,
        cl: &Layout,
        std: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Self::divide(centred, cl, std, sl)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        centred: &candle_core::CudaStorage,
        cl: &Layout,
        std: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Self::divide(centred, cl, std, sl)
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _centred: &Tensor,
        std: &Tensor,
        xhat: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mean_g = g.mean_keepdim((0, 2, 3))?;
        let mean_gx = (g * xhat)?.mean_keepdim((0, 2, 3))?;
        let dx = (g.broadcast_sub(&mean_g)? - xhat.broadcast_mul(&mean_gx)?)?.broadcast_div(std)?;
        Ok((Some(dx), None, None))
    }
}

/// The fused CPU op: `CustomOp2(x, [gamma; beta])` or `CustomOp3(x, [gamma; beta], residual)`.
/// It carries the statistics it normalised with, so the backward pass needs no extra state.
#[derive(Clone, Debug)]
struct BnActOp {
    mean: Arc<Vec<f32>>,
    invstd: Arc<Vec<f32>>,
    /// True when `mean`/`invstd` are batch statistics (they then depend on x in the backward).
    batch_stats: bool,
    relu: bool,
}

impl BnActOp {
    fn forward(&self, x: &[f32], gb: &[f32], r: Option<&[f32]>, dims: &[usize]) -> Vec<f32> {
        let d = Dims::of(dims);
        let (gamma, beta) = gb.split_at(d.c);
        bn_kernels::forward(x, d, gamma, beta, &self.mean, &self.invstd, r, self.relu)
    }

    /// `(dx, d[gamma; beta], d_residual)` given the output `y` and its gradient `dy`.
    fn bwd_tensors(&self, x: &Tensor, gb: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let dy = dy.contiguous()?;
        let d = Dims::of(x.dims());
        let g = with_f32(x, |xs| {
            with_f32(gb, |gbs| {
                with_f32(y, |ys| {
                    with_f32(&dy, |dys| {
                        let gamma = &gbs[..d.c];
                        bn_kernels::backward(
                            xs,
                            Some(ys),
                            dys,
                            d,
                            gamma,
                            &self.mean,
                            &self.invstd,
                            self.batch_stats,
                            self.relu,
                        )
                    })
                })
            })
        })????;
        let dev = x.device();
        let mut dgb = g.dgamma;
        dgb.extend(g.dbeta);
        Ok((
            Tensor::from_vec(g.dx, x.shape(), dev)?,
            Tensor::from_vec(dgb, gb.shape(), dev)?,
            Tensor::from_vec(g.dz, x.shape(), dev)?,
        ))
    }
}

impl CustomOp2 for BnActOp {
    fn name(&self) -> &'static str {
        "cfrun-bn-act"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = self.forward(f32_slice(s1, l1)?, f32_slice(s2, l2)?, None, l1.dims());
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, gb: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, _) = self.bwd_tensors(x, gb, y, dy)?;
        Ok((Some(dx), Some(dgb)))
    }
}

impl CustomOp3 for BnActOp {
    fn name(&self) -> &'static str {
        "cfrun-bn-add-act"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let r = f32_slice(s3, l3)?;
        let y = self.forward(f32_slice(s1, l1)?, f32_slice(s2, l2)?, Some(r), l1.dims());
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        _r: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, dr) = self.bwd_tensors(x, gb, y, dy)?;
        Ok((Some(dx), Some(dgb), Some(dr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use rand::{Rng, SeedableRng};

    fn rand_vec(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    /// A layer with random gamma, beta and running statistics (the same for equal seeds).
    fn layer(c: usize, seed: u64) -> (VarMap, BatchNorm) {
        let vm = VarMap::new();
        let bn = BatchNorm::new(c, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let set = |v: &Var, lo, hi, s| v.set(&Tensor::from_vec(rand_vec(c, s, lo, hi), c, &Device::Cpu).unwrap());
        set(&Var::from_tensor(&bn.weight).unwrap(), 0.5, 1.5, seed).unwrap();
        set(&Var::from_tensor(&bn.bias).unwrap(), -0.5, 0.5, seed + 1).unwrap();
        set(&bn.running_mean, -0.5, 0.5, seed + 2).unwrap();
        set(&bn.running_var, 0.5, 2.0, seed + 3).unwrap();
        (vm, bn)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar().unwrap()
    }

    /// The fused CPU op against generic candle ops: outputs, running statistics and the
    /// gradients of x, residual, gamma and beta, in both modes, with and without add/ReLU.
    #[test]
    fn normalisation_gradient_matches_candles_autograd() {
        let dims = (6, 4, 5, 3);
        let n = 6 * 4 * 5 * 3;
        let dev = Device::Cpu;
        for residual in [false, true] {
            for relu in [false, true] {
                let case = format!("residual={residual} relu={relu}");
                let x = Var::from_vec(rand_vec(n, 11, -2.0, 3.0), dims, &dev).unwrap();
                let r = Var::from_vec(rand_vec(n, 12, -1.0, 1.0), dims, &dev).unwrap();
                let up = Tensor::from_vec(rand_vec(n, 13, -1.0, 1.0), dims, &dev).unwrap();
                let rr = residual.then_some(r.as_tensor());
                let run = |backward| {
                    let (_, l) = layer(4, 20);
                    let y = l.forward_generic_with(&x, rr, relu, true, backward).unwrap();
                    let g = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    let grads: Vec<Tensor> = [x.as_tensor(), &l.weight, &l.bias, r.as_tensor()]
                        .iter()
                        .filter_map(|t| g.get(t).cloned())
                        .collect();
                    (y, grads, l.running_mean.as_tensor().clone(), l.running_var.as_tensor().clone())
                };
                let (ya, ga, ma, va) = run(Backward::Candle);
                let (yb, gb, mb, vb) = run(Backward::Cfrun);
                // The forward is the same ops in the same order: the same bits.
                for (a, b, what) in [(&ya, &yb, "forward"), (&ma, &mb, "running mean"), (&va, &vb, "running var")] {
                    assert_eq!(max_diff(a, b), 0.0, "{what} {case}");
                }
                assert_eq!(ga.len(), if residual { 4 } else { 3 }, "{case}");
                assert_eq!(ga.len(), gb.len(), "{case}");
                for (a, b) in ga.iter().zip(&gb) {
                    let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                    assert!(max_diff(a, b) <= 1e-5 * scale.max(1.0), "gradient {case}: {}", max_diff(a, b));
                }
            }
        }
    }

    #[test]
    fn fused_matches_generic_ops() {
        let dims = (5, 3, 4, 6);
        let n = 5 * 3 * 4 * 6;
        let dev = Device::Cpu;
        for train in [true, false] {
            for residual in [false, true] {
                for relu in [false, true] {
                    let (_, a) = layer(3, 10);
                    let (_, b) = layer(3, 10);
                    let x = Var::from_vec(rand_vec(n, 1, -2.0, 3.0), dims, &dev).unwrap();
                    let r = Var::from_vec(rand_vec(n, 2, -1.0, 1.0), dims, &dev).unwrap();
                    let up = Tensor::from_vec(rand_vec(n, 3, -1.0, 1.0), dims, &dev).unwrap();
                    let rr = residual.then_some(r.as_tensor());
                    let ya = a.forward_act(&x, rr, relu, train).unwrap();
                    let yb = b.forward_generic(&x, rr, relu, train).unwrap();
                    let case = format!("train={train} residual={residual} relu={relu}");
                    assert!(max_diff(&ya, &yb) < 1e-5, "forward {case}");
                    let rm = |l: &BatchNorm| l.running_mean.as_tensor().clone();
                    let rv = |l: &BatchNorm| l.running_var.as_tensor().clone();
                    assert!(max_diff(&rm(&a), &rm(&b)) < 1e-6, "running mean {case}");
                    assert!(max_diff(&rv(&a), &rv(&b)) < 1e-5, "running var {case}");
                    let ga = (ya * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    let gb = (yb * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    let mut checked = vec![x.as_tensor(), &a.weight, &a.bias];
                    if residual {
                        checked.push(r.as_tensor());
                    }
                    let others = [x.as_tensor(), &b.weight, &b.bias, r.as_tensor()];
                    for (ta, tb) in checked.iter().zip(others) {
                        let d = max_diff(ga.get(ta).unwrap(), gb.get(tb).unwrap());
                        assert!(d < 1e-4, "gradient {case}: {d}");
                    }
                }
            }
        }
    }

    /// One value per channel in train mode is refused (its variance is 0) and leaves the running
    /// statistics as they were; two values, or eval mode, are fine.
    #[test]
    fn one_value_per_channel_is_refused_in_train_mode_only() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let bn = BatchNorm::new(3, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let one = Tensor::from_vec(vec![1f32, 2., 3.], (1, 3, 1, 1), &dev).unwrap();
        let err = bn.forward_act(&one, None, true, true).unwrap_err().to_string();
        assert!(err.contains("more than one value per channel") && err.contains("[1, 3, 1, 1]"), "{err}");
        assert_eq!(bn.running_var.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0; 3]);
        assert!(bn.forward_act(&one, None, true, false).is_ok());
        let two = Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], (2, 3, 1, 1), &dev).unwrap();
        assert!(bn.forward_act(&two, None, true, true).is_ok());
        let map = Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], (1, 3, 1, 2), &dev).unwrap();
        assert!(bn.forward_act(&map, None, true, true).is_ok());
    }

    /// Train mode: per-channel output mean = beta and variance = gamma^2 (biased), running
    /// stats move 10% towards the batch mean and the unbiased variance. Eval mode uses them.
    #[test]
    fn train_and_eval_semantics() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let bn = BatchNorm::new(1, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        // One channel, values 1..=4: mean 2.5, biased var 1.25, unbiased var 5/3.
        let x = Tensor::from_vec(vec![1f32, 2., 3., 4.], (2, 1, 1, 2), &dev).unwrap();
        let y = bn.forward_act(&x, None, false, true).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s = (1.25f32 + 1e-5).sqrt();
        for (got, want) in y.iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
            assert!((got - want).abs() < 1e-6);
        }
        let rm = bn.running_mean.as_tensor().to_vec1::<f32>().unwrap()[0];
        let rv = bn.running_var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((rm - 0.25).abs() < 1e-7, "{rm}");
        assert!((rv - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6, "{rv}");
        let y = bn.forward_act(&x, None, true, false).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (got, v) in y.iter().zip([1f32, 2., 3., 4.]) {
            let want = ((v - rm) / (rv + 1e-5).sqrt()).max(0.0);
            assert!((got - want).abs() < 1e-6);
        }
    }
}
