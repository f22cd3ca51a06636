//! 3x3 stride-1 "same" convolutions by Winograd's minimal filtering F(m x m, 3x3) with
//! m = 2 or 4: the forward pass, the input gradient and the weight gradient, all on CPU f32.
//!
//! Why: these convolutions carry about three quarters of a ResNet's multiply-adds. im2col
//! spends 9 multiplies per output pixel and input channel; F(2x2, 3x3) spends 16 per 2x2
//! output tile (4 per pixel) and F(4x4, 3x3) 36 per 4x4 tile (2.25 per pixel). The
//! transformed tiles also hold fewer floats per input pixel than a column matrix's 9: 4 for
//! F(2x2) and 2.25 for F(4x4), so less memory moves.
//!
//! Which one: the one needing fewer products for the plane ([`prefers_f4`]): F(4x4) on
//! every plane the presets have (28, 14, 7 and 4 wide), F(2x2) on 1x1 and 2x2 planes.
//! F(4x4)'s transforms have larger coefficients (up to 8 and down to 1/24), so it rounds a
//! little worse than F(2x2): within 1e-4 of im2col, relative to the largest output, in the
//! tests below.
//!
//! With `B`, `G`, `A` the F(m, 3) matrices, one `m x m` output tile of one (output, input)
//! channel pair is `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` for the 3x3 filter `g` and the
//! `(m+2) x (m+2)` input patch `d`. Summing over input channels turns the `(m+2)²`
//! elementwise products into as many GEMMs `M[ξ] = U[ξ] · V[ξ]` (`U[ξ]`: Cout x Cin,
//! `V[ξ]`: Cin x tiles). By linearity:
//! - the input gradient is the same convolution of the output gradient with the filters
//!   rotated by 180° and their channel axes swapped;
//! - the weight gradient is `Gᵀ[Σ_tiles (A dY Aᵀ) ⊙ (Bᵀ d B)]G`, again `(m+2)²` GEMMs
//!   (Cout x tiles times tiles x Cin) followed by one small transform per filter.
//!
//! Determinism: group sizes depend only on the geometry, every GEMM runs on one thread, and
//! the weight gradient is summed either as in [`super::conv`] (per-chunk partial sums added in
//! chunk order) or point by point over the groups in order ([`by_points`]), so results do not
//! depend on the number of threads.

/// Applies a 1-D transform to the rows and then the columns of a square block.
macro_rules! two_d {
    ($f:expr, $d:expr, $n:expr, $m:expr) => {{
        let d = $d;
        let mut rows = [[0f32; $m]; $n];
        for r in 0..$n {
            rows[r] = $f(d[r]);
        }
        let mut out = [[0f32; $m]; $m];
        for c in 0..$m {
            let col = $f(from_fn(|r| rows[r][c]));
            for r in 0..$m {
                out[r][c] = col[r];
            }
        }
        out
    }};
}

#[cfg(test)]
mod tests;
mod transforms;
mod variants;

use super::bn_kernels::Epilogue;
use super::conv::{Geom, CHUNK};
use super::cpu::{give, sum_partials, take, take_written};
use crate::linalg::{matmul, matmul_thin, MatRef};
use gemm::Parallelism;
use rayon::prelude::*;
use std::array::from_fn;
use std::mem::MaybeUninit;
use transforms::{filter, transform_filters, transform_grad, transform_input, transform_output};
use variants::{Variant, F2, F4};

/// Fewest tiles a group of images should give one GEMM.
const MIN_TILES: usize = 96;
/// Fewest channels on both sides for the Winograd path to beat im2col. Measured with the
/// vector transforms and [`matmul_thin`] (`benches/profiles/nets.md`, sixth round): from 16,
/// resnet_cpu inference on one thread +20 %; from 8, resnet_small 3-10 % slower than from 16.
pub(super) const MIN_CHANNELS: usize = 16;

/// True when `g` is a convolution this module computes.
pub(crate) fn applies(g: &Geom) -> bool {
    g.k == 3 && g.s == 1 && g.pad == 1 && g.cin >= MIN_CHANNELS && g.cout >= MIN_CHANNELS
}

/// Whether F(4x4, 3x3) needs fewer products than F(2x2, 3x3) for the plane of `g`: it
/// does unless the plane is tiny, even where its 4x4 tiles overhang (14x14 takes 16 of them).
fn prefers_f4(g: &Geom) -> bool {
    let products = |m: usize| g.h.div_ceil(m) * g.w.div_ceil(m) * (m + 2) * (m + 2);
    products(4) < products(2)
}

/// Tiling of one image plane: `th x tw` tiles of `m x m` outputs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tiles {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) th: usize,
    pub(super) tw: usize,
}

