use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::nearest::{nearest_block_with, Found, Kernel, PackedCentroids, Rows, Scratch};
use super::*;

/// `n` uniform rows in [-1, 1)^d.
fn uniform(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// `per` points around each of `k` far-apart centres; returns (x, true labels).
fn blobs(k: usize, per: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..per * k {
        let c = (i % k) as u32;
        for j in 0..d {
            let centre = if j == c as usize % d { 20.0 * (1 + c as usize / d) as f32 } else { 0.0 };
            x.push(centre + rng.random_range(-0.5..0.5));
        }
        y.push(c);
    }
    (x, y)
}

fn cfg(k: usize, iterations: usize) -> KMeansConfig {
    KMeansConfig { iterations, ..KMeansConfig::new(k) }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn noop() -> impl FnMut(usize, f64) {
    |_, _| {}
}

#[test]
fn recovers_separated_blobs_exactly() {
    let (x, y) = blobs(4, 50, 8, 1);
    let c = KMeansConfig { init: Init::KMeansPlusPlus, ..cfg(4, 20) };
    let model = fit(&x, 200, 8, &c, &mut noop()).unwrap();
    let (labels, _) = assign(&model, &x, 200).unwrap();
    // Purity 1 with k = #classes means the labelling is a bijection of the truth.
    let mut map = [u32::MAX; 4];
    for (&l, &t) in labels.iter().zip(&y) {
        assert!(map[l as usize] == u32::MAX || map[l as usize] == t, "cluster {l} mixes classes");
        map[l as usize] = t;
    }
}

#[test]
fn inertia_never_increases() {
    let x = uniform(600, 5, 2);
    let mut seen = Vec::new();
    let model = fit(&x, 600, 5, &cfg(8, 15), &mut |i, v| seen.push((i, v))).unwrap();
    assert_eq!(model.empty_cluster_splits, 0);
    assert_eq!(seen.len(), model.inertia_per_iter.len());
    for w in model.inertia_per_iter.windows(2) {
        assert!(w[1] <= w[0] * (1.0 + 1e-9), "inertia rose: {w:?}");
    }
}

#[test]
fn same_seed_is_bit_identical_and_seed_matters() {
    let x = uniform(1200, 12, 3);
    let c = KMeansConfig { init: Init::KMeansPlusPlus, ..cfg(9, 10) };
    let a = fit(&x, 1200, 12, &c, &mut noop()).unwrap();
    let b = fit(&x, 1200, 12, &c, &mut noop()).unwrap();
    assert_eq!(bits(&a.centroids), bits(&b.centroids));
    assert_eq!(a.inertia_per_iter, b.inertia_per_iter);
    let other = fit(&x, 1200, 12, &KMeansConfig { seed: 7, ..c }, &mut noop()).unwrap();
    assert_ne!(bits(&a.centroids), bits(&other.centroids));
}

#[test]
fn thread_count_does_not_change_results() {
    // Several assignment blocks (240 rows), uneven last block, d not a multiple of 16.
    let (n, d) = (2100, 21);
    let x = uniform(n, d, 4);
    let run = |threads: usize, c: &KMeansConfig| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let m = fit(&x, n, d, c, &mut noop()).unwrap();
            let a = assign(&m, &x, n).unwrap();
            (m, a)
        })
    };
    for c in [
        KMeansConfig { init: Init::KMeansPlusPlus, ..cfg(11, 8) },
        KMeansConfig { normalize: true, max_points_per_centroid: Some(150), ..cfg(11, 8) },
    ] {
        let (m1, a1) = run(1, &c);
        let (m3, a3) = run(3, &c);
        assert_eq!(bits(&m1.centroids), bits(&m3.centroids));
        assert_eq!(m1.inertia_per_iter, m3.inertia_per_iter);
        assert_eq!(a1.0, a3.0);
        assert_eq!(a1.1.to_bits(), a3.1.to_bits());
    }
}

#[test]
fn empty_cluster_is_split_from_largest() {
    let (x, _) = blobs(2, 40, 3, 5);
    // Third centroid is far from everything, so it is empty after the first assignment.
    let init = [20.0, 0.0, 0.0, 0.0, 20.0, 0.0, 1e4, 1e4, 1e4];
    let model = fit_from(&x, 80, 3, &init, &cfg(3, 10), &mut noop()).unwrap();
    assert!(model.empty_cluster_splits >= 1);
    let (labels, _) = assign(&model, &x, 80).unwrap();
    for c in 0..3 {
        assert!(labels.contains(&c), "cluster {c} still empty after splitting");
    }
}

