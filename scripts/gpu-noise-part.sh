#!/usr/bin/env bash
# Expects $CARRY/cfrun.xz (xz of the stripped CUDA binary) and $CARRY/data.tar.xz (tar of cache/data/{fashion-mnist,animal-mnist}).
# Part of noise_sweep_full.toml on the GPU: p=50, K=50, Animal-MNIST target, 3 epochs per network.
set -uo pipefail
OUT=${OUT:?}
mkdir -p /tmp/gc && tar -C /tmp/gc -xJf ${CARRY:-gpu-carry}/data.tar.xz
xz -dc ${CARRY:-gpu-carry}/cfrun.xz > /tmp/cfrun && chmod +x /tmp/cfrun
L=$(dirname "$(find /opt /usr /root -name libcublas.so.13 2>/dev/null | head -n1)")
export LD_LIBRARY_PATH="$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi -L > "$OUT/env.txt" 2>&1
/usr/bin/time -v /tmp/cfrun experiments/noise_sweep_full.toml --device cuda --cache /tmp/gc \
  --set 'sweep.p=[50]' --set 'sweep.k=[50]' --set 'sweep.target=["animal-mnist"]' \
  --set stages.pretrain.epochs=3 --set stages.clusterfit.epochs=3 --set stages.distill.epochs=3 \
  > "$OUT/full_part.stdout" 2> "$OUT/full_part.stderr"
rc=$?
echo "exit $rc" >> "$OUT/env.txt"
grep -E "img/s|ran |Elapsed|Maximum resident" "$OUT/full_part.stderr" | tail -40
cat "$OUT/full_part.stdout"
# The device tool hands $OUT back whatever the status, so the run's own status can be the script's.
exit $rc
