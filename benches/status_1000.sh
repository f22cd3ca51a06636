#!/usr/bin/env bash
# `cfrun status` on an experiment that expands to 1,000 instances, all cached.
# Usage: benches/status_1000.sh [cfrun binary]   (default target/release/cfrun)
set -euo pipefail
bin=${1:-target/release/cfrun}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$(dirname "$0")/wide_1000.sh" "$dir/wide.toml"
"$bin" "$dir/wide.toml" --cache "$dir/cache" -q
for i in 1 2 3 4 5; do
  /usr/bin/time -f "status, 1000 cached instances: %e s wall, %M KB max RSS" "$bin" status "$dir/wide.toml" --cache "$dir/cache" > /dev/null
done
