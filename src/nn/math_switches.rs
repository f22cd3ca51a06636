//! The measurement switches that change what a network computes, not only how fast, so that a
//! result computed under one is never served for the default arithmetic.
//!
//! Most of the process-wide switches are A/B tools that reorder work but keep the bits (the
//! resident pipeline, the flat SGD update, the batched running statistics, the im2col columns;
//! each has a test or a `check-device` row comparing both sides bit for bit), and they stay out
//! of every key. These do not: candle's backward passes sum in another order (on the CPU too,
//! wherever the fast kernels do not apply, such as `precision = "f16"`), cuDNN's planned
//! algorithms and the fused batch-norm kernels sum in theirs, and TF32 rounds f32 products to a
//! 10-bit mantissa. A run with any of them away from its default keys every stage apart (the
//! recipe's `math`, [`crate::cache::Recipe`]); by default the map is empty and keys are as they
//! were. The device itself stays out of the key (README, "Devices").

use std::collections::BTreeMap;

use super::backward_switch::{BN, CONV};
use super::bn_cuda::BN_CUDA;
use super::conv_cudnn::CONV_CUDNN;
use super::gemm_tf32::{gemm_tf32, GEMM_TF32_ENV};

/// Each switch set away from its default that changes a network's bits, as its environment
/// variable to its value; empty when every one is at its default.
pub fn in_force() -> BTreeMap<String, String> {
    let mut on = BTreeMap::new();
    let mut away = |env: &str, value: Option<&str>, default: &str| {
        if let Some(value) = value.filter(|v| *v != default) {
            on.insert(env.to_string(), value.to_string());
        }
    };
    away(CONV.env(), CONV.forced_name(), "cfrun");
    away(BN.env(), BN.forced_name(), "cfrun");
    away(CONV_CUDNN.env(), CONV_CUDNN.forced_name(), "per-call");
    away(BN_CUDA.env(), BN_CUDA.forced_name(), "ops");
    away(GEMM_TF32_ENV, gemm_tf32().then_some("1"), "0");
    on
}
