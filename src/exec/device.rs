//! `--device cpu|cuda|auto`.

use candle_core::Device;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU (always available; bit-for-bit deterministic).
    Cpu,
    /// The first CUDA GPU; an error when the binary lacks the `cuda` feature or no GPU answers.
    Cuda,
    /// CUDA when the binary has it and a GPU answers, else the CPU (said in a log line).
    Auto,
}

/// Why a device cannot be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    /// This binary has no CUDA kernels at all: the command line asks for what it cannot do.
    #[error("{NO_CUDA_FEATURE}")]
    NotBuiltIn,
    /// The binary has CUDA but no GPU answered (no driver, no card, the card busy or broken).
    #[error("no usable CUDA GPU: {0}")]
    Unusable(String),
}

/// Opens the device; returns it with its name for provenance.
pub fn open(choice: DeviceChoice) -> Result<(Device, String), DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "cpu".into())),
        DeviceChoice::Cuda => open_cuda(),
        DeviceChoice::Auto => match open_cuda() {
            Ok(d) => Ok(d),
            Err(why) => {
                tracing::info!("--device auto: using the CPU ({why})");
                Ok((Device::Cpu, "cpu".into()))
            }
        },
    }
}

/// How f32 products may be computed on a GPU, for the provenance of what runs there: TF32 moves
/// results by far more than rounding. cuBLAS's (`CFRUN_GEMM_TF32=1`) is in the recipe key
/// (`nn::math_switches`); cuDNN's default TF32, which `NVIDIA_TF32_OVERRIDE=0` turns off, goes
/// with the device and the build, which are not (README, "Devices"), so `cfrun show` is where a
/// reader tells such a result apart.
pub fn gpu_math() -> serde_json::Value {
    serde_json::json!({
        // Without CUDA, candle's stand-in answers `true` to this; there is no GPU GEMM at all.
        "gemm_tf32": cfg!(feature = "cuda") && candle_core::cuda::gemm_reduced_precision_f32(),
        "cudnn": cfg!(feature = "cudnn"),
        "nvidia_tf32_override": std::env::var("NVIDIA_TF32_OVERRIDE").ok(),
    })
}

/// Whether this binary can compute on CUDA at all (a GPU aside): cluster jobs run this binary too.
pub fn cuda_built_in() -> Result<(), DeviceError> {
    if cfg!(feature = "cuda") {
        Ok(())
    } else {
        Err(DeviceError::NotBuiltIn)
    }
}

const NO_CUDA_FEATURE: &str =
    "this cfrun was built without CUDA support; rebuild with `cargo build --release --features cuda` (see README, Devices)";

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<(Device, String), DeviceError> {
    Device::new_cuda(0)
        .map(|d| (opened(d), "cuda:0".to_string()))
        .map_err(|e| DeviceError::Unusable(crate::candle_error::Brief(&e).to_string()))
}

/// Reads the process-wide CUDA switches `opened` applies (`CFRUN_CUDA_EVENTS`,
/// `CFRUN_CUDA_POOL`); an invalid value is the error, naming the variable and the valid values.
pub fn cuda_switches_from_env() -> Result<(), crate::nn::env_flag::SwitchError> {
    super::cuda_events::CUDA_EVENTS.from_env()?;
    super::cuda_pool::CUDA_POOL.from_env()
}

/// A CUDA device just opened, with the process-wide CUDA switches applied before it holds any of
/// cfrun's buffers.
fn opened(device: Device) -> Device {
    super::cuda_pool::applied(super::cuda_events::applied(device))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<(Device, String), DeviceError> {
    Err(DeviceError::NotBuiltIn)
}

/// The device one of several jobs running side by side computes on. On a GPU: a new stream
/// with its own cuBLAS handle on the same GPU, so the jobs' kernels interleave on the card
/// instead of queueing behind one another on one stream (and never share a cuBLAS workspace);
/// if that fails, the shared device (logged). The CPU is shared as is.
fn for_parallel_job(device: &Device) -> Device {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => match Device::new_cuda_with_stream(gpu_id) {
            Ok(d) => opened(d),
            Err(e) => {
                let e = crate::candle_error::Brief(&e);
                tracing::warn!("cannot open a stream of its own for a job on cuda:{gpu_id} ({e}); sharing one");
                device.clone()
            }
        },
        _ => device.clone(),
    }
}

/// The devices of jobs running side by side, each handed from a finished job to the next one:
/// at most as many as jobs run at once, instead of a new stream, cuBLAS handle and set of loaded
/// kernel modules for every job of a sweep.
pub struct JobDevices {
    open: Box<dyn Fn() -> Device + Send + Sync>,
    free: std::sync::Mutex<Vec<Device>>,
}

impl JobDevices {
    /// Devices opened by `for_parallel_job` on `shared`.
    pub fn new(shared: Device) -> Self {
        Self::opened_by(move || for_parallel_job(&shared))
    }

    /// Devices opened by `open` when none is free.
    fn opened_by(open: impl Fn() -> Device + Send + Sync + 'static) -> Self {
        JobDevices { open: Box::new(open), free: std::sync::Mutex::new(Vec::new()) }
    }

    /// A device no running job holds: a handed-back one, else a new one.
    pub fn take(&self) -> Device {
        let kept = self.free.lock().expect("job devices poisoned").pop();
        kept.unwrap_or_else(|| (self.open)())
    }

    /// Hands `device` back, once its job has finished with it.
    pub fn put(&self, device: Device) {
        self.free.lock().expect("job devices poisoned").push(device);
    }
}

#[cfg(test)]
mod job_device_tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The GPU's math as provenance names it: TF32 off unless asked for, cuDNN as built.
    #[test]
    fn gpu_math_names_each_switch() {
        let math = gpu_math();
        assert_eq!(math["gemm_tf32"], false);
        assert_eq!(math["cudnn"], cfg!(feature = "cudnn"));
        assert_eq!(math["nvidia_tf32_override"], serde_json::json!(std::env::var("NVIDIA_TF32_OVERRIDE").ok()));
    }

    #[test]
    fn devices_are_opened_only_for_jobs_running_at_once() {
        let opened = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&opened);
        let devices = JobDevices::opened_by(move || {
            count.fetch_add(1, Ordering::Relaxed);
            Device::Cpu
        });
        let (a, b) = (devices.take(), devices.take());
        assert_eq!(opened.load(Ordering::Relaxed), 2, "two jobs at once, two devices");
        devices.put(a);
        let c = devices.take();
        assert_eq!(opened.load(Ordering::Relaxed), 2, "the third job gets the first one's device");
        devices.put(b);
        devices.put(c);
        for _ in 0..5 {
            let d = devices.take();
            devices.put(d);
        }
        assert_eq!(opened.load(Ordering::Relaxed), 2);
    }
}
