#!/usr/bin/env bash
# Build cfrun with candle's CUDA backend on a machine that has no GPU, no driver
# and no system CUDA toolkit (see shared/CANDLE.md, "Building with CUDA ...").
#
# Usage: scripts/build-cuda.sh [--fetch-only]   (from anywhere; builds the crate this script lives in)
#        --fetch-only: install the wheels and make the link directory, build nothing.
# Env:   CUDA_DEPS         cache for the pip-installed CUDA wheels   (default ~/.cache/cfrun-cuda)
#        CARGO_TARGET_DIR  cargo target dir                          (default /work/cuda-target)
#        CUDA_COMPUTE_CAP  GPU arch for candle-kernels' nvcc         (default 90 = H100/H200)
#        VARIANTS          what to build: "cuda" (candle's kernels), "cudnn" (cuDNN convolutions)
#                          or both                                   (default "cuda cudnn")
#        BUNDLE            where the GPU machine's files go          (default <repo>/target/gpu)
#
# Output: $BUNDLE/cfrun-<variant> (stripped) and, compressed for the device machine's 64 MiB
# carry limit, $BUNDLE/cfrun-<variant>.xz (~8 MB each); scripts/gpu-bench.sh unpacks them.
# The GPU machines seen so far have libcurand.so.10 (system CUDA 13.0 and PyTorch's venv); where
# one lacks it, carry the nvidia-curand wheel's copy too (`xz -9`: ~41 MB).
#
# Run time (on the GPU machine): the real libcuda.so.1 comes from the driver; LD_LIBRARY_PATH must
# reach libcudart.so.13, libcublas(Lt).so.13, libnvrtc.so.13, libcurand.so.10 and, for the cudnn
# variant, libcudnn.so.9 (PyTorch's nvidia-* cu13 wheels serve, apart from libcurand). Without
# libcudnn.so.9 the cudnn binary does not start: use the cuda one (gpu-bench.sh falls back).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FETCH_ONLY=0
[[ "${1:-}" == "--fetch-only" ]] && FETCH_ONLY=1
VARIANTS="${VARIANTS:-cuda cudnn}"
BUNDLE="${BUNDLE:-$REPO/target/gpu}"
DEPS="${CUDA_DEPS:-$HOME/.cache/cfrun-cuda}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/cuda-target}"
PY="${PYTHON:-python3}"

# --- 1. CUDA toolkit pieces from PyPI ------------------------------------------------------------
# nvcc is pinned to 13.0.x: the GPU machines' driver (580) is CUDA 13.0 and rejects PTX emitted by
# a newer nvcc. cudarc reads the CUDA version from `nvcc --version`, so this pin also picks its
# API bindings. --no-deps keeps pip from dragging in unrelated packages; --target keeps everything
# in one private directory (no venv, no system changes). ~675 MB.
WHEELS=(
  'nvidia-cuda-nvcc==13.0.*'     # nvcc, ptxas, fatbinary
  'nvidia-cuda-crt==13.0.*'      # crt/ headers nvcc includes
  'nvidia-nvvm==13.0.*'          # cicc (nvcc's front end)
  'nvidia-cuda-runtime==13.0.*'  # cuda_runtime.h + libcudart.so.13
  'nvidia-cuda-cccl==13.0.*'     # cub/thrust/cuda::std headers candle-kernels includes
  'nvidia-cuda-nvrtc==13.0.*'    # libnvrtc.so.13 (cudarc links it)
  'nvidia-curand==10.4.0.35'     # libcurand.so.10 (CUDA 13.0 release)
  'nvidia-cublas==13.0.2.14'     # libcublas/libcublasLt.so.13 (CUDA 13.0 U2)
  # cuDNN 9 for CUDA 13 (cudarc binds the 9.21 API; 9.x keeps the ABI). The version PyTorch's cu13
  # wheels pin, so the GPU machine's libcudnn.so.9 is the one linked against. ~900 MB.
  'nvidia-cudnn-cu13==9.26.0.51'
)
STAMP="$DEPS/.installed"
WANT="$(printf '%s\n' "${WHEELS[@]}")"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo ">> installing CUDA wheels into $DEPS/py"
  rm -rf "$DEPS/py"
  mkdir -p "$DEPS"
  "$PY" -m pip install --quiet --no-deps --no-compile --target "$DEPS/py" "${WHEELS[@]}"
  printf '%s' "$WANT" >"$STAMP"
fi

