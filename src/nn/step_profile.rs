//! Where a training step's time goes, phase by phase: an opt-in profile (process-wide switch, set
//! by the binary from `CFRUN_TRAIN_PROFILE=1`) for a device without a profiler at hand.
//!
//! Each phase records two times: how long the host took to issue its work (on a GPU, kernel
//! launches return before the kernels run, so this is the host's cost: batch building, launch
//! overhead, allocation) and how long the device then took to finish it (a synchronisation after
//! the phase). A launch-bound step shows its time in the first column, a kernel-bound one in the
//! second. The synchronisations are what attributes device time to phases, and the unprofiled loop
//! never makes them, so a profiled epoch runs somewhat slower than a plain one.

use super::env_flag::{flag_from_env, SwitchError};
use candle_core::Device;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The environment variable that turns the profile on (`1`).
pub const STEP_PROFILE_ENV: &str = "CFRUN_TRAIN_PROFILE";

/// Turns the per-phase profile of training epochs on or off, process-wide (default off).
pub fn set_step_profile(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Applies [`STEP_PROFILE_ENV`] when it is set: `1` on, `0` off, anything else an error.
pub fn step_profile_from_env() -> Result<(), SwitchError> {
    if let Some(on) = flag_from_env(STEP_PROFILE_ENV)? {
        set_step_profile(on);
    }
    Ok(())
}

/// The phases of a training step.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    /// Indices, upload or host build, gather, crop and flip of the batch.
    Batch = 0,
    /// The network's forward pass.
    Forward = 1,
    /// Loss and backward pass.
    Backward = 2,
    /// Optimiser step and the epoch's running sums.
    Update = 3,
}

const NAMES: [&str; 4] = ["batch", "forward", "backward", "update"];

/// One epoch's profile; every method is a no-op when the profile is off.
pub(crate) struct StepProfile {
    device: Option<Device>,
    last: Instant,
    issue: [f64; 4],
    wait: [f64; 4],
    steps: usize,
}

impl StepProfile {
    /// Starts an epoch's profile on `device` (off unless [`set_step_profile`] turned it on).
    pub(crate) fn start(device: &Device) -> Self {
        Self::with(device, ENABLED.load(Ordering::Relaxed))
    }

    fn with(device: &Device, on: bool) -> Self {
        let device = on.then(|| device.clone());
        StepProfile { device, last: Instant::now(), issue: [0.0; 4], wait: [0.0; 4], steps: 0 }
    }

    /// Marks the beginning of a step (time since the last phase is the observer's, not counted).
    pub(crate) fn step(&mut self) {
        if self.device.is_some() {
            self.steps += 1;
            self.last = Instant::now();
        }
    }

    /// Ends `phase`: the time since the previous mark is its issue time, then the device is
    /// synchronised and the wait is its device time beyond that.
    pub(crate) fn mark(&mut self, phase: Phase) -> candle_core::Result<()> {
        let Some(device) = &self.device else { return Ok(()) };
        let issued = Instant::now();
        device.synchronize()?;
        let done = Instant::now();
        self.issue[phase as usize] += (issued - self.last).as_secs_f64();
        self.wait[phase as usize] += (done - issued).as_secs_f64();
        self.last = done;
        Ok(())
    }

    /// Logs the epoch's milliseconds per step for each phase (issue, then wait).
    pub(crate) fn report(&self, epoch: usize) {
        if self.device.is_none() || self.steps == 0 {
            return;
        }
        let ms = |s: f64| (s * 1e3 / self.steps as f64 * 1e3).round() / 1e3;
        let line: Vec<String> =
            (0..4).map(|i| format!("{}={}+{}", NAMES[i], ms(self.issue[i]), ms(self.wait[i]))).collect();
        tracing::info!(epoch, steps = self.steps, "step profile (ms per step, issue+wait): {}", line.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_on_attributes_time_to_its_phase() {
        let mut off = StepProfile::with(&Device::Cpu, false);
        off.step();
        off.mark(Phase::Forward).unwrap();
        assert_eq!(off.steps, 0);
        let mut on = StepProfile::with(&Device::Cpu, true);
        on.step();
        std::thread::sleep(std::time::Duration::from_millis(2));
        on.mark(Phase::Forward).unwrap();
        let (issue, steps) = (on.issue, on.steps);
        assert_eq!(steps, 1);
        assert!(issue[Phase::Forward as usize] >= 0.002 && issue[Phase::Batch as usize] == 0.0);
    }
}
