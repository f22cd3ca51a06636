//! Errors from k-means fitting and assignment.

use thiserror::Error;

/// Why k-means refused its input; each message says how to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ClusterError {
    /// Fewer than two clusters were requested.
    #[error("k-means needs k >= 2 clusters, got k = {k}; with one cluster every point gets label 0, so use the data mean instead")]
    TooFewClusters {
        /// The requested number of clusters.
        k: usize,
    },
    /// More clusters than points to fit them on.
    #[error("k = {k} clusters but only {n} points to fit them on; every cluster needs at least one point, so lower k to at most {n} or supply more data")]
    TooManyClusters {
        /// The requested number of clusters.
        k: usize,
        /// The number of points available for fitting.
        n: usize,
    },
    /// The feature dimension is zero.
    #[error("feature dimension d is 0; k-means needs at least one feature per point")]
    ZeroDimension,
    /// The buffer length disagrees with the stated shape.
    #[error("x holds {len} values but n * d = {n} * {d} = {expected}; pass x as a row-major n x d buffer")]
    ShapeMismatch {
        /// Length of the buffer that was passed.
        len: usize,
        /// Claimed number of rows.
        n: usize,
        /// Claimed number of columns.
        d: usize,
        /// n * d, or usize::MAX when that overflows.
        expected: usize,
    },
    /// A NaN or infinity was found in the data.
    #[error("row {row} has a non-finite value (NaN or infinity) in column {col}; drop or impute such rows before clustering")]
    NonFinite {
        /// Zero-based index of the first offending row.
        row: usize,
        /// Zero-based column of the first offending value in that row.
        col: usize,
    },
    /// The initial centroids passed to `fit_from` have the wrong size.
    #[error("initial centroids hold {len} values but k * d = {k} * {d} = {expected}; pass k row-major centroids of dimension d")]
    BadInitialCentroids {
        /// Length of the centroid buffer that was passed.
        len: usize,
        /// Requested number of clusters.
        k: usize,
        /// Feature dimension.
        d: usize,
        /// k * d.
        expected: usize,
    },
    /// An initial centroid contains NaN or infinity.
    #[error("initial centroid {centroid} has a non-finite value; centroids must be finite")]
    NonFiniteCentroid {
        /// Index of the offending centroid.
        centroid: usize,
    },
    /// `max_points_per_centroid` was set to zero.
    #[error("max_points_per_centroid = Some(0) would fit on no points; use None to fit on all points, or a value such as 256 (faiss's default)")]
    ZeroSampleSize,
    /// More points than 32-bit indices can address.
    #[error("{n} points exceed the supported maximum of {max} (point indices are 32-bit); fit on a sample via max_points_per_centroid")]
    TooManyPoints {
        /// Number of points passed.
        n: usize,
        /// Largest supported count.
        max: usize,
    },
    /// A model whose fields disagree with each other was passed to `assign`.
    #[error("model is inconsistent: it claims k = {k}, dim = {dim} but stores {len} centroid values; use a model produced by fit")]
    BadModel {
        /// Claimed number of clusters.
        k: usize,
        /// Claimed dimension.
        dim: usize,
        /// Actual number of stored centroid values.
        len: usize,
    },
    /// A tensor operation on the device failed.
    #[error("k-means on the device failed: {0}")]
    Device(String),
}
