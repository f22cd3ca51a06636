//! The temporal convolution of a (2+1)D conv as CPU kernels on f32 frames, for the fused
//! R(2+1)D ops ([`super::fused_video`]).
//!
//! Shapes: input `(B*T, C, P)` (frames, clip-major; `P` pixels per frame), weight
//! `(Cout, C, kt)` (the var `(Cout, C, kt, 1)` as stored), output `(B*To, Cout, P)` with
//! `To = T / s`: `y[b, t, o, p] = sum_{c, dt} w[o, c, dt] x[b, t*s + dt - kt/2, c, p]`, zero
//! where the frame index leaves the clip.
//!
//! Why: the per-layer path stacks the shifted frames into a `kt`-times larger tensor (zeroed,
//! then copied), drops the odd frames for a stride of 2 (another copy) and hands it to a 1x1
//! convolution, which copies it once more into its column matrix. Here the column matrix
//! `col[C*kt, frames*P]` of a group of clips is gathered straight from the input frames (row
//! `c*kt + dt`, so the weight is used as stored) and one GEMM per group makes the output.
//!
//! Determinism: clips are processed in fixed chunks, every GEMM runs on one thread, and the
//! weight-gradient partial sums of the chunks are added in chunk order; the input gradient of
//! a clip is accumulated inside its chunk in a fixed order. Results do not depend on the
//! number of threads.

use super::bn_kernels::Epilogue;
use super::cpu::{dx_chunks, give, sum_partials, take, take_zeroed};
use crate::linalg::{matmul, MatRef};
use candle_core::{bail, Result};
use gemm::Parallelism;
use rayon::prelude::*;

/// Clips per backward work item (one weight-gradient partial sum each).
const CHUNK: usize = 8;
/// Target minimum GEMM width (columns) when grouping clips with few small frames.
const MIN_COLS: usize = 192;

/// Sizes of one temporal convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TGeom {
    /// Clips.
    pub clips: usize,
    /// Input frames per clip.
    pub t: usize,
    /// Input channels.
    pub c: usize,
    /// Pixels per frame.
    pub p: usize,
    pub cout: usize,
    /// Frames per kernel (odd).
    pub kt: usize,
    /// Temporal stride (the caller only uses 2 on an even frame count).
    pub s: usize,
    /// Output frames per clip.
    pub to: usize,
}

impl TGeom {
    /// From `frames = clips * t` input frames of `c x p` values, `cout` outputs, `kt` taps and
    /// stride `s`.
    pub fn new(frames: usize, t: usize, c: usize, p: usize, cout: usize, kt: usize, s: usize) -> Result<Self> {
        if t == 0 || !frames.is_multiple_of(t) || kt.is_multiple_of(2) || s == 0 || !t.is_multiple_of(s) {
            bail!("temporal conv: bad sizes: {frames} frames of {t} per clip, kt {kt}, stride {s}")
        }
        Ok(TGeom { clips: frames / t, t, c, p, cout, kt, s, to: t / s })
    }
    /// Rows of the column matrix: `C * kt`.
    pub fn kdim(&self) -> usize {
        self.c * self.kt
    }
    fn in_clip(&self) -> usize {
        self.t * self.c * self.p
    }
    fn out_clip(&self) -> usize {
        self.to * self.cout * self.p
    }
    fn out_frame(&self) -> usize {
        self.cout * self.p
    }
    /// For output frame `t` and tap `dt`, the input frame, if inside the clip.
    fn src(&self, t: usize, dt: usize) -> Option<usize> {
        (t * self.s + dt).checked_sub(self.kt / 2).filter(|&f| f < self.t)
    }
    /// Clips per GEMM: a power of two dividing [`CHUNK`], enough to reach [`MIN_COLS`].
    fn group(&self) -> usize {
        let mut g = 1;
        while g < CHUNK && g * self.to * self.p < MIN_COLS {
            g *= 2;
        }
        g
    }
}

/// Writes the column matrix of the `gn` clips starting at `clip0` (`x` holds all clips):
/// `col[c*kt + dt, (j*To + t)*P + p] = x[clip0 + j, t*s + dt - kt/2, c, p]`, row length `ld`.
fn gather(g: &TGeom, x: &[f32], clip0: usize, gn: usize, col: &mut [f32], ld: usize) {
    let (p, frame) = (g.p, g.c * g.p);
    for j in 0..gn {
        for t in 0..g.to {
            let at = (j * g.to + t) * p;
            for dt in 0..g.kt {
                let src = g.src(t, dt).map(|f| &x[((clip0 + j) * g.t + f) * frame..][..frame]);
                for c in 0..g.c {
                    let dst = &mut col[(c * g.kt + dt) * ld + at..][..p];
                    match src {
                        Some(s) => dst.copy_from_slice(&s[c * p..(c + 1) * p]),
                        None => dst.fill(0.0),
                    }
                }
            }
        }
    }
}

