//! CPU kernels of batch normalisation on NCHW f32 slices, shared by the per-layer op
//! ([`super::batchnorm`]) and the fused conv-BN units ([`super::fused`]).
//!
//! Forward: `y = act(x * scale[c] + shift[c] + r)` with `scale = gamma * invstd`,
//! `shift = beta - mean * scale`. Backward (batch statistics, PyTorch formula), with
//! `dz = dy * [y > 0]` (or `dy` without ReLU), `xc = x - mean`, `M = N * H * W`:
//! `dbeta = sum dz`, `dgamma = invstd * sum dz * xc`,
//! `dx = scale * (dz - dbeta / M - xc * invstd * dgamma / M)`; with fixed (running) statistics
//! `dx = scale * dz`. The residual's gradient is `dz`.
//!
//! Per-channel sums run over channels in parallel, each in a fixed order; elementwise passes
//! run over images in parallel: results do not depend on the thread count.

use super::cpu::{centred_dot, centred_squares, sum, take_written};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Sizes of an NCHW tensor as BN sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl Dims {
    /// From a 4-d shape.
    pub fn of(dims: &[usize]) -> Self {
        Dims { n: dims[0], c: dims[1], hw: dims[2] * dims[3] }
    }
    fn row(&self, i: usize, ch: usize) -> std::ops::Range<usize> {
        let o = (i * self.c + ch) * self.hw;
        o..o + self.hw
    }
    /// Elements per channel over the batch (`M`).
    pub fn m(&self) -> usize {
        self.n * self.hw
    }
}

/// Per-channel mean and biased variance (two passes, f64 totals).
pub(crate) fn channel_stats(x: &[f32], d: Dims) -> (Vec<f64>, Vec<f64>) {
    let m = d.m() as f64;
    (0..d.c)
        .into_par_iter()
        .map(|ch| {
            let mean = (0..d.n).map(|i| sum(&x[d.row(i, ch)])).sum::<f64>() / m;
            let ss: f64 = (0..d.n).map(|i| centred_squares(&x[d.row(i, ch)], mean as f32)).sum();
            (mean, ss / m)
        })
        .unzip()
}

/// Normalisation constants: `(mean, invstd)` as f32 from f64 statistics.
pub(crate) fn invstd(mean: &[f64], var: &[f64], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let m = mean.iter().map(|&v| v as f32).collect();
    let s = var.iter().map(|&v| (1.0 / (v + eps).sqrt()) as f32).collect();
    (m, s)
}

/// `y = act(x * scale + shift + r)` per channel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    x: &[f32],
    d: Dims,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
    r: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(d.c * d.hw).enumerate().for_each(|(i, yi)| {
            for ch in 0..d.c {
                let (scale, shift) = scale_shift(gamma, beta, mean, invstd, ch);
                let rows = d.row(i, ch);
                let yr = &mut yi[ch * d.hw..(ch + 1) * d.hw];
                let xr = &x[rows.clone()];
                match r {
                    Some(r) => {
                        for ((y, &x), &r) in yr.iter_mut().zip(xr).zip(&r[rows]) {
                            y.write(act(x * scale + shift + r, relu));
                        }
                    }
                    None => {
                        for (y, &x) in yr.iter_mut().zip(xr) {
                            y.write(act(x * scale + shift, relu));
                        }
                    }
                }
            }
        });
    };
    // SAFETY: the channels' rows of each image cover its whole chunk, so every element is written.
    unsafe { take_written(x.len(), fill) }
}

/// Channel `ch`'s `(scale, shift)`: `gamma * invstd` and `beta - mean * scale`.
#[inline(always)]
fn scale_shift(gamma: &[f32], beta: &[f32], mean: &[f32], invstd: &[f32], ch: usize) -> (f32, f32) {
    let scale = gamma[ch] * invstd[ch];
    (scale, beta[ch] - mean[ch] * scale)
}

/// The activation after the affine map (and the residual).
#[inline(always)]
fn act(v: f32, relu: bool) -> f32 {
    if relu {
        v.max(0.0)
    } else {
        v
    }
}

/// Eval-mode BN with fixed statistics, as per-channel constants that a convolution applies to
/// its output while it is still in cache (see [`Epilogue`]).
#[derive(Clone, Debug)]
pub(crate) struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl Affine {
    /// The constants [`forward`] would use for these parameters and statistics.
    pub fn new(gamma: &[f32], beta: &[f32], mean: &[f32], invstd: &[f32], relu: bool) -> Self {
        let (scale, shift) = (0..gamma.len()).map(|ch| scale_shift(gamma, beta, mean, invstd, ch)).unzip();
        Affine { scale, shift, relu }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.scale.len()
    }
}

/// `y = act(y * scale + shift + r)` in place on a convolution's output: [`forward`]'s arithmetic
/// (the same bits) without its extra pass over memory. `r` is the residual, laid out like the
/// whole output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue<'a> {
    pub affine: &'a Affine,
    pub residual: Option<&'a [f32]>,
}

