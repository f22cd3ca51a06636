#!/usr/bin/env python3
"""Writes the README of a GPU session's results from what scripts/gpu-bench.sh left in its $OUT.

Usage: gpu-report.py OUT_DIR > docs/gpu-<date>/README.md

Reads summary.txt, env.txt, check-device.json, cfrun.tsv, torch.txt, profile-timers.txt,
projection.md and agreement.md where they exist, and writes the tables issue 18 asks for: cfrun's
img/s per configuration with each A/B as a ratio, PyTorch's img/s on the same card with the
cfrun/PyTorch ratios, what those rates are in arithmetic against the card's peak, where a step's
time goes, the projected (and, where run, measured) time of noise_sweep_full, and top-1 agreement
with the CPU. It computes ratios only from numbers both
sides measured; a missing file or run is said, not filled in. Exit 2 when OUT_DIR has no
cfrun.tsv (nothing was measured).
"""

import csv
import json
import os
import re
import statistics
import sys


def read(out, name):
    path = os.path.join(out, name)
    return open(path, errors="replace").read() if os.path.exists(path) else None


def cfrun_runs(out):
    text = read(out, "cfrun.tsv")
    if text is None:
        return None
    return {r["label"]: r for r in csv.DictReader(text.splitlines(), delimiter="\t")}


def rate(run, column="steady_img_s"):
    """The run's img/s, or None when it failed or measured nothing."""
    if run is None or run.get("rc") != "0":
        return None
    v = float(run.get(column) or 0)
    return v if v > 0 else None


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def torch_runs(text):
    """(mode, train img/s) per block of torch_resnet.py's output."""
    runs, mode = [], None
    for line in (text or "").splitlines():
        # "torch VERSION, WHERE, batch N, SHAPE, MODE" (MODE: precision, eager/compiled, on a GPU its TF32 settings)
        m = re.match(r"torch \S+, .*?, batch \d+, [^,]+, (.*)$", line)
        if m:
            mode = m.group(1)
            continue
        m = re.match(r"resnet_\w+\s+train\s+([0-9.]+) img/s", line)
        if m and mode:
            runs.append((mode, float(m.group(1))))
    return runs


def smi_line(env):
    """nvidia-smi's query line in env.txt: name, driver, memory; and since 2026-12-04 (fourth
    session) the compute mode, which decides whether jobs as processes (a CUDA context each) may
    share the card at all."""
    return next((l for l in env.splitlines() if l.count(",") in (2, 3) and "MiB" in l), None)


def section_machine(out, lines):
    env = read(out, "env.txt") or ""
    gpu = next((l for l in env.splitlines() if l.startswith("GPU ")), None)
    smi = smi_line(env)
    binary = next((l.split(": ", 1)[1] for l in env.splitlines() if l.startswith("binary: ")), "?")
    lines += ["## Machine", "", f"- GPU: {gpu or 'not reported (env.txt)'}"]
    if smi:
        fields = "name, driver, memory" + (", compute mode" if smi.count(",") == 3 else "")
        lines.append(f"- {fields}: {smi}")
    lines.append(f"- cfrun binary: `{os.path.basename(binary)}`")
    summary = read(out, "summary.txt") or ""
    fallback = [l for l in summary.splitlines() if "every run below uses" in l]
    for line in fallback:
        lines.append(f"- {line.split('] ', 1)[1]}")
    check_lines(out, "check-device", "`check-device --device cuda` (strict f32)", lines)
    # STEPS=ab's switches never run on a card before, each checked alone (check-device-NAME.json).
    for name, setting in NEW_SWITCHES.items():
        if os.path.exists(os.path.join(out, f"check-device-{name}.json")):
            check_lines(out, f"check-device-{name}", f"`{setting} check-device --device cuda` (strict f32)", lines)
    lines.append("")


