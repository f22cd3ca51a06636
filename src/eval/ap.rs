//! Average precision from ranked scores, exactly (no 11-point interpolation): with the items
//! sorted by decreasing score, `AP = sum_n (R_n - R_{n-1}) P_n` over the distinct score
//! thresholds, as scikit-learn's `average_precision_score`. Tied scores form one threshold, so
//! the result does not depend on how ties are ordered. [`interpolated_ap`] is VOC's variant.

use serde::{Deserialize, Serialize};

/// Which average precision a probe reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApKind {
    /// The area under the step curve of precision at each threshold (scikit-learn's).
    #[default]
    Exact,
    /// VOC's: each threshold's precision replaced by the best precision at any recall at least
    /// its own (Goyal et al.'s benchmark code scores VOC07 so); never below the exact AP.
    Interpolated,
}

impl ApKind {
    /// True for the default, `exact`.
    pub fn is_exact(&self) -> bool {
        *self == ApKind::Exact
    }

    /// AP of `scores` against `truth` of this kind; `None` when there is no positive.
    pub fn of(self, scores: &[f32], truth: &[bool]) -> Option<f64> {
        match self {
            ApKind::Exact => average_precision(scores, truth),
            ApKind::Interpolated => interpolated_ap(scores, truth),
        }
    }
}

/// AP of `scores` against binary `truth`; `None` when there is no positive.
pub fn average_precision(scores: &[f32], truth: &[bool]) -> Option<f64> {
    Some(area(pr_curve(scores, truth)?))
}

/// VOC's interpolated AP of `scores` against binary `truth`: the precision at each threshold
/// is the largest at that threshold or any later (lower-scored) one; `None` without a positive.
pub fn interpolated_ap(scores: &[f32], truth: &[bool]) -> Option<f64> {
    let mut curve = pr_curve(scores, truth)?;
    let mut running = 0.0f64;
    for point in curve.iter_mut().rev() {
        running = running.max(point.1);
        point.1 = running;
    }
    Some(area(curve))
}

/// `sum_n (R_n - R_{n-1}) P_n` over (recall, precision) points in threshold order.
fn area(curve: Vec<(f64, f64)>) -> f64 {
    let mut prev_recall = 0.0;
    curve.into_iter().fold(0.0, |ap, (recall, precision)| {
        let step = (recall - prev_recall) * precision;
        prev_recall = recall;
        ap + step
    })
}

/// (recall, precision) at each distinct threshold, scores decreasing; `None` without a positive.
fn pr_curve(scores: &[f32], truth: &[bool]) -> Option<Vec<(f64, f64)>> {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 || scores.len() != truth.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen) = (0usize, 0usize);
    let mut curve = Vec::new();
    let mut i = 0;
    while i < order.len() {
        // One threshold: every item tied with order[i].
        let s = scores[order[i]];
        // NaN equals nothing, itself included: NaNs are one threshold too (ranked first when
        // positive, last when negative, as `total_cmp` orders them).
        while i < order.len() && (scores[order[i]] == s || scores[order[i]].is_nan() && s.is_nan()) {
            tp += usize::from(truth[order[i]]);
            seen += 1;
            i += 1;
        }
        curve.push((tp as f64 / positives as f64, tp as f64 / seen as f64));
    }
    Some(curve)
}

/// Mean of the per-class APs that exist (classes with a positive), and how many there were.
pub fn mean_ap(per_class: &[Option<f64>]) -> Option<(f64, usize)> {
    let present: Vec<f64> = per_class.iter().flatten().copied().collect();
    (!present.is_empty()).then(|| (present.iter().sum::<f64>() / present.len() as f64, present.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // Ranked: + - + - : precision at the hits 1/1 and 2/3 -> (1 + 2/3) / 2.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.6], &[true, false, true, false]).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-12, "{ap}");
        // Perfect and worst rankings of 2 positives among 4.
        assert_eq!(average_precision(&[4.0, 3.0, 2.0, 1.0], &[true, true, false, false]), Some(1.0));
        let worst = average_precision(&[4.0, 3.0, 2.0, 1.0], &[false, false, true, true]).unwrap();
        assert!((worst - (1.0 / 3.0 + 2.0 / 4.0) / 2.0).abs() < 1e-12, "{worst}");
        // A tie between a positive and a negative is one threshold at precision 1/2.
        assert_eq!(average_precision(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(average_precision(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
        // Ranked - + + + -: precision at the hits 1/2, 2/3, 3/4 (sklearn: 0.6389).
        let sk = average_precision(&[0.1, 0.4, 0.35, 0.8, 0.7], &[false, true, true, false, true]).unwrap();
        assert!((sk - (1.0 / 2.0 + 2.0 / 3.0 + 3.0 / 4.0) / 3.0).abs() < 1e-12, "{sk}");
    }

    /// A NaN score ends: the NaNs, ranked first by `total_cmp`, are one threshold.
    #[test]
    fn a_nan_score_ends() {
        let ap = average_precision(&[0.5, f32::NAN, 0.1, f32::NAN], &[true, false, false, true]).unwrap();
        assert!((ap - (0.5 * 0.5 + 0.5 * (2.0 / 3.0))).abs() < 1e-12, "{ap}");
    }

    /// VOC's interpolation: each precision raised to the best at a recall at least its own.
    #[test]
    fn interpolated_ap_takes_the_best_precision_to_the_right() {
        // Ranked + - - + +: hits at precision 1/1, 2/4, 3/5; interpolated 1, 3/5, 3/5.
        let (s, t) = (&[5.0, 4.0, 3.0, 2.0, 1.0], &[true, false, false, true, true]);
        let exact = average_precision(s, t).unwrap();
        let interp = interpolated_ap(s, t).unwrap();
        assert!((exact - (1.0 + 0.5 + 0.6) / 3.0).abs() < 1e-12, "{exact}");
        assert!((interp - (1.0 + 0.6 + 0.6) / 3.0).abs() < 1e-12, "{interp}");
        // A ranking with precision falling at every hit is its own envelope.
        let (s, t) = (&[4.0, 3.0, 2.0, 1.0], &[true, false, true, false]);
        assert_eq!(interpolated_ap(s, t), average_precision(s, t));
        // Ties are one threshold either way, and no positive is no AP.
        assert_eq!(interpolated_ap(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(interpolated_ap(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(ApKind::Interpolated.of(s, t), interpolated_ap(s, t));
        assert_eq!(ApKind::default().of(s, t), average_precision(s, t));
    }

    #[test]
    fn mean_skips_classes_without_positives() {
        assert_eq!(mean_ap(&[Some(1.0), None, Some(0.5)]), Some((0.75, 2)));
        assert_eq!(mean_ap(&[None]), None);
    }
}