impl Tiles {
    pub(super) fn new(g: &Geom, m: usize) -> Self {
        Tiles { h: g.h, w: g.w, th: g.h.div_ceil(m), tw: g.w.div_ceil(m) }
    }
    /// Tiles per image.
    pub(super) fn per_image(&self) -> usize {
        self.th * self.tw
    }
    /// Images per group of the forward pass (and of the weight gradient by points): the
    /// fewest, a power of two, that give [`MIN_TILES`] tiles, or the whole batch of `n`.
    /// Small planes make large groups: the GEMMs of a few tiles were dominated by packing
    /// the filters, once per group.
    pub(super) fn group(&self, n: usize) -> usize {
        let mut g = 1;
        while g < n && g * self.per_image() < MIN_TILES {
            g *= 2;
        }
        g
    }
    /// Images per group of the weight gradient by chunks: as [`Tiles::group`], but
    /// dividing [`CHUNK`].
    pub(super) fn chunk_group(&self) -> usize {
        self.group(CHUNK)
    }
}

/// `out[n, co] = Σ_ci conv(x[n, ci], filters)` for `n` images of `cin` channels, with the
/// filters transformed by [`transform_filters`].
fn convolve<V: Variant<M, A>, const M: usize, const A: usize>(
    t: &Tiles,
    n: usize,
    cin: usize,
    cout: usize,
    x: &[f32],
    u: &[f32],
    ep: Option<&Epilogue<'_>>,
) -> Vec<f32> {
    let plane = t.h * t.w;
    let gs = t.group(n);
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(gs * cout * plane).enumerate().for_each(|(chunk, ys)| {
            let gn = ys.len() / (cout * plane);
            let n0 = chunk * gs;
            let ld = gn * t.per_image();
            let mut v = take(A * A * ld * cin);
            transform_input::<V, M, A>(t, cin, &x[n0 * cin * plane..(n0 + gn) * cin * plane], gn, &mut v, ld);
            let mut m = take(A * A * ld * cout);
            // One GEMM per point, in parallel: a small plane makes one group of the whole batch.
            m.par_chunks_mut(ld * cout).enumerate().for_each(|(xi, mx)| {
                // Mᵀ[ξ] (T x Cout) = Vᵀ[ξ] (T x Cin) · Uᵀ[ξ] (Cin x Cout)
                let vx = &v[xi * ld * cin..][..ld * cin];
                matmul_thin(mx, vx, &u[xi * cin * cout..][..cin * cout], (ld, cin, cout));
            });
            transform_output::<V, M, A>(t, cout, &m, ld, gn, ys, ep.map(|e| (e, n0 * cout * plane)));
            give(v);
            give(m);
        });
    };
    // SAFETY: `transform_output` writes every pixel of every channel of its group's images.
    unsafe { take_written(n * cout * plane, fill) }
}

/// Forward pass: `y[N, Cout, H, W]`, with `ep` applied to it as it is written.
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32], ep: Option<&Epilogue<'_>>) -> Vec<f32> {
    if prefers_f4(g) {
        forward_with::<F4, 4, 6>(g, x, w, ep)
    } else {
        forward_with::<F2, 2, 4>(g, x, w, ep)
    }
}

/// Backward pass: input gradient (when `need_dx`, else empty) and weight gradient.
pub(crate) fn backward(g: &Geom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool) -> (Vec<f32>, Vec<f32>) {
    if prefers_f4(g) {
        backward_with::<F4, 4, 6>(g, x, w, dy, need_dx)
    } else {
        backward_with::<F2, 2, 4>(g, x, w, dy, need_dx)
    }
}

/// [`forward`] by the variant `V`.
fn forward_with<V: Variant<M, A>, const M: usize, const A: usize>(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    ep: Option<&Epilogue<'_>>,
) -> Vec<f32> {
    let t = Tiles::new(g, M);
    let u = transform_filters::<V, M, A>(g.cout, g.cin, |co, ci| filter(w, g.cin, co, ci));
    let y = convolve::<V, M, A>(&t, g.n, g.cin, g.cout, x, &u, ep);
    give(u);
    y
}

/// [`backward`] by the variant `V`.
fn backward_with<V: Variant<M, A>, const M: usize, const A: usize>(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>) {
    let t = Tiles::new(g, M);
    let dx = if need_dx {
        // The input gradient is the convolution of dY with the rotated, channel-swapped filters.
        let u = transform_filters::<V, M, A>(g.cin, g.cout, |ci, co| {
            let f = filter(w, g.cin, co, ci);
            from_fn(|r| from_fn(|k| f[2 - r][2 - k]))
        });
        let dx = convolve::<V, M, A>(&t, g.n, g.cout, g.cin, dy, &u, None);
        give(u);
        dx
    } else {
        Vec::new()
    };
    let dwt = if by_points(g, &t) {
        weight_grad_by_points::<V, M, A>(g, &t, x, dy)
    } else {
        weight_grad_by_chunks::<V, M, A>(g, &t, x, dy)
    };
    let xi_len = g.cout * g.cin;
    let mut dw = vec![0f32; xi_len * 9];
    // Filters per parallel task of the final transform.
    const FILTERS: usize = 256;
    dw.par_chunks_mut(9 * FILTERS).enumerate().for_each(|(block, out)| {
        for (i, f9) in out.chunks_exact_mut(9).enumerate() {
            let pair = block * FILTERS + i;
            let d: [[f32; A]; A] = from_fn(|r| from_fn(|k| dwt[(r * A + k) * xi_len + pair]));
            let f = two_d!(V::filter_grad, d, A, 3);
            for (o, v) in f9.iter_mut().zip(f.iter().flatten()) {
                *o = *v;
            }
        }
    });
    give(dwt);
    (dx, dw)
}