# noise_sweep_full's training images, all epochs of its 84 train instances (docs/gpu-2026-12-04/
# projection.md), for a STEPS=ab session, which writes no projection.md of its own.
FULL_STUDY_IMAGES = 86.4e6

# gpu-bench.sh's try_switch: the name of each check-device-NAME.json and the switch it ran with.
NEW_SWITCHES = {"planned": "CFRUN_CONV_CUDNN=planned", "bnfused": "CFRUN_BN_CUDA=fused"}


def check_lines(out, name, title, lines):
    """One check-device JSON (NAME.json) as a list item per check."""
    check = read(out, f"{name}.json")
    try:
        v = json.loads(check) if check else None
    except json.JSONDecodeError:
        v = None
    if v:
        bad = [c for c in v["checks"] if not c["ok"]]
        lines.append(f"- {title}: {'all checks passed' if v['ok'] else f'{len(bad)} checks FAILED'}")
        for c in v["checks"]:
            # serde_json writes a NaN difference (a NaN loss or weight on the device) as null.
            diff = "NaN" if c.get("difference") is None else f"{c['difference']:.3g}"
            lines.append(f"  - {c['what']}: {diff} (tolerance {c['tolerance']:g}){'' if c['ok'] else ' FAILED'}")
            if c.get("error"):
                lines.append(f"    (the device side failed: `{c['error'].splitlines()[0][:300]}`)")
    else:
        lines.append(f"- {title}: no result (see {name}.stderr)")


# conv_cudnn/plans.rs logs each plan once, when its first call has launched, and warns when it
# leaves an algorithm (not deterministic, or refused by cuDNN after being sized).
PLAN_LINE = re.compile(r'cuDNN plan product="([^"]+)" dtype=(\w+) g=Geom \{ (.*?) \} algo=(\w+) workspace_bytes=(\d+)')
PLAN_WARNINGS = ("no deterministic gradient algorithm", "cuDNN could not run an algorithm")


def section_plans(out, lines):
    """The algorithms the planned cuDNN convolution chose, from every log the session kept."""
    chosen, warned = {}, {w: 0 for w in PLAN_WARNINGS}
    for root, _, files in os.walk(out):
        for f in sorted(files):
            if not f.endswith(".stderr"):
                continue
            with open(os.path.join(root, f), errors="replace") as fh:
                for line in fh:
                    m = PLAN_LINE.search(line)
                    if m:
                        product, dtype, geom, algo, size = m.groups()
                        shapes, biggest = chosen.get((product, dtype, algo), (set(), 0))
                        chosen[(product, dtype, algo)] = (shapes | {geom}, max(biggest, int(size)))
                    for w in PLAN_WARNINGS:
                        warned[w] += w in line
    if not chosen and not any(warned.values()):
        return
    lines += ["## cuDNN's algorithms (`CFRUN_CONV_CUDNN=planned`)", "",
              "Each plan's choice as logged when its first call launched, over every log of the session.", "",
              "| product | dtype | algorithm | geometries | largest workspace (MiB) |", "|---|---|---|---:|---:|"]
    for (product, dtype, algo), (shapes, biggest) in sorted(chosen.items()):
        lines.append(f"| {product} | {dtype} | `{algo}` | {len(shapes)} | {biggest / 2**20:.1f} |")
    for w, n in warned.items():
        if n:
            lines.append(f"\n{n} warnings \"{w}\" (see the .stderr files).")
    lines.append("")


