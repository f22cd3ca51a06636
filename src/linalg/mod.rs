//! Dense linear algebra on f32 slices: matrix products through `gemm` or, for short inner
//! dimensions, a register kernel of our own, and reductions whose
//! order depends only on the lengths, so their bits never depend on threads or alignment.

mod lanes;
mod matmul;
mod reduce;
mod thin;

pub(crate) use lanes::{Arith, L8};
pub(crate) use matmul::{matmul, MatRef};
pub(crate) use reduce::{dot, lane_sum};
pub(crate) use thin::{matmul_rows, matmul_thin, uses_kernel as thin_kernel_applies};

/// Smooth, sign-changing test data: `f(i * step)` for `i` in `0..len`.
#[cfg(test)]
pub(crate) fn wave(len: usize, step: f32, f: fn(f32) -> f32) -> Vec<f32> {
    (0..len).map(|i| f(i as f32 * step)).collect()
}

/// An FNV-1a digest of f32 bit patterns, in order: the pinned bits of a product in one number.
#[cfg(test)]
pub(crate) fn bits_digest(bits: impl IntoIterator<Item = u32>) -> u64 {
    bits.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h ^ u64::from(v)).wrapping_mul(0x100_0000_01b3))
}
