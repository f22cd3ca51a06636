//! Student's t distribution: the two-sided 95 % quantile used for confidence intervals of a mean
//! over a few replicates, computed from the regularised incomplete beta function (no table, so any
//! number of degrees of freedom works and the value is exact to ~1e-10).

/// `t(q, df)`: the value below which a Student t variable with `df` degrees of freedom falls with
/// probability `q` (for `q` in (0.5, 1)); `None` when `df` is 0 or `q` is out of range.
pub fn quantile(q: f64, df: f64) -> Option<f64> {
    if !(df > 0.0 && df.is_finite() && q > 0.5 && q < 1.0) {
        return None;
    }
    // A claims stage asks for the same few quantiles once per case, thousands of times in a
    // large sweep; the bisection costs about a hundred incomplete-beta evaluations. The memo
    // returns the very value computed, so results do not change.
    thread_local! {
        static MEMO: std::cell::RefCell<std::collections::HashMap<(u64, u64), Option<f64>>> = Default::default();
    }
    let at = (q.to_bits(), df.to_bits());
    if let Some(known) = MEMO.with(|m| m.borrow().get(&at).copied()) {
        return known;
    }
    let found = bisect(q, df);
    MEMO.with(|m| m.borrow_mut().insert(at, found));
    found
}

/// [`quantile`] by bisection on the CDF.
fn bisect(q: f64, df: f64) -> Option<f64> {
    // The CDF is increasing in t; bisect on [0, hi] after doubling hi past the quantile.
    let mut hi = 1.0;
    while cdf(hi, df) < q {
        hi *= 2.0;
        if hi > 1e12 {
            return None;
        }
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid, df) < q {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 * hi.max(1.0) {
            break;
        }
    }
    Some(0.5 * (lo + hi))
}

/// P(T <= t) for Student's t with `df` degrees of freedom.
pub fn cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(x, 0.5 * df, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The regularised incomplete beta function I_x(a, b).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // The continued fraction converges fast only on one side of the mean; use the symmetry
    // I_x(a, b) = 1 - I_{1-x}(b, a) on the other.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction of the incomplete beta function, evaluated by the modified Lentz method.
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step.
        let num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + num * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + num / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        // Odd step.
        let num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + num * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + num / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, 9 terms; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, &c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published two-sided 95 % critical values (e.g. any statistics table; `scipy.stats.t.ppf(0.975, df)`).
    #[test]
    fn quantiles_match_published_values() {
        for (df, want) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (3.0, 3.182_446_305),
            (4.0, 2.776_445_105),
            (9.0, 2.262_157_163),
            (29.0, 2.045_229_642),
            (1000.0, 1.962_339_081),
        ] {
            let got = quantile(0.975, df).unwrap();
            assert!((got - want).abs() < 1e-7, "df {df}: {got} vs {want}");
        }
    }

    #[test]
    fn cdf_is_symmetric_and_centred() {
        assert!((cdf(0.0, 3.0) - 0.5).abs() < 1e-14);
        assert!((cdf(1.3, 5.0) + cdf(-1.3, 5.0) - 1.0).abs() < 1e-12);
        // df = 1 is the Cauchy distribution: P(T <= 1) = 3/4.
        assert!((cdf(1.0, 1.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn bad_arguments_have_no_quantile() {
        assert_eq!(quantile(0.975, 0.0), None);
        assert_eq!(quantile(0.4, 3.0), None);
        assert_eq!(quantile(1.0, 3.0), None);
    }
}