def section_cfrun(runs, lines):
    lines += ["## cfrun training throughput (resnet_gpu, 1x28x28, batch 128)", "",
              "Steady: every stage's last epoch (after JIT and warm-up), summed over the stages that ran side by side. "
              "Wall: all images over the whole `cfrun run`, start-up included.", "",
              "| run | binary | jobs | precision | images x epochs per stage | steady img/s | wall img/s | rc |",
              "|---|---|---:|---|---:|---:|---:|---|"]
    for label, r in runs.items():
        lines.append(f"| {label} | {r['binary']} | {r['jobs']} | {r['precision']} | {r['images_per_stage']} x {r['epochs']} "
                     f"| {r['steady_img_s']} | {r['wall_img_s']} | {r['rc']} |")
    one = rate(runs.get("f32-j1"))
    lines += ["", "Each ratio below sets two single runs side by side, not alternated and mostly not at one size: "
              "it is no finding unless it lies far beyond the run-to-run spread of one configuration "
              "(`STEPS=ab` measures that, in its own section).", "",
              "| comparison | ratio (steady img/s) |", "|---|---:|"]
    pairs = [("cfrun's conv backward over candle's (f32-j1 / f32-j1-candlebwd)", "f32-j1", "f32-j1-candlebwd"),
             ("cfrun's batch-norm gradient over candle's (f32-j1 / f32-j1-candlebn)", "f32-j1", "f32-j1-candlebn"),
             ("TF32 GEMMs over f32 (f32-j1-tf32 / f32-j1)", "f32-j1-tf32", "f32-j1"),
             ("sums read once per epoch over once per batch (f32-j1 / f32-j1-sync)", "f32-j1", "f32-j1-sync"),
             ("batches built on the device over on the host, both synced per batch (f32-j1-sync / f32-j1-host)",
              "f32-j1-sync", "f32-j1-host"),
             ("the resident pipeline over the host loop (f32-j1 / f32-j1-host)", "f32-j1", "f32-j1-host"),
             ("the flat SGD update over per parameter (f32-j1 / f32-j1-sgdper)", "f32-j1", "f32-j1-sgdper"),
             ("flat BN running statistics over layer by layer (f32-j1 / f32-j1-bnlayer)", "f32-j1", "f32-j1-bnlayer"),
             ("im2col columns over tap by tap (f32-j1 / f32-j1-wtaps)", "f32-j1", "f32-j1-wtaps"),
             ("cuDNN over candle's conv kernels (f32-j1 / f32-j1-nocudnn)", "f32-j1", "f32-j1-nocudnn")]
    for what, a, b in pairs:
        if a in runs and b in runs:
            lines.append(f"| {what} | {ratio(rate(runs[a]), rate(runs[b]))} |")
    for label, r in runs.items():
        m = re.fullmatch(r"f32-j(\d+)", label)
        if m and m.group(1) != "1":
            lines.append(f"| {m.group(1)} jobs over 1 (aggregate) | {ratio(rate(r), one)} |")
        m = re.fullmatch(r"(bf16|f16)-j(\d+)", label)
        if m:
            lines.append(f"| {m.group(1)} over f32, {m.group(2)} job(s) | {ratio(rate(r), rate(runs.get(f'f32-j{m.group(2)}')))} |")
    lines.append("")


def section_torch(runs, text, lines):
    lines += ["## PyTorch on the same card (benches/python/torch_resnet.py, same network and batch)", ""]
    torch = torch_runs(text)
    if not torch:
        lines += ["No PyTorch result (torch.txt missing or empty).", ""]
        return
    best_f32 = max((rate(r) or 0 for l, r in runs.items() if re.fullmatch(r"f32-j1(-tf32)?", l)), default=0)
    half = max((rate(r) or 0 for l, r in runs.items() if re.fullmatch(r"(bf16|f16)-j1", l)), default=0)
    lines += ["| PyTorch mode | train img/s | cfrun 1 job, same precision | cfrun / PyTorch |", "|---|---:|---:|---:|"]
    for mode, img in torch:
        ours = half if "amp" in mode else best_f32
        lines.append(f"| {mode} | {img:.0f} | {ours:.0f} | {ratio(ours, img)} |")
    lines.append("")
    if "f32-j1-tf32" in runs:
        lines.append("cfrun's f32 column is the faster of f32-j1 and f32-j1-tf32; PyTorch's fp32 runs use TF32 in "
                     "cuDNN by default (torch.txt's header lines say which).")
    best = max(((rate(r) or 0, r["jobs"]) for l, r in runs.items() if re.fullmatch(r"f32-j\d+", l)), default=(0, "1"))
    if best[0] > 0 and best[1] != "1":
        lines.append(f"cfrun's best aggregate, {best[0]:.0f} img/s with {best[1]} jobs, has no PyTorch counterpart: "
                     "PyTorch ran one process.")
    lines.append("")


