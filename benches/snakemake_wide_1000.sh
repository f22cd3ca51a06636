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
trap 'rm -rf "$dir"' EXIT
"$here/wide_1000.sh" "$dir/wide.toml"
sed -i "s/^s = \[.*\]/s = [$(seq -s, 1 "$n")]/" "$dir/wide.toml"
cp "$here/snakemake/Snakefile" "$dir/"
cd "$dir"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
"$smk" --executor slurm --jobs 1000 --latency-wait 5 --quiet rules \
    --default-resources slurm_partition=debug \
    --config cfrun="$bin" cache="$dir/cache" wide="$dir/wide.toml" n="$n" >"$dir/out.log" 2>&1 || {
    tail -n 30 "$dir/out.log"
    exit 1
}
end=$(date +%s.%N)
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
done=$(ls out | wc -l)
python3 -c "import sys; w=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'{n} jobs, {w:.1f} s wall, {n/w:.2f} jobs/s')" "$start" "$end" "$done"
