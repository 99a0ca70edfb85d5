"""brainalign.rsa against rsatoolbox: the same inputs, the results checked, the times compared.

Run ``python benchmarks/bench_rsa.py`` (full sizes, a few minutes) or ``--quick``. Times are the
best of ``--repeats`` runs for brainalign and of one run for rsatoolbox when it takes longer than
2 s; quote the ratios, which are measured in the same run (absolute times drift on shared
machines). ``max |diff|`` is the largest absolute difference between the two results.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from brainalign.rsa import (
    bootstrap,
    compare_rdms,
    compute_rdms,
    geotopological,
    permutation_test,
    to_condensed,
    to_square,
)

warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")  # rsatoolbox's bootstrap progress bar

from rsatoolbox.data import Dataset
from rsatoolbox.inference import eval_bootstrap_pattern
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs, calc_rdm, compare
from rsatoolbox.rdm.transform import geotopological_transform

ROWS: list[tuple[str, str, float, float, float]] = []


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        if best > 2.0:
            break
    return best, out


def row(name: str, size: str, ref_s: float, ours_s: float, diff: float) -> None:
    ROWS.append((name, size, ref_s, ours_s, diff))
    print(
        f"  {name:<34} {size:<28} rsatoolbox {ref_s:8.3f} s   ours {ours_s:8.4f} s   "
        f"x{ref_s / ours_s:7.1f}   max|diff| {diff:.1e}",
        flush=True,
    )


def bench_rdms(rng: np.random.Generator, n: int, p: int, repeats: int) -> None:
    x = rng.standard_normal((n, p))
    x32 = x.astype(np.float32)
    for metric in ("correlation", "euclidean"):
        ref_s, ref = best_time(
            lambda metric=metric: calc_rdm(Dataset(x), method=metric).get_vectors()[0], 1
        )
        t64, ours = best_time(lambda metric=metric: compute_rdms(x, metric), repeats)
        row(f"{metric} RDM (float64)", f"{n} x {p}", ref_s, t64, np.abs(ours - ref).max())
        t32, ours = best_time(lambda metric=metric: compute_rdms(x32, metric), repeats)
        row(
            f"{metric} RDM (float32)",
            f"{n} x {p}",
            ref_s,
            t32,
            np.abs(ours - ref).max() / max(1.0, np.abs(ref).max()),
        )


def bench_crossnobis(rng: np.random.Generator, n_cond: int, p: int, repeats: int) -> None:
    n_folds = 4
    x = rng.standard_normal((n_cond * n_folds, p))
    cond = np.tile(np.arange(n_cond), n_folds)
    run = np.repeat(np.arange(n_folds), n_cond)
    ds = Dataset(x, obs_descriptors={"c": cond, "r": run})
    ref_s, ref = best_time(
        lambda: calc_rdm(ds, method="crossnobis", descriptor="c", cv_descriptor="r").get_vectors()[
            0
        ],
        1,
    )
    ours_s, ours = best_time(
        lambda: compute_rdms(x, "crossnobis", descriptors=cond, folds=run), repeats
    )
    row("crossnobis RDM (4 folds)", f"{n_cond} cond x {p}", ref_s, ours_s, np.abs(ours - ref).max())


def bench_compare(rng: np.random.Generator, n: int, repeats: int) -> None:
    n_pairs = n * (n - 1) // 2
    data = rng.random((1, n_pairs))
    models = rng.random((100, n_pairs))
    models[50:] = np.round(models[50:] * 4)  # half the models predict ties
    for method in ("cosine", "corr", "spearman", "tau-a"):
        ref_s, ref = best_time(
            lambda method=method: compare(RDMs(data), RDMs(models), method=method), repeats
        )
        ours_s, ours = best_time(lambda method=method: compare_rdms(data, models, method), repeats)
        row(f"compare {method} 1 vs 100", f"{n} stimuli", ref_s, ours_s, np.abs(ours - ref).max())


def bench_permutations(rng: np.random.Generator, n: int, n_perm: int, n_ref: int) -> None:
    n_pairs = n * (n - 1) // 2
    data = rng.random((1, n_pairs))
    models = rng.random((10, n_pairs))
    perms = np.argsort(np.random.default_rng(0).random((n_perm, n)), axis=1)
    square = to_square(data)
    ref_models = RDMs(models)

    def reference() -> np.ndarray:
        out = []
        for perm in perms[:n_ref]:
            permuted = RDMs(to_condensed(square[:, perm][:, :, perm]))
            out.append(compare(permuted, ref_models, method="spearman"))
        return np.stack(out)

    ref_s, ref = best_time(reference, 1)
    ours_s, ours = best_time(
        lambda: permutation_test(data, models, "spearman", n_permutations=n_perm, seed=0), 1
    )
    scale = n_perm / n_ref
    note = f"{n} stim, 10 models" + (f" (ref x{scale:.0f})" if scale != 1 else "")
    row(
        f"{n_perm} permutations, spearman",
        note,
        ref_s * scale,
        ours_s,
        np.abs(ours.null[:n_ref] - ref).max(),
    )


def bench_bootstrap(rng: np.random.Generator, n: int, n_boot: int) -> None:
    n_pairs = n * (n - 1) // 2
    data = rng.random((10, n_pairs))
    models = rng.random((10, n_pairs))
    mods = [ModelFixed(f"m{k}", RDMs(models[k : k + 1])) for k in range(10)]
    np.random.seed(0)  # noqa: NPY002 - rsatoolbox draws from numpy's global generator
    ref_s, ref = best_time(
        lambda: (
            eval_bootstrap_pattern(
                mods, RDMs(data), method="spearman", N=n_boot, boot_noise_ceil=False
            ).evaluations
        ),
        1,
    )
    legacy = np.random.RandomState(0)
    draws = np.stack([legacy.randint(0, n, size=n) for _ in range(n_boot)])
    ours_s, ours = best_time(
        lambda: bootstrap(data, models, "spearman", stimulus_draws=draws).evaluations, 1
    )
    row(
        f"{n_boot} bootstraps (stimuli), spearman",
        f"{n} stim, 10 subj, 10 models",
        ref_s,
        ours_s,
        np.nanmax(np.abs(ours - ref)),
    )


def bench_geotopological(rng: np.random.Generator, n: int, repeats: int) -> None:
    n_pairs = n * (n - 1) // 2
    # values >= 1 so that rsatoolbox's transform (which overwrites values above the raw upper
    # threshold after rescaling) computes the paper's transform
    rdms = 1 + rng.random((100, n_pairs))
    per_rdm_s, ref = best_time(
        lambda: np.concatenate(
            [
                geotopological_transform(RDMs(rdms[k : k + 1].copy()), 0.1, 0.9).get_vectors()
                for k in range(100)
            ]
        ),
        1,
    )
    pooled_s, _ = best_time(lambda: geotopological_transform(RDMs(rdms.copy()), 0.1, 0.9), repeats)
    ours_s, ours = best_time(lambda: geotopological(rdms, 0.1, 0.9), repeats)
    row(
        "geo-topological, 100 RDMs",
        f"{n} stim, per-RDM quantiles",
        per_rdm_s,
        ours_s,
        np.abs(ours - ref).max(),
    )
    row(
        "  (rsatoolbox pooled, 1 call)",
        f"{n} stim, pooled quantiles",
        pooled_s,
        ours_s,
        float("nan"),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.quick:
        sizes = {
            "rdm": (500, 2000),
            "xnobis": (200, 500),
            "compare": 200,
            "perm": (100, 1000, 1000),
            "boot": (40, 1000),
            "gt": 200,
        }
    else:
        sizes = {
            "rdm": (2000, 10000),
            "xnobis": (1000, 2000),
            "compare": 500,
            "perm": (200, 1000, 200),
            "boot": (100, 1000),
            "gt": 500,
        }
    print(f"brainalign.rsa vs rsatoolbox ({'quick' if args.quick else 'full'} sizes)")
    bench_rdms(rng, *sizes["rdm"], args.repeats)
    bench_crossnobis(rng, *sizes["xnobis"], args.repeats)
    bench_compare(rng, sizes["compare"], args.repeats)
    bench_permutations(rng, *sizes["perm"])
    bench_bootstrap(rng, *sizes["boot"])
    bench_geotopological(rng, sizes["gt"], args.repeats)
    print("\n| operation | size | rsatoolbox (s) | brainalign (s) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name, size, ref_s, ours_s, diff in ROWS:
        print(
            f"| {name.strip()} | {size} | {ref_s:.3f} | {ours_s:.4f} | {ref_s / ours_s:.1f}x "
            f"| {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
