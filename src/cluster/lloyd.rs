//! Lloyd iterations: assign, recompute means in f64, split the largest cluster
//! into any that went empty.

use rayon::prelude::*;

use super::assign::{assign_bounded, Bounds};
use super::data::Points;
use super::kernels;

/// Relative perturbation applied when splitting a cluster; faiss uses the same 1/1024.
const SPLIT_EPS: f32 = 1.0 / 1024.0;

/// What the iterations produced.
pub(super) struct LloydOutput {
    pub centroids: Vec<f32>,
    pub inertia_per_iter: Vec<f64>,
    pub splits: usize,
}

/// Runs up to `iterations` Lloyd steps from `centroids`.
///
/// Entry `i` of the inertia trace is the cost of the assignment made at the
/// start of iteration `i` (faiss's convention). When an assignment repeats the
/// previous one exactly and no split happened, the centroids are at a fixed
/// point and further iterations would reproduce them bit for bit, so the loop
/// stops early.
pub(super) fn run(
    points: &Points<'_>,
    centroids: Vec<f32>,
    k: usize,
    iterations: usize,
    on_iter: &mut dyn FnMut(usize, f64),
) -> LloydOutput {
    run_pruned(points, centroids, k, iterations, true, on_iter)
}

/// [`run`], with the bound-based skipping of full searches switched by
/// `prune` (tests check that it changes nothing).
pub(super) fn run_pruned(
    points: &Points<'_>,
    mut centroids: Vec<f32>,
    k: usize,
    iterations: usize,
    prune: bool,
    on_iter: &mut dyn FnMut(usize, f64),
) -> LloydOutput {
    let n = points.len();
    let mut labels = vec![0u32; n];
    let mut prev = vec![u32::MAX; n];
    // Lloyd usually converges long before `iterations`: reserve for a typical run only.
    let mut trace = Vec::with_capacity(iterations.min(1024));
    let mut splits = 0;
    let mut last_split = false;
    let mut bounds = Bounds::new(n);
    let mut sums = ClusterSums::new(k, points.dim());
    for it in 0..iterations {
        let inertia = assign_bounded(points, &centroids, k, &mut labels, &mut bounds, prune && it > 0);
        trace.push(inertia);
        tracing::debug!(iteration = it, inertia, "k-means iteration");
        on_iter(it, inertia);
        if !last_split && labels == prev {
            tracing::debug!(iteration = it, "k-means converged: assignments unchanged");
            break;
        }
        let old = centroids.clone();
        let counts = if it == 0 { sums.add_all(points, &labels) } else { sums.apply_moves(points, &prev, &labels) };
        sums.means(&counts, &mut centroids);
        let s = split_empty(&mut centroids, counts, points.dim(), points, &labels);
        loosen_bounds(&old, &centroids, points.dim(), &labels, &mut bounds);
        if s > 0 {
            tracing::debug!(iteration = it, empty = s, "re-seeded empty clusters by splitting");
        }
        splits += s;
        last_split = s > 0;
        // The next assignment starts from these labels, so they are copied, not swapped out.
        prev.copy_from_slice(&labels);
    }
    LloydOutput { centroids, inertia_per_iter: trace, splits }
}

/// Lowers each row's bound on the distance to the centroids other than its
/// own by the most any of them moved (triangle inequality), so the bound
/// stays valid for the new centroids, and turns its squared distance to its
/// own centroid into a lower bound on the distance to where that moved.
fn loosen_bounds(old: &[f32], new: &[f32], d: usize, labels: &[u32], bounds: &mut Bounds) {
    let drift: Vec<f64> = old
        .chunks_exact(d)
        .zip(new.chunks_exact(d))
        .map(|(a, b)| {
            let sq: f64 = a.iter().zip(b).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
            // Padded so the f64 rounding of the sum can only make the bound looser.
            sq.sqrt() * (1.0 + 1e-9)
        })
        .collect();
    // The largest movement, and the largest among the others, for rows whose own centroid moved most.
    let mut top = 0;
    for (j, &v) in drift.iter().enumerate() {
        if v > drift[top] {
            top = j;
        }
    }
    let runner = drift.iter().enumerate().filter(|&(j, _)| j != top).map(|(_, &v)| v).fold(0.0, f64::max);
    bounds.lower.par_iter_mut().zip(bounds.own.par_iter_mut()).zip(labels.par_iter()).for_each(|((l, o), &a)| {
        *l -= if a as usize == top { runner } else { drift[top] };
        *o = o.sqrt() - drift[a as usize];
    });
}

/// Per-cluster f64 sums of the rows, kept from one iteration to the next so
/// that only the rows whose label changed need reading again.
///
/// Parallelism is over column strips, one per thread: each task walks the rows
/// in ascending order and updates its strip of every cluster's sums. Each sum
/// thus sees the same operations in the same order however the columns are
/// split, so the result is bit-identical for any thread count. Every term is
/// exact in f64 (a product of two f32), so the sums drift from a fresh
/// summation only by their own rounding, far below an f32 centroid's.
pub(super) struct ClusterSums {
    sums: Vec<f64>,
    k: usize,
    d: usize,
    /// Columns per strip: whole cache lines of input (16 f32) so tasks never share a line.
    width: usize,
}