/// Whether the weight gradient is summed point by point over the whole batch rather than
/// chunk by chunk: when a chunk's partial sums (`Cout x Cin` per point) would outweigh its
/// transformed tiles (`tiles x (Cin + Cout)` per point), as on small planes of many channels,
/// where the partials made the weight gradient memory-bound.
fn by_points(g: &Geom, t: &Tiles) -> bool {
    g.cout * g.cin > CHUNK * t.per_image() * (g.cin + g.cout)
}

/// The transformed weight gradient `dŴ[ξ][co][ci]`, summed over fixed chunks of
/// [`CHUNK`] images whose partial sums are added in chunk order.
fn weight_grad_by_chunks<V: Variant<M, A>, const M: usize, const A: usize>(
    g: &Geom,
    t: &Tiles,
    x: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    let gs = t.chunk_group();
    let (xi_len, nchunks) = (g.cout * g.cin, g.n.div_ceil(CHUNK));
    let partials: Vec<Vec<f32>> = (0..nchunks)
        .into_par_iter()
        .map(|chunk| {
            let mut dwt = take(A * A * xi_len);
            let (i0, i1) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(g.n));
            for (gi, g0) in (i0..i1).step_by(gs).enumerate() {
                let (v, e, ld) = transform_pair::<V, M, A>(g, t, x, dy, g0, gs.min(i1 - g0));
                for xi in 0..A * A {
                    accumulate_point(&mut dwt[xi * xi_len..][..xi_len], g, (&v, &e, ld), xi, gi > 0);
                }
                give(v);
                give(e);
            }
            dwt
        })
        .collect();
    sum_partials(partials, A * A * xi_len)
}

/// The transformed weight gradient `dŴ[ξ][co][ci]`, one point per task, each summing the
/// groups of images in order: no partial sums, and the result depends on no thread count.
fn weight_grad_by_points<V: Variant<M, A>, const M: usize, const A: usize>(
    g: &Geom,
    t: &Tiles,
    x: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    let gs = t.group(g.n);
    let starts: Vec<usize> = (0..g.n).step_by(gs).collect();
    let groups: Vec<(Vec<f32>, Vec<f32>, usize)> =
        starts.par_iter().map(|&g0| transform_pair::<V, M, A>(g, t, x, dy, g0, gs.min(g.n - g0))).collect();
    let xi_len = g.cout * g.cin;
    let mut dwt = take(A * A * xi_len);
    dwt.par_chunks_mut(xi_len).enumerate().for_each(|(xi, d)| {
        for (gi, (v, e, ld)) in groups.iter().enumerate() {
            accumulate_point(d, g, (v, e, *ld), xi, gi > 0);
        }
    });
    for (v, e, _) in groups {
        give(v);
        give(e);
    }
    dwt
}

/// The transformed input `V` and output gradient `E` of the `gn` images from `g0`, and
/// their tile count.
fn transform_pair<V: Variant<M, A>, const M: usize, const A: usize>(
    g: &Geom,
    t: &Tiles,
    x: &[f32],
    dy: &[f32],
    g0: usize,
    gn: usize,
) -> (Vec<f32>, Vec<f32>, usize) {
    let plane = t.h * t.w;
    let ld = gn * t.per_image();
    let mut v = take(A * A * ld * g.cin);
    transform_input::<V, M, A>(t, g.cin, &x[g0 * g.cin * plane..(g0 + gn) * g.cin * plane], gn, &mut v, ld);
    let mut e = take(A * A * ld * g.cout);
    transform_grad::<V, M, A>(t, g.cout, &dy[g0 * g.cout * plane..(g0 + gn) * g.cout * plane], gn, &mut e, ld);
    (v, e, ld)
}

/// `dŴ[ξ] (Cout x Cin) (+)= Eᵀ[ξ] (Cout x T) · V[ξ] (T x Cin)` for one group's transforms.
fn accumulate_point(d: &mut [f32], g: &Geom, (v, e, ld): (&[f32], &[f32], usize), xi: usize, add: bool) {
    let em = MatRef::row_major(&e[xi * ld * g.cout..][..ld * g.cout], ld, g.cout).t();
    let vm = MatRef::row_major(&v[xi * ld * g.cin..][..ld * g.cin], ld, g.cin);
    matmul(d, em, vm, 1.0, add, Parallelism::None);
}
