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
//! falls back to generic candle ops, which the tests also use as the reference.

use super::cpu::{dot_sum, f32_slice, sum, with_f32};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use std::sync::Arc;

/// PyTorch's default running-statistics momentum.
const MOMENTUM: f64 = 0.1;
/// PyTorch's default epsilon.
const EPS: f64 = 1e-5;

/// A batch-norm layer with true train (batch statistics) and eval (running statistics) modes.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
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
        if super::use_fast_kernels(x.device(), x.dtype()) {
            self.forward_cpu(x, residual, relu, train)
        } else {
            self.forward_generic(x, residual, relu, train)
        }
    }

    fn forward_cpu(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool, train: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (n, c, h, w) = x.dims4()?;
        let (mean, invstd) = if train {
            let (mean, var) = with_f32(&x, |xs| channel_stats(xs, n, c, h * w))?;
            let m = (n * h * w) as f64;
            let unbiased: Vec<f32> = var.iter().map(|v| (v * m / (m - 1.0).max(1.0)) as f32).collect();
            let mean32: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
            self.update_running(
                &Tensor::from_vec(mean32.clone(), c, x.device())?,
                &Tensor::from_vec(unbiased, c, x.device())?,
            )?;
            let invstd = var.iter().map(|v| (1.0 / (v + EPS).sqrt()) as f32).collect();
            (mean32, invstd)
        } else {
            let mean = self.running_mean.as_tensor().to_vec1::<f32>()?;
            let var = self.running_var.as_tensor().to_vec1::<f32>()?;
            (mean, var.iter().map(|&v| (1.0 / (v as f64 + EPS).sqrt()) as f32).collect())
        };
        let op = BnActOp { mean: Arc::new(mean), invstd: Arc::new(invstd), batch_stats: train, relu };
        let gb = Tensor::stack(&[&self.weight, &self.bias], 0)?;
        match residual {
            None => x.apply_op2(&gb, op),
            Some(r) => x.apply_op3(&gb, &r.contiguous()?, op),
        }
    }

    /// Reference implementation with generic candle ops (used on non-CPU devices and in tests).
    pub(crate) fn forward_generic(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
    ) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (mean, var) = if train {
            let mean = x.mean_keepdim((0, 2, 3))?;
            let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim((0, 2, 3))?;
            let m = (n * h * w) as f64;
            let unbiased = (var.detach().flatten_all()? * (m / (m - 1.0).max(1.0)))?;
            self.update_running(&mean.detach().flatten_all()?, &unbiased)?;
            (mean, var)
        } else {
            let rm = self.running_mean.as_detached_tensor().reshape((1, c, 1, 1))?;
            (rm, self.running_var.as_detached_tensor().reshape((1, c, 1, 1))?)
        };
        let y = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + EPS)?.sqrt()?)?
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

    /// `running = (1 - momentum) * running + momentum * batch`, outside the autograd graph.
    fn update_running(&self, mean: &Tensor, unbiased_var: &Tensor) -> Result<()> {
        let rm = self.running_mean.as_detached_tensor();
        let rv = self.running_var.as_detached_tensor();
        self.running_mean.set(&((rm * (1.0 - MOMENTUM))? + (mean * MOMENTUM)?)?)?;
        self.running_var.set(&((rv * (1.0 - MOMENTUM))? + (unbiased_var * MOMENTUM)?)?)?;
        Ok(())
    }
}

