//! Limited-memory BFGS with a backtracking (Armijo) line search, for smooth convex objectives such
//! as the probe's L2-regularised softmax regression. The iterate and its history are f64; the
//! objective may compute in f32 inside, so the stopping rules allow for its rounding.

use std::collections::VecDeque;

/// Settings of one minimisation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Most iterations (each one accepted step).
    pub max_iter: usize,
    /// Stop once every gradient entry is at most this in magnitude (scipy's `pgtol`).
    pub tol: f64,
    /// Correction pairs kept (scipy's default is 10).
    pub memory: usize,
}

/// Why the minimisation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Every gradient entry within `tol`.
    Gradient,
    /// `max_iter` steps taken.
    MaxIter,
    /// No step along the search direction lowered the objective, or the relative decrease fell
    /// below what the objective's rounding can resolve: the optimum to working precision.
    NoProgress,
    /// The objective or its gradient at the starting point is NaN or infinite: nothing to minimise.
    NotFinite,
}

/// What a minimisation did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    /// Accepted steps.
    pub iterations: usize,
    /// Objective evaluations, line-search trials included.
    pub evaluations: usize,
    /// Why it stopped.
    pub stop: Stop,
}

/// Sufficient-decrease constant of the Armijo test.
const ARMIJO: f64 = 1e-4;
/// Line-search trials before giving up on a direction.
const MAX_TRIALS: usize = 30;
/// A relative decrease below this ends the run: an f32 objective summed in f64 is resolved to
/// about this, so smaller "decreases" are rounding.
const REL_DECREASE: f64 = 1e-9;

/// Minimises `f` from `x` (updated in place). `f(x, grad)` returns the objective and writes its
/// gradient; `on_iter(iteration, value)` runs after each accepted step (iteration counts from 1).
pub(super) fn minimize(
    x: &mut [f64],
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    settings: &Settings,
    on_iter: &mut dyn FnMut(usize, f64),
) -> Outcome {
    let n = x.len();
    let mut g = vec![0f64; n];
    let mut fx = f(x, &mut g);
    let mut evaluations = 1;
    let mut history: VecDeque<Pair> = VecDeque::with_capacity(settings.memory);
    let (mut dir, mut x_new, mut g_new) = (vec![0f64; n], vec![0f64; n], vec![0f64; n]);
    let outcome = |iterations, evaluations, stop| Outcome { iterations, evaluations, stop };
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return outcome(0, evaluations, Stop::NotFinite);
    }
    for it in 0..settings.max_iter {
        if max_abs(&g) <= settings.tol {
            return outcome(it, evaluations, Stop::Gradient);
        }
        search_direction(&g, &history, &mut dir);
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // The history has gone stale (only rounding can do this on a convex objective): restart.
            history.clear();
            dir.iter_mut().zip(&g).for_each(|(d, &gi)| *d = -gi);
            slope = dot(&g, &dir);
        }
        // The first step is scaled to a unit move (the history has no curvature yet); later ones
        // start at the quasi-Newton step.
        let mut step = if history.is_empty() { (1.0 / norm(&g)).min(1.0) } else { 1.0 };
        let mut accepted = None;
        for _ in 0..MAX_TRIALS {
            x_new.iter_mut().zip(x.iter()).zip(&dir).for_each(|((xn, &xi), &di)| *xn = xi + step * di);
            let f_new = f(&x_new, &mut g_new);
            evaluations += 1;
            if f_new.is_finite() && f_new <= fx + ARMIJO * step * slope {
                accepted = Some(f_new);
                break;
            }
            // Minimum of the quadratic through f(0), f'(0) and f(step), kept within [0.1, 0.5] of the step.
            let curv = if f_new.is_finite() { f_new - fx - slope * step } else { f64::INFINITY };
            step *= (-slope * step / (2.0 * curv)).clamp(0.1, 0.5);
        }
        let Some(f_new) = accepted else {
            return outcome(it, evaluations, Stop::NoProgress);
        };
        let pair = Pair::new(&x_new, x, &g_new, &g);
        if pair.sy > f64::EPSILON * dot(&pair.y, &pair.y) {
            if history.len() == settings.memory {
                history.pop_front();
            }
            history.push_back(pair);
        }
        x.copy_from_slice(&x_new);
        std::mem::swap(&mut g, &mut g_new);
        let decrease = fx - f_new;
        fx = f_new;
        on_iter(it + 1, fx);
        if decrease <= REL_DECREASE * fx.abs().max(1.0) {
            return outcome(it + 1, evaluations, Stop::NoProgress);
        }
    }
    let stop = if max_abs(&g) <= settings.tol { Stop::Gradient } else { Stop::MaxIter };
    outcome(settings.max_iter, evaluations, stop)
}

/// One correction pair: the step `s`, the gradient change `y` and their inner product.
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    sy: f64,
}

