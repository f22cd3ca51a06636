//! Small helpers shared by the CPU kernels: borrowing f32 data out of candle storage and
//! fixed-order reductions (matrix products go through [`crate::linalg`]).
//!
//! Every kernel in this module family reduces in an order that depends only on the tensor
//! shapes, never on how rayon schedules the work, so results are bit-for-bit reproducible.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};

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

/// f32 lanes of the partial sums in [`dot_sum`] and [`sum`]: four 8-lane vectors, so the adds
/// of consecutive chunks do not wait on each other (one vector of 8 lanes was latency-bound:
/// one add every 3-4 cycles). What is left after the 32-lane chunks goes through the first
/// 8 lanes, then the last few elements are added in f64.
const LANES: usize = 32;

/// Sum and sum of products of two slices, accumulated in [`LANES`] f32 lanes (so the compiler
/// can vectorise) and then in f64; the order depends only on the length.
#[inline]
pub(crate) fn dot_sum(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f32; LANES];
    let (wide, narrow) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (wide.remainder(), narrow.remainder());
    for (ca, cb) in wide.zip(narrow) {
        for l in 0..LANES {
            lanes[l] += ca[l] * cb[l];
        }
    }
    let (ca8, cb8) = (ra.chunks_exact(8), rb.chunks_exact(8));
    let (ta, tb) = (ca8.remainder(), cb8.remainder());
    for (ca, cb) in ca8.zip(cb8) {
        for l in 0..8 {
            lanes[l] += ca[l] * cb[l];
        }
    }
    let mut total: f64 = lanes.iter().map(|&v| v as f64).sum();
    for (x, y) in ta.iter().zip(tb) {
        total += (x * y) as f64;
    }
    total
}

/// Sum of a slice with the same fixed-order lane scheme as [`dot_sum`].
#[inline]
pub(crate) fn sum(a: &[f32]) -> f64 {
    let mut lanes = [0f32; LANES];
    let wide = a.chunks_exact(LANES);
    let rest = wide.remainder();
    for c in wide {
        for l in 0..LANES {
            lanes[l] += c[l];
        }
    }
    let narrow = rest.chunks_exact(8);
    let tail = narrow.remainder();
    for c in narrow {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    let mut total: f64 = lanes.iter().map(|&v| v as f64).sum();
    for &v in tail {
        total += v as f64;
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
    if n >= POOL_MIN_LEN {
        let mut pool = POOL.lock().expect("buffer pool lock");
        if let Some(i) = pool.iter().rposition(|v| v.len() == n) {
            return pool.swap_remove(i);
        }
    }
    vec![0f32; n]
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