/// Per-channel mean and biased variance (two passes, f64 totals) of `x[N, C, HW]`.
fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
    let m = (n * hw) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let rows = (0..n).map(|i| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw]);
            let mean = rows.clone().map(sum).sum::<f64>() / m;
            let mut centred = vec![0f32; hw];
            let mut ss = 0.0;
            for row in rows {
                for (d, &v) in centred.iter_mut().zip(row) {
                    *d = v - mean as f32;
                }
                ss += dot_sum(&centred, &centred);
            }
            (mean, ss / m)
        })
        .unzip()
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
        let (c, hw) = (dims[1], dims[2] * dims[3]);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(c * hw).enumerate().for_each(|(i, yi)| {
            for ch in 0..c {
                let scale = gb[ch] * self.invstd[ch];
                let shift = gb[c + ch] - self.mean[ch] * scale;
                let o = (i * c + ch) * hw;
                let (xr, yr) = (&x[o..o + hw], &mut yi[ch * hw..(ch + 1) * hw]);
                match r {
                    Some(r) => {
                        for ((y, &x), &r) in yr.iter_mut().zip(xr).zip(&r[o..o + hw]) {
                            *y = x * scale + shift + r;
                        }
                    }
                    None => {
                        for (y, &x) in yr.iter_mut().zip(xr) {
                            *y = x * scale + shift;
                        }
                    }
                }
                if self.relu {
                    yr.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
        });
        y
    }

    /// Returns `(dx, d[gamma; beta], d_residual)` given the output `y` and its gradient `dy`.
    fn backward(&self, x: &[f32], gb: &[f32], y: &[f32], dy: &[f32], dims: &[usize]) -> Grads {
        let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
        let relu = self.relu;
        // dz = dy masked by the ReLU (the gradient at the pre-activation sum).
        let dz_row = |o: usize, buf: &mut [f32]| {
            let len = buf.len();
            for ((d, &g), &out) in buf.iter_mut().zip(&dy[o..o + len]).zip(&y[o..]) {
                *d = if relu && out <= 0.0 { 0.0 } else { g };
            }
        };
        // Pass 1, per channel: sum(dz) and sum(dz * (x - mean)).
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut dz, mut xc) = (vec![0f32; hw], vec![0f32; hw]);
                let (mut s1, mut s2) = (0.0, 0.0);
                for i in 0..n {
                    let o = (i * c + ch) * hw;
                    dz_row(o, &mut dz);
                    for (d, &v) in xc.iter_mut().zip(&x[o..o + hw]) {
                        *d = v - self.mean[ch];
                    }
                    s1 += sum(&dz);
                    s2 += dot_sum(&dz, &xc);
                }
                (s1, s2)
            })
            .collect();
        let m = (n * hw) as f64;
        let mut dgb = vec![0f32; 2 * c];
        // dx = a * dz + b * (x - mean) + c0 per channel.
        let mut coef = Vec::with_capacity(c);
        for (ch, &(s1, s2)) in sums.iter().enumerate() {
            let inv = self.invstd[ch] as f64;
            let scale = gb[ch] as f64 * inv;
            dgb[ch] = (s2 * inv) as f32;
            dgb[c + ch] = s1 as f32;
            coef.push(if self.batch_stats {
                (scale as f32, (-scale * inv * inv * s2 / m) as f32, (-scale * s1 / m) as f32)
            } else {
                (scale as f32, 0.0, 0.0)
            });
        }
        // Pass 2, per image: dx and (the same as dz) the residual gradient.
        let mut dx = vec![0f32; x.len()];
        let mut dr = vec![0f32; x.len()];
        dx.par_chunks_mut(c * hw).zip(dr.par_chunks_mut(c * hw)).enumerate().for_each(|(i, (dxi, dri))| {
            for (ch, &(a, b, c0)) in coef.iter().enumerate() {
                let o = (i * c + ch) * hw;
                let dz = &mut dri[ch * hw..(ch + 1) * hw];
                dz_row(o, dz);
                let mean = self.mean[ch];
                for ((d, &g), &v) in dxi[ch * hw..(ch + 1) * hw].iter_mut().zip(&*dz).zip(&x[o..]) {
                    *d = a * g + b * (v - mean) + c0;
                }
            }
        });
        Grads { dx, dgb, dr }
    }

    fn bwd_tensors(&self, x: &Tensor, gb: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let dy = dy.contiguous()?;
        let dims = x.dims().to_vec();
        let g = with_f32(x, |xs| {
            with_f32(gb, |gbs| with_f32(y, |ys| with_f32(&dy, |dys| self.backward(xs, gbs, ys, dys, &dims))))
        })????;
        let dev = x.device();
        Ok((
            Tensor::from_vec(g.dx, x.shape(), dev)?,
            Tensor::from_vec(g.dgb, gb.shape(), dev)?,
            Tensor::from_vec(g.dr, x.shape(), dev)?,
        ))
    }
}

/// Gradients produced by [`BnActOp::backward`].
struct Grads {
    dx: Vec<f32>,
    dgb: Vec<f32>,
    dr: Vec<f32>,
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
    use candle_core::Device;
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
