#!/usr/bin/env python3
"""Compare cfrun's linear probe (examples/probe_bench), with each of its solvers, against scikit-learn's
LogisticRegression, all minimising the same objective: converged accuracy, and time to a common accuracy target.

    python3 benches/python/probe_vs_sklearn.py gen      # writes $CFRUN_BENCH_DATA (default /tmp/cfrun-bench/data)
    python3 benches/python/probe_vs_sklearn.py run --reps 3 --json out.json   # needs: cargo build --release --example probe_bench
    python3 benches/python/probe_vs_sklearn.py run --only digits64 --max-epochs 40                # a quick look

The objective. cfrun's probe (src/eval/probe.rs, softmax.rs) standardises the features on the
train split and runs momentum SGD on softmax regression; each step's gradient is that of the
batch's *mean* cross-entropy plus `weight_decay * W` (the bias is not decayed). In expectation
over the batches it therefore minimises

    F(W, b) = (1/n) sum_i CE(x_i W + b, y_i) + (weight_decay / 2) ||W||^2.

scikit-learn's lbfgs LogisticRegression (multinomial, one weight row per class like cfrun, the
intercept not penalised) minimises (1/n) sum_i CE + 1 / (2 C n) ||W||^2 (sklearn's
`l2_reg_strength = 1 / (C * n)` on the mean loss; up to the overall factor C n this is its
documented C sum CE + ||W||^2 / 2). The two are the same function when

    C = 1 / (weight_decay * n_train)      e.g. weight_decay 1e-4, n 50,000 -> C = 0.2

so scikit-learn runs at that C on StandardScaler output (population std, as cfrun's standardiser).

cfrun has two solvers for it: momentum SGD (its default, `solver = "sgd"`) and full-batch L-BFGS
(`solver = "lbfgs"`, f32 products, f64 iterate, 10 correction pairs like scipy's), stopping on the same
gradient test as scikit-learn (max |g_i| <= tol, the same tol).

Converged accuracy. scikit-learn: max_iter raised (default 10,000) until it stops on its own
gradient test (max |g_i| <= tol, tol = 1e-4 by default) and n_iter_ < max_iter is checked; a fit
that hits max_iter is an error. cfrun's SGD has no such test: it runs 10, 20, 40, ... epochs
(each a separate run, since the cosine schedule spans the run) until doubling the epochs moves
train and test top-1 by at most 0.1 point or 2 rows of the split, whichever is more (on digits64's
797 test rows one row is 0.125 point), or until --max-epochs; hitting the cap is reported as not
converged, with the accuracy reached. cfrun's L-BFGS: like scikit-learn, a cap of --max-iter that
must not be reached.

Time to equal accuracy. target = the lowest of the three converged accuracies minus 0.1 point.
A budget is an epoch count (cfrun) or an iteration count (max_iter, scikit-learn); a tool's budget
is the smallest tried one from which every larger tried budget reaches the target, so a lucky
early hit that later falls back does not count. scikit-learn's budgets are all its iterations:
one traced fit records the weights after every lbfgs iteration (sklearn.callback), and a fit with
max_iter=k stops at exactly that iterate (checked). cfrun's L-BFGS likewise: probe_bench --trace
scores both splits after every iteration of one run, and a run capped at k iterations stops at
exactly that iterate (checked: same accuracies). cfrun's SGD budgets are 1, 2, 3, 4, 5, 6, 7, 8, 10, 12,
14, 16, 20, ... epochs, tried upwards until one reaches the target, plus the doubling series
above. Then the three plain runs at their budgets are timed alternately (--reps), wall and
process CPU time: cfrun standardising, training and scoring both splits inside probe_bench,
scikit-learn StandardScaler fit + transform, LogisticRegression fit and predicting both splits.

Data sets (all synthetic or shipped with scikit-learn; nothing is downloaded):
  digits64  scikit-learn's 8x8 digits: 1000 train / 797 test, 64 features, 10 classes
  feat512   CNN-feature-like: ReLU of a random 64->512 projection of noisy class
            codes; 50k train / 10k test, 100 classes
  pix784    Fashion-MNIST-like raw pixels: digits upscaled to 24x24, randomly
            placed in 28x28, contrast jitter and noise; 60k / 10k, 10 classes
Run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`; both tools use 2 threads. --passive sets
OMP_WAIT_POLICY=PASSIVE for scikit-learn's OpenMP threads (as run_all.py does for every peer).
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
THREADS = 2
# cfrun's epoch budgets tried for the time to the target (about 1.2x apart).
EPOCH_GRID = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192,
              224, 256, 320, 384, 448, 512, 640, 768, 896, 1024]
SETTLED = 0.001  # doubling the epochs moves top-1 by at most this (or 2 rows): cfrun has converged
MARGIN = 0.001   # the target is the lower converged accuracy minus this
# Top-1 on the held-out split (what a probe reports), and on the train split (how far each optimiser has
# got on the shared objective: near the optimum the held-out top-1 can fall while this rises).
TARGETS = ("test_top1", "train_top1")


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


# ---------------------------------------------------------------- the two tools

def sk_fit(data, C, max_iter, tol, callback=None):
    """One timed scikit-learn probe: scale, fit, predict both splits (wall and process CPU seconds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    xtr, ytr, xte, yte = data
    with threadpool_limits(limits=THREADS), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ConvergenceWarning of a deliberately short fit
        t, c = time.perf_counter(), time.process_time()
        sc = StandardScaler().fit(xtr)
        clf = LogisticRegression(C=C, tol=tol, max_iter=max_iter)
        if callback is not None:
            if not hasattr(clf, "set_callbacks"):
                import sklearn
                raise SystemExit(f"tracing lbfgs needs scikit-learn >= 1.9 (sklearn.callback); found {sklearn.__version__}")
            clf.set_callbacks(callback)
        clf.fit(sc.transform(xtr), ytr)
        test_hits, train_hits = clf.predict(sc.transform(xte)) == yte, clf.predict(sc.transform(xtr)) == ytr
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"seconds": wall, "cpu_seconds": cpu, "test_top1": float(test_hits.mean()),
            "train_top1": float(train_hits.mean()), "n_iter": int(clf.n_iter_[0]), "max_iter": max_iter}, sc, clf


