//! How a command failed to run to a clean exit, each kind with what a person needs to act on it:
//! the program's last lines of stderr where it ran at all.

use std::collections::VecDeque;
use std::fmt;

/// Why a command did not end with status 0.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// A path given as the program is not in the scratch folder the command runs in.
    #[error("was not found (`{0}` is not in the stage's scratch folder; list it in `code`)")]
    NotInScratch(String),
    /// No program of that name on `PATH` (shown as it was).
    #[error("was not found on PATH ({0})")]
    NotOnPath(String),
    /// The program, or what cfrun needs to watch it, could not be started.
    #[error("could not be started: {what}{source}")]
    NotStarted {
        /// What could not be started or made (`cfrun's watcher: `), or nothing for the program.
        what: &'static str,
        /// The system's reason.
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("could not be waited for: {0}")]
    Wait(std::io::Error),
    /// It ran past its `timeout` and was killed, with all it started.
    #[error("timed out after {seconds} s (its `timeout`) and was killed{stderr}")]
    TimedOut {
        /// The stage's `timeout`.
        seconds: f64,
        /// Its last lines of stderr.
        stderr: StderrTail,
    },
    /// It ended with a status other than 0, or by a signal.
    #[error("{status}{stderr}")]
    Exited {
        /// The status in words (`exited with status 3`, `was killed by SIGSEGV`).
        status: String,
        /// Its last lines of stderr.
        stderr: StderrTail,
    },
    /// cfrun's watcher was killed before the program ended, and took the program with it.
    #[error("was stopped: cfrun's watcher of the command {how} before it ended{stderr}")]
    WatcherKilled {
        /// How the watcher ended, in words.
        how: String,
        /// The program's last lines of stderr.
        stderr: StderrTail,
    },
    /// A process it started outside its group held its output open after it ended; failed, not
    /// published, since that process may have written into the outputs.
    #[error(
        "started a process that left its process group (setsid?) and still held the command's output open {grace_s} s \
         after the command {ending}; {fate}"
    )]
    LeftBehind {
        /// How long cfrun waited for the output to close.
        grace_s: u64,
        /// How the command ended, in words.
        ending: &'static str,
        /// What cfrun did about that process.
        fate: String,
    },
}

/// The last lines a program wrote to stderr, as an error message ends with them.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(pub VecDeque<String>);

impl fmt::Display for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(" (stderr was empty)");
        }
        let body: Vec<&str> = self.0.iter().map(String::as_str).collect();
        write!(f, "; last lines of stderr:\n    {}", body.join("\n    "))
    }
}
