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

use super::bn_kernels::Epilogue;
use super::conv::{Geom, CHUNK};
use super::cpu::{assume_written, give, sum_partials, take, take_written};
use crate::linalg::{matmul, matmul_thin, Arith, MatRef, L8};
use gemm::Parallelism;
use rayon::prelude::*;
use std::array::from_fn;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// Fewest tiles a group of images should give one GEMM.
const MIN_TILES: usize = 96;
/// Fewest channels on both sides for the Winograd path to beat im2col. Measured with the
/// vector transforms and [`matmul_thin`] (`benches/profiles/nets.md`, sixth round): from 16,
/// resnet_cpu inference on one thread +20 %; from 8, resnet_small 3-10 % slower than from 16.
const MIN_CHANNELS: usize = 16;

/// True when `g` is a convolution this module computes.
pub(crate) fn applies(g: &Geom) -> bool {
    g.k == 3 && g.s == 1 && g.pad == 1 && g.cin >= MIN_CHANNELS && g.cout >= MIN_CHANNELS
}

/// The one-dimensional transforms of F(M, 3), on `A = M + 2` points; the two-dimensional
/// ones apply them to the rows and then to the columns of a tile.
trait Variant<const M: usize, const A: usize> {
    /// `Bᵀ d`: `A` input taps to `A` transformed points.
    fn input<T: Arith>(d: [T; A]) -> [T; A];
    /// `A dy`: `M` output-gradient taps to `A` transformed points.
    fn grad<T: Arith>(dy: [T; M]) -> [T; A];
    /// `Aᵀ m`: `A` transformed points to `M` outputs.
    fn output<T: Arith>(m: [T; A]) -> [T; M];
    /// `G g`: three filter taps to `A` transformed points.
    fn filter(g: [f32; 3]) -> [f32; A];
    /// `Gᵀ x`: `A` transformed points to three filter-gradient taps.
    fn filter_grad(x: [f32; A]) -> [f32; 3];
}

/// F(2, 3) on the points 0, 1, -1 and ∞.
struct F2;

impl Variant<2, 4> for F2 {
    #[inline(always)]
    fn input<T: Arith>(d: [T; 4]) -> [T; 4] {
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    }
    #[inline(always)]
    fn grad<T: Arith>(d: [T; 2]) -> [T; 4] {
        [d[0], d[0] + d[1], d[0] - d[1], -d[1]]
    }
    #[inline(always)]
    fn output<T: Arith>(m: [T; 4]) -> [T; 2] {
        [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
    }
    #[inline(always)]
    fn filter(g: [f32; 3]) -> [f32; 4] {
        [g[0], 0.5 * (g[0] + g[1] + g[2]), 0.5 * (g[0] - g[1] + g[2]), g[2]]
    }
    #[inline(always)]
    fn filter_grad(x: [f32; 4]) -> [f32; 3] {
        [x[0] + 0.5 * (x[1] + x[2]), 0.5 * (x[1] - x[2]), 0.5 * (x[1] + x[2]) + x[3]]
    }
}

/// F(4, 3) on the points 0, ±1, ±2 and ∞ (the matrices of Lavin and Gray, 2016).
struct F4;

impl Variant<4, 6> for F4 {
    #[inline(always)]
    fn input<T: Arith>(d: [T; 6]) -> [T; 6] {
        let (a, b) = (d[4] - d[2] * 4.0, d[3] - d[1] * 4.0);
        let (c, e) = (d[4] - d[2], (d[3] - d[1]) * 2.0);
        [d[0] * 4.0 - d[2] * 5.0 + d[4], a + b, a - b, c + e, c - e, d[1] * 4.0 - d[3] * 5.0 + d[5]]
    }
    #[inline(always)]
    fn grad<T: Arith>(d: [T; 4]) -> [T; 6] {
        let (even, odd) = (d[0] + d[2], d[1] + d[3]);
        let (even2, odd2) = (d[0] + d[2] * 4.0, d[1] * 2.0 + d[3] * 8.0);
        [d[0], even + odd, even - odd, even2 + odd2, even2 - odd2, d[3]]
    }
    #[inline(always)]
    fn output<T: Arith>(m: [T; 6]) -> [T; 4] {
        let (s12, d12, s34, d34) = (m[1] + m[2], m[1] - m[2], m[3] + m[4], m[3] - m[4]);
        [m[0] + s12 + s34, d12 + d34 * 2.0, s12 + s34 * 4.0, d12 + d34 * 8.0 + m[5]]
    }
    #[inline(always)]
    fn filter(g: [f32; 3]) -> [f32; 6] {
        let (s, d) = (g[0] + g[2], g[1]);
        let (s4, d2) = (g[0] / 24.0 + g[2] / 6.0, g[1] / 12.0);
        [g[0] / 4.0, -(s + d) / 6.0, -(s - d) / 6.0, s4 + d2, s4 - d2, g[2]]
    }
    #[inline(always)]
    fn filter_grad(x: [f32; 6]) -> [f32; 3] {
        let (s12, d12, s34, d34) = (x[1] + x[2], x[2] - x[1], x[3] + x[4], x[3] - x[4]);
        [x[0] / 4.0 - s12 / 6.0 + s34 / 24.0, d12 / 6.0 + d34 / 12.0, -s12 / 6.0 + s34 / 6.0 + x[5]]
    }
}

/// Whether F(4x4, 3x3) needs fewer products than F(2x2, 3x3) for the plane of `g`: it
/// does unless the plane is tiny, even where its 4x4 tiles overhang (14x14 takes 16 of them).
fn prefers_f4(g: &Geom) -> bool {
    let products = |m: usize| g.h.div_ceil(m) * g.w.div_ceil(m) * (m + 2) * (m + 2);
    products(4) < products(2)
}

/// Tiling of one image plane: `th x tw` tiles of `m x m` outputs.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    h: usize,
    w: usize,
    th: usize,
    tw: usize,
}

