#!/bin/sh
# Copies every table, verdict report and figure of one study from a cache into a docs folder, as
# `<instance>.<file>` (runs the experiment, which only prints what is cached when nothing changed).
# Usage: scripts/study-docs.sh CACHE EXPERIMENT OUTDIR [cfrun options, e.g. --set experiment.replicates=6]
set -eu
cache=$1 exp=$2 out=$3
shift 3
mkdir -p "$out"
./target/release/cfrun "experiments/$exp.toml" --cache "$cache" --json "$@" 2>/dev/null |
  python3 -c '
import json, shutil, sys
out = sys.argv[1]
for r in json.load(sys.stdin)["reports"]:
    name = r["instance"].replace("[", "_").replace("]", "").replace("=", "-").replace(",", "_")
    for f in r["files"]:
        if f.endswith((".md", ".csv", ".png", ".svg")):
            base = f.rsplit("/", 1)[1]
            shutil.copyfile(f, f"{out}/{name}.{base}")
' "$out"
echo "$exp -> $out"
