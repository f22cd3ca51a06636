//! Nearest-centroid assignment: fixed row blocks through the fused kernel, in
//! parallel, optionally skipping rows whose label provably cannot change.

use rayon::prelude::*;

use super::data::Points;
use super::nearest::{self, nearest_block, Found, PackedCentroids, Rows, Scratch};

/// Rows per assignment block: a multiple of the kernel's 6-row tile. It
/// never depends on the thread count, so block boundaries (and hence every
/// float sum) are reproducible.
const BLOCK_ROWS: usize = 240;

/// Per-task buffers, reused across the blocks one rayon job handles.
#[derive(Default)]
struct Buffers {
    scr: Scratch,
    dist: Vec<f64>,
    second: Vec<f32>,
    todo: Vec<usize>,
    rows: Vec<f32>,
    scale: Vec<f32>,
    xn: Vec<f32>,
    labels: Vec<u32>,
    found: Vec<f64>,
    own: Vec<f32>,
    candidates: Vec<usize>,
}

/// Per-row state one Lloyd assignment leaves for the next.
pub(super) struct Bounds {
    /// A lower bound on the distance (not squared) from each row to every centroid but its own.
    pub lower: Vec<f64>,
    /// After an assignment, each row's squared distance to its centroid; once the centroids
    /// have moved, the caller turns it into a lower bound on the distance (not squared) to the
    /// row's moved centroid. It only sends rows that cannot pass the pruning test straight to
    /// the full search, whose result is the same either way, so it needs no rounding margin.
    pub own: Vec<f64>,
}

impl Bounds {
    /// Bounds for `n` rows that prune nothing.
    pub(super) fn new(n: usize) -> Self {
        Self { lower: vec![0.0; n], own: vec![0.0; n] }
    }
}

/// Writes each visible row's nearest centroid into `labels` and returns the
/// total squared distance (inertia).
///
/// Per-block inertias are collected in block order and summed sequentially,
/// so the result is bit-identical for any number of threads.
pub(super) fn assign_points(points: &Points<'_>, centroids: &[f32], k: usize, labels: &mut [u32]) -> f64 {
    assign_bounded(points, centroids, k, labels, &mut Bounds::new(labels.len()), false)
}

/// [`assign_points`] that also maintains the per-row [`Bounds`].
///
/// With `prune`, `labels` and `bounds` must hold the previous
/// assignment and bounds already reduced by the centroids' movement. A row
/// keeps its label without a full search when the error-padded squared
/// distance to its own centroid stays below the bound squared; the padding
/// exceeds the kernel's worst-case rounding, so such a row would have got the
/// same label from the full search, and its distance is computed bit for bit
/// as the kernel would. Results are thus identical with or without pruning.
/// `cap` is unused beyond enabling it (kept for symmetry with the callers).
pub(super) fn assign_bounded(
    points: &Points<'_>,
    centroids: &[f32],
    k: usize,
    labels: &mut [u32],
    bounds: &mut Bounds,
    prune: bool,
) -> f64 {
    let d = points.dim();
    debug_assert_eq!(labels.len(), points.len());
    let packed = PackedCentroids::new(centroids, k, d);
    let xn = points.sqnorms();
    // Worst-case absolute error of a computed squared distance, per unit of
    // ||x||^2 + max ||c||^2: d + 4 roundings of 2^-24, doubled for safety.
    let rel_err = (d as f64 + 4.0) * f64::from(f32::EPSILON);
    let cmax = f64::from(packed.max_norm());
    let partial: Vec<f64> = labels
        .par_chunks_mut(BLOCK_ROWS)
        .zip(bounds.lower.par_chunks_mut(BLOCK_ROWS))
        .zip(bounds.own.par_chunks_mut(BLOCK_ROWS))
        .enumerate()
        .map_init(<(Vec<f32>, Buffers)>::default, |(gather, buf), (b, ((lab, low), own))| {
            let start = b * BLOCK_ROWS;
            let m = lab.len();
            let xn = &xn[start..start + m];
            let (x, scale) = points.block(start, start + m, gather);
            buf.dist.clear();
            buf.dist.resize(m, 0.0);
            let err = |r: usize| rel_err * (f64::from(xn[r]) + cmax);
            if !prune {
                buf.second.clear();
                buf.second.resize(m, 0.0);
                let rows = Rows { x, scale, xn };
                let out = Found { labels: lab, dist: &mut buf.dist, second: &mut buf.second };
                nearest_block(&rows, &packed, out, &mut buf.scr);
                for (r, l) in low.iter_mut().enumerate() {
                    *l = lower_bound(xn[r], buf.second[r], err(r));
                }
            } else {
                let block = Block { x, scale, xn, d, centroids, packed: &packed };
                prune_block(&block, lab, low, own, buf, &err);
            }
            own.copy_from_slice(&buf.dist);
            buf.dist.iter().sum::<f64>()
        })
        .collect();
    partial.iter().sum()
}

