//! Verdicts controlled as a family: Holm's step-down over a stage's checks, so that the chance of
//! calling any claim "holds" or "reversed" wrongly stays under 5 % however many checks a study
//! makes, instead of under 5 % for each check alone.
//!
//! # From a check to two one-sided tests
//! Each check's plain verdict is a 95 % interval against a line (0, the threshold, or a band's
//! edges). The same decision is a pair of one-sided t tests at 2.5 %: "holds" rejects "the true
//! quantity is not on the expected side", "reversed" rejects "it is not on the other side". A
//! false verdict is exactly a rejected hypothesis that is true, so the family is the 2m one-sided
//! hypotheses of its m checks, two each:
//!
//! | quantity | p of "holds" | p of "reversed" |
//! |---|---|---|
//! | greater than m | P(T ≥ t(m)) | P(T ≤ t(m)) |
//! | less than -m | P(T ≤ t(-m)) | P(T ≥ t(-m)) |
//! | within ±m | the larger of P(T ≤ t(m)) and P(T ≥ t(-m)) (both edges must be cleared) | the smaller of P(T ≥ t(m)) and P(T ≤ t(-m)), twice (either edge) |
//! | an order of k steps | the largest of its steps' (all must hold) | the smallest of its steps', k times (any step reverses it) |
//!
//! where t(x) = (mean - x) / (sd / √n) with n - 1 degrees of freedom; a quantity without spread
//! (the same in every replicate) has no t, and its p on the side it lies is the exact sign-flip
//! test's 2^-n (1 on the other side). The plain verdicts take
//! either edge of a band, or any step of an order, at 2.5 % each without correction; in the
//! family each such union is Bonferroni-corrected within itself. That makes a band's or an
//! order's "reversed" the one place where a family of one is stricter than the plain interval;
//! otherwise a family of one decides as the interval does (its smaller p against 0.05 / 2).
//!
//! # Holm
//! Sort the family's 2m p-values ascending; the i-th (from 1) is adjusted to the largest of
//! (2m - j + 1) · p_(j) over j ≤ i, capped at 1. A check whose "holds" (or "reversed") has an
//! adjusted p below 5 % is decided that way, the others are inconclusive. Holm bounds the chance
//! of rejecting any true hypothesis by 5 % whatever the dependence between the tests (the checks
//! share replicates, so they are far from independent), which is why the family is made of the
//! one-sided hypotheses themselves rather than of one two-sided test per check with a direction
//! read afterwards (whose directional guarantee is proved for independent tests only). Each test
//! is exact under the t test's own assumption, per-replicate quantities drawn from a normal
//! distribution; at n = 3 nothing checks that. Checks with one replicate have no p-value and
//! are left out.

use super::claim::{without_spread, Expect, Outcome, Verdict};
use super::student_t;
use super::summary::Summary;

/// The family-wise error rate the verdicts are held to, matching the plain intervals' 95 %.
pub const FAMILY_ALPHA: f64 = 0.05;

/// A check's two one-sided p-values: how unlikely its data are if it did not hold, and if it
/// were not reversed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sides {
    /// p of "holds", in [0, 1].
    pub holds: f64,
    /// p of "reversed", in [0, 1].
    pub reversed: f64,
}

/// A check's verdict within its family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FamilyVerdict {
    /// Holds, reversed or inconclusive at the family-wise 5 %; one replicate stays as it is.
    pub verdict: Verdict,
    /// The smaller of the check's two one-sided p-values; `None` with one replicate.
    pub p: Option<f64>,
    /// That side's adjusted p-value; `None` with one replicate.
    pub adjusted: Option<f64>,
}

/// One-sided p-values (of "holds", of "reversed") of one summary against its expectation.
fn one_sided(s: &Summary, expect: Expect, margin: f64) -> Option<Sides> {
    if s.n < 2 {
        return None;
    }
    if !(s.mean.is_finite() && s.sd.is_finite()) {
        return Some(Sides { holds: 1.0, reversed: 1.0 });
    }
    if without_spread(s) {
        // No spread for a t test: the exact sign-flip p of n values all on one side (see
        // `NO_SPREAD_DECIDES_FROM`), 1 on the other side or on the line; a band's "reversed"
        // takes either edge, so twice.
        let exact = 0.5f64.powi(s.n as i32);
        let side = |yes: bool, p: f64| if yes { p.min(1.0) } else { 1.0 };
        let (m, c) = (margin, s.mean);
        return Some(match expect {
            Expect::Greater | Expect::Increasing => Sides { holds: side(c > m, exact), reversed: side(c < m, exact) },
            Expect::Less | Expect::Decreasing => Sides { holds: side(c < -m, exact), reversed: side(c > -m, exact) },
            Expect::Within => Sides { holds: side(c.abs() < m, exact), reversed: side(c.abs() > m, 2.0 * exact) },
        });
    }
    let df = (s.n - 1) as f64;
    let se = s.sd / (s.n as f64).sqrt();
    // P(T <= t(x)) and P(T >= t(x)), each from its own tail so that a tiny p keeps its digits.
    let t = |x: f64| (s.mean - x) / se;
    let below = |x: f64| if t(x).is_nan() { 1.0 } else { student_t::cdf(t(x), df) };
    let above = |x: f64| if t(x).is_nan() { 1.0 } else { student_t::cdf(-t(x), df) };
    let (holds, reversed) = match expect {
        Expect::Greater | Expect::Increasing => (above(margin), below(margin)),
        Expect::Less | Expect::Decreasing => (below(-margin), above(-margin)),
        Expect::Within => (below(margin).max(above(-margin)), (2.0 * above(margin).min(below(-margin))).min(1.0)),
    };
    Some(Sides { holds, reversed })
}

