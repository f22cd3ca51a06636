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

use super::env_flag::Choice;
use candle_core::Device;

/// How batches reach the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Built on the host and copied per batch; loss and accuracy read per batch (the CPU's way,
    /// and every device's before the resident pipeline).
    Host,
    /// As [`Pipeline::Resident`], with the epoch's running sums read after every batch: the host
    /// waits for the device once per step, as the host pipeline does.
    ResidentSynced,
    /// Data and targets uploaded once, batches gathered on the device, sums read once per epoch
    /// (`nn/resident.rs`); training falls back to `Host` for a data set too large to index in
    /// u32.
    Resident,
}

/// The switch: `CFRUN_TRAIN_PIPELINE`; forced, it holds for every training run of the process.
pub static PIPELINE: Choice<Pipeline> = Choice::new(
    "CFRUN_TRAIN_PIPELINE",
    &[("host", Pipeline::Host), ("resident-sync", Pipeline::ResidentSynced), ("resident", Pipeline::Resident)],
);

/// The pipeline a training run on `device` uses: unforced, the host's on the CPU, else resident.
pub(crate) fn pipeline_for(device: &Device) -> Pipeline {
    PIPELINE.for_device(device, Pipeline::Host, Pipeline::Resident)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name parses to its pipeline; unforced, the CPU builds on the host; a wrong name is
    /// refused with the valid ones.
    #[test]
    fn names_parse_and_the_cpu_builds_on_the_host() {
        for (name, p) in
            [("host", Pipeline::Host), ("resident-sync", Pipeline::ResidentSynced), ("resident", Pipeline::Resident)]
        {
            assert_eq!(PIPELINE.parse(name), Ok(p));
        }
        assert_eq!(pipeline_for(&Device::Cpu), Pipeline::Host);
        let err = PIPELINE.parse("device").unwrap_err().to_string();
        assert_eq!(err, "CFRUN_TRAIN_PIPELINE=\"device\": expected `host`, `resident-sync` or `resident`");
    }
}
