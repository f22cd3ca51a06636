//! Training-mode fused ops on CPU: the stem (conv-BN-ReLU) and a whole BasicBlock as single
//! candle custom ops with hand-written backward passes.
//!
//! Why: every node of candle's autograd graph costs an activation-sized `zeros_like` + `add`
//! for its gradient, elementwise ops run on candle's spinning thread pool, and each op
//! allocates fresh buffers. A BasicBlock as ~6 separate ops spent about a third of a training
//! step there. Fused, a block is one node: `CustomOp2(x, packed)` where `packed` is the
//! concatenation, per unit, of `[conv weight (flattened), gamma, beta]` for the units
//! `conv1/bn1`, `conv2/bn2` and, if present, `shortcut.conv/shortcut.bn`. Candle's `cat`
//! backward splits the packed gradient back onto the individual vars, so the VarMap and the
//! optimiser see the same parameters as the per-layer path.
//!
//! Shapes: the stem maps `(N, Cin, H, W) -> (N, C, H, W)`; a block
//! `(N, Cin, H, W) -> (N, Cout, Ho, Wo)`. Train mode only (batch statistics); the forward
//! saves the intermediate activations in the op for its backward, and reports each BN's batch
//! statistics so the caller can update the running statistics.

use super::batchnorm::{BatchNorm, EPS};
use super::bn_kernels::{self, Dims};
use super::conv::{self, Geom};
use super::cpu::{f32_slice, give, with_f32};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// One conv + BN (+ ReLU) unit: its sizes and where its parameters sit in the packed vector.
#[derive(Clone, Copy, Debug)]
struct Unit {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
    /// Offset of the conv weight; gamma and beta follow it.
    off: usize,
}

impl Unit {
    fn wlen(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }
    fn params<'a>(&self, p: &'a [f32]) -> (&'a [f32], &'a [f32], &'a [f32]) {
        let w = &p[self.off..self.off + self.wlen()];
        let g = &p[self.off + self.wlen()..self.off + self.wlen() + self.cout];
        let b = &p[self.off + self.wlen() + self.cout..self.off + self.wlen() + 2 * self.cout];
        (w, g, b)
    }
    fn geom(&self, x: [usize; 4]) -> Result<Geom> {
        Geom::new(&x, &[self.cout, self.cin, self.k, self.k], self.stride, self.pad)
    }
}

/// What a unit's forward keeps for the backward.
struct Saved {
    geom: Geom,
    /// Conv output (BN input).
    a: Vec<f32>,
    /// Unit output; `None` where the backward does not need it (the block's output is passed
    /// to `bwd` by candle, the shortcut has no ReLU).
    y: Option<Vec<f32>>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
}

/// Batch statistics of each unit's BN: `(mean, biased var, values per channel)`.
type Stats = Vec<(Vec<f64>, Vec<f64>, usize)>;

/// The fused op: a stem (one unit) or a block (`conv1`, `conv2`, optional shortcut).
struct FusedOp {
    units: Vec<Unit>,
    block: bool,
    saved: Mutex<Option<Vec<Saved>>>,
    stats: Arc<Mutex<Stats>>,
}

fn dims4(d: &[usize]) -> Result<[usize; 4]> {
    match d {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!("fused op: expected a 4-d input, got {d:?}"),
    }
}

impl FusedOp {
    fn unit_forward(&self, u: &Unit, x: &[f32], xd: [usize; 4], p: &[f32], r: Option<&[f32]>) -> Result<Saved> {
        let geom = u.geom(xd)?;
        let (w, gamma, beta) = u.params(p);
        let a = conv::forward(&geom, x, w);
        let d = Dims { n: geom.n, c: u.cout, hw: geom.p() };
        let (mean64, var64) = bn_kernels::channel_stats(&a, d);
        let (mean, invstd) = bn_kernels::invstd(&mean64, &var64, EPS);
        self.stats.lock().expect("stats lock").push((mean64, var64, d.m()));
        let y = bn_kernels::forward(&a, d, gamma, beta, &mean, &invstd, r, u.relu);
        Ok(Saved { geom, a, y: Some(y), mean, invstd })
    }