# Dense peak arithmetic in TFLOP/s (FP32 on the CUDA cores; TF32 and BF16 on the tensor cores), from
# NVIDIA's datasheets: the H100 SXM and the H200 SXM share the GH100's compute. Keyed by the name
# nvidia-smi prints; other cards (the PCIe and NVL ones among them) get no share of peak.
PEAKS = {"NVIDIA H200": (66.9, 494.7, 989.4), "NVIDIA H100 80GB HBM3": (66.9, 494.7, 989.4)}


def gpu_name(out):
    smi = smi_line(read(out, "env.txt") or "")
    return smi.split(",")[0].strip() if smi else None


def forward_macs(out):
    """The training log's multiply-accumulates per image (one value, or None)."""
    folder = os.path.join(out, "cfrun")
    found = set()
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        found |= set(re.findall(r"forward_macs=(\d+)", read(folder, name) or ""))
    return int(found.pop()) if len(found) == 1 else None


def whole_study_images(out):
    """noise_sweep_full's training images (all epochs) from projection.md's whole-study row."""
    m = re.search(r"^\| `\(the whole study\)` \| \d+ \| ([0-9.]+) \|", read(out, "projection.md") or "", re.M)
    return float(m.group(1)) * 1e6 if m else None


def section_arithmetic(out, runs, torch_text, lines):
    lines += ["## The rates in arithmetic", ""]
    macs = forward_macs(out)
    if macs is None:
        lines += ["Not computed: no single `forward_macs` in cfrun/*.stderr (the training log's debug line).", ""]
        return
    flop = 6 * macs
    lines += [f"One training image costs {flop / 1e9:.3g} GFLOP: {macs / 1e6:.1f} M multiply-accumulates forward "
              "(`forward_macs` in the training log: every convolution and the head), 2 FLOP each, three times "
              "(forward, input gradient, weight gradient). Batch norm, ReLU and the additions are passes over "
              "memory and are not counted, so these are lower bounds on the work done.", ""]
    name = gpu_name(out)
    peaks = PEAKS.get(name)
    if peaks:
        fp32, tf32, bf16 = peaks
        lines += [f"{name}: dense peaks {fp32} (FP32), {tf32} (TF32) and {bf16} (BF16) TFLOP/s (datasheet).", ""]
    else:
        lines += [f"No peak figures for `{name or 'an unnamed GPU'}`: TFLOP/s only.", ""]
    lines += ["| run | img/s | TFLOP/s | share of peak |", "|---|---:|---:|---|"]

    def share(tflops, half):
        if not peaks:
            return "n/a"
        if half:
            return f"{100 * tflops / peaks[2]:.1f} % of BF16"
        return f"{100 * tflops / peaks[0]:.0f} % of FP32, {100 * tflops / peaks[1]:.1f} % of TF32"

    rows = [(f"cfrun {l}", rate(r), r["precision"] != "f32") for l, r in runs.items()]
    rows += [(f"PyTorch {mode}", img, "amp" in mode) for mode, img in torch_runs(torch_text)]
    for what, img, half in rows:
        if img:
            tflops = img * flop / 1e12
            lines.append(f"| {what} | {img:.0f} | {tflops:.3g} | {share(tflops, half)} |")
    lines.append("")
    if peaks:
        fp32, tf32, bf16 = peaks
        at = lambda peak: peak * 1e12 / flop
        lines.append(f"At 100 % of peak one card would train {at(fp32):,.0f} img/s in FP32, {at(tf32):,.0f} in TF32 "
                     f"and {at(bf16):,.0f} in BF16.")
        images = whole_study_images(out)
        if images:
            need = images * flop / 600 / 1e12
            lines.append(f"noise_sweep_full trains {images / 1e6:.1f} M images ({images * flop / 1e15:.0f} PFLOP): "
                         f"at 100 % of peak {images * flop / fp32 / 1e12 / 60:.0f} min in FP32, "
                         f"{images * flop / tf32 / 1e12 / 60:.1f} min in TF32, {images * flop / bf16 / 1e12 / 60:.1f} "
                         f"min in BF16. Training it in 10 minutes takes {need:.0f} TFLOP/s sustained: "
                         f"{100 * need / tf32:.0f} % of the TF32 peak, {100 * need / bf16:.0f} % of the BF16 peak.")
        lines.append("")


