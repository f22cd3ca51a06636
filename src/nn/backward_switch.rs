//! Process-wide switches between cfrun's backward passes off the CPU kernels and candle's own, one
//! per layer kind, for A/B measurements on a GPU: `CFRUN_CONV_BACKWARD` and `CFRUN_BN_BACKWARD`,
//! each `cfrun` (the default) or `candle`, read by the binary at start-up.

use super::env_flag::value_from_env;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whose backward a layer kind uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backward {
    /// cfrun's (see [`super::conv_device`] and [`super::batchnorm`]).
    Cfrun,
    /// candle's autograd through its own ops.
    Candle,
}

/// One layer kind's switch.
pub struct Switch {
    env: &'static str,
    candle: AtomicBool,
}

/// The convolution's ([`super::conv_device`]).
pub static CONV: Switch = Switch::new("CFRUN_CONV_BACKWARD");
/// Batch norm's in train mode ([`super::batchnorm`]).
pub static BN: Switch = Switch::new("CFRUN_BN_BACKWARD");

impl Switch {
    const fn new(env: &'static str) -> Self {
        Switch { env, candle: AtomicBool::new(false) }
    }

    /// Sets this layer kind's backward process-wide.
    pub fn set(&self, backward: Backward) {
        self.candle.store(backward == Backward::Candle, Ordering::Relaxed);
    }

    /// The backward in force.
    pub fn get(&self) -> Backward {
        if self.candle.load(Ordering::Relaxed) {
            Backward::Candle
        } else {
            Backward::Cfrun
        }
    }

    /// Applies this switch's environment variable when it is set.
    pub fn from_env(&self) -> Result<(), String> {
        if let Some(backward) = value_from_env(self.env, |v| self.parse(v))? {
            self.set(backward);
        }
        Ok(())
    }

    fn parse(&self, v: &str) -> Result<Backward, String> {
        match v {
            "cfrun" => Ok(Backward::Cfrun),
            "candle" => Ok(Backward::Candle),
            other => Err(format!("{}={other:?}: expected `cfrun` or `candle`", self.env)),
        }
    }
}

/// Applies every switch's environment variable; the first bad value is the error.
pub fn from_env() -> Result<(), String> {
    CONV.from_env()?;
    BN.from_env()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_switch_names_both_backwards_and_its_variable() {
        for s in [&CONV, &BN] {
            assert_eq!(s.parse("cfrun"), Ok(Backward::Cfrun));
            assert_eq!(s.parse("candle"), Ok(Backward::Candle));
            let err = s.parse("gemm").unwrap_err();
            assert!(err.contains(s.env) && err.contains("`cfrun` or `candle`"), "{err}");
        }
        let local = Switch::new("CFRUN_TEST_ONLY");
        assert_eq!(local.get(), Backward::Cfrun);
        local.set(Backward::Candle);
        assert_eq!(local.get(), Backward::Candle);
    }
}
