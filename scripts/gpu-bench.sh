#!/usr/bin/env bash
# One prepared GPU session for issue 18, within ~8 minutes, everything written under $OUT:
#   0. env.txt: GPU, driver, the runtime libraries found, which binary runs (cuDNN or not), nsys;
#   1. check-device.json: `cfrun check-device --device cuda` in strict f32 (also absorbs the PTX
#      JIT of a fresh machine); a binary that cannot run at all hands over to the one without cuDNN,
#      and unless its im2col row passes, every later run gathers the weight gradient's columns tap
#      by tap (CFRUN_CONV_COLUMNS=taps);
#   2. cfrun training throughput of resnet_gpu on 28x28 grey images, 1/2/4/8 concurrent stage
#      instances (`--jobs N`), f32, plus bf16 (1 job and the best N), candle's own convolution
#      and batch-norm backward (1 job each, CFRUN_CONV_BACKWARD=candle, CFRUN_BN_BACKWARD=candle),
#      TF32 for cuBLAS's f32 GEMMs (1 job, CFRUN_GEMM_TF32=1), the resident pipeline's two changes
#      undone one at a time (1 job each, CFRUN_TRAIN_PIPELINE=resident-sync, then =host), the
#      optimiser's update per parameter instead of flat (1 job, CFRUN_SGD_UPDATE=per-param), batch
#      norm's running statistics layer by layer instead of flat (1 job, CFRUN_BN_STATS=per-layer), the
#      weight gradient's columns gathered tap by tap (1 job, CFRUN_CONV_COLUMNS=taps) and,
#      for the cuDNN gain, the binary without cuDNN (1 job): cfrun.tsv, one line per run, logs in
#      cfrun/; and
#      profile-timers.txt, cfrun's own per-phase timers of a one-job epoch (CFRUN_TRAIN_PROFILE=1);
#   3. PyTorch's throughput for the same network on the same card (benches/python/torch_resnet.py
#      --device cuda, eager, AMP off and on): torch.txt;
#   4. agreement.md: noise_sweep.toml's first replicate on the GPU beside the committed CPU run
#      (docs/noise_sweep/, same seeds), cell by cell, with the CPU's replicate CIs: agreement/;
#   5. PyTorch again with torch.compile, AMP off and on (torch.txt), as time allows;
#   6. profile.txt: nsys's summary of a one-job epoch, when nsys is installed and time is left;
#   7. projection.md: noise_sweep_full's time projected from the measured throughput (every train
#      instance of its plan), then the largest part of it that fits the time left, run for real:
#      sweep/ (its stdout/stderr and `cfrun status --json` afterwards).
# Afterwards, `python3 scripts/gpu-report.py OUT` writes the README of docs/gpu-<date>/.
#
# Usage (GPU machine, repo root, through the device tool, by way of scripts/gpu-session.sh, which
# returns the results as one archive):
#   OUT=$OUT scripts/gpu-bench.sh                 (expects the bundle of scripts/build-cuda.sh in
#                                                  target/gpu: cfrun-cudnn.xz and/or cfrun-cuda.xz,
#                                                  and data.tar.xz for the sweep; see docs/gpu-prep.md)
#   OUT=/tmp/dry scripts/gpu-bench.sh --cpu-dry-run   (CPU machine: the CPU build target/release/cfrun,
#                                                  resnet_tiny, tiny sizes, f16 for bf16, torch on
#                                                  the CPU; checks every step end to end in under a
#                                                  minute: 36-57 s in docs/gpu-prep.md's dry runs)
# Env: BUDGET (seconds for everything, default 470), BUNDLE (default target/gpu), AGREE_CACHE (step 4
# in the dry run: a cache holding noise_sweep.toml's CPU run).
set -uo pipefail   # no -e: a failed step is recorded and the next one still runs

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DRY=0
[[ "${1:-}" == "--cpu-dry-run" ]] && DRY=1
OUT="${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"
BUDGET="${BUDGET:-$((DRY ? 240 : 470))}"
BUNDLE="${BUNDLE:-$REPO/target/gpu}"
WORK="$(mktemp -d /tmp/gpu-bench.XXXXXX)"
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
say() { echo "[$(date -u +%T) +$((SECONDS - T0))s] $*" | tee -a "$OUT/summary.txt"; }
PY="$(command -v python3 || true)"

# --- 0. binaries, libraries, environment ----------------------------------------------------------
if ((DRY)); then
  DEVICE=cpu; PRESET=resnet_tiny; HALF=f16; SIDE=28
  BIN="$REPO/target/release/cfrun"; BIN_PLAIN="$BIN"
  [[ -x "$BIN" ]] || { echo "build first: cargo build --release" >&2; exit 1; }
  TORCH_PY=""; TORCH_DEV=cpu; TORCH_PRESET=tiny
  "$PY" -c "import torch" 2>/dev/null && TORCH_PY="$PY"
else
  DEVICE=cuda; PRESET=resnet_gpu; HALF=bf16; SIDE=28
  mkdir -p "$WORK/bin"
  for v in cudnn cuda; do
    [[ -f "$BUNDLE/cfrun-$v.xz" ]] && xz -dc "$BUNDLE/cfrun-$v.xz" >"$WORK/bin/cfrun-$v" && chmod +x "$WORK/bin/cfrun-$v"
  done
  # Runtime libraries: PyTorch's cu13 wheels (libcudnn included) or a system CUDA; first hit each.
  dirs=""
  for n in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13 libcurand.so.10 libcudnn.so.9; do
    f="$(find /opt /usr/local /usr/lib /root /home -name "$n" 2>/dev/null | head -n1)"
    echo "$n -> ${f:-MISSING}" >>"$OUT/env.txt"
    [[ -n "$f" ]] && dirs="$dirs:$(dirname "$f")"
  done
  export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  BIN_PLAIN="$WORK/bin/cfrun-cuda"
  # The cuDNN build when its libraries resolve here; else the plain CUDA build (the fallback).
  if [[ -x "$WORK/bin/cfrun-cudnn" ]] && ! ldd "$WORK/bin/cfrun-cudnn" | grep -q "not found"; then
    BIN="$WORK/bin/cfrun-cudnn"
  else
    BIN="$BIN_PLAIN"
  fi
  [[ -x "$BIN" ]] || { echo "no runnable cfrun in $BUNDLE (see docs/gpu-prep.md)" | tee -a "$OUT/summary.txt"; exit 1; }
  TORCH_PY=""
  for p in /opt/torch/.venv/bin/python3 "$PY"; do
    [[ -x "$p" ]] && "$p" -c "import torch" 2>/dev/null && { TORCH_PY="$p"; break; }
  done
  TORCH_DEV=cuda; TORCH_PRESET=gpu
