//! The `cfrun` binary; everything lives in the library.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // First: started as a command's watcher, this process is only that.
    cfrun::ops::command::watcher::init();
    cfrun::process_setup::apply();
    cfrun::cli::main()
}
