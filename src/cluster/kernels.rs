//! Hot inner loops, compiled twice: once for the baseline target and once with
//! AVX2+FMA, picked at run time.
//!
//! The crate is built for generic x86-64 (SSE2), which leaves these loops
//! 2-4x slower than they need to be. Rust never contracts `a * b + c` into an
//! FMA on its own, so both versions perform the same IEEE operations in the
//! same order and return bit-identical results; only the speed differs.

use super::data::Points;

/// For each row `r` of the `m x k` tile `dots` (holding -2 x.c), writes the
/// index of the smallest `cn[j] + s_r * dots[r][j]` to `labels[r]` and returns
/// the summed squared distances `xn[r] + min`, clamped at zero, in f64.
pub(super) fn argmin_block(
    dots: &[f32],
    k: usize,
    cn: &[f32],
    scale: Option<&[f32]>,
    xn: &[f32],
    labels: &mut [u32],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { argmin_block_avx2(dots, k, cn, scale, xn, labels) };
    }
    argmin_block_impl(dots, k, cn, scale, xn, labels)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn argmin_block_avx2(dots: &[f32], k: usize, cn: &[f32], scale: Option<&[f32]>, xn: &[f32], labels: &mut [u32]) -> f64 {
    argmin_block_impl(dots, k, cn, scale, xn, labels)
}

#[inline(always)]
fn argmin_block_impl(dots: &[f32], k: usize, cn: &[f32], scale: Option<&[f32]>, xn: &[f32], labels: &mut [u32]) -> f64 {
    let mut sum = 0f64;
    for (r, (out, row)) in labels.iter_mut().zip(dots.chunks_exact(k)).enumerate() {
        let s = scale.map_or(1.0, |s| s[r]);
        let (j, v) = argmin_row(row, cn, s);
        *out = j;
        // Rounding can push a tiny true distance below zero.
        sum += (f64::from(xn[r]) + f64::from(v)).max(0.0);
    }
    sum
}

/// Index and value of the smallest `cn[j] + s * dots[j]`, ties to the lowest
/// index, NaNs never chosen.
///
/// Eight independent lanes let the compiler vectorise the compare-and-select;
/// merging lanes by (value, index) keeps the sequential tie rule.
#[inline(always)]
pub(super) fn argmin_row(dots: &[f32], cn: &[f32], s: f32) -> (u32, f32) {
    const L: usize = 8;
    let mut best = [f32::INFINITY; L];
    let mut idx = [0u32; L];
    let body = dots.len() / L * L;
    for (c, (dc, cc)) in dots[..body].chunks_exact(L).zip(cn[..body].chunks_exact(L)).enumerate() {
        for l in 0..L {
            let v = cc[l] + s * dc[l];
            let lt = v < best[l];
            best[l] = if lt { v } else { best[l] };
            idx[l] = if lt { (c * L + l) as u32 } else { idx[l] };
        }
    }
    let (mut bi, mut bv) = (idx[0], best[0]);
    for l in 1..L {
        if best[l] < bv || (best[l] == bv && idx[l] < bi) {
            bi = idx[l];
            bv = best[l];
        }
    }
    for j in body..dots.len() {
        let v = cn[j] + s * dots[j];
        if v < bv {
            bv = v;
            bi = j as u32;
        }
    }
    (bi, bv)
}

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