fi
# CUDA's Multi-Process Service, for STEPS=ab's jobs as processes that share the card's SMs at once
# instead of taking turns (without it, the contexts of several processes are time-sliced). The dry
# run walks the flow with a stand-in that records what it was asked (mps.txt).
if ((DRY)); then
  MPS_CONTROL="$WORK/mps-stand-in"
  printf '#!/usr/bin/env bash\n{ echo "args: $*"; [[ -t 0 ]] || cat; } >>"%s/mps.txt"\n' "$OUT" >"$MPS_CONTROL"
  chmod +x "$MPS_CONTROL"
else
  # Beside nvidia-smi where the driver is mounted in (/usr/local/nvidia on the 2026-12-04 machine),
  # which need not be on the PATH.
  MPS_CONTROL=""
  for c in "$(command -v nvidia-cuda-mps-control)" "$(dirname "$(command -v nvidia-smi || echo /none/x)")/nvidia-cuda-mps-control" \
    /usr/local/nvidia/bin/nvidia-cuda-mps-control /usr/bin/nvidia-cuda-mps-control; do
    [[ -n "$c" && -x "$c" ]] && { MPS_CONTROL=$c; break; }
  done
fi
# The helpers below need Python 3.11+ (tomllib); the torch venv's Python serves if python3 is older.
if ! "${PY:-false}" -c "import tomllib" 2>/dev/null; then PY="${TORCH_PY:-$PY}"; fi
{
  date -u; uname -m; nproc
  nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader 2>&1
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"; echo "binary: $BIN"; ldd "$BIN" 2>&1
  echo "nsys: $(command -v nsys || echo absent)"; echo "torch python: ${TORCH_PY:-none}"
  echo "mps: ${MPS_CONTROL:-absent}; a daemon at the default folder: $([[ -e /tmp/nvidia-mps/control ]] && echo yes || echo no)"
} >>"$OUT/env.txt" 2>&1
say "device $DEVICE, preset $PRESET, binary $(basename "$BIN"), budget ${BUDGET}s"
# STEPS=agreement: a second call for what the first had no time left for. Steps 1-3 and 5-7 are
# skipped; instead one job's training is timed beside `nvidia-smi dmon` (how busy the card is while
# cfrun trains: dmon.txt), and the agreement runs p = 0 alone first, then the rest, so a call cut
# short still compares part of the table. AGREE_JOBS (default 2) replaces step 2's best job count.
# STEPS=ab: the next call after the first, for A/Bs that stand: a short check-device (resnet_gpu's
# rows; it also absorbs the PTX JIT), the same rows with each switch never run on a card
# (check-device-NAME.json), then each switch against the default alternately, AB_PAIRS
# (default 3) times, at one size, each pair the same seeds (ab-NAME-base1, ab-NAME-var1, ...;
# same-bits switches must give the same losses), cfrun and PyTorch alternately, and ncu's time per kernel
# of a few steps (ncu.csv). The first call's single A/B rows (3,072-6,144 images, once each,
# beside a baseline run once at 20,480) did not stand against the baseline's own spread.
ALL=1
[[ "${STEPS:-all}" == agreement || "${STEPS:-all}" == ab ]] && ALL=0
AB=0
[[ "${STEPS:-all}" == ab ]] && AB=1

# --- 1. check-device --------------------------------------------------------------------------------
ran() {   # ran FILE: some comparison in check-device's JSON FILE ran on the device
  "$PY" -c 'import json, sys; v = json.load(open(sys.argv[1])); sys.exit(0 if any("error" not in c for c in v["checks"]) else 1)' "$1" 2>/dev/null
}
# The weight gradient's im2col launch (nn/im2col.rs) first meets a GPU in check-device (step 1, or
# STEPS=ab's short one): unless its row passed, every run after it gathers the columns tap by tap
# (CFRUN_CONV_COLUMNS=taps, checked on the CPU through the same candle ops), so the session still
# measures a correct training. Defined before step 1, which STEPS=ab skips (until 2026-12-04 it
# was defined inside it, and STEPS=ab's call found no such command and went on without the gate).
columns_or_taps() {   # columns_or_taps: reads $OUT/check-device.json; 1 (false) when it fell back to taps
  "$PY" -c 'import json, sys
rows = [c for c in json.load(open(sys.argv[1]))["checks"] if "(im2col)" in c["what"]]
sys.exit(0 if rows and all(c["ok"] for c in rows) else 1)' "$OUT/check-device.json" 2>/dev/null && return 0
  export CFRUN_CONV_COLUMNS=taps
  say "check-device: the im2col row did not pass (or did not run); every run below uses CFRUN_CONV_COLUMNS=taps"
  return 1
}
if ((ALL)); then   # (to the end of step 1, not indented)
# In strict f32 (NVIDIA_TF32_OVERRIDE=0: no TF32 in cuDNN or cuBLAS), so that its tolerances test
# the kernels, not TF32's 10-bit mantissa; the runs below use the libraries' default math, and the
# agreement step (4) is the end-to-end check of that. A binary that cannot run at all (no JSON, or
# every comparison's device side failed with an error: cuDNN missing or mismatched at run time,
# say) hands over to the one without cuDNN; one failing comparison is a finding, not a reason.
if ((DRY)); then
  timeout 120 "$BIN" check-device --device cpu --presets resnet_tiny --json >"$OUT/check-device.json" 2>"$OUT/check-device.stderr"
  say "check-device: rc=$?"
else
  NVIDIA_TF32_OVERRIDE=0 timeout 150 "$BIN" check-device --device cuda --json >"$OUT/check-device.json" 2>"$OUT/check-device.stderr"
  rc=$?
  say "check-device ($(basename "$BIN"), strict f32): rc=$rc"
  # rc 124 is the timeout: a slow first JIT, not a binary that cannot run.
  if ((rc != 0 && rc != 124)) && ! ran "$OUT/check-device.json" \
    && [[ "$BIN" != "$BIN_PLAIN" && -x "$BIN_PLAIN" ]]; then
    NVIDIA_TF32_OVERRIDE=0 timeout 150 "$BIN_PLAIN" check-device --device cuda --json \
      >"$OUT/check-device-plain.json" 2>"$OUT/check-device-plain.stderr"
    rc=$?
    say "check-device ($(basename "$BIN_PLAIN"), strict f32): rc=$rc"
    if ran "$OUT/check-device-plain.json"; then
      say "$(basename "$BIN") could not run (check-device-first.stderr); every run below uses $(basename "$BIN_PLAIN")"
      mv "$OUT/check-device.stderr" "$OUT/check-device-first.stderr"
      mv "$OUT/check-device-plain.json" "$OUT/check-device.json"
      mv "$OUT/check-device-plain.stderr" "$OUT/check-device.stderr"
      BIN="$BIN_PLAIN"
    fi
  fi