class WeightTrace:
    """sklearn.callback FitCallback keeping the weights after every lbfgs iteration."""

    def __init__(self):
        self.weights = []

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context, **_):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None, **_):
        if context.task_name == "lbfgs-iter" and fitted_estimator is not None:
            self.weights.append((fitted_estimator.coef_.copy(), fitted_estimator.intercept_.copy()))
        return False


def sk_converged(data, C, max_iter, tol):
    """The converged fit, traced: its result and {"test_top1": [...], "train_top1": [...]}, the top-1 of
    both splits after each iteration 1..n_iter."""
    trace = WeightTrace()
    r, sc, _ = sk_fit(data, C, max_iter, tol, callback=trace)
    if r["n_iter"] >= max_iter:
        raise SystemExit(f"scikit-learn did not converge in max_iter={max_iter} (tol={tol}); raise --max-iter")
    accs = {}
    for key, x, y in (("test_top1", data[2], data[3]), ("train_top1", data[0], data[1])):
        xs = sc.transform(x)
        accs[key] = [float(((xs @ w.T + b).argmax(1) == y).mean()) for w, b in trace.weights]
        if len(accs[key]) != r["n_iter"] or abs(accs[key][-1] - r[key]) > 1e-12:
            raise SystemExit(f"weight trace has {len(accs[key])} iterations, fit reports {r['n_iter']}: cannot trace")
    return r, accs


