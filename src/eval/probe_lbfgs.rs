//! The linear probe by full-batch L-BFGS: the SGD probe's standardised features and objective,
//! `(1/n) sum CE + (wd/2) ||W||^2` with the bias unpenalised, minimised until every gradient entry
//! is within `tol` (scikit-learn's lbfgs LogisticRegression at `C = 1/(wd n)` solves the same
//! problem, so this is the probe to use when the converged optimum is what is wanted).
//!
//! Each evaluation passes over the train split in a fixed partition of row groups, independent of
//! the thread count, and combines the groups' partial gradients in order, so results are
//! bit-identical however many threads run it.

use gemm::Parallelism;
use rayon::prelude::*;

use super::lbfgs::{self, Outcome, Settings};
use super::probe::{check_inputs, check_loss, result, score};
use super::softmax::Linear;
use super::standardize::Standardizer;
use super::{EvalError, ProbeConfig, ProbeData, ProbeResult};
use crate::linalg::{matmul, MatRef};

/// Row groups of the train split per evaluation (each a task with its own partial gradient, so
/// this also bounds the extra memory to this many `d x c` matrices).
const GROUPS: usize = 16;
/// Rows standardised and multiplied at a time within a group.
const CHUNK_ROWS: usize = 512;
/// Correction pairs kept, scipy's default.
const MEMORY: usize = 10;

/// What the solver holds at once beside the data: copies of the `d x c` weights (the model, its
/// gradient, each correction pair, each group's partial gradient) and rows of logits (a chunk
/// per group), for `rows` train rows.
pub(super) fn held_at_once(rows: usize) -> (u64, usize) {
    ((2 * MEMORY + GROUPS + 4) as u64, rows.min(GROUPS * CHUNK_ROWS))
}

/// The full-batch objective over the standardised train split.
struct Objective<'a> {
    x: &'a [f32],
    y: &'a [u32],
    st: &'a Standardizer,
    model: Linear,
    weight_decay: f64,
    /// Mean cross-entropy (without the penalty) at the last evaluated point.
    last_xent: f64,
}

impl Objective<'_> {
    /// Loads the f64 iterate (`W` row-major, then `b`) into the f32 model.
    fn load(&mut self, p: &[f64]) {
        let dc = self.model.w.len();
        self.model.w.iter_mut().zip(&p[..dc]).for_each(|(w, &v)| *w = v as f32);
        self.model.b.iter_mut().zip(&p[dc..]).for_each(|(b, &v)| *b = v as f32);
    }

    /// The objective at `p`, its gradient written to `grad`.
    fn eval(&mut self, p: &[f64], grad: &mut [f64]) -> f64 {
        self.load(p);
        let (d, c, n) = (self.model.d, self.model.c, self.y.len());
        let groups = n.div_ceil(CHUNK_ROWS).min(GROUPS);
        let model = &self.model;
        let partials: Vec<(f64, Vec<f32>, Vec<f32>)> = (0..groups)
            .into_par_iter()
            .map(|gi| {
                let (r0, r1) = (gi * n / groups, (gi + 1) * n / groups);
                let (mut gw, mut gb) = (vec![0f32; d * c], vec![0f32; c]);
                let (mut idx, mut xb, mut g) = (Vec::new(), Vec::new(), vec![0f32; CHUNK_ROWS * c]);
                let mut loss = 0f64;
                for a in (r0..r1).step_by(CHUNK_ROWS) {
                    let b = (a + CHUNK_ROWS).min(r1);
                    idx.clear();
                    idx.extend(a..b);
                    self.st.gather(self.x, &idx, &mut xb);
                    let g = &mut g[..(b - a) * c];
                    loss += model.forward_xent(&xb, &self.y[a..b], g, 1.0 / n as f32);
                    // Columns of the chunk are rows of its transpose: stride 1 across them, d down.
                    let xt = MatRef::strided(&xb, d, b - a, 1, d);
                    matmul(&mut gw, xt, MatRef::row_major(g, b - a, c), 1.0, true, Parallelism::None);
                    for row in g.chunks_exact(c) {
                        gb.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
                    }
                }
                (loss, gw, gb)
            })
            .collect();
        grad.fill(0.0);
        let mut xent = 0f64;
        for (loss, gw, gb) in partials {
            xent += loss;
            grad.iter_mut().zip(gw.iter().chain(&gb)).for_each(|(s, &v)| *s += f64::from(v));
        }
        self.last_xent = xent / n as f64;
        let wd = self.weight_decay;
        let mut penalty = 0f64;
        for (gv, &w) in grad[..d * c].iter_mut().zip(&p[..d * c]) {
            *gv += wd * w;
            penalty += w * w;
        }
        self.last_xent + 0.5 * wd * penalty
    }
}

