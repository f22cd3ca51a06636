#!/usr/bin/env python3
"""Compare cfrun's k-means (examples/kmeans_bench) with faiss-cpu and scikit-learn.

All three start from the same initial centroids (k-means++ seeds computed once
by scikit-learn and saved) and run 20 Lloyd iterations on 2 threads; runs are interleaved
(ours, faiss, sklearn, ours, ...) and medians reported, because the machine is
shared and timings are noisy.

    python3 benches/python/kmeans_vs_faiss.py gen          # writes $CFRUN_BENCH_DATA/*.npy (default /tmp/cfrun-bench/data)
    python3 benches/python/kmeans_vs_faiss.py run --reps 3 # needs: cargo build --release --example kmeans_bench
    python3 benches/python/kmeans_vs_faiss.py run --only 1m_128_k1000 --json out.json

Sizes: 60k x 784 K=200, 60k x 512 K=1000, 50k x 128 K=100 and 1M x 128 K=1000 (512 MB of
features; its k-means++ seeds are drawn from a 100k-row subsample, which keeps `gen` short).

Notes on semantics:
- "final inertia" is the sum of squared distances of every row to its nearest
  *final* centroid, for all three (faiss: index.search after training;
  sklearn: inertia_, which it recomputes after the last update; ours: assign()).
- faiss always runs niter iterations; sklearn (tol=0) and ours stop early when
  the assignment stops changing, so time is reported per iteration.
- faiss is given max_points_per_centroid large enough to train on all rows.
- Run with `unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE` (see the report).
- cpu_s/iter is process CPU time (all threads). With --passive, OpenMP threads
  sleep instead of spinning, so it reflects work done even when the machine
  is shared; wall-clock s/iter is the number the speed target refers to.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

if "--passive" in sys.argv:
    # Must precede loading OpenMP: idle OpenMP threads then sleep instead of
    # spinning, so CPU time measures work even on a busy machine.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("CFRUN_BENCH_DATA", "/tmp/cfrun-bench/data")
BIN = os.path.join(HERE, "..", "..", "target", "release", "examples", "kmeans_bench")
# (name, n, d, k)
CASES = [("60k_784_k200", 60_000, 784, 200), ("60k_512_k1000", 60_000, 512, 1000), ("50k_128_k100", 50_000, 128, 100),
         ("1m_128_k1000", 1_000_000, 128, 1000)]
ITERS = 20


def mixture(n, d, comps, seed):
    """Gaussian mixture with uneven component sizes and spreads, ReLU-ish like CNN features."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, size=(comps, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(comps, 2.0))
    comp = rng.choice(comps, size=n, p=weights)
    spread = rng.uniform(0.3, 1.2, size=comps).astype(np.float32)
    x = centers[comp] + rng.normal(0, 1, size=(n, d)).astype(np.float32) * spread[comp, None]
    return np.maximum(x, 0, dtype=np.float32), comp


