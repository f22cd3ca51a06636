//! The VOC07 linear-SVM protocol of Goyal et al. (2019) for multi-label targets: per class a
//! one-vs-rest linear SVM with squared hinge loss (liblinear's L2-loss SVM, bias as a constant
//! feature) on standardised frozen features; the cost C chosen per class from a grid by k-fold
//! cross-validation on the train split (highest mean fold AP, the smaller C on ties); refitted
//! on the whole train split with that C and scored on the test split by AP; mAP is the mean
//! over classes with a positive example in both splits (a class without a training positive
//! gets no classifier, so no AP).
//!
//! The features are standardised once, with the whole train split's statistics, before the
//! folds are cut: each fold's held-out rows share in the mean and spread its classifiers see.
//! This touches only the choice of C; the test split never shares in any statistic.
//!
//! Where this departs from that benchmark's code (`tools/svm` of fair_self_supervision_benchmark,
//! read 2026-12-07): it scales each row to unit L2 norm instead of standardising columns, weights
//! positives 2:1 (`class_weight`), fits to tol 1e-4 within 2,000 passes (here `tol` and `max_iter`
//! are the stage's, looser by default), picks C from a wider grid (0.01, 0.1 and 2^-4 .. 2^-19;
//! the folds, 3, are the same), and scores the test split with VOC's interpolated AP (the running
//! maximum of precision) where this takes the exact AP. Every method of a study is probed the
//! same way, so paired differences compare like with like; absolute mAP is not that benchmark's.
//! The scaling, the weight and the AP are settings ([`Scaling::UnitNorm`], `positive_weight`,
//! [`ApKind::Interpolated`]) and the grid is `costs`, so a study can probe as the benchmark does;
//! the defaults are cfrun's.
//!
//! The solver is dual coordinate descent (Hsieh et al. 2008, Alg. 1), visiting examples in a
//! seeded order each pass and stopping when the largest projected gradient falls below `tol`.
//! Its margins are lane-summed dot products ([`dot`]): a sequential f32 sum waited on every add.
//! Classes run in parallel but each is sequential, so results do not depend on the threads.

use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::ap::{average_precision, mean_ap, ApKind};
use super::standardize::Standardizer;
use super::EvalError;
use crate::linalg::dot;
use crate::rng::stream as rng_for;

/// Settings of the one-vs-rest probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvrConfig {
    /// Candidate costs C (the weight of the hinge term against `||w||^2 / 2`).
    pub costs: Vec<f64>,
    /// Cross-validation folds (>= 2).
    pub folds: usize,
    /// Most passes of the solver.
    pub max_iter: usize,
    /// Stop when every projected gradient is below this.
    pub tol: f64,
    /// Seed of the fold split and the visiting orders.
    pub seed: u64,
    /// How the features are put on one scale before any fit.
    pub scaling: Scaling,
    /// The cost of a positive example is `positive_weight` times C (the benchmark's 2:1).
    pub positive_weight: f64,
    /// The AP the test and train splits are scored with (cross-validation always takes the
    /// exact AP, as the benchmark's `cross_val_score` does).
    pub ap: ApKind,
}

/// How a multi-label probe scales its features.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Each column to mean 0 and spread 1 with the train split's statistics.
    #[default]
    Standardize,
    /// Each row to unit L2 norm, `x / (||x|| + 1e-5)` (Goyal et al.'s benchmark code): no
    /// statistic at all, so no split shares in another's.
    UnitNorm,
}

impl Scaling {
    /// True for the default, `standardize`.
    pub fn is_standardize(&self) -> bool {
        *self == Scaling::Standardize
    }
}

/// What the probe measured; APs are fractions in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvrResult {
    /// Mean of `test_ap` over the classes that have one.
    pub map: f64,
    /// Test AP per class (`None`: no positive test example, or none in train to fit on).
    pub test_ap: Vec<Option<f64>>,
    /// Train-split AP per class of the refitted classifier.
    pub train_ap: Vec<Option<f64>>,
    /// The chosen cost per class.
    pub cost: Vec<f64>,
}

