//! 2-D convolution without bias: a fast CPU custom op (im2col + GEMM; Winograd for wide 3x3
//! stride-1 convolutions, see `nn/winograd.rs`) and, on other devices, candle's `conv2d` with
//! the backward of [`super::conv_device`].
//!
//! Shapes: input `(N, Cin, H, W)`, weight `(Cout, Cin, K, K)` (PyTorch layout), output
//! `(N, Cout, Ho, Wo)` with `Ho = (H + 2p - K) / s + 1`. Square kernels, one stride and one
//! padding for both axes, no dilation, no groups, f32 only.
//!
//! Why a custom op: candle 0.11's CPU backward computes the input gradient with a direct
//! `conv_transpose2d` loop and the weight gradient of strided convs with a dilated conv, both
//! far from GEMM speed. Here all three products are GEMMs over a column
//! matrix `col[Cin*K*K, G*Ho*Wo]` built for a group of `G` images at a time (grouping small
//! feature maps keeps the GEMMs wide enough to be efficient). With "same"-style padding every
//! row of that matrix is one block copy, from the input (stride 1) or one of its phase planes
//! (stride 2); the input gradient of a same-padded stride-1 convolution is itself such a
//! convolution, of `dY` (`Geom::adjoint`), and otherwise `W^T dY` added back by col2im.
//! Stride-1 forward products with a short inner dimension skip the column matrix altogether
//! and read shifted windows of the padded input (`nn/shifted.rs`).
//! `benches/profiles/nets.md` has the measurements behind each choice.
//!
//! Determinism: work is split into fixed chunks of images; each chunk's weight gradient is a
//! partial sum, and the partials are added in chunk order, so the result does not depend on the
//! number of threads or on scheduling.

mod columns;

use super::bn_kernels::Epilogue;
use super::cpu::{dx_chunks, f32_slice, give, sum_partials, take, take_zeroed, with_f32};
use super::{shifted, winograd};
use crate::linalg::{matmul, matmul_thin, MatRef};
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use columns::{col2im, im2col};
use gemm::Parallelism;
use rayon::prelude::*;

/// Images per backward work item; also the number of weight-gradient partial sums per 8 images.
pub(crate) const CHUNK: usize = 8;
/// Target minimum GEMM width (columns) when grouping images with small feature maps.
const MIN_COLS: usize = 192;

/// `conv2d(x, w)` with the fast op on CPU f32 tensors and [`super::conv_device`] elsewhere.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    super::layer_log::note(|| super::layer_log::LayerCall::Conv {
        x: x.dims().to_vec(),
        w: w.dims().to_vec(),
        stride,
        padding,
    });
    if super::use_fast_kernels(x.device(), x.dtype()) && w.dtype() == DType::F32 {
        x.contiguous()?.apply_op2(&w.contiguous()?, Conv2dOp { stride, padding })
    } else {
        super::conv_device::conv2d(x, w, stride, padding)
    }
}

/// The fast CPU convolution as a candle `CustomOp2(input, weight)`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dOp {
    /// Stride on both axes.
    pub stride: usize,
    /// Zero padding on all four sides.
    pub padding: usize,
}

