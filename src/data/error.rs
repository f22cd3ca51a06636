//! The one error type of the data module.

use std::path::PathBuf;

/// Everything that can go wrong while finding, verifying, parsing or subsetting data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data set name that is not in the catalogue.
    #[error("unknown data set `{given}`; valid names are: {valid}")]
    UnknownDataset {
        /// What the user wrote.
        given: String,
        /// Comma-separated list of accepted names.
        valid: String,
    },

    /// A file-system operation failed.
    #[error("could not {action} `{}`: {source}", path.display())]
    Io {
        /// What was being attempted, as a verb phrase ("read", "create directory").
        action: String,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file's content does not have the pinned SHA-256.
    #[error(
        "{file} at `{}` has SHA-256 {actual} but {expected} was expected; it is corrupt, \
         truncated or a different version: delete or replace it (or run `cfrun data fetch` \
         to get a verified copy)",
        path.display()
    )]
    HashMismatch {
        /// Logical file name, e.g. `train-images-idx3-ubyte`.
        file: String,
        /// Where the bad copy was found.
        path: PathBuf,
        /// Pinned hash.
        expected: String,
        /// Hash of what was read.
        actual: String,
    },

    /// A file's (decompressed) size differs from the pinned size.
    #[error(
        "{file} at `{}` is {actual} bytes after decompression but {expected} were expected; \
         it is truncated or a different version: delete or replace it",
        path.display()
    )]
    SizeMismatch {
        /// Logical file name.
        file: String,
        /// Where it was found.
        path: PathBuf,
        /// Pinned size in bytes.
        expected: u64,
        /// Size actually read (capped at expected + 1).
        actual: u64,
    },

    /// An IDX file is malformed.
    #[error("{file} is not a valid IDX file: {reason}")]
    Idx {
        /// Logical file name or path.
        file: String,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// A numpy pickle does not have the expected layout.
    #[error("{file} is not the expected numpy pickle: {reason}")]
    Pickle {
        /// Logical file name or path.
        file: String,
        /// What is wrong and what was expected.
        reason: String,
    },

    /// A label is outside `0..num_classes`.
    #[error(
        "{file}: label {value} at index {index} is not below the class count {num_classes}; \
         the file does not belong to this data set"
    )]
    BadLabel {
        /// Logical file name.
        file: String,
        /// Position of the bad label.
        index: usize,
        /// The label value read.
        value: i64,
        /// Number of classes the data set has.
        num_classes: usize,
    },

    /// Every source was tried and none produced verified files.
    #[error(
        "could not obtain the {dataset} files; sources tried, in order:\n{attempts}\n\
         to fix: {hint}"
    )]
    NotAvailable {
        /// Data set name.
        dataset: String,
        /// One line per source: what was tried and why it failed.
        attempts: String,
        /// The command or setting that would make the data available.
        hint: String,
    },

    /// A subset larger than the split was requested.
    #[error(
        "{split} subset of {requested} requested but the {split} split has only {available} \
         examples; ask for at most {available} (or leave the size unset for all of them)"
    )]
    SubsetTooLarge {
        /// `train` or `test`.
        split: String,
        /// Requested count.
        requested: usize,
        /// Examples available.
        available: usize,
    },

    /// An option value that cannot work.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// Option name as the user would write it.
        option: String,
        /// Why it is invalid and what range is accepted.
        reason: String,
    },
}

impl DataError {
    /// Builds an [`DataError::Io`] from an action phrase, a path and the error.
    pub(crate) fn io(action: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { action: action.into(), path: path.into(), source }
    }
}