/// Scores of rows `rows` of `x` under `(w, b)`.
fn scores(x: &[f32], d: usize, rows: impl Iterator<Item = usize>, w: &[f32], b: f32) -> Vec<f32> {
    rows.map(|r| dot(&x[r * d..(r + 1) * d], w) as f32 + b).collect()
}

/// L2-regularised L2-loss SVM on rows `rows` of scaled `x` with labels `y` (+-1 per row).
fn fit_svm(x: &[f32], d: usize, rows: &[usize], y: &[f32], cost: f64, cfg: &OvrConfig, stream: u64) -> (Vec<f32>, f32) {
    // The squared hinge's dual adds 1 / (2 C_i) to each example's diagonal, C_i its own cost.
    let (diag_neg, diag_pos) = ((0.5 / cost) as f32, (0.5 / (cost * cfg.positive_weight)) as f32);
    let diag: Vec<f32> = y.iter().map(|&v| if v > 0.0 { diag_pos } else { diag_neg }).collect();
    let mut w = vec![0f32; d];
    let mut b = 0f32;
    let mut alpha = vec![0f32; rows.len()];
    let q: Vec<f32> = rows
        .iter()
        .zip(&diag)
        .map(|(&r, &diag)| dot(&x[r * d..(r + 1) * d], &x[r * d..(r + 1) * d]) as f32 + 1.0 + diag)
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = rng_for(cfg.seed, "ovr", stream);
    for _ in 0..cfg.max_iter {
        order.shuffle(&mut rng);
        let mut max_pg = 0f32;
        for &i in &order {
            let xi = &x[rows[i] * d..(rows[i] + 1) * d];
            let margin = dot(xi, &w) as f32 + b;
            let g = y[i] * margin - 1.0 + diag[i] * alpha[i];
            let pg = if alpha[i] == 0.0 { g.min(0.0) } else { g };
            max_pg = max_pg.max(pg.abs());
            if pg != 0.0 {
                let new = (alpha[i] - g / q[i]).max(0.0);
                let step = (new - alpha[i]) * y[i];
                alpha[i] = new;
                w.iter_mut().zip(xi).for_each(|(w, v)| *w += step * v);
                b += step;
            }
        }
        if f64::from(max_pg) < cfg.tol {
            break;
        }
    }
    (w, b)
}

/// Cross-validated cost, then the refit; returns (cost, test AP, train AP).
#[allow(clippy::too_many_arguments)] // both splits, their labels and the folds: all per-class inputs
fn one_class(
    xtr: &[f32],
    xte: &[f32],
    d: usize,
    ytr: &[f32],
    yte: &[bool],
    folds: &[usize],
    class: usize,
    cfg: &OvrConfig,
) -> (f64, Option<f64>, Option<f64>) {
    let n = ytr.len();
    let mut best = (f64::NEG_INFINITY, cfg.costs[0]);
    for (ci, &cost) in cfg.costs.iter().enumerate() {
        let mut total = 0.0;
        for f in 0..cfg.folds {
            let fit_rows: Vec<usize> = (0..n).filter(|&r| folds[r] != f).collect();
            let held: Vec<usize> = (0..n).filter(|&r| folds[r] == f).collect();
            let y: Vec<f32> = fit_rows.iter().map(|&r| ytr[r]).collect();
            let stream = ((class * cfg.costs.len() + ci) * (cfg.folds + 1) + f) as u64;
            let (w, b) = fit_svm(xtr, d, &fit_rows, &y, cost, cfg, stream);
            let s = scores(xtr, d, held.iter().copied(), &w, b);
            let truth: Vec<bool> = held.iter().map(|&r| ytr[r] > 0.0).collect();
            total += average_precision(&s, &truth).unwrap_or(0.0);
        }
        let mean = total / cfg.folds as f64;
        // On a tie the smaller cost, the stronger regularisation, whatever the grid's order.
        if mean > best.0 || (mean == best.0 && cost < best.1) {
            best = (mean, cost);
        }
    }
    let all: Vec<usize> = (0..n).collect();
    let stream = ((class + 1) * cfg.costs.len() * (cfg.folds + 1)) as u64 + (1 << 32);
    let (w, b) = fit_svm(xtr, d, &all, ytr, best.1, cfg, stream);
    let train_truth: Vec<bool> = ytr.iter().map(|&v| v > 0.0).collect();
    let train_ap = cfg.ap.of(&scores(xtr, d, 0..n, &w, b), &train_truth);
    let test_ap = cfg.ap.of(&scores(xte, d, 0..yte.len(), &w, b), yte);
    (best.1, test_ap, train_ap)
}