/// The probe by L-BFGS: at most `cfg.epochs` iterations, stopping early once every gradient entry
/// is within `cfg.tol`. `on_iter(iteration, mean_xent, model, standardizer)` runs after every
/// accepted step (iterations count from 0 here, like the SGD probe's epochs).
pub(super) fn lbfgs_probe(
    data: ProbeData,
    cfg: &ProbeConfig,
    on_iter: &mut dyn FnMut(usize, f64, &Linear, &Standardizer),
) -> Result<(ProbeResult, Outcome), EvalError> {
    let (n, m) = check_inputs(data, cfg)?;
    let ProbeData { train_x, train_y, test_x, test_y, d, num_classes: c } = data;
    let st = Standardizer::fit(train_x, d);
    let mut obj = Objective {
        x: train_x,
        y: train_y,
        st: &st,
        model: Linear::zeros(d, c),
        weight_decay: f64::from(cfg.weight_decay),
        last_xent: f64::NAN,
    };
    let mut p = vec![0f64; d * c + c];
    let mut xent_per_iter = Vec::new();
    let settings = Settings { max_iter: cfg.epochs, tol: f64::from(cfg.tol), memory: MEMORY };
    let outcome = {
        // The line search evaluates trial points; the accepted one is always the last evaluated,
        // so the model and cross-entropy it left behind are the accepted step's.
        let obj_cell = std::cell::RefCell::new(&mut obj);
        let mut f = |q: &[f64], g: &mut [f64]| obj_cell.borrow_mut().eval(q, g);
        let mut after = |it: usize, _value: f64| {
            let o = obj_cell.borrow();
            xent_per_iter.push(o.last_xent);
            tracing::debug!(iteration = it, loss = o.last_xent, "linear probe (L-BFGS) iteration");
            on_iter(it - 1, o.last_xent, &o.model, &st);
        };
        lbfgs::minimize(&mut p, &mut f, &settings, &mut after)
    };
    let Outcome { iterations, evaluations, stop } = outcome;
    tracing::debug!(iterations, evaluations, ?stop, "the L-BFGS probe stopped");
    if stop == lbfgs::Stop::NotFinite {
        return Err(EvalError::NotFiniteAtStart { loss: obj.last_xent });
    }
    for (i, &loss) in xent_per_iter.iter().enumerate() {
        check_loss(i, loss, cfg)?;
    }
    obj.load(&p);
    let train = score(&obj.model, &st, train_x, train_y);
    let test = score(&obj.model, &st, test_x, test_y);
    let capped = stop == lbfgs::Stop::MaxIter;
    Ok((ProbeResult { capped, ..result(&train, &test, n, m, c, xent_per_iter) }, outcome))
}

