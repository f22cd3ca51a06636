//! R(2+1)D's stem and residual blocks as single candle ops on CPU, in train mode (batch
//! statistics, hand-written backward) and in eval mode (running statistics, no graph state).
//!
//! Why: one op per layer cost R(2+1)D a quarter of a training step in candle's autograd
//! bookkeeping (an activation-sized `zeros_like` + `add` per node, the adds on candle's
//! spinning thread pool) and in the data movement of the temporal convolutions (shifted
//! stack, subsample, 1x1 convolution's column matrix: three copies of a 3x larger tensor).
//! As in [`super::fused`] for the ResNet, a block is one node `CustomOp2(x, packed)` where
//! `packed` concatenates, per unit, `[conv weight (flattened), gamma, beta]`; candle's `cat`
//! backward hands each var its slice of the packed gradient, so the VarMap, the optimiser and
//! the checkpoints see the same parameters as the per-layer path. Temporal convolutions read
//! their input frames directly ([`super::temporal_conv`]).
//!
//! Units (conv + BN, ReLU unless noted), on frames `(B*T, C, H, W)`:
//! - stem: spatial, temporal;
//! - block: spatial, temporal, spatial, temporal (+ residual, then ReLU), and a shortcut
//!   (temporal subsample, 1x1 spatial conv, BN, no ReLU) when the shape changes.

use super::batchnorm::{BatchNorm, EPS};
use super::bn_kernels::{self, Affine, Dims, Epilogue};
use super::conv::{self, Geom};
use super::cpu::{f32_slice, give, take, with_f32};
use super::fused::ConvParts;
use super::temporal_conv::{self, TGeom};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// The convolution of one unit, as the caller describes it.
pub(crate) enum UnitConv<'a> {
    /// A `k x k` convolution of every frame.
    Spatial(ConvParts<'a>),
    /// A temporal convolution, weight `(Cout, Cin, kt, 1)`, with the stride that applies.
    Temporal { weight: &'a Tensor, stride: usize },
}

/// A unit's convolution, sizes only.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Spatial { k: usize, stride: usize, pad: usize },
    Temporal { kt: usize, stride: usize },
}

/// One conv + BN (+ ReLU) unit and where its parameters sit in the packed vector.
#[derive(Clone, Copy, Debug)]
struct Unit {
    kind: Kind,
    cin: usize,
    cout: usize,
    relu: bool,
    /// Offset of the conv weight; gamma and beta follow it.
    off: usize,
}

/// Frames `(n, c, h, w)` with `t` frames per clip.
#[derive(Clone, Copy, Debug)]
struct Act {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    t: usize,
}

impl Act {
    fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
}

/// A unit's convolution with its sizes fixed by the input.
#[derive(Clone, Copy, Debug)]
enum UnitGeom {
    Spatial(Geom),
    Temporal(TGeom),
}

impl UnitGeom {
    fn forward(&self, x: &[f32], w: &[f32], ep: Option<&Epilogue<'_>>) -> Vec<f32> {
        match self {
            UnitGeom::Spatial(g) => conv::forward_then(g, x, w, ep),
            UnitGeom::Temporal(g) => temporal_conv::forward(g, x, w, ep),
        }
    }
    fn backward(&self, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool) -> (Vec<f32>, Vec<f32>) {
        match self {
            UnitGeom::Spatial(g) => conv::backward(g, x, w, dy, need_dx),
            UnitGeom::Temporal(g) => temporal_conv::backward(g, x, w, dy, need_dx),
        }
    }
}

