//! Compiles cfrun's own CUDA kernels (`src/nn/bn_cuda/kernels.cu`) to PTX for the `cuda` builds;
//! a CPU build compiles nothing. nvcc is `$NVCC` or the one on the PATH (scripts/build-cuda.sh
//! sets both), for `compute_$CUDA_COMPUTE_CAP` (default 75, the oldest CUDA 13 targets; the PTX is
//! compiled for the card in hand when first loaded).

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &str = "src/nn/bn_cuda/kernels.cu";

fn main() {
    println!("cargo:rerun-if-changed={KERNELS}");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "75".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bn_kernels.ptx");
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch=compute_{cap}"), KERNELS, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("the cuda feature needs nvcc to compile {KERNELS}: `{nvcc}`: {e}"));
    assert!(status.success(), "`{nvcc}` could not compile {KERNELS} ({status})");
}
