//! Whether cudarc tracks every device buffer's uses with CUDA events: `CFRUN_CUDA_EVENTS=track`
//! (candle's default, and cfrun's) or `off`, a process-wide switch for the GPU bench's A/B.
//!
//! Why it exists: candle 0.11.1 leaves cudarc 0.19's event tracking on. Then each allocation on
//! the device creates two CUDA events and each free destroys them, and on a device with a stream
//! of its own (each of several jobs gets one, [`super::device`]) every kernel launch also waits
//! on and records events for its arguments. That is driver work on the host for every op. The
//! GPU session of 2026-12-04 (docs/gpu-2026-12-04) found the host issuing a step as slowly as the
//! card ran it and jobs that did not add throughput; whether these events are the cause is for
//! the next session to measure, so the default stays candle's until then.
//!
//! Turning tracking off is safe in cfrun: each device computes on one stream (a job's own, or on
//! the shared device the per-thread stream of the thread that issues, where cudarc never managed
//! synchronization), so the order of a device's ops is the stream's, and no buffer is shared
//! between devices (candle refuses ops across devices). The work, and so the bits, are the same
//! either way; only the host's bookkeeping differs.

use candle_core::Device;

use crate::nn::env_flag::Choice;

/// What cudarc does with each buffer's uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaEvents {
    /// An event pair per buffer, waited on and recorded around launches on multi-stream devices.
    Track,
    /// No events: the stream's order is the only synchronization.
    Off,
}

/// The switch, read from `CFRUN_CUDA_EVENTS`.
pub static CUDA_EVENTS: Choice<CudaEvents> =
    Choice::new("CFRUN_CUDA_EVENTS", &[("track", CudaEvents::Track), ("off", CudaEvents::Off)]);

/// `device` as the switch wants it: called right after a CUDA device is opened, before it holds
/// any of cfrun's buffers (those made earlier, by cuBLAS and cuRAND's set-up, keep their events).
pub fn applied(device: Device) -> Device {
    if CUDA_EVENTS.forced() == Some(CudaEvents::Off) {
        untrack(&device);
    }
    device
}

#[cfg(feature = "cuda")]
fn untrack(device: &Device) {
    if let Device::Cuda(d) = device {
        // SAFETY: see the module's doc: every use of this device's buffers is ordered by its one
        // stream, which is what the events would otherwise enforce.
        unsafe { d.disable_event_tracking() };
        tracing::debug!("CFRUN_CUDA_EVENTS=off: no CUDA events track this device's buffers");
    }
}

#[cfg(not(feature = "cuda"))]
fn untrack(_device: &Device) {}
