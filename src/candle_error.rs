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

/// The file system's error inside a candle error, if it is one (a full disk, a file size limit,
/// wrapped by candle or by the safetensors writer): so that a failed write can be said with
/// its file, as every other write is.
pub fn io_error(e: &Error) -> Option<std::io::Error> {
    let copy = |io: &std::io::Error| {
        io.raw_os_error()
            .map_or_else(|| std::io::Error::new(io.kind(), io.to_string()), std::io::Error::from_raw_os_error)
    };
    match e {
        // candle's own wrappers name no source, and its `Io` is transparent: its source is the
        // inner error's source, not the inner error.
        Error::WithBacktrace { inner, .. } | Error::Context { inner, .. } | Error::WithPath { inner, .. } => {
            return io_error(inner);
        }
        Error::Io(io) => return Some(copy(io)),
        _ => {}
    }
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(copy(io));
        }
        at = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::backtrace::Backtrace;

    /// The OS error of a failed write is found however candle wraps it; other errors have none.
    #[test]
    fn the_file_systems_error_is_found_inside() {
        let full = Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(io_error(&full).and_then(|e| e.raw_os_error()), Some(libc::ENOSPC));
        assert_eq!(io_error(&traced(full)).and_then(|e| e.raw_os_error()), Some(libc::ENOSPC));
        assert!(io_error(&Error::Msg("shape mismatch".into())).is_none());
    }

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
