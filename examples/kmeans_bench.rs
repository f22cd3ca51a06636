//! Times `cluster::fit_from` on a `.npy` matrix and initial centroids; prints one JSON line.
//!
//! Usage: kmeans_bench DATA.npy CENTROIDS.npy ITERS [--normalize] [--sample M] [--kmeanspp] [--assign-reps N]
//!        kmeans_bench --synthetic N D K ITERS [--normalize] [--sample M] [--kmeanspp] [--assign-reps N]
//! The synthetic mode generates an N x D mixture in memory (for peak-memory
//! checks with /usr/bin/time -v) and seeds with `fit`. Thread count comes
//! from RAYON_NUM_THREADS.

#[path = "common/npy.rs"]
mod npy;

use std::path::Path;
use std::time::Instant;

use cfrun::cluster::{self, Init, KMeansConfig};

fn main() {
    if let Err(e) = run() {
        eprintln!("kmeans_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: kmeans_bench DATA.npy CENTROIDS.npy ITERS [--normalize] [--sample M] [--kmeanspp]".into());
    }
    let synthetic = args[1] == "--synthetic";
    let num = |i: usize| -> Result<usize, String> {
        args.get(i).ok_or("missing argument")?.parse().map_err(|e| format!("argument {i}: {e}"))
    };
    let (x, c, iters) = if synthetic {
        let (n, d, k) = (num(2)?, num(3)?, num(4)?);
        let x = npy::Npy { data: mixture(n, d), shape: vec![n, d] };
        // Only the shape of the centroids is used: fit() seeds its own.
        let c = npy::Npy { data: Vec::new(), shape: vec![k, d] };
        (x, c, num(5)?)
    } else {
        let x = npy::read_f32(Path::new(&args[1]))?;
        let c = npy::read_f32(Path::new(&args[2]))?;
        (x, c, num(3)?)
    };
    let flag = |f: &str| args.iter().any(|a| a == f);
    let sample = args
        .iter()
        .position(|a| a == "--sample")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .transpose()?;
    let (n, d) = (x.shape[0], x.shape[1]);
    let k = c.shape[0];
    let mut cfg = KMeansConfig::new(k);
    cfg.iterations = iters;
    cfg.normalize = flag("--normalize");
    cfg.max_points_per_centroid = sample;
    let mut times = Vec::new();
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut on_iter = |_i: usize, _v: f64| {
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
    };
    let model = if flag("--kmeanspp") || synthetic {
        if flag("--kmeanspp") {
            cfg.init = Init::KMeansPlusPlus;
        }
        cluster::fit(&x.data, n, d, &cfg, &mut on_iter)
    } else {
        cluster::fit_from(&x.data, n, d, &c.data, &cfg, &mut on_iter)
    }
    .map_err(|e| e.to_string())?;
    let fit_s = t0.elapsed().as_secs_f64();
    let fit_cpu_s = process_cpu_seconds() - cpu0;
    let (t1, cpu1) = (Instant::now(), process_cpu_seconds());
    let (_, final_inertia) = cluster::assign(&model, &x.data, n).map_err(|e| e.to_string())?;
    let assign_s = t1.elapsed().as_secs_f64();
    let assign_cpu_s = process_cpu_seconds() - cpu1;
    // --assign-reps N: the fastest of N more full assignments, a load-robust figure for the kernel.
    let reps = args
        .iter()
        .position(|a| a == "--assign-reps")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(0), |s| s.parse::<usize>());
    let mut assign_min_s = assign_s;
    for _ in 0..reps.map_err(|e| e.to_string())? {
        let t = Instant::now();
        cluster::assign(&model, &x.data, n).map_err(|e| e.to_string())?;
        assign_min_s = assign_min_s.min(t.elapsed().as_secs_f64());
    }
    let iters_run = model.inertia_per_iter.len();
    let out = serde_json::json!({
        "n": n, "d": d, "k": k,
        "threads": rayon::current_num_threads(),
        "fit_s": fit_s,
        "iters": iters_run,
        "s_per_iter": fit_s / iters_run.max(1) as f64,
        "fit_cpu_s": fit_cpu_s,
        "cpu_s_per_iter": fit_cpu_s / iters_run.max(1) as f64,
        "iter_times": times,
        "inertia_per_iter": model.inertia_per_iter,
        "final_inertia": final_inertia,
        "assign_s": assign_s,
        "assign_cpu_s": assign_cpu_s,
        "assign_min_s": assign_min_s,
        "splits": model.empty_cluster_splits,
    });
    println!("{out}");
    Ok(())
}

/// A seeded mixture of 64 uniform blobs, generated in parallel chunks.
fn mixture(n: usize, d: usize) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    let mut x = vec![0f32; n * d];
    x.par_chunks_mut(4096 * d).enumerate().for_each(|(ch, block)| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(ch as u64);
        for (i, row) in block.chunks_exact_mut(d).enumerate() {
            let blob = (ch * 4096 + i) % 64;
            for (j, v) in row.iter_mut().enumerate() {
                let centre = ((blob * 31 + j * 17) % 97) as f32 / 10.0;
                *v = centre + rng.random_range(-1.0..1.0);
            }
        }
    });
    x
}

/// User + system CPU seconds of the whole process (all threads), to the
/// microsecond; 0 where unavailable. Less sensitive than wall time to other
/// jobs on a shared machine.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}
