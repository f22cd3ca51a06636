#!/usr/bin/env python3
"""Run every side-by-side comparison and write benches/RESULTS.md.

Called by benches/run_all.sh (which builds the binaries and installs the Python peers first).
Each comparison alternates cfrun's run and the peer's run on identical inputs (ours, peer, ours,
peer, ...) and reports medians; the machine's load average is recorded before and after each
comparison, since on a shared machine absolute timings are noisy.

    python3 benches/python/run_all.py [--quick] [--only nets kmeans kmem probe status] [--out benches/RESULTS.md]

Generated inputs and raw logs go under $CFRUN_BENCH_TMP (default /tmp/cfrun-bench).
"""
import argparse
import csv
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TMP = os.environ.get("CFRUN_BENCH_TMP", "/tmp/cfrun-bench")
os.environ.setdefault("CFRUN_BENCH_DATA", os.path.join(TMP, "data"))
LOGS = os.path.join(TMP, "logs")
EX = os.path.join(ROOT, "target", "release", "examples")
CFRUN = os.path.join(ROOT, "target", "release", "cfrun")
PRESETS = ["tiny", "small", "cpu", "gpu"]
VIDEO_PRESETS = ["small", "large"]
# Every network compared with PyTorch, by the name both benches print.
NETS = [f"resnet_{p}" for p in PRESETS] + [f"r2plus1d_{p}" for p in VIDEO_PRESETS]
# Issue 16: at least this many times PyTorch's throughput, in wall time and in CPU time.
NET_GOAL = 1.2

# numpy / scikit-learn / faiss / torch are timed without these (see benches/README.md).
PY_ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
RUST_ENV = dict(os.environ, RAYON_NUM_THREADS="2")


def sh(cmd, env=None, log=None, check=True):
    """Run cmd (a list), echo and log its output, return stdout."""
    print("$", " ".join(cmd), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if log:
        with open(os.path.join(LOGS, log), "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n")
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.stdout.write(p.stderr)
        if check:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    return p.stdout


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (x.strip() for x in line.split(":", 1))
                info.setdefault(k, v)
    cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}"
    cpu += ", virtual machine)" if "hypervisor" in info.get("flags", "").split() else ")"
    with open("/proc/meminfo") as f:
        mem_kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    flags = open("/proc/cpuinfo").read()
    simd = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem_kb / 2**20, "simd": simd,
            "kernel": platform.release()}


