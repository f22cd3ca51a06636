//! candle's errors as one-line messages for people. With `RUST_BACKTRACE=1` in the environment
//! candle attaches a backtrace to most of its errors and prints it inside the error's `Display`,
//! so a plain "no usable CUDA GPU" or a shape mismatch in a stage's log came with dozens of
//! frames (of a stripped binary: `<unknown>`). The backtrace stays in the error's `Debug` form.

use std::fmt;

use candle_core::Error;

/// Displays a candle error as candle would, less every backtrace it carries.
pub struct Brief<'a>(pub &'a Error);

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Error::WithBacktrace { inner, .. } => Brief(inner).fmt(f),
            Error::Context { inner, context } => write!(f, "{context}\n{}", Brief(inner)),
            Error::WithPath { inner, path } => write!(f, "path: {path:?} {}", Brief(inner)),
            other => other.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::backtrace::Backtrace;

    fn traced(e: Error) -> Error {
        Error::WithBacktrace { inner: Box::new(e), backtrace: Box::new(Backtrace::force_capture()) }
    }

    #[test]
    fn backtraces_are_left_out_at_any_depth() {
        let plain = Error::Msg("no device".into());
        let traced_plain = traced(Error::Msg("no device".into()));
        assert!(traced_plain.to_string().lines().count() > 1, "the test needs a backtrace that prints");
        assert_eq!(Brief(&traced_plain).to_string(), Brief(&plain).to_string());
        assert_eq!(Brief(&traced_plain).to_string(), "no device");

        let nested = traced(traced(Error::Msg("shape mismatch".into())).context("in conv1").with_path("/x/model"));
        assert_eq!(Brief(&nested).to_string(), "path: \"/x/model\" in conv1\nshape mismatch");
    }

    #[test]
    fn errors_without_backtraces_read_as_candle_writes_them() {
        let e = Error::Msg("shape mismatch".into()).context("in conv1");
        assert_eq!(Brief(&e).to_string(), e.to_string());
    }
}
