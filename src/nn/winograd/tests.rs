use super::transforms::transpose;
use super::*;
use rand::{Rng, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
    }
}

/// Forward, input and weight gradients of the variant `V` agree with the im2col path on
/// odd, even, tiny and non-square planes, partial image groups and channel counts that
/// are not a multiple of the transforms' eight lanes ([`L8`]).
fn matches_im2col<V: Variant<M, A>, const M: usize, const A: usize>(tol: f32) {
    // n, cin, h, w, cout
    for (case, &(n, cin, h, w, cout)) in [
        (3, 16, 7, 7, 16),
        (2, 17, 4, 4, 20),
        (9, 16, 1, 1, 16),
        (5, 24, 6, 5, 16),
        (11, 16, 2, 3, 18),
        (2, 32, 14, 14, 16),
        (2, 40, 9, 11, 33),
        (3, 48, 2, 2, 40),
    ]
    .iter()
    .enumerate()
    {
        // Thinner than the dispatch threshold, so that the test stays fast; the kernels
        // themselves have no lower limit.
        let g = Geom::new(&[n, cin, h, w], &[cout, cin, 3, 3], 1, 1).unwrap();
        let x = random(n * cin * h * w, case as u64);
        let wt = random(cout * cin * 9, 100 + case as u64);
        let dy = random(n * cout * h * w, 200 + case as u64);
        let what = |part: &str| format!("F({M}, 3) case {case} {part}");
        let y = forward_with::<V, M, A>(&g, &x, &wt, None);
        close(&y, &super::super::conv::im2col_forward(&g, &x, &wt, None), tol, &what("forward"));
        let (dx, dw) = backward_with::<V, M, A>(&g, &x, &wt, &dy, true);
        let (rdx, rdw) = super::super::conv::im2col_backward(&g, &x, &wt, &dy, true);
        close(&dx, &rdx, tol, &what("dx"));
        close(&dw, &rdw, tol, &what("dw"));
        let (none, dw2) = backward_with::<V, M, A>(&g, &x, &wt, &dy, false);
        assert!(none.is_empty());
        assert_eq!(dw, dw2);
    }
}

#[test]
fn f2_matches_im2col() {
    matches_im2col::<F2, 2, 4>(1e-5);
}

#[test]
fn f4_matches_im2col() {
    matches_im2col::<F4, 4, 6>(1e-4);
}

/// The result does not depend on the number of threads, for either variant and either
/// way of summing the weight gradient.
#[test]
fn same_bits_for_any_thread_count() {
    for (h, f4, points) in [(7, true, false), (2, false, true)] {
        let g = Geom::new(&[19, 16, h, h], &[24, 16, 3, 3], 1, 1).unwrap();
        assert_eq!(prefers_f4(&g), f4);
        assert_eq!(by_points(&g, &Tiles::new(&g, if f4 { 4 } else { 2 })), points);
        let (x, wt) = (random(19 * 16 * h * h, 1), random(24 * 16 * 9, 2));
        let dy = random(19 * 24 * h * h, 3);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (forward(&g, &x, &wt, None), backward(&g, &x, &wt, &dy, true)))
        };
        assert_eq!(run(1), run(3));
    }
}

/// F(4x4) wherever it needs fewer products: every plane of the presets (28, 14, 7, 4),
/// but not 1x1 and 2x2 planes, nor 5x5, where the two tie.
#[test]
fn picks_the_variant_with_fewer_products() {
    let f4 = |h: usize, w: usize| prefers_f4(&Geom::new(&[1, 32, h, w], &[32, 32, 3, 3], 1, 1).unwrap());
    for h in [3, 4, 7, 8, 14, 28, 56] {
        assert!(f4(h, h), "{h}x{h}");
    }
    assert!(!f4(1, 1) && !f4(2, 2) && !f4(2, 1) && !f4(5, 5));
}

/// The block transpose equals the definition on sizes with and without whole 8x8 blocks,
/// and leaves everything outside the block alone.
#[test]
fn transpose_matches_definition() {
    for (rows, cols) in [(8, 8), (16, 24), (7, 9), (17, 8), (8, 31), (1, 1), (28, 64)] {
        let (ss, ds) = (cols + 3, rows + 5);
        let src = random(rows * ss, rows as u64);
        let mut dst = vec![MaybeUninit::new(7.0); cols * ds];
        transpose(&src, ss, &mut dst, ds, rows, cols);
        // SAFETY: every element was initialised above.
        let dst: Vec<f32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
        for j in 0..cols {
            for i in 0..ds {
                let want = if i < rows { src[i * ss + j] } else { 7.0 };
                assert_eq!(dst[j * ds + i], want, "{rows}x{cols} at ({i}, {j})");
            }
        }
    }
}

/// Thin convolutions and other geometries keep the im2col path.
#[test]
fn applies_only_to_wide_same_3x3() {
    let geom = |cin, cout, k, s, p| Geom::new(&[2, cin, 8, 8], &[cout, cin, k, k], s, p).unwrap();
    assert!(applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 1, 1)));
    assert!(!applies(&geom(MIN_CHANNELS / 2, MIN_CHANNELS, 3, 1, 1)));
    assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS / 2, 3, 1, 1)));
    assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 2, 1)));
    assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 1, 1, 0)));
    assert!(!applies(&geom(MIN_CHANNELS, MIN_CHANNELS, 3, 1, 0)));
}
