#!/usr/bin/env bash
# One command from a fresh clone: builds cfrun, makes a Python environment with what the
# scikit-learn probe needs (examples/python/.venv, once), and runs the example study. Extra
# arguments go to cfrun (e.g. --cache DIR, --set ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=examples/python/.venv
if ! "$venv/bin/python3" -c "import numpy, safetensors, sklearn" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r examples/python/requirements.txt
fi
cargo build --release --quiet
PATH="$PWD/$venv/bin:$PATH" exec target/release/cfrun examples/python/noise_sweep_sklearn.toml "$@"
