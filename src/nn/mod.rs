//! Networks, training, feature extraction and distillation on candle.
//!
//! - [`resnet`]: the ResNet for small NCHW images, its presets and its taps;
//! - [`r2plus1d`]: R(2+1)D for clips (NCTHW), with the same taps; [`arch`] puts both behind one
//!   type for training, checkpoints and extraction;
//! - [`conv`], [`batchnorm`]: fast CPU custom ops (im2col/GEMM convolution, fused
//!   BN + residual + ReLU) with candle fallbacks on other devices; [`conv_device`]: the
//!   convolution's backward off the CPU fast path; [`conv_cudnn`]: the whole convolution on
//!   cuDNN with plans kept per geometry, [`bn_cuda`]: train-mode batch norm in six CUDA kernels
//!   of cfrun's own (switches of the GPU builds);
//! - [`mod@train`]: the seeded, resumable training loop ([`sgd`], [`schedule`], [`data`]);
//! - [`jigsaw`]: the Jigsaw pretext network (shared trunk over 9 tiles) and its training loop;
//! - [`mod@extract`]: eval-mode features and logits;
//! - [`checkpoint`]: model files and training states (safetensors + JSON).
//!
//! Determinism: on CPU, the same inputs, config and seed give bit-identical weights, and a run
//! resumed from a [`TrainState`] ends bit-identical to an uninterrupted one. Every random draw
//! comes from a ChaCha8 stream derived from the seed, and every reduction in the custom
//! kernels has a fixed order.

pub mod arch;
pub mod backward_switch;
pub mod batchnorm;
mod bits;
pub mod bn_cuda;
mod bn_kernels;
pub mod checkpoint;
pub mod conv;
pub mod conv_cudnn;
pub mod conv_device;
mod cpu;
pub mod cuda_params;
#[cfg(feature = "cuda")]
mod cuda_views;
pub mod data;
mod dense;
pub mod env_flag;
mod error;
mod eval_unit;
pub mod extract;
mod fused;
mod fused_video;
pub mod gemm_tf32;
pub mod im2col;
pub mod init;
pub mod jigsaw;
mod jigsaw_resident;
pub mod layer_log;
pub mod math_switches;
pub mod pipeline;
mod precomputed;
pub mod quadrants;
pub mod r2plus1d;
mod resident;
mod resident_tags;
pub mod resnet;
pub mod run_config;
pub mod running_stats;
pub mod schedule;
pub mod sgd;
mod shifted;
pub mod step_profile;
pub mod temporal;
mod temporal_conv;
pub mod train;
mod winograd;

#[cfg(test)]
mod tests;

pub use arch::{Arch, Net, PRESETS};
pub use checkpoint::{build_model, load_model, save_model, ModelMeta, TrainState};
pub use data::{Augment, ImageData, Normalization};
pub use error::NnError;
pub use extract::{extract, extract_taps, logits, Pool};
pub use init::init_weights;
pub use jigsaw_resident::puzzles_differing_from_host;
pub use r2plus1d::{R2Plus1D, R2Plus1DConfig};
pub use resident::batches_differing_from_host;
pub use resident_tags::spreads_differing_from_host;
pub use resnet::{ResNet, ResNetConfig, Tap};
pub use run_config::{EpochStats, Precision, TrainConfig};
pub use schedule::Schedule;
pub use train::{random_network, train, NoObserver, Targets, TrainObserver, Trained, Truth};

/// Applies the process-wide measurement switches set in the environment ([`backward_switch`],
/// [`conv_cudnn`], [`bn_cuda`], [`pipeline`], [`sgd::update`], [`running_stats`], [`im2col`], [`step_profile`],
/// [`gemm_tf32`], [`cuda_params`]);
/// the first bad value is the error.
pub fn switches_from_env() -> Result<(), env_flag::SwitchError> {
    cuda_params::CUDA_PARAMS.from_env()?;
    backward_switch::from_env()?;
    conv_cudnn::from_env()?;
    bn_cuda::from_env()?;
    pipeline::PIPELINE.from_env()?;
    sgd::update::UPDATE.from_env()?;
    running_stats::STATS_UPDATE.from_env()?;
    im2col::COLUMNS.from_env()?;
    step_profile::step_profile_from_env()?;
    gemm_tf32::gemm_tf32_from_env()
}

/// Which CPU implementation the layers use; a process-wide switch for benchmarks and debugging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuKernels {
    /// candle's own conv2d and generic BN ops (the baseline).
    Candle = 0,
    /// The custom conv and BN ops, one candle op per layer.
    Layers = 1,
    /// As `Layers`, plus whole BasicBlocks and the stem fused into one op in train mode, and
    /// R(2+1)D's stem and blocks fused in train and eval mode (the default).
    Fused = 2,
}

static CPU_KERNELS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(CpuKernels::Fused as u8);

/// Selects the CPU kernels process-wide (default [`CpuKernels::Fused`]); results agree to
/// float rounding, not bit for bit.
pub fn set_cpu_kernels(kernels: CpuKernels) {
    CPU_KERNELS.store(kernels as u8, std::sync::atomic::Ordering::Relaxed);
}

thread_local! {
    /// This thread's override of [`CPU_KERNELS`], set by [`with_cpu_kernels`].
    static CPU_KERNELS_HERE: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with `kernels` on this thread only (the layers choose their kernels on the thread
/// that builds the graph), so that other threads, such as tests running beside `check-device`'s
/// own, keep theirs; the previous choice comes back even if `f` panics.
pub fn with_cpu_kernels<T>(kernels: CpuKernels, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<u8>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CPU_KERNELS_HERE.with(|k| k.set(self.0));
        }
    }
    let _restore = Restore(CPU_KERNELS_HERE.with(|k| k.replace(Some(kernels as u8))));
    f()
}

fn cpu_kernels() -> u8 {
    CPU_KERNELS_HERE.with(|k| k.get()).unwrap_or_else(|| CPU_KERNELS.load(std::sync::atomic::Ordering::Relaxed))
}

/// True when a tensor on `device` with `dtype` should use the custom CPU kernels.
pub(crate) fn use_fast_kernels(device: &candle_core::Device, dtype: candle_core::DType) -> bool {
    device.is_cpu() && dtype == candle_core::DType::F32 && cpu_kernels() >= CpuKernels::Layers as u8
}

/// True when training-mode blocks should run as fused ops.
pub(crate) fn use_fused_kernels(device: &candle_core::Device, dtype: candle_core::DType) -> bool {
    use_fast_kernels(device, dtype) && cpu_kernels() >= CpuKernels::Fused as u8
}

impl Trained {
    /// Writes the model as [`save_model`] does (safetensors + `.json` side file).
    pub fn save(&self, path: &std::path::Path) -> Result<(), NnError> {
        save_model(path, &self.weights, &self.arch, &self.norm)
    }
}
