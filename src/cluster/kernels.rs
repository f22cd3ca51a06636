//! Hot inner loops, compiled twice: once for the baseline target and once with
//! AVX2+FMA, picked at run time.
//!
//! The crate is built for generic x86-64 (SSE2), which leaves these loops
//! 2-4x slower than they need to be. Rust never contracts `a * b + c` into an
//! FMA on its own, so both versions perform the same IEEE operations in the
//! same order and return bit-identical results; only the speed differs.

use super::data::Points;

/// Adds columns `c0..c0 + w` of every visible row (scaled) into
/// `sums[label * stride + j]`, in ascending row order.
pub(super) fn accumulate_columns(
    points: &Points<'_>,
    labels: &[u32],
    c0: usize,
    w: usize,
    stride: usize,
    sums: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { accumulate_columns_avx2(points, labels, c0, w, stride, sums) };
    }
    accumulate_columns_impl(points, labels, c0, w, stride, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_columns_avx2(points: &Points<'_>, labels: &[u32], c0: usize, w: usize, stride: usize, sums: &mut [f64]) {
    accumulate_columns_impl(points, labels, c0, w, stride, sums)
}

#[inline(always)]
fn accumulate_columns_impl(points: &Points<'_>, labels: &[u32], c0: usize, w: usize, stride: usize, sums: &mut [f64]) {
    for (i, &l) in labels.iter().enumerate() {
        let (row, s) = points.row(i);
        let s = f64::from(s);
        let dst = &mut sums[l as usize * stride..][..w];
        for (a, &v) in dst.iter_mut().zip(&row[c0..c0 + w]) {
            *a += f64::from(v) * s;
        }
    }
}

/// For each row `i` of `moved` (ascending), moves columns `c0..c0 + w` of
/// visible row `i` (scaled) from `sums[from[i] * stride + j]` to
/// `sums[to[i] * stride + j]`: subtracted, then added.
pub(super) fn move_columns(
    points: &Points<'_>,
    moved: &[u32],
    (from, to): (&[u32], &[u32]),
    (c0, w, stride): (usize, usize, usize),
    sums: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { move_columns_avx2(points, moved, (from, to), (c0, w, stride), sums) };
    }
    move_columns_impl(points, moved, (from, to), (c0, w, stride), sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn move_columns_avx2(
    points: &Points<'_>,
    moved: &[u32],
    labels: (&[u32], &[u32]),
    cols: (usize, usize, usize),
    sums: &mut [f64],
) {
    move_columns_impl(points, moved, labels, cols, sums)
}

#[inline(always)]
fn move_columns_impl(
    points: &Points<'_>,
    moved: &[u32],
    (from, to): (&[u32], &[u32]),
    (c0, w, stride): (usize, usize, usize),
    sums: &mut [f64],
) {
    for &i in moved {
        let i = i as usize;
        let (row, s) = points.row(i);
        let s = f64::from(s);
        let src = &mut sums[from[i] as usize * stride..][..w];
        for (a, &v) in src.iter_mut().zip(&row[c0..c0 + w]) {
            *a -= f64::from(v) * s;
        }
        let dst = &mut sums[to[i] as usize * stride..][..w];
        for (a, &v) in dst.iter_mut().zip(&row[c0..c0 + w]) {
            *a += f64::from(v) * s;
        }
    }
}

/// `||s * a - c||^2`, accumulated in eight lanes so it vectorises.
pub(super) fn sq_dist_scaled(a: &[f32], s: f32, c: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { sq_dist_scaled_avx2(a, s, c) };
    }
    sq_dist_scaled_impl(a, s, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sq_dist_scaled_avx2(a: &[f32], s: f32, c: &[f32]) -> f32 {
    sq_dist_scaled_impl(a, s, c)
}

#[inline(always)]
fn sq_dist_scaled_impl(a: &[f32], s: f32, c: &[f32]) -> f32 {
    const L: usize = 8;
    let mut acc = [0f32; L];
    let body = a.len() / L * L;
    for (ac, cc) in a[..body].chunks_exact(L).zip(c[..body].chunks_exact(L)) {
        for l in 0..L {
            let t = s * ac[l] - cc[l];
            acc[l] += t * t;
        }
    }
    let mut total: f32 = acc.iter().sum();
    for j in body..a.len() {
        let t = s * a[j] - c[j];
        total += t * t;
    }
    total
}
