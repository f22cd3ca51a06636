//! Batch norm in train mode on a CUDA device as six kernels of cfrun's own (`kernels.cu`,
//! compiled to PTX by `build.rs`): with `CFRUN_BN_CUDA=fused` (a `cuda` build) the batch
//! statistics are two launches (partial sums over slices of each channel, then their totals),
//! the normalisation with its affine, residual and ReLU one, and the gradient three more.
//!
//! Why: on a GPU, [`super::batchnorm`]'s train mode is generic candle ops, about a dozen launches
//! forward (two reductions, the centring, the square, the square root, the division, the affine,
//! the residual, the ReLU) and as many backward, each with its own allocation. The GPU session of
//! 2026-12-04 (docs/gpu-2026-12-04) found the host issuing a training step as slowly as the card ran
//! it; resnet_gpu's 20 batch norms are some 500 of a step's launches. PyTorch runs each in one
//! cuDNN or native kernel per direction.
//!
//! Arithmetic: the statistics are summed in double, over fixed slices of each channel in a fixed
//! tree, the slices' sums then in order (the CPU's `super::bn_kernels` sums in double too), so
//! runs on one card repeat bit for bit; the values differ from the generic ops' by rounding. A
//! channel is spread over many blocks because one block per channel would leave most of the card
//! idle: 64 channels of 100,352 values each made 64 blocks for an H200's 132 SMs, each block's
//! threads 392 loads deep (counted, not timed: no card has run either version).
//!
//! Activations in f32, or in bf16 under mixed precision: then the kernels read and write bf16 and keep the statistics, gamma, beta and all arithmetic in
//! f32, which the generic path gets by casting the activations to f32 and back around every layer
//! (four full-size casts a layer, forward and backward). Other types, and eval mode (running
//! statistics, a few launches already), keep the generic ops.
//!
//! The default stays `ops` until a GPU session has run `check-device` with `fused` and measured
//! it against the default (scripts/gpu-bench.sh, `STEPS=ab`). Its kernels sum in their own
//! order, so `fused` keys results apart ([`super::math_switches`]).

#[cfg(feature = "cuda")]
mod ops;

use super::env_flag::{needs_build, Choice, SwitchError};
use candle_core::{DType, Result, Tensor};

/// Which batch norm runs in train mode on a CUDA device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnCuda {
    /// Generic candle ops ([`super::batchnorm`]): the default.
    Ops,
    /// This module's six kernels.
    Fused,
}

/// The switch, read from `CFRUN_BN_CUDA`.
pub static BN_CUDA: Choice<BnCuda> = Choice::new("CFRUN_BN_CUDA", &[("ops", BnCuda::Ops), ("fused", BnCuda::Fused)]);

/// Applies `CFRUN_BN_CUDA`; `fused` in a binary built without CUDA is an error.
pub fn from_env() -> std::result::Result<(), SwitchError> {
    BN_CUDA.from_env()?;
    let fused = BN_CUDA.forced() == Some(BnCuda::Fused);
    needs_build("CFRUN_BN_CUDA", "fused", fused, cfg!(feature = "cuda"), "scripts/build-cuda.sh, `--features cuda`")
}

/// Most values of a tensor the kernels take: they index in 32 bits. Larger ones keep the
/// generic ops.
pub const MAX_VALUES: usize = i32::MAX as usize;
/// Most channels: the statistics' three rows are indexed in 32 bits too.
pub const MAX_CHANNELS: usize = (u32::MAX / 3) as usize;

/// Whether a train-mode batch norm of `x` takes the fused kernels.
pub fn applies(x: &Tensor) -> bool {
    cfg!(feature = "cuda")
        && x.device().is_cuda()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && x.rank() == 4
        && (1..=MAX_VALUES).contains(&x.elem_count())
        && x.dims().get(1).is_some_and(|&c| c <= MAX_CHANNELS)
        && BN_CUDA.forced() == Some(BnCuda::Fused)
}

/// The batch statistics of `x` `(N, C, H, W)`: a `(3, C)` tensor, the means, the biased variances
/// and `1 / sqrt(variance + eps)`, outside the autograd graph (the gradient of [`normalize`]
/// accounts for them).
pub fn batch_stats(x: &Tensor, eps: f64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    return ops::batch_stats(x, eps);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, eps);
        candle_core::bail!("CFRUN_BN_CUDA=fused: a build without CUDA")
    }
}

/// `act(gamma * (x - mean) * invstd + beta + residual)` with `stats` from [`batch_stats`] of `x`
/// and `gb = [gamma; beta]` `(2, C)`; its gradient reaches `x`, `gb` and `residual`.
pub fn normalize(x: &Tensor, gb: &Tensor, stats: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    return ops::normalize(x, gb, stats, residual, relu);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, gb, stats, residual, relu);
        candle_core::bail!("CFRUN_BN_CUDA=fused: a build without CUDA")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_names_both_ways_and_the_cpu_never_fuses() {
        assert_eq!(BN_CUDA.parse("fused"), Ok(BnCuda::Fused));
        assert_eq!(BN_CUDA.parse("ops"), Ok(BnCuda::Ops));
        assert!(BN_CUDA.parse("cudnn").unwrap_err().to_string().contains("expected `ops` or `fused`"));
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &candle_core::Device::Cpu).unwrap();
        assert!(!applies(&x));
    }
}
