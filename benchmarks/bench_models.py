"""Training throughput and peak memory of the brain encoders (forward + backward + AdamW step).

Configurations (``--quick`` shrinks every size so that the script runs in about a minute):

* ``mindeye1``: FMRIEncoder, 15,000 voxels → hidden 4,096 (4 residual blocks) → a pooled CLIP
  vector of 768, with the 2,048-wide projector; batch 32 (MindEye1's);
* ``brainmagick-speech``: MEEGEncoder, 208 channels (KIT-like montage), 3 s at 120 Hz = 360
  samples → 1,024 target channels at 120 Hz; batch 32 on the CPU, 256 (brainmagick's) on CUDA;
* ``brainmagick-pooled``: the same backbone to a pooled 768 vector.

The loss is the mean square of ``backbone`` and ``projected`` (the contrastive losses cost little
next to the encoders); AdamW is the fused implementation unless ``--optimizer foreach``. The
table gives the median over the timed steps of forward + backward and of the optimiser step.
Each measurement runs in a fresh subprocess. Peak memory is, on CUDA,
``torch.cuda.max_memory_allocated``; on the CPU, measured in a second subprocess with glibc's
mmap threshold pinned (``MALLOC_MMAP_THRESHOLD_``, so freed blocks go back to the OS): after a
first run that pages in the library code, the peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) of a second run above the resident set before it: weights,
gradients, AdamW's two moments and the activations. Run ``python benchmarks/bench_models.py
--quick``; on a busy shared machine add ``--threads 1`` (two OpenMP threads on two busy cores
stall at every barrier) and compare numbers from one run only. ``state MiB`` is the analytic
float32 training state, 16 bytes per parameter (weight, gradient, two AdamW moments); the peak
minus it is roughly the activations.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

CONFIGS = ("mindeye1", "brainmagick-speech", "brainmagick-pooled")


def kit_like_positions(n: int, seed: int = 0) -> np.ndarray:
    """``n`` sensors spread over the upper part of a 12 cm helmet (Fibonacci sphere)."""
    k = np.arange(n) + 0.5
    z = 1 - k / n * 1.2  # down to ~ -0.2: the helmet covers a little below the equator
    r = np.sqrt(np.clip(1 - z**2, 0, None))
    phi = math.pi * (1 + 5**0.5) * k
    return 0.12 * np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def setup(name: str, quick: bool, device: torch.device) -> tuple:
    """The model, a batch (x, subject, target) and the batch size."""
    from brainalign.models import build_model

    gen = torch.Generator().manual_seed(0)
    if name == "mindeye1":
        n_voxels, hidden, batch = (2000, 512, 16) if quick else (15000, 4096, 32)
        model = build_model("mindeye1", n_voxels=n_voxels, target_dim=768, hidden=hidden)
        x = torch.randn(batch, n_voxels, generator=gen)
    else:
        n_ch, n_times = (64, 120) if quick else (208, 360)
        small = {"n_heads": 64, "hidden": 64} if quick else {}
        batch = 8 if quick else (256 if device.type == "cuda" else 32)
        target = {"target_dim": 1024, "n_target_times": n_times}
        if name == "brainmagick-pooled":
            target = {"target_dim": 768}
        model = build_model(
            "brainmagick",
            n_times=n_times,
            sfreq=120.0,
            sensor_positions=kit_like_positions(n_ch),
            **target,
            **small,
        )
        x = torch.randn(batch, n_ch, n_times, generator=gen)
    return model.to(device), x.to(device), batch


def step(model, optimizer, x, device: torch.device) -> tuple[float, float]:
    """One training step; seconds of forward + backward and of the optimiser step."""
    sync(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    out = model(x, "0")
    loss = out.backbone.square().mean() + out.projected.square().mean()
    loss.backward()
    sync(device)
    middle = time.perf_counter()
    optimizer.step()
    sync(device)
    return middle - start, time.perf_counter() - middle


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def train(name: str, quick: bool, device: torch.device, optim: str, steps: int) -> tuple:
    """Build a model and its AdamW, run 2 warm-up steps then ``steps`` timed ones."""
    torch.manual_seed(0)
    model, x, batch = setup(name, quick, device)
    model.train()
    fused = {"fused": True} if optim == "fused" else {"foreach": True}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2, **fused)
    for _ in range(2):  # warm-up: allocations, AdamW state, kernels
        step(model, optimizer, x, device)
    times = [step(model, optimizer, x, device) for _ in range(steps)]
    return model, optimizer, batch, times


def measure_here(
    what: str, name: str, device_name: str, quick: bool, steps: int, optim: str
) -> dict:
    """Runs in the measuring subprocess: ``what`` is ``"time"`` or ``"memory"``."""
    device = torch.device(device_name)
    if what == "memory" and device.type == "cpu":
        # a first run pages in the library code and kernels; its memory goes back to the OS
        # (MALLOC_MMAP_THRESHOLD_), so that the second run counts only its own allocations
        train(name, quick, device, optim, steps=0)
        gc.collect()
        base = rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
            refs.write("5")
        train(name, quick, device, optim, steps=1)
        return {"peak_bytes": 1024 * (rss_kib("VmHWM") - base)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    model, _, batch, times = train(name, quick, device, optim, steps)
    model_s, optim_s = np.median(np.array(times), axis=0)
    out = {
        "model": name,
        "device": device_name,
        "batch": batch,
        "params": sum(p.numel() for p in model.parameters()),
        "model_s": model_s,
        "optim_s": optim_s,
        "samples_per_s": batch / (model_s + optim_s),
    }
    if device.type == "cuda":
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
    return out


def measure(name: str, device: str, quick: bool, steps: int, optim: str, threads: int) -> dict:
    """Time in one fresh subprocess; on the CPU, memory in another (see the docstring)."""
    result = {}
    for what in ("time", "memory") if device == "cpu" else ("time",):
        env = dict(os.environ)
        if what == "memory":
            env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="2")
        command = [sys.executable, __file__, "--_measure", what, name, device, str(int(quick))]
        command += [str(steps), optim, str(threads)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (see the docstring)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3 / 10)")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda when present)")
    parser.add_argument("--models", nargs="*", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument(
        "--optimizer",
        default="fused",
        choices=("fused", "foreach"),
        help="AdamW implementation (fused is ~7x faster on this CPU for large models)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="CPU threads (on a busy shared machine 1 thread avoids OpenMP barrier stalls)",
    )
    parser.add_argument("--_measure", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        what, name, device, quick, steps, optim, threads = args._measure
        torch.set_num_threads(int(threads))
        result = measure_here(what, name, device, bool(int(quick)), int(steps), optim)
        print(json.dumps(result))
        return
    steps = args.steps or (3 if args.quick else 10)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    print(
        f"torch={torch.__version__} threads={args.threads} cpus={os.cpu_count()} "
        f"quick={args.quick} steps={steps} AdamW={args.optimizer} (median step; loadavg "
        f"{os.getloadavg()[0]:.1f})"
        + (f" gpu={torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    header = (
        f"{'model':<20} {'device':<6} {'batch':>5} {'params M':>9} {'fwd+bwd ms':>10} "
        f"{'AdamW ms':>9} {'samples/s':>10} {'peak MiB':>9} {'state MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for device in devices:
        for name in args.models:
            r = measure(name, device, args.quick, steps, args.optimizer, args.threads)
            print(
                f"{r['model']:<20} {r['device']:<6} {r['batch']:>5} {r['params'] / 1e6:>9.1f} "
                f"{1e3 * r['model_s']:>10.1f} {1e3 * r['optim_s']:>9.1f} "
                f"{r['samples_per_s']:>10.1f} {r['peak_bytes'] / 2**20:>9.0f} "
                f"{16 * r['params'] / 2**20:>9.0f}"
            )


if __name__ == "__main__":
    main()
