//! Learning-rate schedules, evaluated per optimiser step.
//!
//! With `S` steps per epoch, `E` epochs and `W` warm-up epochs, step `t` (0-based, over the
//! whole run) gets:
//! - warm-up (`t < W*S`): `lr * (t + 1) / (W*S)`, rising linearly to the base rate;
//! - then `Constant`: `lr`; `Cosine`: `lr * (1 + cos(pi * (t - W*S) / (E*S - W*S))) / 2`;
//!   `Step`: `lr * gamma^k` with `k` the number of milestones (epochs) `<= t / S`.

use serde::{Deserialize, Serialize};

/// The decay after warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// No decay.
    Constant,
    /// Half-cosine from the base rate to zero over the remaining steps.
    Cosine,
    /// Multiply by `gamma` at each milestone epoch.
    Step {
        /// Epochs (0-based) from which the next factor applies.
        milestones: Vec<usize>,
        /// Factor per milestone.
        gamma: f64,
    },
}

/// The learning rate of global step `step`.
pub fn lr_at(
    base: f64,
    schedule: &Schedule,
    warmup_epochs: usize,
    epochs: usize,
    steps_per_epoch: usize,
    step: usize,
) -> f64 {
    let warm = warmup_epochs * steps_per_epoch;
    if step < warm {
        return base * (step + 1) as f64 / warm as f64;
    }
    match schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            let span = (epochs * steps_per_epoch).saturating_sub(warm).max(1);
            let t = (step - warm) as f64 / span as f64;
            base * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
        }
        Schedule::Step { milestones, gamma } => {
            let epoch = step / steps_per_epoch.max(1);
            let k = milestones.iter().filter(|&&m| m <= epoch).count();
            base * gamma.powi(k as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        // 2 warm-up epochs of 5 steps: 0.1, 0.2, .. 1.0; then cosine over 10 steps.
        let lr = |t| lr_at(1.0, &Schedule::Cosine, 2, 4, 5, t);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(15) - 0.5).abs() < 1e-12);
        assert!(lr(19) > 0.0 && lr(19) < 0.03);
    }

    #[test]
    fn step_milestones() {
        let s = Schedule::Step { milestones: vec![2, 3], gamma: 0.1 };
        let lr = |t| lr_at(1.0, &s, 0, 4, 10, t);
        assert_eq!(lr(19), 1.0);
        assert!((lr(20) - 0.1).abs() < 1e-12);
        assert!((lr(39) - 0.01).abs() < 1e-12);
        assert_eq!(lr_at(0.5, &Schedule::Constant, 0, 3, 7, 20), 0.5);
    }
}