    /// Backward of one unit given the gradient of its output: `(dx, dw, dgamma, dbeta, dz)`.
    #[allow(clippy::too_many_arguments)]
    fn unit_backward(
        &self,
        u: &Unit,
        s: &Saved,
        x: &[f32],
        y: Option<&[f32]>,
        dy: &[f32],
        p: &[f32],
        need_dx: bool,
    ) -> UnitGrads {
        let (w, gamma, _) = u.params(p);
        let d = Dims { n: s.geom.n, c: u.cout, hw: s.geom.p() };
        let bn = bn_kernels::backward(&s.a, y, dy, d, gamma, &s.mean, &s.invstd, true, u.relu);
        let (dx, dw) = conv::backward(&s.geom, x, w, &bn.dx, need_dx);
        give(bn.dx);
        UnitGrads { dx, dw, dgamma: bn.dgamma, dbeta: bn.dbeta, dz: bn.dz }
    }
}

struct UnitGrads {
    dx: Vec<f32>,
    dw: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    dz: Vec<f32>,
}

impl CustomOp2 for FusedOp {
    fn name(&self) -> &'static str {
        "cfrun-fused-conv-bn"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, p) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let xd = dims4(l1.dims())?;
        self.stats.lock().expect("stats lock").clear();
        let first = self.unit_forward(&self.units[0], x, xd, p, None)?;
        let (mut saved, out) = if !self.block {
            let mut first = first;
            let y = first.y.take().expect("unit output");
            (vec![first], y)
        } else {
            let mid = [xd[0], self.units[0].cout, first.geom.ho, first.geom.wo];
            let short = match self.units.get(2) {
                Some(u) => Some(self.unit_forward(u, x, xd, p, None)?),
                None => None,
            };
            let r = short.as_ref().map_or(x, |s| s.y.as_deref().expect("shortcut output"));
            let h1 = first.y.as_deref().expect("unit output");
            let mut second = self.unit_forward(&self.units[1], h1, mid, p, Some(r))?;
            let y = second.y.take().expect("unit output");
            let mut saved = vec![first, second];
            if let Some(mut s) = short {
                s.y = None;
                saved.push(s);
            }
            (saved, y)
        };
        let g = &saved[saved.len().min(2) - 1].geom;
        let shape = Shape::from((g.n, g.cout, g.ho, g.wo));
        saved.shrink_to_fit();
        *self.saved.lock().expect("saved lock") = Some(saved);
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, x: &Tensor, p: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(saved) = self.saved.lock().expect("saved lock").take() else {
            bail!("fused op: backward run twice or without a training forward")
        };
        let need_dx = x.track_op();
        let dy = dy.contiguous()?;
        let (dx, dp) = with_f32(x, |xs| {
            with_f32(p, |ps| with_f32(y, |ys| with_f32(&dy, |dys| self.backward(&saved, xs, ps, ys, dys, need_dx))))
        })????;
        for s in saved {
            give(s.a);
            give(s.y.unwrap_or_default());
        }
        let dp = Tensor::from_vec(dp, p.shape(), p.device())?;
        let dx = if need_dx { Some(Tensor::from_vec(dx, x.shape(), x.device())?) } else { None };
        Ok((dx, Some(dp)))
    }
}

