#!/usr/bin/env bash
# Submission and completion throughput of a 1,000-instance sweep of cheap stages (one data set,
# 999 label-noise seeds; benches/wide_1000.sh) through Slurm, every instance a job.
# Usage: benches/slurm_wide_1000.sh [arrays|single] [cfrun binary]
# Needs a cluster (scripts/slurm-local.sh) and a cache the nodes share (here: this machine).
set -euo pipefail
mode=${1:-arrays}
bin=$(realpath "${2:-target/release/cfrun}")
dir=$(mktemp -d /tmp/cfrun-wide.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$(dirname "$0")/wide_1000.sh" "$dir/wide.toml"
sets=()
[[ $mode == single ]] && sets=(--set executor.arrays=false)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
CFRUN_LOG=info "$bin" "$dir/wide.toml" --cache "$dir/cache" --executor slurm --in-driver "" \
    --max-jobs 1000 --poll-max 5 "${sets[@]}" --json >"$dir/out.json" 2>"$dir/err.log" || true
end=$(date +%s.%N)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/out.json" "$start" "$end" "$dir/err.log" <<'PY'
import json, sys, datetime
v = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
n = v["ran"] + v["cached"]
print(f"{n} instances ({v['ran']} ran, {v['failed']} failed), {v['submitted']} sbatch calls, "
      f"{wall:.1f} s wall, {n / wall:.1f} instances/s")
def when(line):
    return datetime.datetime.fromisoformat(line.split()[0].rstrip("Z")).timestamp()
log = open(sys.argv[4]).read().splitlines()
subs = [l for l in log if " submitted " in l]
done = [when(l) for l in log if " ran noisy" in l]
for l in subs[:3]:
    print("  " + l.split("INFO ", 1)[-1])
if len(subs) > 3:
    print(f"  ... {len(subs)} submissions in all")
if done:
    print(f"first label-noise completion seen {done[0] - float(sys.argv[2]):.1f} s after the start, "
          f"last {done[-1] - float(sys.argv[2]):.1f} s")
PY
ls "$dir/cache/jobs/logs" | wc -l | xargs echo "job logs:"
