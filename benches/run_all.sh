#!/usr/bin/env bash
# Every side-by-side comparison, one after another, each alternating cfrun and its peer on identical
# inputs; writes benches/RESULTS.md (medians, ratios, goals met or not, date, machine, load).
#
#   benches/run_all.sh            # full suite, about an hour on 2 cores (the converged probes are most of it)
#   benches/run_all.sh --quick    # one short pass, a smoke test (a few minutes)
#   benches/run_all.sh --only kmeans probe    # some sections: nets kmeans kmem probe status (the others'
#                                             # last results stay in the report; --fresh drops them)
#
# Builds cfrun and the bench examples in release mode, installs the Python peers from PyPI when
# missing (numpy, scikit-learn, faiss-cpu, torch; dvc into a venv under /tmp), keeps generated
# inputs and raw logs under $CFRUN_BENCH_TMP (default /tmp/cfrun-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --examples --bin cfrun
py=${PYTHON:-python3}
missing=()
for m in numpy:numpy sklearn:scikit-learn faiss:faiss-cpu torch:torch threadpoolctl:threadpoolctl; do
  "$py" -c "import ${m%%:*}" 2> /dev/null || missing+=("${m#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from PyPI" >&2
  "$py" -m pip install "${missing[@]}"
fi
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" benches/python/run_all.py "$@"
