#!/usr/bin/env python3
"""Replays a study's recorded stage times on N job slots under two start orders.

Usage: schedule_sim.py EXPERIMENT.toml DAG.txt RUNS.jsonl [--slots 2]
  DAG.txt     `cfrun dag EXPERIMENT.toml` (text format: an instance line, then its inputs)
  RUNS.jsonl  the cache's run log of one full run of the experiment from an empty cache

Orders compared:
  plan order        what cfrun did before commit f53b043 (a FIFO of ready instances)
  longest chain     cfrun's order since: each ready instance ranked by its own estimate plus the
                    longest chain of estimates among its dependants; the estimate is the one
                    `Op::work_estimate` gives (4 s an epoch for train/pretext, 1 s otherwise)
  longest chain, recorded times
                    the same with the recorded times as estimates (the best this ranking can do)

Each instance takes its recorded time whatever runs beside it, so this is a model of the
schedule, not of contention; on the recorded runs it lands within 4 % of their measured wall times.
"""
import argparse
import collections
import heapq
import json
import tomllib


def read_dag(path):
    order, kind, deps = [], {}, collections.defaultdict(set)
    current = None
    for line in open(path):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.startswith("  "):
            current, op = line.rsplit(" (", 1)
            order.append(current)
            kind[current] = op.rstrip(")")
        else:
            upstream = line.split("<-", 1)[1].strip().rsplit(".", 1)[0]
            deps[current].add(upstream)
    return order, kind, deps


def chains(order, deps, cost):
    after = collections.defaultdict(list)
    for n in order:
        for d in deps[n]:
            after[d].append(n)
    chain = {}
    for n in reversed(order):  # `cfrun dag` lists instances in plan (topological) order
        chain[n] = cost(n) + max((chain[d] for d in after[n]), default=0.0)
    return chain, after


def makespan(order, deps, after, seconds, rank, slots):
    waiting = {n: len(deps[n]) for n in order}
    ready = [(rank(n), n) for n in order if waiting[n] == 0]
    heapq.heapify(ready)
    running, t, busy = [], 0.0, 0.0
    while ready or running:
        while ready and len(running) < slots:
            _, n = heapq.heappop(ready)
            heapq.heappush(running, (t + seconds[n], n))
            busy += seconds[n]
        t, n = heapq.heappop(running)
        for d in after[n]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, (rank(d), d))
    return t, busy / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment")
    ap.add_argument("dag")
    ap.add_argument("runs")
    ap.add_argument("--slots", type=int, default=2)
    a = ap.parse_args()
    order, kind, deps = read_dag(a.dag)
    stages = tomllib.load(open(a.experiment, "rb"))["stages"]
    seconds = collections.defaultdict(float)
    for line in open(a.runs):
        r = json.loads(line)
        if r["outcome"] == "ran":
            seconds[r["instance"]] = r["seconds"]
    index = {n: i for i, n in enumerate(order)}

    def estimate(n):
        if kind[n] in ("train", "pretext"):
            return 4.0 * stages[n.split("[")[0]].get("epochs", 0)
        return 1.0

    by_estimate, after = chains(order, deps, estimate)
    by_record, _ = chains(order, deps, lambda n: seconds[n])
    total = sum(seconds[n] for n in order)
    print(f"{len(order)} instances, {total:.0f} job-seconds, longest chain {max(by_record.values()):.0f} s")
    for label, rank in [
        ("plan order", lambda n: index[n]),
        ("longest chain", lambda n: (-round(by_estimate[n] * 1000), index[n])),
        ("longest chain, recorded times", lambda n: (-by_record[n], index[n])),
    ]:
        t, used = makespan(order, deps, after, seconds, rank, a.slots)
        print(f"  {label:30s} {t:7.1f} s, {used:.2f} of {a.slots} slots busy")


if __name__ == "__main__":
    main()