impl Unit {
    fn taps(&self) -> usize {
        match self.kind {
            Kind::Spatial { k, .. } => k * k,
            Kind::Temporal { kt, .. } => kt,
        }
    }
    fn wlen(&self) -> usize {
        self.cout * self.cin * self.taps()
    }
    fn params<'a>(&self, p: &'a [f32]) -> (&'a [f32], &'a [f32], &'a [f32]) {
        let (o, n) = (self.off, self.wlen());
        (&p[o..o + n], &p[o + n..o + n + self.cout], &p[o + n + self.cout..o + n + 2 * self.cout])
    }
    /// The convolution's geometry on input `a` and the output's shape.
    fn geom(&self, a: Act) -> Result<(UnitGeom, Act)> {
        Ok(match self.kind {
            Kind::Spatial { k, stride, pad } => {
                let g = Geom::new(&[a.n, a.c, a.h, a.w], &[self.cout, self.cin, k, k], stride, pad)?;
                (UnitGeom::Spatial(g), Act { c: self.cout, h: g.ho, w: g.wo, ..a })
            }
            Kind::Temporal { kt, stride } => {
                if a.c != self.cin {
                    bail!("fused video op: temporal conv expects {} channels, got {}", self.cin, a.c)
                }
                let g = TGeom::new(a.n, a.t, a.c, a.h * a.w, self.cout, kt, stride)?;
                (UnitGeom::Temporal(g), Act { n: g.clips * g.to, c: self.cout, t: g.to, ..a })
            }
        })
    }
}

/// What a unit's forward keeps for the backward.
struct Saved {
    geom: UnitGeom,
    /// Conv output (BN input).
    a: Vec<f32>,
    /// Unit output (`None` for the last unit, whose output candle passes to `bwd`, and the
    /// shortcut, which has no ReLU).
    y: Option<Vec<f32>>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
}

/// The shortcut's saved state and its (subsampled, if strided) input.
type SavedShortcut = (Saved, Vec<f32>);

/// Batch statistics of each unit's BN (chain, then shortcut): `(mean, biased var, count)`.
type Stats = Vec<Option<(Vec<f64>, Vec<f64>, usize)>>;

/// The fused op over a chain of units with an optional residual.
struct VideoOp {
    chain: Vec<Unit>,
    /// The projection shortcut, applied to the input's frames kept by `sub`.
    shortcut: Option<Unit>,
    /// Adds the input (or the shortcut) before the last unit's ReLU.
    residual: bool,
    /// Frames per clip of the input.
    t: usize,
    /// The shortcut's temporal stride.
    sub: usize,
    /// Eval mode: the running `(mean, invstd)` of each unit (chain, then shortcut); empty in
    /// train mode.
    running: Vec<(Vec<f32>, Vec<f32>)>,
    /// Train mode: the chain's and the shortcut's saved state, with the subsampled input.
    saved: Mutex<Option<(Vec<Saved>, Option<SavedShortcut>)>>,
    stats: Arc<Mutex<Stats>>,
}

fn dims4(d: &[usize]) -> Result<[usize; 4]> {
    match d {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!("fused video op: expected frames (N*T, C, H, W), got {d:?}"),
    }
}

/// Every `s`-th frame of each clip of `x` (`t` frames per clip, `frame` values each).
fn keep_frames(x: &[f32], t: usize, s: usize, frame: usize) -> Vec<f32> {
    let mut out = take(x.len() / s);
    for (o, f) in out.chunks_exact_mut(frame).zip(x.chunks_exact(frame).step_by(s)) {
        o.copy_from_slice(f);
    }
    debug_assert!(t.is_multiple_of(s));
    out
}

struct UnitGrads {
    dx: Vec<f32>,
    dw: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    dz: Vec<f32>,
}

impl VideoOp {
    fn train(&self) -> bool {
        self.running.is_empty()
    }