/// Several clusters empty at once take the largest donors (ties to the lowest index, a cluster
/// re-seeded a moment ago included), all in one call.
#[test]
fn several_empty_clusters_take_the_largest_donors() {
    let x: Vec<f32> = (0..8).flat_map(|i| [i as f32, 1.0]).collect();
    let points = super::data::Points::new(&x, 2, false, None);
    let labels = vec![2u32; 8];
    let mut centroids = vec![0.0, 0.0, 0.0, 0.0, 3.5, 1.0];
    let splits = super::lloyd::split_empty(&mut centroids, vec![0, 0, 8], 2, &points, &labels);
    assert_eq!(splits, 2);
    // Cluster 0 split from 2 (8 rows), then cluster 1 from 0 (4 to 2's 4, the lower index).
    let eps = 1.0 / 1024.0;
    let c0 = [3.5 * (1.0 + eps) * (1.0 - eps), 1.0 * (1.0 - eps) * (1.0 + eps)];
    assert_eq!(&centroids[2..4], &[3.5 * (1.0 + eps) * (1.0 + eps), 1.0 * (1.0 - eps) * (1.0 - eps)]);
    assert_eq!(&centroids[0..2], &c0);
    assert_eq!(&centroids[4..6], &[3.5 * (1.0 - eps), 1.0 * (1.0 + eps)]);
    // Seven empty clusters and one of eight distinct rows: all seven re-seeded at once.
    let mut centroids = vec![0.0; 16];
    centroids[14..16].copy_from_slice(&[3.5, 1.0]);
    let mut counts = vec![0; 8];
    counts[7] = 8;
    let labels = vec![7u32; 8];
    assert_eq!(super::lloyd::split_empty(&mut centroids, counts, 2, &points, &labels), 7);
}

/// The largest cluster holds one point three times: splitting it would leave the empty
/// cluster empty for good (both halves equally near every row), so the next one is split.
#[test]
fn a_cluster_of_identical_rows_is_not_split() {
    let x = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 0.0, 1.0, 0.0, 3.0];
    let init = [10.0, 10.0, 0.0, 2.0, 100.0, 100.0];
    let model = fit_from(&x, 5, 2, &init, &cfg(3, 20), &mut noop()).unwrap();
    let (labels, inertia) = assign(&model, &x, 5).unwrap();
    for c in 0..3 {
        assert!(labels.contains(&c), "cluster {c} still empty: {labels:?}");
    }
    assert_eq!(inertia, 0.0);
    assert_eq!(model.empty_cluster_splits, 1);
    // Scaled rows are one point once normalised: nothing there to split.
    let scaled = [1.0, 2.0, 2.0, 4.0, 3.0, 6.0];
    let normalized = KMeansConfig { normalize: true, ..cfg(2, 5) };
    let model = fit_from(&scaled, 3, 2, &[0.6, 0.8, -1.0, 0.0], &normalized, &mut noop()).unwrap();
    assert_eq!(model.empty_cluster_splits, 0);
}

#[test]
fn bad_input_is_rejected_with_specifics() {
    let x = uniform(3, 2, 6);
    let e = |c: &KMeansConfig, x: &[f32], n, d| fit(x, n, d, c, &mut noop()).unwrap_err();
    assert_eq!(e(&cfg(5, 3), &x, 3, 2), ClusterError::TooManyClusters { k: 5, n: 3 });
    assert_eq!(e(&cfg(1, 3), &x, 3, 2), ClusterError::TooFewClusters { k: 1 });
    assert_eq!(e(&cfg(2, 3), &[], 0, 0), ClusterError::ZeroDimension);
    assert!(matches!(e(&cfg(2, 3), &x, 4, 2), ClusterError::ShapeMismatch { len: 6, .. }));
    let mut bad = x.clone();
    bad[5] = f32::NAN;
    assert_eq!(e(&cfg(2, 3), &bad, 3, 2), ClusterError::NonFinite { row: 2, col: 1 });
    let zero = KMeansConfig { max_points_per_centroid: Some(0), ..cfg(2, 3) };
    assert_eq!(e(&zero, &x, 3, 2), ClusterError::ZeroSampleSize);
    let short = fit_from(&x, 3, 2, &[0.0; 3], &cfg(2, 3), &mut noop()).unwrap_err();
    assert!(matches!(short, ClusterError::BadInitialCentroids { len: 3, expected: 4, .. }));
    assert!(e(&cfg(5, 3), &x, 3, 2).to_string().contains("only 3 points"));
    let model = fit(&x, 3, 2, &cfg(2, 3), &mut noop()).unwrap();
    assert!(matches!(assign(&model, &x[..4], 3), Err(ClusterError::ShapeMismatch { .. })));
}

