//! The ranges several ops share: passes, batch sizes and iterations, and the SGD settings'
//! checks of `train`, `pretext` and `linear_probe`.

use crate::config::ParamError;

/// The optimiser settings shared by `train` and `linear_probe`, for one range check.
pub struct SgdSettings {
    /// Passes over the data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 penalty.
    pub weight_decay: f64,
}

/// Most passes over the data: far beyond any study, short of a run that never ends.
pub const MAX_EPOCHS: usize = 100_000;
/// Most examples per step: far beyond any study, short of an allocation abort.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Most iterations of an iterative solver (Lloyd's, the SVM's): short of a run that never ends.
pub const MAX_ITERATIONS: usize = 100_000;

/// Range checks of [`SgdSettings`], naming the field at fault.
pub fn check_sgd(s: &SgdSettings) -> Result<(), ParamError> {
    if s.epochs == 0 {
        return Err(ParamError::range("epochs", s.epochs, "at least 1"));
    }
    if s.batch_size == 0 {
        return Err(ParamError::range("batch_size", s.batch_size, "at least 1"));
    }
    crate::config::limits::at_most("epochs", s.epochs, MAX_EPOCHS)?;
    crate::config::limits::at_most("batch_size", s.batch_size, MAX_BATCH_SIZE)?;
    if !(s.lr > 0.0 && s.lr.is_finite()) {
        return Err(ParamError::range("lr", s.lr, "a positive number"));
    }
    if !(0.0..1.0).contains(&s.momentum) {
        return Err(ParamError::range("momentum", s.momentum, "in [0, 1)"));
    }
    if s.weight_decay.is_nan() || s.weight_decay < 0.0 {
        return Err(ParamError::range("weight_decay", s.weight_decay, "non-negative"));
    }
    Ok(())
}
