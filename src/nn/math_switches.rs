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

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::backward_switch::{BN, CONV};
use super::bn_cuda::BN_CUDA;
use super::conv_cudnn::CONV_CUDNN;
use super::gemm_tf32::{gemm_tf32, GEMM_TF32_ENV};

thread_local! {
    /// What [`as_if`] has this thread take for the switches in force.
    static AS_IF: RefCell<Option<BTreeMap<String, String>>> = const { RefCell::new(None) };
}

/// Runs `f` with `math` taken for the switches in force on this thread: `gc` works out the keys
/// of runs made under other switches than its own, which it must keep.
pub fn as_if<R>(math: &BTreeMap<String, String>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<BTreeMap<String, String>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            AS_IF.with(|a| *a.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(AS_IF.with(|a| a.borrow_mut().replace(math.clone())));
    f()
}

/// Each switch set away from its default that changes a network's bits, as its environment
/// variable to its value; empty when every one is at its default.
pub fn in_force() -> BTreeMap<String, String> {
    if let Some(math) = AS_IF.with(|a| a.borrow().clone()) {
        return math;
    }
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

/// `CFRUN_GEMM_TF32=1 CFRUN_CONV_BACKWARD=candle`, as a person would set them; `none` for none.
pub fn describe(math: &BTreeMap<String, String>) -> String {
    if math.is_empty() {
        return "none".to_string();
    }
    math.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_if` holds on its thread for its closure only, even through a panic, and other
    /// threads keep the process's switches.
    #[test]
    fn as_if_holds_for_its_closure_on_its_thread() {
        let before = in_force();
        let tf32 = BTreeMap::from([(GEMM_TF32_ENV.to_string(), "1".to_string())]);
        as_if(&tf32, || {
            assert_eq!(in_force(), tf32);
            std::thread::scope(|s| assert_eq!(s.spawn(in_force).join().unwrap(), before));
        });
        assert_eq!(in_force(), before);
        let _ = std::panic::catch_unwind(|| as_if(&tf32, || panic!("inside")));
        assert_eq!(in_force(), before);
    }
}