#[test]
fn normalize_clusters_unit_rows() {
    let (n, d) = (400, 6);
    let mut x = uniform(n, d, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut unit = Vec::with_capacity(x.len());
    for row in x.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        unit.extend(row.iter().map(|v| v / norm));
        // Wildly different row scales must not matter once normalised.
        let s: f32 = rng.random_range(0.01..100.0);
        row.iter_mut().for_each(|v| *v *= s);
    }
    let init: Vec<f32> = unit[..5 * d].to_vec();
    let c = KMeansConfig { normalize: true, ..cfg(5, 10) };
    let scaled = fit_from(&x, n, d, &init, &c, &mut noop()).unwrap();
    let plain = fit_from(&unit, n, d, &init, &cfg(5, 10), &mut noop()).unwrap();
    for (a, b) in scaled.centroids.iter().zip(&plain.centroids) {
        assert!((a - b).abs() < 1e-4);
    }
    for cen in scaled.centroids.chunks_exact(d) {
        // Means of unit vectors lie inside the unit ball.
        assert!(cen.iter().map(|v| v * v).sum::<f32>() <= 1.0 + 1e-5);
    }
    let (l1, i1) = assign(&scaled, &x, n).unwrap();
    let (l2, i2) = assign(&plain, &unit, n).unwrap();
    assert_eq!(l1, l2);
    assert!((i1 - i2).abs() <= 1e-4 * i2);
}

#[test]
fn blocked_assignment_matches_naive() {
    // Spans two 512-row blocks; d and k exercise the non-multiple-of-8 tails.
    let (n, d, k) = (1100, 13, 37);
    let x = uniform(n, d, 10);
    let centroids = uniform(k, d, 11);
    let model = KMeansModel {
        k,
        dim: d,
        centroids: centroids.clone(),
        inertia_per_iter: vec![],
        empty_cluster_splits: 0,
        normalize: false,
        train_points: n,
    };
    let (labels, inertia) = assign(&model, &x, n).unwrap();
    let mut naive_inertia = 0f64;
    for (i, row) in x.chunks_exact(d).enumerate() {
        let mut dist: Vec<(f64, usize)> = centroids
            .chunks_exact(d)
            .enumerate()
            .map(|(j, c)| (row.iter().zip(c).map(|(a, b)| f64::from(a - b).powi(2)).sum(), j))
            .collect();
        dist.sort_by(|a, b| a.partial_cmp(b).unwrap());
        naive_inertia += dist[0].0;
        let gap = dist[1].0 - dist[0].0;
        assert!(labels[i] as usize == dist[0].1 || gap < 1e-5, "row {i}");
    }
    assert!((inertia - naive_inertia).abs() < 1e-5 * naive_inertia);
}

#[test]
fn sampling_caps_training_rows() {
    let (n, d) = (1000, 4);
    let x = uniform(n, d, 12);
    let sampled = KMeansConfig { max_points_per_centroid: Some(10), ..cfg(4, 5) };
    let m = fit(&x, n, d, &sampled, &mut noop()).unwrap();
    assert_eq!(m.train_points, 40);
    assert_eq!(fit(&x, n, d, &cfg(4, 5), &mut noop()).unwrap().train_points, n);
    let roomy = KMeansConfig { max_points_per_centroid: Some(1000), ..cfg(4, 5) };
    assert_eq!(fit(&x, n, d, &roomy, &mut noop()).unwrap().train_points, n);
    assert_eq!(assign(&m, &x, n).unwrap().0.len(), n);
}

#[test]
fn identical_points_do_not_panic() {
    let x = vec![1.5f32; 30];
    for init in [Init::Random, Init::KMeansPlusPlus] {
        let c = KMeansConfig { init, ..cfg(3, 5) };
        let m = fit(&x, 10, 3, &c, &mut noop()).unwrap();
        assert!(m.centroids.iter().all(|v| v.is_finite()));
    }
}

