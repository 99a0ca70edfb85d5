"""InfoNCE forward + backward: brainalign.losses.clip_loss against open_clip's ClipLoss.

Times one forward + backward of the symmetric CLIP loss (batch ``B``, dimension 768, float32,
L2-normalised inputs, learnable scale) for open_clip's ``ClipLoss``, our ``clip_loss`` (one logit
product used both ways) and our chunked ``clip_loss(chunk_size=...)``, in the same run, and
measures the peak memory of each:

* CPU: each measurement runs in a fresh subprocess with glibc's mmap threshold pinned
  (``MALLOC_MMAP_THRESHOLD_``) so that freed blocks go back to the OS; the peak resident set
  (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident set before the call;
* CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.

The analytic memory model (float32 numbers; ``C`` the chunk size) is printed next to it:

* open_clip: two ``B × B`` logit matrices and their two log-softmax outputs live at once
  (``4 B²``), plus the scaled feature copies (``2 B D``);
* ours: the logits kept for backward (``B²``), reduced in slabs of ``S = min(1024, B)`` rows
  with two slab-sized temporaries (``2 S B``), plus ``4 B D`` (the two gradient accumulators,
  scaled in place, and the gradients of the positive-pair term);
* ours, chunked: three ``C × C`` blocks and the same ``4 B D``: linear in ``B``.

From the measured peaks it fits ``a B² + b B + c`` per implementation and reports the largest
batch fitting in ``--budget-gib`` GiB. Run ``python benchmarks/bench_losses.py --quick``; other
people share the machine, so compare the ratios measured in one run, not absolute times (the
``cpu`` ratios use the process's CPU time, which other jobs disturb less; ``--threads 1`` helps
too).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

IMPLS = ("open_clip", "ours", "ours_chunked")
_SLAB_ROWS = 1024  # brainalign.losses._blockwise reduces a kept logit matrix 1024 rows at a time


def _loss_fn(impl: str, chunk_size: int) -> Callable[..., torch.Tensor]:
    if impl == "open_clip":
        from open_clip.loss import ClipLoss

        loss = ClipLoss()
        return lambda x, y, s: loss(x, y, s)
    from brainalign.losses import clip_loss

    chunk = chunk_size if impl == "ours_chunked" else None
    return lambda x, y, s: clip_loss(x, y, s, chunk_size=chunk)


def _inputs(n: int, dim: int, device: torch.device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1).to(device)
    y = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1).to(device)
    log_scale = torch.tensor(math.log(1 / 0.07), device=device, requires_grad=True)
    return x.requires_grad_(), y.requires_grad_(), log_scale


def _step(fn, x, y, log_scale) -> None:
    x.grad = y.grad = log_scale.grad = None
    fn(x, y, log_scale.exp()).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_impls(
    n: int, dim: int, chunk_size: int, repeats: int, device: torch.device
) -> dict[str, dict[str, float]]:
    """Seconds of forward + backward, implementations interleaved.

    ``wall``/``wall_median``: best and median wall-clock time; ``cpu``: best CPU time of this
    process (all its threads), less sensitive to other people's jobs on a shared machine.
    """
    x, y, log_scale = _inputs(n, dim, device)
    fns = {impl: _loss_fn(impl, chunk_size) for impl in IMPLS}
    wall: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    cpu: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for impl in IMPLS:  # warm-up
        _step(fns[impl], x, y, log_scale)
    for _ in range(repeats):
        for impl in IMPLS:
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            _step(fns[impl], x, y, log_scale)
            _sync(device)
            wall[impl].append(time.perf_counter() - start)
            cpu[impl].append(time.process_time() - start_cpu)
    return {
        impl: {
            "wall": min(wall[impl]),
            "wall_median": statistics.median(wall[impl]),
            "cpu": min(cpu[impl]),
        }
        for impl in IMPLS
    }


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _measure_cpu_peak_here(impl: str, n: int, dim: int, chunk_size: int) -> int:
    """Run inside the measuring subprocess: bytes above the resident set before the call."""
    device = torch.device("cpu")
    fn = _loss_fn(impl, chunk_size)
    x, y, log_scale = _inputs(n, dim, device)
    _step(fn, x, y, log_scale)  # one-time allocations (thread pools, BLAS buffers)
    x.grad = y.grad = log_scale.grad = None
    gc.collect()
    base = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
        refs.write("5")
    _step(fn, x, y, log_scale)
    return 1024 * (_rss_kib("VmHWM") - base)


def measure_cpu_peak(impl: str, n: int, dim: int, chunk_size: int) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="2")
    command = [sys.executable, __file__, "--_measure", impl, str(n), str(dim), str(chunk_size)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def measure_cuda_peak(impl: str, n: int, dim: int, chunk_size: int, device: torch.device) -> int:
    fn = _loss_fn(impl, chunk_size)
    x, y, log_scale = _inputs(n, dim, device)
    _step(fn, x, y, log_scale)
    x.grad = y.grad = log_scale.grad = None
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    _step(fn, x, y, log_scale)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def model_bytes(impl: str, n: int, dim: int, chunk_size: int) -> float:
    """The analytic peak (float32) described in the module docstring."""
    if impl == "open_clip":
        floats = 4 * n * n + 2 * n * dim
    elif impl == "ours":
        floats = n * n + 2 * min(_SLAB_ROWS, n) * n + 4 * n * dim
    else:
        c = min(chunk_size, n)
        floats = 3 * c * c + 4 * n * dim
    return 4.0 * floats


def largest_batch(coef: np.ndarray, budget: float) -> float:
    """Largest ``B`` with ``a B² + b B + c <= budget`` (coefficients ``[a, b, c]``)."""
    a, b, c = coef
    if a <= 1e-12 * max(abs(b), 1.0):
        return (budget - c) / b
    return (-b + math.sqrt(b * b + 4 * a * (budget - c))) / (2 * a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batches 256, 1024, 4096 only")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-gib", type=float, default=4.0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--skip-memory", action="store_true", help="time only")
    parser.add_argument("--_measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        impl, n, dim, chunk = args._measure
        print(_measure_cpu_peak_here(impl, int(n), int(dim), int(chunk)))
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    batches = [256, 1024, 4096] if args.quick else [256, 1024, 2048, 4096, 8192, 16384]
    print(
        f"device={device} threads={torch.get_num_threads()} dim={args.dim} "
        f"chunk_size={args.chunk_size} repeats={args.repeats} torch={torch.__version__}"
    )
    header = (
        f"{'B':>6} | {'open_clip s':>11} {'ours s':>8} {'chunked s':>9} | "
        f"{'oc/ours':>7} {'oc/chunk':>8} | {'cpu oc/ours':>11} {'oc/chunk':>8} | "
        f"{'peak MiB oc':>11} {'ours':>8} {'chunked':>8} | "
        f"{'model MiB oc':>12} {'ours':>8} {'chunked':>8}"
    )
    print(header)
    print("-" * len(header))
    mib = 2.0**20
    peaks: dict[str, list[tuple[int, float]]] = {impl: [] for impl in IMPLS}
    rows = []
    for n in batches:
        times = time_impls(n, args.dim, args.chunk_size, args.repeats, device)
        peak = {impl: float("nan") for impl in IMPLS}
        for impl in IMPLS if not args.skip_memory else ():
            if device.type == "cuda":
                peak[impl] = measure_cuda_peak(impl, n, args.dim, args.chunk_size, device)
            else:
                peak[impl] = measure_cpu_peak(impl, n, args.dim, args.chunk_size)
            peaks[impl].append((n, peak[impl]))
        best = {impl: times[impl]["wall"] for impl in IMPLS}
        cpu = {impl: times[impl]["cpu"] for impl in IMPLS}
        model = {impl: model_bytes(impl, n, args.dim, args.chunk_size) for impl in IMPLS}
        print(
            f"{n:>6} | {best['open_clip']:>11.4f} {best['ours']:>8.4f} "
            f"{best['ours_chunked']:>9.4f} | "
            f"{best['open_clip'] / best['ours']:>7.2f} "
            f"{best['open_clip'] / best['ours_chunked']:>8.2f} | "
            f"{cpu['open_clip'] / cpu['ours']:>11.2f} "
            f"{cpu['open_clip'] / cpu['ours_chunked']:>8.2f} | "
            f"{peak['open_clip'] / mib:>11.1f} {peak['ours'] / mib:>8.1f} "
            f"{peak['ours_chunked'] / mib:>8.1f} | {model['open_clip'] / mib:>12.1f} "
            f"{model['ours'] / mib:>8.1f} {model['ours_chunked'] / mib:>8.1f}",
            flush=True,
        )
        rows.append({"batch": n, "seconds": times, "peak_bytes": peak, "model_bytes": model})
    if args.skip_memory:
        return
    budget = args.budget_gib * 2.0**30
    print(f"\nlargest batch within {args.budget_gib:g} GiB (peak above the inputs):")
    fits = {}
    for impl in IMPLS:
        n_values = np.array([n for n, _ in peaks[impl]], dtype=float)
        bytes_ = np.array([p for _, p in peaks[impl]], dtype=float)
        if impl == "ours_chunked":  # linear beyond one block
            slope, intercept = np.polyfit(n_values, bytes_, 1)
            coef = np.array([0.0, max(slope, 1.0), intercept])
        else:
            coef = np.linalg.lstsq(np.stack([n_values**2, n_values], axis=1), bytes_, rcond=None)[0]
            coef = np.array([coef[0], coef[1], 0.0])
        model_coef = {  # bytes, for batches above one slab / one chunk
            "open_clip": [16.0, 8.0 * args.dim, 0.0],
            "ours": [4.0, 8.0 * _SLAB_ROWS + 16.0 * args.dim, 0.0],
            "ours_chunked": [0.0, 16.0 * args.dim, 12.0 * args.chunk_size**2],
        }[impl]
        fits[impl] = (largest_batch(coef, budget), largest_batch(np.array(model_coef), budget))
        print(
            f"  {impl:>13}: measured-fit {fits[impl][0]:>12,.0f}   analytic {fits[impl][1]:>12,.0f}"
            f"   (fit: {coef[0]:.2f} B² + {coef[1]:.0f} B + {coef[2] / mib:.1f} MiB bytes)"
        )
    ratio = fits["ours_chunked"][0] / fits["open_clip"][0]
    ratio_model = fits["ours_chunked"][1] / fits["open_clip"][1]
    print(f"  chunked / open_clip: {ratio:.1f}x (measured fit), {ratio_model:.1f}x (analytic)")
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as handle:
            json.dump({"rows": rows, "largest_batch": fits}, handle, indent=1)


if __name__ == "__main__":
    main()
