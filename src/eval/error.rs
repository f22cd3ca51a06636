//! Errors from the linear probe and the clustering metrics.

use thiserror::Error;

/// Why an evaluation refused its input; each message says how to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EvalError {
    /// A split or labelling has no rows.
    #[error("the {what} is empty; a probe or metric needs at least one row")]
    Empty {
        /// Which input was empty (e.g. "train split").
        what: &'static str,
    },
    /// Two inputs that must line up have different lengths.
    #[error("{what}: {left} vs {right} entries; they must have one entry per row")]
    LengthMismatch {
        /// Which pair of inputs disagrees.
        what: &'static str,
        /// Length of the first input.
        left: usize,
        /// Length of the second input (or the count implied by the features).
        right: usize,
    },
    /// A feature buffer is not a whole number of d-wide rows.
    #[error("{what} holds {len} values, which is not a multiple of d = {d}; pass row-major n x d features")]
    RaggedFeatures {
        /// Which split.
        what: &'static str,
        /// Buffer length.
        len: usize,
        /// Feature dimension.
        d: usize,
    },
    /// The feature dimension is zero.
    #[error("feature dimension d is 0; the probe needs at least one feature")]
    ZeroDimension,
    /// Fewer than two classes.
    #[error("num_classes = {num_classes}; a classifier needs at least 2 classes")]
    TooFewClasses {
        /// The number of classes passed.
        num_classes: usize,
    },
    /// A label is outside `0..num_classes`.
    #[error("{what} row {row} has label {label} but num_classes = {num_classes}; labels must be 0..num_classes-1 (remap them, or raise num_classes)")]
    LabelOutOfRange {
        /// Which split.
        what: &'static str,
        /// Row index of the offending label.
        row: usize,
        /// The offending label.
        label: u32,
        /// Declared number of classes.
        num_classes: usize,
    },
    /// A feature is NaN or infinite.
    #[error("{what} row {row} has a non-finite feature (NaN or infinity) in column {col}; drop or impute such rows")]
    NonFinite {
        /// Which split.
        what: &'static str,
        /// Row of the first offending value.
        row: usize,
        /// Column of the first offending value.
        col: usize,
    },
    /// Training blew up: an epoch's mean loss is NaN or infinite, so the weights are no model.
    #[error(
        "the linear probe diverged: the mean loss of epoch {epoch} of {epochs} is {loss} (lr {lr}, weight_decay \
         {weight_decay}); lower `lr` or `weight_decay`"
    )]
    Diverged {
        /// The epoch (1-based; an iteration for L-BFGS).
        epoch: usize,
        /// Epochs (or iterations) asked for.
        epochs: usize,
        /// Its mean loss.
        loss: f64,
        /// The base learning rate.
        lr: f32,
        /// The weight decay.
        weight_decay: f32,
    },
    /// The classifier's weights, with the copies the solver keeps, would not fit in memory.
    #[error(
        "a classifier of {d} features x {num_classes} classes needs about {need} ({copies} copies of its weights and \
         the logits of the rows this solver holds at once), more than this machine's {have} of memory; reduce the features or the classes"
    )]
    TooLarge {
        /// Feature columns.
        d: usize,
        /// Classes.
        num_classes: usize,
        /// The weights' copies the solver holds at once.
        copies: u64,
        /// Bytes needed, for people.
        need: String,
        /// Bytes this machine has, for people.
        have: String,
    },
    /// The loss with every weight zero is not finite: the standardised features themselves are not.
    #[error(
        "the linear probe's loss with every weight zero is {loss}: a standardised feature overflows f32 (a \
         feature lies about 3.4e38 from its mean); scale the features down"
    )]
    NotFiniteAtStart {
        /// The loss at the start.
        loss: f64,
    },
    /// A hyper-parameter is out of its valid range.
    #[error("invalid probe setting: {0}")]
    BadConfig(String),
    /// A tensor operation on the device failed.
    #[error("linear probe on the device failed: {0}")]
    Device(String),
}
