//! Times `eval::linear_probe` on `.npy` splits; prints one JSON line per epoch budget.
//!
//! Usage: probe_bench TRAIN_X.npy TRAIN_Y.npy TEST_X.npy TEST_Y.npy
//!        [--epochs E[,E2,...]] [--batch B] [--lr LR] [--wd WD] [--momentum M] [--seed S]
//!
//!        [--solver sgd|lbfgs] [--tol T] [--trace]
//!
//! Defaults are `ProbeConfig::default()`. With `--solver lbfgs` an epoch budget is an iteration
//! cap, and `--trace` adds `"path": [[train_top1, test_top1], ...]`, both splits' top-1 after
//! every iteration of that run (scoring them is inside the timed work, so a traced run's seconds
//! are not a timing). `--epochs 1,2,4` trains three separate probes (the
//! cosine schedule spans each run's own epochs, so a short run is not a prefix of a long one),
//! loading the splits once. Each line has the wall and process CPU seconds of that probe alone
//! (standardising, training, scoring both splits), not of loading the files. Thread count comes
//! from RAYON_NUM_THREADS.

#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/npy.rs"]
mod npy;

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use cfrun::eval::{self, ProbeConfig, ProbeSolver};

const USAGE: &str = "usage: probe_bench TRAIN_X TRAIN_Y TEST_X TEST_Y [--epochs E[,E2,...]] [--batch B] [--lr LR] \
                     [--wd WD] [--momentum M] [--seed S] [--solver sgd|lbfgs] [--tol T] [--trace]";

fn main() {
    if let Err(e) = run() {
        eprintln!("probe_bench: {e}");
        std::process::exit(1);
    }
}

/// Value following `--name`, parsed, or `default`.
fn opt<T: FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse().map_err(|_| format!("bad value for {name}"))
        }
    }
}

/// The epoch budgets of `--epochs` (a comma-separated list), or `default` alone.
fn epoch_budgets(args: &[String], default: usize) -> Result<Vec<usize>, String> {
    let list: String = opt(args, "--epochs", default.to_string())?;
    list.split(',')
        .map(|e| e.trim().parse::<usize>().map_err(|_| format!("bad value for --epochs: {e:?} (e.g. --epochs 1,2,4)")))
        .collect()
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err(USAGE.into());
    }
    let trx = npy::read_f32(Path::new(&args[1]))?;
    let try_ = npy::read_labels(Path::new(&args[2]))?;
    let tex = npy::read_f32(Path::new(&args[3]))?;
    let tey = npy::read_labels(Path::new(&args[4]))?;
    let d = trx.shape[1];
    let classes = try_.data.iter().chain(&tey.data).max().map_or(0, |&m| m as usize + 1);
    let def = ProbeConfig::default();
    let solver = match opt(&args, "--solver", "sgd".to_string())?.as_str() {
        "sgd" => ProbeSolver::Sgd,
        "lbfgs" => ProbeSolver::Lbfgs,
        other => return Err(format!("bad value for --solver: {other:?} (sgd or lbfgs)")),
    };
    let trace = args.iter().any(|a| a == "--trace");
    if trace && solver != ProbeSolver::Lbfgs {
        return Err("--trace needs --solver lbfgs (an SGD run's schedule spans its own epochs)".into());
    }
    let base = ProbeConfig {
        solver,
        tol: opt(&args, "--tol", def.tol)?,
        epochs: def.epochs,
        batch_size: opt(&args, "--batch", def.batch_size)?,
        lr: opt(&args, "--lr", def.lr)?,
        weight_decay: opt(&args, "--wd", def.weight_decay)?,
        momentum: opt(&args, "--momentum", def.momentum)?,
        seed: opt(&args, "--seed", def.seed)?,
    };
    // Start rayon's pool now, so the first timed probe does not pay for spawning its threads
    // (the peer's thread pools are warm by the time it is timed, too).
    rayon::broadcast(|_| ());
    let data = eval::ProbeData {
        train_x: &trx.data,
        train_y: &try_.data,
        test_x: &tex.data,
        test_y: &tey.data,
        d,
        num_classes: classes,
    };
    for epochs in epoch_budgets(&args, def.epochs)? {
        let cfg = ProbeConfig { epochs, ..base.clone() };
        let (t0, c0) = (Instant::now(), cpu::process_cpu_seconds());
        let (path, r) = if trace {
            let (path, r) = eval::lbfgs_probe_path(data, &cfg).map_err(|e| e.to_string())?;
            (Some(path), r)
        } else {
            let r = eval::linear_probe(data, &cfg, &mut |_, _| {}).map_err(|e| e.to_string())?;
            (None, r)
        };
        let (secs, cpu_secs) = (t0.elapsed().as_secs_f64(), cpu::process_cpu_seconds() - c0);
        let out = serde_json::json!({
            "path": path,
            "n_train": try_.data.len(), "n_test": tey.data.len(), "d": d, "classes": classes,
            "threads": rayon::current_num_threads(),
            "config": cfg,
            "seconds": secs, "cpu_seconds": cpu_secs,
            "train_top1": r.train_top1, "test_top1": r.test_top1, "test_top5": r.test_top5,
            "loss_per_epoch": r.loss_per_epoch,
        });
        println!("{out}");
    }
    Ok(())
}
