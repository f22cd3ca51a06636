//! The `cfrun` binary; everything lives in the library.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // First: started as a command's watcher, this process is only that.
    cfrun::ops::command::watcher::init();
    cfrun::process_setup::apply();
    // `cfrun status FILE | head` closes stdout early: end quietly like other Unix tools instead
    // of panicking on the broken pipe (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cfrun::cli::main()
}