/// Runs every kernel this CPU has on one block; checks they agree with the portable one bit for bit.
fn kernel_both(x: &[f32], scale: Option<&[f32]>, c: &[f32], k: usize, d: usize) -> (Vec<u32>, Vec<f64>, Vec<f32>) {
    let m = x.len() / d;
    let xn: Vec<f32> = x
        .chunks_exact(d)
        .enumerate()
        .map(|(r, row)| {
            let s = f64::from(scale.map_or(1.0, |s| s[r]));
            row.iter().map(|&v| (f64::from(v) * s).powi(2)).sum::<f64>() as f32
        })
        .collect();
    let packed = PackedCentroids::new(c, k, d);
    let rows = Rows { x, scale, xn: &xn };
    let run = |kernel: Kernel| {
        let (mut labels, mut dist, mut second) = (vec![0u32; m], vec![0f64; m], vec![0f32; m]);
        let out = Found { labels: &mut labels, dist: &mut dist, second: &mut second };
        nearest_block_with(kernel, &rows, &packed, out, &mut Scratch::default());
        (labels, dist, second)
    };
    let slow = run(Kernel::Portable);
    for kernel in Kernel::available() {
        let fast = run(kernel);
        assert_eq!(fast.0, slow.0, "{kernel:?}");
        assert_eq!(
            fast.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            slow.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{kernel:?}"
        );
        assert_eq!(bits(&fast.2), bits(&slow.2), "{kernel:?}");
    }
    slow
}

#[test]
fn kernel_matches_a_naive_search() {
    // k not a multiple of the 16-centroid panel, d odd, rows not a multiple of the 6- or 12-row
    // tiles (nor of 4, the AVX-512 kernel's padding: tails of 1, 5 and 11 rows); at d = 600 a
    // panel is 38 KB, so k = 100 spans two cache chunks of panels.
    let cases = [
        (23, 37, 13, false),
        (13, 5, 1, true),
        (7, 100, 31, true),
        (1, 2, 3, false),
        (25, 100, 600, true),
        (17, 33, 257, false),
    ];
    for (m, k, d, scaled) in cases {
        let x = uniform(m, d, 40 + k as u64);
        let c = uniform(k, d, 41 + d as u64);
        let s: Vec<f32> = (0..m).map(|r| 0.5 + r as f32 / m as f32).collect();
        let scale = scaled.then_some(&s[..]);
        let (labels, dist, second) = kernel_both(&x, scale, &c, k, d);
        for r in 0..m {
            let sr = f64::from(scale.map_or(1.0, |s| s[r]));
            let mut exact: Vec<(f64, usize)> = c
                .chunks_exact(d)
                .enumerate()
                .map(|(j, cj)| {
                    let sq =
                        x[r * d..(r + 1) * d].iter().zip(cj).map(|(&a, &b)| (f64::from(a) * sr - f64::from(b)).powi(2));
                    (sq.sum::<f64>(), j)
                })
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let tol = 1e-4 * (1.0 + exact[0].0);
            assert!(exact.iter().find(|e| e.1 == labels[r] as usize).unwrap().0 <= exact[0].0 + tol, "row {r}");
            assert!((dist[r] - exact[0].0).abs() <= tol, "row {r}: {} vs {}", dist[r], exact[0].0);
            let xn: f64 = x[r * d..(r + 1) * d].iter().map(|&v| (f64::from(v) * sr).powi(2)).sum();
            assert!((xn + f64::from(second[r]) - exact[1].0).abs() <= tol, "row {r}: runner-up");
        }
    }
}

#[test]
fn kernel_prefers_the_lowest_index_among_equal_centroids() {
    // Centroids 9, 11, 25 (same lane as 9, later panel) and 40 are the same point, the nearest.
    let (k, d) = (41, 3);
    let mut c = vec![5.0f32; k * d];
    for j in [25, 11, 40, 9] {
        c[j * d..(j + 1) * d].copy_from_slice(&[1.0, 2.0, 3.0]);
    }
    let x = [1.0, 2.0, 3.5, 1.0, 2.0, 2.5];
    let (labels, dist, second) = kernel_both(&x, None, &c, k, d);
    assert_eq!(labels, vec![9, 9]);
    assert!((dist[0] - 0.25).abs() < 1e-5);
    // The runner-up is an equal centroid, so it ties with the best.
    assert!((f64::from(second[1]) + 1.0 + 4.0 + 6.25 - 0.25).abs() < 1e-4);
}

#[test]
fn pruned_lloyd_is_bit_identical_to_full_search() {
    // Blobs with many clusters per blob make near ties; normalisation and sampling exercise the
    // scaled and gathered paths; k = 37 leaves a partial panel.
    let (n, d) = (3000, 9);
    let (x, _) = blobs(6, n / 6, d, 12);
    for (k, normalize, sample) in [(37, false, None), (20, true, None), (37, true, Some(50))] {
        let c = KMeansConfig { normalize, max_points_per_centroid: sample, ..cfg(k, 25) };
        let points = prepare(&x, n, d, &c).unwrap();
        let init = seed(&points, &c);
        let full = lloyd::run_pruned(&points, init.clone(), k, 25, false, &mut noop());
        let pruned = lloyd::run_pruned(&points, init, k, 25, true, &mut noop());
        assert_eq!(bits(&full.centroids), bits(&pruned.centroids), "k={k} normalize={normalize}");
        assert_eq!(full.inertia_per_iter, pruned.inertia_per_iter);
        assert_eq!(full.splits, pruned.splits);
    }
}

