//! Average precision from ranked scores, exactly (no 11-point interpolation): with the items
//! sorted by decreasing score, `AP = sum_n (R_n - R_{n-1}) P_n` over the distinct score
//! thresholds, as scikit-learn's `average_precision_score`. Tied scores form one threshold, so
//! the result does not depend on how ties are ordered.

/// AP of `scores` against binary `truth`; `None` when there is no positive.
pub fn average_precision(scores: &[f32], truth: &[bool]) -> Option<f64> {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 || scores.len() != truth.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut prev_recall) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < order.len() {
        // One threshold: every item tied with order[i].
        let s = scores[order[i]];
        // NaN equals nothing, itself included: NaNs (ranked first) are one threshold too.
        while i < order.len() && (scores[order[i]] == s || scores[order[i]].is_nan() && s.is_nan()) {
            tp += usize::from(truth[order[i]]);
            seen += 1;
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - prev_recall) * (tp as f64 / seen as f64);
        prev_recall = recall;
    }
    Some(ap)
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

    #[test]
    fn mean_skips_classes_without_positives() {
        assert_eq!(mean_ap(&[Some(1.0), None, Some(0.5)]), Some((0.75, 2)));
        assert_eq!(mean_ap(&[None]), None);
    }
}
