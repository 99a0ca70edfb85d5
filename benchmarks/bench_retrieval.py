"""Exact top-k retrieval: brainalign's streaming search against FAISS ``IndexFlatIP``.

Two workloads, both exact (brute force) inner-product top-10 over unit-norm float32 vectors:

* 1,000 queries × 1,000,000 gallery items, D = 512 (compute bound: 1.02 TFLOP);
* 1 query × 1,000,000 items (memory bound: the 2 GB gallery is read once).

Every method runs in the same process, interleaved, ``--repeats`` times; the table shows the best
time of each and its ratio to FAISS from the same run (the machine is shared, so only ratios
measured together are meaningful). Results are checked against FAISS: the same indices except
where two candidates' scores tie within float32 rounding, scores within 1e-5 relative.

Usage::

    python benchmarks/bench_retrieval.py            # full size (needs ~5 GB of RAM)
    python benchmarks/bench_retrieval.py --quick    # 100,000 gallery items
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from brainalign.evaluate.retrieval import ranks, search_topk

RANKS = "brainalign ranks (dot)"


def _unit_rows(rng: np.random.Generator, n: int, dim: int, block: int = 100_000) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, block):
        x = rng.standard_normal((min(block, n - start), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + len(x)] = x
    return out


def _agreement(scores: np.ndarray, indices: np.ndarray, ref_s: np.ndarray, ref_i: np.ndarray):
    """(fraction of identical indices, identical up to ties?, max relative score difference)."""
    same = indices == ref_i
    rel = np.abs(scores.astype(np.float64) - ref_s) / np.maximum(np.abs(ref_s), 1e-12)
    # A differing index is a tie when both methods' scores at that place agree to rounding.
    ties_only = bool(np.all(same | (rel <= 1e-5)))
    return float(same.mean()), ties_only, float(rel.max())


def _timed(fn: Callable[[], tuple], results: dict, name: str) -> None:
    """Run ``fn`` once, append its time to ``results[name]`` and keep its output."""
    t0 = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - t0
    results.setdefault(name, {"times": [], "out": out})["times"].append(elapsed)
    results[name]["out"] = out


def run(n_gallery: int, n_queries: int, dim: int, k: int, repeats: int, torch_rows: bool) -> None:
    import faiss

    rng = np.random.default_rng(0)
    print(f"generating {n_gallery:,} × {dim} gallery (float32, unit rows) …", flush=True)
    gallery = _unit_rows(rng, n_gallery, dim)
    queries = _unit_rows(rng, n_queries, dim)
    index = faiss.IndexFlatIP(dim)
    index.add(gallery)
    print(
        f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads); "
        f"{repeats} interleaved repeats, best time shown\n",
        flush=True,
    )

    workloads = [(f"{n_queries:,} queries", queries), ("1 query", queries[:1])]
    rows = []
    for label, q in workloads:
        methods: dict[str, Callable[[], tuple]] = {
            "faiss IndexFlatIP": lambda q=q: index.search(q, k),
            "brainalign dot": lambda q=q: search_topk(q, gallery, k, similarity="dot"),
            "brainalign cosine": lambda q=q: search_topk(q, gallery, k, similarity="cosine"),
        }
        if torch_rows:
            methods["brainalign dot, torch backend"] = lambda q=q: search_topk(
                q, gallery, k, similarity="dot", backend="torch"
            )
        results: dict = {}
        for rep in range(repeats):
            for name, fn in methods.items():
                _timed(fn, results, name)
            if rep == 0 and len(q) > 1:
                # Exact rank of a given item (here FAISS's 5th best, so the rank must be 5).
                fifth = results["faiss IndexFlatIP"]["out"][1][:, 4]
                methods[RANKS] = lambda q=q, t=fifth: ranks(q, gallery, t, similarity="dot")
        ref_s, ref_i = results["faiss IndexFlatIP"]["out"]
        t_ref = min(results["faiss IndexFlatIP"]["times"])
        flops = 2.0 * len(q) * n_gallery * dim
        for name, res in results.items():
            t = min(res["times"])
            if name == RANKS:
                agree = np.mean(res["out"] == 5)
                rate = f"{flops / t / 1e9:,.1f}"
                speed = f"{t_ref / t:.2f}×"
                rows.append(
                    (label, name, f"{t * 1e3:,.0f}", rate, "", speed, f"rank=5: {agree:.4f}", "")
                )
                continue
            s, i = res["out"]
            same, ties_only, rel = _agreement(s, i, ref_s, ref_i)
            rows.append(
                (
                    label,
                    name,
                    f"{t * 1e3:,.0f}",
                    f"{flops / t / 1e9:,.1f}",
                    f"{n_gallery * dim * 4 / t / 1e9:,.1f}",
                    f"{t_ref / t:.2f}×",
                    f"{same:.4f}" + ("" if ties_only else " MISMATCH"),
                    f"{rel:.1e}",
                )
            )
    header = (
        "workload",
        "method",
        "best ms",
        "GFLOP/s",
        "GB/s (gallery)",
        "speed vs faiss",
        "same idx",
        "max rel Δscore",
    )
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    for r in rows:
        print(fmt.format(*r))
    print(
        "\n'same idx': fraction of top-k indices identical to FAISS (differences only where "
        "scores tie to float32 rounding unless marked MISMATCH)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 gallery items")
    parser.add_argument("--n-gallery", type=int, default=None)
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--torch", action="store_true", help="also time the torch backend on the CPU"
    )
    args = parser.parse_args()
    n_gallery = args.n_gallery or (100_000 if args.quick else 1_000_000)
    run(n_gallery, args.n_queries, args.dim, args.k, args.repeats, args.torch)


if __name__ == "__main__":
    main()
