//! Small helpers shared by the CPU kernels: borrowing f32 data out of candle storage and
//! fixed-order reductions (matrix products go through [`crate::linalg`]).
//!
//! Every kernel in this module family reduces in an order that depends only on the tensor
//! shapes, never on how rayon schedules the work, so results are bit-for-bit reproducible.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};
use std::mem::MaybeUninit;

use crate::linalg::lane_sum;

/// The contiguous f32 slice that `layout` selects in `storage`.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("cpu kernel: input must be contiguous"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (call `.contiguous()` first).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(f32_slice(cpu, layout)?)),
        _ => bail!("cpu kernel: tensor is not on the CPU"),
    }
}

/// Sum of a slice (see [`lane_sum`] for the order).
#[inline]
pub(crate) fn sum(a: &[f32]) -> f64 {
    lane_sum(a, a, |x, _| x)
}

/// `sum a[i] * (x[i] - mean)`, the centred values computed on the fly rather than written out.
#[inline]
pub(crate) fn centred_dot(a: &[f32], x: &[f32], mean: f32) -> f64 {
    lane_sum(a, x, |u, v| u * (v - mean))
}

/// `sum (x[i] - mean)^2`, in the same way.
#[inline]
pub(crate) fn centred_squares(x: &[f32], mean: f32) -> f64 {
    lane_sum(x, x, |u, _| (u - mean) * (u - mean))
}

/// `dx` split into the `nchunks` slices of `chunk_len` floats the backward workers write, or
/// `nchunks` `None`s when no input gradient is wanted.
pub(crate) fn dx_chunks(dx: &mut [f32], need_dx: bool, chunk_len: usize, nchunks: usize) -> Vec<Option<&mut [f32]>> {
    if need_dx {
        dx.chunks_mut(chunk_len).map(Some).collect()
    } else {
        (0..nchunks).map(|_| None).collect()
    }
}

/// Adds per-chunk partial sums in chunk order, so the total does not depend on how the
/// chunks were scheduled, and recycles them; `len` zeros when there are none.
pub(crate) fn sum_partials(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut parts = partials.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for part in parts {
        for (a, b) in total.iter_mut().zip(&part) {
            *a += b;
        }
        give(part);
    }
    total
}

/// Recycled f32 buffers, matched by exact length. Training repeats the same shapes every
/// step, so scratch space and saved activations can be reused instead of being allocated,
/// zeroed and page-faulted in again (that was ~15% of a step).
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
/// Upper bound on pooled memory; beyond it the oldest buffers are freed.
const POOL_MAX_BYTES: usize = 1 << 30;
/// Buffers smaller than this are not worth pooling.
const POOL_MIN_LEN: usize = 1 << 12;

/// A buffer of length `n` with unspecified (initialised) contents: callers must overwrite all
/// of it, or results would depend on earlier steps.
pub(crate) fn take(n: usize) -> Vec<f32> {
    pooled(n).unwrap_or_else(|| vec![0f32; n])
}

/// A pooled buffer of length `n`, if there is one.
fn pooled(n: usize) -> Option<Vec<f32>> {
    if n < POOL_MIN_LEN {
        return None;
    }
    let mut pool = POOL.lock().expect("buffer pool lock");
    let i = pool.iter().rposition(|v| v.len() == n)?;
    Some(pool.swap_remove(i))
}

/// A buffer of length `n` that `fill` writes completely: recycled when possible, else
/// allocated without zeroing. The outputs we hand to candle are freed by candle, so they never
/// come back to the pool, and `vec![0; n]` zeroed their recycled, dirty memory first: 3-6 %
/// of a step in `memset`.
///
/// # Safety
/// `fill` must write every element of the slice it is given, unless it panics.
pub(crate) unsafe fn take_written(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    if let Some(mut v) = pooled(n) {
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the buffer stays initialised
        // whatever `fill` writes into it.
        fill(unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<MaybeUninit<f32>>(), n) });
        return v;
    }
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: `fill` initialised all `n` elements (the caller's contract).
    unsafe { v.set_len(n) };
    v
}

/// `s` read back as floats, after a kernel has written it through [`take_written`]'s slice.
///
/// # Safety
/// Every element of `s` must have been written.
pub(crate) unsafe fn assume_written(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller vouches that every
    // element is initialised.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A zero-filled buffer of length `n`, recycled when possible.
pub(crate) fn take_zeroed(n: usize) -> Vec<f32> {
    let mut v = take(n);
    v.fill(0.0);
    v
}

/// Hands a buffer back for reuse.
pub(crate) fn give(v: Vec<f32>) {
    if v.len() < POOL_MIN_LEN {
        return;
    }
    let mut pool = POOL.lock().expect("buffer pool lock");
    pool.push(v);
    let mut total: usize = pool.iter().map(|b| b.len() * 4).sum();
    while total > POOL_MAX_BYTES && !pool.is_empty() {
        total -= pool.remove(0).len() * 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused centred sums give the bits of the sums over an explicitly centred copy (what
    /// batch norm computed before), at lengths that exercise every part of the lane scheme.
    #[test]
    fn centred_sums_match_sums_of_a_centred_copy() {
        for n in [0, 1, 7, 8, 16, 31, 32, 49, 77, 196, 784] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let a: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
            let mean = 0.137f32;
            let c: Vec<f32> = x.iter().map(|v| v - mean).collect();
            let products = lane_sum(&c, &c, |u, v| u * v);
            assert_eq!(centred_squares(&x, mean).to_bits(), products.to_bits(), "squares, n = {n}");
            let cross = lane_sum(&a, &c, |u, v| u * v);
            assert_eq!(centred_dot(&a, &x, mean).to_bits(), cross.to_bits(), "dot, n = {n}");
        }
    }
}
