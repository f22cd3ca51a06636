//! Ctrl-C for drivers that own cluster jobs: the first SIGINT, SIGTERM or SIGHUP only raises a
//! flag, so the driver can cancel its jobs before it exits (a second one ends the process at once).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The first signal that arrived (0: none), for the exit code.
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = FIRST_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: restoring the default disposition and re-raising are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Routes SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session) to [`interrupted`]; a
/// SIGHUP already ignored (`nohup cfrun ...`) stays ignored, so the run outlives the session.
pub fn install() {
    // SAFETY: the handler only touches an atomic (and, the second time, async-signal-safe calls);
    // setting a disposition and putting the previous one back are plain calls at start-up.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            let before = libc::signal(sig, on_signal as *const () as libc::sighandler_t);
            if sig == libc::SIGHUP && before == libc::SIG_IGN {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
    }
}

/// Whether Ctrl-C (or SIGTERM, SIGHUP) arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The signal that interrupted the run (`SIGINT`, `SIGTERM` or `SIGHUP`), if one did.
pub fn signal() -> Option<libc::c_int> {
    Some(FIRST_SIGNAL.load(Ordering::SeqCst)).filter(|&s| s != 0)
}