impl FusedOp {
    fn backward(
        &self,
        saved: &[Saved],
        x: &[f32],
        p: &[f32],
        y: &[f32],
        dy: &[f32],
        need_dx: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut dp = vec![0f32; p.len()];
        let mut put = |u: &Unit, g: &mut UnitGrads| {
            dp[u.off..u.off + u.wlen()].copy_from_slice(&g.dw);
            give(std::mem::take(&mut g.dw));
            dp[u.off + u.wlen()..u.off + u.wlen() + u.cout].copy_from_slice(&g.dgamma);
            dp[u.off + u.wlen() + u.cout..u.off + u.wlen() + 2 * u.cout].copy_from_slice(&g.dbeta);
        };
        if !self.block {
            let mut g = self.unit_backward(&self.units[0], &saved[0], x, Some(y), dy, p, need_dx);
            put(&self.units[0], &mut g);
            give(g.dz);
            return (g.dx, dp);
        }
        let (u1, u2) = (&self.units[0], &self.units[1]);
        let h1 = saved[0].y.as_deref().expect("block keeps conv1's output");
        let mut g2 = self.unit_backward(u2, &saved[1], h1, Some(y), dy, p, true);
        put(u2, &mut g2);
        let mut g1 = self.unit_backward(u1, &saved[0], x, Some(h1), &g2.dx, p, need_dx);
        put(u1, &mut g1);
        give(g2.dx);
        give(g1.dz);
        let mut dx = g1.dx;
        match (self.units.get(2), saved.get(2)) {
            (Some(us), Some(ss)) => {
                let mut gs = self.unit_backward(us, ss, x, None, &g2.dz, p, need_dx);
                put(us, &mut gs);
                dx.iter_mut().zip(&gs.dx).for_each(|(a, b)| *a += b);
                give(gs.dx);
                give(gs.dz);
            }
            _ if need_dx => dx.iter_mut().zip(&g2.dz).for_each(|(a, b)| *a += b),
            _ => {}
        }
        give(g2.dz);
        (dx, dp)
    }
}

/// A conv layer's weight, stride and padding, as the fused op needs them.
pub(crate) struct ConvParts<'a> {
    pub weight: &'a Tensor,
    pub stride: usize,
    pub padding: usize,
}

