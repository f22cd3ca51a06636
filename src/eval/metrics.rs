//! Classification accuracy and clustering-versus-labels metrics (purity, NMI; AMI in `ami.rs`).
//!
//! Both clustering metrics work from the sorted list of (cluster, label)
//! pairs, so ids may be arbitrary u32 values, memory is O(n) even for
//! k x classes in the millions, and every sum runs in one fixed order.

use super::EvalError;

/// Checks two per-row vectors line up and are non-empty.
fn check_pair(a: &[u32], b: &[u32], what: &'static str) -> Result<(), EvalError> {
    if a.len() != b.len() {
        return Err(EvalError::LengthMismatch { what, left: a.len(), right: b.len() });
    }
    if a.is_empty() {
        return Err(EvalError::Empty { what });
    }
    Ok(())
}

/// Fraction (0..=1) of rows where `pred` equals `labels`.
pub fn accuracy(pred: &[u32], labels: &[u32]) -> Result<f64, EvalError> {
    check_pair(pred, labels, "predictions vs labels")?;
    let hits = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(hits as f64 / pred.len() as f64)
}

/// Counts of each distinct value, in ascending value order.
fn run_counts(sorted: impl Iterator<Item = u32>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut prev = None;
    for v in sorted {
        if prev == Some(v) {
            if let Some(last) = out.last_mut() {
                *last += 1;
            }
        } else {
            out.push(1);
            prev = Some(v);
        }
    }
    out
}

/// Sorted (cluster, label) pairs.
fn sorted_pairs(assign: &[u32], labels: &[u32]) -> Vec<(u32, u32)> {
    let mut pairs: Vec<(u32, u32)> = assign.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_unstable();
    pairs
}

/// Cluster purity (0..=1): each cluster votes for its majority label; the
/// fraction of rows that agree with their cluster's vote.
pub fn purity(assign: &[u32], labels: &[u32]) -> Result<f64, EvalError> {
    check_pair(assign, labels, "cluster assignments vs labels")?;
    let pairs = sorted_pairs(assign, labels);
    let mut majority_total = 0u64;
    let mut i = 0;
    while i < pairs.len() {
        let cluster = pairs[i].0;
        let mut best = 0u64;
        while i < pairs.len() && pairs[i].0 == cluster {
            let label = pairs[i].1;
            let start = i;
            while i < pairs.len() && pairs[i] == (cluster, label) {
                i += 1;
            }
            best = best.max((i - start) as u64);
        }
        majority_total += best;
    }
    Ok(majority_total as f64 / assign.len() as f64)
}

/// Shannon entropy (nats) of a distribution given by counts summing to `n`.
pub(super) fn entropy(counts: &[u64], n: f64) -> f64 {
    counts
        .iter()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// The two sides' group sizes (each in ascending id order) and the mutual information
/// between them in nats.
pub(super) struct Shared {
    /// Rows per distinct cluster id.
    pub a_counts: Vec<u64>,
    /// Rows per distinct label.
    pub b_counts: Vec<u64>,
    /// Mutual information (nats), clamped at 0 against rounding.
    pub mi: f64,
    /// Distinct (cluster, label) pairs.
    pub pairs: usize,
}

/// Group sizes and mutual information of two labelings of the same rows, from their sorted
/// (cluster, label) pairs: one fixed order of summation whatever the ids.
pub(super) fn shared_information(assign: &[u32], labels: &[u32]) -> Result<Shared, EvalError> {
    check_pair(assign, labels, "cluster assignments vs labels")?;
    let n = assign.len() as f64;
    let mut a_sorted = assign.to_vec();
    a_sorted.sort_unstable();
    let mut b_sorted = labels.to_vec();
    b_sorted.sort_unstable();
    let a_counts = run_counts(a_sorted.iter().copied());
    let b_counts = run_counts(b_sorted.iter().copied());
    // Distinct ids, in the same ascending order as the counts.
    let (a_uniq, b_uniq) = (unique(&a_sorted), unique(&b_sorted));
    let pairs = sorted_pairs(assign, labels);
    let mut mi = 0f64;
    let mut distinct = 0;
    let mut i = 0;
    while i < pairs.len() {
        distinct += 1;
        let start = i;
        while i < pairs.len() && pairs[i] == pairs[start] {
            i += 1;
        }
        let nij = (i - start) as f64;
        let ai = a_counts[rank(&a_uniq, pairs[start].0)] as f64;
        let bj = b_counts[rank(&b_uniq, pairs[start].1)] as f64;
        // Logs of counts rather than of a ratio, as scikit-learn does, to keep precision.
        mi += nij / n * (nij.ln() + n.ln() - ai.ln() - bj.ln());
    }
    Ok(Shared { a_counts, b_counts, mi: mi.max(0.0), pairs: distinct })
}

/// Normalised mutual information (0..=1) with arithmetic-mean normalisation,
/// MI / ((H(assign) + H(labels)) / 2), matching scikit-learn's
/// `normalized_mutual_info_score` default, including its conventions: 1.0
/// when both sides are a single group, 0.0 when the mutual information is 0.
pub fn nmi(assign: &[u32], labels: &[u32]) -> Result<f64, EvalError> {
    let Shared { a_counts, b_counts, mi, .. } = shared_information(assign, labels)?;
    if a_counts.len() == 1 && b_counts.len() == 1 {
        return Ok(1.0);
    }
    if mi == 0.0 {
        return Ok(0.0);
    }
    let n = assign.len() as f64;
    let norm = (entropy(&a_counts, n) + entropy(&b_counts, n)) / 2.0;
    Ok((mi / norm.max(f64::EPSILON)).min(1.0))
}

/// Distinct values of an ascending slice.
fn unique(sorted: &[u32]) -> Vec<u32> {
    let mut u = sorted.to_vec();
    u.dedup();
    u
}

/// Position of `v` in the ascending, duplicate-free `uniq` (v is known present).
fn rank(uniq: &[u32], v: u32) -> usize {
    uniq.binary_search(&v).unwrap_or_else(|i| i)
}
