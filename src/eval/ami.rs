//! Adjusted mutual information: NMI with what chance alone gives subtracted.
//!
//! Why: NMI between a clustering and the classes rises with the number of clusters whatever
//! the features. With k near the number of rows every cluster is nearly pure, and a random
//! assignment of 5,000 rows into 250 clusters already shares information with 10 classes.
//! So an NMI at k = 250 cannot be set beside one at k = 25. AMI (Vinh, Epps & Bailey, JMLR
//! 2010) subtracts the mutual information expected when the same group sizes are paired at
//! random, `E[MI]`, and rescales: `(MI - E[MI]) / (mean(H(a), H(b)) - E[MI])`. It is 0 in
//! expectation for a random clustering at any k, 1 for a perfect one, and may be negative.
//! Arithmetic mean and conventions as scikit-learn's `adjusted_mutual_info_score` default.

use super::metrics::{entropy, shared_information, Shared};
use super::EvalError;

/// Adjusted mutual information of a clustering against labels (see the module doc): 1.0 when
/// both are the same partition (a single group each, or every row its own group, where
/// `MI - E[MI]` and its denominator are both 0 but for rounding), as scikit-learn's.
pub fn ami(assign: &[u32], labels: &[u32]) -> Result<f64, EvalError> {
    let Shared { a_counts, b_counts, mi, pairs } = shared_information(assign, labels)?;
    if a_counts.len() == b_counts.len() && pairs == a_counts.len() {
        return Ok(1.0);
    }
    let n = assign.len() as f64;
    let emi = expected_mutual_information(&a_counts, &b_counts);
    let denominator = (entropy(&a_counts, n) + entropy(&b_counts, n)) / 2.0 - emi;
    // As scikit-learn: kept off zero with its sign, so identical sides read 1 and not NaN.
    let denominator = if denominator < 0.0 { denominator.min(-f64::EPSILON) } else { denominator.max(f64::EPSILON) };
    Ok((mi - emi) / denominator)
}

/// The mutual information (nats) expected between two labelings of `n` rows with group sizes
/// `a` and `b` when rows are paired at random: for each pair of groups, the sum over every
/// overlap `nij` the hypergeometric distribution allows of its probability times its term
/// `nij/n · ln(n·nij / (ai·bj))`. Terms run in a fixed order; work is about `n` times the
/// number of groups of the smaller side.
fn expected_mutual_information(a: &[u64], b: &[u64]) -> f64 {
    let n: u64 = a.iter().sum();
    let ln_fact = ln_factorials(n);
    let lf = |i: u64| ln_fact[i as usize];
    let nf = n as f64;
    let mut emi = 0.0;
    for &ai in a {
        for &bj in b {
            let (lo, hi) = (1.max((ai + bj).saturating_sub(n)), ai.min(bj));
            // ln of ai! bj! (n-ai)! (n-bj)! / n!: the part of every probability of this pair.
            let shared = lf(ai) + lf(bj) + lf(n - ai) + lf(n - bj) - lf(n);
            let ln_ab = (ai as f64).ln() + (bj as f64).ln();
            for nij in lo..=hi {
                // Added before subtracting: n - ai - bj alone is below zero when ai + bj > n.
                let ln_p = shared - lf(nij) - lf(ai - nij) - lf(bj - nij) - lf(n + nij - ai - bj);
                let x = nij as f64;
                emi += x / nf * (nf.ln() + x.ln() - ln_ab) * ln_p.exp();
            }
        }
    }
    emi
}