/// Sizes of one convolution problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Geom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub s: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// From the input and weight shapes, stride and padding.
    pub fn new(x: &[usize], w: &[usize], s: usize, pad: usize) -> Result<Self> {
        let (&[n, cin, h, wd], &[cout, wcin, k, k2]) = (x, w) else {
            bail!("conv2d: expected 4-d input and weight, got {x:?} and {w:?}")
        };
        if wcin != cin || k != k2 || s == 0 || h + 2 * pad < k || wd + 2 * pad < k {
            bail!("conv2d: bad shapes input {x:?} weight {w:?} stride {s} padding {pad}")
        }
        let ho = (h + 2 * pad - k) / s + 1;
        let wo = (wd + 2 * pad - k) / s + 1;
        Ok(Geom { n, cin, h, w: wd, cout, k, s, pad, ho, wo })
    }
    /// Rows of the column matrix: `Cin * K * K`.
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// Output pixels per image.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }
    /// Input values per image.
    pub fn in_img(&self) -> usize {
        self.cin * self.h * self.w
    }
    /// Output values per image.
    pub fn out_img(&self) -> usize {
        self.cout * self.p()
    }
    /// Images per GEMM: a power of two dividing [`CHUNK`], enough to reach [`MIN_COLS`].
    fn group(&self) -> usize {
        let mut g = 1;
        while g < CHUNK && g * self.p() < MIN_COLS {
            g *= 2;
        }
        g
    }
    /// Output columns `[lo, hi)` along one axis whose input index `o * s + kk - pad` is inside
    /// `[0, len)`.
    fn valid(&self, kk: usize, len: usize, out: usize) -> (usize, usize) {
        let lo = if self.pad > kk { (self.pad - kk).div_ceil(self.s) } else { 0 };
        let hi = if len + self.pad > kk { ((len - 1 + self.pad - kk) / self.s + 1).min(out) } else { 0 };
        (lo.min(hi), hi)
    }

    /// Output grid equal to the input's grid of phases (`Ho = ceil(H / s)`, same for W; at
    /// stride 1 that is "same" padding): then every kernel tap reads one phase plane of the
    /// input shifted by a constant offset, so each row of the column matrix is one block copy
    /// instead of a copy (or strided gather) per output row.
    fn blocked(&self) -> bool {
        self.h.div_ceil(self.s) == self.ho && self.w.div_ceil(self.s) == self.wo
    }

    /// For [`Geom::blocked`] geometries: kernel tap `kk` along one axis reads input index
    /// `o * s + kk - pad`, which is phase `r` of the input at phase index `o + d`.
    fn tap_phase(&self, kk: usize) -> (usize, isize) {
        let t = kk as isize - self.pad as isize;
        let s = self.s as isize;
        (t.rem_euclid(s) as usize, t.div_euclid(s))
    }

    /// For a stride-1 convolution with "same" padding and a kernel wider than 1: the input
    /// gradient is itself such a convolution, of `dY` with the flipped, transposed kernel
    /// ([`flipped_kernel`]). That is a column matrix and a GEMM with `Cout * K * K` terms per
    /// output, where the adjoint of im2col multiplies over only `Cout` terms (a thin GEMM that
    /// is bound by its stores) and then adds `K * K` shifted blocks into `dx`.
    fn adjoint(&self) -> Option<Geom> {
        let same = self.s == 1 && self.k > 1 && self.k % 2 == 1 && self.pad == self.k / 2;
        same.then_some(Geom { cin: self.cout, cout: self.cin, h: self.ho, w: self.wo, ho: self.h, wo: self.w, ..*self })
    }
}

/// `w[co, ci, ky, kx]` rearranged as `w'[ci, co, K-1-ky, K-1-kx]`: the kernel of
/// [`Geom::adjoint`].
fn flipped_kernel(g: &Geom, w: &[f32]) -> Vec<f32> {
    let kk = g.k * g.k;
    let mut out = vec![0f32; w.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let src = &w[(co * g.cin + ci) * kk..][..kk];
            let dst = &mut out[(ci * g.cout + co) * kk..][..kk];
            for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *v;
            }
        }
    }
    out
}

/// Forward pass: `y[N, Cout, Ho*Wo]`, by Winograd where it applies, else im2col.
pub(crate) fn forward(g: &Geom, x: &[f32], w: &[f32]) -> Vec<f32> {
    forward_then(g, x, w, None)
}

/// [`forward`] with `ep` applied to each group of images' output while it is in cache.
pub(crate) fn forward_then(g: &Geom, x: &[f32], w: &[f32], ep: Option<&Epilogue<'_>>) -> Vec<f32> {
    if winograd::applies(g) {
        winograd::forward(g, x, w, ep)
    } else {
        im2col_forward(g, x, w, ep)
    }
}

/// Backward pass: input gradient (when `need_dx`, else empty) and weight gradient, by
/// Winograd where it applies, else im2col.
pub(crate) fn backward(g: &Geom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool) -> (Vec<f32>, Vec<f32>) {
    if winograd::applies(g) {
        winograd::backward(g, x, w, dy, need_dx)
    } else {
        im2col_backward(g, x, w, dy, need_dx)
    }
}

