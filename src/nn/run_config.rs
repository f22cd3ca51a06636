//! What defines a training run and what one epoch reports: shared by the loop ([`super::train()`])
//! and its checkpoints ([`super::checkpoint`]), which both need them and neither owns them.

use serde::{Deserialize, Serialize};

use super::arch::Arch;
use super::data::Augment;
use super::schedule::Schedule;

/// Everything that defines a training run (and, with the data, its result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network.
    pub arch: Arch,
    /// Total epochs.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay on conv and linear weights.
    pub weight_decay: f64,
    /// Epochs of linear warm-up.
    pub warmup_epochs: usize,
    /// Decay after warm-up.
    pub schedule: Schedule,
    /// Training augmentation.
    pub augment: Augment,
    /// Seed of the initial weights, shuffles and augmentations.
    pub seed: u64,
    /// Arithmetic of activations and convolutions. Left out of the JSON when f32, so states
    /// saved before it existed still resume.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

/// Why `precision = "bf16"` is refused on the CPU.
pub const BF16_ON_CPU: &str = "precision = \"bf16\" needs a GPU: candle's CPU backend has no bf16 matrix multiply";

/// Arithmetic of a training run's activations and convolutions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (on the CPU: bit-for-bit deterministic).
    #[default]
    F32,
    /// Mixed precision: bf16 activations and convolutions; f32 master weights, batch norm
    /// (statistics and arithmetic), pooling, head and loss. GPU only (candle's CPU backend has
    /// no bf16 matmul).
    Bf16,
    /// As `Bf16` with f16 (more mantissa, less range, no loss scaling): runs on the CPU too.
    F16,
}

impl Precision {
    /// True for the default, f32.
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The name configs use (`f32`, `bf16`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The activations' dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
            Precision::F16 => candle_core::DType::F16,
        }
    }
}

/// Summary of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 0-based epoch index.
    pub epoch: usize,
    /// Mean training loss over the epoch's images.
    pub loss: f64,
    /// Training accuracy (train-mode forward, augmented images) against the labels.
    pub accuracy: f64,
    /// Learning rate of the epoch's first step.
    pub lr: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
}
