#!/usr/bin/env bash
# One-shot check of a CUDA cfrun build (scripts/build-cuda.sh) on a GPU machine:
# `cfrun check-device --device cuda` (the GPU test subset), then tests/fixtures/clusterfit_tiny.toml
# on cuda and on cpu, timing both.
# Usage: scripts/gpu-check.sh BINARY OUTDIR
# The CUDA runtime libraries are not bundled: they are looked up on the machine (PyTorch's
# nvidia-* cu13 wheels provide libcudart/libcublas/libcublasLt/libnvrtc/libcurand).
set -uo pipefail   # no -e: keep going to record both runs even if one fails
BIN="${1:?binary}"; OUT="${2:?outdir}"; mkdir -p "$OUT"
chmod +x "$BIN" 2>/dev/null || true
{
  date -u; uname -m; nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  echo "--- libcurand candidates:"; find / -xdev -name 'libcurand.so*' 2>/dev/null | head
} >"$OUT/env.txt" 2>&1

# Directories holding each needed runtime library (first hit of each name).
dirs=""
for n in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13 libcurand.so.10; do
  f="$(find /opt /usr /root /home -name "$n" 2>/dev/null | head -n1)"
  echo "$n -> ${f:-MISSING}" >>"$OUT/env.txt"
  [[ -n "$f" ]] && dirs="$dirs:$(dirname "$f")"
done
export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{ echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; echo "--- ldd:"; ldd "$BIN"; } >>"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# The GPU test subset: every preset forward + backward, k-means and the probe against the CPU.
"$BIN" check-device --device cuda 2>"$OUT/check-device.stderr" | tee -a "$OUT/summary.txt"
echo "=== check-device: rc=${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

TIME=(/usr/bin/time -v); [[ -x /usr/bin/time ]] || TIME=()
for dev in cuda cpu; do
  start=$(date +%s.%N)
  "${TIME[@]}" "$BIN" tests/fixtures/clusterfit_tiny.toml --device "$dev" --cache "/tmp/cache-$dev" \
    >"$OUT/$dev.stdout" 2>"$OUT/$dev.stderr"
  rc=$?
  end=$(date +%s.%N)
  echo "=== $dev: rc=$rc wall=$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end-$start)") s" | tee -a "$OUT/summary.txt"
  cat "$OUT/$dev.stdout"
  grep -E 'Elapsed|Maximum resident' "$OUT/$dev.stderr" | tee -a "$OUT/summary.txt"
  tail -n 15 "$OUT/$dev.stderr"
done