impl Tiles {
    fn new(g: &Geom, m: usize) -> Self {
        Tiles { h: g.h, w: g.w, th: g.h.div_ceil(m), tw: g.w.div_ceil(m) }
    }
    /// Tiles per image.
    fn per_image(&self) -> usize {
        self.th * self.tw
    }
    /// Images per group of the forward pass (and of the weight gradient by points): the
    /// fewest, a power of two, that give [`MIN_TILES`] tiles, or the whole batch of `n`.
    /// Small planes make large groups: the GEMMs of a few tiles were dominated by packing
    /// the filters, once per group.
    fn group(&self, n: usize) -> usize {
        let mut g = 1;
        while g < n && g * self.per_image() < MIN_TILES {
            g *= 2;
        }
        g
    }
    /// Images per group of the weight gradient by chunks: as [`Tiles::group`], but
    /// dividing [`CHUNK`].
    fn chunk_group(&self) -> usize {
        self.group(CHUNK)
    }
}

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

/// Defines `$name`, which runs `$imp` compiled for AVX2 where the CPU has it (as `$avx`)
/// and as built elsewhere; all three take the variant's type parameters.
macro_rules! with_avx2 {
    ($(#[$attr:meta])* fn $name:ident / $avx:ident => $imp:ident ($($arg:ident: $ty:ty),*)) => {
        $(#[$attr])*
        fn $name<V: Variant<M, A>, const M: usize, const A: usize>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports the features the function was compiled for.
                return unsafe { $avx::<V, M, A>($($arg),*) };
            }
            $imp::<V, M, A>($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx<V: Variant<M, A>, const M: usize, const A: usize>($($arg: $ty),*) {
            $imp::<V, M, A>($($arg),*)
        }
    };
}

/// One 1-D transform of a variant as a type, so that [`per_tile`] calls it directly: passed
/// as a closure, the vector version went through a call shim built without AVX.
trait Step<const I: usize, const O: usize> {
    /// The transform of `I` values into `O`.
    fn apply<T: Arith>(d: [T; I]) -> [T; O];
}

/// [`Variant::input`] as a [`Step`].
struct InputStep<V, const M: usize, const A: usize>(PhantomData<V>);
/// [`Variant::grad`] as a [`Step`].
struct GradStep<V, const M: usize, const A: usize>(PhantomData<V>);
/// [`Variant::output`] as a [`Step`].
struct OutputStep<V, const M: usize, const A: usize>(PhantomData<V>);

impl<V: Variant<M, A>, const M: usize, const A: usize> Step<A, A> for InputStep<V, M, A> {
    #[inline(always)]
    fn apply<T: Arith>(d: [T; A]) -> [T; A] {
        V::input(d)
    }
}

impl<V: Variant<M, A>, const M: usize, const A: usize> Step<M, A> for GradStep<V, M, A> {
    #[inline(always)]
    fn apply<T: Arith>(d: [T; M]) -> [T; A] {
        V::grad(d)
    }
}

impl<V: Variant<M, A>, const M: usize, const A: usize> Step<A, M> for OutputStep<V, M, A> {
    #[inline(always)]
    fn apply<T: Arith>(d: [T; A]) -> [T; M] {
        V::output(d)
    }
}

/// The 2-D transform of one tile of `c` channels, eight at a time ([`L8`]) but for the last
/// `c % 8`: `S1` along the second axis of the `Q x B` block of inputs, then `S2` along its
/// first. Input `(a, b)` of a channel starts at `src[src_at(a, b)]`, output `(r, p)` (`r` from
/// `S2`, `p` from `S1`) at `dst[dst_at(r, p)]`, each `c` contiguous floats.
///
/// A whole tile per block of channels, so its values stay in registers between the two passes.
/// Bounds are checked once per tile: checked per access, the checks and the addresses they
/// kept live outnumbered the arithmetic.
///
/// # Safety
/// `src_at` and `dst_at` must not decrease in either argument, so that the last input and
/// output bound all the others.
#[inline(always)]
unsafe fn per_tile<S1, S2, const Q: usize, const B: usize, const P: usize, const R: usize>(
    c: usize,
    (src, src_at): (&[f32], impl Fn(usize, usize) -> usize),
    (dst, dst_at): (&mut [f32], impl Fn(usize, usize) -> usize),
) where
    S1: Step<B, P>,
    S2: Step<Q, R>,
{
    // Plain loops, not `from_fn`: its closures were left out of line, built without AVX.
    #[inline(always)]
    fn tile<
        S1: Step<B, P>,
        S2: Step<Q, R>,
        T: Arith,
        const Q: usize,
        const B: usize,
        const P: usize,
        const R: usize,
    >(
        load: impl Fn(usize, usize) -> T,
        mut store: impl FnMut(usize, usize, T),
    ) {
        let mut first = [[T::default(); P]; Q];
        for (a, out) in first.iter_mut().enumerate() {
            let mut row = [T::default(); B];
            for (b, x) in row.iter_mut().enumerate() {
                *x = load(a, b);
            }
            *out = S1::apply(row);
        }
        for p in 0..P {
            let mut col = [T::default(); Q];
            for (x, row) in col.iter_mut().zip(&first) {
                *x = row[p];
            }
            for (r, val) in S2::apply(col).into_iter().enumerate() {
                store(r, p, val);
            }
        }
    }
    assert!(src_at(Q - 1, B - 1) + c <= src.len(), "per_tile: input beyond its buffer");
    assert!(dst_at(R - 1, P - 1) + c <= dst.len(), "per_tile: output beyond its buffer");
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    let mut ch = 0;
    while ch + 8 <= c {
        // SAFETY: by the asserts and the caller's contract, every `index + ch + 8 <= len`.
        unsafe {
            tile::<S1, S2, L8, Q, B, P, R>(
                |a, b| L8::read(sp.add(src_at(a, b) + ch)),
                |r, p, v| v.write(dp.add(dst_at(r, p) + ch)),
            )
        };
        ch += 8;
    }
    for ch in ch..c {
        tile::<S1, S2, f32, Q, B, P, R>(|a, b| src[src_at(a, b) + ch], |r, p, v| dst[dst_at(r, p) + ch] = v);
    }
}

/// Transformed filters `Uᵀ[ξ][b][a]` of `w`, point by point as [`matmul_thin`] multiplies by
/// them, where `filter(a, b)` returns the 3x3 filter of output channel `a` and input channel `b`.
fn transform_filters<V: Variant<M, A>, const M: usize, const A: usize>(
    a_n: usize,
    b_n: usize,
    filter: impl Fn(usize, usize) -> [[f32; 3]; 3] + Sync,
) -> Vec<f32> {
    let u = transform_filters_by_output::<V, M, A>(a_n, b_n, filter);
    let fill = |ut: &mut [MaybeUninit<f32>]| {
        ut.par_chunks_mut(b_n * a_n).enumerate().for_each(|(xi, uxi)| {
            transpose(&u[xi * b_n..], A * A * b_n, uxi, a_n, a_n, b_n);
        });
    };
    // SAFETY: each point's transpose writes all `b_n x a_n` of its floats.
    let ut = unsafe { take_written(A * A * b_n * a_n, fill) };
    give(u);
    ut
}

/// The transformed filters as `U[a][ξ][b]`: one parallel task per output channel `a`, which
/// writes a contiguous block (the layout [`transform_filters`] regroups).
fn transform_filters_by_output<V: Variant<M, A>, const M: usize, const A: usize>(
    a_n: usize,
    b_n: usize,
    filter: impl Fn(usize, usize) -> [[f32; 3]; 3] + Sync,
) -> Vec<f32> {
    let mut u = take(a_n * A * A * b_n);
    u.par_chunks_mut(A * A * b_n).enumerate().for_each(|(a, ua)| {
        for b in 0..b_n {
            let t = two_d!(V::filter, filter(a, b), 3, A);
            for (xi, v) in t.iter().flatten().enumerate() {
                ua[xi * b_n + b] = *v;
            }
        }
    });
    u
}

/// The 3x3 filter of `(co, ci)` in a `(Cout, Cin, 3, 3)` weight.
fn filter(w: &[f32], cin: usize, co: usize, ci: usize) -> [[f32; 3]; 3] {
    let f = &w[(co * cin + ci) * 9..][..9];
    [[f[0], f[1], f[2]], [f[3], f[4], f[5]], [f[6], f[7], f[8]]]
}

/// Copies `gn` images of `c` channels (`NCHW`) into a zero-bordered channel-last buffer
/// `[gn][ph][pw][c]`, the image at row `top` and column `left`.
#[inline(always)]
fn to_channel_last(
    t: &Tiles,
    c: usize,
    x: &[f32],
    gn: usize,
    (ph, pw): (usize, usize),
    (top, left): (usize, usize),
) -> Vec<f32> {
    let plane = t.h * t.w;
    let zero = MaybeUninit::new(0.0);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        for (j, img) in out.chunks_exact_mut(ph * pw * c).enumerate() {
            // Zeros for the border; the image fills the rest.
            for (r, row) in img.chunks_exact_mut(pw * c).enumerate() {
                if r < top || r >= top + t.h {
                    row.fill(zero);
                } else {
                    row[..left * c].fill(zero);
                    row[(left + t.w) * c..].fill(zero);
                }
            }
            for y in 0..t.h {
                let dst = &mut img[((y + top) * pw + left) * c..];
                transpose(&x[j * c * plane + y * t.w..], plane, dst, c, c, t.w);
            }
        }
    };
    // SAFETY: every row is either border (zeroed) or `left` zeros, `w` transposed pixels and
    // zeros to the end, and `ph >= top + h`, `pw >= left + w` by the callers' sizes.
    unsafe { take_written(gn * ph * pw * c, fill) }
}

with_avx2!(
    /// Writes `Bᵀ d B` of every tile of `gn` images of `c` channels starting at `x` into
    /// `v[ξ][t][ci]` (`ld` tiles per ξ; tiles numbered image by image, row by row).
    ///
    /// Channel-last, so every arithmetic step is a vector op over the channels (at least
    /// [`MIN_CHANNELS`]), whatever the size of the plane.
    fn transform_input / transform_input_avx2 => transform_input_impl(t: &Tiles, c: usize, x: &[f32], gn: usize, v: &mut [f32], ld: usize));

#[inline(always)]
fn transform_input_impl<V: Variant<M, A>, const M: usize, const A: usize>(
    t: &Tiles,
    c: usize,
    x: &[f32],
    gn: usize,
    v: &mut [f32],
    ld: usize,
) {
    let (ph, pw) = (M * t.th + 2, M * t.tw + 2);
    let p = to_channel_last(t, c, x, gn, (ph, pw), (1, 1));
    for j in 0..gn {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let at = ((j * ph + M * ty) * pw + M * tx) * c;
                let tile = j * t.per_image() + ty * t.tw + tx;
                // Along each row of the patch, then along each column.
                // SAFETY: both index maps grow with both arguments.
                unsafe {
                    per_tile::<InputStep<V, M, A>, InputStep<V, M, A>, A, A, A, A>(
                        c,
                        (&p, |r, k| at + (r * pw + k) * c),
                        (&mut *v, |i, k| ((i * A + k) * ld + tile) * c),
                    )
                };
            }
        }
    }
    give(p);
}

