//! The summary of one cell over replicates: mean, sample standard deviation, n, and a 95 %
//! confidence interval for the mean (Student t with n - 1 degrees of freedom).

use serde::{Deserialize, Serialize};

use super::student_t;

/// Mean and 95 % confidence interval of a few replicate values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of replicates.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); 0 for one value.
    pub sd: f64,
    /// Half-width of the 95 % interval; `None` for one value (no interval can be honest then).
    pub half_width: Option<f64>,
    /// The replicate values, in replicate order.
    pub values: Vec<f64>,
}

/// How the intervals are computed, for captions.
pub const INTERVAL_METHOD: &str = "Student t, n - 1 degrees of freedom";

/// The two-sided 95 % critical value for a mean of `n` values, `t(0.975, n - 1)`; `None` below two.
/// Student t at every n (the quantile is exact for any degrees of freedom): a switch to the normal
/// quantile from n = 30 made those intervals 4 % narrower than the t interval STATS.md asks for.
pub fn critical_value(n: usize) -> Option<f64> {
    match n {
        0 | 1 => None,
        n => student_t::quantile(0.975, (n - 1) as f64),
    }
}

/// The mean and the sample standard deviation, summed as they are; deviations beyond 2^±450
/// are scaled by the largest first (exactly, by a power of two), since their squares would
/// overflow or underflow to a spread of 0 (values near 1e-150 that differ by 1e-163 held
/// claims on a zero-width interval). Ordinary deviations keep the plain sum's bits.
fn mean_and_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    let mean = mean_of(values);
    if n < 2 {
        return (mean, 0.0);
    }
    let largest = values.iter().fold(0.0f64, |m, v| m.max((v - mean).abs()));
    let scale = if largest > 0.0 && largest.is_finite() { largest.log2().floor() as i32 } else { 0 };
    let k = if scale.abs() > DEVIATION_EXPONENT { -scale } else { 0 };
    let squares = values.iter().map(|v| times_power_of_two(v - mean, k).powi(2)).sum::<f64>();
    (mean, times_power_of_two((squares / (n - 1) as f64).sqrt(), -k))
}

/// Beyond this binary exponent (either way) deviations are scaled before they are squared.
const DEVIATION_EXPONENT: i32 = 450;

/// Beyond this binary exponent (either way) the values are scaled before they are summed.
const PLAIN_EXPONENT: i32 = 500;

/// The binary exponent of the largest finite values when it lies beyond ±[`PLAIN_EXPONENT`]:
/// their squares (or their sum) would overflow, or underflow to a spread of 0 (three replicates
/// of subnormal differences read as "holds"). `None` where the plain sums are exact enough,
/// which keeps every ordinary summary's bits, and for non-finite values, which stay visible.
fn extreme_exponent(values: &[f64]) -> Option<i32> {
    if values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if largest == 0.0 {
        return None;
    }
    let e = largest.log2().floor() as i32;
    (e.abs() > PLAIN_EXPONENT).then_some(e)
}

/// `v * 2^k`, in two steps so that neither factor over- or underflows (`k` down to -1074).
fn times_power_of_two(v: f64, k: i32) -> f64 {
    let half = k / 2;
    v * 2f64.powi(half) * 2f64.powi(k - half)
}

/// The mean: equal values are their own mean, others the plain sum over n. The plain sum of
/// twenty replicates of exactly 0.3 is 0.29999999999999993, whose interval (zero spread but for
/// that rounding) then lay wholly off a threshold of 0.3 and decided a verdict the data do not
/// support. Values that differ have a spread far wider than the sum's rounding, so only equal
/// ones need this; every other mean keeps its bits.
fn mean_of(values: &[f64]) -> f64 {
    match values {
        [] => f64::NAN,
        [first, rest @ ..] if rest.iter().all(|v| v == first) => *first,
        _ => values.iter().sum::<f64>() / values.len() as f64,
    }
}

impl Summary {
    /// Summarises `values` (non-finite values are kept: they make the mean non-finite, which the
    /// tables show rather than hide).
    pub fn of(values: &[f64]) -> Summary {
        let n = values.len();
        let (mean, sd) = match extreme_exponent(values) {
            None => mean_and_sd(values),
            Some(e) => {
                // Brought near 1 by a power of two (exact), summed, and taken back.
                let near_one: Vec<f64> = values.iter().map(|&v| times_power_of_two(v, -e)).collect();
                let (mean, sd) = mean_and_sd(&near_one);
                (times_power_of_two(mean, e), times_power_of_two(sd, e))
            }
        };
        let half_width = critical_value(n).map(|t| t * sd / (n as f64).sqrt());
        Summary { n, mean, sd, half_width, values: values.to_vec() }
    }