/// A check's two one-sided p-values, `None` when a part has one replicate.
pub fn sides(outcome: &Outcome, expect: Expect, margin: f64) -> Option<Sides> {
    // A part between copies (an order's step) is no evidence either way.
    let parts: Vec<Sides> = outcome
        .parts
        .iter()
        .map(|m| match m.verdict {
            Verdict::Identical if m.summary.n >= 2 => Some(Sides { holds: 1.0, reversed: 1.0 }),
            _ => one_sided(&m.summary, expect, margin),
        })
        .collect::<Option<_>>()?;
    let k = parts.len() as f64;
    Some(Sides {
        holds: parts.iter().map(|s| s.holds).fold(0.0, f64::max),
        reversed: (k * parts.iter().map(|s| s.reversed).fold(1.0, f64::min)).min(1.0),
    })
}

/// Holm's step-down over the one-sided hypotheses of a family of checks, in the order given.
pub fn holm(checks: &[Option<Sides>]) -> Vec<FamilyVerdict> {
    // (check, its "holds" side or not, p)
    let mut ranked: Vec<(usize, bool, f64)> = checks
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| [(i, true, s.holds), (i, false, s.reversed)]))
        .flatten()
        .collect();
    // A stable sort keeps ties in the stage's order, so the output is fixed by the input.
    ranked.sort_by(|x, y| x.2.total_cmp(&y.2));
    let tests = ranked.len();
    let mut adjusted = vec![(1.0_f64, 1.0_f64); checks.len()];
    let mut running: f64 = 0.0;
    for (rank, (i, holds, p)) in ranked.into_iter().enumerate() {
        running = running.max(((tests - rank) as f64 * p).min(1.0));
        if holds {
            adjusted[i].0 = running;
        } else {
            adjusted[i].1 = running;
        }
    }
    checks
        .iter()
        .zip(adjusted)
        .map(|(s, (holds, reversed))| match s {
            None => FamilyVerdict { verdict: Verdict::OneReplicate, p: None, adjusted: None },
            Some(s) => {
                let (p, adjusted, towards) = if s.holds <= s.reversed {
                    (s.holds, holds, Verdict::Holds)
                } else {
                    (s.reversed, reversed, Verdict::Reversed)
                };
                let verdict = if adjusted < FAMILY_ALPHA { towards } else { Verdict::Inconclusive };
                FamilyVerdict { verdict, p: Some(p), adjusted: Some(adjusted) }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::claim::{decide, Measured};

    fn outcome(values: &[&[f64]], expect: Expect, margin: f64) -> Outcome {
        let parts: Vec<Measured> = values
            .iter()
            .map(|v| {
                let summary = Summary::of(v);
                let verdict = decide(&summary, expect, margin);
                Measured { what: String::new(), per_replicate: Vec::new(), summary, verdict, left_out: Vec::new() }
            })
            .collect();
        let verdict =
            if parts.iter().any(|m| m.verdict == Verdict::Reversed) { Verdict::Reversed } else { parts[0].verdict };
        Outcome { verdict, parts }
    }

    fn sides_of(values: &[&[f64]], expect: Expect, margin: f64) -> Sides {
        sides(&outcome(values, expect, margin), expect, margin).unwrap()
    }

    /// scipy.stats.ttest_1samp([1.2, 2.0, 1.6], 0, alternative="greater"): t = 6.928, p = 0.010102.
    #[test]
    fn a_check_alone_has_the_one_sided_t_tests_p_values() {
        let s = sides_of(&[&[1.2, 2.0, 1.6]], Expect::Greater, 0.0);
        assert!((s.holds - 0.010102).abs() < 1e-6 && (s.reversed - (1.0 - 0.010102)).abs() < 1e-6, "{s:?}");
        // Against a threshold of 1: t = (1.6 - 1) / (0.4 / sqrt 3) = 2.598, p = 0.060845 (scipy).
        let s = sides_of(&[&[1.2, 2.0, 1.6]], Expect::Greater, 1.0);
        assert!((s.holds - 0.060845).abs() < 1e-6, "{s:?}");
        let s = sides_of(&[&[1.2, 2.0, 1.6]], Expect::Less, 0.0);
        assert!((s.reversed - 0.010102).abs() < 1e-6, "{s:?}");
    }

    /// A tail far out keeps its digits: 1 - P(T <= t) rounded it to 0 (scipy: 1.67e-17).
    #[test]
    fn a_tiny_p_value_is_not_rounded_to_zero() {
        let s = sides_of(&[&[100.0, 100.000001, 100.000002]], Expect::Greater, 0.0);
        assert!((s.holds / 1.6666666e-17 - 1.0).abs() < 1e-4, "{s:?}");
    }

    /// With one check, Holm decides as the plain 95 % interval does; only a band's or an order's
    /// "reversed", a union of edges or steps, is corrected within itself and may stay inconclusive.
    #[test]
    fn a_family_of_one_decides_as_the_interval() {
        let samples: [&[f64]; 7] = [
            &[1.2, 2.0, 1.6],
            &[-0.3, 0.1, 0.5],
            &[-2.0, -2.2, -1.9, -2.4],
            &[0.1, -0.1, 0.05],
            &[3.0; 6],
            &[0.9, 1.3, 1.1, 1.0, 1.2],
            &[-1.0, 4.0],
        ];
        let mut seen = std::collections::BTreeSet::new();
        for values in samples {
            for expect in [Expect::Greater, Expect::Less, Expect::Within] {
                for margin in [0.0, 0.5, 1.0] {
                    if expect == Expect::Within && margin == 0.0 {
                        continue;
                    }
                    let o = outcome(&[values], expect, margin);
                    let family = holm(&[sides(&o, expect, margin)]);
                    if expect == Expect::Within && o.verdict == Verdict::Reversed {
                        assert_ne!(family[0].verdict, Verdict::Holds, "{values:?} {margin}");
                    } else {
                        assert_eq!(family[0].verdict, o.verdict, "{values:?} {expect:?} {margin}");
                    }
                    seen.insert(o.verdict.label());
                }
            }
        }
        assert_eq!(seen.len(), 3, "the samples reach every verdict: {seen:?}");
    }

    /// Hand-worked Holm over the 2m = 8 one-sided p-values 0.005, 0.02, 0.015, 0.25 (holds) and
    /// their complements (reversed): sorted 0.005, 0.015, 0.02, 0.25, 0.75, ..., adjusted
    /// 8 x 0.005 = 0.04, 7 x 0.015 = 0.105, max(6 x 0.02, 0.105) = 0.12, 5 x 0.25 -> 1.
    #[test]
    fn holm_adjusts_step_down_over_both_sides_and_keeps_order() {
        let d = |p: f64| Some(Sides { holds: p, reversed: 1.0 - p });
        let out = holm(&[d(0.005), d(0.02), d(0.015), d(0.25), None]);
        let adjusted: Vec<Option<f64>> = out.iter().map(|f| f.adjusted).collect();
        let want = [Some(0.04), Some(0.12), Some(0.105), Some(1.0), None];
        for (got, want) in adjusted.iter().zip(want) {
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{adjusted:?}"),
                (g, w) => assert_eq!(*g, w),
            }
        }
        let verdicts: Vec<Verdict> = out.iter().map(|f| f.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Holds,
                Verdict::Inconclusive,
                Verdict::Inconclusive,
                Verdict::Inconclusive,
                Verdict::OneReplicate
            ]
        );
        assert_eq!(out[0].p, Some(0.005));
    }

    /// An order holds only when every step does, and a single reversed step of three is counted
    /// three times.
    #[test]
    fn an_order_takes_its_weakest_step_and_corrects_its_reversals() {
        let strong: &[f64] = &[1.2, 2.0, 1.6];
        let weak: &[f64] = &[-0.3, 0.1, 0.5];
        let s = sides_of(&[strong, weak], Expect::Greater, 0.0);
        assert_eq!(s.holds, sides_of(&[weak], Expect::Greater, 0.0).holds);
        let reversed: &[f64] = &[-1.2, -2.0, -1.6];
        let s = sides_of(&[strong, strong, reversed], Expect::Greater, 0.0);
        assert!((s.reversed - 3.0 * 0.010102).abs() < 1e-5, "{s:?}");
        assert_eq!(holm(&[Some(s)])[0].verdict, Verdict::Inconclusive, "0.0303 x 2 tests is not below 0.05");
    }

    #[test]
    fn one_replicate_is_left_out_of_the_family() {
        let o = outcome(&[&[1.0]], Expect::Greater, 0.0);
        assert_eq!(sides(&o, Expect::Greater, 0.0), None);
        let alone = Some(Sides { holds: 0.98, reversed: 0.02 });
        let out = holm(&[None, alone]);
        assert_eq!(out[1].verdict, Verdict::Reversed, "2 tests, not 4: 2 x 0.02 < 0.05");
        assert_eq!(out[0].verdict, Verdict::OneReplicate);
    }
}
