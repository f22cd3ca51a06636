//! `cfrun check-device`: a device against the CPU, within float-rounding tolerances.

use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::Global;
use crate::exec::device;

pub(super) fn check_device(choice: device::DeviceChoice, presets: &[String], g: &Global) -> Result<ExitCode, Failure> {
    // A preset name is input: an unknown one is a usage error, before any device is opened.
    if let Some(bad) = presets.iter().find(|p| !crate::nn::PRESETS.contains(&p.as_str())) {
        return Err(Failure::argument(
            "--presets",
            format!("unknown preset `{bad}`; valid: {}", crate::nn::PRESETS.join(", ")),
        ));
    }
    // Asking a CPU-only binary to check a GPU is a usage error; a GPU that does not answer is
    // the check's own verdict.
    let (device, name) = device::open(choice).map_err(|e| match e {
        device::DeviceError::NotBuiltIn => Failure::Other(e.to_string()),
        device::DeviceError::Unusable(_) => Failure::runtime(e),
    })?;
    let checks = crate::eval::device_check::run_checks(&device, presets).map_err(Failure::runtime)?;
    let ok = checks.iter().all(|c| c.ok);
    if g.json {
        outln!("{}", json!({"device": name, "ok": ok, "checks": checks}));
    } else {
        outln!("device check: {name} against cfrun's CPU kernels");
        for c in &checks {
            outln!(
                "  {}  {:<62} {:>10.3e} (tolerance {:.0e})  {:.2} s / {:.2} s",
                if c.ok { "ok  " } else { "FAIL" },
                c.what,
                c.difference,
                c.tolerance,
                c.seconds.0,
                c.seconds.1
            );
            if let Some(e) = &c.error {
                outln!("        the device side failed: {e}");
            }
        }
        outln!("{}", if ok { "all checks passed" } else { "some checks FAILED" });
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(super::exit::FAILED) })
}
