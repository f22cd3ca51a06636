//! What defines a training run and what one epoch reports: shared by the loop ([`super::train`])
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
