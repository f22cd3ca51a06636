//! Centroid seeding: uniform distinct points (faiss) or k-means++ (D^2 sampling).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::data::Points;
use super::kernels;

/// Rows per parallel task in the k-means++ distance pass; fixed for
/// reproducibility across thread counts.
const PP_BLOCK: usize = 2048;

/// `k` distinct visible rows chosen uniformly, in draw order.
pub(super) fn random(points: &Points<'_>, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let picks = rand::seq::index::sample(rng, points.len(), k);
    let mut c = Vec::with_capacity(k * points.dim());
    for i in picks.iter() {
        c.extend(points.visible_row(i));
    }
    c
}

/// Classic k-means++ (Arthur & Vassilvitskii 2007): each new centroid is a row
/// drawn with probability proportional to its squared distance to the nearest
/// centroid so far.
///
/// It needs one pass over the data per centroid, so for large k prefer
/// `Init::Random` or fit on a sample via `max_points_per_centroid`.
pub(super) fn kmeans_pp(points: &Points<'_>, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = points.len();
    let d = points.dim();
    let mut centroids = Vec::with_capacity(k * d);
    centroids.extend(points.visible_row(rng.random_range(0..n)));
    let mut mind = vec![f32::INFINITY; n];
    for _ in 1..k {
        let newest = &centroids[centroids.len() - d..];
        let block_sums = update_min_dist(points, newest, &mut mind);
        let pick = draw(&mind, &block_sums, rng).unwrap_or_else(|| rng.random_range(0..n));
        let row = points.visible_row(pick);
        centroids.extend(row);
    }
    centroids
}

/// Lowers `mind` to each row's distance to `c` where that is smaller, returning
/// per-block sums of the new values (f64, in block order).
fn update_min_dist(points: &Points<'_>, c: &[f32], mind: &mut [f32]) -> Vec<f64> {
    mind.par_chunks_mut(PP_BLOCK)
        .enumerate()
        .map(|(b, chunk)| {
            let mut sum = 0f64;
            for (j, m) in chunk.iter_mut().enumerate() {
                let (row, s) = points.row(b * PP_BLOCK + j);
                let dist = kernels::sq_dist_scaled(row, s, c);
                if dist < *m {
                    *m = dist;
                }
                sum += f64::from(*m);
            }
            sum
        })
        .collect()
}

/// Draws a row index with probability proportional to `weights`; `None` when
/// every weight is zero (all rows coincide with chosen centroids).
fn draw(weights: &[f32], block_sums: &[f64], rng: &mut ChaCha8Rng) -> Option<usize> {
    let total: f64 = block_sums.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let mut r = rng.random::<f64>() * total;
    let mut last_positive = None;
    for (b, &bsum) in block_sums.iter().enumerate() {
        if r >= bsum {
            r -= bsum;
            if bsum > 0.0 {
                last_positive = Some(b);
            }
            continue;
        }
        let start = b * PP_BLOCK;
        let end = (start + PP_BLOCK).min(weights.len());
        let mut last = None;
        for (i, &w) in weights[start..end].iter().enumerate() {
            if w > 0.0 {
                last = Some(start + i);
                if r < f64::from(w) {
                    return last;
                }
                r -= f64::from(w);
            }
        }
        // Rounding left a sliver of r past the block's last positive weight.
        if last.is_some() {
            return last;
        }
    }
    // Rounding pushed r past the total: take the last row with positive weight.
    let b = last_positive?;
    let start = b * PP_BLOCK;
    let end = (start + PP_BLOCK).min(weights.len());
    (start..end).rev().find(|&i| weights[i] > 0.0)
}