/// [`forward`] through a column matrix and one GEMM per group of images.
pub(crate) fn im2col_forward(g: &Geom, x: &[f32], w: &[f32], ep: Option<&Epilogue<'_>>) -> Vec<f32> {
    let gs = g.group();
    // Every element is written by a GEMM or the copy below.
    let mut y = take(g.n * g.out_img());
    y.par_chunks_mut(gs * g.out_img()).enumerate().for_each(|(chunk, ys)| {
        let gn = ys.len() / g.out_img();
        let n0 = chunk * gs;
        convolve_group(g, &x[n0 * g.in_img()..(n0 + gn) * g.in_img()], w, ys);
        if let Some(ep) = ep {
            ep.apply_planes(n0 * g.out_img(), g.p(), ys);
        }
    });
    y
}

/// `out` (`gn` output images) = the convolution of `x` (`gn` input images) with `w`, by one
/// column matrix and one single-threaded GEMM (callers run groups in parallel, so the sum
/// order is fixed).
fn convolve_group(g: &Geom, x: &[f32], w: &[f32], out: &mut [f32]) {
    if shifted::applies(g) {
        return shifted::convolve_group(g, x, w, out);
    }
    let gn = out.len() / g.out_img();
    let (col, ld) = group_columns(g, x, gn);
    multiply_group(g, w, &col, ld, out);
    give(col);
}

/// The column matrix of `gn` images of `x` side by side (`Kdim x ld`, `ld` the padded width;
/// the padding columns are zero).
fn group_columns(g: &Geom, x: &[f32], gn: usize) -> (Vec<f32>, usize) {
    let (p, kdim) = (g.p(), g.kdim());
    let ld = padded_cols(gn * p);
    let mut col = take(kdim * ld);
    for j in 0..gn {
        im2col(g, &x[j * g.in_img()..(j + 1) * g.in_img()], &mut col, ld, j * p);
    }
    if ld > gn * p {
        for row in col.chunks_exact_mut(ld) {
            row[gn * p..].fill(0.0);
        }
    }
    (col, ld)
}

/// Longest inner dimension of a forward product given to [`matmul_thin`] rather than `gemm`,
/// whose packing costs more than the arithmetic in thin products (the stems' 9, the 1x1
/// shortcuts' 16 to 64, resnet_small's 8-channel 3x3 convolutions' 72; `benches/profiles/nets.md`,
/// sixth round).
pub(super) const THIN_MAX_K: usize = 80;

/// `out` (`gn` output images, `Cout x Ho*Wo` each) = `w` times the column matrix `col`.
fn multiply_group(g: &Geom, w: &[f32], col: &[f32], ld: usize, out: &mut [f32]) {
    let (p, kdim) = (g.p(), g.kdim());
    let gn = out.len() / g.out_img();
    let product = |dst: &mut [f32], n: usize| {
        if kdim <= THIN_MAX_K {
            matmul_thin(dst, w, col, (g.cout, kdim, n));
        } else {
            let (wm, cm) = (MatRef::row_major(w, g.cout, kdim), MatRef::row_major(col, kdim, n));
            matmul(dst, wm, cm, 1.0, false, Parallelism::None);
        }
    };
    if ld == p {
        product(out, p);
    } else {
        let mut tmp = take(g.cout * ld);
        product(&mut tmp, ld);
        for j in 0..gn {
            for co in 0..g.cout {
                out[j * g.out_img() + co * p..][..p].copy_from_slice(&tmp[co * ld + j * p..][..p]);
            }
        }
        give(tmp);
    }
}

/// Both gradients of `gn` images of a convolution with an [`Geom::adjoint`] from one column
/// matrix of `dY`: the input gradient is the adjoint convolution (`wf` times that matrix), and
/// the weight gradient's tap `(ky, kx)` pairs `x` with `dY` shifted the opposite way, which is
/// row `(co, K-1-ky, K-1-kx)` of the same matrix. So the im2col of `x` is not needed:
/// `dwt[(co, ky', kx'), ci] (+)= col_dY * X^T`, in the layout [`unflip_dw`] undoes.
#[allow(clippy::too_many_arguments)] // both geometries, both inputs, both outputs
fn adjoint_group(
    g: &Geom,
    ag: &Geom,
    wf: &[f32],
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dwt: &mut [f32],
    accumulate: bool,
) {
    // The adjoint's output grid is the input's: `p` pixels per channel plane of `x`.
    let (p, gn) = (ag.p(), dx.len() / g.in_img());
    let (col, ld) = group_columns(ag, dy, gn);
    multiply_group(ag, wf, &col, ld, dx);
    // The images of `x` as one `Cin x ld` matrix, zero in the padding columns (which meet the
    // column matrix's zeros; uninitialised memory there could hold NaNs).
    let mut xg = Vec::new();
    let xs: &[f32] = if gn == 1 && ld == p {
        x
    } else {
        xg = take(g.cin * ld);
        for (ci, row) in xg.chunks_exact_mut(ld).enumerate() {
            for j in 0..gn {
                row[j * p..][..p].copy_from_slice(&x[j * g.in_img() + ci * p..][..p]);
            }
            row[gn * p..].fill(0.0);
        }
        &xg
    };
    let (colm, xm) = (MatRef::row_major(&col, ag.kdim(), ld), MatRef::row_major(xs, g.cin, ld));
    matmul(dwt, colm, xm.t(), 1.0, accumulate, Parallelism::None);
    give(xg);
    give(col);
}

