#!/usr/bin/env bash
# Writes the 1,000-instance experiment that the `status` benchmarks time (one data set, 999 seeds
# of label noise) to the path given. Used by status_1000.sh and dvc_status_1000.sh.
set -euo pipefail
seeds=$(seq -s, 1 999)
cat > "${1:?output path}" <<TOML
[experiment]
name = "wide"
seed = 0

[sweep]
s = [$seeds]

[stages.shapes]
op = "dataset"
name = "synthetic"
classes = 4
size = 8
train_size = 40
test_size = 8

[stages.noisy]
op = "label_noise"
labels = "shapes.labels"
percent = 10
seed = "\${s}"
TOML