fi

# Unless the im2col row passed, every run below gathers the columns tap by tap; the A/B row
# f32-j1-wtaps is then skipped.
COLUMNS_OK=1
columns_or_taps || COLUMNS_OK=0
fi   # ALL: step 1

# --- 2. cfrun throughput --------------------------------------------------------------------------
# One experiment per run: a shared synthetic 1xSIDExSIDE data set (made once, cached) and JOBS
# independent train stages (distinct seeds) of `epochs` epochs each. The rate of a run is taken
# from every stage's last epoch (its "epoch done" line: steady state, after JIT and warm-up),
# summed over the stages that ran side by side; the wall rate (all images / wall time of the
# `cfrun run`, start-up included) is the other column.
mkdir -p "$OUT/cfrun"
CACHE="$WORK/cache"
echo -e "label\tbinary\tjobs\tprecision\timages_per_stage\tepochs\twall_s\twall_img_s\tsteady_img_s\trc" >"$OUT/cfrun.tsv"
write_exp() {   # write_exp FILE JOBS N EPOCHS PRECISION SEED0
  local f=$1 jobs=$2 n=$3 epochs=$4 prec=$5 seed0=$6
  {
    printf '[experiment]\nname = "bench"\nseed = 0\n\n[stages.data]\nop = "dataset"\nname = "synthetic"\n'
    printf 'classes = 10\nsize = %d\ntrain_size = %d\ntest_size = 64\n' "$SIDE" "$n"
    for ((j = 0; j < jobs; j++)); do
      printf '\n[stages.net%d]\nop = "train"\nimages = "data.images"\nlabels = "data.labels"\n' "$j"
      printf 'arch = "%s"\nepochs = %d\nwarmup_epochs = 0\nseed = %d\n' "$PRESET" "$epochs" $((seed0 + j))
      [[ "$prec" != f32 ]] && printf 'precision = "%s"\n' "$prec"
    done
  } >"$f"
}
RUN_ID=0
# Never called in a subshell ($(...)): RUN_ID must count every run, or two runs of the same size
# get the same seeds, so the same keys, and the later one finds its stages cached.
cf_bench() {   # cf_bench LABEL BINARY JOBS PRECISION N EPOCHS -> appends to cfrun.tsv, steady img/s in $WORK/rate
  local label=$1 bin=$2 jobs=$3 prec=$4 n=$5 epochs=$6
  RUN_ID=$((RUN_ID + 1))
  local f="$OUT/cfrun/$label.toml"
  # cf_ab's arms train the same seeds, each arm in a cache of its own (AB_SEED0, AB_CACHE).
  local cache="${AB_CACHE:-$CACHE}"
  # The data set alone first (same stage, same key), so the timed run only trains. On the CPU:
  # the device is in no key, and a run that finds the data set cached (every A/B pair after the
  # first) then opens no CUDA context either.
  write_exp "$f" 0 "$n" "$epochs" "$prec" 0
  "$bin" run "$f" --device cpu --cache "$cache" -q >/dev/null 2>&1
  write_exp "$f" "$jobs" "$n" "$epochs" "$prec" "${AB_SEED0:-$((RUN_ID * 100))}"
  local start=$EPOCHREALTIME
  # CF_EXECUTOR (cf_ab's `executor=E`): the jobs as threads (local) or as child processes; the
  # children's log lines come back on the driver's stderr, so the rate is read the same way.
  # RUN_CAP (cf_ab's runs): a run that hangs (an MPS server that never answers, say) costs at most
  # that, not the session's remaining time.
  local cap=$(($(left) > 30 ? $(left) - 20 : 10))
  ((${RUN_CAP:-0} > 0 && cap > RUN_CAP)) && cap=$RUN_CAP
  CFRUN_LOG="cfrun=debug" timeout -k 10 "$cap" \
    "$bin" run "$f" --device "$DEVICE" --cache "$cache" --jobs "$jobs" --executor "${CF_EXECUTOR:-local}" \
    >"$OUT/cfrun/$label.stdout" 2>"$OUT/cfrun/$label.stderr"
  local rc=$?
  local wall
  wall="$("$PY" -c "print(round($EPOCHREALTIME - $start, 1))")"
  local steady
  steady="$("$PY" - "$OUT/cfrun/$label.stderr" "$epochs" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
last = int(sys.argv[2]) - 1
rate = 0.0
# tracing's debug line: "... epoch done epoch=E loss=.. accuracy=.. seconds=S" (one per stage and epoch)
for line in text.splitlines():
    if "epoch done" in line and re.search(rf"\bepoch={last}\b", line):
        m = re.search(r"seconds=([0-9.e+-]+)", line)
        if m:
            rate += 1.0 / float(m.group(1))
print(rate)
EOF
)"
  steady="$("$PY" -c "print(round(float('${steady:-0}') * $n))")"
  local wall_rate
  wall_rate="$("$PY" -c "print(round($jobs * $n * $epochs / max($wall, 0.1)))")"
  echo -e "$label\t$(basename "$bin")\t$jobs\t$prec\t$n\t$epochs\t$wall\t$wall_rate\t$steady\t$rc" >>"$OUT/cfrun.tsv"
  say "cfrun $label: jobs=$jobs $prec n=$n x $epochs epochs: wall ${wall}s, ${wall_rate} img/s wall, ${steady} img/s steady (rc=$rc)"
  echo "$steady" >"$WORK/rate"
}
# Sizes: the first run measures one job; later runs get about 10 s of work at that rate (split
# over their jobs), so a card that does not scale costs ~20 s per run, not minutes.
if ((DRY)); then N1=512; else N1=20480; fi
if ((!ALL && !AB)); then
  BEST_J="${AGREE_JOBS:-2}"
  dmon=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s u -d 1 >"$OUT/dmon.txt" 2>&1 &
    dmon=$!
  fi
  cf_bench util-j1 "$BIN" 1 f32 "$N1" 1 >/dev/null
  [[ -n "$dmon" ]] && kill "$dmon"
