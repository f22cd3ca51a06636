#!/bin/sh
# Copies every table, verdict report and figure of one study from a cache into a docs folder, as
# `<instance>.<file>` (runs the experiment, which only prints what is cached when nothing changed).
# Usage: scripts/study-docs.sh CACHE EXPERIMENT OUTDIR [cfrun options, e.g. --set experiment.replicates=6]
# (from the repository's root; CFRUN=PATH runs another binary than target/release/cfrun)
set -eu
cache=$1 exp=$2 out=$3
shift 3
mkdir -p "$out"
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
# A run with a failed or skipped instance lists only what succeeded; copying that would mix new
# tables with the verdicts an earlier run left in OUTDIR, so nothing is copied and the script fails.
if ! "${CFRUN:-./target/release/cfrun}" "experiments/$exp.toml" --cache "$cache" --json -q "$@" > "$summary"; then
  echo "study-docs: cfrun failed on experiments/$exp.toml (its errors are above); nothing copied to $out" >&2
  exit 1
fi
python3 -c '
import json, shutil, sys
out = sys.argv[1]
summary = json.load(open(sys.argv[2]))
# cfrun exits non-zero whenever this is false; checked again so that the script never relies on it.
if not summary.get("ok"):
    sys.exit("study-docs: the run did not complete; nothing copied to " + out)
for r in summary["reports"]:
    name = r["instance"].replace("[", "_").replace("]", "").replace("=", "-").replace(",", "_")
    for f in r["files"]:
        if f.endswith((".md", ".csv", ".png", ".svg")):
            base = f.rsplit("/", 1)[1]
            shutil.copyfile(f, f"{out}/{name}.{base}")
' "$out" "$summary"
echo "$exp -> $out"
