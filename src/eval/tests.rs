use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// `per` rows of each of `classes` well-separated classes in `d` dims.
fn separable(classes: usize, per: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..classes * per {
        let c = i % classes;
        for j in 0..d {
            let centre = if j == c % d { 6.0 } else { 0.0 };
            x.push(centre + rng.random_range(-1.0..1.0));
        }
        y.push(c as u32);
    }
    (x, y)
}

fn quick() -> ProbeConfig {
    ProbeConfig { epochs: 5, batch_size: 32, ..ProbeConfig::default() }
}

fn probe(
    tx: &[f32],
    ty: &[u32],
    vx: &[f32],
    vy: &[u32],
    d: usize,
    c: usize,
    cfg: &ProbeConfig,
) -> Result<ProbeResult, EvalError> {
    linear_probe(ProbeData { train_x: tx, train_y: ty, test_x: vx, test_y: vy, d, num_classes: c }, cfg, &mut |_, _| {})
}

#[test]
fn separable_data_is_learned_perfectly() {
    let (tx, ty) = separable(4, 60, 6, 1);
    let (vx, vy) = separable(4, 20, 6, 2);
    let mut epochs = 0;
    let data = ProbeData { train_x: &tx, train_y: &ty, test_x: &vx, test_y: &vy, d: 6, num_classes: 4 };
    let r = linear_probe(data, &quick(), &mut |_, _| epochs += 1).unwrap();
    assert_eq!(epochs, 5);
    assert_eq!(r.train_top1, 1.0);
    assert_eq!(r.test_top1, 1.0);
    assert_eq!(r.per_class_test_acc, vec![1.0; 4]);
    assert_eq!(r.test_top5, None);
    assert!(r.loss_per_epoch.last() < r.loss_per_epoch.first());
}

/// A probe whose weights blow up (here a learning rate and weight decay whose product makes
/// each step multiply the weights by about -29) is refused, naming the epoch, instead of
/// scoring its NaN logits as 100 % top-1 (which it once did).
#[test]
fn a_diverging_probe_is_refused() {
    let (tx, ty) = separable(4, 60, 6, 1);
    let (vx, vy) = separable(4, 20, 6, 2);
    let cfg = ProbeConfig { lr: 30.0, weight_decay: 1.0, epochs: 3, ..quick() };
    match probe(&tx, &ty, &vx, &vy, 6, 4, &cfg) {
        Err(EvalError::Diverged { epochs: 3, loss, .. }) => assert!(!loss.is_finite()),
        other => panic!("expected Diverged, got {other:?}"),
    }
}

/// A column of zeros but for one value near f32's smallest normal (as from an output that
/// underflowed) is scaled as a constant: both solvers score as if it were all zeros. It once
/// standardised to NaN, so SGD read "diverged" and L-BFGS stopped at once on its NaN gradient
/// and scored 0 %.
#[test]
fn a_column_too_flat_to_scale_is_read_as_constant() {
    let (mut tx, ty) = separable(4, 60, 6, 1);
    let (vx, vy) = separable(4, 20, 6, 2);
    tx.iter_mut().skip(5).step_by(6).for_each(|v| *v = 0.0);
    let zeroed = tx.clone();
    tx[6 * 17 + 5] = 1e-38;
    for solver in [ProbeSolver::Sgd, ProbeSolver::Lbfgs] {
        let cfg = ProbeConfig { solver, ..quick() };
        let flat = probe(&tx, &ty, &vx, &vy, 6, 4, &cfg).unwrap();
        let zero = probe(&zeroed, &ty, &vx, &vy, 6, 4, &cfg).unwrap();
        assert_eq!((flat.test_top1, flat.train_top1), (zero.test_top1, zero.train_top1), "{solver:?}");
        assert_eq!(flat.test_top1, 1.0, "{solver:?}");
    }
}

#[test]
fn results_are_bit_identical_across_runs_and_pools() {
    // Batches above the 64-row GEMM pieces and d above the 64-row backward pieces.
    let (tx, ty) = separable(7, 60, 70, 3);
    let (vx, vy) = separable(7, 10, 70, 4);
    let cfg = ProbeConfig { batch_size: 150, ..quick() };
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| probe(&tx, &ty, &vx, &vy, 70, 7, &cfg).unwrap())
    };
    let a = run(1);
    let b = run(3);
    let c = run(3);
    let bits = |r: &ProbeResult| r.loss_per_epoch.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(bits(&b), bits(&c));
    assert_eq!(a, b);
    assert!(a.test_top5.is_some());
    let other = probe(&tx, &ty, &vx, &vy, 70, 7, &ProbeConfig { seed: 9, ..cfg.clone() }).unwrap();
    assert_ne!(bits(&a), bits(&other));
}

#[test]
fn absent_test_class_reports_nan() {
    let (tx, ty) = separable(3, 30, 4, 5);
    let (vx, vy) = separable(2, 10, 4, 6);
    let r = probe(&tx, &ty, &vx, &vy, 4, 3, &quick()).unwrap();
    assert!(r.per_class_test_acc[2].is_nan());
    assert_eq!(r.per_class_test_acc[0], 1.0);
}

