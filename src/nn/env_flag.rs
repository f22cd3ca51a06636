//! Switches read from the environment at start-up, shared by the process-wide measurement
//! switches of [`super::backward_switch`], [`super::pipeline`], [`super::step_profile`] and
//! [`super::gemm_tf32`]; the on/off ones take `1` or `0`.

/// The value of the variable `env` as `parse` reads it: `None` when it is unset, `parse`'s error
/// (which names the variable and the valid values) when it says nothing valid.
pub(crate) fn value_from_env<T>(env: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    match std::env::var(env) {
        Ok(v) => parse(&v).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{env}: {e}")),
    }
}

/// The value of the on/off variable `env`: `None` when it is unset, an error naming the variable
/// and the valid values when it is neither `1` nor `0`.
pub(crate) fn flag_from_env(env: &str) -> Result<Option<bool>, String> {
    value_from_env(env, |v| parse_flag(env, v))
}

fn parse_flag(env: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(format!("{env}={other:?}: expected 1 (on) or 0 (off)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_zero_are_the_only_values() {
        assert_eq!(parse_flag("X", "1"), Ok(true));
        assert_eq!(parse_flag("X", "0"), Ok(false));
        for bad in ["yes", "true", "", " 1"] {
            let err = parse_flag("CFRUN_X", bad).unwrap_err();
            assert!(err.starts_with("CFRUN_X=") && err.ends_with("expected 1 (on) or 0 (off)"), "{err}");
        }
        assert_eq!(flag_from_env("CFRUN_SURELY_UNSET_FLAG_FOR_THIS_TEST"), Ok(None));
    }
}
