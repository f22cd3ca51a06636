//! Self-supervised pretext data (paper §4.2): the pixel-level pieces of RotNet and Jigsaw and
//! the multi-object canvases of the VOC07-like target. Everything here is plain u8 image
//! arithmetic on NCHW buffers, seeded where it draws, and independent of candle; the networks
//! that consume it live in [`crate::nn::jigsaw`] and the ops in `src/ops/`.
//!
//! - [`rotation`]: an image at 0/90/180/270 degrees, labelled by the angle (RotNet);
//! - [`permutations`]: the maximal-Hamming-distance permutation set of Noroozi & Favaro;
//! - [`tiles`]: upsampling and cutting a 3x3 grid of jittered tiles, shuffled by a permutation;
//! - [`canvas`]: canvases of several objects with their multi-hot label sets.

pub mod canvas;
pub mod permutations;
pub mod rotation;
pub mod tiles;

/// Why a pretext transform refused its input.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SelfsupError {
    /// Shapes or settings that cannot work together; the message says which and why.
    #[error("{0}")]
    Invalid(String),
}

impl SelfsupError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        SelfsupError::Invalid(msg.into())
    }
}
