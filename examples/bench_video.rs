//! Training and inference throughput of the R(2+1)D presets on 1x8x24x24 clips (by default).
//!
//! `cargo run --release --example bench_video -- [--steps N] [--batch B] [--presets small,large]
//! [--frames T] [--size S] [--mode both|train|infer]` (`--mode` for profiling one half). Threads: RAYON_NUM_THREADS (default 2). The PyTorch side of the same
//! networks is `benches/python/torch_r2plus1d.py`.

#[path = "common/bench_start.rs"]
mod bench_start;
#[path = "common/cpu.rs"]
mod cpu;
use bench_start::{arg_value, run_as_a_job, BenchResult};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cfrun::nn::{self, R2Plus1D, R2Plus1DConfig};
use mimalloc::MiMalloc;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> BenchResult {
    run_as_a_job(run)
}

fn run(threads: usize) -> BenchResult {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(arg_value(&args, name).map(|v| v.parse()).transpose()?.unwrap_or(default))
    };
    let (steps, batch, frames, size) =
        (num("--steps", 5)?, num("--batch", 64)?, num("--frames", 8)?, num("--size", 24)?);
    let presets = arg_value(&args, "--presets").unwrap_or_else(|| "small,large".into());
    let mode = arg_value(&args, "--mode").unwrap_or_else(|| "both".into());
    let (do_train, do_infer) = (mode != "infer", mode != "train");
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let xv: Vec<f32> = (0..batch * frames * size * size).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::from_vec(xv, (batch, 1, frames, size, size), &dev)?;
    let y = Tensor::from_vec((0..batch as u32).map(|i| i % 16).collect::<Vec<_>>(), batch, &dev)?;
    println!("threads: {threads}, batch {batch}, clips 1x{frames}x{size}x{size}");
    for name in presets.split(',') {
        let arch = R2Plus1DConfig::preset(&format!("r2plus1d_{name}"), 1, 16).ok_or("unknown preset")?;
        let vm = VarMap::new();
        let model = R2Plus1D::new(&arch, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        nn::init_weights(&vm, 0)?;
        let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        let mut sgd = nn::sgd::Sgd::new(&vm, 0.9, 5e-4, BTreeMap::new())?;
        let mut step = || -> Result<(), Box<dyn std::error::Error>> {
            let loss = candle_nn::loss::cross_entropy(&model.forward_t(&x, true)?, &y)?;
            sgd.step(&loss.backward()?, 0.01)?;
            Ok(())
        };
        step()?;
        let (t0, c0) = (Instant::now(), cpu::process_cpu_seconds());
        for _ in 0..if do_train { steps } else { 0 } {
            step()?;
        }
        let train = (steps * batch) as f64 / t0.elapsed().as_secs_f64();
        let train_cpu = (steps * batch * threads) as f64 / (cpu::process_cpu_seconds() - c0);
        model.forward_t(&x, false)?;
        let (t0, c0) = (Instant::now(), cpu::process_cpu_seconds());
        for _ in 0..if do_infer { steps } else { 0 } {
            model.forward_t(&x, false)?.to_vec2::<f32>()?;
        }
        let infer = (steps * batch) as f64 / t0.elapsed().as_secs_f64();
        let infer_cpu = (steps * batch * threads) as f64 / (cpu::process_cpu_seconds() - c0);
        println!(
            "r2plus1d_{name:6} {params:8} params  train {train:7.1} clips/s ({train_cpu:7.1} per {threads} CPU-s)  \
             inference {infer:8.1} clips/s ({infer_cpu:8.1})  ({steps} steps)"
        );
    }
    Ok(())
}