#[test]
fn probe_rejects_bad_input() {
    let (tx, ty) = separable(2, 10, 3, 7);
    let cfg = quick();
    let err = |tx: &[f32], ty: &[u32], vx: &[f32], vy: &[u32], d, c| probe(tx, ty, vx, vy, d, c, &cfg).unwrap_err();
    assert_eq!(err(&[], &[], &tx, &ty, 3, 2), EvalError::Empty { what: "train split" });
    assert_eq!(err(&tx, &ty, &[], &[], 3, 2), EvalError::Empty { what: "test split" });
    assert!(matches!(err(&tx, &ty[1..], &tx, &ty, 3, 2), EvalError::LengthMismatch { left: 19, right: 20, .. }));
    assert!(matches!(err(&tx[1..], &ty, &tx, &ty, 3, 2), EvalError::RaggedFeatures { .. }));
    assert_eq!(err(&tx, &ty, &tx, &ty, 0, 2), EvalError::ZeroDimension);
    assert_eq!(err(&tx, &ty, &tx, &ty, 3, 1), EvalError::TooFewClasses { num_classes: 1 });
    // Wide rows and a million classes: refused before a weight is allocated (it aborted).
    let (wide, y) = (vec![0.5f32; 200_000], vec![0u32, 1]);
    let e = err(&wide, &y, &wide, &y, 100_000, 1_000_000);
    assert!(matches!(e, EvalError::TooLarge { copies: 4, .. }), "{e}");
    assert!(e.to_string().contains("100000 features x 1000000 classes needs about 2 TB (4 copies"), "{e}");
    let lbfgs = ProbeConfig { solver: crate::eval::ProbeSolver::Lbfgs, ..quick() };
    let e = probe(&wide, &y, &wide, &y, 100_000, 1_000_000, &lbfgs).unwrap_err();
    assert!(matches!(e, EvalError::TooLarge { copies: 40, .. }), "{e}");
    let mut bad_y = ty.clone();
    bad_y[4] = 5;
    let e = err(&tx, &bad_y, &tx, &ty, 3, 2);
    assert!(matches!(e, EvalError::LabelOutOfRange { row: 4, label: 5, .. }));
    assert!(e.to_string().contains("num_classes = 2"));
    let mut bad_x = tx.clone();
    bad_x[3 * 3 + 2] = f32::INFINITY;
    assert_eq!(err(&tx, &ty, &bad_x, &ty, 3, 2), EvalError::NonFinite { what: "test split", row: 3, col: 2 });
    for bad in [
        ProbeConfig { epochs: 0, ..quick() },
        ProbeConfig { batch_size: 0, ..quick() },
        ProbeConfig { lr: f32::NAN, ..quick() },
        ProbeConfig { momentum: 1.0, ..quick() },
        ProbeConfig { weight_decay: -1.0, ..quick() },
    ] {
        assert!(matches!(probe(&tx, &ty, &tx, &ty, 3, 2, &bad), Err(EvalError::BadConfig(_))));
    }
}

#[test]
fn accuracy_counts_matches() {
    assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 0, 3, 0]), Ok(0.5));
    assert!(matches!(accuracy(&[1], &[1, 2]), Err(EvalError::LengthMismatch { .. })));
    assert!(matches!(accuracy(&[], &[]), Err(EvalError::Empty { .. })));
}

#[test]
fn purity_hand_computed() {
    // Clusters: {0,0,1} -> 2, {1,1,1} -> 3, {2,0} -> 1 majority hits, out of 8.
    let assign = [0, 0, 0, 1, 1, 1, 2, 2];
    let labels = [0, 0, 1, 1, 1, 1, 2, 0];
    assert_eq!(purity(&assign, &labels), Ok(0.75));
    assert_eq!(purity(&[5, 5, 9], &[1, 1, 1]), Ok(1.0));
}

#[test]
fn nmi_fixtures() {
    // Identical partitions under renamed ids.
    let a = [0, 0, 1, 1, 2, 2, 2];
    let b = [7, 7, 3, 3, 9, 9, 9];
    assert!((nmi(&a, &b).unwrap() - 1.0).abs() < 1e-12);
    // Independent: every (cluster, label) pair occurs equally often, so MI = 0.
    let a: Vec<u32> = (0..64).map(|i| i % 4).collect();
    let b: Vec<u32> = (0..64).map(|i| (i / 4) % 4).collect();
    assert!(nmi(&a, &b).unwrap().abs() < 1e-12);
    // Both sides a single group: scikit-learn defines this as 1.
    assert_eq!(nmi(&[3, 3], &[1, 1]), Ok(1.0));
    // Value from scikit-learn 1.9.1:
    // normalized_mutual_info_score([1,1,0,0,0,2,2,2,2,1,5,5], [0,0,0,1,1,1,2,2,2,3,3,7])
    let a = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 7];
    let b = [1, 1, 0, 0, 0, 2, 2, 2, 2, 1, 5, 5];
    const SKLEARN_NMI: f64 = 0.6366301573370361;
    assert!((nmi(&a, &b).unwrap() - SKLEARN_NMI).abs() < 1e-12);
    assert!((nmi(&b, &a).unwrap() - SKLEARN_NMI).abs() < 1e-12);
    assert!(matches!(nmi(&a, &b[1..]), Err(EvalError::LengthMismatch { .. })));
}
