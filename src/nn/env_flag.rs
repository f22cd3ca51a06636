//! Switches read from the environment at start-up, shared by the process-wide measurement
//! switches of [`super::backward_switch`], [`super::pipeline`], [`super::sgd`]'s update,
//! [`super::step_profile`] and [`super::gemm_tf32`]: the on/off ones take `1` or `0`, the others
//! one of their names ([`Choice`]).

use std::sync::atomic::{AtomicU8, Ordering};

/// A switch's environment variable that says nothing this binary can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// The value is none of the valid ones (`expected` lists them).
    #[error("{env}={value:?}: expected {expected}")]
    Invalid { env: String, value: String, expected: String },
    /// The value is not Unicode, so it can name nothing.
    #[error("{env}: environment variable was not valid unicode: {value:?}")]
    NotUnicode { env: String, value: std::ffi::OsString },
    /// The value asks for what this binary was built without; `build` says which build has it.
    #[error("{env}={value:?}: this binary was built without it ({build}); unset it or choose another value")]
    NotBuilt { env: String, value: String, build: String },
}

/// A process-wide choice among named values, forced from its environment variable (or by
/// [`Choice::force`]) or, when nothing forces it, left to the caller's default (the device's,
/// say).
pub struct Choice<T: 'static> {
    env: &'static str,
    names: &'static [(&'static str, T)],
    /// `0` when nothing is forced, else one more than the forced value's index in `names`.
    forced: AtomicU8,
}

impl<T: Copy + PartialEq> Choice<T> {
    /// The choice among `names`, read from the variable `env`; at most 255 names.
    pub const fn new(env: &'static str, names: &'static [(&'static str, T)]) -> Self {
        assert!(names.len() < u8::MAX as usize);
        Choice { env, names, forced: AtomicU8::new(0) }
    }

    /// Forces `value` process-wide, or with `None` leaves the choice to the caller's default.
    /// Every value a caller can force must be named: an unnamed one is a bug in the switch's
    /// table, and forcing it panics rather than silently leaving the choice to the default.
    pub fn force(&self, value: Option<T>) {
        let index = value.map(|v| {
            self.names
                .iter()
                .position(|(_, n)| *n == v)
                .unwrap_or_else(|| panic!("{}: value not in its names", self.env))
        });
        self.forced.store(index.map_or(0, |i| i as u8 + 1), Ordering::Relaxed);
    }

    /// The forced value, if any.
    pub fn forced(&self) -> Option<T> {
        let i = self.forced.load(Ordering::Relaxed) as usize;
        i.checked_sub(1).map(|i| self.names[i].1)
    }

    /// The name of the forced value, if any (as its environment variable spells it).
    pub fn forced_name(&self) -> Option<&'static str> {
        let i = self.forced.load(Ordering::Relaxed) as usize;
        i.checked_sub(1).map(|i| self.names[i].0)
    }

    /// The switch's environment variable.
    pub fn env(&self) -> &'static str {
        self.env
    }

    /// The forced value, else `on_cpu` on the CPU and `elsewhere` on any other device.
    pub fn for_device(&self, device: &candle_core::Device, on_cpu: T, elsewhere: T) -> T {
        self.forced().unwrap_or(if device.is_cpu() { on_cpu } else { elsewhere })
    }

    /// Forces the value the environment variable names when it is set; a value that names none
    /// is the error, naming the variable and the valid names.
    pub fn from_env(&self) -> Result<(), SwitchError> {
        if let Some(value) = value_from_env(self.env, |v| self.parse(v))? {
            self.force(Some(value));
        }
        Ok(())
    }

    /// The value called `v`.
    pub(crate) fn parse(&self, v: &str) -> Result<T, SwitchError> {
        if let Some((_, value)) = self.names.iter().find(|(name, _)| *name == v) {
            return Ok(*value);
        }
        let quoted: Vec<String> = self.names.iter().map(|(name, _)| format!("`{name}`")).collect();
        let valid = match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "nothing".into(),
        };
        Err(SwitchError::Invalid { env: self.env.into(), value: v.into(), expected: valid })
    }
}

/// The value of the variable `env` as `parse` reads it: `None` when it is unset, `parse`'s error
/// (which names the variable and the valid values) when it says nothing valid.
pub(crate) fn value_from_env<T>(
    env: &str,
    parse: impl FnOnce(&str) -> Result<T, SwitchError>,
) -> Result<Option<T>, SwitchError> {
    match std::env::var(env) {
        Ok(v) => parse(&v).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(SwitchError::NotUnicode { env: env.into(), value }),
    }
}

