#!/bin/sh
# Copies the tables, figures and clip previews of the video studies from a cache into
# docs/video/<experiment>/. Usage: scripts/video-docs.sh CACHE [EXPERIMENT...]
set -eu
cache=$1
shift
[ $# -gt 0 ] || set -- weak_videos capacity per_label label_count
for exp in "$@"; do
  "$(dirname "$0")/study-docs.sh" "$cache" "$exp" "docs/video/$exp"
done