    /// Conv, BN statistics (train) or running statistics (eval), BN (+ residual, ReLU).
    fn unit_forward(
        &self,
        i: usize,
        u: &Unit,
        x: &[f32],
        xa: Act,
        p: &[f32],
        r: Option<&[f32]>,
    ) -> Result<(Saved, Act)> {
        let (geom, out) = u.geom(xa)?;
        let (w, gamma, beta) = u.params(p);
        if !self.train() {
            // Running statistics: BN is applied by the convolution as it writes (the same bits).
            let (mean, invstd) = &self.running[i];
            let affine = Affine::new(gamma, beta, mean, invstd, u.relu);
            let y = geom.forward(x, w, Some(&Epilogue { affine: &affine, residual: r }));
            return Ok((Saved { geom, a: Vec::new(), y: Some(y), mean: Vec::new(), invstd: Vec::new() }, out));
        }
        let a = geom.forward(x, w, None);
        let d = Dims { n: out.n, c: u.cout, hw: out.h * out.w };
        let (mean64, var64) = bn_kernels::channel_stats(&a, d);
        let (mean, invstd) = bn_kernels::invstd(&mean64, &var64, EPS);
        self.stats.lock().expect("stats lock")[i] = Some((mean64, var64, d.m()));
        let y = bn_kernels::forward(&a, d, gamma, beta, &mean, &invstd, r, u.relu);
        Ok((Saved { geom, a, y: Some(y), mean, invstd }, out))
    }

    #[allow(clippy::too_many_arguments)]
    fn unit_backward(
        u: &Unit,
        s: &Saved,
        x: &[f32],
        y: Option<&[f32]>,
        dy: &[f32],
        p: &[f32],
        need_dx: bool,
    ) -> UnitGrads {
        let (w, gamma, _) = u.params(p);
        let d = match s.geom {
            UnitGeom::Spatial(g) => Dims { n: g.n, c: u.cout, hw: g.p() },
            UnitGeom::Temporal(g) => Dims { n: g.clips * g.to, c: u.cout, hw: g.p },
        };
        let bn = bn_kernels::backward(&s.a, y, dy, d, gamma, &s.mean, &s.invstd, true, u.relu);
        let (dx, dw) = s.geom.backward(x, w, &bn.dx, need_dx);
        give(bn.dx);
        UnitGrads { dx, dw, dgamma: bn.dgamma, dbeta: bn.dbeta, dz: bn.dz }
    }

