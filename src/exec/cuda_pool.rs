//! Whether the CUDA driver's memory pool keeps the memory freed to it: `CFRUN_CUDA_POOL=release`
//! (the driver's default, and cfrun's) or `keep`, a process-wide switch for the GPU bench's A/B.
//!
//! Why it exists: cudarc 0.19 allocates and frees every device buffer with `cuMemAllocAsync` and
//! `cuMemFreeAsync` on the device's current memory pool, and neither it nor candle 0.11.1 sets
//! the pool's attributes. By the driver's default (`CU_MEMPOOL_ATTR_RELEASE_THRESHOLD` = 0) the
//! pool gives the memory freed to it back to the OS at the next stream, event or context
//! synchronisation, and the allocations after it map memory afresh. cfrun synchronises
//! explicitly in two places: the step profile (`CFRUN_TRAIN_PROFILE=1`), after every phase of
//! every step, and the convolution's reversed index, once per size. So the profile's "issue"
//! times of 2026-12-04 (a forward issued in 24 ms, as long as the card ran it) may include
//! remapping the step's memory, which an unprofiled run does not pay; what cuBLAS and cuDNN
//! synchronise inside is not documented.
//!
//! `keep` sets the threshold to the most bytes there are: the pool keeps what it grew to for the
//! process's life, as PyTorch's caching allocator, RMM's and CCCL's async resources do. The same
//! kernels run on the same values either way, so the bits are the same; only when memory is
//! mapped differs. Whether that is faster on a card is for a GPU session to measure, so the
//! default stays the driver's until then.

use std::sync::Once;

use candle_core::Device;

use crate::nn::env_flag::Choice;

/// What the device's memory pool does with memory freed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaPool {
    /// The driver's default: freed memory goes back to the OS at each synchronisation.
    Release,
    /// Freed memory stays in the pool for the process's life.
    Keep,
}

/// The switch, read from `CFRUN_CUDA_POOL`.
pub static CUDA_POOL: Choice<CudaPool> =
    Choice::new("CFRUN_CUDA_POOL", &[("release", CudaPool::Release), ("keep", CudaPool::Keep)]);

/// `device` with its memory pool set as the switch wants, right after the device is opened. The
/// pool is the GPU's, shared by every stream of this process on it, so it is set once per
/// process (jobs' devices opened later find it set). A driver that refuses is logged, not fatal:
/// the default pool computes the same bits.
pub fn applied(device: Device) -> Device {
    static ONCE: Once = Once::new();
    if CUDA_POOL.forced() == Some(CudaPool::Keep) && !device.is_cpu() {
        ONCE.call_once(|| match keep(&device) {
            Ok(threshold) => {
                tracing::debug!(
                    "CFRUN_CUDA_POOL=keep: the memory pool keeps what is freed (release threshold {threshold})"
                )
            }
            Err(why) => tracing::warn!("CFRUN_CUDA_POOL=keep: {why}; the pool gives freed memory back as by default"),
        });
    }
    device
}

/// Sets the threshold and returns it as the driver reads it back.
#[cfg(feature = "cuda")]
fn keep(device: &Device) -> Result<u64, String> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let Device::Cuda(d) = device else { return Err("not a CUDA device".into()) };
    let stream = d.cuda_stream();
    let ctx = stream.context();
    if !ctx.has_async_alloc() {
        // cudarc then allocates and frees synchronously, outside any pool.
        return Err("this GPU has no memory pools".into());
    }
    let threshold = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    let mut most = u64::MAX;
    let mut read = 0u64;
    ctx.bind_to_thread().map_err(|e| e.to_string())?;
    // SAFETY: the device is the context's, so it came from `cuDeviceGet`; the pool is the one
    // cudarc's allocations draw from (the device's current pool); both values point to the
    // cuuint64_t the threshold takes.
    unsafe {
        let pool = result::device::get_mem_pool(ctx.cu_device()).map_err(|e| format!("no current pool: {e}"))?;
        result::mem_pool::set_attribute(pool, threshold, (&mut most as *mut u64).cast())
            .map_err(|e| format!("setting the release threshold: {e}"))?;
        result::mem_pool::get_attribute(pool, threshold, (&mut read as *mut u64).cast())
            .map_err(|e| format!("reading the release threshold back: {e}"))?;
    }
    if read != most {
        return Err(format!("the driver kept a release threshold of {read} bytes"));
    }
    Ok(read)
}

#[cfg(not(feature = "cuda"))]
fn keep(_device: &Device) -> Result<u64, String> {
    Err("this binary has no CUDA".into())
}