/// `ln(i!)` for every `i` in `0..=n`, summed with Neumaier's compensation: a plain running sum
/// of 60,000 logs drifts by about 1e-6 at the end, and these values are differenced in
/// exponents.
fn ln_factorials(n: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize + 1);
    let (mut sum, mut carry) = (0.0f64, 0.0f64);
    out.push(0.0);
    for i in 1..=n {
        let x = (i as f64).ln();
        let t = sum + x;
        carry += if sum.abs() >= x.abs() { (sum - t) + x } else { (x - t) + sum };
        sum = t;
        out.push(sum + carry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from scikit-learn 1.9.1's `adjusted_mutual_info_score(labels, assign)` (default
    /// arithmetic mean), computed once on the same rows (the generator below, rewritten in
    /// Python).
    #[test]
    fn ami_matches_scikit_learn() {
        // adjusted_mutual_info_score([0,0,0,1,1,1], [0,0,1,1,2,2])
        let small = ami(&[0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 1]).unwrap();
        assert!((small - SMALL).abs() < 1e-12, "{small}");
        let (assign, labels) = lcg_case();
        let big = ami(&assign, &labels).unwrap();
        assert!((big - BIG).abs() < 1e-9, "{big}");
        // The swap does not matter (symmetric), nor do the ids.
        let swapped = ami(&labels, &assign).unwrap();
        assert!((swapped - big).abs() < 1e-12);
        let renamed: Vec<u32> = assign.iter().map(|a| a * 7 + 1000).collect();
        assert_eq!(ami(&renamed, &labels).unwrap().to_bits(), big.to_bits());
        // A cluster and a class holding more than n rows between them (3 + 3 > 4): the count of
        // rows in neither went below zero on the way in a build that checks overflow.
        // adjusted_mutual_info_score([0,0,0,1], [0,0,1,0]) = -0.33333333333333304
        let overlap = ami(&[0, 0, 1, 0], &[0, 0, 0, 1]).unwrap();
        assert!((overlap + 0.33333333333333304).abs() < 1e-12, "{overlap}");
    }

    /// Where NMI rises with k on random clusters, AMI stays near 0; a perfect clustering reads 1.
    #[test]
    fn ami_is_near_zero_for_random_clusters_at_any_k_and_one_for_a_perfect_one() {
        let (_, labels) = lcg_case();
        for k in [10u32, 100, 500] {
            let random: Vec<u32> = (0..labels.len() as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % k).collect();
            let nmi = super::super::nmi(&random, &labels).unwrap();
            let ami = ami(&random, &labels).unwrap();
            assert!(ami.abs() < 0.02, "k = {k}: AMI {ami} (NMI {nmi})");
            if k == 500 {
                assert!(nmi > 0.2, "NMI of random clusters at k = 500 on 2,000 rows: {nmi}");
            }
        }
        assert!((ami(&labels, &labels).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(ami(&[4, 4, 4], &[1, 1, 1]).unwrap(), 1.0, "one group each: sklearn's convention");
        // Every row its own group on both sides: the same partition (sklearn: 1.0 at any n).
        for n in [2u32, 3, 50] {
            let all: Vec<u32> = (0..n).collect();
            let renamed: Vec<u32> = (0..n).map(|i| 100 + 3 * i).collect();
            assert_eq!(ami(&all, &renamed).unwrap(), 1.0, "n = {n}");
        }
        // One group against many: exactly 0, as sklearn gives.
        assert_eq!(ami(&[0, 1, 2, 3], &[0, 0, 0, 0]).unwrap(), 0.0);
    }

    #[test]
    fn ln_factorials_match_ln_gamma() {
        let f = ln_factorials(60_000);
        // ln(60000!) by Stirling's series to far below f64's spacing at this size.
        let n = 60_000f64;
        let stirling =
            n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n) - 1.0 / (360.0 * n.powi(3));
        assert!((f[60_000] - stirling).abs() < 1e-9, "{} vs {stirling}", f[60_000]);
        assert_eq!(f[0], 0.0);
        assert!((f[5] - 120f64.ln()).abs() < 1e-14);
    }

    /// 2,000 rows: labels 0..10 and a clustering into 40 groups that follows the labels in
    /// part, both from a fixed linear congruential generator (the same in the Python check).
    fn lcg_case() -> (Vec<u32>, Vec<u32>) {
        let mut state: u64 = 12345;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        let mut assign = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..2000 {
            let label = next() % 10;
            let follow = next() % 3 != 0;
            let cluster = if follow { label * 4 + next() % 4 } else { next() % 40 };
            labels.push(label);
            assign.push(cluster);
        }
        (assign, labels)
    }

    const SMALL: f64 = 0.298_792_458_170_890_1;
    const BIG: f64 = 0.346_101_960_477_696_5;
}