fi
if ((ALL)); then   # (to the end of step 2, not indented)
cf_bench f32-j1 "$BIN" 1 f32 "$N1" 2 >/dev/null
RATE1="$(cat "$WORK/rate")"
RATE1="${RATE1:-0}"
per_job() { "$PY" -c "r=max(float('$RATE1'),1.0); print(max(256 if $DRY else 2048, min(60000, int(r*(3 if $DRY else 10)/$1)//128*128)))"; }
# The convolution's backward (nn/conv_device.rs) against candle's own (a direct conv_transpose2d
# kernel, the 1,510 img/s of 2026-11-26), at a quarter of the work: if candle's is as slow as
# expected, this run still takes well under a minute.
if (($(left) > (DRY ? 150 : 300))); then
  CFRUN_CONV_BACKWARD=candle cf_bench f32-j1-candlebwd "$BIN" 1 f32 "$(per_job 4)" 2 >/dev/null
fi
# Batch norm's normalisation gradient in one formula (nn/batchnorm.rs) against candle's autograd.
if (($(left) > (DRY ? 145 : 290))); then
  CFRUN_BN_BACKWARD=candle cf_bench f32-j1-candlebn "$BIN" 1 f32 "$(per_job 4)" 2 >/dev/null
fi
# Where a step's time goes, from cfrun's own timers (a device sync after each phase): host issue
# time against device time for batch, forward, backward and update.
if (($(left) > (DRY ? 140 : 280))); then
  CFRUN_TRAIN_PROFILE=1 cf_bench prof-j1 "$BIN" 1 f32 "$(per_job 4)" 1 >/dev/null
  grep "step profile" "$OUT/cfrun/prof-j1.stderr" >"$OUT/profile-timers.txt"
  say "step profile: $(cut -d: -f4- "$OUT/profile-timers.txt" | tail -n1)"
fi
# TF32 for cuBLAS's f32 GEMMs (nn/gemm_tf32.rs): the weight gradient then gets the arithmetic that
# cuDNN's default already gives the forward and the input gradient (and PyTorch gives all three).
if (($(left) > (DRY ? 135 : 270))); then
  CFRUN_GEMM_TF32=1 cf_bench f32-j1-tf32 "$BIN" 1 f32 "$(per_job 4)" 2 >/dev/null
fi
# The resident pipeline's two changes one at a time (nn/pipeline.rs): the sums read after every
# batch (resident-sync: the per-batch wait for the device back), then batches built on the host
# and copied per batch as well (host: the loop of 2026-11-26). Each gets ~1.25 s of work an epoch
# at the first run's rate, so that they take little from the agreement step (4). In the dry run
# f32-j1 itself builds on the host (the CPU's default), so there the ratios mean nothing.
if (($(left) > (DRY ? 130 : 260))); then
  CFRUN_TRAIN_PIPELINE=resident-sync cf_bench f32-j1-sync "$BIN" 1 f32 "$(per_job 8)" 2 >/dev/null
fi
if (($(left) > (DRY ? 125 : 250))); then
  CFRUN_TRAIN_PIPELINE=host cf_bench f32-j1-host "$BIN" 1 f32 "$(per_job 8)" 2 >/dev/null
fi
# The optimiser's update parameter by parameter (nn/sgd/update.rs: ~350 launches a step for
# resnet_gpu) against the flat update every other run uses (~134): same bits, so only the time
# differs. Same small share of work as the pipeline rows.
if (($(left) > (DRY ? 120 : 240))); then
  CFRUN_SGD_UPDATE=per-param cf_bench f32-j1-sgdper "$BIN" 1 f32 "$(per_job 8)" 2 >/dev/null
fi
# Batch norm's running statistics layer by layer (nn/running_stats.rs: ~180 launches a step for
# resnet_gpu) against the flat update every other run uses (~47): same bits, only the time differs.
if (($(left) > (DRY ? 115 : 235))); then
  CFRUN_BN_STATS=per-layer cf_bench f32-j1-bnlayer "$BIN" 1 f32 "$(per_job 8)" 2 >/dev/null
fi
# The weight gradient's column matrix gathered tap by tap with tensor ops (nn/im2col.rs: ~32 ops
# per 3x3 convolution, ~565 a resnet_gpu step) against candle's im2col kernel launched once per
# convolution (3 ops with the GEMM). Same small share of work.
if ((COLUMNS_OK)) && (($(left) > (DRY ? 110 : 230))); then
  CFRUN_CONV_COLUMNS=taps cf_bench f32-j1-wtaps "$BIN" 1 f32 "$(per_job 8)" 2 >/dev/null
fi
BEST_J=1; BEST_RATE="$RATE1"
for j in 2 4 8; do
  (($(left) < 200)) && { say "skipping jobs=$j and up: $(left)s left"; break; }
  cf_bench "f32-j$j" "$BIN" "$j" f32 "$(per_job "$j")" 2 >/dev/null
  r="$(cat "$WORK/rate")"
  if "$PY" -c "import sys; sys.exit(0 if float('${r:-0}') > float('$BEST_RATE') else 1)"; then BEST_J=$j; BEST_RATE=$r; fi
done
say "best f32: jobs=$BEST_J at $BEST_RATE img/s (1 job: $RATE1)"
# Half precision gets the f32 sizes on the GPU; on the CPU (f16 through candle's generic ops,
# ~20x slower than cfrun's f32 kernels) the dry run keeps it tiny.
half_n() { if ((DRY)); then echo 256; else per_job "$1"; fi; }
if (($(left) > 170)); then cf_bench "$HALF-j1" "$BIN" 1 "$HALF" "$(half_n 1)" 2 >/dev/null; fi
if ((BEST_J > 1)) && (($(left) > 160)); then cf_bench "$HALF-j$BEST_J" "$BIN" "$BEST_J" "$HALF" "$(half_n "$BEST_J")" 2 >/dev/null; fi
if ((!DRY)) && [[ "$BIN" != "$BIN_PLAIN" && -x "$BIN_PLAIN" ]] && (($(left) > 150)); then
  cf_bench f32-j1-nocudnn "$BIN_PLAIN" 1 f32 "$(per_job 1)" 2 >/dev/null
fi
fi   # ALL: step 2