def section_profile(out, lines):
    text = read(out, "profile-timers.txt")
    lines += ["## Where a step's time goes (cfrun's timers, one job, f32)", ""]
    if not text:
        lines += ["Not measured (no profile-timers.txt).", ""]
        return
    lines += ["Per phase, ms per step: the host's time to issue the work + the wait for the device to finish it "
              "(a device sync after each phase).", "", "```"]
    for l in text.splitlines():
        if "step profile" not in l:
            continue
        # STEPS=ab labels each line with its arm (`base`, `pool`, `params` or `leads`, a tab, then the log line).
        arm = l.split("\t", 1)[0] + ": " if "\t" in l else ""
        lines.append(arm + l.split("step profile ", 1)[-1])
    lines += ["```", ""]
    if "leads\t" in text:
        lines += ["`base`: the defaults; `pool`: `CFRUN_CUDA_POOL=keep` alone (the memory the profile's syncs would "
                  "give back is kept); `params`: `CFRUN_CUDA_PARAMS=cached` alone (candle's kernels' shape arguments "
                  "uploaded once, not at every op; absent from runs before 2026-12-05); `leads`: every lead on (the new "
                  "switches that passed check-device, `CFRUN_CUDA_EVENTS=off`, `CFRUN_CUDA_POOL=keep`, "
                  "`CFRUN_CUDA_PARAMS=cached`).", ""]
    nsys = read(out, "profile.txt")
    if nsys:
        lines += ["nsys's summary of one epoch is in `profile.txt`.", ""]


def section_sweep(out, lines):
    lines += ["## noise_sweep_full", ""]
    proj = read(out, "projection.md")
    if proj:
        lines += [l for l in proj.splitlines()[1:]] + [""]
    else:
        lines += ["No projection (projection.md missing).", ""]
    summary = read(out, "summary.txt") or ""
    ran = [l.split("] ", 1)[1] for l in summary.splitlines() if "] sweep part " in l]
    lines += [f"Run for real: {ran[0]}." if ran else "Run for real: no part of the study.", ""]


def section_agreement(out, lines):
    lines += ["## Top-1 agreement with the CPU", ""]
    text = read(out, "agreement.md")
    if not text:
        summary = read(out, "summary.txt") or ""
        why = [l.split("] ", 1)[1] for l in summary.splitlines() if "] agreement" in l]
        lines += [f"Not measured ({why[-1] if why else 'no agreement.md'}).", ""]
        return
    lines += ["noise_sweep.toml's replicate 0 on the GPU against the committed 3-replicate CPU run (docs/noise_sweep/, "
              "the same seeds); per table:", ""]
    name = None
    for l in text.splitlines():
        if l.startswith("## "):
            name = l[3:]
        elif "cells: inside" in l:
            lines.append(f"- {name}: {l}")
    lines += ["", "Cell by cell: `agreement.md`.", ""]


def epoch_losses(out, label):
    """Every stage's epoch losses in a run's log, sorted: runs of the same seeds whose switch keeps
    the bits give the same list."""
    text = read(out, f"cfrun/{label}.stderr") or ""
    return sorted(re.findall(r"epoch done epoch=\d+ loss=(\S+)", text))