/// The error when the variable `env`, set to `value` (`wanted`), asks for what this binary was
/// built without (`built` false); `build` says which build has it.
pub(crate) fn needs_build(env: &str, value: &str, wanted: bool, built: bool, build: &str) -> Result<(), SwitchError> {
    if wanted && !built {
        return Err(SwitchError::NotBuilt { env: env.into(), value: value.into(), build: build.into() });
    }
    Ok(())
}

/// The value of the on/off variable `env`: `None` when it is unset, an error naming the variable
/// and the valid values when it is neither `1` nor `0`.
pub(crate) fn flag_from_env(env: &str) -> Result<Option<bool>, SwitchError> {
    value_from_env(env, |v| parse_flag(env, v))
}

fn parse_flag(env: &str, v: &str) -> Result<bool, SwitchError> {
    match v {
        "1" => Ok(true),
        "0" => Ok(false),
        other => {
            Err(SwitchError::Invalid { env: env.into(), value: other.into(), expected: "1 (on) or 0 (off)".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_the_build_lacks_is_refused() {
        let err = needs_build("CFRUN_X", "fast", true, false, "the fast build").unwrap_err().to_string();
        assert_eq!(
            err,
            "CFRUN_X=\"fast\": this binary was built without it (the fast build); unset it or choose another value"
        );
        assert_eq!(needs_build("CFRUN_X", "fast", true, true, "b"), Ok(()));
        assert_eq!(needs_build("CFRUN_X", "slow", false, false, "b"), Ok(()));
    }

    #[test]
    fn one_and_zero_are_the_only_values() {
        assert_eq!(parse_flag("X", "1"), Ok(true));
        assert_eq!(parse_flag("X", "0"), Ok(false));
        for bad in ["yes", "true", "", " 1"] {
            let err = parse_flag("CFRUN_X", bad).unwrap_err().to_string();
            assert!(err.starts_with("CFRUN_X=") && err.ends_with("expected 1 (on) or 0 (off)"), "{err}");
        }
        assert_eq!(flag_from_env("CFRUN_SURELY_UNSET_FLAG_FOR_THIS_TEST"), Ok(None));
    }

    /// Each name parses to its value and can be forced and unforced; a wrong name is refused
    /// with every valid one; an unset variable forces nothing.
    #[test]
    fn a_choice_is_one_of_its_names() {
        static FRUIT: Choice<u32> = Choice::new("CFRUN_FRUIT", &[("apple", 10), ("pear", 20), ("fig", 30)]);
        for (name, value) in [("apple", 10), ("pear", 20), ("fig", 30)] {
            assert_eq!(FRUIT.parse(name), Ok(value));
            FRUIT.force(Some(value));
            assert_eq!(FRUIT.forced(), Some(value));
        }
        assert_eq!(FRUIT.for_device(&candle_core::Device::Cpu, 10, 20), 30);
        FRUIT.force(None);
        assert_eq!(FRUIT.forced(), None);
        assert_eq!(FRUIT.for_device(&candle_core::Device::Cpu, 10, 20), 10);
        assert_eq!(
            FRUIT.parse("plum").unwrap_err().to_string(),
            "CFRUN_FRUIT=\"plum\": expected `apple`, `pear` or `fig`"
        );
        let two: Choice<bool> = Choice::new("CFRUN_TWO", &[("on", true), ("off", false)]);
        assert_eq!(two.parse("").unwrap_err().to_string(), "CFRUN_TWO=\"\": expected `on` or `off`");
        let unset: Choice<bool> = Choice::new("CFRUN_SURELY_UNSET_CHOICE_FOR_THIS_TEST", &[("on", true)]);
        assert_eq!(unset.from_env(), Ok(()));
        assert_eq!(unset.forced(), None);
    }

    /// Forcing a value the table does not name is a bug in the table, not a way to unforce.
    #[test]
    #[should_panic(expected = "CFRUN_PARTIAL: value not in its names")]
    fn forcing_an_unnamed_value_panics() {
        let partial: Choice<u32> = Choice::new("CFRUN_PARTIAL", &[("one", 1)]);
        partial.force(Some(2));
    }
}
