#!/usr/bin/env bash
# `cfrun status` against `dvc status` on equivalent 1,000-instance pipelines, both fully cached.
#
# cfrun: benches/status_1000.sh's experiment (one `dataset` stage and a 999-seed sweep of
# `label_noise` = 1,000 instances). DVC: a dvc.yaml with one `shapes` stage and a 999-item
# `foreach` of `noisy` stages, each with a dependency on shapes.txt and one output file
# (1,000 stages). Both pipelines are built and cached once (`cfrun run`; for DVC the stage commands
# in a shell loop, then `dvc commit`, see below), then
# `cfrun status` and `dvc status` are timed alternately, REPS times each; medians and the ratio are
# printed. Setup is kept under $CFRUN_BENCH_TMP (default /tmp/cfrun-bench) and reused by later runs.
#
# Usage: benches/dvc_status_1000.sh [REPS] [cfrun binary]    (defaults: 3, target/release/cfrun)
# DVC: `dvc` on PATH, else $DVC_VENV/bin/dvc (default /tmp/cfrun-bench/dvc-venv; created with
# `python3 -m venv` and `pip install dvc` if missing).
# Last line: RESULT cfrun_status_s=<median> dvc_status_s=<median> ratio=<dvc/cfrun> ...
set -euo pipefail
reps=${1:-3}
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
  "$(dirname "$0")/wide_1000.sh" "$c/wide.toml"
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
    # `dvc repro` would run the 1,000 stages one by one at a few seconds of DVC overhead each (its
    # cost per stage grows with dvc.lock): close to an hour here. Running the same commands in a shell
    # loop and then `dvc commit` (record every stage's deps, outs and cmd in dvc.lock and copy the
    # outputs to the cache) leaves the same cached state, which `dvc status` below confirms.
    t=$(now)
    seq 1 40 > shapes.txt
    mkdir -p noisy
    for i in $(seq 1 999); do sed "s/\$/ $i/" shapes.txt > "noisy/$i.txt"; done
    "$dvc" commit -f -q
    echo "setup: 1,000 stage commands in a shell loop + dvc commit: $(since "$t") s"
    git add -A > /dev/null
    git -c user.name=bench -c user.email=bench@localhost commit -qm "cached pipeline"
  )
  touch "$d/.done"
fi

# Wall seconds and CPU seconds (user + system, all threads and children): CPU time is much less
# sensitive than wall time to other jobs on a shared machine.
timed() { /usr/bin/time -f "%e %U %S" -o "$root/time.txt" "$@" > "$root/out.txt"; }
wall() { cut -d' ' -f1 "$root/time.txt"; }
cpu() { awk '{print $2 + $3}' "$root/time.txt"; }
cf=() dv=() cfc=() dvc_=()
for i in $(seq "$reps"); do
  timed "$bin" status "$c/wide.toml" --cache "$c/cache"; cf+=("$(wall)"); cfc+=("$(cpu)")
  [ "$i" = 1 ] && cp "$root/out.txt" "$root/out.txt.cfrun" && echo "cfrun status says: $(tail -1 "$root/out.txt")"
  (cd "$d" && timed "$dvc" status); dv+=("$(wall)"); dvc_+=("$(cpu)")
  if [ "$i" = 1 ]; then
    echo "dvc status says: $(tail -1 "$root/out.txt")"
    # A setup left half-done (an interrupted commit, a pruned cache) would time another command.
    if ! grep -q "up to date" "$root/out.txt"; then
      echo "the DVC pipeline in $d is not fully cached; removed it, run again to rebuild it" >&2
      rm -rf "$d"
      exit 1
    fi
    grep -q "1000 of 1000 instances cached" "$root/out.txt.cfrun" || {
      echo "cfrun's 1,000 instances in $c are not all cached; removed them, run again to rebuild" >&2
      rm -rf "$c"
      exit 1
    }
  fi
done
printf 'cfrun status s: %s (CPU s: %s)\n' "${cf[*]}" "${cfc[*]}"
printf 'dvc status s: %s (CPU s: %s)\n' "${dv[*]}" "${dvc_[*]}"
mc=$(echo "${cf[*]}" | median)
md=$(echo "${dv[*]}" | median)
mcc=$(echo "${cfc[*]}" | median)
mdc=$(echo "${dvc_[*]}" | median)
rss=$( { /usr/bin/time -f %M "$bin" status "$c/wide.toml" --cache "$c/cache" > /dev/null; } 2>&1 | tail -1)
echo "RESULT cfrun_status_s=$mc dvc_status_s=$md ratio=$(echo "$md / $mc" | bc -l | xargs printf %.1f)" \
  "cfrun_status_cpu_s=$mcc dvc_status_cpu_s=$mdc cfrun_max_rss_kb=$rss reps=$reps dvc_version=$("$dvc" --version)"