/// The weight gradient `[Cout, Cin, K, K]` from [`adjoint_group`]'s `[(Cout, K, K), Cin]` sums,
/// whose taps are flipped.
fn unflip_dw(g: &Geom, dwt: &[f32]) -> Vec<f32> {
    let kk = g.k * g.k;
    let mut out = vec![0f32; dwt.len()];
    for co in 0..g.cout {
        for t in 0..kk {
            let src = &dwt[(co * kk + t) * g.cin..][..g.cin];
            for (ci, &v) in src.iter().enumerate() {
                out[(co * g.cin + ci) * kk + kk - 1 - t] = v;
            }
        }
    }
    out
}

/// Columns of a column matrix holding `cols` pixels, rounded up to a multiple of 8: `gemm`
/// reads the column matrix in place only when its rows are whole 8-lane vectors, and
/// otherwise copies all of it into a packed buffer first (up to 20 % slower at 14x14).
fn padded_cols(cols: usize) -> usize {
    cols.next_multiple_of(8)
}

/// Whether the weight gradient is computed transposed, `dW^T[Kdim, Cout] = col * dY^T`: with
/// few output channels that orientation packs only the small `dY` instead of the whole column
/// matrix (8 -> 8 channels at 28x28: 54 against 31 GF/s on one core).
fn transposed_dw(g: &Geom) -> bool {
    g.kdim() >= 2 * g.cout
}