impl Pair {
    fn new(x_new: &[f64], x: &[f64], g_new: &[f64], g: &[f64]) -> Pair {
        let s: Vec<f64> = x_new.iter().zip(x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        Pair { s, y, sy }
    }
}

/// `dir = -H g` by the two-loop recursion, `H` the inverse-Hessian estimate of `history` scaled
/// by the newest pair's `s.y / y.y`.
fn search_direction(g: &[f64], history: &VecDeque<Pair>, dir: &mut [f64]) {
    dir.copy_from_slice(g);
    let mut alpha = vec![0f64; history.len()];
    for (a, p) in alpha.iter_mut().zip(history).rev() {
        *a = dot(&p.s, dir) / p.sy;
        dir.iter_mut().zip(&p.y).for_each(|(d, &yi)| *d -= *a * yi);
    }
    if let Some(p) = history.back() {
        let gamma = p.sy / dot(&p.y, &p.y);
        dir.iter_mut().for_each(|d| *d *= gamma);
    }
    for (a, p) in alpha.iter().zip(history) {
        let beta = dot(&p.y, dir) / p.sy;
        dir.iter_mut().zip(&p.s).for_each(|(d, &si)| *d += (a - beta) * si);
    }
    dir.iter_mut().for_each(|d| *d = -*d);
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn max_abs(a: &[f64]) -> f64 {
    // NaN propagates (f64::max would skip it), so a NaN gradient never reads as converged.
    a.iter().fold(0.0, |m, v| if m.is_nan() || v.is_nan() { f64::NAN } else { m.max(v.abs()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_iter: usize) -> Settings {
        Settings { max_iter, tol: 1e-6, memory: 10 }
    }

    /// A NaN objective or gradient at the start stops at once as such; `f64::max` skipped NaN,
    /// so a NaN gradient once read as converged (every entry "within" tol).
    #[test]
    fn a_start_that_is_not_finite_is_said_so() {
        for bad in [f64::NAN, f64::INFINITY] {
            let mut f = |x: &[f64], g: &mut [f64]| {
                g.iter_mut().zip(x).for_each(|(g, &x)| *g = x * bad);
                x.iter().map(|v| v * v * bad).sum()
            };
            let out = minimize(&mut [1.0, 2.0], &mut f, &settings(10), &mut |_, _| {});
            assert_eq!((out.stop, out.iterations), (Stop::NotFinite, 0), "{bad}");
        }
        assert!(max_abs(&[1.0, f64::NAN, 2.0]).is_nan());
    }

    #[test]
    fn minimises_an_ill_conditioned_quadratic() {
        // f = sum_i k_i (x_i - i)^2 / 2 with curvatures spread over two decades. scipy 1.17's
        // L-BFGS-B (maxcor 10, gtol 1e-6) takes 60 iterations here; plain gradient descent would
        // take about a thousand.
        let k: Vec<f64> = (0..20).map(|i| 10f64.powf(i as f64 / 10.0)).collect();
        let mut f = |x: &[f64], g: &mut [f64]| {
            let mut v = 0.0;
            for (i, ((&xi, gi), &ki)) in x.iter().zip(g.iter_mut()).zip(&k).enumerate() {
                *gi = ki * (xi - i as f64);
                v += 0.5 * ki * (xi - i as f64).powi(2);
            }
            v
        };
        let mut x = vec![0f64; 20];
        let out = minimize(&mut x, &mut f, &settings(200), &mut |_, _| {});
        // It ends on the relative-decrease rule (f is near 0, where that rule is absolute).
        assert_ne!(out.stop, Stop::MaxIter, "{out:?}");
        assert!(out.iterations < 80, "{out:?}");
        for (i, xi) in x.iter().enumerate() {
            assert!((xi - i as f64).abs() < 1e-4, "x[{i}] = {xi}");
        }
    }

    #[test]
    fn minimises_rosenbrock_and_reports_every_step() {
        // Non-convex, curved valley: the line search and the curvature check both matter here.
        let mut f = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let mut x = vec![-1.2, 1.0];
        let mut values = Vec::new();
        let out = minimize(&mut x, &mut f, &settings(500), &mut |i, v| values.push((i, v)));
        assert!((x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4, "{x:?} after {out:?}");
        assert_eq!(values.len(), out.iterations);
        assert!(values.iter().enumerate().all(|(k, &(i, _))| i == k + 1));
        assert!(values.windows(2).all(|w| w[1].1 < w[0].1), "every accepted step lowers the objective");
    }

    #[test]
    fn stops_at_max_iter() {
        let mut f = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 3.0) * 1e3;
            g[1] = 2.0 * (x[1] + 1.0);
            1e3 * (x[0] - 3.0).powi(2) + (x[1] + 1.0).powi(2)
        };
        let mut x = vec![0.0, 0.0];
        let out = minimize(&mut x, &mut f, &settings(2), &mut |_, _| {});
        assert_eq!((out.iterations, out.stop), (2, Stop::MaxIter));
    }
}
