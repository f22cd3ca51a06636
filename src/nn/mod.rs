//! Networks, training, feature extraction and distillation on candle.
//!
//! - [`resnet`]: the ResNet for small NCHW images, its presets and its taps;
//! - [`conv`], [`batchnorm`]: fast CPU custom ops (im2col/GEMM convolution, fused
//!   BN + residual + ReLU) with candle fallbacks on other devices;
//! - [`train`]: the seeded, resumable training loop ([`sgd`], [`schedule`], [`data`]);
//! - [`extract`]: eval-mode features and logits;
//! - [`checkpoint`]: model files and training states (safetensors + JSON).
//!
//! Determinism: on CPU, the same inputs, config and seed give bit-identical weights, and a run
//! resumed from a [`TrainState`] ends bit-identical to an uninterrupted one. Every random draw
//! comes from a ChaCha8 stream derived from the seed, and every reduction in the custom
//! kernels has a fixed order.

pub mod batchnorm;
pub mod checkpoint;
pub mod conv;
mod cpu;
pub mod data;
mod error;
pub mod extract;
pub mod init;
pub mod resnet;
pub mod schedule;
pub mod sgd;
pub mod train;

#[cfg(test)]
mod tests;

pub use checkpoint::{build_model, load_model, save_model, ModelMeta, TrainState};
pub use data::{Augment, ImageData, Normalization};
pub use error::NnError;
pub use extract::{extract, logits, Pool};
pub use init::init_weights;
pub use resnet::{ResNet, ResNetConfig, Tap};
pub use schedule::Schedule;
pub use train::{train, EpochStats, NoObserver, Targets, TrainConfig, TrainObserver, Trained};

/// Whether the CPU custom ops ([`conv`], [`batchnorm`]) are used; on by default. Turning it off
/// runs candle's own conv2d and generic BN ops instead: a switch for benchmarks and debugging.
static FAST_CPU_KERNELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Enables or disables the fast CPU kernels process-wide (see `FAST_CPU_KERNELS`).
pub fn set_fast_cpu_kernels(enabled: bool) {
    FAST_CPU_KERNELS.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// True when a tensor on `device` with `dtype` should use the custom CPU kernels.
pub(crate) fn use_fast_kernels(device: &candle_core::Device, dtype: candle_core::DType) -> bool {
    device.is_cpu() && dtype == candle_core::DType::F32 && FAST_CPU_KERNELS.load(std::sync::atomic::Ordering::Relaxed)
}

impl Trained {
    /// Writes the model as [`save_model`] does (safetensors + `.json` side file).
    pub fn save(&self, path: &std::path::Path) -> Result<(), NnError> {
        save_model(path, &self.weights, &self.arch, &self.norm)
    }
}