# --- 3. PyTorch, same network, same card: eager ----------------------------------------------------
# The compiled modes come after the agreement run (5): compiling can take a minute or more per
# mode, and the agreement is a deliverable of its own, while eager already gives the ratio.
torch_modes() {   # torch_modes MODE... (each "" for fp32 eager, or flags of torch_resnet.py)
  if [[ -z "$TORCH_PY" ]]; then say "torch: no python with torch found"; return; fi
  local steps=$((DRY ? 2 : 60)) m
  for m in "$@"; do
    (($(left) < 110)) && { say "torch: skipping '$m' and after ($(left)s left)"; break; }
    # shellcheck disable=SC2086
    timeout 100 "$TORCH_PY" benches/python/torch_resnet.py --device "$TORCH_DEV" --presets "$TORCH_PRESET" \
      --steps "$steps" $m >>"$OUT/torch.txt" 2>>"$OUT/torch.stderr"
    say "torch ${m:-eager fp32}: rc=$? $(grep -E "resnet_$TORCH_PRESET +train" "$OUT/torch.txt" | tail -n1)"
  done
}
((ALL)) && torch_modes "" "--amp"

# --- STEPS=ab (see the top): alternated A/Bs, cfrun beside PyTorch, ncu -------------------------
if ((AB)); then
  if ((DRY)); then
    timeout 120 "$BIN" check-device --device cpu --presets resnet_tiny --json >"$OUT/check-device.json" 2>"$OUT/check-device.stderr"
  else
    NVIDIA_TF32_OVERRIDE=0 timeout 150 "$BIN" check-device --device cuda --presets resnet_gpu --json \
      >"$OUT/check-device.json" 2>"$OUT/check-device.stderr"
  fi
  say "check-device (resnet_gpu's rows): rc=$?"
  WTAPS=("wtaps 1 CFRUN_CONV_COLUMNS=taps")
  columns_or_taps || WTAPS=()
  # Switches that have never run on a card (CFRUN_CONV_CUDNN=planned: src/nn/conv_cudnn, the cuDNN
  # build only; CFRUN_BN_CUDA=fused: src/nn/bn_cuda): each one's rows of check-device first
  # (check-device-NAME.json), and its A/Bs only if they all pass; then all that passed together with
  # the events off, against the default, for the sum of the leads.
  NEW1=()
  NEW4=()
  ALL_NEW=()
  try_switch() {   # try_switch NAME VAR=VALUE
    local name=$1 setting=$2 rc
    env "$setting" NVIDIA_TF32_OVERRIDE=0 timeout 150 "$BIN" check-device --device "$DEVICE" --presets "$CHECK_PRESET" \
      --json >"$OUT/check-device-$name.json" 2>"$OUT/check-device-$name.stderr"
    rc=$?
    # A row the default fails too says nothing of the switch: it passes when it fails no other.
    "$PY" -c 'import json, sys
failed = lambda f: {c["what"] for c in json.load(open(f))["checks"] if not c["ok"]}
sys.exit(0 if failed(sys.argv[1]) <= failed(sys.argv[2]) else 1)' "$OUT/check-device-$name.json" "$OUT/check-device.json" 2>/dev/null
    local own=$?
    say "check-device with $setting (resnet_gpu's rows): rc=$rc; $( ((own == 0)) && echo "no row fails that passes without it" || echo "rows fail that pass without it, or no result: no A/B")"
    ((own == 0)) || return
    NEW1+=("$name-j1 1 $setting")
    NEW4+=("$name-j4 4 $setting")
    ALL_NEW+=("$setting")
  }
  if ((DRY)); then
    # The CPU build refuses both; the flow is tried with the default spelled out instead.
    CHECK_PRESET=resnet_tiny
    try_switch planned CFRUN_CONV_CUDNN=per-call
  else
    CHECK_PRESET=resnet_gpu
    [[ "$(basename "$BIN")" == cfrun-cudnn ]] && try_switch planned CFRUN_CONV_CUDNN=planned
    try_switch bnfused CFRUN_BN_CUDA=fused
  fi
  # Every lead on the host's issue time and on the jobs that did not scale, together: the new
  # switches that passed, no CUDA events, and a memory pool that keeps what is freed to it
  # (exec/cuda_pool.rs: by the driver's default it gives memory back at each explicit sync, so the
  # step profile's syncs may have put remapping into its issue times).
  # And candle's cache of its kernels' shape arguments (nn/cuda_params.rs: without it each reduction,
  # gather and strided op copies them from pageable host memory, which may wait for the stream).
  LEADS=("${ALL_NEW[@]}" CFRUN_CUDA_EVENTS=off CFRUN_CUDA_POOL=keep CFRUN_CUDA_PARAMS=cached)
  FIRST=("allnew-j1 1 ${LEADS[*]}" "allnew-j4 4 ${LEADS[*]}")
  # bf16 trained 3.6x slower than f32 on 2026-12-04; the planned convolution asks cuDNN for tensor
  # cores and the fused batch norm drops the casts around each layer: all of them on, both arms in
  # bf16. Last of the new ones: a bf16 pair cost three times an f32 one at that rate.
  LATER=()
  LATER+=("allnew-$HALF 1 ${LEADS[*]} precision=$HALF")
  # One size for every arm: ~2.5 s of work an epoch at 2026-12-04's one-job rate (3,000 img/s).
  if ((DRY)); then NAB=512; else NAB=8192; fi
  AB_ID=0
  AB_PAIRS="${AB_PAIRS:-3}"
  cf_ab() {   # cf_ab NAME JOBS VAR=VALUE...: base, var, base, var, ... (AB_PAIRS pairs) at NAB images, 2 epochs
    # (a setting `precision=P` trains both arms in P instead of f32; `executor=E` runs the switch
    # arm's jobs with `--executor E`; `mps=1` runs the switch arm under an MPS daemon of its own)
    local name=$1 jobs=$2 i arm kv prec=f32 mps=0 vars=()
    shift 2
    for kv in "$@"; do
      case $kv in
        precision=*) prec=${kv#precision=} ;;
        executor=*) vars+=("CF_EXECUTOR=${kv#executor=}") ;;
        mps=1) mps=1; vars+=("${MPS_ENV[@]}") ;;
        *) vars+=("$kv") ;;
      esac
    done
    AB_ID=$((AB_ID + 1))
    echo -e "$name\t$jobs\t$*" >>"$OUT/ab.tsv"
    for ((i = 1; i <= AB_PAIRS; i++)); do
      for arm in base var; do
        # The switch arm in a subshell, its settings exported there only; both arms' seeds are
        # AB_SEED0's, so the subshell's RUN_ID is not missed.
        [[ $arm == var ]] && ((mps)) && mps_start "ab-$name-var$i"
        # shellcheck disable=SC2163
        ( [[ $arm == var ]] && for kv in "${vars[@]}"; do export "$kv"; done
          # At 2026-12-04's slowest rate (bf16, 690 img/s) a run takes about 25 s.
          AB_SEED0=$((100000 + AB_ID * 1000 + i * 10)) AB_CACHE="$WORK/ab-$arm" RUN_CAP=120 \
            cf_bench "ab-$name-$arm$i" "$BIN" "$jobs" "$prec" "$((NAB / jobs))" 2 >/dev/null )
        [[ $arm == var ]] && ((mps)) && mps_stop "ab-$name-var$i"
      done
      # Under MPS a server that fails makes its clients fail (they do not fall back): one failed
      # pair is enough to know.
      if ((mps)); then
        local rc
        rc="$(awk -F'\t' -v l="ab-$name-var$i" '$1 == l {print $10}' "$OUT/cfrun.tsv")"
        [[ "$rc" != 0 ]] && { say "ab $name: the MPS arm's run ended with rc=${rc:-none}; its other pairs skipped (mps-log/ab-$name-var$i/)"; break; }
      fi
    done
  }
  # An MPS control daemon of the bench's own, started for each switch arm that asks for one and
  # stopped after it: its pipe folder under $WORK, so only the processes given MPS_ENV connect to
  # it (the base arm's find no daemon there and run as before, unless env.txt says the machine
  # runs one at the default folder). Each run's logs (control.log; server.log, written only by a
  # server that started) come back in mps-log/LABEL/: the report reads a pair only with its
  # server.log. The pipe folder and the control binary are also left in mps-pipe.txt until the
  # daemon has quit, so that gpu-session.sh can stop a daemon that a bench stopped at its limit
  # left behind.
  MPS_ENV=("CUDA_MPS_PIPE_DIRECTORY=$WORK/mps/pipe")
  mps_start() {   # mps_start LABEL
    mkdir -p "$WORK/mps/pipe" "$WORK/mps/log-$1"
    printf '%s\n%s\n' "$WORK/mps/pipe" "$MPS_CONTROL" >"$OUT/mps-pipe.txt"
    env "${MPS_ENV[@]}" CUDA_MPS_LOG_DIRECTORY="$WORK/mps/log-$1" timeout 20 "$MPS_CONTROL" -d \
      </dev/null >"$WORK/mps/daemon-$1.out" 2>&1 || say "mps: the control daemon did not start (rc=$?)"
  }
  mps_stop() {   # mps_stop LABEL
    if echo quit | env "${MPS_ENV[@]}" timeout 20 "$MPS_CONTROL"; then
      rm -f "$OUT/mps-pipe.txt"
    else
      say "mps: quit failed (rc=$?)"
    fi
    sleep 1
    mkdir -p "$OUT/mps-log/$1" && cp -r "$WORK/mps/log-$1/." "$OUT/mps-log/$1/" 2>/dev/null
  }
  # Where a one-job step's time goes (cfrun's timers, a device sync after each phase): with the
  # defaults, with the pool kept alone, with the shape arguments cached alone, and with every lead
  # on, in turn, twice. With the driver's pool the syncs give memory back, so the default's issue
  # times may include remapping it: the `pool` lines say how much; the `params` lines whether the
  # forward's issue time was the host waiting at each upload of shape arguments (it would fall,
  # and the wait at the end grow); the `leads` lines what every lead removes together. One epoch
  # of half the A/Bs' size each, every run the same seeds; profile-timers.txt, a line per run, its
  # arm before a tab.
  : >"$OUT/profile-timers.txt"
  for run in base1 pool1 params1 leads1 base2 pool2 params2 leads2; do
    ( [[ $run == pool* ]] && export CFRUN_CUDA_POOL=keep
      [[ $run == params* ]] && export CFRUN_CUDA_PARAMS=cached
      [[ $run == leads* ]] && for kv in "${LEADS[@]}"; do export "$kv"; done
      CFRUN_TRAIN_PROFILE=1 AB_SEED0=90000 AB_CACHE="$WORK/prof-$run" cf_bench "prof-$run" "$BIN" 1 f32 "$((NAB / 2))" 1 >/dev/null )
    grep "step profile" "$OUT/cfrun/prof-$run.stderr" | sed "s/^/${run%?}\t/" >>"$OUT/profile-timers.txt"
  done
  say "step profile, defaults / pool kept / shape arguments cached / every lead on, twice: $(cut -d: -f4- "$OUT/profile-timers.txt" | tr '\n' '/' )"
  # Largest possible effect first; each needs ~50 s on the GPU (three pairs of ~8 s runs), and
  # the A/Bs stop 200 s before the end, so a call may not reach the later ones. First those that
  # could each move the sweep's time several-fold: every lead together, one job (the host's
  # issue time) and 4 jobs (did the leads hold the jobs back?); 4 jobs as processes against 4 as
  # threads (--executor processes, a CUDA context each: were the jobs held back inside one
  # process?), under MPS first where the machine has it (without it the processes' contexts take
  # turns on the card, so plain processes that add nothing would not answer), then plain. Then
  # each lead alone, one job; then 4 jobs of each.
  MPS_AB=()
  [[ -n "$MPS_CONTROL" ]] && MPS_AB=("procs-mps-j4 4 executor=processes mps=1")
  for ab in "${FIRST[@]}" "${MPS_AB[@]}" "procs-j4 4 executor=processes" "params-j1 1 CFRUN_CUDA_PARAMS=cached" "${NEW1[@]}" \
    "events-j1 1 CFRUN_CUDA_EVENTS=off" "pool-j1 1 CFRUN_CUDA_POOL=keep" "${NEW4[@]}" \
    "events-j4 4 CFRUN_CUDA_EVENTS=off" "pool-j4 4 CFRUN_CUDA_POOL=keep" "${LATER[@]}" "tf32 1 CFRUN_GEMM_TF32=1" \
    "sync 1 CFRUN_TRAIN_PIPELINE=resident-sync" "sgdper 1 CFRUN_SGD_UPDATE=per-param" \
    "bnlayer 1 CFRUN_BN_STATS=per-layer" "${WTAPS[@]}"; do
    (($(left) < (DRY ? 60 : 200))) && { say "ab: skipping '$ab' and after ($(left)s left)"; break; }
    # shellcheck disable=SC2086
    cf_ab $ab
  done
  # cfrun and PyTorch alternately, one job, f32 (PyTorch's eager, TF32 in cuDNN as by default).
  for i in 1 2; do
    (($(left) < (DRY ? 40 : 120))) && break
    AB_SEED0=$((20000 + i * 10)) AB_CACHE="$WORK/ab-torch" cf_bench "ab-cfrun-$i" "$BIN" 1 f32 "$NAB" 2 >/dev/null
    torch_modes ""
  done
  # Time per kernel: ncu (Nsight Compute; it reads the card's timers on Firecracker machines, not
  # under gVisor: KINDS.md) over ~600 launches after ~5,000 (past the first steps' warm-up).
  # Not always on the PATH there: Nsight Compute's own folder, then CUDA's.
  NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -n1)"
  if ((!DRY)) && [[ -n "$NCU" ]] && (($(left) > 90)); then
    write_exp "$WORK/ncu.toml" 0 2048 1 f32 30000   # the data set alone first, as in cf_bench
    "$BIN" run "$WORK/ncu.toml" --device cuda --cache "$WORK/ncu-cache" -q >/dev/null 2>&1
    write_exp "$WORK/ncu.toml" 1 2048 1 f32 30000
    timeout $(($(left) - 20)) "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv \
      --launch-skip 5000 --launch-count 600 --log-file "$OUT/ncu.csv" \
      "$BIN" run "$WORK/ncu.toml" --device cuda --cache "$WORK/ncu-cache" >"$OUT/ncu.stdout" 2>"$OUT/ncu.stderr"
    say "ncu ($NCU): rc=$? $(wc -l <"$OUT/ncu.csv" 2>/dev/null) lines in ncu.csv"
  fi