# CUDA 13 wheels put everything under nvidia/cu13/; find rather than hard-code in case that moves.
NVCC="$(find "$DEPS/py" -path '*/bin/nvcc' -type f | head -n1)"
[[ -x "$NVCC" ]] || { echo "nvcc not found under $DEPS/py" >&2; exit 1; }
CUDA_ROOT="$(dirname "$(dirname "$NVCC")")"
export NVCC PATH="$(dirname "$NVCC"):$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"   # no GPU here, so nvidia-smi can't tell candle
"$NVCC" --version | tail -n2

# --- 2. link directory: unversioned .so names + libcuda stub ---------------------------------------
# The wheels ship only versioned names (libcudart.so.13, ...); `-lcudart` needs libcudart.so.
LINK="$DEPS/link"
rm -rf "$LINK"; mkdir -p "$LINK"
for lib in cudart cublas cublasLt curand nvrtc cudnn; do
  so="$(find "$DEPS/py" -name "lib$lib.so.*" -type f | sort | head -n1)"
  [[ -n "$so" ]] || { echo "lib$lib.so.* not found under $DEPS/py" >&2; exit 1; }
  ln -s "$so" "$LINK/lib$lib.so"
done

# cudarc's "dynamic-linking" mode links -lcuda (the driver library), which only a driver install
# provides. Build a stub with the same SONAME (libcuda.so.1) defining every cu* function cudarc's
# driver bindings declare; at run time the dynamic loader picks the driver's real libcuda.so.1.
# The stub's functions are never called, so a no-argument body is enough for the linker.
CUDARC_SRC="$(cd "$REPO" && cargo metadata --format-version 1 --locked --features cuda 2>/dev/null \
  | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(next(p["manifest_path"] for p in d["packages"] if p["name"]=="cudarc"))' \
  | xargs dirname)"
SYMS="$(grep -ohE 'pub unsafe fn cu[A-Za-z0-9_]+' "$CUDARC_SRC/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u)"
[[ -n "$SYMS" ]] || { echo "no cu* symbols found in $CUDARC_SRC" >&2; exit 1; }
printf 'int %s(void) { return 999; }\n' $SYMS >"$LINK/cuda_stub.c"   # 999 = CUDA_ERROR_UNKNOWN
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so" "$LINK/cuda_stub.c"
echo ">> libcuda stub: $(echo "$SYMS" | wc -l) symbols"

if ((FETCH_ONLY)); then
  echo ">> wheels in $DEPS/py, link directory $LINK (--fetch-only: nothing built)"
  exit 0
fi

# --- 3. build --------------------------------------------------------------------------------------
# -L native=$LINK: where the linker finds the stub and the symlinks. No rpath: the GPU machine's
# library paths differ; LD_LIBRARY_PATH is set there. -rpath-link lets the linker resolve the
# NEEDED entries of the linked libraries (libcudnn.so.9's siblings) without recording a path.
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$LINK -C link-arg=-Wl,-rpath-link,$LINK"
export CUDA_HOME="$CUDA_ROOT" CUDA_PATH="$CUDA_ROOT"   # for cudarc's/bindgen_cuda's include lookup
mkdir -p "$BUNDLE"
BIN="$CARGO_TARGET_DIR/release/cfrun"
for variant in $VARIANTS; do
  case "$variant" in cuda|cudnn) ;; *) echo "unknown variant '$variant' (cuda, cudnn)" >&2; exit 2 ;; esac
  start=$SECONDS
  # Changing features rebuilds candle-core and what depends on it (not candle-kernels' PTX).
  (cd "$REPO" && cargo build --release --locked --features "$variant" --bin cfrun)
  echo ">> cargo build --features $variant took $((SECONDS - start)) s"
  # --- 4. strip and pack ---------------------------------------------------------------------------
  # The device machine's copy limit is 64 MiB; unstripped the binary is far larger (PTX + symbols).
  out="$BUNDLE/cfrun-$variant"
  strip -o "$out" "$BIN"
  xz -T1 -6 -c "$out" >"$out.xz"
  echo ">> $out ($(du -h "$out" | cut -f1); packed $(du -h "$out.xz" | cut -f1))"
  echo ">> needs at run time:"; readelf -d "$out" | grep NEEDED || true
done
echo ">> bundle for the GPU machine ($(du -ch "$BUNDLE"/*.xz | tail -n1 | cut -f1) packed):"; ls -l "$BUNDLE"