/// The adjoint of [`gather`]: adds `dcol` back into the input gradient of the group's clips
/// (`dx` starts at clip `clip0`), output frames and taps in ascending order.
fn scatter_add(g: &TGeom, dcol: &[f32], ld: usize, gn: usize, dx: &mut [f32]) {
    let (p, frame) = (g.p, g.c * g.p);
    for j in 0..gn {
        for t in 0..g.to {
            let at = (j * g.to + t) * p;
            for dt in 0..g.kt {
                let Some(f) = g.src(t, dt) else { continue };
                let dst = &mut dx[(j * g.t + f) * frame..][..frame];
                for c in 0..g.c {
                    let src = &dcol[(c * g.kt + dt) * ld + at..][..p];
                    dst[c * p..(c + 1) * p].iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            }
        }
    }
}

/// Forward pass: `y[B*To, Cout, P]`, with `ep` applied to each group of clips' output while it
/// is in cache.
pub(crate) fn forward(g: &TGeom, x: &[f32], w: &[f32], ep: Option<&Epilogue<'_>>) -> Vec<f32> {
    let gs = g.group();
    // Every element is written by a GEMM or the copy below.
    let mut y = take(g.clips * g.out_clip());
    y.par_chunks_mut(gs * g.out_clip()).enumerate().for_each(|(i, ys)| {
        let gn = ys.len() / g.out_clip();
        let (nf, ld) = (gn * g.to, gn * g.to * g.p);
        let mut col = take(g.kdim() * ld);
        gather(g, x, i * gs, gn, &mut col, ld);
        let wm = MatRef::row_major(w, g.cout, g.kdim());
        let colm = MatRef::row_major(&col, g.kdim(), ld);
        if nf == 1 {
            matmul(ys, wm, colm, 1.0, false, Parallelism::None);
        } else {
            let mut tmp = take(g.cout * ld);
            matmul(&mut tmp, wm, colm, 1.0, false, Parallelism::None);
            for f in 0..nf {
                for o in 0..g.cout {
                    ys[f * g.out_frame() + o * g.p..][..g.p].copy_from_slice(&tmp[o * ld + f * g.p..][..g.p]);
                }
            }
            give(tmp);
        }
        give(col);
        if let Some(ep) = ep {
            ep.apply_planes(i * gs * g.out_clip(), g.p, ys);
        }
    });
    y
}

/// Backward pass: the input gradient (when `need_dx`, else empty) and the weight gradient.
pub(crate) fn backward(g: &TGeom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool) -> (Vec<f32>, Vec<f32>) {
    let (gs, kdim) = (g.group(), g.kdim());
    let nchunks = g.clips.div_ceil(CHUNK);
    let mut dx = if need_dx { take_zeroed(g.clips * g.in_clip()) } else { Vec::new() };
    let partials: Vec<Vec<f32>> = dx_chunks(&mut dx, need_dx, CHUNK * g.in_clip(), nchunks)
        .into_par_iter()
        .enumerate()
        .map(|(chunk, mut dxc)| {
            // Fully written by the first GEMM (which does not accumulate).
            let mut dw = take(g.cout * kdim);
            let (i0, i1) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(g.clips));
            for (gi, c0) in (i0..i1).step_by(gs).enumerate() {
                let gn = gs.min(i1 - c0);
                let (nf, ld) = (gn * g.to, gn * g.to * g.p);
                let mut col = take(kdim * ld);
                gather(g, x, c0, gn, &mut col, ld);
                // The group's output gradient as a `[Cout, frames*P]` matrix.
                let dyc = &dy[c0 * g.out_clip()..][..gn * g.out_clip()];
                let mut dyg = Vec::new();
                let dys: &[f32] = if nf == 1 {
                    dyc
                } else {
                    dyg = take(g.cout * ld);
                    for f in 0..nf {
                        for o in 0..g.cout {
                            dyg[o * ld + f * g.p..][..g.p].copy_from_slice(&dyc[f * g.out_frame() + o * g.p..][..g.p]);
                        }
                    }
                    &dyg
                };
                let dym = MatRef::row_major(dys, g.cout, ld);
                // dW[Cout, C*kt] += dY[Cout, cols] * col^T[cols, C*kt]
                matmul(&mut dw, dym, MatRef::row_major(&col, kdim, ld).t(), 1.0, gi > 0, Parallelism::None);
                if let Some(dxc) = dxc.as_deref_mut() {
                    // dcol[C*kt, cols] = W^T[C*kt, Cout] * dY[Cout, cols], reusing col's buffer.
                    let wt = MatRef::row_major(w, g.cout, kdim).t();
                    matmul(&mut col, wt, dym, 1.0, false, Parallelism::None);
                    scatter_add(g, &col, ld, gn, &mut dxc[(c0 - i0) * g.in_clip()..]);
                }
                give(col);
                give(dyg);
            }
            dw
        })
        .collect();
    (dx, sum_partials(partials, g.cout * kdim))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    /// The definition, summed in f64.
    fn naive(g: &TGeom, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0f64; g.clips * g.out_clip()];
        for b in 0..g.clips {
            for t in 0..g.to {
                for o in 0..g.cout {
                    for p in 0..g.p {
                        let mut s = 0.0;
                        for c in 0..g.c {
                            for dt in 0..g.kt {
                                if let Some(f) = g.src(t, dt) {
                                    let xv = x[((b * g.t + f) * g.c + c) * g.p + p] as f64;
                                    s += w[(o * g.c + c) * g.kt + dt] as f64 * xv;
                                }
                            }
                        }
                        y[((b * g.to + t) * g.cout + o) * g.p + p] = s;
                    }
                }
            }
        }
        y
    }

    /// Forward against the definition; both gradients against the adjoint identity
    /// `<dy, conv(x, w)> = <dx, x> = <dw, w>` (the convolution is bilinear) and, for single
    /// entries, against the definition's derivative.
    #[test]
    fn forward_and_gradients_match_the_definition() {
        // clips, t, c, p, cout, kt, s: groups of one and several clips, strides 1 and 2, a
        // batch that is not a multiple of the chunk, one frame per clip.
        for (i, &(b, t, c, p, co, kt, s)) in [
            (3, 4, 2, 5, 3, 3, 1),
            (2, 8, 3, 9, 2, 3, 2),
            (11, 2, 2, 4, 3, 3, 2),
            (5, 1, 3, 2, 2, 3, 1),
            (2, 5, 1, 3, 2, 5, 1),
        ]
        .iter()
        .enumerate()
        {
            let g = TGeom::new(b * t, t, c, p, co, kt, s).unwrap();
            let x = vals(b * t * c * p, i as f32);
            let w = vals(co * c * kt, 10.0 + i as f32);
            let y = forward(&g, &x, &w, None);
            for (a, e) in y.iter().zip(naive(&g, &x, &w)) {
                assert!((*a as f64 - e).abs() < 1e-4, "forward case {i}");
            }
            let dy = vals(y.len(), 20.0 + i as f32);
            let (dx, dw) = backward(&g, &x, &w, &dy, true);
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&u, &v)| u as f64 * v as f64).sum::<f64>();
            let yd = dot(&dy, &y);
            assert!((dot(&dx, &x) - yd).abs() < 1e-3, "dx case {i}");
            assert!((dot(&dw, &w) - yd).abs() < 1e-3, "dw case {i}");
            // d<dy, y>/dw[j] = <dy, conv(x, e_j)>.
            for j in [0, w.len() / 2, w.len() - 1] {
                let mut e = vec![0f32; w.len()];
                e[j] = 1.0;
                let want: f64 = naive(&g, &x, &e).iter().zip(&dy).map(|(a, &b)| a * b as f64).sum();
                assert!((dw[j] as f64 - want).abs() < 1e-4, "dw[{j}] case {i}");
            }
            let (none, dw2) = backward(&g, &x, &w, &dy, false);
            assert!(none.is_empty());
            assert_eq!(dw, dw2);
        }
    }

    /// With an epilogue (BN, residual, ReLU), the output has the bits of the forward pass
    /// followed by the separate BN kernel, in groups of one and several clips.
    #[test]
    fn epilogue_matches_the_separate_bn_bitwise() {
        use super::super::bn_kernels::{self, Affine, Dims};
        for (i, &(b, t, c, p, co, s)) in
            [(3, 4, 2, 5, 3, 1), (11, 2, 2, 4, 3, 2), (5, 1, 3, 2, 2, 1)].iter().enumerate()
        {
            let g = TGeom::new(b * t, t, c, p, co, 3, s).unwrap();
            let x = vals(b * t * c * p, i as f32);
            let w = vals(co * c * 3, 10.0 + i as f32);
            let (gamma, beta, mean) = (vals(co, 1.0), vals(co, 2.0), vals(co, 3.0));
            let invstd: Vec<f32> = vals(co, 4.0).iter().map(|v| 1.5 + v).collect();
            let r = vals(g.clips * g.out_clip(), 5.0);
            let affine = Affine::new(&gamma, &beta, &mean, &invstd, true);
            let fused = forward(&g, &x, &w, Some(&Epilogue { affine: &affine, residual: Some(&r) }));
            let d = Dims { n: g.clips * g.to, c: co, hw: p };
            let separate =
                bn_kernels::forward(&forward(&g, &x, &w, None), d, &gamma, &beta, &mean, &invstd, Some(&r), true);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused), bits(&separate), "case {i}");
        }
    }
}
