//! Process-wide settings applied once at start-up by the binary and by the benchmark examples
//! (so benchmarks measure what `cfrun` runs): those that make training fast, and SIGPIPE's
//! default (a closed pipe ends the process quietly).

/// mimalloc 3's index of `mi_option_purge_delay` (`mimalloc.h`, `enum mi_option_e`); pinned by
/// a test against the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the settings; call before any other thread exists.
pub fn apply() {
    // candle's CPU elementwise ops run on their own spinning thread pool, which competes with
    // rayon's workers (our kernels) on small machines; inline them unless the user chose.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // mimalloc returns freed memory to the OS after a delay, and a training step frees and
    // re-allocates the same activation-sized buffers every few milliseconds: each round trip
    // costs page faults and the kernel zeroing the pages again (10-15% of a step's CPU time on
    // a 2-core machine). Keeping freed memory bounds the process at its peak, which a
    // training step reaches anyway.
    // SAFETY: setting an integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // `cfrun status FILE | head` closes stdout early: end quietly like other Unix tools instead
    // of panicking on the broken pipe (Rust ignores SIGPIPE by default).
    // SAFETY: restoring the default disposition of one signal at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index names the purge delay: its documented default is 1000 ms, no other option's.
    #[test]
    fn purge_delay_index() {
        // SAFETY: reading an integer option.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(default == 1000 || default == -1, "option {MI_OPTION_PURGE_DELAY} is {default}");
        apply();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
    }
}
