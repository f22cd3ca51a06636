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
stamps = [datetime.datetime.fromisoformat(l.split()[0].rstrip("Z")).timestamp()
          for l in open(sys.argv[4]) if " submitted " in l]
first_end = [datetime.datetime.fromisoformat(l.split()[0].rstrip("Z")).timestamp()
             for l in open(sys.argv[4]) if " ran noisy" in l]
if stamps:
    jobs = n - 1
    span = max(stamps[-1] - stamps[0], 1e-3)
    print(f"submission: {jobs} jobs in {len(stamps)} sbatch calls over {span:.2f} s after the first "
          f"({jobs / span:.0f} jobs/s); first completion seen {first_end[0] - stamps[0]:.1f} s after it")
PY
ls "$dir/cache/jobs/logs" | wc -l | xargs echo "job logs:"