def cf_runs(name, epochs, extra):
    """cfrun probes at each epoch budget (one process, splits loaded once); one dict per budget."""
    p = [os.path.join(DATA, f"probe_{name}_{s}.npy") for s in ("trx", "try", "tex", "tey")]
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    cmd = [BIN, *p, "--epochs", ",".join(map(str, epochs)), *shlex.split(extra)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    return [{"epochs": r["config"]["epochs"], "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"],
             "test_top1": r["test_top1"], "train_top1": r["train_top1"], "config": r["config"],
             "iterations": len(r["loss_per_epoch"]), "path": r.get("path")} for r in rows]


def lbfgs_flags(tol):
    return f"--solver lbfgs --tol {tol!r}"


def cf_lbfgs_converged(name, extra, max_iter, tol):
    """cfrun's L-BFGS to its gradient test: the traced run's accuracies after each iteration
    ({"test_top1": [...], "train_top1": [...]}) and a plain (untraced, timed) converged run."""
    flags = f"{extra} {lbfgs_flags(tol)} --trace"
    traced = cf_runs(name, [max_iter], flags)[0]
    plain = cf_runs(name, [max_iter], f"{extra} {lbfgs_flags(tol)}")[0]
    if plain["iterations"] >= max_iter:
        raise SystemExit(f"cfrun's L-BFGS did not converge in {max_iter} iterations (tol={tol}); raise --max-iter")
    path = traced["path"]
    accs = {"train_top1": [p[0] for p in path], "test_top1": [p[1] for p in path]}
    if len(path) != plain["iterations"] or any(accs[k][-1] != plain[k] for k in TARGETS):
        raise SystemExit(f"{name}: cfrun's traced L-BFGS run ({len(path)} iterations) differs from its plain run")
    return {**plain, "traced_seconds": traced["seconds"]}, accs


# ---------------------------------------------------------------- the rules

def stays_reached(accs_by_budget, target):
    """Smallest budget from which every larger tried budget reaches target; None if the largest misses."""
    best = None
    for budget, acc in sorted(accs_by_budget.items(), reverse=True):
        if acc < target:
            break
        best = budget
    return best


def cf_converged(name, extra, max_epochs, n_train, n_test, log):
    """cfrun at 10, 20, 40, ... epochs until doubling settles both accuracies, or max_epochs."""
    tolerance = {"train_top1": max(SETTLED, 2 / n_train), "test_top1": max(SETTLED, 2 / n_test)}
    series = []
    e = 10
    while True:
        series += cf_runs(name, [e], extra)
        r = series[-1]
        log(f"{name:9s} cfrun   {e:5d} epochs  {r['seconds']:8.3f} s  cpu {r['cpu_seconds']:8.3f} s  "
            f"test {100 * r['test_top1']:6.2f}%  train {100 * r['train_top1']:6.2f}%")
        if len(series) > 1 and all(abs(r[k] - series[-2][k]) <= t for k, t in tolerance.items()):
            return series, True
        if 2 * e > max_epochs:
            return series, False
        e *= 2


