//! Class prototypes: the mean of each class's rows, as nearest-class-mean labelling needs (the
//! "Prototype" baseline of ClusterFit, §4.1.1). A row may belong to several classes (hashtags);
//! it then counts towards each.

use super::data::{self, Points};
use super::{ClusterError, KMeansModel};

/// Per-class means of the (optionally L2-normalised) rows of the `n x d` matrix `x`.
///
/// `classes_of(i)` lists the classes of row `i`, all below `num_classes`. Returns the model of the
/// non-empty classes (centroids in normalised space when `normalize`, as k-means keeps them) and,
/// per prototype, the class it stands for. Sums run in f64 in row order, so results are exact
/// to the last bit across runs.
pub fn class_means<'c>(
    x: &[f32],
    n: usize,
    d: usize,
    num_classes: usize,
    normalize: bool,
    classes_of: impl Fn(usize) -> &'c [u32],
) -> Result<(KMeansModel, Vec<u32>), ClusterError> {
    data::check_shape(x, n, d)?;
    data::check_finite(x, d)?;
    let points = Points::new(x, d, normalize, None);
    // Sums only for the classes some row has: `num_classes x d` of them, for a vocabulary of a
    // million classes and wide features, asked for hundreds of gigabytes before a row was read.
    let mut counts = vec![0usize; num_classes];
    for i in 0..n {
        for &c in classes_of(i) {
            counts[c as usize] += 1;
        }
    }
    let kept: Vec<u32> = (0..num_classes as u32).filter(|&c| counts[c as usize] > 0).collect();
    let mut slot = vec![usize::MAX; num_classes];
    for (at, &c) in kept.iter().enumerate() {
        slot[c as usize] = at;
    }
    let mut sums = vec![0f64; kept.len() * d];
    for i in 0..n {
        let row = points.visible_row(i);
        for &c in classes_of(i) {
            let at = slot[c as usize];
            for (s, &v) in sums[at * d..(at + 1) * d].iter_mut().zip(&row) {
                *s += f64::from(v);
            }
        }
    }
    let mut centroids = Vec::with_capacity(kept.len() * d);
    for (at, &c) in kept.iter().enumerate() {
        let m = counts[c as usize] as f64;
        centroids.extend(sums[at * d..(at + 1) * d].iter().map(|&s| (s / m) as f32));
    }
    let model = KMeansModel {
        k: kept.len(),
        dim: d,
        centroids,
        inertia_per_iter: Vec::new(),
        empty_cluster_splits: 0,
        normalize,
        train_points: n,
    };
    Ok((model, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_and_nearest_prototype_match_a_hand_computed_fixture() {
        // Four 2-d points; class 0 = {p0, p1}, class 2 = {p1, p2, p3} (p1 carries both); class 1 empty.
        let x = [0.0, 0.0, 2.0, 0.0, 4.0, 4.0, 6.0, 2.0];
        let sets: [&[u32]; 4] = [&[0], &[0, 2], &[2], &[2]];
        let (model, kept) = class_means(&x, 4, 2, 3, false, |i| sets[i]).unwrap();
        assert_eq!(kept, vec![0, 2]);
        assert_eq!(model.centroids, vec![1.0, 0.0, 4.0, 2.0]);
        // Nearest prototype: p0 (0,0) -> class 0 (d^2 1 vs 20); p1 (2,0) -> 0 (1 vs 8);
        // p2 (4,4) -> 2 (25 vs 4); p3 (6,2) -> 2 (29 vs 4).
        let (labels, inertia) = super::super::assign(&model, &x, 4).unwrap();
        assert_eq!(labels, vec![0, 0, 1, 1]);
        assert!((inertia - (1.0 + 1.0 + 4.0 + 4.0)).abs() < 1e-9);
    }

    #[test]
    fn normalised_prototypes_average_unit_rows() {
        let x = [3.0, 4.0, 0.0, 2.0];
        let sets: [&[u32]; 2] = [&[0], &[0]];
        let (model, _) = class_means(&x, 2, 2, 1, true, |i| sets[i]).unwrap();
        assert!((model.centroids[0] - 0.3).abs() < 1e-6 && (model.centroids[1] - 0.9).abs() < 1e-6);
    }
}
