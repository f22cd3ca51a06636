//! Verdicts controlled as a family: Holm's step-down over a stage's checks, so that the chance of
//! calling any claim that is false "holds" (or "reversed") stays under 5 % however many checks a
//! study makes, instead of under 5 % for each check alone.
//!
//! # From a check to one p-value
//! Each check's plain verdict is a 95 % interval against a line (0, the threshold, or a band's
//! edges). The same decision is a pair of one-sided t tests at 2.5 %: "holds" rejects "the true
//! quantity is not on the expected side", "reversed" rejects "it is not on the other side". So a
//! check carries the two one-sided p-values of its decision, and its family p-value is twice the
//! smaller, pointing the way that one points. With one check in the family, Holm decides exactly
//! as the plain interval does.
//!
//! | quantity | p of "holds" | p of "reversed" |
//! |---|---|---|
//! | greater than m | P(T ≥ t(m)) | P(T ≤ t(m)) |
//! | less than -m | P(T ≤ t(-m)) | P(T ≥ t(-m)) |
//! | within ±m | the larger of P(T ≤ t(m)) and P(T ≥ t(-m)) (both edges must be cleared) | the smaller of P(T ≥ t(m)) and P(T ≤ t(-m)), twice (either edge) |
//! | an order of k steps | the largest of its steps' (all must hold) | the smallest of its steps', k times (any step reverses it) |
//!
//! where t(x) = (mean - x) / (sd / √n) with n - 1 degrees of freedom. The plain verdicts take
//! either edge of a band, or any step of an order, at 2.5 % each without correction; as one
//! member of a family each such union is Bonferroni-corrected within itself, so the family's
//! guarantee holds for it too. That makes a band's or an order's "reversed" the one place where a
//! family of one is stricter than the plain interval.
//!
//! # Holm
//! Sort the family's m p-values ascending; the i-th (from 1) is adjusted to the largest of
//! (m - j + 1) · p_(j) over j ≤ i, capped at 1. A check whose adjusted p is below 5 % is decided
//! in its direction, the others are inconclusive. Holm controls the family-wise error for any
//! dependence between the checks (they share replicates, so they are far from independent), and
//! rejects everything Bonferroni does and sometimes more. Checks with one replicate have no
//! p-value and are left out of m.

use super::claim::{Expect, Outcome, Verdict};
use super::student_t;
use super::summary::Summary;

/// The family-wise error rate the verdicts are held to, matching the plain intervals' 95 %.
pub const FAMILY_ALPHA: f64 = 0.05;

/// A check's decision as one p-value: how unlikely its data are if its verdict were wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Directed {
    /// Two-sided-scale p-value of the more likely decision, in [0, 1].
    pub p: f64,
    /// The decision it supports: [`Verdict::Holds`] or [`Verdict::Reversed`].
    pub towards: Verdict,
}

/// A check's verdict within its family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FamilyVerdict {
    /// Holds, reversed or inconclusive at the family-wise 5 %; one replicate stays as it is.
    pub verdict: Verdict,
    /// The check's own p-value ([`Directed::p`]); `None` with one replicate.
    pub p: Option<f64>,
    /// Holm's adjusted p-value; `None` with one replicate.
    pub adjusted: Option<f64>,
}

/// One-sided p-values (of "holds", of "reversed") of one summary against its expectation.
fn one_sided(s: &Summary, expect: Expect, margin: f64) -> Option<(f64, f64)> {
    if s.n < 2 {
        return None;
    }
    let df = (s.n - 1) as f64;
    let se = s.sd / (s.n as f64).sqrt();
    // P(T <= t(x)): with no spread the mean is known exactly, a step at the line; on the line
    // itself neither side is shown, as the plain interval (a point on the line) shows neither.
    let below = |x: f64| -> f64 {
        let t = (s.mean - x) / se;
        if t.is_nan() {
            1.0
        } else {
            student_t::cdf(t, df)
        }
    };
    let above = |x: f64| -> f64 {
        let t = (s.mean - x) / se;
        if t.is_nan() {
            1.0
        } else {
            1.0 - student_t::cdf(t, df)
        }
    };
    if !(s.mean.is_finite() && s.sd.is_finite()) {
        return Some((1.0, 1.0));
    }
    Some(match expect {
        Expect::Greater | Expect::Increasing => (above(margin), below(margin)),
        Expect::Less | Expect::Decreasing => (below(-margin), above(-margin)),
        Expect::Within => (below(margin).max(above(-margin)), (2.0 * above(margin).min(below(-margin))).min(1.0)),
    })
}

/// The p-value and direction of a check's decision, `None` when a part has one replicate.
pub fn directed(outcome: &Outcome, expect: Expect, margin: f64) -> Option<Directed> {
    let sides: Vec<(f64, f64)> =
        outcome.parts.iter().map(|m| one_sided(&m.summary, expect, margin)).collect::<Option<_>>()?;
    let k = sides.len() as f64;
    let holds = sides.iter().map(|s| s.0).fold(0.0, f64::max);
    let reversed = (k * sides.iter().map(|s| s.1).fold(1.0, f64::min)).min(1.0);
    let (p, towards) = if holds <= reversed { (holds, Verdict::Holds) } else { (reversed, Verdict::Reversed) };
    Some(Directed { p: (2.0 * p).min(1.0), towards })
}

