//! Whether candle uploads its kernels' shape arguments anew at every op: `CFRUN_CUDA_PARAMS=upload`
//! (candle's default, and cfrun's) or `cached`, a process-wide switch for the GPU bench's A/B.
//!
//! Why it exists: on a CUDA device candle 0.11.1 passes a kernel its dims and strides through
//! device memory. Every reduction (a sum or mean: the batch norms' statistics and gradients, the
//! loss, the pooling), every gather (`index_select`) and every op on a broadcast or strided view
//! (a batch norm's affine) first allocates a small buffer and copies those numbers into it from
//! the host's ordinary (pageable) memory: some hundreds of copies in a resnet_gpu step. CUDA's
//! documentation says a copy from pageable memory may synchronize with the stream (API
//! synchronization behavior), which would keep the host from issuing ahead of the card, and
//! each is a driver call and an allocation (two CUDA events with cudarc's tracking) anyway. The
//! GPU session of 2026-12-04 (docs/gpu-2026-12-04) found the host's issue of a forward pass
//! taking 24 ms with 0.01 ms left to wait for the card at its end: what these copies would
//! produce if each one waits.
//!
//! candle 0.11.1 has caches for them, made for CUDA-graph capture, used while a guard from
//! `CudaDevice::enable_cuda_graph_htod_cache` lives on the calling thread: the shape arguments
//! are then uploaded once per content and device into a process-wide table (one buffer, shared
//! by every op that reads those numbers), and any other upload of at most 4 KiB (a tensor made
//! from host values) goes through a per-thread table, each hit a device-to-device copy of the
//! first upload. Neither table is ever emptied. With `cached` the training loops (`train`'s and
//! Jigsaw's) hold the guard around the network's forward pass, its backward pass and the update,
//! and not while they build the batch or its targets (on the host pipeline the labels are
//! uploaded there), which change every step and would each stay in the table for good. What those three phases upload is the
//! same from step to step (shapes and strides, the batch norms' factor vector), so the tables
//! stay as small as the network's distinct layouts. The kernels read the same numbers, so the
//! bits are the same either way. One device per job is assumed, as `--jobs N` opens (each job's
//! device a stream of its own and a table key of its own): two threads issuing on one shared
//! device through their per-thread streams could read a shape buffer the other thread's stream
//! has not written yet.
//!
//! The default stays `upload` until a GPU session has measured `cached` against it
//! (scripts/gpu-bench.sh, `STEPS=ab`). Off CUDA, and in a binary built without it, the switch
//! changes nothing. With the same bits either way, it is not part of the recipe key (unlike the
//! switches of [`super::math_switches`]).

use candle_core::Device;

use super::env_flag::Choice;

/// How a step on a CUDA device hands candle's kernels their shape arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaParams {
    /// A fresh upload per op: candle's default.
    Upload,
    /// Uploaded once per content and reused, while a step computes.
    Cached,
}

/// The switch, read from `CFRUN_CUDA_PARAMS`.
pub static CUDA_PARAMS: Choice<CudaParams> =
    Choice::new("CFRUN_CUDA_PARAMS", &[("upload", CudaParams::Upload), ("cached", CudaParams::Cached)]);

/// Runs `work` (a phase of a training step on `device`) with candle's upload cache on for this
/// thread where the switch says `cached` and the device is a CUDA one; as it is otherwise. The
/// cached buffers stay for the next step.
pub fn during<T>(device: &Device, work: impl FnOnce() -> T) -> T {
    let cached = CUDA_PARAMS.forced() == Some(CudaParams::Cached);
    // candle's guard, whose type its crate does not name; dropped when `work` returns.
    let _guard = if cached { guard(device) } else { None };
    work()
}

#[cfg(feature = "cuda")]
fn guard(device: &Device) -> Option<Box<dyn std::any::Any>> {
    match device {
        Device::Cuda(d) => Some(Box::new(d.enable_cuda_graph_htod_cache())),
        _ => None,
    }
}

#[cfg(not(feature = "cuda"))]
fn guard(_device: &Device) -> Option<Box<dyn std::any::Any>> {
    None
}