/// Runs the protocol on row-major `train`/`test` features (`d` columns) and multi-hot labels
/// (`num_classes` 0/1 bytes per row).
pub fn ovr_map(
    train: &[f32],
    train_hot: &[u8],
    test: &[f32],
    test_hot: &[u8],
    d: usize,
    num_classes: usize,
    cfg: &OvrConfig,
) -> Result<OvrResult, EvalError> {
    if d == 0 {
        return Err(EvalError::ZeroDimension);
    }
    let (ntr, nte) = (train.len() / d, test.len() / d);
    if ntr == 0 || nte == 0 {
        return Err(EvalError::Empty { what: if ntr == 0 { "train split" } else { "test split" } });
    }
    if train_hot.len() != ntr * num_classes {
        return Err(EvalError::LengthMismatch {
            what: "train labels vs rows",
            left: train_hot.len() / num_classes.max(1),
            right: ntr,
        });
    }
    if test_hot.len() != nte * num_classes {
        return Err(EvalError::LengthMismatch {
            what: "test labels vs rows",
            left: test_hot.len() / num_classes.max(1),
            right: nte,
        });
    }
    if cfg.costs.is_empty()
        || cfg.costs.iter().any(|c| !(*c > 0.0 && c.is_finite()))
        || cfg.folds < 2
        || cfg.folds > ntr
    {
        return Err(EvalError::BadConfig(format!(
            "costs must be positive and folds in 2..={ntr}; got costs {:?} and folds {}",
            cfg.costs, cfg.folds
        )));
    }
    if !(cfg.positive_weight > 0.0 && cfg.positive_weight.is_finite()) {
        return Err(EvalError::BadConfig(format!("positive_weight must be positive, got {}", cfg.positive_weight)));
    }
    let (xtr, xte) = match cfg.scaling {
        Scaling::Standardize => {
            let std = Standardizer::fit(train, d);
            let (mut xtr, mut xte) = (Vec::new(), Vec::new());
            std.gather(train, &(0..ntr).collect::<Vec<_>>(), &mut xtr);
            std.gather(test, &(0..nte).collect::<Vec<_>>(), &mut xte);
            (xtr, xte)
        }
        Scaling::UnitNorm => (unit_rows(train, d), unit_rows(test, d)),
    };
    let mut order: Vec<usize> = (0..ntr).collect();
    order.shuffle(&mut rng_for(cfg.seed, "ovr-folds", 0));
    let mut folds = vec![0usize; ntr];
    for (pos, &r) in order.iter().enumerate() {
        folds[r] = pos % cfg.folds;
    }
    let per_class: Vec<(f64, Option<f64>, Option<f64>)> = (0..num_classes)
        .into_par_iter()
        .map(|k| {
            let ytr: Vec<f32> = (0..ntr).map(|r| if train_hot[r * num_classes + k] > 0 { 1.0 } else { -1.0 }).collect();
            let yte: Vec<bool> = (0..nte).map(|r| test_hot[r * num_classes + k] > 0).collect();
            if !ytr.iter().any(|&v| v > 0.0) {
                return (f64::NAN, None, None);
            }
            one_class(&xtr, &xte, d, &ytr, &yte, &folds, k, cfg)
        })
        .collect();
    let test_ap: Vec<Option<f64>> = per_class.iter().map(|c| c.1).collect();
    let (map, _) = mean_ap(&test_ap).ok_or(EvalError::Empty { what: "set of test positives" })?;
    Ok(OvrResult {
        map,
        train_ap: per_class.iter().map(|c| c.2).collect(),
        cost: per_class.iter().map(|c| c.0).collect(),
        test_ap,
    })
}