impl ClusterSums {
    /// Zero sums for `k` clusters of `d` columns.
    pub(super) fn new(k: usize, d: usize) -> Self {
        let width = d.div_ceil(rayon::current_num_threads()).next_multiple_of(16).min(d);
        Self { sums: vec![0.0; d.div_ceil(width) * k * width], k, d, width }
    }

    /// Adds every row to its cluster's sums; returns the counts.
    pub(super) fn add_all(&mut self, points: &Points<'_>, labels: &[u32]) -> Vec<usize> {
        let (d, width) = (self.d, self.width);
        self.sums.par_chunks_mut(self.k * width).enumerate().for_each(|(ch, s)| {
            let c0 = ch * width;
            kernels::accumulate_columns(points, labels, c0, width.min(d - c0), width, s);
        });
        self.counts(labels)
    }

    /// Moves each row whose label changed from `prev` to `labels` between the
    /// two clusters' sums; returns the new counts.
    pub(super) fn apply_moves(&mut self, points: &Points<'_>, prev: &[u32], labels: &[u32]) -> Vec<usize> {
        let moved: Vec<u32> =
            (0..labels.len() as u32).into_par_iter().filter(|&i| prev[i as usize] != labels[i as usize]).collect();
        let (d, width) = (self.d, self.width);
        self.sums.par_chunks_mut(self.k * width).enumerate().for_each(|(ch, s)| {
            let c0 = ch * width;
            kernels::move_columns(points, &moved, (prev, labels), (c0, width.min(d - c0), width), s);
        });
        self.counts(labels)
    }

    fn counts(&self, labels: &[u32]) -> Vec<usize> {
        let mut counts = vec![0usize; self.k];
        for &l in labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Replaces each non-empty centroid by the mean of its rows; empty clusters
    /// keep their old centroid for `split_empty` to overwrite.
    pub(super) fn means(&self, counts: &[usize], centroids: &mut [f32]) {
        let (d, width, strip) = (self.d, self.width, self.k * self.width);
        centroids.par_chunks_mut(d).zip(counts.par_iter()).enumerate().for_each(|(c, (out, &cnt))| {
            if cnt == 0 {
                return;
            }
            let inv = 1.0 / cnt as f64;
            for (j, o) in out.iter_mut().enumerate() {
                let (ch, col) = (j / width, j % width);
                *o = (self.sums[ch * strip + c * width + col] * inv) as f32;
            }
        });
    }
}

/// Re-seeds every empty cluster (in index order) by splitting the currently
/// largest one that holds two distinct rows (ties to the lowest index): both get
/// its centroid, nudged in opposite directions by a relative `SPLIT_EPS`, and its
/// count is halved between them so the next empty cluster picks a different
/// donor if needed. A cluster of identical rows is passed over: its nudged
/// centroids are equally near each of its rows, so one of them would take them
/// all and the empty cluster would stay empty for good. The nudge is relative, as
/// faiss's is, so it moves no component that is zero: a donor centred at the origin
/// splits into two equal centroids and the empty cluster stays empty (counted, and
/// warned of after the fit), as it would under faiss. Returns how many
/// clusters were re-seeded.
pub(super) fn split_empty(
    centroids: &mut [f32],
    mut counts: Vec<usize>,
    d: usize,
    points: &Points<'_>,
    labels: &[u32],
) -> usize {
    let mut splits = 0;
    // Which clusters were found to hold only identical rows (`Some(false)`), computed only
    // for the clusters considered as donors, and only when a cluster went empty.
    let mut distinct: Vec<Option<bool>> = vec![None; counts.len()];
    for empty in 0..counts.len() {
        if counts[empty] != 0 {
            continue;
        }
        let mut by_size: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] >= 2).collect();
        // Largest first, ties to the lowest index: a deterministic stand-in for faiss's donor,
        // which it draws at random with probability (size - 1) / (n - k), so usually a large one.
        by_size.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
        let Some(donor) = by_size
            .into_iter()
            .find(|&c| *distinct[c].get_or_insert_with(|| holds_two_distinct_rows(points, labels, c as u32)))
        else {
            // Nothing left to split: every cluster with two rows holds one point k times.
            break;
        };
        for j in 0..d {
            let v = centroids[donor * d + j];
            let (up, down) = (v * (1.0 + SPLIT_EPS), v * (1.0 - SPLIT_EPS));
            let (e, dn) = if j % 2 == 0 { (up, down) } else { (down, up) };
            centroids[empty * d + j] = e;
            centroids[donor * d + j] = dn;
        }
        counts[empty] = counts[donor] / 2;
        counts[donor] -= counts[empty];
        // Half of a cluster of distinct rows, which it holds no label of yet: a donor for the
        // next empty cluster as under faiss's split, not passed over for want of rows.
        distinct[empty] = Some(true);
        splits += 1;
    }
    splits
}

/// Whether the rows labelled `c` are not all the same point (as the assignment sees them).
fn holds_two_distinct_rows(points: &Points<'_>, labels: &[u32], c: u32) -> bool {
    // Scaled as the assignment scales them: with `normalize`, x and 2x are one point.
    let mut members = labels.iter().enumerate().filter(|&(_, &l)| l == c).map(|(i, _)| points.row(i));
    let Some((first, s0)) = members.next() else { return false };
    members.any(|(row, s)| row.iter().zip(first).any(|(&a, &b)| a * s != b * s0))
}
