//! The view of the caller's rows that k-means works on, without copying them.
//!
//! Normalisation is never materialised: each row keeps a scale factor
//! (1/||x||) that is folded into the dot products during assignment and into
//! the f64 sums during the centroid update. That keeps peak memory at the size
//! of `x` plus O(n) side vectors, even for `normalize = true`.

use rayon::prelude::*;

use super::ClusterError;

/// Minimum rows per task in the norm pass (amortises task overhead).
const SCAN_ROWS: usize = 4096;

/// Checks d > 0, that `x` holds exactly n x d values, and that rows fit 32-bit ids.
pub(super) fn check_shape(x: &[f32], n: usize, d: usize) -> Result<(), ClusterError> {
    if d == 0 {
        return Err(ClusterError::ZeroDimension);
    }
    let expected = n.saturating_mul(d);
    if expected != x.len() {
        return Err(ClusterError::ShapeMismatch { len: x.len(), n, d, expected });
    }
    let max = u32::MAX as usize;
    if n > max {
        return Err(ClusterError::TooManyPoints { n, max });
    }
    Ok(())
}

/// Position of the first NaN or infinity in `x`, scanning fixed chunks in parallel.
pub(crate) fn first_non_finite(x: &[f32]) -> Option<usize> {
    const CHUNK: usize = 1 << 16;
    x.par_chunks(CHUNK)
        .enumerate()
        .filter_map(|(c, chunk)| {
            // A branch-free OR over the chunk vectorises; only a dirty chunk is searched.
            let dirty = chunk.iter().fold(false, |acc, v| acc | !v.is_finite());
            dirty.then(|| c * CHUNK + chunk.iter().position(|v| !v.is_finite()).unwrap_or(0))
        })
        .min()
}

/// Fails with the first row (and column) holding a NaN or infinity.
pub(super) fn check_finite(x: &[f32], d: usize) -> Result<(), ClusterError> {
    match first_non_finite(x) {
        Some(pos) => Err(ClusterError::NonFinite { row: pos / d, col: pos % d }),
        None => Ok(()),
    }
}

/// Rows of `x` as k-means sees them: optionally a sorted subset, optionally
/// scaled to unit norm.
pub(super) struct Points<'a> {
    x: &'a [f32],
    d: usize,
    /// Original row ids (ascending, for cache-friendly gathers) when fitting on a sample.
    subset: Option<Vec<u32>>,
    /// Per visible row, the factor that turns the stored row into the visible one.
    scale: Option<Vec<f32>>,
    /// Per visible row, its squared L2 norm after scaling.
    sqnorm: Vec<f32>,
}

impl<'a> Points<'a> {
    /// Builds the view; `x` must already be shape- and finiteness-checked.
    pub(super) fn new(x: &'a [f32], d: usize, normalize: bool, subset: Option<Vec<u32>>) -> Self {
        let n = subset.as_ref().map_or(x.len() / d, Vec::len);
        let raw_row = |i: usize| {
            let r = subset.as_ref().map_or(i, |s| s[i] as usize);
            &x[r * d..(r + 1) * d]
        };
        // Each row is computed on its own, so the result is independent of how
        // rayon splits the range.
        let (sqnorm, scales): (Vec<f32>, Vec<f32>) = (0..n)
            .into_par_iter()
            .with_min_len(SCAN_ROWS)
            .map(|i| {
                let sq: f64 = raw_row(i).iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                if normalize && sq > 0.0 {
                    let f = (1.0 / sq.sqrt()) as f32;
                    ((sq * f64::from(f) * f64::from(f)) as f32, f)
                } else {
                    // A zero row stays zero rather than becoming NaN, as faiss's normalize_L2 does.
                    (sq as f32, 1.0)
                }
            })
            .unzip();
        let scale = normalize.then_some(scales);
        Self { x, d, subset, scale, sqnorm }
    }

    /// Number of visible rows.
    pub(super) fn len(&self) -> usize {
        self.sqnorm.len()
    }

    /// Feature dimension.
    pub(super) fn dim(&self) -> usize {
        self.d
    }

    /// Squared norms of the visible rows.
    pub(super) fn sqnorms(&self) -> &[f32] {
        &self.sqnorm
    }

    /// Stored row `i` and the factor that maps it to the visible row.
    #[inline]
    pub(super) fn row(&self, i: usize) -> (&'a [f32], f32) {
        let r = self.subset.as_ref().map_or(i, |s| s[i] as usize);
        let s = self.scale.as_ref().map_or(1.0, |s| s[i]);
        (&self.x[r * self.d..(r + 1) * self.d], s)
    }

    /// Visible rows `start..end` as a dense block plus per-row factors still to
    /// apply to their dot products. Contiguous data is borrowed in place; a
    /// sample is gathered (already scaled) into `buf`.
    pub(super) fn block<'b>(
        &'b self,
        start: usize,
        end: usize,
        buf: &'b mut Vec<f32>,
    ) -> (&'b [f32], Option<&'b [f32]>) {
        let d = self.d;
        match &self.subset {
            None => (&self.x[start * d..end * d], self.scale.as_ref().map(|s| &s[start..end])),
            Some(_) => {
                buf.clear();
                for i in start..end {
                    let (row, s) = self.row(i);
                    if self.scale.is_some() {
                        buf.extend(row.iter().map(|&v| v * s));
                    } else {
                        buf.extend_from_slice(row);
                    }
                }
                (&buf[..], None)
            }
        }
    }

    /// Visible row `i` as an owned, scaled vector (used to seed centroids).
    pub(super) fn visible_row(&self, i: usize) -> Vec<f32> {
        let (row, s) = self.row(i);
        if self.scale.is_some() {
            row.iter().map(|&v| v * s).collect()
        } else {
            row.to_vec()
        }
    }
}
