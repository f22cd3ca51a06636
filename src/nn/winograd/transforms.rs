//! The two-dimensional transforms of filters, input tiles, output-gradient tiles and outputs,
//! channel-last and eight channels at a time, compiled for AVX2 where the CPU has it.

use super::super::bn_kernels::Epilogue;
use super::super::cpu::{assume_written, give, take, take_written};
use super::variants::{GradStep, InputStep, OutputStep, Step, Variant};
use super::Tiles;
use crate::linalg::{Arith, L8};
use rayon::prelude::*;
use std::array::from_fn;
use std::mem::MaybeUninit;

/// Defines `$name`, which runs `$imp` compiled for AVX2 where the CPU has it (as `$avx`)
/// and as built elsewhere; all three take the variant's type parameters.
macro_rules! with_avx2 {
    ($(#[$attr:meta])* fn $name:ident / $avx:ident => $imp:ident ($($arg:ident: $ty:ty),*)) => {
        $(#[$attr])*
        pub(super) fn $name<V: Variant<M, A>, const M: usize, const A: usize>($($arg: $ty),*) {
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

/// Transformed filters `Uᵀ[ξ][b][a]` of `w`, point by point as [`crate::linalg::matmul_thin`] multiplies by
/// them, where `filter(a, b)` returns the 3x3 filter of output channel `a` and input channel `b`.
pub(super) fn transform_filters<V: Variant<M, A>, const M: usize, const A: usize>(
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
pub(super) fn transform_filters_by_output<V: Variant<M, A>, const M: usize, const A: usize>(
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
pub(super) fn filter(w: &[f32], cin: usize, co: usize, ci: usize) -> [[f32; 3]; 3] {
    let f = &w[(co * cin + ci) * 9..][..9];
    [[f[0], f[1], f[2]], [f[3], f[4], f[5]], [f[6], f[7], f[8]]]
}

/// Copies `gn` images of `c` channels (`NCHW`) into a zero-bordered channel-last buffer
/// `[gn][ph][pw][c]`, the image at row `top` and column `left`.
#[inline(always)]
pub(super) fn to_channel_last(
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
    /// [`super::MIN_CHANNELS`]), whatever the size of the plane.
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
pub(super) fn transpose(
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