def cf_to_target(name, extra, tried, key, target, log):
    """cfrun's budget to target on key: finds the first tried budget that reaches it, tries the EPOCH_GRID
    budgets between the tried one below it and it, upwards until one reaches it (adding them to tried),
    then applies stays_reached to everything tried."""
    hit = min(e for e, r in tried.items() if r[key] >= target)
    below = max((e for e in tried if e < hit), default=0)
    for e in EPOCH_GRID:
        if not below < e < hit:
            continue
        if e not in tried:
            tried[e] = cf_runs(name, [e], extra)[0]
            log(f"{name:9s} cfrun   {e:5d} epochs  {tried[e]['seconds']:8.3f} s  "
                f"test {100 * tried[e]['test_top1']:6.2f}%  train {100 * tried[e]['train_top1']:6.2f}%")
        if tried[e][key] >= target:
            break
    return stays_reached({e: r[key] for e, r in tried.items()}, target)


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def one_set(name, reps, extra, max_epochs, max_iter, tol, log):
    data = load(name)
    xtr, ytr = data[0], data[1]
    n = len(ytr)
    series, settled = cf_converged(name, extra, max_epochs, n, len(data[3]), log)
    wd = series[0]["config"]["weight_decay"]
    C = 1.0 / (wd * n)
    sk_conv, sk_accs = sk_converged(data, C, max_iter, tol)
    log(f"{name:9s} sklearn C={C:.6g} tol={tol:g}: converged in {sk_conv['n_iter']} iterations, "
        f"{sk_conv['seconds']:.3f} s (traced)  test {100 * sk_conv['test_top1']:6.2f}%  "
        f"train {100 * sk_conv['train_top1']:6.2f}%")
    lb_conv, lb_accs = cf_lbfgs_converged(name, extra, max_iter, tol)
    log(f"{name:9s} cfrun L-BFGS tol={tol:g}: converged in {lb_conv['iterations']} iterations, "
        f"{lb_conv['seconds']:.3f} s  test {100 * lb_conv['test_top1']:6.2f}%  train {100 * lb_conv['train_top1']:6.2f}%")
    cf_conv = series[-1]
    tried = {r["epochs"]: r for r in series}
    targets = {}
    for key in TARGETS:
        target = min(cf_conv[key], sk_conv[key], lb_conv[key]) - MARGIN
        targets[key] = {"target": target, "cf_epochs": cf_to_target(name, extra, tried, key, target, log),
                        "lb_iters": stays_reached({i + 1: a for i, a in enumerate(lb_accs[key])}, target),
                        "sk_iters": stays_reached({i + 1: a for i, a in enumerate(sk_accs[key])}, target)}
        log(f"{name:9s} {key} target {100 * target:.2f}%: cfrun {targets[key]['cf_epochs']} epochs, "
            f"cfrun L-BFGS {targets[key]['lb_iters']} iterations, sklearn {targets[key]['sk_iters']} iterations")

    # Timed runs, alternating the tools: each at every budget it needs for a target, then the plain
    # (untraced) converged scikit-learn fit once.
    cf_t = {e: [] for e in sorted({t["cf_epochs"] for t in targets.values()})}
    lb_t = {i: [] for i in sorted({t["lb_iters"] for t in targets.values()})}
    sk_t = {i: [] for i in sorted({t["sk_iters"] for t in targets.values()})}
    for _ in range(reps):
        for e, rows in cf_t.items():
            rows.append(cf_runs(name, [e], extra)[0])
            log(f"{name:9s} timed: cfrun {e} epochs {rows[-1]['seconds']:.3f} s (cpu {rows[-1]['cpu_seconds']:.3f})")
        for i, rows in lb_t.items():
            rows.append(cf_runs(name, [i], f"{extra} {lbfgs_flags(tol)}")[0])
            log(f"{name:9s} timed: cfrun L-BFGS {i} iterations {rows[-1]['seconds']:.3f} s "
                f"(cpu {rows[-1]['cpu_seconds']:.3f})")
            if any(rows[-1][k] != lb_accs[k][i - 1] for k in TARGETS):
                raise SystemExit(f"{name}: cfrun L-BFGS capped at {i} does not stop at the traced iterate {i}")
        for i, rows in sk_t.items():
            rows.append(sk_fit(data, C, i, tol)[0])
            log(f"{name:9s} timed: sklearn max_iter={i} {rows[-1]['seconds']:.3f} s (cpu {rows[-1]['cpu_seconds']:.3f})")
            if any(abs(rows[-1][k] - sk_accs[k][i - 1]) > 1e-12 for k in TARGETS):
                raise SystemExit(f"{name}: sklearn max_iter={i} does not stop at the traced iterate {i}")
    sk_plain = sk_fit(data, C, max_iter, tol)[0]
    log(f"{name:9s} sklearn converged, untraced: {sk_plain['seconds']:.3f} s (cpu {sk_plain['cpu_seconds']:.3f})")

    def timing(rows):
        return {"seconds": med(rows, "seconds"), "cpu_seconds": med(rows, "cpu_seconds"),
                "runs": [r["seconds"] for r in rows], "cpu_runs": [r["cpu_seconds"] for r in rows],
                "test_top1": rows[-1]["test_top1"], "train_top1": rows[-1]["train_top1"]}

    return {
        "set": name, "n_train": n, "n_test": len(data[3]), "d": xtr.shape[1], "classes": int(ytr.max()) + 1,
        "weight_decay": wd, "C": C, "tol": tol, "max_iter": max_iter, "max_epochs": max_epochs,
        "cfrun": {"default": next(r for r in series if r["epochs"] == 10), "series": series,
                  "converged": {**cf_conv, "settled": settled},
                  "tried": {str(e): {k: r[k] for k in TARGETS} for e, r in sorted(tried.items())}},
        "sklearn": {"converged": {**sk_plain, "traced_seconds": sk_conv["seconds"]}, "per_iter": sk_accs},
        "cfrun_lbfgs": {"converged": {k: v for k, v in lb_conv.items() if k != "path"}, "per_iter": lb_accs},
        "targets": {k: {"target": t["target"],
                        "cfrun": {"epochs": t["cf_epochs"], **timing(cf_t[t["cf_epochs"]])},
                        "cfrun_lbfgs": {"iters": t["lb_iters"], **timing(lb_t[t["lb_iters"]])},
                        "sklearn": {"iters": t["sk_iters"], **timing(sk_t[t["sk_iters"]])}}
                    for k, t in targets.items()},
    }