    fn forward(&self, x: &[f32], xa: Act, p: &[f32]) -> Result<(Vec<f32>, Act)> {
        let train = self.train();
        let short = match &self.shortcut {
            Some(u) => {
                let frame = xa.c * xa.h * xa.w;
                let (xs, sa) = if self.sub > 1 {
                    (keep_frames(x, xa.t, self.sub, frame), Act { n: xa.n / self.sub, t: xa.t / self.sub, ..xa })
                } else {
                    (Vec::new(), xa)
                };
                let input = if self.sub > 1 { &xs[..] } else { x };
                let (s, _) = self.unit_forward(self.chain.len(), u, input, sa, p, None)?;
                Some((s, xs))
            }
            None => None,
        };
        let last = self.chain.len() - 1;
        let mut saved: Vec<Saved> = Vec::with_capacity(self.chain.len());
        let mut act = xa;
        for (i, u) in self.chain.iter().enumerate() {
            let r = match (&short, i == last && self.residual) {
                (_, false) => None,
                (Some((s, _)), true) => s.y.as_deref(),
                (None, true) => Some(x),
            };
            let input = match saved.last() {
                Some(s) => s.y.as_deref().expect("unit output"),
                None => x,
            };
            let (s, out) = self.unit_forward(i, u, input, act, p, r)?;
            act = out;
            if !train {
                // Nothing is kept: the previous output and this conv output go back to the pool.
                if let Some(prev) = saved.pop() {
                    give(prev.y.unwrap_or_default());
                }
                give(s.a);
                saved.push(Saved { a: Vec::new(), ..s });
            } else {
                saved.push(s);
            }
        }
        let out = saved.last_mut().and_then(|s| s.y.take()).expect("unit output");
        if train {
            let short = short.map(|(mut s, xs)| {
                give(s.y.take().unwrap_or_default());
                (s, xs)
            });
            *self.saved.lock().expect("saved lock") = Some((saved, short));
        } else if let Some((s, xs)) = short {
            give(s.a);
            give(s.y.unwrap_or_default());
            give(xs);
        }
        Ok((out, act))
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        saved: &[Saved],
        short: Option<&SavedShortcut>,
        x: &[f32],
        xa: Act,
        p: &[f32],
        y: &[f32],
        dy: &[f32],
        need_dx: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut dp = vec![0f32; p.len()];
        let mut put = |u: &Unit, g: &mut UnitGrads| {
            let (o, n) = (u.off, u.wlen());
            dp[o..o + n].copy_from_slice(&g.dw);
            give(std::mem::take(&mut g.dw));
            dp[o + n..o + n + u.cout].copy_from_slice(&g.dgamma);
            dp[o + n + u.cout..o + n + 2 * u.cout].copy_from_slice(&g.dbeta);
        };
        let last = self.chain.len() - 1;
        let mut grad: Vec<f32> = Vec::new();
        let mut dz_out = Vec::new();
        for i in (0..=last).rev() {
            let u = &self.chain[i];
            let input = if i == 0 { x } else { saved[i - 1].y.as_deref().expect("unit output") };
            let output = if i == last { y } else { saved[i].y.as_deref().expect("unit output") };
            let dyi = if i == last { dy } else { &grad };
            let mut g = Self::unit_backward(u, &saved[i], input, Some(output), dyi, p, i > 0 || need_dx);
            put(u, &mut g);
            if i == last {
                dz_out = g.dz;
            } else {
                give(g.dz);
            }
            give(std::mem::replace(&mut grad, g.dx));
        }
        let mut dx = grad;
        match (&self.shortcut, short) {
            (Some(u), Some((s, xs))) => {
                let input = if self.sub > 1 { &xs[..] } else { x };
                let mut g = Self::unit_backward(u, s, input, None, &dz_out, p, need_dx);
                put(u, &mut g);
                if need_dx {
                    let frame = xa.c * xa.h * xa.w;
                    for (d, s) in dx.chunks_exact_mut(frame).step_by(self.sub).zip(g.dx.chunks_exact(frame)) {
                        d.iter_mut().zip(s).for_each(|(a, b)| *a += b);
                    }
                }
                give(g.dx);
                give(g.dz);
            }
            _ if self.residual && need_dx => dx.iter_mut().zip(&dz_out).for_each(|(a, b)| *a += b),
            _ => {}
        }
        give(dz_out);
        (dx, dp)
    }
}

impl CustomOp2 for VideoOp {
    fn name(&self) -> &'static str {
        "cfrun-fused-video"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, p) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let [n, c, h, w] = dims4(l1.dims())?;
        let (y, out) = self.forward(x, Act { n, c, h, w, t: self.t }, p)?;
        debug_assert_eq!(y.len(), out.len());
        Ok((CpuStorage::F32(y), Shape::from((out.n, out.c, out.h, out.w))))
    }

    fn bwd(&self, x: &Tensor, p: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some((saved, short)) = self.saved.lock().expect("saved lock").take() else {
            bail!("fused video op: backward run twice or without a training forward")
        };
        let [n, c, h, w] = dims4(x.dims())?;
        let xa = Act { n, c, h, w, t: self.t };
        let need_dx = x.track_op();
        let dy = dy.contiguous()?;
        let (dx, dp) = with_f32(x, |xs| {
            with_f32(p, |ps| {
                with_f32(y, |ys| {
                    with_f32(&dy, |dys| self.backward(&saved, short.as_ref(), xs, xa, ps, ys, dys, need_dx))
                })
            })
        })????;
        for s in saved.into_iter().chain(short.map(|(s, xs)| {
            give(xs);
            s
        })) {
            give(s.a);
            give(s.y.unwrap_or_default());
        }
        let dp = Tensor::from_vec(dp, p.shape(), p.device())?;
        let dx = if need_dx { Some(Tensor::from_vec(dx, x.shape(), x.device())?) } else { None };
        Ok((dx, Some(dp)))
    }
}

