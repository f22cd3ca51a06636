#!/usr/bin/env python3
"""Sets one replicate's tables beside a committed multi-replicate run of the same study, cell by cell.

Usage: agreement.py REFERENCE_DIR NAME=TABLE.csv [NAME=TABLE.csv ...] > agreement.md

REFERENCE_DIR holds NAME.table.csv files written by a run with several replicates (each value column
`X` has companions `X (ci95 half-width)` and `X (replicates)`, the per-replicate values in
replicate order). Each TABLE.csv comes from a run with `experiment.replicates = 1`, whose stages have
the keys, and so the seeds, of the reference's replicate 0: the issue-18 GPU session runs
noise_sweep.toml that way on the GPU and compares it with docs/noise_sweep/ from the CPU.

For each cell: the one-replicate value, the reference's replicate 0 (same seeds: the difference is
the devices' arithmetic alone), the reference's mean and 95 % CI half-width over its replicates, and
whether the value lies inside that interval; then the 95 % prediction interval for one more
replicate (mean ± t s sqrt(1 + 1/n), the CI's half-width times sqrt(n + 1), as the CI is t s / sqrt(n))
and whether the value lies inside that. The CI is where the reference's mean lies; one replicate
spreads sqrt(n + 1) times wider, so the prediction interval is the yardstick for a single run. Exit status 0 when every table was compared, 2 when
one was not (it is said in its section and on stderr; the others are still compared).
"""

import csv
import sys


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty")
    return rows[0], rows[1:]


def fmt(v, like=None):
    """Two decimals for percentages, three for fractions such as NMI (judged by `like` if given)."""
    return f"{v:.3f}" if abs(v if like is None else like) < 10 else f"{v:.2f}"


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def compare(name, ref_path, one_path):
    ref_head, ref_rows = read(ref_path)
    one_head, one_rows = read(one_path)
    values = [c for c in one_head if f"{c} (replicates)" in ref_head]
    if not values:
        raise ValueError(f"{ref_path}: no column of {one_path} has per-replicate values")
    keys = [c for c in one_head if c not in values]
    missing = [c for c in keys if c not in ref_head]
    if missing:
        raise ValueError(f"{ref_path}: no column {missing[0]!r} (the key columns of {one_path})")
    at = {c: i for i, c in enumerate(ref_head)}
    reference = {tuple(r[at[c]] for c in keys): r for r in ref_rows}
    cells = []
    for row in one_rows:
        key = tuple(row[one_head.index(c)] for c in keys)
        ref = reference.get(key)
        for col in values:
            value = number(row[one_head.index(col)])
            if value is None:
                continue
            if ref is None:
                cells.append((key, col, value, None, None, None, 0))
                continue
            reps = [number(v) for v in ref[at[f"{col} (replicates)"]].split()]
            ci = f"{col} (ci95 half-width)"
            mean, half = number(ref[at[col]]), number(ref[at[ci]]) if ci in at else None
            cells.append((key, col, value, reps[0] if reps else None, mean, half, len(reps)))
    if cells and all(c[3] is None for c in cells):
        raise ValueError(f"no row of {one_path} matches a row of {ref_path} on {', '.join(keys)}")
    out = [f"## {name}", "", "| " + " | ".join(keys) + " | column | this run | reference replicate 0 | difference "
           "| reference mean ± 95 % CI | inside the CI | 95 % interval for one replicate | inside it |",
           "|" + "---|" * (len(keys) + 1) + "---:|---:|---:|---:|---|---:|---|"]
    diffs, inside, inside_one, compared = [], 0, 0, 0
    for key, col, value, r0, mean, half, n in cells:
        if r0 is None or mean is None:
            out.append("| " + " | ".join(key) + f" | {col} | {fmt(value)} | (not in the reference) | | | | | |")
            continue
        compared += 1
        ok = half is not None and abs(value - mean) <= half
        one = half * (n + 1) ** 0.5 if half is not None else None
        ok_one = one is not None and abs(value - mean) <= one
        inside += ok
        inside_one += ok_one
        diffs.append(value - r0)
        verdict = lambda ok: "yes" if ok else ("no" if half is not None else "n/a")
        ci = f"{fmt(mean)} ± {fmt(half, mean)}" if half is not None else f"{fmt(mean)} (no CI)"
        pi = f"{fmt(mean)} ± {fmt(one, mean)}" if one is not None else ""
        out.append("| " + " | ".join(key) + f" | {col} | {fmt(value, mean)} | {fmt(r0, mean)} | {value - r0:+.3g} "
                   f"| {ci} | {verdict(ok)} | {pi} | {verdict(ok_one)} |")
    out.append("")
    if diffs:
        worst = max(diffs, key=abs)
        mean_abs = sum(abs(d) for d in diffs) / len(diffs)
        out.append(f"{compared} cells: inside the reference's 95 % CI in {inside}, inside its 95 % interval for one "
                   f"replicate in {inside_one}; against replicate 0 the largest difference is {worst:+.3g}, the mean "
                   f"absolute difference {mean_abs:.3g}.")
    else:
        out.append("No cell had a reference value.")
    out.append("")
    return out


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    ref_dir = argv[1]
    lines = ["# Agreement with the reference run", "",
             f"Reference: `{ref_dir}`. Differences are this run minus the reference's replicate 0, in the tables' units.", ""]
    failed = 0
    for arg in argv[2:]:
        name, path = arg.split("=", 1)
        try:
            lines += compare(name, f"{ref_dir}/{name}.table.csv", path)
        except (OSError, ValueError, IndexError) as e:
            # One unreadable table does not take the others with it.
            print(f"agreement.py: {name}: {e}", file=sys.stderr)
            lines += [f"## {name}", "", f"Not compared: {e}", ""]
            failed += 1
    print("\n".join(lines))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
