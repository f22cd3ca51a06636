//! The convolution on cuDNN with a plan made once per geometry: with `CFRUN_CONV_CUDNN=planned`
//! (the `cudnn` build only) the forward, the input gradient and the weight gradient are each one
//! cuDNN call whose descriptors, algorithm and workspace are kept per thread and device and reused
//! (`plans`), carried by the custom ops of `ops`.
//!
//! Why: candle 0.11.1's cuDNN forward builds four descriptors, asks cuDNN's heuristics for an
//! algorithm and allocates and zeroes a workspace on every call; cfrun then copies its output into
//! the op that carries the backward of [`super::conv_device`], whose input gradient is five
//! launches around another such forward and whose weight gradient an im2col and a GEMM. The GPU
//! session of 2026-12-04 (docs/gpu-2026-12-04) found the host issuing a forward in 24 ms, as long as
//! the card took to run it, so host work per call is the lead; PyTorch keeps such plans per
//! geometry and runs both gradients in cuDNN.
//!
//! Bits: in f32 the forward asks the heuristics candle asks, so it runs the algorithm candle's runs
//! and gives the same output (bf16 and f16 ask for tensor cores and accumulate in f32, see
//! `plans`, so their bits may differ from candle's). The gradients are cuDNN's: the heuristics'
//! first choice, unless cuDNN documents it as non-deterministic (it adds with atomics:
//! backward-data algorithm 0, backward-filter 0 and 3), then algorithm 1, deterministic, so runs
//! on one card repeat bit for bit (where cuDNN lacks algorithm 1 for a geometry, its own choice,
//! with a warning); they differ from [`super::conv_device`]'s by rounding. Math in f32: cuDNN's
//! default, TF32 on Ampere and newer unless `NVIDIA_TF32_OVERRIDE=0`, for all three products, as
//! PyTorch's default; the default path's weight gradient is a cuBLAS GEMM in full f32 unless
//! `CFRUN_GEMM_TF32=1`, so an A/B against it measures TF32 in that product as well.
//!
//! The default stays `per-call` (candle's forward, cfrun's backward) until a GPU session has run
//! `check-device` with `planned` and measured it against the default (scripts/gpu-bench.sh,
//! `STEPS=ab`). Its algorithms differ from the default's by rounding, so `planned` keys results
//! apart ([`super::math_switches`]).

#[cfg(feature = "cudnn")]
mod ops;
#[cfg(feature = "cudnn")]
mod plans;

use super::env_flag::{needs_build, Choice, SwitchError};
use candle_core::{DType, Device, Result, Tensor};

/// How convolutions on a CUDA device call cuDNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planning {
    /// candle's `conv2d` (descriptors and algorithm anew on each call) and
    /// [`super::conv_device`]'s backward: the default.
    PerCall,
    /// This module's: one plan per geometry, and cuDNN's own gradients.
    Planned,
}

/// The switch, read from `CFRUN_CONV_CUDNN`.
pub static CONV_CUDNN: Choice<Planning> =
    Choice::new("CFRUN_CONV_CUDNN", &[("per-call", Planning::PerCall), ("planned", Planning::Planned)]);

/// Applies `CFRUN_CONV_CUDNN`; `planned` in a binary built without cuDNN is an error, not a
/// silent fall back to the default.
pub fn from_env() -> std::result::Result<(), SwitchError> {
    CONV_CUDNN.from_env()?;
    let planned = CONV_CUDNN.forced() == Some(Planning::Planned);
    needs_build("CFRUN_CONV_CUDNN", "planned", planned, cfg!(feature = "cudnn"), CUDNN_BUILD)
}

/// The build that has cuDNN.
const CUDNN_BUILD: &str = "cfrun-cudnn of scripts/build-cuda.sh, `--features cudnn`";

/// Whether convolutions on `device` take the planned path.
pub fn applies(device: &Device) -> bool {
    cfg!(feature = "cudnn") && device.is_cuda() && CONV_CUDNN.forced() == Some(Planning::Planned)
}

/// `conv2d(x, w)` through the planned path when it [`applies`] to `x`'s device and both are of
/// one type cuDNN convolves in (f32, bf16, f16), else `None` (the default path takes the rest).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Option<Result<Tensor>> {
    let convolvable = matches!(x.dtype(), DType::F32 | DType::BF16 | DType::F16) && w.dtype() == x.dtype();
    if !applies(x.device()) || !convolvable {
        return None;
    }
    #[cfg(feature = "cudnn")]
    return Some(ops::conv2d(x, w, stride, padding));
    #[cfg(not(feature = "cudnn"))]
    {
        let _ = (w, stride, padding);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_names_both_ways() {
        assert_eq!(CONV_CUDNN.parse("planned"), Ok(Planning::Planned));
        assert_eq!(CONV_CUDNN.parse("per-call"), Ok(Planning::PerCall));
        let err = CONV_CUDNN.parse("plan").unwrap_err().to_string();
        assert!(err.contains("CFRUN_CONV_CUDNN") && err.contains("`per-call` or `planned`"), "{err}");
        let refused = needs_build("CFRUN_CONV_CUDNN", "planned", true, false, CUDNN_BUILD).unwrap_err().to_string();
        assert!(refused.contains("built without it (cfrun-cudnn"), "{refused}");
    }

    /// The CPU never takes it, forced or not: the CPU's convolution and its bits stay the fast op's.
    #[test]
    fn the_cpu_never_takes_the_planned_path() {
        let x = Tensor::zeros((1, 2, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 2, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(!applies(&Device::Cpu));
        assert!(conv2d(&x, &w, 1, 1).is_none());
    }
}