/// A fused chain: its units (conv and BN), whether the input is added before the last ReLU,
/// and the projection shortcut with its temporal stride.
pub(crate) struct Chain<'a> {
    /// The main path, in order; every unit ends in a ReLU.
    pub units: Vec<(UnitConv<'a>, &'a BatchNorm)>,
    /// Add the input (or the shortcut's output) before the last ReLU.
    pub residual: bool,
    /// A 1x1 strided projection (no ReLU) on every `sub`-th frame of the input.
    pub shortcut: Option<(ConvParts<'a>, &'a BatchNorm)>,
    /// The shortcut's temporal stride.
    pub sub: usize,
}

/// Runs `chain` on frames `xs` (`t` per clip) as one op; in train mode (batch statistics)
/// it also updates the BN running statistics. Returns the output frames and their `t`.
pub(crate) fn forward(xs: &Tensor, t: usize, chain: &Chain, train: bool) -> Result<(Tensor, usize)> {
    let mut pieces = Vec::with_capacity(3 * (chain.units.len() + 1));
    let mut off = 0;
    let mut unit = |conv: &UnitConv, bn: &BatchNorm, relu: bool| -> Result<Unit> {
        let (weight, kind) = match conv {
            UnitConv::Spatial(c) => {
                let k = c.weight.dim(2)?;
                (c.weight, Kind::Spatial { k, stride: c.stride, pad: c.padding })
            }
            UnitConv::Temporal { weight, stride } => (*weight, Kind::Temporal { kt: weight.dim(2)?, stride: *stride }),
        };
        let (cout, cin) = (weight.dim(0)?, weight.dim(1)?);
        let u = Unit { kind, cin, cout, relu, off };
        off += u.wlen() + 2 * cout;
        let (gamma, beta) = bn.affine();
        pieces.extend([weight.flatten_all()?, gamma.clone(), beta.clone()]);
        Ok(u)
    };
    let units = chain.units.iter().map(|(c, bn)| unit(c, bn, true)).collect::<Result<Vec<_>>>()?;
    let shortcut = match &chain.shortcut {
        Some((c, bn)) => Some(unit(&UnitConv::Spatial(ConvParts { ..*c }), bn, false)?),
        None => None,
    };
    let bns: Vec<&BatchNorm> =
        chain.units.iter().map(|(_, bn)| *bn).chain(chain.shortcut.iter().map(|s| s.1)).collect();
    let running = if train { Vec::new() } else { bns.iter().map(|bn| bn.running_invstd()).collect::<Result<_>>()? };
    let packed = Tensor::cat(&pieces, 0)?;
    let stats = Arc::new(Mutex::new(vec![None; bns.len()]));
    let sub = if shortcut.is_some() { chain.sub } else { 1 };
    let op = VideoOp {
        chain: units,
        shortcut,
        residual: chain.residual,
        t,
        sub,
        running,
        saved: Mutex::new(None),
        stats: stats.clone(),
    };
    let out_t = out_frames(&op, t);
    let out = if train { xs.contiguous()?.apply_op2(&packed, op)? } else { eval_apply(xs, &packed, op)? };
    if train {
        let stats = stats.lock().expect("stats lock");
        for (bn, s) in bns.iter().zip(stats.iter()) {
            let (mean, var, m) = s.as_ref().expect("every unit ran");
            bn.update_running_from(mean, var, *m)?;
        }
    }
    Ok((out, out_t))
}

/// Frames per clip after the op's temporal strides.
fn out_frames(op: &VideoOp, t: usize) -> usize {
    op.chain.iter().fold(t, |t, u| match u.kind {
        Kind::Temporal { stride, .. } => t / stride,
        Kind::Spatial { .. } => t,
    })
}

/// Eval mode: the op on detached inputs, so no graph keeps its inputs alive.
fn eval_apply(xs: &Tensor, packed: &Tensor, op: VideoOp) -> Result<Tensor> {
    xs.detach().contiguous()?.apply_op2(&packed.detach(), op)
}
