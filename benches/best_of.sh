#!/bin/bash
# Best-of-N interleaved runs of bench_train for each kernel variant (the machine is shared:
# the best run is the least disturbed). Usage: benches/best_of.sh N "variant args" ...
n=$1; shift
for i in $(seq "$n"); do
  for v in "$@"; do
    echo "[$v] $(./target/release/examples/bench_train --steps 10 --presets cpu $v | grep resnet_cpu)"
  done
done | sort | awk -F'train +' '{split($2, a, " "); key=$1; if (a[1] > best[key]) {best[key]=a[1]; line[key]=$0}} END {for (k in line) print line[k]}'
