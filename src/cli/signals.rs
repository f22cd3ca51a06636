//! Signal dispositions while instances run.

/// While instances run, a write to a closed stdout or stderr (`cfrun run FILE 2>&1 | head`)
/// fails quietly instead of ending the process with SIGPIPE part-way through a study (the log
/// lines are lost, the results are not), and a write past the file size limit (`ulimit -f`)
/// fails with "File too large" naming the file instead of SIGXFSZ killing the run without a
/// word. Commands get both defaults back (`std::process` restores SIGPIPE; the command stage
/// SIGXFSZ). Afterwards the summary ends quietly on a closed pipe again, like other Unix tools.
pub(super) struct SignalsFailWrites;

impl SignalsFailWrites {
    /// Until dropped.
    pub(super) fn while_running() -> SignalsFailWrites {
        for signal in [libc::SIGPIPE, libc::SIGXFSZ] {
            // SAFETY: sets the disposition of one signal; no handler runs Rust code.
            unsafe { libc::signal(signal, libc::SIG_IGN) };
        }
        SignalsFailWrites
    }
}

impl Drop for SignalsFailWrites {
    fn drop(&mut self) {
        for signal in [libc::SIGPIPE, libc::SIGXFSZ] {
            // SAFETY: as above, back to the defaults `main` set.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
}
