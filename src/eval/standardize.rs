//! Per-feature standardisation fitted on the train split, applied while
//! gathering rows into small blocks, so neither split is ever copied whole.

use rayon::prelude::*;

/// Rows per partial sum. The split is fixed, and partials are combined in
/// order, so the statistics do not depend on the thread count.
const STAT_ROWS: usize = 4096;

/// Applies `add(row, acc)` to every row, accumulating into a `2 d` f64
/// vector, in fixed row chunks processed in parallel and combined in chunk order.
fn column_sums(x: &[f32], d: usize, add: impl Fn(&[f32], &mut [f64]) + Sync) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = x
        .par_chunks(STAT_ROWS * d)
        .map(|block| {
            let mut acc = vec![0f64; 2 * d];
            for row in block.chunks_exact(d) {
                add(row, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0f64; 2 * d];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Train-split mean and inverse standard deviation of every feature.
pub(super) struct Standardizer {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Standardizer {
    /// Fits on the row-major `x` with `d` columns (population std, as scikit-learn's StandardScaler).
    pub(super) fn fit(x: &[f32], d: usize) -> Self {
        let n = (x.len() / d).max(1) as f64;
        // One pass over data shifted by the first row: sums of (x - x0) and
        // (x - x0)^2 in f64 keep the variance accurate even for features
        // with a large offset, without a second pass for the mean.
        let shift: Vec<f64> = x.iter().take(d).map(|&v| f64::from(v)).collect();
        let sums = column_sums(x, d, |row, acc| {
            for ((pair, &v), &s0) in acc.chunks_exact_mut(2).zip(row).zip(&shift) {
                let t = f64::from(v) - s0;
                pair[0] += t;
                pair[1] += t * t;
            }
        });
        let mut mean = Vec::with_capacity(d);
        let mut inv_std = Vec::with_capacity(d);
        for (pair, &s0) in sums.chunks_exact(2).zip(&shift) {
            let m = pair[0] / n;
            let var = (pair[1] / n - m * m).max(0.0);
            let sd = var.sqrt();
            mean.push((s0 + m) as f32);
            // Constant features keep scale 1, like StandardScaler; so does one whose spread is too
            // small for its inverse to be an f32 (below about 3e-39, as from values that underflowed):
            // an infinite scale would turn every row at the mean into NaN.
            let inv = (1.0 / sd) as f32;
            inv_std.push(if sd > 0.0 && sd.is_finite() && inv.is_finite() { inv } else { 1.0 });
        }
        Self { mean, inv_std }
    }

    /// Feature dimension.
    pub(super) fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Writes the standardised rows `rows` of `x` contiguously into `out`,
    /// in parallel over fixed pieces (each row is independent).
    pub(super) fn gather(&self, x: &[f32], rows: &[usize], out: &mut Vec<f32>) {
        const PIECE: usize = 64;
        let d = self.dim();
        out.resize(rows.len() * d, 0.0);
        out.par_chunks_mut(PIECE * d).zip(rows.par_chunks(PIECE)).for_each(|(dst, idx)| {
            for (o, &r) in dst.chunks_exact_mut(d).zip(idx) {
                let src = &x[r * d..(r + 1) * d];
                for (((o, &v), &m), &s) in o.iter_mut().zip(src).zip(&self.mean).zip(&self.inv_std) {
                    *o = (v - m) * s;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column of zeros but for one value near f32's smallest normal has a spread whose inverse
    /// is past f32's range: it is scaled as a constant column, and every standardised value is
    /// finite (an infinite scale made NaN of each zero).
    #[test]
    fn a_spread_too_small_to_invert_is_scaled_as_a_constant() {
        let d = 2;
        let mut x = Vec::new();
        for i in 0..300 {
            x.extend([i as f32, if i == 7 { 1e-38 } else { 0.0 }]);
        }
        let st = Standardizer::fit(&x, d);
        assert_eq!(st.inv_std[1], 1.0);
        assert!(st.inv_std[0].is_finite() && st.inv_std[0] != 1.0);
        let mut out = Vec::new();
        st.gather(&x, &(0..300).collect::<Vec<_>>(), &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
    }
}
