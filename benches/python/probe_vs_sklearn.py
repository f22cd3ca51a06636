#!/usr/bin/env python3
"""Compare cfrun's linear probe (examples/probe_bench) with scikit-learn's LogisticRegression.

Both see identical features: sklearn gets them standardised with StandardScaler
fitted on the train split (what the probe does internally) and uses lbfgs with
its defaults (C=1.0, max_iter=100). Runs are interleaved and medians reported.

    python3 benches/python/probe_vs_sklearn.py gen      # writes $CFRUN_BENCH_DATA (default /tmp/cfrun-bench/data)
    python3 benches/python/probe_vs_sklearn.py run --reps 3    # needs: cargo build --release --example probe_bench
    python3 benches/python/probe_vs_sklearn.py run --only feat512 --extra="--epochs 20"   # try other probe settings

Data sets (all synthetic or shipped with scikit-learn; nothing is downloaded):
  digits64  scikit-learn's 8x8 digits: 1000 train / 797 test, 64 features, 10 classes
  feat512   CNN-feature-like: ReLU of a random 64->512 projection of noisy class
            codes; 50k train / 10k test, 100 classes
  pix784    Fashion-MNIST-like raw pixels: digits upscaled to 24x24, randomly
            placed in 28x28, contrast jitter and noise; 60k / 10k, 10 classes
Run with `unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE`.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("CFRUN_BENCH_DATA", "/tmp/cfrun-bench/data")
BIN = os.path.join(HERE, "..", "..", "target", "release", "examples", "probe_bench")
SETS = ["digits64", "feat512", "pix784"]


def save(name, xtr, ytr, xte, yte):
    os.makedirs(DATA, exist_ok=True)
    for part, arr in (("trx", xtr.astype(np.float32)), ("try", ytr.astype(np.int64)),
                      ("tex", xte.astype(np.float32)), ("tey", yte.astype(np.int64))):
        np.save(os.path.join(DATA, f"probe_{name}_{part}.npy"), np.ascontiguousarray(arr))
    print("wrote", name, xtr.shape, xte.shape, "classes", int(ytr.max()) + 1)


def gen():
    if all(os.path.exists(os.path.join(DATA, f"probe_{n}_tey.npy")) for n in SETS):
        print("exists", *SETS)
        return
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(digits.target))
    x, y = digits.data.astype(np.float32), digits.target
    save("digits64", x[perm[:1000]], y[perm[:1000]], x[perm[1000:]], y[perm[1000:]])

    rng = np.random.default_rng(1)
    classes, latent, d = 100, 64, 512
    codes = rng.normal(0, 1, size=(classes, latent))
    proj = rng.normal(0, 1, size=(latent, d)) / np.sqrt(latent)

    def feats(n):
        yy = rng.integers(0, classes, size=n)
        h = codes[yy] + 2.5 * rng.normal(0, 1, size=(n, latent))
        return np.maximum(h @ proj + 1.0 * rng.normal(0, 1, size=(n, d)), 0).astype(np.float32), yy

    save("feat512", *feats(50_000), *feats(10_000))

    imgs = digits.images / 16.0
    pool_tr, pool_te = perm[:1000], perm[1000:]

    def pixels(n, pool):
        idx = rng.choice(pool, size=n)
        out = np.zeros((n, 28, 28), dtype=np.float32)
        big = np.kron(imgs[idx], np.ones((3, 3)))  # n x 24 x 24
        ox, oy = rng.integers(0, 5, size=n), rng.integers(0, 5, size=n)
        contrast = rng.uniform(0.6, 1.2, size=n)
        for i in range(n):
            out[i, oy[i]:oy[i] + 24, ox[i]:ox[i] + 24] = big[i] * contrast[i]
        out += rng.normal(0, 0.15, size=out.shape).astype(np.float32)
        return np.clip(out, 0, 1).reshape(n, 784), digits.target[idx]

    save("pix784", *pixels(60_000, pool_tr), *pixels(10_000, pool_te))


def load(name):
    return [np.load(os.path.join(DATA, f"probe_{name}_{p}.npy")) for p in ("trx", "try", "tex", "tey")]


def run_sklearn(xtr, ytr, xte, yte, max_iter):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=2), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        sc = StandardScaler().fit(xtr)
        clf = LogisticRegression(max_iter=max_iter).fit(sc.transform(xtr), ytr)
        dt = time.perf_counter() - t
        acc = float((clf.predict(sc.transform(xte)) == yte).mean())
    return dt, acc, int(clf.n_iter_[0])


def run_ours(name, extra):
    p = [os.path.join(DATA, f"probe_{name}_{s}.npy") for s in ("trx", "try", "tex", "tey")]
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    out = subprocess.run([BIN, *p, *shlex.split(extra)], capture_output=True, text=True, env=env, check=True)
    r = json.loads(out.stdout)
    return r["seconds"], r["test_top1"], r["config"]["epochs"]


def run(reps, only, extra, sk_iters, json_out=None):
    summary = []
    for name in SETS:
        if only and name not in only:
            continue
        xtr, ytr, xte, yte = load(name)
        res = {"ours": [], **{f"sklearn_it{m}": [] for m in sk_iters}}
        for _ in range(reps):
            res["ours"].append(run_ours(name, extra))
            for m in sk_iters:
                res[f"sklearn_it{m}"].append(run_sklearn(xtr, ytr, xte, yte, m))
        for tool, rs in res.items():
            med = statistics.median(r[0] for r in rs)
            print(f"{name:9s} {tool:14s} time={med:7.3f}s test_top1={100 * rs[-1][1]:6.2f}% iters/epochs={rs[-1][2]}"
                  f" runs={[round(r[0], 3) for r in rs]}", flush=True)
            summary.append({"set": name, "n_train": len(ytr), "n_test": len(yte), "d": xtr.shape[1],
                            "classes": int(ytr.max()) + 1, "tool": tool,
                            "seconds": statistics.median(r[0] for r in rs), "test_top1": rs[-1][1],
                            "iters_or_epochs": rs[-1][2], "runs": [r[0] for r in rs]})
        if json_out:
            with open(json_out, "w") as f:
                json.dump(summary, f, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "run"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--extra", default="", help="extra flags for probe_bench, e.g. '--epochs 20 --lr 0.05'")
    ap.add_argument("--sk-iters", type=int, nargs="*", default=[100])
    ap.add_argument("--json", help="write the medians to this file")
    a = ap.parse_args()
    gen() if a.cmd == "gen" else run(a.reps, a.only, a.extra, a.sk_iters, a.json)
