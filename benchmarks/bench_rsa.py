"""brainalign.rsa against rsatoolbox: the same inputs, the results checked, the times compared.

Run ``python benchmarks/bench_rsa.py`` (full sizes: the single operations, then the end-to-end
analysis; about 15 minutes), ``--quick`` (small sizes, a few minutes), ``--end-to-end`` (only
the end-to-end analysis, at full or, with ``--quick``, small size) or ``--gpu-rdm`` (only a
correlation RDM of 10,000 stimuli x 100,000 float32 features on CUDA, its time and peak memory;
skipped without a GPU). Times are the best of
``--repeats`` runs for brainalign and of one run for rsatoolbox when it takes longer than 2 s;
quote the ratios, which are measured in the same run (absolute times drift on shared machines).
``max |diff|`` is the largest absolute difference between the two results.

The end-to-end case is a layers-vs-regions study: 500 stimuli, 20 network layers (features), 10
brain regions in 5 subjects each (patterns of a few hundred voxels), Spearman RSA then topological
RSA, each with 1,000 stimulus permutations, 1,000 stimulus bootstrap draws and the noise ceiling.
brainalign runs it as one :func:`~brainalign.rsa.compare_layers_regions` call per analysis;
rsatoolbox as the same pipeline written with its public API. rsatoolbox's permutations and
bootstrap draws take minutes per hundred, so it runs a stated fraction of them (the same
permutations and draws as brainalign's first ones) and its time is extrapolated linearly.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # rsatoolbox's bootstrap progress bar

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from brainalign.rsa import (
    bootstrap,
    compare_layers_regions,
    compare_rdms,
    compute_rdms,
    dual_bootstrap,
    geotopological,
    noise_ceiling,
    permutation_test,
    to_condensed,
    to_square,
)

warnings.filterwarnings("ignore")

from rsatoolbox.data import Dataset
from rsatoolbox.inference import boot_noise_ceiling, eval_bootstrap_pattern
from rsatoolbox.model import ModelFixed
from rsatoolbox.rdm import RDMs, calc_rdm, compare, concat
from rsatoolbox.rdm.rdms import permute_rdms
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
        # both best of `repeats` (best_time stops after a run over 2 s): a single run of a
        # 10 ms reference drifts by more than the difference measured
        ref_s, ref = best_time(
            lambda metric=metric: calc_rdm(Dataset(x), method=metric).get_vectors()[0], repeats
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
        repeats,
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
    # Kendall's tau-a of one RDM with one RDM (a model without ties, then a categorical one):
    # short calls, so the best of more runs
    for label, model in (("", models[:1]), (", tied model", models[50:51])):
        ref_s, ref = best_time(
            lambda m=model: compare(RDMs(data), RDMs(m), method="tau-a"), 5 * repeats
        )
        ours_s, ours = best_time(lambda m=model: compare_rdms(data, m, "tau-a"), 5 * repeats)
        row(f"compare tau-a 1 vs 1{label}", f"{n} stimuli", ref_s, ours_s, np.abs(ours - ref).max())
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


def bench_dual_bootstrap(
    rng: np.random.Generator, n: int, n_subj: int, n_boot: int, n_ref: int
) -> None:
    """Dual bootstrap (subjects and stimuli, corrected variance, noise ceilings): rsatoolbox's
    eval_dual_bootstrap on ``n_ref`` draws (extrapolated), ours on ``n_boot``; the evaluations
    and noise ceilings checked on rsatoolbox's own draws."""
    import rsatoolbox.inference.evaluate as rsa_evaluate

    n_pairs = n * (n - 1) // 2
    data = rng.random((n_subj, n_pairs))
    models = rng.random((10, n_pairs))
    mods = [ModelFixed(f"m{k}", RDMs(models[k : k + 1])) for k in range(10)]
    recorded = []
    original = rsa_evaluate.bootstrap_sample

    def recorder(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        recorded.append((out[1].copy(), out[2].copy()))
        return out

    rsa_evaluate.bootstrap_sample = recorder
    try:
        np.random.seed(0)  # noqa: NPY002 - rsatoolbox draws from numpy's global generator
        t = time.perf_counter()
        ref = rsa_evaluate.eval_dual_bootstrap(mods, RDMs(data), method="spearman", N=n_ref)
        ref_s = (time.perf_counter() - t) * n_boot / n_ref
    finally:
        rsa_evaluate.bootstrap_sample = original
    subj = np.stack([r[0] for r in recorded])
    stim = np.stack([r[1] for r in recorded])
    ours_s, _ = best_time(
        lambda: dual_bootstrap(data, models, "spearman", n_bootstraps=n_boot, seed=0), 1
    )
    same = dual_bootstrap(data, models, "spearman", stimulus_draws=stim, subject_draws=subj)
    diff = max(
        np.nanmax(np.abs(same.evaluations - ref.evaluations[:, :, 0, 0, :].transpose(2, 0, 1))),
        np.nanmax(np.abs(same.noise_ceilings - ref.noise_ceiling[:, :, 0, :].transpose(2, 1, 0))),
        np.abs(same.variance - ref.model_var).max(),
    )
    row(
        f"dual bootstrap, {n_boot} draws",
        f"{n} stim, {n_subj} subj (ref x{n_boot // n_ref})",
        ref_s,
        ours_s,
        diff,
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


def bench_gpu_rdm(n: int, p: int, device: str = "cuda") -> None:
    """Correlation RDM of ``n`` stimuli x ``p`` features in float32, chunked over stimuli (the
    default chunks): time and peak GPU memory, and 1,000 random pairs checked against float64. No
    rsatoolbox run (hours on the CPU at this size). ``device="cpu"`` only checks the code path at
    small sizes."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print(f"\nGPU RDM ({n} x {p}, float32): skipped, no CUDA device.", flush=True)
        return
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((n, p), generator=gen, device=dev, dtype=torch.float32)
    compute_rdms(x[:256], "correlation")  # warm up kernels and the allocator
    base = 0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    rdm = compute_rdms(x, "correlation").reshape(-1)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() - base if cuda else float("nan")
    # 1,000 random pairs i < j against float64
    i = torch.randint(0, n - 1, (1000,), generator=gen, device=dev)
    j = i + 1 + (torch.rand(1000, generator=gen, device=dev) * (n - 1 - i)).long()
    k = i * (2 * n - i - 1) // 2 + (j - i - 1)  # condensed position
    xi, xj = x[i].double(), x[j].double()
    xi, xj = xi - xi.mean(1, keepdim=True), xj - xj.mean(1, keepdim=True)
    ref = 1 - (xi * xj).sum(1) / (xi.norm(dim=1) * xj.norm(dim=1))
    err = float((rdm[k].double() - ref).abs().max())
    name = torch.cuda.get_device_name(dev) if cuda else "CPU"
    print(
        f"\nRDM on {name} ({n} stimuli x {p} features, float32, correlation): {elapsed:.2f} s, "
        f"peak memory {peak / 2**30:.2f} GiB above the {x.numel() * 4 / 2**30:.2f} GiB of "
        f"patterns (RDM {rdm.numel() * rdm.element_size() / 2**30:.2f} GiB), max |diff| vs "
        f"float64 on 1,000 pairs {err:.1e}",
        flush=True,
    )
    ROWS.append((f"correlation RDM on {name}", f"{n} x {p} float32", np.nan, elapsed, err))


# ---------------------------------------------------------------------------------------------
# end to end: layers vs regions, RSA and tRSA


def make_study(
    rng: np.random.Generator,
    n: int,
    n_layers: int,
    n_regions: int,
    n_subjects: int,
    n_voxels: int,
    n_features: int,
) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """A layered network's features and regions that read noisily from some of its layers."""
    layers = {}
    state = rng.standard_normal((n, 64))
    for k in range(n_layers):
        state = state @ rng.standard_normal((64, 64)) / 8 + 0.5 * rng.standard_normal((n, 64))
        layers[f"layer{k:02d}"] = np.tanh(state @ rng.standard_normal((64, n_features)))
    names = list(layers)
    regions = {}
    for r in range(n_regions):
        source = layers[names[(2 * r) % n_layers]]
        regions[f"region{r}"] = [
            source @ rng.standard_normal((n_features, n_voxels)) / np.sqrt(n_features)
            + 2 * rng.standard_normal((n, n_voxels))
            for _ in range(n_subjects)
        ]
    return layers, regions


def _draws_of(seed: int, n: int, n_perm: int, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutations and stimulus draws compare_layers_regions(seed=seed) uses."""
    rng = np.random.default_rng(seed)
    perm_seed, _ = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
    draws = rng.integers(0, n, size=(n_boot, n))
    perms = np.argsort(np.random.default_rng(perm_seed).random((n_perm, n)), axis=1)
    return perms, draws


def _reference_rdms(
    layers: dict[str, np.ndarray],
    regions: dict[str, list[np.ndarray]],
    metric: str,
    topological: bool,
    lower: float,
    upper: float,
) -> tuple[RDMs, dict[str, RDMs], float, float]:
    t = time.perf_counter()
    layer_rdms = calc_rdm([Dataset(f) for f in layers.values()], method=metric)
    region_rdms = {
        r: calc_rdm([Dataset(x) for x in xs], method=metric) for r, xs in regions.items()
    }
    rdm_s = time.perf_counter() - t
    gt_s = 0.0
    if topological:
        # rsatoolbox's transform pools the quantiles over all RDMs of the object: one call per RDM
        # for per-RDM thresholds. It also overwrites rescaled values above the raw upper threshold,
        # so each RDM is shifted by +1 first (the transform is invariant to the shift).
        def gt(rdms: RDMs) -> RDMs:
            return concat(
                [
                    geotopological_transform(
                        RDMs(rdms.dissimilarities[k : k + 1] + 1), lower, upper
                    )
                    for k in range(rdms.n_rdm)
                ]
            )

        t = time.perf_counter()
        layer_rdms = gt(layer_rdms)
        region_rdms = {r: gt(v) for r, v in region_rdms.items()}
        gt_s = time.perf_counter() - t
    return layer_rdms, region_rdms, rdm_s, gt_s


def bench_end_to_end(
    rng: np.random.Generator,
    sizes: tuple[int, int, int, int, int, int],
    n_perm: int,
    n_boot: int,
    n_ref: int,
    repeats: int,
) -> None:
    n, n_layers, n_regions, n_subjects, n_voxels, _ = sizes
    layers, regions = make_study(rng, *sizes)
    method, seed = "spearman", 0
    perms, draws = _draws_of(seed, n, n_perm, n_boot)
    scale = n_perm / n_ref
    print(
        f"\nend to end: {n} stimuli, {n_layers} layers x {n_regions} regions x {n_subjects} "
        f"subjects ({n_voxels} voxels), {method}, {n_perm} permutations, {n_boot} bootstrap "
        f"draws, noise ceiling; rsatoolbox runs {n_ref} of the permutations and of the draws per "
        f"region and is extrapolated x{scale:g}",
        flush=True,
    )
    totals = {"ref": 0.0, "ours": 0.0}
    for topological in (False, True):
        ref_total, ours_total = _end_to_end_pass(
            topological, layers, regions, perms, draws, sizes, n_perm, n_boot, n_ref, repeats
        )
        totals["ref"] += ref_total
        totals["ours"] += ours_total
    print(
        f"  RSA + tRSA end to end: rsatoolbox {totals['ref']:.0f} s (extrapolated), brainalign "
        f"{totals['ours']:.1f} s: x{totals['ref'] / totals['ours']:.1f}",
        flush=True,
    )
    ROWS.append(
        ("RSA + tRSA end to end", f"{n} stim, extrapolated", totals["ref"], totals["ours"], np.nan)
    )


def _end_to_end_pass(
    topological: bool,
    layers: dict[str, np.ndarray],
    regions: dict[str, list[np.ndarray]],
    perms: np.ndarray,
    draws: np.ndarray,
    sizes: tuple[int, int, int, int, int, int],
    n_perm: int,
    n_boot: int,
    n_ref: int,
    repeats: int,
) -> tuple[float, float]:
    """One analysis (RSA or tRSA) by both libraries; prints its rows, returns the total times."""
    n, n_layers, n_regions, n_subjects, _, _ = sizes
    metric, method, lower, upper, seed = "correlation", "spearman", 0.1, 0.9, 0
    scale = n_perm / n_ref
    label = "tRSA" if topological else "RSA "
    # --- brainalign: one call, its stages timed inside it (the resampling ones reported)
    stage: dict[str, float] = {}
    t = time.perf_counter()
    with _stage_timers(stage):
        table = compare_layers_regions(
            layers,
            regions,
            method=method,
            rdm_metric=metric,
            n_permutations=n_perm,
            n_bootstrap=n_boot,
            topological=topological,
            lower=lower,
            upper=upper,
            seed=seed,
        )
    ours_total = time.perf_counter() - t
    # the cheap stages again on their own, best of `repeats` for both libraries in turn
    # (single timings of short stages drift on shared machines)
    patterns = list(layers.values()) + [x for xs in regions.values() for x in xs]
    ref: dict[str, float] = {"rdms": np.inf, "gt": 0.0}
    for _ in range(repeats):
        layer_rdms, region_rdms, rdm_s, gt_s = _reference_rdms(
            layers, regions, metric, topological, lower, upper
        )
        ref["rdms"] = min(ref["rdms"], rdm_s)
        ref["gt"] = min(ref["gt"], gt_s) if ref["gt"] else gt_s
    stage["rdms"], all_rdms = best_time(lambda: compute_rdms(patterns, metric), repeats)
    if topological:
        raw = all_rdms
        stage["gt"], all_rdms = best_time(lambda: geotopological(raw, lower, upper), repeats)
    lr, data = all_rdms[:n_layers], all_rdms[n_layers:]
    models = [ModelFixed(name, layer_rdms[k]) for k, name in enumerate(layers)]
    ref["values"], ref_values = best_time(
        lambda: {
            r: np.mean([compare(m.predict_rdm(), v, method=method)[0] for m in models], axis=1)
            for r, v in region_rdms.items()
        },
        repeats,
    )
    stage["values"], _ = best_time(lambda: compare_rdms(data, lr, method), repeats)
    ref["ceiling"], ref_ceiling = best_time(
        lambda: {r: boot_noise_ceiling(v, method=method) for r, v in region_rdms.items()},
        repeats,
    )
    stage["ceiling"], _ = best_time(
        lambda: [
            noise_ceiling(data[r * n_subjects : (r + 1) * n_subjects], method)
            for r in range(n_regions)
        ],
        repeats,
    )
    # --- rsatoolbox's permutations and bootstrap (a fraction, extrapolated)
    t = time.perf_counter()
    ref_null = {
        r: np.stack(
            [compare(permute_rdms(v, p), layer_rdms, method=method).mean(0) for p in perms[:n_ref]]
        )
        for r, v in region_rdms.items()
    }
    ref["perm"] = (time.perf_counter() - t) * scale
    # eval_bootstrap_pattern's loop with the same draws, all models compared in one call
    # (eval_bootstrap_pattern compares model by model, which is slower)
    t = time.perf_counter()
    ref_boot = {
        r: np.stack(
            [
                compare(
                    layer_rdms.subsample_pattern("index", d),
                    v.subsample_pattern("index", d),
                    method=method,
                ).mean(1)
                for d in draws[:n_ref]
            ]
        )
        for r, v in region_rdms.items()
    }
    ref["boot"] = (time.perf_counter() - t) * scale
    ref_total = sum(ref.values())

    # --- checks where the quantities are the same
    diff = {"values": 0.0, "ceiling": 0.0, "perm": 0.0, "boot": 0.0}
    for k, region in enumerate(region_rdms):
        rows = table[table["region"] == region]
        diff["values"] = max(diff["values"], np.abs(rows["value"] - ref_values[region]).max())
        lo, hi = ref_ceiling[region]
        diff["ceiling"] = max(
            diff["ceiling"],
            abs(rows["noise_ceiling_low"].iloc[0] - lo),
            abs(rows["noise_ceiling_high"].iloc[0] - hi),
        )
        sub = data[k * n_subjects : (k + 1) * n_subjects]
        null = permutation_test(
            sub, lr, method, n_permutations=n_ref, average=True, seed=_perm_seed(seed)
        ).null
        diff["perm"] = max(diff["perm"], np.abs(null - ref_null[region]).max())
        ev = bootstrap(sub, lr, method, stimulus_draws=draws[:n_ref]).evaluations
        diff["boot"] = max(diff["boot"], np.nanmax(np.abs(ev - ref_boot[region])))
    # the layers' RDMs (after the transform in tRSA)
    diff["gt" if topological else "rdms"] = np.abs(
        np.asarray(all_rdms[:n_layers]) - layer_rdms.get_vectors()
    ).max()
    for key, name in (
        ("rdms", f"{n_layers + n_regions * n_subjects} RDMs ({metric})"),
        ("gt", "geo-topological transform"),
        ("values", "comparisons (subject means)"),
        ("ceiling", "noise ceilings"),
        ("perm", f"{n_perm} permutations"),
        ("boot", f"{n_boot} bootstrap draws"),
    ):
        if key not in stage:
            continue
        note = " (extrapolated)" if key in ("perm", "boot") and scale != 1 else ""
        row(f"{label} {name}", f"{n} stim{note}", ref[key], stage[key], diff.get(key, np.nan))
    row(
        f"{label} end to end (one call)",
        f"{n} stim, extrapolated",
        ref_total,
        ours_total,
        np.nan,
    )
    return ref_total, ours_total


@contextlib.contextmanager
def _stage_timers(stage: dict[str, float]) -> Iterator[None]:
    """Time the stages of compare_layers_regions by wrapping the functions it calls."""
    from brainalign.rsa import layers as mod

    keys = {
        "compute_rdms": "rdms",
        "geotopological": "gt",
        "compare_rdms": "values",
        "noise_ceiling": "ceiling",
        "_null": "perm",  # the permutation null of every region
        "_stimulus_bootstrap": "boot",  # the bootstrap of every region
    }
    originals = {name: getattr(mod, name) for name in keys if hasattr(mod, name)}

    def timed(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stage[key] = stage.get(key, 0.0) + time.perf_counter() - t

        return wrapper

    for name, fn in originals.items():
        setattr(mod, name, timed(fn, keys[name]))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(mod, name, fn)


def _perm_seed(seed: int) -> int:
    return int(np.random.default_rng(seed).integers(0, 2**63 - 1, size=2)[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument(
        "--end-to-end", action="store_true", help="only the end-to-end layers-vs-regions analysis"
    )
    parser.add_argument(
        "--gpu-rdm",
        action="store_true",
        help="only the GPU-scale RDM: 10,000 stimuli x 100,000 features, float32, on CUDA "
        "(skipped without a CUDA device); with --quick 2,000 x 20,000",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.gpu_rdm:
        bench_gpu_rdm(*((2000, 20_000) if args.quick else (10_000, 100_000)))
        print_table()
        return
    rng = np.random.default_rng(0)
    # (stimuli, layers, regions, subjects, voxels, features), permutations, draws, rsatoolbox's
    e2e = (
        ((100, 6, 3, 4, 150, 128), 200, 200, 20)
        if args.quick
        else ((500, 20, 10, 5, 300, 512), 1000, 1000, 10)
    )
    if args.end_to_end:
        print(f"brainalign.rsa vs rsatoolbox ({'quick' if args.quick else 'full'} sizes)")
        bench_end_to_end(rng, *e2e, args.repeats)
        print_table()
        return
    if args.quick:
        sizes = {
            "rdm": (500, 2000),
            "xnobis": (200, 500),
            "compare": 200,
            "perm": (100, 1000, 1000),
            "boot": (40, 1000),
            "dual": (40, 10, 1000, 20),
            "gt": 200,
        }
    else:
        sizes = {
            "rdm": (2000, 10000),
            "xnobis": (1000, 2000),
            "compare": 500,
            "perm": (200, 1000, 200),
            "boot": (100, 1000),
            "dual": (100, 20, 1000, 10),
            "gt": 500,
        }
    print(f"brainalign.rsa vs rsatoolbox ({'quick' if args.quick else 'full'} sizes)")
    bench_rdms(rng, *sizes["rdm"], args.repeats)
    bench_crossnobis(rng, *sizes["xnobis"], args.repeats)
    bench_compare(rng, sizes["compare"], args.repeats)
    bench_permutations(rng, *sizes["perm"])
    bench_bootstrap(rng, *sizes["boot"])
    bench_dual_bootstrap(rng, *sizes["dual"])
    bench_geotopological(rng, sizes["gt"], args.repeats)
    bench_end_to_end(rng, *e2e, args.repeats)
    print_table()


def print_table() -> None:
    print("\n| operation | size | rsatoolbox (s) | brainalign (s) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name, size, ref_s, ours_s, diff in ROWS:
        print(
            f"| {name.strip()} | {size} | {ref_s:.3f} | {ours_s:.4f} | {ref_s / ours_s:.1f}x "
            f"| {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