/// [`backward`] through column matrices: GEMMs for both gradients, col2im for the input's.
pub(crate) fn im2col_backward(g: &Geom, x: &[f32], w: &[f32], dy: &[f32], need_dx: bool) -> (Vec<f32>, Vec<f32>) {
    let (p, kdim, gs) = (g.p(), g.kdim(), g.group());
    let transposed = transposed_dw(g);
    let nchunks = g.n.div_ceil(CHUNK);
    let adjoint = g.adjoint().map(|a| (a, flipped_kernel(g, w)));
    // The adjoint convolution writes every element; col2im adds into zeros.
    let mut dx = match (need_dx, &adjoint) {
        (false, _) => Vec::new(),
        (true, Some(_)) => take(g.n * g.in_img()),
        (true, None) => take_zeroed(g.n * g.in_img()),
    };
    let partials: Vec<Vec<f32>> = dx_chunks(&mut dx, need_dx, CHUNK * g.in_img(), nchunks)
        .into_par_iter()
        .enumerate()
        .map(|(chunk, mut dxc)| {
            // Fully written by the first GEMM (which does not accumulate); `[Kdim, Cout]` when
            // transposed, `[(Cout, K, K), Cin]` through the adjoint.
            let mut dw = take(g.cout * kdim);
            let (i0, i1) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(g.n));
            for (gi, g0) in (i0..i1).step_by(gs).enumerate() {
                let gn = gs.min(i1 - g0);
                if let (Some(dxc), Some((ag, wf))) = (dxc.as_deref_mut(), &adjoint) {
                    let o = (g0 - i0) * g.in_img();
                    let xs = &x[g0 * g.in_img()..(g0 + gn) * g.in_img()];
                    let dyi = &dy[g0 * g.out_img()..(g0 + gn) * g.out_img()];
                    adjoint_group(g, ag, wf, xs, dyi, &mut dxc[o..o + gn * g.in_img()], &mut dw, gi > 0);
                    continue;
                }
                let ld = gn * p;
                let mut col = take(kdim * ld);
                for j in 0..gn {
                    let xi = &x[(g0 + j) * g.in_img()..(g0 + j + 1) * g.in_img()];
                    im2col(g, xi, &mut col, ld, j * p);
                }
                // The output gradient of the group as a `[Cout, G*P]` matrix.
                let mut dyg = Vec::new();
                let dys: &[f32] = if gn == 1 {
                    &dy[g0 * g.out_img()..(g0 + 1) * g.out_img()]
                } else {
                    dyg = take(g.cout * ld);
                    for j in 0..gn {
                        for co in 0..g.cout {
                            let src = &dy[(g0 + j) * g.out_img() + co * p..][..p];
                            dyg[co * ld + j * p..][..p].copy_from_slice(src);
                        }
                    }
                    &dyg
                };
                let (dym, colm) = (MatRef::row_major(dys, g.cout, ld), MatRef::row_major(&col, kdim, ld));
                if transposed {
                    // dW^T[Kdim, Cout] += col[Kdim, G*P] * dY^T[G*P, Cout]
                    matmul(&mut dw, colm, dym.t(), 1.0, gi > 0, Parallelism::None);
                } else {
                    // dW[Cout, Kdim] += dY[Cout, G*P] * col^T[G*P, Kdim]
                    matmul(&mut dw, dym, colm.t(), 1.0, gi > 0, Parallelism::None);
                }
                if let Some(dxc) = dxc.as_deref_mut() {
                    // dcol[Kdim, G*P] = W^T[Kdim, Cout] * dY[Cout, G*P], reusing col's buffer.
                    let wt = MatRef::row_major(w, g.cout, kdim).t();
                    matmul(&mut col, wt, dym, 1.0, false, Parallelism::None);
                    for j in 0..gn {
                        let o = (g0 - i0 + j) * g.in_img();
                        col2im(g, &mut col, ld, j * p, &mut dxc[o..o + g.in_img()]);
                    }
                }
                give(col);
                give(dyg);
            }
            dw
        })
        .collect();
    let mut dw = sum_partials(partials, g.cout * kdim);
    if need_dx && adjoint.is_some() {
        let out = unflip_dw(g, &dw);
        give(dw);
        dw = out;
    } else if transposed {
        let mut out = vec![0f32; g.cout * kdim];
        for (r, row) in dw.chunks_exact(g.cout).enumerate() {
            for (co, &v) in row.iter().enumerate() {
                out[co * kdim + r] = v;
            }
        }
        give(dw);
        dw = out;
    }
    (dx, dw)
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "cfrun-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.padding)?;
        let y = forward(&g, f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.padding)?;
        // The network input needs no gradient; skipping it saves the whole col2im half.
        let need_dx = x.track_op();
        let dy = dy.contiguous()?;
        let (dx, dw) = with_f32(x, |xs| with_f32(w, |ws| with_f32(&dy, |dys| backward(&g, xs, ws, dys, need_dx))))???;
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        let dx = if need_dx { Some(Tensor::from_vec(dx, x.shape(), x.device())?) } else { None };
        Ok((dx, Some(dw)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// One convolution problem: `(n, cin, h, w, cout, k, stride, pad)`.
    pub(crate) type Geometry = (usize, usize, usize, usize, usize, usize, usize, usize);

    /// Convolution geometries every implementation is tested on.
    pub(crate) const GEOMETRIES: &[Geometry] = &[
        // n, cin, h, w, cout, k, stride, pad
        (2, 3, 7, 7, 4, 3, 1, 1),
        (3, 2, 8, 6, 5, 3, 2, 1),
        (2, 4, 9, 9, 3, 1, 2, 0),
        (1, 1, 5, 5, 2, 3, 1, 0),
        (10, 3, 4, 4, 6, 3, 2, 1),
        (9, 2, 7, 7, 3, 1, 1, 0),
        (17, 3, 3, 3, 2, 3, 2, 1),
        (2, 2, 6, 5, 3, 3, 2, 0),
        (3, 2, 5, 8, 4, 3, 1, 1),
        (2, 3, 9, 9, 2, 5, 1, 2),
        // A 1x1 map under a 3x3 kernel (R(2+1)D's res5 on small clips): most taps read nothing.
        (3, 2, 1, 1, 2, 3, 1, 1),
        // Maps no larger than the kernel's reach (res5 of a small Jigsaw tile).
        (2, 3, 1, 1, 4, 3, 1, 1),
        (3, 2, 2, 2, 3, 3, 1, 1),
        (2, 2, 1, 3, 2, 3, 1, 1),
        // Same-padded 3x3 over more than one backward chunk, with groups of images whose
        // column matrices are padded (7x7: 4 images, 196 columns padded to 200): the weight
        // gradient through the adjoint's column matrix.
        (19, 3, 7, 7, 5, 3, 1, 1),
        (12, 8, 6, 6, 8, 3, 1, 1),
    ];

    /// Uniform values in [-1, 1) from `seed`.
    pub(crate) fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    /// Forward and both gradients against candle's conv2d on many shapes (as the reference).
    #[test]
    fn matches_candle_conv2d() {
        for (i, &(n, cin, h, w, cout, k, s, p)) in GEOMETRIES.iter().enumerate() {
            let x = Var::from_tensor(&rand_tensor(&[n, cin, h, w], i as u64)).unwrap();
            let wt = Var::from_tensor(&rand_tensor(&[cout, cin, k, k], 100 + i as u64)).unwrap();
            let up = rand_tensor(&[n, cout, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1], 7);
            let ours = conv2d(&x, &wt, s, p).unwrap();
            let theirs = x.conv2d(&wt, p, s, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims(), "case {i}");
            assert!(max_diff(&ours, &theirs) < 1e-4, "forward case {i}");
            let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = match (theirs * &up).unwrap().sum_all().unwrap().backward() {
                Ok(g) => g,
                // candle 0.11.1's own backward fails on non-square inputs where only one axis
                // has a remainder (H=6, W=5, k=3, s=2): finite differences cover that shape.
                Err(_) if (h + 2 * p - k) % s != (w + 2 * p - k) % s => continue,
                Err(e) => panic!("case {i}: {e}"),
            };
            for v in [&x, &wt] {
                let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-4, "gradient case {i}: {}", max_diff(a, b));
            }
        }
    }

    /// Central finite differences of `sum(conv(x, w) * up)` for a few input and weight entries,
    /// on a square strided-padded shape and on a non-square one that candle cannot check.
    #[test]
    fn finite_differences() {
        for (n, cin, h, w, cout, k, s, p) in [(2, 2, 5, 5, 3, 3, 2, 1), (2, 2, 6, 5, 3, 3, 2, 0)] {
            let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let xv = flat(rand_tensor(&[n, cin, h, w], 1));
            let wv = flat(rand_tensor(&[cout, cin, k, k], 2));
            let up = rand_tensor(&[n, cout, ho, wo], 3);
            let f = |xv: &[f32], wv: &[f32]| -> f64 {
                let x = Tensor::from_slice(xv, (n, cin, h, w), &Device::Cpu).unwrap();
                let wt = Tensor::from_slice(wv, (cout, cin, k, k), &Device::Cpu).unwrap();
                let y = conv2d(&x, &wt, s, p).unwrap();
                (y * &up).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64
            };
            let x = Var::from_slice(&xv, (n, cin, h, w), &Device::Cpu).unwrap();
            let wt = Var::from_slice(&wv, (cout, cin, k, k), &Device::Cpu).unwrap();
            let loss = (conv2d(&x, &wt, s, p).unwrap() * &up).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let gx = flat(grads.get(&x).unwrap().clone());
            let gw = flat(grads.get(&wt).unwrap().clone());
            let eps = 1e-2f32;
            for idx in [0, 7, 24, 29, 31, 49, xv.len() - 1] {
                let (mut a, mut b) = (xv.clone(), xv.clone());
                a[idx] += eps;
                b[idx] -= eps;
                let fd = (f(&a, &wv) - f(&b, &wv)) / (2.0 * eps as f64);
                assert!((fd - gx[idx] as f64).abs() < 1e-2, "dx[{idx}] {fd} vs {}", gx[idx]);
            }
            for idx in [0, 5, 17, 30, 53] {
                let (mut a, mut b) = (wv.clone(), wv.clone());
                a[idx] += eps;
                b[idx] -= eps;
                let fd = (f(&xv, &a) - f(&xv, &b)) / (2.0 * eps as f64);
                assert!((fd - gw[idx] as f64).abs() < 1e-2, "dw[{idx}] {fd} vs {}", gw[idx]);
            }
        }
    }

    /// The product over shifted windows of padded planes (`shifted`) gives the bits of the
    /// column matrix and its product, on resnet_small's thin stride-1 layers (stem, 8-channel
    /// 3x3), groups of several images, maps smaller than the kernel, no padding, a 5x5 kernel,
    /// non-square maps, an inner dimension at the limit and odd channel counts; the stride-2
    /// layers keep the column matrix.
    #[test]
    fn shifted_windows_match_the_column_matrix_bitwise() {
        let cases = [
            // n, cin, h, w, cout, k, s, pad
            (2, 1, 28, 28, 8, 3, 1, 1),
            (2, 8, 28, 28, 8, 3, 1, 1),
            (6, 8, 7, 7, 8, 3, 1, 1),
            (3, 3, 9, 10, 5, 5, 1, 2),
            (2, 2, 6, 5, 3, 3, 1, 0),
            (3, 2, 1, 1, 2, 3, 1, 1),
            (2, 5, 11, 9, 7, 4, 1, 1),
            (4, 3, 7, 7, 4, 3, 1, 1),
            (2, 8, 28, 28, 16, 3, 2, 1),
            (2, 8, 28, 28, 16, 1, 2, 0),
        ];
        for (i, &(n, cin, h, w, cout, k, s, pad)) in cases.iter().enumerate() {
            let g = Geom::new(&[n, cin, h, w], &[cout, cin, k, k], s, pad).unwrap();
            assert!(g.kdim() <= THIN_MAX_K, "case {i}: a thin product");
            if !crate::linalg::thin_kernel_applies(g.kdim(), 8) {
                return; // no register kernel on this CPU: the column matrix path is all there is
            }
            if s > 1 {
                assert!(!shifted::applies(&g), "case {i}: stride {s} keeps the column matrix");
                continue;
            }
            let x = rand_tensor(&[n * g.in_img()], i as u64).to_vec1::<f32>().unwrap();
            let wt = rand_tensor(&[cout * g.kdim()], 40 + i as u64).to_vec1::<f32>().unwrap();
            let mut ours = vec![f32::NAN; n * g.out_img()];
            shifted::convolve_group(&g, &x, &wt, &mut ours);
            let mut theirs = vec![f32::NAN; n * g.out_img()];
            let (col, ld) = group_columns(&g, &x, n);
            multiply_group(&g, &wt, &col, ld, &mut theirs);
            let same = ours.iter().zip(&theirs).all(|(u, v)| u.to_bits() == v.to_bits());
            assert!(same, "case {i}: shifted windows differ from the column matrix");
        }
    }

    /// Both orientations of the weight-gradient product give the same bits at the shapes of
    /// the ResNet presets, so choosing one by [`transposed_dw`] changes no cached artifact.
    #[test]
    fn weight_gradient_orientations_agree_bitwise() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (cout, kdim, cols) in
            [(8, 72, 784), (16, 72, 196), (16, 144, 784), (32, 288, 196), (64, 576, 128), (128, 1152, 392)]
        {
            let col: Vec<f32> = (0..kdim * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dy: Vec<f32> = (0..cout * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (dym, colm) = (MatRef::row_major(&dy, cout, cols), MatRef::row_major(&col, kdim, cols));
            let mut dw = vec![0f32; cout * kdim];
            matmul(&mut dw, dym, colm.t(), 1.0, false, Parallelism::None);
            let mut dwt = vec![0f32; cout * kdim];
            matmul(&mut dwt, colm, dym.t(), 1.0, false, Parallelism::None);
            for co in 0..cout {
                for r in 0..kdim {
                    assert_eq!(
                        dw[co * kdim + r].to_bits(),
                        dwt[r * cout + co].to_bits(),
                        "{cout}x{kdim}x{cols} at ({co}, {r})"
                    );
                }
            }
        }
    }

    /// The input gradient is skipped for tensors that are not part of a graph.
    #[test]
    fn no_input_gradient_for_plain_input() {
        let x = rand_tensor(&[2, 1, 5, 5], 1);
        let wt = Var::from_tensor(&rand_tensor(&[2, 1, 3, 3], 2)).unwrap();
        let g = conv2d(&x, &wt, 1, 1).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(&wt).is_some());
    }
}