def section_ab(out, runs, torch_text, lines):
    """STEPS=ab's alternated pairs (ab.tsv names each switch) and cfrun beside PyTorch."""
    table = read(out, "ab.tsv")
    cf = [rate(r) for label, r in runs.items() if re.fullmatch(r"ab-cfrun-\d+", label)]
    if not table and not cf:
        return
    lines += ["## Alternated A/B (STEPS=ab)", "",
              "Each switch against the default, run alternately (base, switch, base, switch, ...) at one size, each "
              "pair with the same seeds; steady img/s. The rule, fixed before any run: the switch is called faster "
              "(slower) only when every pair's ratio lies above (below) 1 by more than each arm's own spread "
              "(largest over smallest, minus 1) and by more than 5 %; else not shown. (Until 2026-12-04 the "
              "spread was the baselines' alone; an A/A dry run on the CPU, a switch that changes nothing, "
              "was then called slower: its baselines happened to agree and its other arm did not.) Same losses: each pair's epoch "
              "losses equal to the last digit (every switch but TF32, the planned cuDNN convolution and the fused "
              "batch norm, whose arithmetic differs by rounding, promises the same bits).", "",
              "| A/B | jobs | base img/s | switch img/s | switch / base, per pair | arms' spread (larger) | the switch | same losses |",
              "|---|---:|---|---|---|---:|---|---|"]
    faster = []
    for row in csv.reader((table or "").splitlines(), delimiter="\t"):
        if len(row) != 3:
            continue
        name, jobs, setting = row
        count = sum(1 for label in runs if re.fullmatch(rf"ab-{re.escape(name)}-base\d+", label))
        base = [rate(runs.get(f"ab-{name}-base{i}")) for i in range(1, count + 1)]
        var = [rate(runs.get(f"ab-{name}-var{i}")) for i in range(1, count + 1)]
        pairs = [v / b if v and b else None for v, b in zip(var, base)]
        arms = [base, var]
        spread = max(max(a) / min(a) - 1 for a in arms) if all(a and all(a) for a in arms) else None
        verdict = "not shown"
        if spread is not None and len(pairs) >= 2 and all(pairs):
            margin = max(spread, 0.05)
            if all(p > 1 + margin for p in pairs):
                verdict = "faster"
            elif all(p < 1 - margin for p in pairs):
                verdict = "slower"
        if "mps=1" in setting.split() and not all(read(out, f"mps-log/ab-{name}-var{i}/server.log")
                                                  for i in range(1, count + 1)):
            # A pair without its server's log: its processes found no MPS server and ran as plain
            # processes (or its server failed), so the arm says nothing of MPS.
            verdict = "no MPS server ran: not read"
        losses = [(epoch_losses(out, f"ab-{name}-base{i}"), epoch_losses(out, f"ab-{name}-var{i}")) for i in range(1, count + 1)]
        same = "yes" if losses and all(a and a == b for a, b in losses) else "no"
        show = lambda xs: ", ".join(f"{x:.0f}" if x else "n/a" for x in xs)
        lines.append(f"| `{setting}` | {jobs} | {show(base)} | {show(var)} | "
                     f"{', '.join(f'{p:.2f}x' if p else 'n/a' for p in pairs)} | "
                     f"{f'{spread * 100:.0f} %' if spread is not None else 'n/a'} | {verdict} | {same} |")
        if verdict == "faster" and "precision=" not in setting:
            faster.append((statistics.median(var), setting, jobs, statistics.median(base)))
    if faster:
        # The goal's yardstick: the whole study at the fastest f32 arm's aggregate rate. A lower
        # bound: the chain pretrain -> clusterfit runs at one job's rate (projection.md's rule).
        images = whole_study_images(out) or FULL_STUDY_IMAGES
        v, setting, jobs, b = max(faster)
        lines += ["", f"noise_sweep_full ({images / 1e6:.1f} M training images) at the fastest arm's median rate, "
                  f"`{setting}` with {jobs} job(s), {v:.0f} img/s: at least {images / v / 60:.0f} min "
                  f"(at its baselines' {b:.0f} img/s: {images / b / 60:.0f} min; the goal is 10)."]
    torch = [r for _, r in torch_runs(torch_text)]
    if cf:
        lines += ["", "cfrun (one job, f32) and PyTorch (eager fp32) alternately:", "",
                  "| pair | cfrun img/s | PyTorch img/s | cfrun / PyTorch |", "|---:|---:|---:|---:|"]
        for i, c in enumerate(cf):
            t = torch[i] if i < len(torch) else None
            lines.append(f"| {i + 1} | {f'{c:.0f}' if c else 'n/a'} | {f'{t:.0f}' if t else 'n/a'} | {ratio(c, t)} |")
    lines.append("")