def gen(only=None):
    os.makedirs(DATA, exist_ok=True)
    for name, n, d, k in CASES:
        if only and name not in only:
            continue
        if all(os.path.exists(os.path.join(DATA, f"{name}_{p}.npy")) for p in ("x", "c")):
            print("exists", name)
            continue
        x, _ = mixture(n, d, comps=max(50, k // 2), seed=n + d + k)
        # k-means++ seeds (rows of x): with uniform seeds some clusters empty out,
        # and faiss (random donor), sklearn (farthest point) and we (largest
        # cluster) re-seed them differently, which sends the runs to
        # different local optima and makes inertias incomparable.
        from sklearn.cluster import kmeans_plusplus
        sub = x if n <= 200_000 else x[np.random.default_rng(7).choice(n, 100_000, replace=False)]
        # float64: on float32 input scikit-learn computes distances in small up-cast chunks, which
        # is many times slower (minutes on a loaded 2-core machine). The seeds are rows of x either way.
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=2):
            init, _ = kmeans_plusplus(sub.astype(np.float64), k, random_state=1234)
        np.save(os.path.join(DATA, f"{name}_x.npy"), np.ascontiguousarray(x, dtype=np.float32))
        np.save(os.path.join(DATA, f"{name}_c.npy"), np.ascontiguousarray(init, dtype=np.float32))
        print("wrote", name, x.shape, init.shape)


def run_ours(name):
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    out = subprocess.run([BIN, f"{DATA}/{name}_x.npy", f"{DATA}/{name}_c.npy", str(ITERS)],
                         capture_output=True, text=True, env=env, check=True)
    r = json.loads(out.stdout)
    return r["s_per_iter"], r["final_inertia"], f'{r["iters"]} splits={r["splits"]}', r["cpu_s_per_iter"]


def run_faiss(x, c):
    import faiss
    faiss.omp_set_num_threads(2)
    n, d = x.shape
    km = faiss.Kmeans(d, c.shape[0], niter=ITERS, seed=1, max_points_per_centroid=n + 1,
                      min_points_per_centroid=1, verbose=False)
    t, cpu = time.perf_counter(), time.process_time()
    km.train(x, init_centroids=c)
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    dist, _ = km.index.search(x, 1)
    splits = sum(st["nsplit"] for st in km.iteration_stats)
    return dt / ITERS, float(dist.astype(np.float64).sum()), f"{ITERS} splits={splits}", dcpu / ITERS


def run_sklearn(x, c):
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=2):
        km = KMeans(n_clusters=c.shape[0], init=c, n_init=1, max_iter=ITERS, tol=0, algorithm="lloyd")
        t, cpu = time.perf_counter(), time.process_time()
        km.fit(x)
        dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    return dt / km.n_iter_, float(km.inertia_), int(km.n_iter_), dcpu / km.n_iter_


def run(reps, only, json_out=None):
    rows = []
    summary = []
    for name, n, d, k in CASES:
        if only and name not in only:
            continue
        x = np.load(f"{DATA}/{name}_x.npy")
        c = np.load(f"{DATA}/{name}_c.npy")
        res = {"ours": [], "faiss": [], "sklearn": []}
        for _ in range(reps):
            res["ours"].append(run_ours(name))
            res["faiss"].append(run_faiss(x, c))
            res["sklearn"].append(run_sklearn(x, c))
        for tool, rs in res.items():
            med = statistics.median(r[0] for r in rs)
            cpu = statistics.median(r[3] for r in rs)
            rows.append((name, tool, med, rs[-1][1], rs[-1][2], [round(r[0], 4) for r in rs]))
            print(f"{name:16s} {tool:8s} s/iter={med:.4f} cpu_s/iter={cpu:.4f} final_inertia={rs[-1][1]:.6e}"
                  f" iters={rs[-1][2]} runs={rows[-1][5]}", flush=True)
        base = rows[-2][3]
        for tool in ("ours", "sklearn"):
            r = next(r for r in rows if r[0] == name and r[1] == tool)
            print(f"{'':16s} {tool} vs faiss: time x{r[2] / rows[-2][2]:.2f}, inertia rel diff {(r[3] - base) / base:+.2e}")
        for tool, rs in res.items():
            summary.append({"case": name, "n": n, "d": d, "k": k, "iters": ITERS, "tool": tool, "iters_run": rs[-1][2],
                            "s_per_iter": statistics.median(r[0] for r in rs),
                            "cpu_s_per_iter": statistics.median(r[3] for r in rs),
                            "final_inertia": rs[-1][1], "runs": [r[0] for r in rs]})
        if json_out:
            with open(json_out, "w") as f:
                json.dump(summary, f, indent=1)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "run"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json", help="write the medians to this file")
    ap.add_argument("--iters", type=int, default=ITERS, help=f"Lloyd iterations, the same for all three (default {ITERS})")
    ap.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE, for meaningful CPU times")
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.only)
    else:
        if "OPENBLAS_CORETYPE" in os.environ or "OPENBLAS_L2_SIZE" in os.environ:
            print("warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set; unset them for fair numpy/sklearn timings",
                  file=sys.stderr)
        ITERS = a.iters
        run(a.reps, a.only, a.json)
