//! Process-wide switches between cfrun's backward passes off the CPU kernels and candle's own, one
//! per layer kind, for A/B measurements on a GPU: `CFRUN_CONV_BACKWARD` and `CFRUN_BN_BACKWARD`,
//! each `cfrun` (the default) or `candle`, read by the binary at start-up. candle's backward sums
//! in another order, so `candle` keys results apart ([`super::math_switches`]).

use super::env_flag::{Choice, SwitchError};

/// Whose backward a layer kind uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backward {
    /// cfrun's (see [`super::conv_device`] and [`super::batchnorm`]); the default.
    Cfrun,
    /// candle's autograd through its own ops.
    Candle,
}

/// The names both switches take.
const NAMES: &[(&str, Backward)] = &[("cfrun", Backward::Cfrun), ("candle", Backward::Candle)];

/// The convolution's ([`super::conv_device`]).
pub static CONV: Choice<Backward> = Choice::new("CFRUN_CONV_BACKWARD", NAMES);
/// Batch norm's in train mode ([`super::batchnorm`]).
pub static BN: Choice<Backward> = Choice::new("CFRUN_BN_BACKWARD", NAMES);

impl Choice<Backward> {
    /// The backward in force: cfrun's unless candle's is forced.
    pub fn get(&self) -> Backward {
        self.forced().unwrap_or(Backward::Cfrun)
    }
}

/// Applies every switch's environment variable; the first bad value is the error.
pub fn from_env() -> Result<(), SwitchError> {
    CONV.from_env()?;
    BN.from_env()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_switch_names_both_backwards_and_its_variable() {
        for (s, env) in [(&CONV, "CFRUN_CONV_BACKWARD"), (&BN, "CFRUN_BN_BACKWARD")] {
            assert_eq!(s.parse("cfrun"), Ok(Backward::Cfrun));
            assert_eq!(s.parse("candle"), Ok(Backward::Candle));
            let err = s.parse("gemm").unwrap_err().to_string();
            assert!(err.contains(env) && err.contains("`cfrun` or `candle`"), "{err}");
        }
        let local = Choice::new("CFRUN_TEST_ONLY", NAMES);
        assert_eq!(local.get(), Backward::Cfrun);
        local.force(Some(Backward::Candle));
        assert_eq!(local.get(), Backward::Candle);
    }
}
