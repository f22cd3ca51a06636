//! The one error type of the `nn` module.

use std::path::PathBuf;

/// Everything that can go wrong while building, training or running a network.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor operation failed inside candle.
    #[error("candle: {}", crate::candle_error::Brief(.0))]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON side file could not be read or written.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The caller passed inconsistent inputs (shapes, lengths, configuration).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A saved state or model does not match what it is being used with.
    #[error("mismatch: {0}")]
    Mismatch(String),
    /// The training observer asked to stop or failed.
    #[error("observer: {0}")]
    Observer(String),
}

impl NnError {
    /// Shorthand for [`NnError::Invalid`].
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        NnError::Invalid(msg.into())
    }
}