/// Each row of `x` (`d` columns) divided by its L2 norm plus 1e-5 (the benchmark's guard against
/// a zero row), the norm summed in f64.
fn unit_rows(x: &[f32], d: usize) -> Vec<f32> {
    x.chunks_exact(d)
        .flat_map(|row| {
            let norm = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
            let scale = 1.0 / (norm + 1e-5);
            row.iter().map(move |&v| (f64::from(v) * scale) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OvrConfig {
        OvrConfig {
            costs: vec![0.01, 1.0],
            folds: 3,
            max_iter: 100,
            tol: 1e-3,
            seed: 0,
            scaling: Scaling::Standardize,
            positive_weight: 1.0,
            ap: ApKind::Exact,
        }
    }

    #[test]
    fn separable_classes_reach_full_map_and_noise_does_not() {
        // Class k is present iff feature k is high; feature 3 is noise.
        let mut rng = rng_for(5, "t", 0);
        let (n, d, k) = (120, 4, 3);
        let mut x = Vec::new();
        let mut hot = Vec::new();
        for _ in 0..n {
            let present: Vec<bool> = (0..k).map(|_| rand::Rng::random_bool(&mut rng, 0.4)).collect();
            for &p in &present {
                x.push(if p { 2.0 } else { 0.0 } + rand::Rng::random_range(&mut rng, -0.5f32..0.5));
            }
            x.push(rand::Rng::random_range(&mut rng, -1f32..1.0));
            hot.extend(present.iter().map(|&p| u8::from(p)));
        }
        let (tr, te) = (80 * d, 80 * k);
        let r = ovr_map(&x[..tr], &hot[..te], &x[tr..], &hot[te..], d, k, &cfg()).unwrap();
        assert!((r.map - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r, ovr_map(&x[..tr], &hot[..te], &x[tr..], &hot[te..], d, k, &cfg()).unwrap(), "seeded");
        // Labels unrelated to the features: AP near the positive rate, far from 1.
        let shuffled: Vec<u8> = hot.chunks(k).map(|c| c[0]).flat_map(|v| [v, 1 - v, v]).collect();
        let noise: Vec<f32> = x.chunks(d).flat_map(|r| [r[3], r[3] * 0.5, -r[3], r[3]]).collect();
        let r = ovr_map(&noise[..tr], &shuffled[..te], &noise[tr..], &shuffled[te..], d, k, &cfg()).unwrap();
        assert!(r.map < 0.85, "{r:?}");
    }

    /// Classes every cost separates perfectly tie at a fold AP of 1: the smaller cost is chosen
    /// however the grid is ordered (the first listed was, so a descending grid chose the larger).
    #[test]
    fn a_tie_chooses_the_smaller_cost_in_any_order() {
        let (n, k) = (60, 2);
        let x: Vec<f32> = (0..n).flat_map(|r| if r % 2 == 0 { [3.0, 0.0] } else { [0.0, 3.0] }).collect();
        let hot: Vec<u8> = (0..n).flat_map(|r| if r % 2 == 0 { [1, 0] } else { [0, 1] }).collect();
        for costs in [vec![10.0, 0.01], vec![0.01, 10.0]] {
            let c = OvrConfig { costs, ..cfg() };
            let r = ovr_map(&x[..40 * 2], &hot[..40 * k], &x[40 * 2..], &hot[40 * k..], 2, k, &c).unwrap();
            assert_eq!(r.cost, vec![0.01; k], "{:?}", c.costs);
        }
    }

    /// A positive weighted 2:1 is a positive counted twice: the squared hinge sums `C_i xi_i^2`,
    /// so the fit with weights is the fit with every positive duplicated.
    #[test]
    fn a_positive_weight_of_two_fits_as_each_positive_twice() {
        let mut rng = rng_for(9, "t", 0);
        let (n, d) = (60, 3);
        let x: Vec<f32> = (0..n * d).map(|_| rand::Rng::random_range(&mut rng, -1f32..1.0)).collect();
        let y: Vec<f32> = (0..n).map(|r| if x[r * d] + 0.3 * x[r * d + 1] > 0.4 { 1.0 } else { -1.0 }).collect();
        let tight = OvrConfig { max_iter: 5_000, tol: 1e-7, ..cfg() };
        let weighted = OvrConfig { positive_weight: 2.0, ..tight.clone() };
        let rows: Vec<usize> = (0..n).collect();
        let (w2, b2) = fit_svm(&x, d, &rows, &y, 0.5, &weighted, 0);
        let twice: Vec<usize> = (0..n).chain((0..n).filter(|&r| y[r] > 0.0)).collect();
        let y_twice: Vec<f32> = twice.iter().map(|&r| y[r]).collect();
        let (wd, bd) = fit_svm(&x, d, &twice, &y_twice, 0.5, &tight, 0);
        for (a, b) in w2.iter().chain([&b2]).zip(wd.iter().chain([&bd])) {
            assert!((a - b).abs() < 1e-3, "{w2:?} {b2} against {wd:?} {bd}");
        }
        let (w1, b1) = fit_svm(&x, d, &rows, &y, 0.5, &tight, 0);
        assert!(w1.iter().zip(&w2).any(|(a, b)| (a - b).abs() > 1e-2) || (b1 - b2).abs() > 1e-2, "the weight matters");
    }

    /// Under `unit_norm` a row scaled by any positive factor is the same row: the probe's result
    /// does not move, where standardised columns would.
    #[test]
    fn unit_norm_rows_ignore_each_rows_scale() {
        let (n, d, k) = (90, 3, 2);
        let mut rng = rng_for(4, "t", 0);
        let x: Vec<f32> = (0..n * d).map(|_| rand::Rng::random_range(&mut rng, -1f32..1.0)).collect();
        // Not linearly separable, so that the fits' rankings, not only their signs, matter.
        let hot: Vec<u8> =
            x.chunks(d).flat_map(|r| [u8::from(r[0] > 0.2 * r[1]), u8::from(r[1] * r[2] > 0.1)]).collect();
        let scaled: Vec<f32> =
            x.chunks(d).enumerate().flat_map(|(i, r)| r.iter().map(move |v| v * (1 + i % 7) as f32)).collect();
        let c = OvrConfig { scaling: Scaling::UnitNorm, ..cfg() };
        let run = |x: &[f32], c: &OvrConfig| {
            ovr_map(&x[..60 * d], &hot[..60 * k], &x[60 * d..], &hot[60 * k..], d, k, c).unwrap()
        };
        let (a, b) = (run(&x, &c), run(&scaled, &c));
        assert!((a.map - b.map).abs() < 1e-6, "{a:?} {b:?}");
        assert!(a.map < 0.99, "a ranking to move: {a:?}");
        assert_ne!(run(&x, &cfg()).train_ap, run(&scaled, &cfg()).train_ap, "standardised columns see the scale");
        let unit = unit_rows(&[3.0, 4.0, 0.0, 0.0], 2);
        assert!((unit[0] - 0.6).abs() < 1e-5 && (unit[1] - 0.8).abs() < 1e-5 && unit[2..] == [0.0, 0.0], "{unit:?}");
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad = OvrConfig { folds: 1, ..cfg() };
        assert!(matches!(ovr_map(&[0.0; 4], &[1, 0], &[0.0; 2], &[1], 2, 1, &bad), Err(EvalError::BadConfig(_))));
        let bad = OvrConfig { positive_weight: 0.0, ..cfg() };
        assert!(matches!(ovr_map(&[0.0; 4], &[1, 0], &[0.0; 2], &[1], 2, 1, &bad), Err(EvalError::BadConfig(_))));
    }
}
