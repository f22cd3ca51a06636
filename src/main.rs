//! The `cfrun` binary; everything lives in the library.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // candle's CPU elementwise ops run on their own spinning thread pool, which competes with
    // rayon's workers (our kernels) on small machines; inline them unless the user chose.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // `cfrun status FILE | head` closes stdout early: end quietly like other Unix tools instead
    // of panicking on the broken pipe (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cfrun::cli::main()
}
