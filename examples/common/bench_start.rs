//! How the network benchmarks start, shared by bench_train and bench_video: as the cfrun binary
//! and one of its jobs do, and with `--name value` arguments.

/// What a benchmark's body returns.
pub type BenchResult = Result<(), Box<dyn std::error::Error>>;

/// Applies the cfrun binary's process setup (candle's elementwise ops inline, freed memory kept),
/// then calls `run(threads)` on a thread of a pool of RAYON_NUM_THREADS threads (default 2), the
/// pool its kernels use, as a cfrun job does.
pub fn run_as_a_job(run: impl FnOnce(usize) -> BenchResult + Send) -> BenchResult {
    cfrun::process_setup::apply();
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    cfrun::exec::job_pool::on_pool(threads, || run(threads).map_err(|e| e.to_string())).map_err(Into::into)
}

/// The value after `name` in `args`, if both are there.
pub fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}
