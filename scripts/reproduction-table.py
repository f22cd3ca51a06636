#!/usr/bin/env python3
"""Prints one markdown table per study from the verdict CSVs that study-docs.sh copies into docs/.

Usage: scripts/reproduction-table.py docs/noise_sweep docs/weak_images ...
One row per claim: the paper's statement and numbers, then each case's verdict with ours (the mean
paired difference over replicates and its 95 % CI), so docs/REPRODUCTION.md is regenerated from the
runs, not retyped.
"""
import csv
import glob
import os
import sys


def fmt(x):
    v = float(x)
    return f"{v:+.2f}" if abs(v) < 1 else f"{v:+.1f}"


def ours(row):
    if row["mean"].strip() == "":
        return "-"
    # One replicate has a mean and no interval.
    if row["ci_low"].strip() == "":
        return f"{fmt(row['mean'])} (no CI)"
    return f"{fmt(row['mean'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def combined(verdicts):
    # An order claim holds when every adjacent pair holds, and is reversed when any pair is.
    # A check refuted short of its threshold reads "reversed (short of the threshold)".
    if any(v.startswith("reversed") for v in verdicts):
        return next(v for v in verdicts if v.startswith("reversed"))
    if all(v == "holds" for v in verdicts):
        return "holds"
    return next(v for v in verdicts if v != "holds")


for folder in sys.argv[1:]:
    study = os.path.basename(folder.rstrip("/"))
    for path in sorted(glob.glob(os.path.join(folder, "*.claims.csv"))):
        rows = list(csv.DictReader(open(path, newline="")))
        if not rows:
            continue
        claims = {}
        for r in rows:
            claims.setdefault(r["claim"], {}).setdefault(r["case"], []).append(r)
        stage = os.path.basename(path).split(".")[0]
        print(f"**{study}** (`{stage}`, {rows[0]['metric']})\n")
        print("| claim | paper | ours, per case: mean [95 % CI] -> verdict |")
        print("| :-- | :-- | :-- |")
        for claim, cases in claims.items():
            first = next(iter(cases.values()))[0]
            cells = []
            for case, parts in cases.items():
                value = "; ".join(ours(p) for p in parts)
                where = f"{case.replace('target = ', '')}: " if case else ""
                cells.append(f"{where}{value} -> **{combined([p['verdict'] for p in parts])}**")
            print(f"| {first['statement']} | {first['paper']} | {'<br>'.join(cells)} |")
        print()
