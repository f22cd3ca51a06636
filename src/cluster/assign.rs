//! Nearest-centroid assignment: blockwise GEMM with the argmin fused per block.

use gemm::Parallelism;
use rayon::prelude::*;

use super::data::Points;
use super::linalg::{matmul, MatRef};

/// Rows per assignment block. It depends only on (k, d), never on the thread
/// count, so block boundaries (and hence every float sum) are reproducible.
/// The dot-product tile (rows x k floats) is kept around 1 MiB so it stays
/// in L2 while the argmin reads it back.
pub(super) fn block_rows(k: usize, _d: usize) -> usize {
    let target = (256 * 1024) / k.max(1);
    target.clamp(64, 4096) / 16 * 16
}

/// Squared L2 norm of each centroid, summed in f64 for accuracy.
pub(super) fn centroid_sqnorms(centroids: &[f32], d: usize) -> Vec<f32> {
    centroids.chunks_exact(d).map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() as f32).collect()
}

/// Per-task scratch space, reused across the blocks one rayon job handles.
struct Scratch {
    dots: Vec<f32>,
    gather: Vec<f32>,
}

/// Writes each visible row's nearest centroid into `labels` and returns the
/// total squared distance (inertia).
///
/// Per-block inertias are collected in block order and summed sequentially,
/// so the result is bit-identical for any number of threads.
pub(super) fn assign_points(points: &Points<'_>, centroids: &[f32], k: usize, labels: &mut [u32]) -> f64 {
    let d = points.dim();
    debug_assert_eq!(labels.len(), points.len());
    let cn = centroid_sqnorms(centroids, d);
    let bs = block_rows(k, d);
    let c_t = MatRef::row_major(centroids, k, d).t();
    let xn = points.sqnorms();
    let partial: Vec<f64> = labels
        .par_chunks_mut(bs)
        .enumerate()
        .map_init(
            || Scratch { dots: vec![0.0; bs * k], gather: Vec::new() },
            |scr, (b, lab)| {
                let start = b * bs;
                let m = lab.len();
                let (rows, scale) = points.block(start, start + m, &mut scr.gather);
                let dots = &mut scr.dots[..m * k];
                // dots = -2 x.c ; the per-row ||x||^2 does not change the argmin,
                // so it is only added back for the inertia.
                matmul(dots, MatRef::row_major(rows, m, d), c_t, -2.0, false, Parallelism::None);
                let mut sum = 0f64;
                for (r, (out, row_dots)) in lab.iter_mut().zip(dots.chunks_exact(k)).enumerate() {
                    let s = scale.map_or(1.0, |s| s[r]);
                    let (j, v) = argmin_row(row_dots, &cn, s);
                    *out = j;
                    // Rounding can push a tiny true distance below zero.
                    sum += (f64::from(xn[start + r]) + f64::from(v)).max(0.0);
                }
                sum
            },
        )
        .collect();
    partial.iter().sum()
}

/// Index and value of the smallest `cn[j] + s * dots[j]`, ties to the lowest
/// index, NaNs never chosen.
///
/// Eight independent lanes let the compiler vectorise the compare-and-select;
/// merging lanes by (value, index) keeps the sequential tie rule.
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
