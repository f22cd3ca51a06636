#!/usr/bin/env bash
# `cfrun status` against `dvc status` on equivalent 1,000-instance pipelines, both fully cached.
#
# cfrun: benches/status_1000.sh's experiment (one `dataset` stage and a 999-seed sweep of
# `label_noise` = 1,000 instances). DVC: a dvc.yaml with one `shapes` stage and a 999-item
# `foreach` of `noisy` stages, each with a dependency on shapes.txt and one output file
# (1,000 stages). Both pipelines are built and cached once (`cfrun run`, `dvc repro`), then
# `cfrun status` and `dvc status` are timed alternately, REPS times each; medians and the ratio are
# printed. Setup is kept under $CFRUN_BENCH_TMP (default /tmp/cfrun-bench) and reused by later runs.
#
# Usage: benches/dvc_status_1000.sh [REPS] [cfrun binary]    (defaults: 5, target/release/cfrun)
# DVC: `dvc` on PATH, else $DVC_VENV/bin/dvc (default /tmp/cfrun-bench/dvc-venv; created with
# `python3 -m venv` and `pip install dvc` if missing).
# Last line: RESULT cfrun_status_s=<median> dvc_status_s=<median> ratio=<dvc/cfrun> ...
set -euo pipefail
reps=${1:-5}
bin=$(realpath "${2:-target/release/cfrun}")
root=${CFRUN_BENCH_TMP:-/tmp/cfrun-bench}/status1000
venv=${DVC_VENV:-${CFRUN_BENCH_TMP:-/tmp/cfrun-bench}/dvc-venv}
mkdir -p "$root"
export DVC_NO_ANALYTICS=1

if command -v dvc > /dev/null; then
  dvc=$(command -v dvc)
else
  if [ ! -x "$venv/bin/dvc" ]; then
    echo "installing dvc into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q dvc >&2
  fi
  dvc=$venv/bin/dvc
fi
echo "dvc $("$dvc" --version), $("$bin" --version)"

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# --- cfrun: 1,000 instances ---
c=$root/cfrun
if [ ! -f "$c/.done" ]; then
  rm -rf "$c"; mkdir -p "$c"
  seeds=$(seq -s, 1 999)
  cat > "$c/wide.toml" <<TOML
[experiment]
name = "wide"
seed = 0

[sweep]
s = [$seeds]

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
size = 8
train_size = 40
test_size = 8

[stages.noisy]
op = "label_noise"
labels = "shapes.labels"
percent = 10
seed = "\${s}"
TOML
  t=$(now)
  "$bin" run "$c/wide.toml" --cache "$c/cache" -q
  echo "setup: cfrun run, 1,000 instances: $(since "$t") s"
  touch "$c/.done"
fi

# --- DVC: 1,000 stages ---
d=$root/dvc
if [ ! -f "$d/.done" ]; then
  rm -rf "$d"; mkdir -p "$d"
  (
    cd "$d"
    git init -q
    "$dvc" init -q
    "$dvc" config core.analytics false
    "$dvc" config core.check_update false 2> /dev/null || true
    {
      echo "stages:"
      echo "  shapes:"
      echo "    cmd: seq 1 40 > shapes.txt"
      echo "    outs:"
      echo "      - shapes.txt"
      echo "  noisy:"
      echo "    foreach: [$(seq -s ', ' 1 999)]"
      echo "    do:"
      echo "      cmd: mkdir -p noisy && sed 's/\$/ \${item}/' shapes.txt > noisy/\${item}.txt"
      echo "      deps:"
      echo "        - shapes.txt"
      echo "      outs:"
      echo "        - noisy/\${item}.txt"
    } > dvc.yaml
    t=$(now)
    "$dvc" repro -q > /dev/null
    echo "setup: dvc repro, 1,000 stages: $(since "$t") s"
    git add -A > /dev/null
    git -c user.name=bench -c user.email=bench@localhost commit -qm "cached pipeline"
  )
  touch "$d/.done"
fi

# Sanity: both report nothing to do.
"$bin" status "$c/wide.toml" --cache "$c/cache" | tail -2
(cd "$d" && "$dvc" status | tail -2)

cf=() dv=()
for i in $(seq "$reps"); do
  t=$(now); "$bin" status "$c/wide.toml" --cache "$c/cache" > /dev/null; cf+=("$(since "$t")")
  t=$(now); (cd "$d" && "$dvc" status > /dev/null); dv+=("$(since "$t")")
done
printf 'cfrun status s: %s\n' "${cf[*]}"
printf 'dvc status s:   %s\n' "${dv[*]}"
mc=$(echo "${cf[*]}" | median)
md=$(echo "${dv[*]}" | median)
rss=$( { /usr/bin/time -f %M "$bin" status "$c/wide.toml" --cache "$c/cache" > /dev/null; } 2>&1 | tail -1)
echo "RESULT cfrun_status_s=$mc dvc_status_s=$md ratio=$(echo "$md / $mc" | bc -l | xargs printf %.1f) cfrun_max_rss_kb=$rss reps=$reps dvc_version=$("$dvc" --version)"