/// Holm's step-down over a family of checks, in the order given.
pub fn holm(checks: &[Option<Directed>]) -> Vec<FamilyVerdict> {
    let mut ranked: Vec<(usize, f64)> = checks.iter().enumerate().filter_map(|(i, d)| d.map(|d| (i, d.p))).collect();
    // A stable sort keeps ties in the stages' order, so the output is fixed by the input.
    ranked.sort_by(|x, y| x.1.total_cmp(&y.1));
    let m = ranked.len();
    let mut adjusted = vec![None; checks.len()];
    let mut running: f64 = 0.0;
    for (rank, (i, p)) in ranked.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        adjusted[i] = Some(running);
    }
    checks
        .iter()
        .zip(adjusted)
        .map(|(d, adjusted)| match (d, adjusted) {
            (Some(d), Some(a)) => FamilyVerdict {
                verdict: if a < FAMILY_ALPHA { d.towards } else { Verdict::Inconclusive },
                p: Some(d.p),
                adjusted: Some(a),
            },
            _ => FamilyVerdict { verdict: Verdict::OneReplicate, p: None, adjusted: None },
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
        Outcome { verdict: parts[0].verdict, parts }
    }

    /// scipy.stats.ttest_1samp([1.2, 2.0, 1.6], 0): t = 6.928, p = 0.02020 (two-sided).
    #[test]
    fn a_check_alone_has_the_t_tests_p_value() {
        let d = directed(&outcome(&[&[1.2, 2.0, 1.6]], Expect::Greater, 0.0), Expect::Greater, 0.0).unwrap();
        assert!((d.p - 0.020204).abs() < 1e-5, "{d:?}");
        assert_eq!(d.towards, Verdict::Holds);
        // Against a threshold of 1: t = (1.6 - 1) / (0.4 / sqrt 3) = 2.598, p = 0.1216.
        let d = directed(&outcome(&[&[1.2, 2.0, 1.6]], Expect::Greater, 1.0), Expect::Greater, 1.0).unwrap();
        assert!((d.p - 0.12160).abs() < 1e-4, "{d:?}");
        let d = directed(&outcome(&[&[1.2, 2.0, 1.6]], Expect::Less, 0.0), Expect::Less, 0.0).unwrap();
        assert_eq!(d.towards, Verdict::Reversed);
    }

    /// With one check, Holm decides as the plain 95 % interval does; only a band's "reversed",
    /// a union of its two edges, is corrected within itself and so may stay inconclusive.
    #[test]
    fn a_family_of_one_decides_as_the_interval() {
        let samples: [&[f64]; 7] = [
            &[1.2, 2.0, 1.6],
            &[-0.3, 0.1, 0.5],
            &[-2.0, -2.2, -1.9, -2.4],
            &[0.1, -0.1, 0.05],
            &[3.0, 3.0, 3.0],
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
                    let family = holm(&[directed(&o, expect, margin)]);
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

    /// Hand-worked Holm: p = 0.01, 0.04, 0.03, 0.5 -> sorted 0.01, 0.03, 0.04, 0.5, adjusted
    /// 0.04, 0.09, 0.09 (not below the 0.09 before it), 0.5.
    #[test]
    fn holm_adjusts_step_down_and_keeps_order() {
        let d = |p| Some(Directed { p, towards: Verdict::Holds });
        let out = holm(&[d(0.01), d(0.04), d(0.03), d(0.5), None]);
        let adjusted: Vec<Option<f64>> = out.iter().map(|f| f.adjusted).collect();
        let want = [Some(0.04), Some(0.09), Some(0.09), Some(0.5), None];
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
    }

    /// An order holds only when every step does, and a single reversed step of three is counted
    /// three times.
    #[test]
    fn an_order_takes_its_weakest_step_and_corrects_its_reversals() {
        let strong: &[f64] = &[1.2, 2.0, 1.6];
        let weak: &[f64] = &[-0.3, 0.1, 0.5];
        let o = outcome(&[strong, weak], Expect::Greater, 0.0);
        let alone = directed(&outcome(&[weak], Expect::Greater, 0.0), Expect::Greater, 0.0).unwrap();
        let d = directed(&o, Expect::Greater, 0.0).unwrap();
        assert_eq!(
            d.p,
            alone.p.max(directed(&outcome(&[strong], Expect::Greater, 0.0), Expect::Greater, 0.0).unwrap().p)
        );
        let reversed: &[f64] = &[-1.2, -2.0, -1.6];
        let o = outcome(&[strong, strong, reversed], Expect::Greater, 0.0);
        let d = directed(&o, Expect::Greater, 0.0).unwrap();
        assert_eq!(d.towards, Verdict::Reversed);
        assert!((d.p - 3.0 * 0.020204).abs() < 1e-4, "{d:?}");
    }

    #[test]
    fn one_replicate_is_left_out_of_the_family() {
        let o = outcome(&[&[1.0]], Expect::Greater, 0.0);
        assert_eq!(directed(&o, Expect::Greater, 0.0), None);
        let alone = Some(Directed { p: 0.03, towards: Verdict::Reversed });
        let out = holm(&[None, alone]);
        assert_eq!(out[1].verdict, Verdict::Reversed, "m counts the decidable checks only");
        assert_eq!(out[0].verdict, Verdict::OneReplicate);
    }
}
