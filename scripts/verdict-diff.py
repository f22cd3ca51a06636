#!/usr/bin/env python3
"""Sets two runs' verdicts side by side, row by row, and lists the rows whose verdict differs.

Usage: scripts/verdict-diff.py BEFORE.claims.csv AFTER.claims.csv [LABEL_BEFORE LABEL_AFTER]
A row is one claim, case and part (the key a claims stage writes); each side shows the mean paired
difference [95 % CI] over its n replicates and the verdict. Rows only one run has are shown with
"-" on the other side; a row of one replicate shows its mean with "no CI". Prints a markdown
table, then a count line. Exit 2 on a file that is not a claims CSV or holds a row twice.
"""
import csv
import sys

KEY = ("claim", "case", "part")
NEEDED = set(KEY) | {"mean", "ci_low", "ci_high", "n", "verdict"}


def fmt(x):
    v = float(x)
    return f"{v:+.3f}" if abs(v) < 0.1 else f"{v:+.1f}"


def read(path):
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            # The line each row ends on (a quoted field may hold a newline).
            rows = [(r, reader.line_num) for r in reader]
            columns = set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        print(f"{path}: {e}", file=sys.stderr)
        sys.exit(2)
    if not NEEDED <= columns:
        print(f"{path}: not a claims CSV (needs the columns {', '.join(sorted(NEEDED))})", file=sys.stderr)
        sys.exit(2)
    keyed = {}
    for r, line in rows:
        key = tuple(r[k] for k in KEY)
        if key in keyed:
            # Keeping either row would hide the other's verdict.
            print(f"{path}:{line}: a second row for claim {key[0]!r}, case {key[1]!r}, part {key[2]!r}", file=sys.stderr)
            sys.exit(2)
        keyed[key] = r
    return keyed


def side(row):
    if row is None:
        return "-"
    if row["mean"].strip() == "":
        return row["verdict"]
    # One replicate (or a check without a spread) has a mean and no interval.
    interval = "no CI" if row["ci_low"].strip() == "" else f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
    return f"{fmt(row['mean'])} {interval} n = {row['n']}: {row['verdict']}"


def main(argv):
    if len(argv) not in (3, 5):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    before, after = read(argv[1]), read(argv[2])
    a, b = (argv[3], argv[4]) if len(argv) == 5 else ("before", "after")
    keys = list(before) + [k for k in after if k not in before]
    print(f"| claim | case | {a} | {b} | |")
    print("| :-- | :-- | :-- | :-- | :-- |")
    moved = 0
    for k in keys:
        x, y = before.get(k), after.get(k)
        differs = x is None or y is None or x["verdict"] != y["verdict"]
        moved += differs
        case = k[1] + (f" (part {k[2]})" if k[2] not in ("", "0") else "")
        print(f"| {k[0]} | {case or '-'} | {side(x)} | {side(y)} | {'**moved**' if differs else ''} |")
    print()
    print(f"{moved} of {len(keys)} rows differ in verdict.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
