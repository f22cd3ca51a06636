#!/usr/bin/env python3
"""Fuzzes cfrun from the outside, on the tiny fixtures, where the unit tests' own cases stop.

Why: `tests/bad/` holds one file per mistake someone thought of. This finds the ones nobody did,
by mutating real experiment files and damaging real caches, and checks the project's standards
on every result: an exit code with a name (0, 1 or 2), no panic, no hang, nothing written beside
the experiment file, and a damaged cache repaired to the same bytes or refused, never served.

  scripts/fuzz.py params --mode MODE [--runs N] [--seed S] [--files DIR] [--timeout SECONDS]
      Mutates one or two `key = value` lines of a fixture per run and runs `cfrun run` on it
      (`status` only with --mode status). Modes: `any` (values of every type), `num` (numbers
      kept numbers: what passes the type checks and reaches the ops), `ref` (references swapped
      for other stages' outputs), `status` (like `any`, checks only). A run that exits 1 is
      listed for reading (a check that could have come before anything ran?), except the
      fixture `floor_tiny`'s designed training-floor failure.
  scripts/fuzz.py damage --file TOML [--runs N] [--seed S]
      Runs the experiment into a cache, then per run copies that cache, flips, truncates,
      empties, zero-fills, extends or deletes one file of an object or a key, reruns, and
      requires exit 0, every object byte-identical to the undamaged run's, the same printed
      tables, and `status --verify` clean.

Writes one JSON line per finding to stdout and a summary to stderr; exit 1 when anything is
found. Uses target/release/cfrun (build it first; `CFRUN_BIN` names another) and a scratch
folder under $TMPDIR, removed at the end.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFRUN = os.environ.get("CFRUN_BIN") or os.path.join(REPO, "target", "release", "cfrun")
LINE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)(.+?)\s*$")
NUMBER = re.compile(r"-?\d+(\.\d*)?(e-?\d+)?")
# Values of every type, edges included: what a typo, a paste or a stray edit writes.
ANY = ["0", "-1", "1", "2", "3", "9223372036854775807", "18446744073709551616", "1e308", "nan", "inf",
       "-inf", "0.0", "-0.5", "1.5", "0.999999", '""', '"x"', '".."', '"/etc/passwd"', "[]", "[1, 2]",
       "[0, 0]", "true", "{}", '"${p}"', '"${nope}"', '"\\u00e9\\u0000"', "1000000000", "65536",
       '"a.b.c"', '["x"]', "-9223372036854775808", '"0:00:00"', '"0G"']
INTS = ["0", "1", "2", "3", "7", "63", "64", "65", "100", "257", "1000", "4096"]
FLOATS = ["0.0", "1.0", "0.5", "1e-9", "1e9", "2.0", "100.0", "0.999", "1e-30"]
LISTS = ["[0]", "[1]", "[1, 1000]", "[0, 1, 2, 3]", "[100]", "[2]"]
# Designed to fail at run time: the fixture that tests the training floor.
EXPECTED_FAILURE = "below min_train_top1"


def value_of(line):
    """The value of a `key = value` line without its trailing comment."""
    return LINE.match(line).group(4).split(" #")[0].strip()


def mutable(mode, line):
    v = value_of(line)
    if mode == "num":
        return bool(NUMBER.fullmatch(v) or re.fullmatch(r"\[[\d ,]*\]", v))
    if mode == "ref":
        return bool(re.fullmatch(r'"[a-z_0-9]+\.[a-z_]+"|\[.*\]', v))
    return True


def mutate(mode, rng, lines, j, text):
    """One mutation of line j: (new line, what changed)."""
    m = LINE.match(lines[j])
    head = m.group(1) + m.group(2) + m.group(3)
    v = value_of(lines[j])
    if mode == "num":
        if re.fullmatch(r"-?\d+", v):
            new = rng.choice(INTS + [str(int(v) * 2), str(max(int(v) // 2, 0)), str(int(v) + 1)])
        elif NUMBER.fullmatch(v):
            new = rng.choice(FLOATS)
        else:
            new = rng.choice(LISTS)
    elif mode == "ref":
        refs = sorted(set(re.findall(r'"([a-z_0-9]+\.[a-z_]+)"', text)))
        stages = sorted(set(re.findall(r"^\[stages\.([a-z_0-9]+)\]", text, re.M)))
        outputs = ["images", "labels", "features", "model", "metrics", "report", "permutations", "multilabels"]
        pool = refs + [f"{s}.{o}" for s in stages for o in outputs]
        new = '"' + rng.choice(pool) + '"'
        if rng.random() < 0.2:
            new = "[" + ", ".join('"' + rng.choice(pool) + '"' for _ in range(rng.choice([0, 1, 2, 3]))) + "]"
    else:
        if rng.random() < 0.1:
            return "", f"{m.group(2)} deleted"
        new = rng.choice(ANY)
    return head + new, f"{m.group(2)} = {new}"


def params(args, scratch):
    files = sorted(os.path.join(args.files, f) for f in os.listdir(args.files) if f.endswith(".toml"))
    # The Python fixture needs its virtual environment; the smoke study is a fixture too.
    files = [f for f in files if not f.endswith("python_tiny.toml")]
    if args.files == os.path.join(REPO, "tests", "fixtures"):
        files.append(os.path.join(REPO, "experiments", "smoke.toml"))
    rng = random.Random(args.seed)
    work, cache = os.path.join(scratch, "work"), os.path.join(scratch, "cache")
    os.makedirs(work)
    codes, findings = Counter(), 0
    for i in range(args.runs):
        path = rng.choice(files)
        text = open(path).read()
        lines = text.split("\n")
        candidates = [j for j, l in enumerate(lines) if LINE.match(l) and not l.lstrip().startswith("#")]
        candidates = [j for j in candidates if mutable(args.mode, lines[j])]
        changes = []
        # Distinct lines: a second change to a line the first deleted has nothing to change.
        for j in rng.sample(candidates, min(len(candidates), rng.choice([1, 1, 1, 2]))):
            lines[j], what = mutate(args.mode, rng, lines, j, text)
            changes.append(f"line {j + 1}: {what}")
        exp = os.path.join(work, "exp.toml")
        open(exp, "w").write("\n".join(lines))
        command = "status" if args.mode == "status" else "run"
        started = time.time()
        try:
            p = subprocess.run([CFRUN, "--cache", cache, "-q", command, exp], cwd=work, capture_output=True,
                               text=True, timeout=args.timeout)
            code, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            code, err = "timeout", ""
        codes[str(code)] += 1
        stray = sorted(set(os.listdir(work)) - {"exp.toml"})
        problems = []
        if "panicked" in err:
            problems.append("panic")
        if code not in (0, 1, 2, "timeout"):
            problems.append(f"exit {code}")
        if code == "timeout":
            # A long but legal run (epochs = 4096) also ends here: listed, for reading.
            problems.append(f"no exit within {args.timeout} s")
        if code == 1 and EXPECTED_FAILURE not in err:
            problems.append("refused only at run time")
        if stray:
            problems.append(f"wrote {stray} beside the file")
        for name in stray:
            target = os.path.join(work, name)
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        if problems:
            findings += 1
            print(json.dumps({"run": i, "file": os.path.relpath(path, REPO), "changes": changes, "exit": code,
                              "seconds": round(time.time() - started, 1), "problems": problems,
                              "stderr": err[-600:]}), flush=True)
    print(f"{args.runs} runs, exits {dict(codes)}, {findings} listed", file=sys.stderr)
    return findings


def objects(cache):
    """Digest of every file under the cache's objects, by path."""
    out = {}
    for folder, _, names in os.walk(os.path.join(cache, "objects")):
        for name in names:
            full = os.path.join(folder, name)
            out[os.path.relpath(full, cache)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return out


def damage(args, scratch):
    rng = random.Random(args.seed)
    clean = os.path.join(scratch, "clean")

    def run(cache, *rest):
        return subprocess.run([CFRUN, "--cache", cache, "-q", *rest], capture_output=True, text=True, timeout=600)

    first = run(clean, "run", args.file)
    if first.returncode != 0:
        sys.exit(f"the undamaged run failed:\n{first.stderr}")
    want, printed = objects(clean), first.stdout.replace(clean, "CACHE")
    keys = [os.path.relpath(os.path.join(d, f), clean) for d, _, fs in os.walk(os.path.join(clean, "keys")) for f in fs]
    victims = sorted(want) + sorted(keys)
    findings, kinds = 0, Counter()
    for i in range(args.runs):
        work = os.path.join(scratch, f"damaged-{i}")
        shutil.copytree(clean, work)
        victim = rng.choice(victims)
        target = os.path.join(work, victim)
        data = open(target, "rb").read()
        kind = rng.choice(["flip", "truncate", "delete", "extend", "empty", "zero"])
        kinds[kind] += 1
        if kind == "delete":
            os.remove(target)
        else:
            if kind == "flip" and data:
                at = rng.randrange(len(data))
                data = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
            elif kind == "truncate":
                data = data[: rng.randrange(len(data))] if data else data
            elif kind == "extend":
                data += b"\0junk"
            elif kind == "empty":
                data = b""
            elif kind == "zero" and data:
                at = rng.randrange(len(data))
                data = data[:at] + bytes(min(4096, len(data) - at)) + data[at + 4096:]
            open(target, "wb").write(data)
        again = run(work, "run", args.file)
        got = objects(work)
        verify = run(work, "status", "--verify", args.file)
        problems = []
        if again.returncode != 0:
            problems.append(f"exit {again.returncode}")
        changed = sorted(f for f in want if got.get(f) != want[f])
        if changed:
            problems.append(f"objects differ or are missing: {changed[:3]}")
        if again.stdout.replace(work, "CACHE") != printed:
            problems.append("printed tables differ")
        if verify.returncode != 0:
            problems.append("status --verify is not clean")
        if problems:
            findings += 1
            print(json.dumps({"run": i, "damaged": victim, "how": kind, "problems": problems,
                              "stderr": again.stderr[-600:]}), flush=True)
        shutil.rmtree(work)
    print(f"{args.runs} damaged caches ({dict(kinds)}), {findings} listed", file=sys.stderr)
    return findings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("params", help="mutate fixture values and run them")
    p.add_argument("--mode", choices=["any", "num", "ref", "status"], required=True)
    p.add_argument("--files", default=os.path.join(REPO, "tests", "fixtures"))
    p.add_argument("--timeout", type=float, default=120)
    d = sub.add_parser("damage", help="damage a cached run and rerun it")
    d.add_argument("--file", required=True)
    for s in (p, d):
        s.add_argument("--runs", type=int, default=100)
        s.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.access(CFRUN, os.X_OK):
        sys.exit(f"{CFRUN} is missing: run `cargo build --release` first")
    scratch = tempfile.mkdtemp(prefix="cfrun-fuzz-")
    try:
        found = params(args, scratch) if args.what == "params" else damage(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