impl Epilogue<'_> {
    /// Applies to `y`, whole `plane`-long channel planes (`NCHW` order) that start at flat index
    /// `at` of the output, itself the start of a plane of channel 0.
    pub fn apply_planes(&self, at: usize, plane: usize, y: &mut [f32]) {
        let c = self.affine.channels();
        for (i, run) in y.chunks_exact_mut(plane).enumerate() {
            self.apply(i % c, at + i * plane, run);
        }
    }

    /// Applies to `y`, a run of channel `ch` that starts at flat index `at` of the output.
    #[inline]
    pub fn apply(&self, ch: usize, at: usize, y: &mut [f32]) {
        let (scale, shift, relu) = (self.affine.scale[ch], self.affine.shift[ch], self.affine.relu);
        match self.residual {
            Some(r) => {
                let r = &r[at..at + y.len()];
                for (y, &r) in y.iter_mut().zip(r) {
                    *y = act(*y * scale + shift + r, relu);
                }
            }
            None => {
                for y in y.iter_mut() {
                    *y = act(*y * scale + shift, relu);
                }
            }
        }
    }
}

/// Gradients of [`forward`].
pub(crate) struct BnGrads {
    /// Gradient of the input `x`.
    pub dx: Vec<f32>,
    /// Gradient of gamma.
    pub dgamma: Vec<f32>,
    /// Gradient of beta.
    pub dbeta: Vec<f32>,
    /// Gradient at the pre-activation sum, which is also the residual's gradient.
    pub dz: Vec<f32>,
}

/// Backward of [`forward`] given the output gradient `dy` and, with ReLU, the output `y`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    x: &[f32],
    y: Option<&[f32]>,
    dy: &[f32],
    d: Dims,
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    batch_stats: bool,
    relu: bool,
) -> BnGrads {
    // dz = dy masked by the ReLU, written once and reused by both passes.
    let fill_dz = |dz: &mut [MaybeUninit<f32>]| {
        dz.par_chunks_mut(d.c * d.hw).enumerate().for_each(|(i, dzi)| {
            let (o, len) = (i * d.c * d.hw, dzi.len());
            let dyi = &dy[o..o + len];
            match y {
                Some(y) if relu => {
                    for ((z, &g), &out) in dzi.iter_mut().zip(dyi).zip(&y[o..o + len]) {
                        z.write(if out > 0.0 { g } else { 0.0 });
                    }
                }
                _ => {
                    for (z, &g) in dzi.iter_mut().zip(dyi) {
                        z.write(g);
                    }
                }
            }
        });
    };
    // SAFETY: every image's chunk is written whole, from `dy` of the same length.
    let dz = unsafe { take_written(x.len(), fill_dz) };
    // Pass 1, per channel: sum(dz) and sum(dz * (x - mean)).
    let sums: Vec<(f64, f64)> = (0..d.c)
        .into_par_iter()
        .map(|ch| {
            let (mut s1, mut s2) = (0.0, 0.0);
            for i in 0..d.n {
                let rows = d.row(i, ch);
                s1 += sum(&dz[rows.clone()]);
                s2 += centred_dot(&dz[rows.clone()], &x[rows], mean[ch]);
            }
            (s1, s2)
        })
        .collect();
    let m = d.m() as f64;
    let (mut dgamma, mut dbeta, mut coef) = (Vec::new(), Vec::new(), Vec::new());
    for (ch, &(s1, s2)) in sums.iter().enumerate() {
        let inv = invstd[ch] as f64;
        let scale = gamma[ch] as f64 * inv;
        dgamma.push((s2 * inv) as f32);
        dbeta.push(s1 as f32);
        // dx = a * dz + b * (x - mean) + c0
        coef.push(if batch_stats {
            (scale as f32, (-scale * inv * inv * s2 / m) as f32, (-scale * s1 / m) as f32)
        } else {
            (scale as f32, 0.0, 0.0)
        });
    }
    // Pass 2, per image: dx.
    let fill_dx = |dx: &mut [MaybeUninit<f32>]| {
        dx.par_chunks_mut(d.c * d.hw).enumerate().for_each(|(i, dxi)| {
            for (ch, &(a, b, c0)) in coef.iter().enumerate() {
                let rows = d.row(i, ch);
                let mu = mean[ch];
                let out = &mut dxi[ch * d.hw..(ch + 1) * d.hw];
                for ((o, &g), &v) in out.iter_mut().zip(&dz[rows.clone()]).zip(&x[rows]) {
                    o.write(a * g + b * (v - mu) + c0);
                }
            }
        });
    };
    // SAFETY: the channels' rows of each image cover its whole chunk.
    let dx = unsafe { take_written(x.len(), fill_dx) };
    BnGrads { dx, dgamma, dbeta, dz }
}
