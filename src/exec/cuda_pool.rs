//! What the CUDA driver's memory pool does with freed device memory: `CFRUN_CUDA_POOL=release`
//! (the driver's default, and cfrun's) or `keep`, a process-wide switch for the GPU bench's A/B.
//!
//! Why it exists: cudarc 0.19 allocates and frees every device buffer with `cuMemAllocAsync` and
//! `cuMemFreeAsync` on the device's current memory pool, and neither it nor candle 0.11.1 sets
//! the pool's attributes. By the driver's defaults the pool
//! - hands all the memory it holds beyond 0 bytes back to the OS at the next stream, event or
//!   context synchronisation (`CU_MEMPOOL_ATTR_RELEASE_THRESHOLD` = 0), so the allocations after
//!   it map fresh memory again: after the per-epoch read of the sums in training, after each
//!   phase of the step profile (whose syncs may so have put remapping into its "issue" times),
//!   after each of extract's and k-means's reads;
//! - may hand a job memory another job freed on its own stream and make the first stream wait
//!   for the second's work up to that free (`CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES`),
//!   a hidden chain between the streams of jobs run side by side, which on 2026-12-04 added no
//!   throughput over one job.
//!
//! `keep` sets the release threshold to the most bytes there are (the pool keeps what it grew to,
//! as PyTorch's caching allocator, RMM's and CCCL's async resources do) and turns the
//! internal dependencies off (memory freed on another stream is reused only once that free is
//! known complete, or through events the streams already wait on). The same kernels run on the
//! same values either way, so the bits are the same; only where memory comes from and when the
//! host or a stream waits differ. Whether that is faster on a card is for a GPU session to
//! measure, so the default stays the driver's until then.

use candle_core::Device;

use crate::nn::env_flag::Choice;

/// What the device's memory pool does with memory freed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaPool {
    /// The driver's defaults: freed memory goes back to the OS at each synchronisation, and may
    /// be reused across streams by making one wait on another.
    Release,
    /// Freed memory stays in the pool for the process's life, and no stream is made to wait on
    /// another to reuse it.
    Keep,
}

/// The switch, read from `CFRUN_CUDA_POOL`.
pub static CUDA_POOL: Choice<CudaPool> =
    Choice::new("CFRUN_CUDA_POOL", &[("release", CudaPool::Release), ("keep", CudaPool::Keep)]);

/// `device` with its memory pool set as the switch wants, right after the device is opened (the
/// pool is the GPU's, shared by every stream of this process on it, so setting it again for
/// another job's stream changes nothing). A driver that refuses is logged, not fatal: the
/// default pool computes the same bits.
pub fn applied(device: Device) -> Device {
    if CUDA_POOL.forced() == Some(CudaPool::Keep) {
        if let Err(why) = keep(&device) {
            tracing::warn!("CFRUN_CUDA_POOL=keep: the memory pool is left as the driver set it ({why})");
        }
    }
    device
}

#[cfg(feature = "cuda")]
fn keep(device: &Device) -> Result<(), String> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let Device::Cuda(d) = device else { return Ok(()) };
    let stream = d.cuda_stream();
    let ctx = stream.context();
    if !ctx.has_async_alloc() {
        // cudarc then allocates and frees synchronously, outside any pool.
        return Err("this GPU has no memory pools".into());
    }
    let attribute = |attr: sys::CUmemPool_attribute, value: *mut std::ffi::c_void| -> Result<(), String> {
        ctx.bind_to_thread().map_err(|e| e.to_string())?;
        // SAFETY: the device is the context's, so it came from `cuDeviceGet`; the pool is the
        // one cudarc's allocations draw from (the device's current pool); `value` points to the
        // type the attribute takes (a u64 for the threshold, an int for the reuse flag).
        unsafe {
            let pool = result::device::get_mem_pool(ctx.cu_device()).map_err(|e| e.to_string())?;
            result::mem_pool::set_attribute(pool, attr, value).map_err(|e| format!("{attr:?}: {e}"))
        }
    };
    let mut most = u64::MAX;
    attribute(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, (&mut most as *mut u64).cast())?;
    let mut no: std::ffi::c_int = 0;
    attribute(
        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES,
        (&mut no as *mut std::ffi::c_int).cast(),
    )?;
    tracing::debug!("CFRUN_CUDA_POOL=keep: the memory pool keeps freed memory and chains no streams");
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn keep(_device: &Device) -> Result<(), String> {
    Ok(())
}
