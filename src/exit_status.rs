//! How a child process ended, in words, for the errors of the command stage and of the
//! processes executor alike.

use std::process::ExitStatus;

/// How a child ended that did not exit 0, in words: its status, or the signal by name.
pub fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(libc::SIGKILL)) => {
            "was killed by SIGKILL (as the kernel's out-of-memory killer or `kill -9` do)".to_string()
        }
        (None, Some(sig)) => match signal_name(sig) {
            Some(name) => format!("was killed by {name} (signal {sig})"),
            None => format!("was killed by signal {sig}"),
        },
        (None, None) => "ended without a status".to_string(),
    }
}

/// The name of a signal a child is likely to die of.
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGABRT => "SIGABRT (an abort: a failed assertion in native code, say)",
        libc::SIGSEGV => "SIGSEGV (a bad memory access)",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL (an instruction this CPU lacks?)",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGXCPU => "SIGXCPU (a CPU-time limit)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// Codes and signals as a wait status holds them: a code in the high byte, a signal low.
    #[test]
    fn statuses_and_signals_read_as_words() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exited with status 3");
        assert!(describe(ExitStatus::from_raw(libc::SIGKILL)).contains("SIGKILL (as the kernel's out-of-memory killer"));
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGSEGV)),
            "was killed by SIGSEGV (a bad memory access) (signal 11)"
        );
        assert_eq!(describe(ExitStatus::from_raw(libc::SIGUSR1)), format!("was killed by signal {}", libc::SIGUSR1));
    }
}