/// The distance lower bound implied by a computed runner-up value.
fn lower_bound(xn: f32, second: f32, err: f64) -> f64 {
    (f64::from(xn) + f64::from(second) - err).max(0.0).sqrt()
}

/// One block's rows and the centroids, for the pruned step.
struct Block<'a> {
    x: &'a [f32],
    scale: Option<&'a [f32]>,
    xn: &'a [f32],
    d: usize,
    centroids: &'a [f32],
    packed: &'a PackedCentroids,
}

/// The pruned step for one block: rows that may change are gathered and
/// searched in full; the others get their own centroid's distance. `own`
/// (see [`Bounds::own`]) spares the own-centroid distance of rows that cannot
/// pass the test.
fn prune_block(
    blk: &Block<'_>,
    lab: &mut [u32],
    low: &mut [f64],
    own: &[f64],
    buf: &mut Buffers,
    err: &dyn Fn(usize) -> f64,
) {
    let (d, xn) = (blk.d, blk.xn);
    buf.todo.clear();
    buf.candidates.clear();
    // A bound loosened below zero says nothing (its square would).
    buf.candidates.extend((0..lab.len()).filter(|&r| low[r] > 0.0 && own[r] < low[r]));
    buf.own.clear();
    buf.own.resize(buf.candidates.len(), 0.0);
    let rows = Rows { x: blk.x, scale: blk.scale, xn };
    nearest::own_values(&rows, blk.packed, blk.centroids, lab, &buf.candidates, &mut buf.own);
    let mut next = buf.candidates.iter().zip(&buf.own).peekable();
    for r in 0..lab.len() {
        if let Some((_, &v)) = next.next_if(|&(&c, _)| c == r) {
            let upper = f64::from(xn[r]) + f64::from(v) + 2.0 * err(r);
            if upper < low[r] * low[r] {
                buf.dist[r] = (f64::from(xn[r]) + f64::from(v)).max(0.0);
                continue;
            }
        }
        buf.todo.push(r);
    }
    if buf.todo.is_empty() {
        return;
    }
    let t = buf.todo.len();
    buf.rows.clear();
    buf.scale.clear();
    buf.xn.clear();
    for &r in &buf.todo {
        buf.rows.extend_from_slice(&blk.x[r * d..(r + 1) * d]);
        buf.scale.push(blk.scale.map_or(1.0, |s| s[r]));
        buf.xn.push(xn[r]);
    }
    buf.labels.clear();
    buf.labels.resize(t, 0);
    buf.second.clear();
    buf.second.resize(t, 0.0);
    buf.found.clear();
    buf.found.resize(t, 0.0);
    let rows = Rows { x: &buf.rows, scale: blk.scale.map(|_| &buf.scale[..]), xn: &buf.xn };
    let out = Found { labels: &mut buf.labels, dist: &mut buf.found, second: &mut buf.second };
    nearest_block(&rows, blk.packed, out, &mut buf.scr);
    for (i, &r) in buf.todo.iter().enumerate() {
        lab[r] = buf.labels[i];
        buf.dist[r] = buf.found[i];
        low[r] = lower_bound(xn[r], buf.second[i], err(r));
    }
}
