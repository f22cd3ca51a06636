//! What `/proc/PID/stat` says of a process: its run state and its parent.

/// The fields of `/proc/PID/stat` after the command name, which is in parentheses and may
/// itself hold spaces and parentheses.
fn fields_after_name(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// The process's parent, or `None` when it is gone (or there is no `/proc`).
pub fn parent_of(pid: i32) -> Option<i32> {
    fields_after_name(pid)?.get(1)?.parse().ok()
}

/// Whether the process is stopped by a signal (SIGSTOP, SIGTSTP): it will do nothing until it is
/// sent SIGCONT. Not a tracer's stop (`t`), which a debugger or `strace` makes at every step and
/// SIGCONT does not end.
pub fn is_stopped(pid: i32) -> bool {
    state(pid) == Some('T')
}

/// The process's state letter (`R` running, `S` sleeping, `T` stopped, `Z` a zombie, ...), or
/// `None` when it is gone.
pub fn state(pid: i32) -> Option<char> {
    fields_after_name(pid)?.first()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn reads_the_parent_and_the_state_of_a_process_whose_name_has_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("sl) (e p");
        std::fs::copy("/bin/sleep", &program).unwrap();
        let me = std::process::id() as i32;
        let mut child = Command::new(&program).arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        assert_eq!(parent_of(pid), Some(me));
        assert!(!is_stopped(pid));
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let stopped = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            is_stopped(pid)
        });
        assert!(stopped, "a SIGSTOP'd child reads as stopped");
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let resumed = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !is_stopped(pid)
        });
        assert!(resumed, "and as running again after SIGCONT");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id() as i32));
        assert_eq!(parent_of(pid), None, "reaped: gone");
    }
}