with_avx2!(
    /// Writes `A dY Aᵀ` of every `M x M` output-gradient tile (zero beyond the plane) of `gn`
    /// images of `c` channels into `e[ξ][t][co]`, channel-last like [`transform_input`].
    fn transform_grad / transform_grad_avx2 => transform_grad_impl(t: &Tiles, c: usize, dy: &[f32], gn: usize, e: &mut [f32], ld: usize));

#[inline(always)]
fn transform_grad_impl<V: Variant<M, A>, const M: usize, const A: usize>(
    t: &Tiles,
    c: usize,
    dy: &[f32],
    gn: usize,
    e: &mut [f32],
    ld: usize,
) {
    let (ph, pw) = (M * t.th, M * t.tw);
    let p = to_channel_last(t, c, dy, gn, (ph, pw), (0, 0));
    for j in 0..gn {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let at = ((j * ph + M * ty) * pw + M * tx) * c;
                let tile = j * t.per_image() + ty * t.tw + tx;
                // SAFETY: both index maps grow with both arguments.
                unsafe {
                    per_tile::<GradStep<V, M, A>, GradStep<V, M, A>, M, M, A, A>(
                        c,
                        (&p, |r, k| at + (r * pw + k) * c),
                        (&mut *e, |i, k| ((i * A + k) * ld + tile) * c),
                    )
                };
            }
        }
    }
    give(p);
}

