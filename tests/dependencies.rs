//! The dependency features that decide which CPU kernels compute, and so the bits of every artifact.

use std::process::Command;

/// gemm's AVX-512 kernels are compiled only with its `x86-v4` feature. Without it every x86-64 CPU
/// with FMA runs the same AVX2 kernels, and its small-product and matrix-vector kernels, which sum
/// across SIMD lanes, sum over 8 lanes everywhere; with it an AVX-512 machine would sum over 16 and
/// train other bits than an AVX2 one. A dependency could turn the feature on for the whole build
/// (features unify), so the resolved features are read here rather than assumed.
#[test]
fn gemm_runs_the_same_simd_kernels_on_every_x86_cpu_with_fma() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The x86-64 Linux build's features, the ones in question: `--target all` also reads every
    // other target's crates, which a fresh machine's build has not fetched (and `--offline` cannot).
    let tree = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-e",
            "features",
            "-i",
            "gemm-common",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(tree.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&tree.stderr));
    let text = String::from_utf8_lossy(&tree.stdout);
    assert!(text.starts_with("gemm-common v"), "not the tree asked for:\n{text}");
    assert!(text.contains("gemm feature \"default\""), "no feature edges read:\n{text}");
    let v4: Vec<&str> = text.lines().filter(|l| l.contains("x86-v4")).collect();
    assert!(v4.is_empty(), "gemm's AVX-512 kernels are enabled by:\n{}", v4.join("\n"));
}
