//! Whether cuBLAS may run f32 matrix products on TF32 tensor cores: a process-wide switch for the
//! GPU, `CFRUN_GEMM_TF32=1` (default `0`, full f32: candle's default and PyTorch's for matmuls).
//!
//! Why it exists: with the `cudnn` build, the convolution's forward and input gradient run in
//! cuDNN, whose default math lets f32 convolutions use TF32 on Ampere and newer GPUs (PyTorch's
//! default for convolutions too), while the weight gradient of [`super::conv_device`] is a cuBLAS
//! GEMM in full f32. Turning this on gives the third product the same arithmetic as the other two,
//! as PyTorch does, and the GPU bench measures the difference.
//!
//! It is process-wide: every f32 GEMM on the GPU follows it, k-means's distance products and the
//! linear probe's included. There TF32's error is not mere rounding noise: k-means ranks centroids
//! by `|c|^2 - 2 x.c`, whose error grows with `|x| |c|`, so near ties can flip. It is meant for
//! measuring training. Unlike the device it enters the recipe key when on
//! ([`super::math_switches`]), so a study run with it never shares results with full f32. The
//! CPU has no TF32: there it does nothing but key the results apart.

use std::sync::atomic::{AtomicBool, Ordering};

use super::env_flag::{flag_from_env, SwitchError};

/// The environment variable of the switch.
pub const GEMM_TF32_ENV: &str = "CFRUN_GEMM_TF32";

/// What [`set_gemm_tf32`] last asked for: candle's own flag cannot say, since without CUDA its
/// stand-in answers `true`.
static ON: AtomicBool = AtomicBool::new(false);

/// Lets (or stops) cuBLAS use TF32 for f32 GEMMs, process-wide.
pub fn set_gemm_tf32(on: bool) {
    ON.store(on, Ordering::Relaxed);
    candle_core::cuda::set_gemm_reduced_precision_f32(on);
}

/// Whether TF32 was asked for ([`set_gemm_tf32`], or [`GEMM_TF32_ENV`] at start-up).
pub fn gemm_tf32() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Applies [`GEMM_TF32_ENV`] when it is set: `1` on, `0` off, anything else an error.
pub fn gemm_tf32_from_env() -> Result<(), SwitchError> {
    if let Some(on) = flag_from_env(GEMM_TF32_ENV)? {
        set_gemm_tf32(on);
        if on {
            tracing::debug!("{GEMM_TF32_ENV}=1: cuBLAS may run f32 GEMMs on TF32 tensor cores");
        }
    }
    Ok(())
}
