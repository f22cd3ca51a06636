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

/// Opens the device; returns it with its name for provenance.
pub fn open(choice: DeviceChoice) -> Result<(Device, String), String> {
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

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<(Device, String), String> {
    Device::new_cuda(0).map(|d| (d, "cuda:0".to_string())).map_err(|e| format!("no usable CUDA GPU: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<(Device, String), String> {
    Err("this cfrun was built without CUDA support; rebuild with `cargo build --release --features cuda` (see README, Devices)".into())
}
