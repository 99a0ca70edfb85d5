"""Cross-validated ridge encoding (per-voxel penalties) against scikit-learn's RidgeCV.

Both compute the same out-of-fold predictions (exact leave-one-out penalty choice per voxel on
the training folds); the benchmark checks that and times them in the same run::

    python benchmarks/bench_encoding.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import RidgeCV

from brainalign.rsa.encoding import DEFAULT_ALPHAS, make_folds, ridge_encoding


def sklearn_encoding(x, y, folds, alphas):
    out = np.empty_like(y)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        out[te] = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[tr], y[tr]).predict(x[te])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    sizes = [(300, 256, 2000)] if args.quick else [(300, 256, 2000), (1000, 1280, 10000)]
    rng = np.random.default_rng(0)
    header = f"{'stimuli x features x voxels':<30}{'sklearn (s)':>12}{'ours (s)':>10}"
    print(f"{header}{'ratio':>8}{'max diff':>11}")
    for n, p, v in sizes:
        x = rng.normal(size=(n, p))
        y = x @ rng.normal(size=(p, v)) * 0.05 + rng.normal(size=(n, v))
        folds = make_folds(n, 5, seed=0)
        t0 = time.perf_counter()
        ref = sklearn_encoding(x, y, folds, DEFAULT_ALPHAS)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = ridge_encoding(x, y, n_folds=5, seed=0, device="cpu").predictions
        t_ours = time.perf_counter() - t0
        diff = float(np.abs(ours - ref).max())
        label = f"{n} x {p} x {v}"
        print(f"{label:<30}{t_ref:>12.2f}{t_ours:>10.2f}{t_ref / t_ours:>7.1f}x{diff:>11.1e}")


if __name__ == "__main__":
    main()