with_avx2!(
    /// Writes `Aᵀ M A` of every tile of `m[ξ][t][co]` (`c` channels) into the `gn` output images
    /// (`NCHW`) at `y`, dropping outputs beyond the plane.
    /// With an epilogue `(ep, base)`, applies `ep` to each row of tiles once it is written, `base`
    /// being the flat index of `y[0]` in the whole output.
    fn transform_output / transform_output_avx2 => transform_output_impl(t: &Tiles, c: usize, m: &[f32], ld: usize, gn: usize, y: &mut [MaybeUninit<f32>], ep: Option<(&Epilogue<'_>, usize)>));

#[inline(always)]
fn transform_output_impl<V: Variant<M, A>, const M: usize, const A: usize>(
    t: &Tiles,
    c: usize,
    m: &[f32],
    ld: usize,
    gn: usize,
    y: &mut [MaybeUninit<f32>],
    ep: Option<(&Epilogue<'_>, usize)>,
) {
    let plane = t.h * t.w;
    let rw = t.tw * M;
    // `out[i][xx][co]`: the `M` output rows of a row of tiles, transposed into the planes in
    // 8x8 blocks.
    let mut out = vec![0f32; M * rw * c];
    for j in 0..gn {
        for ty in 0..t.th {
            for tx in 0..t.tw {
                let tile = j * t.per_image() + ty * t.tw + tx;
                // Along each column of the tile (point row `r`), then along each row.
                // SAFETY: both index maps grow with both arguments.
                unsafe {
                    per_tile::<OutputStep<V, M, A>, OutputStep<V, M, A>, A, A, M, M>(
                        c,
                        (m, |k, r| ((r * A + k) * ld + tile) * c),
                        (&mut out, |jj, i| (i * rw + tx * M + jj) * c),
                    )
                };
            }
            let img = &mut y[j * c * plane..][..c * plane];
            let rows = M.min(t.h - M * ty);
            for i in 0..rows {
                let yy = M * ty + i;
                transpose(&out[i * rw * c..], c, &mut img[yy * t.w..], plane, t.w, c);
            }
            if let Some((ep, base)) = ep {
                for co in 0..c {
                    let at = co * plane + M * ty * t.w;
                    // SAFETY: the transposes above wrote these rows of every channel.
                    let run = unsafe { assume_written(&mut img[at..at + rows * t.w]) };
                    ep.apply(co, base + j * c * plane + at, run);
                }
            }
        }
    }
}

/// `dst[j * dst_stride + i] = src[i * src_stride + j]` for `i < rows` and `j < cols`: a block
/// of rows turned into columns, between the channel-first and channel-last layouts. 8x8
/// blocks go through AVX registers; one float at a time, the stores were the transforms'
/// largest cost.
fn transpose(
    src: &[f32],
    src_stride: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_stride: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    // The kernel below reads and writes through pointers: check its whole range here.
    assert!((rows - 1) * src_stride + cols <= src.len(), "transpose: source too short");
    assert!((cols - 1) * dst_stride + rows <= dst.len(), "transpose: destination too short");
    // The part done in 8x8 blocks: none without AVX.
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: the CPU has AVX, and the asserts above bound every index below r8 x c8.
        unsafe { transpose8_avx(src.as_ptr(), src_stride, dst.as_mut_ptr().cast(), dst_stride, r8, c8) };
    }
    // What the blocks left: rows from r8 in the first c8 columns, every row beyond them;
    // column by column, so that the stores run along the destination.
    for j in 0..cols {
        let first = if j < c8 { r8 } else { 0 };
        for i in first..rows {
            dst[j * dst_stride + i].write(src[i * src_stride + j]);
        }
    }
}

/// The `r8 x c8` part of [`transpose`] (both multiples of 8), in 8x8 register blocks.
///
/// # Safety
/// The CPU must have AVX, and every `src[i * ss + j]` and `dst[j * ds + i]` with `i < r8`,
/// `j < c8` must be in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8_avx(src: *const f32, ss: usize, dst: *mut f32, ds: usize, r8: usize, c8: usize) {
    use std::arch::x86_64::*;
    for i in (0..r8).step_by(8) {
        for j in (0..c8).step_by(8) {
            // SAFETY: in bounds by the caller's contract.
            let r: [__m256; 8] = from_fn(|k| unsafe { _mm256_loadu_ps(src.add((i + k) * ss + j)) });
            let lo = |a, b| _mm256_unpacklo_ps(a, b);
            let hi = |a, b| _mm256_unpackhi_ps(a, b);
            let (t0, t1, t2, t3) = (lo(r[0], r[1]), hi(r[0], r[1]), lo(r[2], r[3]), hi(r[2], r[3]));
            let (t4, t5, t6, t7) = (lo(r[4], r[5]), hi(r[4], r[5]), lo(r[6], r[7]), hi(r[6], r[7]));
            let even = |a, b| _mm256_shuffle_ps::<0x44>(a, b);
            let odd = |a, b| _mm256_shuffle_ps::<0xEE>(a, b);
            let u = [even(t0, t2), odd(t0, t2), even(t1, t3), odd(t1, t3)];
            let v = [even(t4, t6), odd(t4, t6), even(t5, t7), odd(t5, t7)];
            for k in 0..4 {
                // SAFETY: in bounds by the caller's contract.
                unsafe {
                    _mm256_storeu_ps(dst.add((j + k) * ds + i), _mm256_permute2f128_ps::<0x20>(u[k], v[k]));
                    _mm256_storeu_ps(dst.add((j + k + 4) * ds + i), _mm256_permute2f128_ps::<0x31>(u[k], v[k]));
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Forward, input and weight gradients of the variant `V` agree with the im2col path on
    /// odd, even, tiny and non-square planes, partial image groups and channel counts that
    /// are not a multiple of the transforms' eight lanes ([`L8`]).
    fn matches_im2col<V: Variant<M, A>, const M: usize, const A: usize>(tol: f32) {
        // n, cin, h, w, cout
        for (case, &(n, cin, h, w, cout)) in [
            (3, 16, 7, 7, 16),
            (2, 17, 4, 4, 20),
            (9, 16, 1, 1, 16),
            (5, 24, 6, 5, 16),
            (11, 16, 2, 3, 18),
            (2, 32, 14, 14, 16),
            (2, 40, 9, 11, 33),
            (3, 48, 2, 2, 40),
        ]
        .iter()
        .enumerate()
        {
            // Thinner than the dispatch threshold, so that the test stays fast; the kernels
            // themselves have no lower limit.
            let g = Geom::new(&[n, cin, h, w], &[cout, cin, 3, 3], 1, 1).unwrap();
            let x = random(n * cin * h * w, case as u64);
            let wt = random(cout * cin * 9, 100 + case as u64);
            let dy = random(n * cout * h * w, 200 + case as u64);
            let what = |part: &str| format!("F({M}, 3) case {case} {part}");
            let y = forward_with::<V, M, A>(&g, &x, &wt, None);
            close(&y, &super::super::conv::im2col_forward(&g, &x, &wt, None), tol, &what("forward"));
            let (dx, dw) = backward_with::<V, M, A>(&g, &x, &wt, &dy, true);
            let (rdx, rdw) = super::super::conv::im2col_backward(&g, &x, &wt, &dy, true);
            close(&dx, &rdx, tol, &what("dx"));
            close(&dw, &rdw, tol, &what("dw"));
            let (none, dw2) = backward_with::<V, M, A>(&g, &x, &wt, &dy, false);
            assert!(none.is_empty());
            assert_eq!(dw, dw2);
        }
    }

    #[test]
    fn f2_matches_im2col() {
        matches_im2col::<F2, 2, 4>(1e-5);
    }

    #[test]
    fn f4_matches_im2col() {
        matches_im2col::<F4, 4, 6>(1e-4);
    }

    /// The result does not depend on the number of threads, for either variant and either
    /// way of summing the weight gradient.
    #[test]
    fn same_bits_for_any_thread_count() {
        for (h, f4, points) in [(7, true, false), (2, false, true)] {
            let g = Geom::new(&[19, 16, h, h], &[24, 16, 3, 3], 1, 1).unwrap();
            assert_eq!(prefers_f4(&g), f4);
            assert_eq!(by_points(&g, &Tiles::new(&g, if f4 { 4 } else { 2 })), points);
            let (x, wt) = (random(19 * 16 * h * h, 1), random(24 * 16 * 9, 2));
            let dy = random(19 * 24 * h * h, 3);
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| (forward(&g, &x, &wt, None), backward(&g, &x, &wt, &dy, true)))
            };
            assert_eq!(run(1), run(3));
        }
    }

    /// F(4x4) wherever it needs fewer products: every plane of the presets (28, 14, 7, 4),
    /// but not 1x1 and 2x2 planes, nor 5x5, where the two tie.
    #[test]
    fn picks_the_variant_with_fewer_products() {
        let f4 = |h: usize, w: usize| prefers_f4(&Geom::new(&[1, 32, h, w], &[32, 32, 3, 3], 1, 1).unwrap());
        for h in [3, 4, 7, 8, 14, 28, 56] {
            assert!(f4(h, h), "{h}x{h}");
        }
        assert!(!f4(1, 1) && !f4(2, 2) && !f4(2, 1) && !f4(5, 5));
    }

    /// The block transpose equals the definition on sizes with and without whole 8x8 blocks,
    /// and leaves everything outside the block alone.
    #[test]
    fn transpose_matches_definition() {
        for (rows, cols) in [(8, 8), (16, 24), (7, 9), (17, 8), (8, 31), (1, 1), (28, 64)] {
            let (ss, ds) = (cols + 3, rows + 5);
            let src = random(rows * ss, rows as u64);
            let mut dst = vec![MaybeUninit::new(7.0); cols * ds];
            transpose(&src, ss, &mut dst, ds, rows, cols);
            // SAFETY: every element was initialised above.
            let dst: Vec<f32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
            for j in 0..cols {
                for i in 0..ds {
                    let want = if i < rows { src[i * ss + j] } else { 7.0 };
                    assert_eq!(dst[j * ds + i], want, "{rows}x{cols} at ({i}, {j})");
                }
            }
        }
    }

    /// Thin convolutions and other geometries keep the im2col path.
    #[test]
    fn applies_only_to_wide_same_3x3() {
        let geom = |cin, cout, k, s, p| Geom::new(&[2, cin, 8, 8], &[cout, cin, k, k], s, p).unwrap();
        assert!(applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 1, 1)));
        assert!(!applies(&geom(MIN_CHANNELS / 2, MIN_CHANNELS, 3, 1, 1)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS / 2, 3, 1, 1)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 2, 1)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 1, 1, 0)));
        assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 1, 0)));
    }
}
