"""A scikit-learn linear probe as a cfrun `command` stage.

Logistic regression on frozen features, standardised with the train split's statistics, fitted
on the train split and scored on the test split: the same protocol as cfrun's `linear_probe`,
with another optimiser (L-BFGS on the full batch instead of SGD).

    python3 sk_probe.py FEATURES LABELS OUT [--c C] [--max-iter N] [--seed S]

FEATURES and LABELS are artifact folders, OUT the metrics folder to write (cfrun passes
`{in.features}`, `{in.labels}` and `{out.metrics}`).
"""

import argparse
import os

# One BLAS thread: on problems this small it is the fastest (many threads spin against cfrun's
# own workers), and sums in a fixed order make the output bytes reproducible, which keeps
# dependants cached when the stage reruns (early cutoff).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import cfrun_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features")
    ap.add_argument("labels")
    ap.add_argument("out")
    ap.add_argument("--c", type=float, default=1.0, help="inverse L2 strength")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    x_train, x_test = cfrun_io.read_features(args.features)
    y_train, y_test, _ = cfrun_io.read_labels(args.labels)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    # cfrun's seeds are 64-bit (a replicate's is derived from the experiment's); scikit-learn
    # takes at most 32 bits.
    probe = LogisticRegression(C=args.c, max_iter=args.max_iter, random_state=args.seed % 2**32)
    probe.fit(x_train, y_train)
    cfrun_io.write_metrics(
        args.out,
        {
            "top1": 100.0 * probe.score(x_test, y_test),
            "train_top1": 100.0 * probe.score(x_train, y_train),
        },
        details={
            "probe": "sklearn.linear_model.LogisticRegression (lbfgs)",
            "C": args.c,
            "iterations": int(np.max(probe.n_iter_)),
        },
    )


if __name__ == "__main__":
    main()
