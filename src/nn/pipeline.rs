//! How training batches reach the network, and a process-wide switch between the ways for the GPU
//! bench's A/B measurements: `CFRUN_TRAIN_PIPELINE` = `host`, `resident-sync` or `resident`, read
//! by the binary at start-up; unset, the CPU builds batches on the host and any other device
//! keeps the data set resident.
//!
//! Why three: the resident pipeline took the host out of a GPU's training step in two ways at
//! once: batches built on the device from a data set uploaded once (no per-batch host build and
//! copy), and loss and accuracy summed on the device and read once per epoch (no per-batch wait
//! for the device). `resident-sync` keeps the first and undoes the second, so `host` against
//! `resident-sync` measures the first change and `resident-sync` against `resident` the second.
//! All three train the same bits (`nn::tests::resident_pipeline_equals_host_pipeline`; the CLI's
//! `the_batch_pipelines_train_the_same_bits`), so, like the device, the choice is in no recipe key.

use super::env_flag::value_from_env;
use candle_core::Device;
use std::sync::atomic::{AtomicU8, Ordering};

/// How batches reach the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Built on the host and copied per batch; loss and accuracy read per batch (the CPU's way,
    /// and every device's before the resident pipeline).
    Host = 1,
    /// As [`Pipeline::Resident`], with the epoch's running sums read after every batch: the host
    /// waits for the device once per step, as the host pipeline does.
    ResidentSynced = 2,
    /// Data and targets uploaded once, batches gathered on the device, sums read once per epoch
    /// (`nn/resident.rs`); training falls back to `Host` for a data set too large to index in
    /// u32.
    Resident = 3,
}

/// The environment variable of the switch.
pub const PIPELINE_ENV: &str = "CFRUN_TRAIN_PIPELINE";

/// The forced pipeline as its discriminant; 0 when none is (the device decides).
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Forces `pipeline` on every training run of the process, or with `None` lets the device decide.
pub fn set_pipeline(pipeline: Option<Pipeline>) {
    FORCED.store(pipeline.map_or(0, |p| p as u8), Ordering::Relaxed);
}

/// The pipeline a training run on `device` uses.
pub(crate) fn pipeline_for(device: &Device) -> Pipeline {
    resolve(FORCED.load(Ordering::Relaxed), device)
}

fn resolve(forced: u8, device: &Device) -> Pipeline {
    let all = [Pipeline::Host, Pipeline::ResidentSynced, Pipeline::Resident];
    match all.into_iter().find(|&p| p as u8 == forced) {
        Some(p) => p,
        None if device.is_cpu() => Pipeline::Host,
        None => Pipeline::Resident,
    }
}

/// Applies [`PIPELINE_ENV`] when it is set; a value that names no pipeline is the error.
pub fn pipeline_from_env() -> Result<(), String> {
    if let Some(pipeline) = value_from_env(PIPELINE_ENV, parse)? {
        set_pipeline(Some(pipeline));
    }
    Ok(())
}

fn parse(v: &str) -> Result<Pipeline, String> {
    match v {
        "host" => Ok(Pipeline::Host),
        "resident-sync" => Ok(Pipeline::ResidentSynced),
        "resident" => Ok(Pipeline::Resident),
        other => Err(format!("{PIPELINE_ENV}={other:?}: expected `host`, `resident-sync` or `resident`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name parses to its pipeline and resolves to it on any device; unset, the CPU builds
    /// on the host; a wrong name is refused with the valid ones.
    #[test]
    fn names_parse_and_the_device_decides_when_none_is_forced() {
        for (name, p) in
            [("host", Pipeline::Host), ("resident-sync", Pipeline::ResidentSynced), ("resident", Pipeline::Resident)]
        {
            assert_eq!(parse(name), Ok(p));
            assert_eq!(resolve(p as u8, &Device::Cpu), p);
        }
        assert_eq!(resolve(0, &Device::Cpu), Pipeline::Host);
        let err = parse("device").unwrap_err();
        assert_eq!(err, "CFRUN_TRAIN_PIPELINE=\"device\": expected `host`, `resident-sync` or `resident`");
    }
}