    /// The interval's bounds, if it has one.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.half_width.map(|h| (self.mean - h, self.mean + h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample worked by hand: mean 81, deviations -1, 0, 1 so s = 1, and the interval
    /// 81 ± 4.302653 / sqrt(3) = 81 ± 2.484138.
    #[test]
    fn three_values_by_hand() {
        let s = Summary::of(&[80.0, 81.0, 82.0]);
        assert_eq!((s.n, s.mean, s.sd), (3, 81.0, 1.0));
        assert!((s.half_width.unwrap() - 2.484_138).abs() < 1e-6, "{s:?}");
        let (lo, hi) = s.interval().unwrap();
        assert!((lo - 78.515_862).abs() < 1e-6 && (hi - 83.484_138).abs() < 1e-6);
    }

    /// Equal values have their value as the mean and no spread, so a threshold they sit on is
    /// neither cleared nor missed; a plain sum gave 0.29999999999999993 and a point interval
    /// just below 0.3.
    #[test]
    fn equal_values_are_their_own_mean_exactly() {
        for (value, n) in [(0.3, 20), (0.1, 30), (55.00000000000001, 20), (1e308, 4), (-2.2, 7)] {
            let s = Summary::of(&vec![value; n]);
            assert_eq!((s.mean, s.sd, s.half_width), (value, 0.0, Some(0.0)), "{value} x {n}");
        }
        assert_eq!(Summary::of(&[f64::INFINITY, 1.0]).mean, f64::INFINITY);
        assert!(Summary::of(&[f64::INFINITY, f64::NEG_INFINITY]).mean.is_nan());
        assert_eq!(Summary::of(&[1e308, -1e308]).mean, 0.0);
        assert!(Summary::of(&[]).mean.is_nan());
        // Values that differ keep the plain sum's mean, bit for bit.
        assert_eq!(Summary::of(&[-0.3, 0.1, 0.5]).mean, (-0.3 + 0.1 + 0.5) / 3.0);
    }

    /// Finite values beyond the plain sums' range are summarised as they would be near 1: a
    /// mean and spread of values near the largest float are finite, and subnormal differences
    /// have their spread (it underflowed to 0, so a claim on them held at any n).
    #[test]
    fn extreme_finite_values_keep_their_mean_and_spread() {
        let big = Summary::of(&[1e308, 1.3e308, 1.6e308]);
        assert!((big.mean / 1.3e308 - 1.0).abs() < 1e-15 && (big.sd / 0.3e308 - 1.0).abs() < 1e-14, "{big:?}");
        let scaled = Summary::of(&[5.0, 5.1, 4.9]);
        let huge = Summary::of(&[5e200, 5.1e200, 4.9e200]);
        assert!((huge.half_width.unwrap() / 1e200 / scaled.half_width.unwrap() - 1.0).abs() < 1e-12, "{huge:?}");
        let tiny = Summary::of(&[5e-324, 1e-320, 2e-310]);
        assert!(tiny.sd > 1e-310 && tiny.sd < 1.2e-310, "{tiny:?}");
        // Ordinary values whose deviations are tiny: their squares underflowed to 0.
        let close = Summary::of(&[1e-150 - 1e-163, 1e-150, 1e-150 + 1e-163]);
        assert!((close.sd / 1e-163 - 1.0).abs() < 1e-3, "{close:?}");
        // Ordinary values keep the plain sums' bits.
        let plain = [80.1, 81.7, 82.3];
        let (m, sd) = mean_and_sd(&plain);
        assert_eq!((Summary::of(&plain).mean, Summary::of(&plain).sd), (m, sd));
    }

    #[test]
    fn one_value_has_no_interval() {
        let s = Summary::of(&[75.0]);
        assert_eq!((s.n, s.mean, s.sd, s.half_width), (1, 75.0, 0.0, None));
    }

    #[test]
    fn every_sample_size_uses_student_t() {
        assert!((critical_value(2).unwrap() - 12.706_204_736).abs() < 1e-7);
        // t(0.975, 29) and t(0.975, 999): no switch to the normal 1.959964 at n = 30.
        assert!((critical_value(30).unwrap() - 2.045_229_642).abs() < 1e-7);
        assert!((critical_value(1000).unwrap() - 1.962_341_461).abs() < 1e-7, "t(0.975, 999)");
    }
}