/// Train and test top-1 after every L-BFGS iteration of one run (for learning curves and the
/// benches' time-to-accuracy rule: a run capped at `k` iterations stops at exactly iterate `k`),
/// with the run's final result.
pub fn lbfgs_probe_path(data: ProbeData, cfg: &ProbeConfig) -> Result<(Vec<(f64, f64)>, ProbeResult), EvalError> {
    let ProbeData { train_x, train_y, test_x, test_y, num_classes: c, .. } = data;
    let mut path = Vec::new();
    let mut record = |_: usize, _: f64, model: &Linear, st: &Standardizer| {
        let train = score(model, st, train_x, train_y);
        let test = score(model, st, test_x, test_y);
        let r = result(&train, &test, train_y.len(), test_y.len(), c, Vec::new());
        path.push((r.train_top1, r.test_top1));
    };
    let (r, _) = lbfgs_probe(data, cfg, &mut record)?;
    Ok((path, r))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::eval::{linear_probe, ProbeSolver};

    /// `n` rows of `c` overlapping Gaussian classes in `d` dims: not separable, so the optimum is
    /// interior and the regularised objective has a unique minimiser.
    fn noisy(n: usize, d: usize, c: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
        let x = y
            .iter()
            .flat_map(|&l| (0..d).map(move |j| (j % c == l as usize) as u8))
            .map(|hot| f32::from(hot) * 1.5 + 3.0 + rng.random_range(-2.0f32..2.0))
            .collect();
        (x, y)
    }

    fn lbfgs(epochs: usize) -> ProbeConfig {
        ProbeConfig { solver: ProbeSolver::Lbfgs, epochs, weight_decay: 1e-2, ..ProbeConfig::default() }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // More rows than one chunk and one group, so the group partition and chunk loop are covered.
        let (d, c) = (5, 3);
        let (x, y) = noisy(1500, d, c, 1);
        let st = Standardizer::fit(&x, d);
        let mut obj =
            Objective { x: &x, y: &y, st: &st, model: Linear::zeros(d, c), weight_decay: 0.05, last_xent: 0.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p: Vec<f64> = (0..d * c + c).map(|_| rng.random_range(-0.5..0.5)).collect();
        let mut g = vec![0f64; p.len()];
        obj.eval(&p, &mut g);
        let mut scratch = vec![0f64; p.len()];
        for i in 0..p.len() {
            let h = 1e-2;
            let (mut up, mut down) = (p.clone(), p.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (obj.eval(&up, &mut scratch) - obj.eval(&down, &mut scratch)) / (2.0 * h);
            assert!((numeric - g[i]).abs() < 2e-3 * (1.0 + g[i].abs()), "entry {i}: {numeric} vs {}", g[i]);
        }
    }

    #[test]
    fn converges_to_a_stationary_point_that_long_sgd_approaches() {
        let (d, c) = (8, 4);
        let (tx, ty) = noisy(800, d, c, 3);
        let (vx, vy) = noisy(200, d, c, 4);
        let cfg = ProbeConfig { tol: 1e-5, ..lbfgs(500) };
        let (mut iters, mut best) = (0, None);
        let mut each = |_: usize, _: f64, m: &Linear, _: &Standardizer| {
            iters += 1;
            best = Some(m.w.iter().chain(&m.b).map(|&v| f64::from(v)).collect::<Vec<f64>>());
        };
        let data = ProbeData { train_x: &tx, train_y: &ty, test_x: &vx, test_y: &vy, d, num_classes: c };
        let (r, out) = lbfgs_probe(data, &cfg, &mut each).unwrap();
        assert_ne!(out.stop, lbfgs::Stop::MaxIter, "{out:?}");
        assert!(!r.capped);
        assert_eq!(iters, out.iterations);
        assert_eq!(r.loss_per_epoch.len(), out.iterations);
        // The converged weights, for the objective value and its gradient.
        let st = Standardizer::fit(&tx, d);
        let mut obj =
            Objective { x: &tx, y: &ty, st: &st, model: Linear::zeros(d, c), weight_decay: 1e-2, last_xent: 0.0 };
        let p = best.unwrap();
        let mut g = vec![0f64; p.len()];
        let f_lbfgs = obj.eval(&p, &mut g);
        assert!(g.iter().all(|v| v.abs() < 1e-4), "gradient at the optimum: {g:?}");
        // Long SGD on the same objective lands on (nearly) the same classifier.
        let sgd = ProbeConfig { epochs: 60, batch_size: 64, weight_decay: 1e-2, ..ProbeConfig::default() };
        let s = linear_probe(data, &sgd, &mut |_, _| {}).unwrap();
        assert!((s.train_top1 - r.train_top1).abs() < 0.02, "SGD {} vs L-BFGS {}", s.train_top1, r.train_top1);
        assert!(f_lbfgs.is_finite());
        assert!(*r.loss_per_epoch.last().unwrap() < r.loss_per_epoch[0]);
    }

    #[test]
    fn capped_runs_stop_at_the_path_iterate_and_are_bit_identical_across_pools() {
        let (d, c) = (70, 7);
        let (tx, ty) = noisy(1300, d, c, 5);
        let (vx, vy) = noisy(300, d, c, 6);
        let data = ProbeData { train_x: &tx, train_y: &ty, test_x: &vx, test_y: &vy, d, num_classes: c };
        let (path, full) = lbfgs_probe_path(data, &lbfgs(12)).unwrap();
        assert_eq!(path.len(), 12);
        let last = *path.last().unwrap();
        assert_eq!((full.train_top1, full.test_top1), last);
        let run = |threads: usize, epochs: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| linear_probe(data, &lbfgs(epochs), &mut |_, _| {}).unwrap())
        };
        let five = run(1, 5);
        assert_eq!((five.train_top1, five.test_top1), path[4], "a 5-iteration cap stops at iterate 5");
        assert!(five.capped, "stopped by its cap, which the stage warns of");
        let bits = |r: &ProbeResult| r.loss_per_epoch.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let (a, b) = (run(1, 12), run(3, 12));
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(a, b);
        assert_eq!(a, full);
        assert_eq!(bits(&five)[..], bits(&a)[..5]);
    }
}
