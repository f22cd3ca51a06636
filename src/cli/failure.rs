//! How a command fails: its error, typed to the exit code it maps to.

use crate::config::ConfigError;

/// Why a command stopped: invalid input (exit 2, nothing ran) or a failure while working (exit 1).
pub(super) enum Failure {
    /// The experiment file is invalid.
    Config(ConfigError),
    /// The command line or a precondition is invalid.
    Other(String),
    /// One argument of the command line is invalid: `location` names which (`target argument #2`),
    /// as `--json` reports it.
    Argument { location: String, message: String },
    /// Something failed while working: the cache, the device, a download, a write. Kept typed
    /// (its sources are printed) and never reported as invalid input.
    Runtime(Box<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    /// Wraps a runtime error.
    pub(super) fn runtime(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Failure {
        Failure::Runtime(e.into())
    }

    /// An invalid command-line argument, `location` naming it (`--max-jobs`, `target argument #2`).
    pub(super) fn argument(location: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure::Argument { location: location.into(), message: message.into() }
    }

    /// The exit code it ends the command with.
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) | Failure::Other(_) | Failure::Argument { .. } => super::exit::INVALID,
            Failure::Runtime(_) => super::exit::FAILED,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}