/// Runs conv-BN units fused in train mode and updates the BN running statistics.
/// `units` is `[stem]` (`block = false`) or `[conv1, conv2, shortcut?]` (`block = true`).
pub(crate) fn train_forward(xs: &Tensor, units: &[(ConvParts, &BatchNorm)], block: bool) -> Result<Tensor> {
    let mut specs = Vec::with_capacity(units.len());
    let mut pieces = Vec::with_capacity(3 * units.len());
    let mut off = 0;
    for (i, (conv, bn)) in units.iter().enumerate() {
        let (cout, cin, k, _) = conv.weight.dims4()?;
        let relu = !block || i < 2;
        specs.push(Unit { cin, cout, k, stride: conv.stride, pad: conv.padding, relu, off });
        off += cout * cin * k * k + 2 * cout;
        let (gamma, beta) = bn.affine();
        pieces.extend([conv.weight.flatten_all()?, gamma.clone(), beta.clone()]);
    }
    let packed = Tensor::cat(&pieces, 0)?;
    let stats = Arc::new(Mutex::new(Vec::new()));
    let op = FusedOp { units: specs, block, saved: Mutex::new(None), stats: stats.clone() };
    let out = xs.contiguous()?.apply_op2(&packed, op)?;
    // The op ran units in the order conv1, shortcut, conv2 for a block.
    let stats = stats.lock().expect("stats lock");
    let order: &[usize] = match (block, units.len()) {
        (false, _) => &[0],
        (true, 3) => &[0, 2, 1],
        _ => &[0, 1],
    };
    for (&u, (mean, var, m)) in order.iter().zip(stats.iter()) {
        units[u].1.update_running_from(mean, var, *m)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::init::init_weights;
    use crate::nn::resnet::{BasicBlock, Conv};
    use candle_core::{DType, Device, Var};
    use candle_nn::{VarBuilder, VarMap};
    use rand::{Rng, SeedableRng};

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Deterministic weights plus random gamma/beta so BN's affine part is exercised.
    fn randomise(vm: &VarMap) {
        init_weights(vm, 3).unwrap();
        let vars = vm.data().lock().unwrap();
        for (name, v) in vars.iter() {
            if v.rank() == 1 && !name.contains("running") {
                let seed = name.len() as u64 + name.bytes().map(u64::from).sum::<u64>();
                let vals: Vec<f32> = rand_vec(v.elem_count(), seed).iter().map(|r| 1.0 + 0.5 * r).collect();
                v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
            }
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar().unwrap()
    }

    /// Outputs, gradients (input and every var) and running statistics of the fused op equal
    /// those of the per-layer ops, for blocks with and without projection shortcuts.
    #[test]
    fn fused_block_matches_per_layer_ops() {
        let dev = Device::Cpu;
        for (i, &(cin, cout, stride, side)) in
            [(4, 4, 1, 7), (4, 8, 2, 7), (3, 5, 1, 6), (2, 3, 2, 4)].iter().enumerate()
        {
            let (vma, vmb) = (VarMap::new(), VarMap::new());
            let a = BasicBlock::new(cin, cout, stride, VarBuilder::from_varmap(&vma, DType::F32, &dev)).unwrap();
            let b = BasicBlock::new(cin, cout, stride, VarBuilder::from_varmap(&vmb, DType::F32, &dev)).unwrap();
            randomise(&vma);
            randomise(&vmb);
            let x = Var::from_vec(rand_vec(5 * cin * side * side, i as u64), (5, cin, side, side), &dev).unwrap();
            let ya = a.forward_t(&x, true).unwrap();
            let yb = b.forward_layers(&x, true).unwrap();
            assert_eq!(ya.dims(), yb.dims());
            assert!(max_diff(&ya, &yb) < 1e-5, "forward case {i}");
            let up = Tensor::from_vec(rand_vec(ya.elem_count(), 99), ya.shape(), &dev).unwrap();
            let ga = (ya * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (yb * &up).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-4, "dx case {i}");
            let (da, db) = (vma.data().lock().unwrap(), vmb.data().lock().unwrap());
            for (name, va) in da.iter() {
                let vb = &db[name];
                if name.contains("running") {
                    assert!(max_diff(va.as_tensor(), vb.as_tensor()) < 1e-5, "{name} case {i}");
                } else {
                    let (x, y) = (ga.get(va.as_tensor()).unwrap(), gb.get(vb.as_tensor()).unwrap());
                    assert!(max_diff(x, y) < 1e-3, "grad {name} case {i}: {}", max_diff(x, y));
                }
            }
        }
    }

    /// The stem unit (conv-BN-ReLU on a plain input) against the per-layer ops.
    #[test]
    fn fused_stem_matches_per_layer_ops() {
        let dev = Device::Cpu;
        let (vma, vmb) = (VarMap::new(), VarMap::new());
        let make = |vm: &VarMap| {
            let vb = VarBuilder::from_varmap(vm, DType::F32, &dev);
            (Conv::new(2, 6, 3, 1, vb.pp("conv1")).unwrap(), BatchNorm::new(6, vb.pp("bn1")).unwrap())
        };
        let ((ca, ba), (cb, bb)) = (make(&vma), make(&vmb));
        randomise(&vma);
        randomise(&vmb);
        let x = Tensor::from_vec(rand_vec(3 * 2 * 8 * 8, 5), (3, 2, 8, 8), &dev).unwrap();
        let ya = train_forward(&x, &[(ca.parts_for_tests(), &ba)], false).unwrap();
        let yb = bb.forward_act(&cb.forward(&x).unwrap(), None, true, true).unwrap();
        assert!(max_diff(&ya, &yb) < 1e-5);
        let ga = ya.sum_all().unwrap().backward().unwrap();
        let gb = yb.sum_all().unwrap().backward().unwrap();
        assert!(ga.get(&x).is_none(), "no gradient for the plain input");
        let (da, db) = (vma.data().lock().unwrap(), vmb.data().lock().unwrap());
        for (name, va) in da.iter() {
            let vb = &db[name];
            match (ga.get(va.as_tensor()), gb.get(vb.as_tensor())) {
                (Some(x), Some(y)) => assert!(max_diff(x, y) < 1e-3, "grad {name}"),
                (None, None) => assert!(max_diff(va.as_tensor(), vb.as_tensor()) < 1e-5, "{name}"),
                _ => panic!("gradient presence differs for {name}"),
            }
        }
    }
}
