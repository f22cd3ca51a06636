#!/bin/sh
# Copies the tables, figures and clip previews of the video studies from a cache into
# docs/video/<experiment>/ (runs each experiment, which only prints what is cached when nothing
# changed). Usage: scripts/video-docs.sh CACHE [EXPERIMENT...]
set -eu
cache=$1
shift
[ $# -gt 0 ] || set -- weak_videos capacity per_label label_count
for exp in "$@"; do
  out=docs/video/$exp
  mkdir -p "$out"
  ./target/release/cfrun "experiments/$exp.toml" --cache "$cache" --json 2>/dev/null |
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
done
