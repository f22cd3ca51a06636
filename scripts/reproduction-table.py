#!/usr/bin/env python3
"""Prints one markdown table per study from the verdict CSVs copied into docs/ by study-docs.sh.

Usage: scripts/reproduction-table.py docs/noise_sweep docs/weak_images ...
Each row is one claim case: the paper's statement and numbers, ours (mean and 95 % CI of the paired
difference over replicates) and the verdict, so docs/REPRODUCTION.md is regenerated, not retyped.
"""
import csv
import glob
import os
import sys


def fmt(x):
    v = float(x)
    return f"{v:+.2f}" if abs(v) < 1 else f"{v:+.1f}"


def ours(row):
    means = row["mean"].split(";") if ";" in row["mean"] else [row["mean"]]
    lows = row["ci_low"].split(";") if ";" in row["ci_low"] else [row["ci_low"]]
    highs = row["ci_high"].split(";") if ";" in row["ci_high"] else [row["ci_high"]]
    parts = []
    for m, lo, hi in zip(means, lows, highs):
        if m.strip() == "":
            parts.append("-")
        else:
            parts.append(f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]")
    return "; ".join(parts)


for folder in sys.argv[1:]:
    study = os.path.basename(folder.rstrip("/"))
    for path in sorted(glob.glob(os.path.join(folder, "*.claims.csv"))):
        rows = list(csv.DictReader(open(path, newline="")))
        # Multi-part claims (order) have one CSV row per part: join them per case.
        cases = {}
        for r in rows:
            cases.setdefault((r["claim"], r["case"]), []).append(r)
        metric = rows[0]["metric"] if rows else ""
        print(f"**{study}** ({os.path.basename(path).split('.')[0]}, {metric})\n")
        print("| claim | case | paper | ours: mean [95 % CI] | verdict |")
        print("| :-- | :-- | :-- | --: | :-- |")
        for (claim, case), parts in cases.items():
            r = parts[0]
            value = "; ".join(ours(p) for p in parts)
            # An order claim holds when every adjacent pair holds, is reversed when any pair is.
            verdicts = [p["verdict"] for p in parts]
            if any(v == "reversed" for v in verdicts):
                verdict = "reversed"
            elif all(v == "holds" for v in verdicts):
                verdict = "holds"
            else:
                verdict = next(v for v in verdicts if v != "holds")
            print(f"| {claim}: {r['statement']} | {case} | {r['paper']} | {value} | **{verdict}** |")
        print()