fi

# --- 4. agreement with the CPU: noise_sweep.toml's first replicate --------------------------------
# With experiment.replicates = 1 every stage has the key, so the seeds, of replicate 0 in the
# committed 3-replicate CPU run (docs/noise_sweep/): the GPU's tables can be set beside the CPU's
# cell by cell, the devices' arithmetic the only difference (scripts/agreement.py). The dry run
# needs a cache that already holds the CPU's run (AGREE_CACHE): running it on 2 cores takes ~7 min.
if ((!DRY && !AB)) && [[ -f "$BUNDLE/data.tar.xz" ]]; then
  mkdir -p "$CACHE" && tar -C "$CACHE" -xJf "$BUNDLE/data.tar.xz" || say "data.tar.xz: could not unpack (rc=$?)"
fi
AGREE_CACHE="${AGREE_CACHE:-$CACHE}"
agree() {   # agree NAME LIMIT [--set ...]: noise_sweep.toml's replicate 0 -> $OUT/NAME/, $OUT/NAME.md
  local name=$1 limit=$2 start=$SECONDS rc t f
  shift 2
  mkdir -p "$OUT/$name"
  timeout "$limit" "$BIN" run experiments/noise_sweep.toml --set experiment.replicates=1 "$@" --device "$DEVICE" \
    --cache "$AGREE_CACHE" --jobs "$BEST_J" >"$OUT/$name/stdout" 2>"$OUT/$name/stderr"
  rc=$?
  say "$name: noise_sweep.toml, 1 replicate $*, jobs=$BEST_J: rc=$rc in $((SECONDS - start))s (limit ${limit}s)"
  local tables=()
  for t in results fit cluster_quality; do
    f="$(sed -n "s/^$t: \(.*\.csv\)$/\1/p" "$OUT/$name/stdout" | head -n1)"
    [[ -n "$f" ]] && cp "$f" "$OUT/$name/$t.table.csv" && tables+=("$t=$f")
  done
  if ((${#tables[@]})); then
    "$PY" scripts/agreement.py docs/noise_sweep "${tables[@]}" >"$OUT/$name.md" 2>>"$OUT/$name/stderr"
    say "$name (rc=$?): $(grep -h "cells: inside" "$OUT/$name.md" | tr '\n' ' ')"
  fi
}
if ((AB)); then
  :   # the A/B switches train the same bits (or, for TF32, are not meant for studies): nothing to agree on
elif ((DRY)) && [[ "$AGREE_CACHE" == "$CACHE" ]]; then
  say "agreement: skipped in the dry run (set AGREE_CACHE to a cache holding noise_sweep's CPU run)"
elif [[ ! -d "$AGREE_CACHE/data" ]]; then
  say "agreement: no data sets in the cache ($BUNDLE/data.tar.xz missing or not unpacked); skipped"
elif ((!ALL)); then
  # The same cache for both parts: the second reuses every stage of p = 0. The study's claims
  # need both values of p, so the first part checks one that needs neither (the tables are what
  # the agreement compares; the claims get their turn in the second part).
  agree agreement-p0 $(($(left) - 10)) --set 'sweep.p=[0]' --set 'stages.verdicts.claims=[{name = "pre_above_random",
    statement = "N_pre above an untrained network", a = { source = "probe_pre" }, b = { source = "probe_random" },
    expect = "greater"}]'
  (($(left) > 40)) && agree agreement $(($(left) - 10))
elif (($(left) > (DRY ? 30 : 200))); then
  # On the GPU at most 150 s, and 120 s kept so that one compiled PyTorch mode (5) still fits; the
  # dry run only reads a cache.
  if ((DRY)); then limit=$(($(left) - 10)); else limit=$(($(left) - 120 < 150 ? $(left) - 120 : 150)); fi
  agree agreement "$limit"
else
  say "agreement: skipped ($(left)s left)"
fi

# --- 5. PyTorch compiled -----------------------------------------------------------------------------
((DRY || !ALL)) || torch_modes "--compile" "--compile --amp"

# --- 6. profile of one epoch (nsys) ----------------------------------------------------------------
if ((!DRY && ALL)) && command -v nsys >/dev/null && (($(left) > 150)); then
  write_exp "$WORK/prof.toml" 1 "$(per_job 1)" 1 f32 9000
  timeout 90 nsys profile --stats=false -o "$WORK/prof" "$BIN" run "$WORK/prof.toml" --device cuda \
    --cache "$CACHE" >"$WORK/prof.log" 2>&1
  nsys stats --report cuda_api_sum,cuda_gpu_kern_sum,cuda_gpu_mem_time_sum --format csv "$WORK/prof.nsys-rep" \
    >"$OUT/profile.txt" 2>&1
  say "nsys profile: $(wc -l <"$OUT/profile.txt") lines in profile.txt"
fi

# --- 7. noise_sweep_full: projection, then the largest part that fits -------------------------------
if ((ALL)); then   # (to the end of step 7, not indented)
SWEEP=experiments/noise_sweep_full.toml
# The device tool carries at most 64 MiB, the repository's tracked files (~14 MB) included, so the
# bundle leaves MNIST out when both binaries travel (docs/gpu-prep.md). Then the sweep runs a copy
# of the study without the mnist target: its list and the two claims that name it lose it, nothing
# else changes (training does not depend on the targets, so neither does the projection).
if ((!DRY)) && [[ -d "$CACHE/data" && ! -d "$CACHE/data/mnist" ]]; then
  sed -e 's/^target = \["fashion-mnist", "animal-mnist", "mnist"\]$/target = ["fashion-mnist", "animal-mnist"]/' \
    -e 's/^where = { target = \["animal-mnist", "mnist"\] }$/where = { target = "animal-mnist" }/' \
    "$SWEEP" >experiments/noise_sweep_full_nomnist.toml
  SWEEP=experiments/noise_sweep_full_nomnist.toml
  cp "$SWEEP" "$OUT/sweep.toml"
  say "sweep: no MNIST in the bundle; running $SWEEP (sweep.toml), the study without the mnist target"
fi
# Candidate parts, largest first (each a list of --set arguments); the projection picks the first
# that fits the time left.
# The claims need two values of p and K = 10 and 1000 in scope, so the smallest parts keep those
# and cut epochs instead (by 5, then by 7.5).
SMALL="--set experiment.replicates=1 --set sweep.p=[0,75] --set sweep.k=[10,1000]"
PARTS=(
  ""
  "--set experiment.replicates=1"
  "--set experiment.replicates=1 --set sweep.p=[0,75]"
  "$SMALL"
  "$SMALL --set stages.pretrain.epochs=3 --set stages.pretrain2x.epochs=6 --set stages.clusterfit.epochs=3 --set stages.distill.epochs=3"
  "$SMALL --set stages.pretrain.epochs=2 --set stages.pretrain2x.epochs=4 --set stages.clusterfit.epochs=2 --set stages.distill.epochs=2"
)
for i in "${!PARTS[@]}"; do
  # shellcheck disable=SC2086
  "$BIN" dag "$SWEEP" ${PARTS[$i]} --cache "$CACHE" >"$WORK/dag-$i.txt" 2>&1
done
for i in "${!PARTS[@]}"; do grep -q "(train)" "$WORK/dag-$i.txt" || cp "$WORK/dag-$i.txt" "$OUT/dag-$i.txt"; done
RESERVE=$((DRY ? 5 : 25))
CHOICE="$("$PY" - "$SWEEP" "$WORK" "${#PARTS[@]}" "$RATE1" "$BEST_RATE" "$BEST_J" "$(left)" "$RESERVE" "$OUT/projection.md" "${PARTS[@]}" <<'EOF'
import re, sys, tomllib
sweep, work, count, rate1, best, jobs, left, reserve, out = sys.argv[1:10]
parts = sys.argv[10:]
count, jobs, left, reserve = int(count), int(jobs), int(left), int(reserve)
rate1, best = max(float(rate1), 1.0), max(float(best), 1.0)
exp = tomllib.load(open(sweep, "rb"))
stages = exp["stages"]
def images(name):  # training images per epoch: the data set the stage trains on (full splits)
    return 60000
lines = ["# noise_sweep_full.toml: projected GPU time", "",
         f"Measured: {rate1:.0f} img/s for one job, {best:.0f} img/s aggregate with {jobs} jobs (steady state).",
         "Projection: every train instance of the part's plan, epochs x 60,000 images; time = max(all images /",
         "aggregate rate, the longest chain pretrain -> clusterfit/distill at the one-job rate) + 10 % for",
         "extraction, k-means and probes. pretrain2x runs beside that chain.", "",
         "| part (--set) | train instances | images (M) | projected | fits in the time left |", "|---|---:|---:|---:|---|"]
choice = -1
for i in range(count):
    sets = parts[i]
    over = dict(re.findall(r"stages\.(\w+)\.epochs=(\d+)", sets))
    epochs = lambda s: int(over.get(s, stages[s].get("epochs", 0)))
    total, n = 0, 0
    for line in open(f"{work}/dag-{i}.txt"):
        m = re.match(r"^(\w+)\[.*\] \(train\)$", line.strip()) or re.match(r"^(\w+) \(train\)$", line.strip())
        if m:
            n += 1
            total += epochs(m.group(1)) * images(m.group(1))
    chain = (epochs("pretrain") + max(epochs("clusterfit"), epochs("distill"))) * 60000
    t = max(total / best, chain / rate1) * 1.1
    fits = n > 0 and t < left - reserve
    if n == 0:
        lines.append(f"| `{sets or '(the whole study)'}` | plan error: see dag-{i}.txt | | | no |")
        continue
    if fits and choice < 0:
        choice = i
    lines.append(f"| `{sets or '(the whole study)'}` | {n} | {total / 1e6:.1f} | {t / 60:.1f} min | {'yes' if fits else 'no'} ({left} s left) |")
lines.append("")
lines.append(f"Chosen: part {choice}" if choice >= 0 else "Chosen: none fits; nothing run")
open(out, "w").write("\n".join(lines) + "\n")
print(choice)
EOF
)"
say "projection: $(grep -c '^| `' "$OUT/projection.md" 2>/dev/null) parts in projection.md; chosen part: ${CHOICE:-?}"
if ((DRY)); then
  say "dry run: the sweep itself needs the real data sets; running tests/fixtures/clusterfit_tiny.toml instead"
  mkdir -p "$OUT/sweep"
  timeout "$(left)" "$BIN" run tests/fixtures/clusterfit_tiny.toml --device cpu --cache "$CACHE" --jobs 2 \
    >"$OUT/sweep/stdout" 2>"$OUT/sweep/stderr"
  say "fixture: rc=$?"
elif [[ "${CHOICE:-}" =~ ^[0-9]+$ ]] && ((CHOICE >= 0)); then
  if [[ -d "$CACHE/data" ]]; then
    mkdir -p "$OUT/sweep"
    start=$SECONDS
    # shellcheck disable=SC2086
    timeout $(($(left) - 10)) "$BIN" run "$SWEEP" ${PARTS[$CHOICE]} --device cuda --cache "$CACHE" --jobs "$BEST_J" \
      >"$OUT/sweep/stdout" 2>"$OUT/sweep/stderr"
    rc=$?
    say "sweep part $CHOICE (${PARTS[$CHOICE]:-whole}): rc=$rc in $((SECONDS - start))s"
    # shellcheck disable=SC2086
    "$BIN" status "$SWEEP" ${PARTS[$CHOICE]} --cache "$CACHE" --json >"$OUT/sweep/status.json" 2>/dev/null
  else
    say "sweep: no $BUNDLE/data.tar.xz (Fashion-MNIST, Animal-MNIST, MNIST); projection only"
  fi
fi
fi   # ALL: step 7
say "done: $((SECONDS - T0))s of ${BUDGET}s"
rm -rf "$WORK"
