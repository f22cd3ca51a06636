//! How the optimiser writes its update, and a process-wide switch between the ways for the GPU
//! bench's A/B: `CFRUN_SGD_UPDATE` = `slices`, `per-param` or `flat`, read by the binary at
//! start-up; unset, the CPU updates f32 slices in one pass and any other device updates flat.
//!
//! Why flat off the CPU: on a GPU a small network's step is bound by kernel launches, and the
//! per-parameter update is four elementwise kernels (six with weight decay), an allocation
//! each, and a copy into the parameter, for every one of the network's tensors. resnet_gpu has
//! 62 (21 decayed): 352 launches and 290 allocations a step. The flat update concatenates each
//! group's gradients (a copy each), runs the same elementwise ops once over the group, and
//! copies each parameter's slice back: 134 launches and 12 allocations (counted from the ops,
//! not timed; the GPU bench's `f32-j1-sgdper` row times it). All three give the same bits
//! (`nn::sgd::tests`; the CLI's `the_sgd_updates_train_the_same_bits`), so, like the device,
//! the choice is in no recipe key.

use crate::nn::env_flag::Choice;
use candle_core::Device;

/// How the optimiser writes its update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// One parallel pass over each f32 parameter's CPU slices (parameters elsewhere or of another
    /// dtype: as [`Update::PerParam`]).
    Slices,
    /// candle ops, parameter by parameter.
    PerParam,
    /// candle ops over the parameters concatenated, one group per dtype and weight-decay rule
    /// (`flat.rs`).
    Flat,
}

/// The switch: `CFRUN_SGD_UPDATE`; forced, it holds for every optimiser of the process.
pub static UPDATE: Choice<Update> = Choice::new(
    "CFRUN_SGD_UPDATE",
    &[("slices", Update::Slices), ("per-param", Update::PerParam), ("flat", Update::Flat)],
);

/// The update an optimiser of parameters on `device` uses: unforced, slices on the CPU, else flat.
pub(crate) fn update_for(device: &Device) -> Update {
    UPDATE.for_device(device, Update::Slices, Update::Flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name parses to its update; unforced, the CPU updates slices; a wrong name is refused
    /// with the valid ones.
    #[test]
    fn each_name_is_one_update_and_the_cpu_defaults_to_slices() {
        for (name, update) in [("slices", Update::Slices), ("per-param", Update::PerParam), ("flat", Update::Flat)] {
            assert_eq!(UPDATE.parse(name), Ok(update));
        }
        assert_eq!(update_for(&Device::Cpu), Update::Slices);
        let err = UPDATE.parse("fused").unwrap_err().to_string();
        assert!(err.starts_with("CFRUN_SGD_UPDATE=\"fused\"") && err.contains("`per-param` or `flat`"), "{err}");
    }
}
