#!/usr/bin/env python3
"""How an experiment maps onto N one-GPU nodes: critical path, total GPU hours, expected wall time.

Reads `cfrun dag FILE` (instances and the instances they read) and simulates cfrun's scheduler
with the Slurm executor: every instance is submitted as soon as its inputs are published, jobs
start in submission order on N GPU slots, in-driver ops take no slot. Per-instance costs come from
a model anchored on a measurement (docs/gpu-check-2026-11-26: resnet_gpu trains at 1,510 img/s on
one H200 with candle's CUDA kernels, extraction of 70k images takes 9.5 s); the rest are estimates,
stated in docs/CLUSTER.md. Usage: benches/cluster_plan.py FILE [cfrun binary]
"""
import heapq
import re
import subprocess
import sys

IMG_PER_S = 1510.0  # resnet_gpu training on 28x28 images, measured on an H200
TRAIN_N = 60000  # Fashion-MNIST train split
QUEUE_S = 5.0  # submission to start plus completion detection, per job
IN_DRIVER = {"label_noise", "weak_tags", "permutations", "concat", "table", "plot"}


def epochs_of(text, stage, default):
    m = re.search(r"\[stages\.%s\][^\[]*?epochs\s*=\s*(\d+)" % re.escape(stage), text, re.S)
    return int(m.group(1)) if m else default


def cost(op, stage, text):
    """Seconds of one instance on one GPU node."""
    if op in ("train",):
        return epochs_of(text, stage, 15) * TRAIN_N / IMG_PER_S
    if op == "pretext":
        # RotNet: 4 rotations per image; Jigsaw: 9 tiles of 19 px (~4x the pixels of 28x28).
        return 4 * epochs_of(text, stage, 15) * TRAIN_N / IMG_PER_S
    if op == "extract":
        return 10.0
    if op in ("kmeans", "per_label_kmeans", "prototype"):
        return 60.0
    if op in ("linear_probe", "map_probe"):
        return 30.0
    if op in ("dataset", "video", "canvas"):
        return 15.0
    return 0.5


def main():
    path = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/cfrun"
    text = open(path).read()
    dag = subprocess.run([binary, "dag", path], capture_output=True, text=True, check=True).stdout
    order, ops, inputs = [], {}, {}
    for line in dag.splitlines():
        if not line.startswith(" "):
            name, op = re.match(r"(.*) \((\w+)\)$", line).groups()
            order.append(name)
            ops[name] = op
            inputs[name] = set()
        else:
            up = line.split("<-", 1)[1].strip().rsplit(".", 1)[0]
            inputs[order[-1]].add(up)
    stage = {n: n.split("[")[0] for n in order}
    secs = {n: cost(ops[n], stage[n], text) for n in order}
    gpu = {n: ops[n] not in IN_DRIVER for n in order}
    # Critical path: the longest chain of job times (plus queueing per job).
    finish = {}
    for n in order:
        own = secs[n] + (QUEUE_S if gpu[n] else 0)
        finish[n] = own + max((finish[u] for u in inputs[n]), default=0)
    critical = max(finish.values())
    total_gpu_h = sum(secs[n] for n in order if gpu[n]) / 3600
    print(f"{path}: {len(order)} instances, {sum(gpu.values())} jobs, "
          f"{total_gpu_h:.1f} GPU-hours, critical path {critical / 60:.0f} min")
    for nodes in (1, 2, 4, 8, 16, 32):
        print(f"  {nodes:>2} GPU nodes: {simulate(order, inputs, secs, gpu, nodes) / 60:6.0f} min")


def simulate(order, inputs, secs, gpu, nodes):
    index = {n: i for i, n in enumerate(order)}
    waiting = {n: len(inputs[n]) for n in order}
    dependants = {n: [] for n in order}
    for n in order:
        for u in inputs[n]:
            dependants[u].append(n)
    ready = [index[n] for n in order if waiting[n] == 0]
    heapq.heapify(ready)
    running, now, free = [], 0.0, nodes
    while ready or running:
        deferred = []
        while ready:
            i = heapq.heappop(ready)
            n = order[i]
            if gpu[n] and free == 0:
                deferred.append(i)
                continue
            if gpu[n]:
                free -= 1
            heapq.heappush(running, (now + secs[n] + (QUEUE_S if gpu[n] else 0), i))
        for i in deferred:
            heapq.heappush(ready, i)
        now, i = heapq.heappop(running)
        n = order[i]
        if gpu[n]:
            free += 1
        for d in dependants[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, index[d])
    return now


if __name__ == "__main__":
    main()
