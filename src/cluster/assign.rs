//! Nearest-centroid assignment: blockwise GEMM with the argmin fused per block.

use gemm::Parallelism;
use rayon::prelude::*;

use super::data::Points;
use super::kernels;
use crate::linalg::{matmul, MatRef};

/// Rows per assignment block. It depends only on k, never on the thread
/// count, so block boundaries (and hence every float sum) are reproducible.
/// 512 rows measured best or within noise of best for k = 100..1000 and
/// d = 128..784; very large k shrinks the block to keep the dot tile
/// (rows x k floats) near 2 MiB.
pub(super) fn block_rows(k: usize) -> usize {
    ((1usize << 19) / k.max(1)).clamp(64, 512) / 16 * 16
}

/// Squared L2 norm of each centroid, summed in f64 for accuracy.
pub(super) fn centroid_sqnorms(centroids: &[f32], d: usize) -> Vec<f32> {
    centroids.chunks_exact(d).map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() as f32).collect()
}

/// Per-task scratch space, reused across the blocks one rayon job handles.
struct Scratch {
    dots: Vec<f32>,
    best: Vec<f32>,
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
    let bs = block_rows(k);
    let c = MatRef::row_major(centroids, k, d);
    let xn = points.sqnorms();
    let partial: Vec<f64> = labels
        .par_chunks_mut(bs)
        .enumerate()
        .map_init(
            || Scratch { dots: vec![0.0; bs * k], best: vec![0.0; bs], gather: Vec::new() },
            |scr, (b, lab)| {
                let start = b * bs;
                let m = lab.len();
                let (rows, scale) = points.block(start, start + m, &mut scr.gather);
                let dots = &mut scr.dots[..m * k];
                // dots (k x m) = -2 c.x ; the per-row ||x||^2 does not change the
                // argmin, so it is only added back for the inertia. Centroid-major
                // tiles ran ~5% faster through gemm than row-major ones, and let
                // the argmin vectorise across rows.
                matmul(dots, c, MatRef::row_major(rows, m, d).t(), -2.0, false, Parallelism::None);
                let xn = &xn[start..start + m];
                kernels::argmin_block(dots, &cn, scale, xn, lab, &mut scr.best[..m])
            },
        )
        .collect();
    partial.iter().sum()
}