#[test]
fn tensor_path_agrees_with_the_cpu_kernels_from_the_same_seeds() {
    // The GPU path runs the same Lloyd through candle ops; on the CPU device it must find the
    // same clustering up to float rounding (f32 sums there, f64 here).
    for (normalize, max_points) in [(false, None), (true, None), (false, Some(40))] {
        let x = uniform(3000, 24, 11);
        let c = KMeansConfig { normalize, max_points_per_centroid: max_points, seed: 4, ..cfg(30, 8) };
        let cpu = fit(&x, 3000, 24, &c, &mut |_, _| {}).unwrap();
        let dev = fit_with_tensors(&x, 3000, 24, &c, &candle_core::Device::Cpu, &mut |_, _| {}).unwrap();
        assert_eq!(cpu.inertia_per_iter.len(), dev.inertia_per_iter.len());
        for (a, b) in cpu.inertia_per_iter.iter().zip(&dev.inertia_per_iter) {
            assert!((a - b).abs() <= 1e-4 * a, "inertia {a} vs {b} ({normalize}, {max_points:?})");
        }
        let (la, _) = assign(&cpu, &x, 3000).unwrap();
        let (lb, _) = assign(&dev, &x, 3000).unwrap();
        let same = la.iter().zip(&lb).filter(|(a, b)| a == b).count();
        assert!(same >= 2990, "{same} of 3000 labels agree");
    }
    // fit_on on the CPU is the CPU path itself, bit for bit.
    let x = uniform(500, 8, 2);
    let a = fit(&x, 500, 8, &cfg(5, 5), &mut |_, _| {}).unwrap();
    let b = fit_on(&x, 500, 8, &cfg(5, 5), &candle_core::Device::Cpu, &mut |_, _| {}).unwrap();
    assert_eq!(a, b);
}

#[test]
fn tensor_path_splits_empty_clusters_like_the_cpu() {
    // 20 distinct rows, each 10 times: random init picks equal rows as different centroids, and
    // the later of two equal centroids ends up empty.
    let base = uniform(20, 4, 1);
    let dup: Vec<f32> = (0..200).flat_map(|i| base[(i % 20) * 4..(i % 20 + 1) * 4].to_vec()).collect();
    let n = 200;
    let c = KMeansConfig { init: Init::Random, seed: 9, ..cfg(15, 6) };
    let cpu = fit(&dup, n, 4, &c, &mut |_, _| {}).unwrap();
    let dev = fit_with_tensors(&dup, n, 4, &c, &candle_core::Device::Cpu, &mut |_, _| {}).unwrap();
    assert_eq!(cpu.empty_cluster_splits, dev.empty_cluster_splits);
    assert!(cpu.empty_cluster_splits > 0, "the fixture must produce empty clusters");
    let (a, b) = (cpu.inertia_per_iter.last().unwrap(), dev.inertia_per_iter.last().unwrap());
    assert!((a - b).abs() <= 1e-3 * a.max(1.0), "{a} vs {b}");
}

#[test]
fn moved_rows_update_the_sums_like_a_fresh_summation() {
    // d = 37 over 3 threads: strips of 16, 16 and 5 columns; labels change for about half the rows.
    let (n, d, k) = (500, 37, 9);
    let x = uniform(n, d, 21);
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let before: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let after: Vec<u32> =
        before.iter().map(|&l| if rng.random_bool(0.5) { rng.random_range(0..k as u32) } else { l }).collect();
    for normalize in [false, true] {
        let points = data::Points::new(&x, d, normalize, None);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let (moved, fresh) = pool.install(|| {
            let mut moved = lloyd::ClusterSums::new(k, d);
            moved.add_all(&points, &before);
            let counts = moved.apply_moves(&points, &before, &after);
            let mut fresh = lloyd::ClusterSums::new(k, d);
            assert_eq!(fresh.add_all(&points, &after), counts);
            let (mut a, mut b) = (vec![0f32; k * d], vec![0f32; k * d]);
            moved.means(&counts, &mut a);
            fresh.means(&counts, &mut b);
            (a, b)
        });
        for (a, b) in moved.iter().zip(&fresh) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