# Milliseconds per unit: older Nsight Compute writes "nsecond" and so on, newer "ns".
NCU_UNITS = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3, "ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def section_ncu(out, lines, top=15):
    """ncu's gpu__time_duration per launch (ncu.csv), summed per kernel name."""
    text = read(out, "ncu.csv")
    if text is None:
        return
    lines += ["## Time per kernel (ncu)", ""]
    start = next((i for i, l in enumerate(text.splitlines()) if l.startswith('"ID"')), None)
    per, launches = {}, set()
    if start is not None:
        for r in csv.DictReader(text.splitlines()[start:]):
            if r.get("Metric Name") != "gpu__time_duration.sum" or r.get("Metric Unit") not in NCU_UNITS:
                continue
            ms = float(r["Metric Value"].replace(",", "")) * NCU_UNITS[r["Metric Unit"]]
            name = r["Kernel Name"]
            count, total = per.get(name, (0, 0.0))
            per[name] = (count + 1, total + ms)
            launches.add(r["ID"])
    if not per:
        lines += ["No kernel timings in `ncu.csv` (see `ncu.stderr`).", ""]
        return
    total = sum(t for _, t in per.values())
    lines += [f"{len(launches)} launches profiled, {total:.2f} ms of kernel time in all (each launch alone: ncu "
              "serializes them, so this is the card's work, not a step's wall time).", "",
              "| kernel | launches | total ms | share | mean us |", "|---|---:|---:|---:|---:|"]
    for name, (count, t) in sorted(per.items(), key=lambda kv: -kv[1][1])[:top]:
        short = name if len(name) <= 90 else name[:87] + "..."
        lines.append(f"| `{short}` | {count} | {t:.3f} | {t / total * 100:.1f} % | {t / count * 1000:.1f} |")
    lines.append("")


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = argv[1]
    runs = cfrun_runs(out)
    if runs is None:
        print(f"gpu-report.py: no cfrun.tsv in {out}: nothing was measured", file=sys.stderr)
        return 2
    summary = read(out, "summary.txt") or ""
    first = summary.splitlines()[0] if summary else ""
    lines = ["# GPU session results (issue 18)", "",
             "Made by `python3 scripts/gpu-report.py OUT` from the files of "
             "`run(command=\"OUT=$OUT bash scripts/gpu-session.sh\", carry=[\"target/gpu\"])` (gpu-bench.sh, its files returned as one archive), unpacked beside this file. "
             f"Session start: `{first}`.", ""]
    section_machine(out, lines)
    section_plans(out, lines)
    section_cfrun(runs, lines)
    section_torch(runs, read(out, "torch.txt"), lines)
    section_ab(out, runs, read(out, "torch.txt"), lines)
    section_ncu(out, lines)
    section_arithmetic(out, runs, read(out, "torch.txt"), lines)
    section_profile(out, lines)
    section_sweep(out, lines)
    section_agreement(out, lines)
    print("\n".join(lines).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
