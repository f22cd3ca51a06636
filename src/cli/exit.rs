//! cfrun's exit codes, one name each.

/// A stage failed or was skipped, a check found damage, or the output could not be written: the
/// results, or what was told of them, are incomplete.
pub const FAILED: u8 = 1;
/// The experiment file, the command line or a precondition is invalid: nothing ran.
pub const INVALID: u8 = 2;
/// Interrupted (Ctrl-C, SIGINT): running jobs were cancelled, nothing half-written was published.
pub const INTERRUPTED: u8 = 130;
/// Terminated (SIGTERM: `kill`, a scheduler ending a job): as [`INTERRUPTED`], under the code
/// a shell gives a process that SIGTERM ended (128 + 15).
pub const TERMINATED: u8 = 143;
/// Hung up (SIGHUP: the terminal or ssh session closed): as [`INTERRUPTED`], under 128 + 1.
pub const HUNG_UP: u8 = 129;