def busy_others():
    """Names of the busiest processes right now (to say what else loaded the machine)."""
    out = subprocess.run(["ps", "-eo", "pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True).stdout
    rows = [l.split(None, 1) for l in out.strip().splitlines()[:8]]
    return [f"{c.strip()} {p}%" for p, c in rows if float(p) >= 5 and c.strip() not in ("ps",)]


def versions():
    code = ("import importlib, json; out = {}\n"
            "for m in ('numpy', 'sklearn', 'faiss', 'torch'):\n"
            "    try: out[m] = importlib.import_module(m).__version__\n"
            "    except Exception as e: out[m] = 'missing'\n"
            "print(json.dumps(out))")
    v = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=PY_ENV).stdout)
    v["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    v["cfrun"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
    return v


# ---------------------------------------------------------------- comparisons

NET_RE = re.compile(r"((?:resnet|r2plus1d)_\w+?)\s+(?:\d+ params\s+)?train\s+([\d.]+) (?:img|clips)/s "
                    r"\(\s*([\d.]+) per 2 CPU-s\)\s+inference\s+([\d.]+) (?:img|clips)/s \(\s*([\d.]+)\)")


def nets(reps, steps):
    res = {p: {t: {"train": [], "infer": [], "train_cpu": [], "infer_cpu": []} for t in ("ours", "torch")}
           for p in NETS}
    vsteps = str(max(1, steps // 2))
    for _ in range(reps):
        for tool, cmds, env in (
                ("ours", [[os.path.join(EX, "bench_train"), "--steps", str(steps), "--presets", ",".join(PRESETS)],
                          [os.path.join(EX, "bench_video"), "--steps", vsteps, "--presets", ",".join(VIDEO_PRESETS)]],
                 RUST_ENV),
                ("torch", [[sys.executable, os.path.join(HERE, "torch_resnet.py"), "--steps", str(steps),
                            "--presets", ",".join(PRESETS), "--passive"],
                           [sys.executable, os.path.join(HERE, "torch_r2plus1d.py"), "--steps", vsteps,
                            "--presets", ",".join(VIDEO_PRESETS), "--passive"]], PY_ENV)):
            for cmd in cmds:
                for m in NET_RE.finditer(sh(cmd, env, "nets.log")):
                    for i, key in enumerate(("train", "train_cpu", "infer", "infer_cpu")):
                        res[m[1]][tool][key].append(float(m[i + 2]))
    return res


def kmeans(reps, iters, passive=True):
    out = os.path.join(TMP, "kmeans.json")
    sh([sys.executable, os.path.join(HERE, "kmeans_vs_faiss.py"), "gen"], PY_ENV, "kmeans.log")
    cmd = [sys.executable, os.path.join(HERE, "kmeans_vs_faiss.py"), "run", "--reps", str(reps), "--iters", str(iters),
           "--json", out]
    sh(cmd + (["--passive"] if passive else []), PY_ENV, "kmeans.log")
    return json.load(open(out))


def kmeans_memory(n=1_000_000, d=512, k=1000, iters=3):
    """Peak RSS of kmeans_bench --synthetic (features generated in the process) against the feature bytes."""
    out = sh(["/usr/bin/time", "-f", "MAXRSS_KB %M", os.path.join(EX, "kmeans_bench"), "--synthetic",
              str(n), str(d), str(k), str(iters)], RUST_ENV, "kmem.log")
    # /usr/bin/time writes to stderr: rerun-free parse from the log.
    log = open(os.path.join(LOGS, "kmem.log")).read()
    rss_kb = int(re.findall(r"MAXRSS_KB (\d+)", log)[-1])
    r = json.loads(out.strip().splitlines()[-1])
    return {"n": n, "d": d, "k": k, "iters": r["iters"], "s_per_iter": r["s_per_iter"], "max_rss_kb": rss_kb,
            "feature_bytes": n * d * 4, "ratio": rss_kb * 1024 / (n * d * 4)}


def probe(reps, max_epochs, sets):
    out = os.path.join(TMP, "probe.json")
    sh([sys.executable, os.path.join(HERE, "probe_vs_sklearn.py"), "gen"], PY_ENV, "probe.log")
    sh([sys.executable, os.path.join(HERE, "probe_vs_sklearn.py"), "run", "--reps", str(reps), "--max-epochs",
        str(max_epochs), "--passive", "--json", out] + (["--only", *sets] if sets else []), PY_ENV, "probe.log")
    return json.load(open(out))


def status(reps):
    out = sh(["bash", os.path.join(ROOT, "benches", "dvc_status_1000.sh"), str(reps), CFRUN], PY_ENV, "status.log")
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    r = dict(kv.split("=", 1) for kv in line[len("RESULT "):].split(" ") if "=" in kv)
    r["setup"] = [l for l in out.splitlines() if l.startswith("setup:")]
    r["cfrun_runs"] = [l for l in out.splitlines() if l.startswith("cfrun status s:")]
    r["dvc_runs"] = [l for l in out.splitlines() if l.startswith("dvc status s:")]
    return r


# ---------------------------------------------------------------- history

# One row per measured figure per run; the file only grows (rows are appended, never rewritten).
HISTORY_FIELDS = ["timestamp_utc", "commit", "section", "case", "metric", "cfrun", "peer", "peer_value", "ratio",
                  "load_before"]


def commit_id():
    """Short HEAD hash, with -dirty when tracked files other than the bench outputs differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!benches/history.csv", ":!benches/RESULTS.md"], capture_output=True, text=True,
                           cwd=ROOT).stdout
    return head.strip() + ("-dirty" if dirty.strip() else "")


def figures(name, res):
    """(case, metric, cfrun value, peer, peer value) of every figure a section measured (medians)."""
    med = statistics.median
    out = []
    if name == "nets":
        for p in NETS:
            o, t = res[p]["ours"], res[p]["torch"]
            for key, metric in (("train", "train_per_s"), ("infer", "infer_per_s"),
                                ("train_cpu", "train_per_2cpu_s"), ("infer_cpu", "infer_per_2cpu_s")):
                if o.get(key) and t.get(key):
                    out.append((p, metric, med(o[key]), "torch", med(t[key])))
    elif name == "kmeans":
        for case in dict.fromkeys(r["case"] for r in res):
            by = {r["tool"]: r for r in res if r["case"] == case}
            for metric in ("s_per_iter", "cpu_s_per_iter", "final_inertia"):
                for peer in ("faiss", "sklearn"):
                    out.append((case, metric, by["ours"][metric], peer, by[peer][metric]))
    elif name == "kmem":
        case = f"{res['n']}x{res['d']} K={res['k']}"
        out += [(case, "peak_rss_over_features", res["ratio"], "", None),
                (case, "s_per_iter", res["s_per_iter"], "", None)]
    elif name == "probe":
        for r in res:
            cf, sk = r["cfrun"], r["sklearn"]
            for key, t in r["targets"].items():
                split = key.split("_")[0]
                out += [(r["set"], f"seconds_to_{split}_target", t["cfrun"]["seconds"], "sklearn",
                         t["sklearn"]["seconds"]),
                        (r["set"], f"cpu_seconds_to_{split}_target", t["cfrun"]["cpu_seconds"], "sklearn",
                         t["sklearn"]["cpu_seconds"])]
                if "cfrun_lbfgs" in t:
                    out += [(r["set"], f"lbfgs_seconds_to_{split}_target", t["cfrun_lbfgs"]["seconds"], "sklearn",
                             t["sklearn"]["seconds"]),
                            (r["set"], f"lbfgs_cpu_seconds_to_{split}_target", t["cfrun_lbfgs"]["cpu_seconds"],
                             "sklearn", t["sklearn"]["cpu_seconds"])]
            out += [(r["set"], "converged_test_top1", cf["converged"]["test_top1"], "sklearn",
                     sk["converged"]["test_top1"]),
                    (r["set"], "default_test_top1", cf["default"]["test_top1"], "", None)]
    elif name == "status":
        out += [("1000 instances", "wall_s", float(res["cfrun_status_s"]), "dvc", float(res["dvc_status_s"])),
                ("1000 instances", "cpu_s", float(res["cfrun_status_cpu_s"]), "dvc", float(res["dvc_status_cpu_s"]))]
    return out


def history_rows(name, res, when, commit, load_before):
    rows = []
    for case, metric, ours, peer, theirs in figures(name, res):
        ratio = ours / theirs if ours and theirs else None  # 0: below a clock's resolution
        rows.append({"timestamp_utc": when, "commit": commit, "section": name, "case": case, "metric": metric,
                     "cfrun": f"{ours:.6g}", "peer": peer, "peer_value": "" if theirs is None else f"{theirs:.6g}",
                     "ratio": "" if ratio is None else f"{ratio:.4f}", "load_before": load_before})
    return rows


def append_history(path, rows):
    """Appends rows to the CSV at path, writing the header first when the file is new or empty."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != HISTORY_FIELDS:
            raise SystemExit(f"{path}: header {header} is not {HISTORY_FIELDS}; not appending to it")
    with open(path, "a", newline="") as f:
        out = csv.DictWriter(f, HISTORY_FIELDS)
        if new:
            out.writeheader()
        out.writerows(rows)


# ---------------------------------------------------------------- report

def yes(ok):
    return "**met**" if ok else "**not met**"


def pct(x):
    return f"{100 * x:.2f}%"


def times(ratio):
    """A ratio with two significant digits at least (0.003x, not 0.00x)."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def cpu_s(x):
    return f"{x:.2f} s" if x > 0 else "< 0.01 s"


def same_machine(a, b):
    """Whether two `machine()` records describe the same kind of machine (a kernel update is not a
    different machine)."""
    return all(a.get(k) == b.get(k) for k in ("cpu", "cores", "simd"))


def when_measured(section):
    """A section heading's "when, at which commit, under what load", and the machine when it is not
    the header's; sections saved before the commit or the machine was recorded show none
    (benches/history.csv has the commit)."""
    at = f" at {section['commit']}" if section.get("commit") else ""
    on = f", on {section['machine']['cpu']} ({section['machine']['simd']})" if section.get("elsewhere") else ""
    return f"{section.get('date', '')}{at}{on}, load {section['load']}"


def probe_report(w, goals, section, args):
    """The probe tables: converged accuracy at one objective, then time to a common accuracy."""
    rows = section["res"]
    w(f"## Linear probe vs scikit-learn LogisticRegression, same objective ({args.probe_reps} alternating timed "
      f"runs; {when_measured(section)})")
    w("")
    if rows and "tool" in rows[0]:
        w("Measured by an older version of this bench (scikit-learn at C=1, unconverged); rerun "
          "`benches/run_all.sh --only probe`.")
        w("")
        return
    lbfgs = all("cfrun_lbfgs" in r for r in rows)
    w("Same features and splits; all standardise on the train split and minimise the same function, "
      "(1/n) sum CE + (wd/2) ||W||^2 (bias not penalised): cfrun's `eval::linear_probe` with its default solver "
      "(momentum SGD with weight decay wd = 1e-4 on the mean batch loss, cosine schedule)"
      + (" and with `solver = \"lbfgs\"` (full-batch L-BFGS, f32 products)" if lbfgs else "")
      + ", scikit-learn's LogisticRegression(lbfgs) at C = 1 / (wd n). scikit-learn"
      + (" and cfrun's L-BFGS run" if lbfgs else " runs") + " to convergence (the gradient test "
      "max |g| <= tol, tol = 1e-4; fewer iterations than the cap checked). cfrun's SGD has no such test: it doubles "
      "its epochs (10, 20, 40, ...) until train and test top-1 move by at most 0.1 point (or 2 rows), else stops "
      f"at {args.probe_max_epochs} epochs and the table says *not settled*. Top-1 on the held-out split "
      "(train split in brackets); times are one run each, scaling and scoring both splits included.")
    w("")
    w("| data | C = 1/(wd n) | sklearn top-1 | sklearn iterations, time | cfrun SGD top-1 | cfrun SGD epochs, time | "
      "cfrun SGD reaches sklearn's converged top-1? | cfrun SGD at its default 10 epochs |"
      + (" cfrun L-BFGS top-1 | cfrun L-BFGS iterations, time |" if lbfgs else ""))
    w("|---|---|---|---|---|---|---|---|" + ("---|---|" if lbfgs else ""))
    for r in rows:
        cf, sk = r["cfrun"], r["sklearn"]
        cc, sc, cd = cf["converged"], sk["converged"], cf["default"]
        gap = 100 * (cc["test_top1"] - sc["test_top1"])
        reach = "yes" + (f" ({gap:+.2f} points)" if gap else "") if gap >= -0.1 else f"**no: {-gap:.2f} points below**"
        settled = "" if cc["settled"] else ", **not settled**"
        desc = f"{r['set']}: {r['n_train']:,} / {r['n_test']:,} x {r['d']}, {r['classes']} classes"
        lb = ""
        if lbfgs:
            lc = r["cfrun_lbfgs"]["converged"]
            lb = (f" {pct(lc['test_top1'])} ({pct(lc['train_top1'])}) | {lc['iterations']}, {lc['seconds']:.2f} s |")
        w(f"| {desc} | {r['C']:.4g} | {pct(sc['test_top1'])} ({pct(sc['train_top1'])}) | {sc['n_iter']}, "
          f"{sc['seconds']:.2f} s | {pct(cc['test_top1'])} ({pct(cc['train_top1'])}) | {cc['epochs']}{settled}, "
          f"{cc['seconds']:.2f} s | {reach} | {pct(cd['test_top1'])} ({pct(cd['train_top1'])}), {cd['seconds']:.2f} s |"
          + lb)
    w("")
    w("Time to equal accuracy, on each split: the target is the lowest converged top-1 of the table above minus 0.1 point. "
      "Held-out top-1 is what a probe reports; train top-1 tracks how far each optimiser has got on the shared "
      "objective (near the optimum the held-out top-1 can fall while it rises, so a held-out target can be met "
      "by the first iteration). Each tool's budget is the smallest it was tried at from which every larger budget "
      "tried also reaches the target (scikit-learn: every lbfgs iteration, from one traced fit, the timed fit "
      "stopping at max_iter; cfrun's L-BFGS the same way; cfrun's SGD: the doubling series, then the 1-8, 10, 12, "
      "14, 16, 20, ... epoch budgets, about 1.2x apart, between it and the series' first hit). Then plain runs at "
      "those budgets, alternating, median wall and process CPU seconds (user + system, both threads; 10 ms "
      "resolution). The goal is judged on cfrun's faster solver for that target; both are shown.")
    w("")

    def ratios(ct, st):
        # /proc's CPU time counts 10 ms ticks: a run shorter than that reads 0.
        cpu = times(ct["cpu_seconds"] / st["cpu_seconds"]) if min(ct["cpu_seconds"], st["cpu_seconds"]) > 0 else "n/a"
        return ct["seconds"] / st["seconds"], cpu

    w("| data | split | target top-1 | cfrun SGD epochs | SGD wall | SGD CPU |"
      + (" cfrun L-BFGS iterations | L-BFGS wall | L-BFGS CPU |" if lbfgs else "")
      + " sklearn max_iter | sklearn wall | sklearn CPU | SGD / sklearn wall (CPU) |"
      + (" L-BFGS / sklearn wall (CPU) |" if lbfgs else "") + " goal: less wall time |")
    w("|---|---|---|---|---|---|" + ("---|---|---|" if lbfgs else "") + "---|---|---|---|" + ("---|" if lbfgs else "")
      + "---|")
    for r in rows:
        for key, t in r["targets"].items():
            ct, st = t["cfrun"], t["sklearn"]
            split = key.split("_")[0]
            ratio, cpu_ratio = ratios(ct, st)
            best, measured = ratio, f"SGD {times(ratio)} wall, {cpu_ratio} CPU"
            lb_cols = lb_ratio = ""
            if lbfgs:
                lt = t["cfrun_lbfgs"]
                lr, lcpu = ratios(lt, st)
                best = min(best, lr)
                measured += f"; L-BFGS {times(lr)} wall, {lcpu} CPU"
                lb_cols = f" {lt['iters']} | {lt['seconds']:.3f} s | {cpu_s(lt['cpu_seconds'])} |"
                lb_ratio = f" {times(lr)} ({lcpu}) |"
            ok = best < 1.0
            goals.append((f"probe {r['set']}: time to {pct(t['target'])} {split} top-1 (same objective) below "
                          f"scikit-learn's", measured, ok))
            w(f"| {r['set']} | {split} | {pct(t['target'])} | {ct['epochs']} | {ct['seconds']:.3f} s | "
              f"{cpu_s(ct['cpu_seconds'])} |{lb_cols} {st['iters']} | {st['seconds']:.3f} s | "
              f"{cpu_s(st['cpu_seconds'])} | {times(ratio)} ({cpu_ratio}) |{lb_ratio} {yes(ok)} |")
    w("")
    w("Runs (wall s): " + "; ".join(
        f"{r['set']} {key.split('_')[0]} cfrun SGD {[round(x, 3) for x in t['cfrun']['runs']]}, "
        + (f"cfrun L-BFGS {[round(x, 3) for x in t['cfrun_lbfgs']['runs']]}, " if "cfrun_lbfgs" in t else "")
        + f"sklearn {[round(x, 3) for x in t['sklearn']['runs']]}" for r in rows for key, t in r["targets"].items())
      + ".")
    w("")


def report(meta, sections, run_args):
    L = []
    w = L.append
    m = meta["machine"]
    # A section kept from an earlier run may come from another machine: its heading says which.
    sections = {k: {**v, "elsewhere": "machine" in v and not same_machine(v["machine"], m)} for k, v in sections.items()}
    w("# Benchmark results")
    w("")
    dates = sorted((v.get("date", meta["date"]) for v in sections.values()), key=lambda d: d.replace("~", ""))
    w(f"Written by `benches/run_all.sh` ({' '.join(meta['argv'])}) on {meta['date']}; measuring took "
      f"{meta['minutes']:.0f} min" + (f"; sections measured between {dates[0]} and {dates[-1]}" if dates and dates[0] != dates[-1]
                                      else "") + ". Each section's heading gives its time and load average.")
    w("")
    w(f"- Machine: {m['cpu']}, {m['cores']} logical cores ({m['simd']}), {m['mem_gib']:.1f} GiB memory, "
      f"Linux {m['kernel']}. Every tool ran on 2 threads.")
    w(f"- Load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}. "
      f"Busiest processes at the start: {', '.join(meta['busy']) or 'none'}.")
    # A lagging 1-minute load average (from whatever ended just before) is not load; another busy
    # process at the start, or more than our 2 threads' worth of load, is.
    loads_seen = [float(x) for x in f"{meta['load_before']} {meta['load_after']}".split()]
    if meta["busy"] or max(loads_seen) > 2.5:
        what = (f"other processes were busy at the start ({', '.join(meta['busy'])})" if meta["busy"] else
                f"the load average reached {max(loads_seen):.2f}, above the 2 threads the tools use")
        w(f"- **Not an idle machine**: {what}, so absolute timings may be pessimistic for whichever tool was "
          "unlucky. Runs alternate between cfrun and the peer, and the tables give medians; ratios are the "
          "meaningful figures, the CPU-time ones most of all.")
    else:
        w("- **Idle machine**: no other process was busy when measuring started and the load average stayed "
          "within the 2 threads the tools themselves use.")
    v = meta["versions"]
    w(f"- Versions: cfrun as each section's heading says ({v['rustc']}); numpy {v['numpy']}, scikit-learn {v['sklearn']}, "
      f"faiss-cpu {v['faiss']}, torch {v['torch']}" + (f", dvc {sections['status']['res']['dvc_version']}"
                                                        if "status" in sections else "") + ".")
    w("")
    goals = []

    def cfg(name):
        """The settings a section was measured with (saved with it), else this invocation's."""
        return argparse.Namespace(**{**vars(run_args), **sections[name].get("args", {})})

    if "nets" in sections:
        r = sections["nets"]["res"]
        args = cfg("nets")
        w(f"## ResNet and R(2+1)D presets vs PyTorch CPU ({args.net_reps} alternating runs each; "
          f"{when_measured(sections['nets'])})")
        w("")
        w(f"Train = forward + backward + SGD step (momentum 0.9, weight decay 5e-4); inference = eval-mode forward. "
          f"ResNets: batch 128 of 1x28x28, {args.net_steps} steps (resnet_gpu a fifth of them); R(2+1)D: batch 64 "
          f"of 1x8x24x24 clips, {max(1, args.net_steps // 2)} steps. Images or clips per second, median of runs "
          f"(higher is better). The goal (issue 16) is {NET_GOAL}x PyTorch in wall time and in CPU time, training "
          f"and inference.")
        w("")
        w("| network | cfrun train | PyTorch train | ratio | cfrun inference | PyTorch inference | ratio |")
        w("|---|---|---|---|---|---|---|")
        med = statistics.median
        ratios = {}
        for p in NETS:
            o, t = r[p]["ours"], r[p]["torch"]
            if not o["train"] or not t["train"]:
                w(f"| {p} | missing | | | | | |")
                continue
            ot, tt, oi, ti = med(o["train"]), med(t["train"]), med(o["infer"]), med(t["infer"])
            ratios[p] = [ot / tt, oi / ti]
            w(f"| {p} | {ot:.1f} | {tt:.1f} | {ot / tt:.2f}x | {oi:.1f} | {ti:.1f} | {oi / ti:.2f}x |")
        w("")
        w("The same runs per 2 CPU-seconds of the process (user + system, all threads; PyTorch runs with "
          "OMP_WAIT_POLICY=PASSIVE so idle threads sleep): less sensitive than wall time to other load, since a "
          "process waiting for a core uses no CPU time.")
        w("")
        w("| network | cfrun train | PyTorch train | ratio | cfrun inference | PyTorch inference | ratio |")
        w("|---|---|---|---|---|---|---|")
        for p in NETS:
            o, t = r[p]["ours"], r[p]["torch"]
            if not o.get("train_cpu") or not t.get("train_cpu"):
                continue
            ot, tt, oi, ti = med(o["train_cpu"]), med(t["train_cpu"]), med(o["infer_cpu"]), med(t["infer_cpu"])
            if p in ratios:
                ratios[p] += [ot / tt, oi / ti]
            w(f"| {p} | {ot:.1f} | {tt:.1f} | {ot / tt:.2f}x | {oi:.1f} | {ti:.1f} | {oi / ti:.2f}x |")
        w("")
        for p, rs in ratios.items():
            ok = len(rs) == 4 and min(rs) >= NET_GOAL
            shown = ", ".join(f"{k} {v:.2f}x" for k, v in zip(("train", "inference", "train CPU", "inference CPU"), rs))
            goals.append((f"{p} train and inference >= {NET_GOAL}x PyTorch CPU (wall and CPU time)", shown, ok))
        w("Runs (per second, train / inference): " + "; ".join(
            f"{p} cfrun {[round(x) for x in r[p]['ours']['train']]} / {[round(x) for x in r[p]['ours']['infer']]}, "
            f"PyTorch {[round(x) for x in r[p]['torch']['train']]} / {[round(x) for x in r[p]['torch']['infer']]}"
            for p in NETS) + ".")
        w("")

    if "kmeans" in sections:
        rows = sections["kmeans"]["res"]
        args = cfg("kmeans")
        w(f"## k-means vs faiss-cpu and scikit-learn ({args.kmeans_reps} alternating runs; "
          f"{when_measured(sections['kmeans'])})")
        w("")
        w(f"f32, 2 threads, {args.kmeans_iters} Lloyd iterations from the same k-means++ initial centroids, all points used (faiss "
          "`max_points_per_centroid` = n). Seconds per iteration (median; lower is better); final inertia = sum of "
          "squared distances of every row to its nearest final centroid.")
        w("")
        w("| n x d, K | cfrun s/iter | faiss s/iter | sklearn s/iter | cfrun / faiss time | cfrun inertia | "
          "faiss inertia | sklearn inertia | cfrun vs faiss inertia | goal: <= 0.8x faiss, below sklearn, within 0.5% |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for case in dict.fromkeys(r["case"] for r in rows):
            by = {r["tool"]: r for r in rows if r["case"] == case}
            o, f, s = by["ours"], by["faiss"], by["sklearn"]
            ratio = o["s_per_iter"] / f["s_per_iter"]
            diff = (o["final_inertia"] - f["final_inertia"]) / f["final_inertia"]
            ok = ratio <= 0.8 and o["s_per_iter"] < s["s_per_iter"] and abs(diff) <= 0.005
            size = f"{o['n']:,} x {o['d']}, K={o['k']}"
            goals.append((f"k-means {size}: time/iter <= 0.8x faiss and below scikit-learn, inertia within 0.5%",
                          f"{ratio:.2f}x faiss, {o['s_per_iter'] / s['s_per_iter']:.2f}x sklearn, "
                          f"{100 * diff:+.4f}%", ok))
            w(f"| {size} | {o['s_per_iter']:.4f} | {f['s_per_iter']:.4f} | {s['s_per_iter']:.4f} | {ratio:.2f}x | "
              f"{o['final_inertia']:.6e} | {f['final_inertia']:.6e} | {s['final_inertia']:.6e} | {100 * diff:+.4f}% | "
              f"{yes(ok)} |")
        w("")
        w("CPU seconds per iteration (both threads; OpenMP threads sleep when idle, so this counts work even on a "
          "busy machine): " + "; ".join(
              f"{case} " + ", ".join(f"{r['tool']} {r['cpu_s_per_iter']:.4f}" for r in rows if r["case"] == case)
              for case in dict.fromkeys(r["case"] for r in rows)) + ".")
        w("")

    if "kmem" in sections:
        k = sections["kmem"]["res"]
        ok = k["ratio"] < 1.5
        goals.append((f"k-means peak memory on {k['n']:,} x {k['d']} f32 < 1.5x the features", f"{k['ratio']:.2f}x", ok))
        w(f"## k-means peak memory ({when_measured(sections['kmem'])})")
        w("")
        w(f"`kmeans_bench --synthetic {k['n']} {k['d']} {k['k']} {k['iters']}` (features generated inside the process, "
          f"random init, K={k['k']}, {k['iters']} iterations, {k['s_per_iter']:.1f} s/iter): peak RSS "
          f"{k['max_rss_kb'] / 2**20:.2f} GiB against {k['feature_bytes'] / 2**30:.2f} GiB of features = "
          f"**{k['ratio']:.2f}x** (goal < 1.5x: {yes(ok)}).")
        w("")

    if "probe" in sections:
        probe_report(w, goals, sections["probe"], cfg("probe"))

    if "status" in sections:
        s = sections["status"]["res"]
        c, d = float(s["cfrun_status_s"]), float(s["dvc_status_s"])
        ok = c < 0.1 and d / c >= 10
        goals.append(("`cfrun status` on 1,000 cached instances < 100 ms and >= 10x faster than `dvc status`",
                      f"{1000 * c:.0f} ms, {d / c:.0f}x", ok))
        w(f"## `cfrun status` vs `dvc status`, 1,000 cached instances ({s['reps']} alternating runs; "
          f"{when_measured(sections['status'])})")
        w("")
        w("`benches/dvc_status_1000.sh`: cfrun's experiment is a `dataset` stage plus a 999-seed sweep of "
          "`label_noise` (1,000 instances); the DVC pipeline is a `shapes` stage plus a 999-item `foreach` of stages "
          "that each depend on shapes.txt and write one file (1,000 stages), cached once by running the stage "
          "commands and `dvc commit` (what `dvc repro` leaves, without its hour of per-stage overhead at this size). "
          "Whole command, median; the goal is judged on wall time.")
        w("")
        cc, dc = float(s["cfrun_status_cpu_s"]), float(s["dvc_status_cpu_s"])
        w("| | cfrun status | dvc status | dvc / cfrun | goal: < 100 ms, >= 10x |")
        w("|---|---|---|---|---|")
        w(f"| wall time | {1000 * c:.0f} ms | {1000 * d:.0f} ms | {d / c:.0f}x | {yes(ok)} |")
        w(f"| CPU time (user + system) | {1000 * cc:.0f} ms | {1000 * dc:.0f} ms | {dc / max(cc, 1e-3):.0f}x | |")
        w("")
        w(f"cfrun's peak RSS: {int(s['cfrun_max_rss_kb']) / 1024:.0f} MiB. CPU time counts the work whatever else "
          "runs on the machine; wall time on a loaded machine includes waiting for a core.")
        w("")
        w("Runs: " + " ".join(s["cfrun_runs"] + s["dvc_runs"]).replace("  ", " ") +
          (". One-time setup (this run or an earlier one): " + "; ".join(x[len("setup: "):] for x in s["setup"])
           if s["setup"] else "") + ".")
        w("")

    w("## Goals")
    w("")
    w("| goal | measured | |")
    w("|---|---|---|")
    for g, val, ok in goals:
        w(f"| {g} | {val} | {yes(ok)} |")
    w("")
    w("## Notes")
    w("")
    w("- Goals judged here are those of issues 4 and 16. The probe is compared at one objective: scikit-learn at "
      "C = 1 / (weight_decay n), run to convergence, and the speed figure is the time to a common accuracy "
      "(benches/python/probe_vs_sklearn.py states the mapping and the rules). Converged test top-1 can be lower "
      "than an early-stopped probe's: the weak L2 term lets the optimum fit the train split more closely.")
    w("- k-means: faiss always runs every iteration; scikit-learn (tol=0) and cfrun would stop early if assignments "
      "stopped changing (none did here: see iters in the logs), so time is compared per iteration.")
    w("- resnet_gpu is the GPU preset (ResNet-18 widths) run on the CPU here, a fifth of the other ResNets' "
      "steps per run (at least 2), so its figures are the noisiest; on a GPU cfrun uses candle's CUDA kernels instead (see docs/). "
      "The default of 30 steps per run (10 before 2026-11-30) was raised because 10-step runs of the same binary "
      "spread by up to 25 %.")
    w("- PyTorch runs with OMP_WAIT_POLICY=PASSIVE (its idle OpenMP threads sleep). With its default policy they "
      "spin, which on a shared machine made it 2-4x slower in wall time (see benches/README.md) and would flatter "
      "cfrun; on an idle machine the policy matters little. faiss and scikit-learn get the same setting in the "
      "k-means and probe comparisons.")
    w("- Wall-time ratios on a loaded machine favour whichever tool happened to run in a quieter moment; the "
      "CPU-time columns are the cross-check.")
    w("")
    w("Reproduce: `benches/run_all.sh` (add `--quick` for one short pass); raw logs go to "
      f"`$CFRUN_BENCH_TMP/logs` (default `/tmp/cfrun-bench/logs`).")
    return "\n".join(L) + "\n"


def destinations(out, quick, reuse, saved_exists):
    """(report, saved-sections file, whether this run publishes) for the --out given (None if not).

    Only a full run that writes benches/RESULTS.md replaces the committed sections.json and
    run_meta.json. A smoke test's figures go to RESULTS.quick.md, a partial run with nothing saved
    to keep goes to RESULTS.partial.md, and any other report keeps its sections beside it (they once
    went over the committed ones, and --report-only then published a --quick pass as the record).
    """
    benches = os.path.join(ROOT, "benches")
    default_out = os.path.join(benches, "RESULTS.md")
    if out is None:
        out = os.path.join(benches, "RESULTS.quick.md") if quick else default_out
    if reuse and not saved_exists and os.path.realpath(out) == os.path.realpath(default_out):
        out = os.path.join(benches, "RESULTS.partial.md")
    publishes = os.path.realpath(out) == os.path.realpath(default_out)
    save_to = os.path.join(benches, "sections.json") if publishes else os.path.splitext(out)[0] + ".sections.json"
    return out, save_to, publishes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="these sections (nets kmeans kmem probe status); the others' last "
                    "results are kept in the report unless --fresh is given")
    ap.add_argument("--quick", action="store_true", help="one short pass of everything (smoke test)")
    ap.add_argument("--net-reps", type=int, default=3)
    ap.add_argument("--net-steps", type=int, default=30)
    ap.add_argument("--kmeans-reps", type=int, default=3)
    ap.add_argument("--kmeans-iters", type=int, default=10)
    ap.add_argument("--probe-reps", type=int, default=2)
    ap.add_argument("--probe-max-epochs", type=int, default=320, help="cap on cfrun's doubling epoch series")
    ap.add_argument("--probe-sets", nargs="*", help="probe data sets (default all: digits64 feat512 pix784)")
    ap.add_argument("--status-reps", type=int, default=3)
    ap.add_argument("--out", help="the report (default benches/RESULTS.md; with --quick benches/RESULTS.quick.md)")
    ap.add_argument("--history", help="CSV that gets one row per measured figure (default: benches/history.csv; "
                    "--quick runs append only when this is given, so short passes do not enter the record)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from the saved results of the last run, measuring nothing")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the other sections' results from the previous run (benches/sections.json); "
                    "the default with --only")
    ap.add_argument("--fresh", action="store_true",
                    help="with --only: report only the sections measured now (the other sections' saved results are dropped)")
    args = ap.parse_args()
    # A partial run used to drop every other section from the saved results unless --reuse was
    # given, and one forgotten flag lost an hour of measurements.
    if args.only is None:
        args.only = ["nets", "kmeans", "kmem", "probe", "status"]
    elif not args.fresh:
        args.reuse = True
    meta_file = os.path.join(ROOT, "benches", "run_meta.json")
    if args.report_only:
        if not os.path.exists(meta_file):
            raise SystemExit(f"--report-only: no {meta_file} (the last measuring run's date, machine and load); "
                             "run a measurement first")
        args.only, args.reuse = [], True
    if args.quick:
        args.net_reps, args.net_steps, args.kmeans_reps, args.kmeans_iters, args.probe_reps, args.status_reps = \
            1, 3, 1, 3, 1, 1
        args.probe_max_epochs = 40
    if args.history is None and not args.quick:
        args.history = os.path.join(ROOT, "benches", "history.csv")
    elif args.history is None and args.only:
        print("--quick: not appending to benches/history.csv (pass --history FILE to keep these figures)")
    os.makedirs(LOGS, exist_ok=True)
    t0 = time.time()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "argv": ["run_all"] + sys.argv[1:], "machine": machine(), "load_before": load_avg(),
            "busy": busy_others(), "versions": versions()}
    loads = [float(meta["load_before"].split()[0])]
    sections = {}
    commit = commit_id()
    # Kept beside RESULTS.md and committed with it, so a partial rerun on another machine still
    # reports the sections it did not measure.
    saved = os.path.join(ROOT, "benches", "sections.json")
    args.out, save_to, publishes = destinations(args.out, args.quick, args.reuse, os.path.exists(saved))
    if args.out.endswith("RESULTS.partial.md"):
        # Nothing saved to keep: do not overwrite the full report with a partial one.
        print(f"no saved sections in {saved}: writing {args.out}, not RESULTS.md", flush=True)
    if args.reuse and os.path.exists(saved):
        sections = {k: v for k, v in json.load(open(saved)).items() if k not in args.only}
        # Sections saved before each recorded its machine were measured on the machine the last
        # run's header names; say so before this run's header replaces it.
        if os.path.exists(meta_file):
            reported_on = json.load(open(meta_file))["machine"]
            for v in sections.values():
                v.setdefault("machine", reported_on)
        print("reusing earlier sections:", ", ".join(f"{k} ({v.get('date', '?')})" for k, v in sections.items()))
    for name in args.only:
        before = load_avg()
        start = datetime.datetime.now(datetime.timezone.utc)
        when = start.strftime("%Y-%m-%d %H:%M UTC")
        print(f"\n=== {name} (load {before}) ===", flush=True)
        if name == "nets":
            res = nets(args.net_reps, args.net_steps)
        elif name == "kmeans":
            res = kmeans(args.kmeans_reps, args.kmeans_iters)
        elif name == "kmem":
            res = kmeans_memory()
        elif name == "probe":
            res = probe(args.probe_reps, args.probe_max_epochs, args.probe_sets)
        elif name == "status":
            res = status(args.status_reps)
        else:
            raise SystemExit(f"unknown section {name}")
        after = load_avg()
        loads += [float(after.split()[0])]
        sections[name] = {"res": res, "load": f"{before.split()[0]} before, {after.split()[0]} after", "date": when,
                          "commit": commit, "machine": meta["machine"],
                          "args": {k: v for k, v in vars(args).items() if k not in ("only", "out", "reuse", "fresh", "history")}}
        with open(save_to, "w") as f:
            json.dump(sections, f, indent=1)
        if args.history:  # right away, so a later section's failure does not lose this one's rows
            stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
            rows = history_rows(name, res, stamp, commit, before.split()[0])
            append_history(args.history, rows)
            print(f"appended {len(rows)} rows to {args.history}", flush=True)
    order = ["nets", "kmeans", "kmem", "probe", "status"]
    sections = dict(sorted(sections.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    meta["load_after"] = load_avg()
    meta["minutes"] = (time.time() - t0) / 60
    # Our own runs use 2 threads: load beyond that (or any before we start) is someone else's.
    meta["loaded"] = bool(meta["busy"]) or max(loads) > 2.5
    # Committed beside sections.json: --report-only on another machine must describe the run that
    # measured, not the machine that rewrites the report (it used to read /tmp and fall back to the
    # machine at hand, its load and its missing Python packages).
    if args.report_only:
        meta = json.load(open(meta_file))
    elif publishes:
        # Only beside the report it describes: a run written elsewhere (--out, RESULTS.partial.md)
        # leaves the committed pair as it was.
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
    text = report(meta, sections, args)
    with open(args.out, "w") as f:
        f.write(text)
    print("\n" + text)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
