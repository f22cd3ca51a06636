//! Training and inference throughput of the ResNet presets at batch 128 (`--batch N`) on 1x28x28 inputs.
//!
//! `cargo run --release --example bench_train -- [--steps N] [--batch N] [--presets tiny,cpu,gpu]
//! [--kernels candle|layers|fused] [--epoch] [--inference-only]`: `candle` uses candle's own conv2d and BN ops,
//! `layers` the custom ops one per layer, `fused` (default) also fuses blocks; `--epoch` also times one full `train()` epoch over 20k random images
//! (resnet_cpu, with augmentation). Threads: RAYON_NUM_THREADS (default 2).

#[path = "common/bench_start.rs"]
mod bench_start;
#[path = "common/cpu.rs"]
mod cpu;
use bench_start::{arg_value, run_as_a_job, BenchResult};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cfrun::nn::{self, ResNet, ResNetConfig};
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
    let steps: usize = arg_value(&args, "--steps").map(|v| v.parse()).transpose()?.unwrap_or(10);
    let presets = arg_value(&args, "--presets").unwrap_or_else(|| "tiny,cpu,gpu".into());
    let kernels = match arg_value(&args, "--kernels").as_deref() {
        Some("candle") => nn::CpuKernels::Candle,
        Some("layers") => nn::CpuKernels::Layers,
        _ => nn::CpuKernels::Fused,
    };
    nn::set_cpu_kernels(kernels);
    // `--kernels candle` is candle throughout, its backward passes included, unless
    // CFRUN_CONV_BACKWARD=cfrun or CFRUN_BN_BACKWARD=cfrun asks for the ones the GPU runs.
    if kernels == nn::CpuKernels::Candle {
        for switch in [&nn::backward_switch::CONV, &nn::backward_switch::BN] {
            switch.force(Some(nn::backward_switch::Backward::Candle));
        }
    }
    nn::backward_switch::from_env()?;
    let dev = Device::Cpu;
    let batch: usize = arg_value(&args, "--batch").map(|v| v.parse()).transpose()?.unwrap_or(128);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let xv: Vec<f32> = (0..batch * 28 * 28).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::from_vec(xv, (batch, 1, 28, 28), &dev)?;
    let y = Tensor::from_vec((0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(), batch, &dev)?;
    println!("kernels: {kernels:?}, threads: {threads}, batch {batch}, 1x28x28");
    for name in presets.split(',') {
        let arch = ResNetConfig::preset(&format!("resnet_{name}"), 1, 10).ok_or("unknown preset")?;
        let vm = VarMap::new();
        let model = ResNet::new(&arch, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        nn::init_weights(&vm, 0)?;
        let mut sgd = nn::sgd::Sgd::new(&vm, 0.9, 5e-4, BTreeMap::new())?;
        let mut step = || -> Result<(), Box<dyn std::error::Error>> {
            let loss = candle_nn::loss::cross_entropy(&model.forward_t(&x, true)?, &y)?;
            sgd.step(&loss.backward()?, 0.01)?;
            Ok(())
        };
        let n = if name == "gpu" { steps.div_ceil(5).max(2) } else { steps };
        if args.iter().any(|a| a == "--inference-only") {
            // For profiling the inference pass alone.
            model.forward_t(&x, false)?;
            let t0 = Instant::now();
            for _ in 0..n {
                model.forward_t(&x, false)?.to_vec2::<f32>()?;
            }
            println!("resnet_{name:5} inference {:8.1} img/s", (n * batch) as f64 / t0.elapsed().as_secs_f64());
            continue;
        }
        step()?;
        let (t0, c0) = (Instant::now(), cpu::process_cpu_seconds());
        for _ in 0..n {
            step()?;
        }
        let imgs = (n * batch) as f64;
        let train = imgs / t0.elapsed().as_secs_f64();
        let train_cpu = imgs * threads as f64 / (cpu::process_cpu_seconds() - c0);
        model.forward_t(&x, false)?;
        let (t0, c0) = (Instant::now(), cpu::process_cpu_seconds());
        for _ in 0..n {
            model.forward_t(&x, false)?.to_vec2::<f32>()?;
        }
        let infer = imgs / t0.elapsed().as_secs_f64();
        let infer_cpu = imgs * threads as f64 / (cpu::process_cpu_seconds() - c0);
        println!(
            "resnet_{name:5} train {train:8.1} img/s ({train_cpu:7.1} per {threads} CPU-s)   \
             inference {infer:8.1} img/s ({infer_cpu:7.1})   ({n} steps)"
        );
    }
    if args.iter().any(|a| a == "--epoch") {
        let n = 20_000;
        let pixels: Vec<u8> = (0..n * 784).map(|_| rng.random()).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let data = nn::ImageData { pixels: &pixels, n, c: 1, t: 1, h: 28, w: 28 };
        let cfg = nn::TrainConfig {
            arch: ResNetConfig::resnet_cpu(1, 10).into(),
            epochs: 1,
            batch_size: batch,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 0,
            schedule: nn::Schedule::Cosine,
            augment: nn::Augment { crop_padding: 2, hflip: false, clip_frames: 0 },
            seed: 0,
            precision: Default::default(),
        };
        let targets = nn::Targets::Hard { truth: nn::Truth::Labels(&labels), num_classes: 10 };
        let c0 = cpu::process_cpu_seconds();
        let t = nn::train(&data, &targets, &cfg, &dev, None, &mut nn::NoObserver)?;
        let s = &t.history[0];
        let cpu = cpu::process_cpu_seconds() - c0;
        println!(
            "train() epoch, 20k images, resnet_cpu: {:.1} s ({:.1} img/s; {cpu:.1} CPU-s = {:.1} img per {threads} CPU-s)",
            s.seconds,
            s.images_per_sec,
            n as f64 * threads as f64 / cpu
        );
    }
    Ok(())
}
