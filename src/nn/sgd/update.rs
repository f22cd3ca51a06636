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

use crate::nn::env_flag::value_from_env;
use candle_core::Device;
use std::sync::atomic::{AtomicU8, Ordering};

/// How the optimiser writes its update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// One parallel pass over each f32 parameter's CPU slices (parameters elsewhere or of another
    /// dtype: as [`Update::PerParam`]).
    Slices = 1,
    /// candle ops, parameter by parameter.
    PerParam = 2,
    /// candle ops over the parameters concatenated, one group per dtype and weight-decay rule
    /// (`flat.rs`).
    Flat = 3,
}

/// The environment variable of the switch.
pub const UPDATE_ENV: &str = "CFRUN_SGD_UPDATE";

/// The forced update as its discriminant; 0 when none is (the device decides).
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Forces `update` on every optimiser of the process, or with `None` lets the device decide.
pub fn set_update(update: Option<Update>) {
    FORCED.store(update.map_or(0, |u| u as u8), Ordering::Relaxed);
}

/// The update an optimiser of parameters on `device` uses.
pub(crate) fn update_for(device: &Device) -> Update {
    resolve(FORCED.load(Ordering::Relaxed), device)
}

fn resolve(forced: u8, device: &Device) -> Update {
    let all = [Update::Slices, Update::PerParam, Update::Flat];
    match all.into_iter().find(|&u| u as u8 == forced) {
        Some(u) => u,
        None if device.is_cpu() => Update::Slices,
        None => Update::Flat,
    }
}

/// Applies [`UPDATE_ENV`] when it is set; a value that names no update is the error.
pub fn update_from_env() -> Result<(), String> {
    if let Some(update) = value_from_env(UPDATE_ENV, parse)? {
        set_update(Some(update));
    }
    Ok(())
}

fn parse(v: &str) -> Result<Update, String> {
    match v {
        "slices" => Ok(Update::Slices),
        "per-param" => Ok(Update::PerParam),
        "flat" => Ok(Update::Flat),
        other => Err(format!("{UPDATE_ENV}={other:?}: expected `slices`, `per-param` or `flat`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name parses to its update and resolves to it on any device; unset, the CPU updates
    /// slices; a wrong name is refused with the valid ones.
    #[test]
    fn each_name_is_one_update_and_the_cpu_defaults_to_slices() {
        for (name, update) in [("slices", Update::Slices), ("per-param", Update::PerParam), ("flat", Update::Flat)] {
            assert_eq!(parse(name), Ok(update));
            assert_eq!(resolve(update as u8, &Device::Cpu), update);
        }
        assert_eq!(resolve(0, &Device::Cpu), Update::Slices);
        let err = parse("fused").unwrap_err();
        assert!(err.starts_with("CFRUN_SGD_UPDATE=\"fused\"") && err.contains("`per-param` or `flat`"), "{err}");
    }
}