def run(reps, only, extra, max_epochs, max_iter, tol, json_out=None):
    summary = []
    for name in SETS:
        if only and name not in only:
            continue
        summary.append(one_set(name, reps, extra, max_epochs, max_iter, tol, lambda s: print(s, flush=True)))
        s = summary[-1]
        cc, sc, lc = s["cfrun"]["converged"], s["sklearn"]["converged"], s["cfrun_lbfgs"]["converged"]
        print(f"{name:9s} SUMMARY converged test top-1 cfrun {100 * cc['test_top1']:.2f}% ({cc['epochs']} epochs, "
              f"{'settled' if cc['settled'] else 'NOT settled'}) cfrun L-BFGS {100 * lc['test_top1']:.2f}% "
              f"({lc['iterations']} iterations) sklearn {100 * sc['test_top1']:.2f}% ({sc['n_iter']} iterations)",
              flush=True)
        for key, t in s["targets"].items():
            sk = t["sklearn"]["seconds"]
            print(f"{name:9s} SUMMARY to {key} {100 * t['target']:.2f}%: cfrun {t['cfrun']['seconds']:.3f} s "
                  f"({t['cfrun']['seconds'] / sk:.2f}x), cfrun L-BFGS {t['cfrun_lbfgs']['seconds']:.3f} s "
                  f"({t['cfrun_lbfgs']['seconds'] / sk:.2f}x), sklearn {sk:.3f} s", flush=True)
        if json_out:
            with open(json_out, "w") as f:
                json.dump(summary, f, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "run"])
    ap.add_argument("--reps", type=int, default=3, help="alternating timed runs at each tool's budget to the target")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--extra", default="", help="extra flags for probe_bench, e.g. '--lr 0.05' (not --epochs)")
    ap.add_argument("--max-epochs", type=int, default=320, help="cap on cfrun's doubling series 10, 20, 40, ...")
    ap.add_argument("--max-iter", type=int, default=10_000,
                    help="scikit-learn max_iter and cfrun L-BFGS iteration cap; must not be reached")
    ap.add_argument("--tol", type=float, default=1e-4, help="scikit-learn's gradient tolerance (its default)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep")
    a = ap.parse_args()
    if a.passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before scikit-learn starts OpenMP
    gen() if a.cmd == "gen" else run(a.reps, a.only, a.extra, a.max_epochs, a.max_iter, a.tol, a.json)
