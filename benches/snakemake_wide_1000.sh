#!/usr/bin/env bash
# Snakemake's Slurm executor on the same 1,000-instance sweep as benches/slurm_wide_1000.sh.
# Usage: benches/snakemake_wide_1000.sh SNAKEMAKE [N] [cfrun binary]
#   SNAKEMAKE: a snakemake with snakemake-executor-plugin-slurm (pip install snakemake
#   snakemake-executor-plugin-slurm, in a virtual environment); N: label-noise instances (999).
set -euo pipefail
smk=${1:?path to snakemake}
n=${2:-999}
bin=$(realpath "${3:-target/release/cfrun}")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/smk-wide.XXXXXX)
trap 'cp "$dir/out.log" /tmp/snakemake_wide_last.log 2>/dev/null; rm -rf "$dir"' EXIT
"$here/wide_1000.sh" "$dir/wide.toml"
sed -i "s/^s = \[.*\]/s = [$(seq -s, 1 "$n")]/" "$dir/wide.toml"
cp "$here/snakemake/Snakefile" "$dir/"
cd "$dir"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
# Without Slurm accounting (as on the test cluster) the plugin's default status command, sacct,
# never sees a job end: --slurm-status-command squeue is needed (MinJobAge is 300 s).
printf 'cfrun: %s\ncache: %s\nwide: %s\ncount: %s\n' "$bin" "$dir/cache" "$dir/wide.toml" "$n" >"$dir/config.yaml"
"$smk" --executor slurm --jobs 1000 --latency-wait 5 --slurm-status-command squeue --printshellcmds \
    --default-resources slurm_partition=debug --configfile "$dir/config.yaml" >"$dir/out.log" 2>&1 || {
    tail -n 30 "$dir/out.log"
    exit 1
}
end=$(date +%s.%N)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
done=$(ls out | wc -l)
echo "sbatch calls: $(grep -c 'has been submitted with SLURM jobid' "$dir/out.log")"
python3 -c "import sys; w=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'{n} jobs, {w:.1f} s wall, {n/w:.2f} jobs/s')" "$start" "$end" "$done"
