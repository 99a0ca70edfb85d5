"""Reconstruction costs: diffusion prior sampling and joint training, the stand-in image decoder,
the low-level path, a diffusers decoder.

Workloads (pooled 768-d embeddings, CLIP ViT-L/14's width):

* **prior sampling**, seconds per image: a MindEye-sized prior (width 768, depth 6, 12 heads) and
  a tiny one (width 64, depth 2), each with DDIM 10 and 50 steps and ancestral DDPM 100 steps,
  classifier-free guidance ``s = 3`` (two passes per step), random weights (the cost does not
  depend on them);
* **joint training step**: one step of :func:`brainalign.train.fit` (the loop's objective,
  forward, backward, gradient clipping, AdamW) of a MindEye2-style encoder (4 subjects of 3,000
  voxels, hidden 256, 768-d targets, batch 256) without a prior and with a prior trained
  jointly (``TrainConfig.prior_weight > 0``), seconds per step, so the prior's overhead reads
  off the ratio; the MindEye-sized prior only on CUDA (tens of seconds per step on one CPU
  thread);
* **low-level path**: fitting :class:`~brainalign.reconstruct.LowLevelDecoder` (2,000 trials of
  3,000 voxels → 16 px images, 8 penalties by 5-fold CV), seconds per fit; and the tiny
  Kandinsky pipeline's img2img start (``init_image``, ``strength=0.5``), seconds per image;
* **stand-in image decoder** (:mod:`brainalign.reconstruct.image_decoder`, 64 px, 128 channels):
  training seconds per epoch (per image in the table's note) and decoding seconds per image;
* **tiny Kandinsky 2.2 pipeline** (random components, as in ``tests/reconstruct``) through
  :class:`~brainalign.reconstruct.EmbeddingDecoder`: seconds per image at 32 and 64 px with 2
  and 10 steps. The real decoder is ~1,000x larger; this measures the wrapper and the pipeline's
  per-step overhead, not a real decoding cost.

Peak memory: the process's resident peak (``ru_maxrss``, cumulative, so it only grows) after each
workload, and on CUDA ``torch.cuda.max_memory_allocated`` per workload. Every workload runs on the
CPU (one torch thread unless ``--threads``), and on CUDA when available; each timing is the best
of the repeats after one warm-up.

Usage::

    python benchmarks/bench_reconstruct.py            # 64 images per workload, 3 repeats
    python benchmarks/bench_reconstruct.py --quick    # a few images, 1 repeat (~1 min on 2 CPUs)
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

DIM = 768
PRIORS = {
    "mindeye-sized (w768 d6)": dict(width=768, depth=6, n_heads=12),
    "tiny (w64 d2)": dict(width=64, depth=2, n_heads=4),
}
SAMPLERS = [("ddim", 10), ("ddim", 50), ("ddpm", 100)]


def _rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux: KiB; macOS: bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**2 if sys.platform == "darwin" else 1024)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _best(fn: Callable[[], Any], repeats: int, device: str) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, device: str, workload: str, setting: str, value: float, unit: str) -> None:
        row = {"device": device, "workload": workload, "setting": setting, "value": value,
               "unit": unit, "peak_rss_mib": _rss_mib()}  # fmt: skip
        if device.startswith("cuda"):
            row["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        self.rows.append(row)
        cuda = f"  cuda peak {row['cuda_peak_mib']:8.1f} MiB" if "cuda_peak_mib" in row else ""
        print(f"{device:5s} {workload:34s} {setting:42s} {value * 1e3:10.2f} ms{unit:10s}"
              f" rss peak {row['peak_rss_mib']:7.0f} MiB{cuda}", flush=True)  # fmt: skip


def bench_prior(table: Table, device: str, n_images: int, repeats: int) -> None:
    from brainalign.reconstruct import build_prior, sample

    cond = torch.randn(n_images, DIM)
    for name, size in PRIORS.items():
        prior = build_prior(target_dim=DIM, **size).to(device).eval()
        for kind, steps in SAMPLERS:
            t = _best(
                lambda p=prior, k=kind, s=steps: sample(
                    p, cond, num_inference_steps=s, scheduler=k, guidance_scale=3.0
                ),
                repeats,
                device,
            )
            table.add(device, f"prior {name}", f"{kind} {steps} steps, cfg 3", t / n_images,
                      "/image")  # fmt: skip
        del prior


def bench_image_decoder(
    table: Table, device: str, n_train: int, n_decode: int, epochs: int, repeats: int
) -> None:
    from brainalign.reconstruct import train_image_decoder

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n_train, DIM)).astype(np.float32)
    images = rng.random((n_train, 64, 64, 3), dtype=np.float32)
    holder: dict[str, Any] = {}

    def fit() -> None:
        holder["decoder"] = train_image_decoder(
            emb, images, image_size=64, channels=128, epochs=epochs, device=device, verbose=False
        )

    t = _best(fit, repeats, device)
    table.add(device, "stand-in decoder training", f"{n_train} images, 64 px", t / epochs,
              "/epoch")  # fmt: skip
    decoder = holder["decoder"]
    query = rng.standard_normal((n_decode, DIM)).astype(np.float32)
    t = _best(lambda: decoder.decode(query), repeats, device)
    table.add(device, "stand-in decoder decoding", f"batch {n_decode}, 64 px", t / n_decode,
              "/image")  # fmt: skip


def _tiny_kandinsky(dim: int) -> Any:
    from brainalign.reconstruct import random_kandinsky_pipeline

    return random_kandinsky_pipeline(dim)


def bench_kandinsky(table: Table, device: str, n_images: int, repeats: int) -> None:
    from brainalign.reconstruct import EmbeddingDecoder

    decoder = EmbeddingDecoder(_tiny_kandinsky(DIM)).to(device)
    emb = torch.randn(n_images, DIM)
    for size in (32, 64):
        for steps in (2, 10):
            t = _best(
                lambda s=size, n=steps: decoder(
                    emb, num_inference_steps=n, height=s, width=s, guidance_scale=4.0
                ),
                repeats,
                device,
            )
            table.add(device, "tiny Kandinsky 2.2 (random)", f"{size} px, {steps} steps, cfg 4",
                      t / n_images, "/image")  # fmt: skip


def bench_joint_step(table: Table, device: str, repeats: int) -> None:
    from brainalign.models import build_model
    from brainalign.reconstruct import build_joint_prior
    from brainalign.train import BrainTargetDataset, TrainConfig
    from brainalign.train.loop import _Objective, _optimizer, build_loss

    rng = np.random.default_rng(0)
    n_voxels, n_trials, batch = 3000, 256, 256
    subjects = [f"0{i}" for i in range(1, 5)]
    brain = {s: rng.standard_normal((n_trials // 4, n_voxels), dtype=np.float32) for s in subjects}
    ids = {s: rng.integers(0, 200, n_trials // 4) for s in subjects}
    data = BrainTargetDataset(brain, ids, rng.standard_normal((200, DIM)).astype(np.float32))
    step_batch = data.batch(torch.arange(batch)).to(device)
    priors: dict[str, dict[str, int] | None] = {
        "no prior": None,
        "joint prior tiny (w64 d2)": dict(width=64, depth=2, n_heads=4),
        "joint prior w256 d4": dict(width=256, depth=4, n_heads=8),
    }
    if device.startswith("cuda"):
        priors["joint prior mindeye-sized (w768 d6)"] = dict(width=768, depth=6, n_heads=12)
    for name, size in priors.items():
        config = TrainConfig(prior_weight=30.0 if size else 0.0, prior_kwargs=size or {})
        torch.manual_seed(0)
        model = build_model("mindeye2", n_voxels={s: n_voxels for s in subjects},
                            target_dim=DIM, hidden=256, n_blocks=1).to(device)  # fmt: skip
        prior = build_joint_prior(config, (DIM,)).to(device) if size else None
        objective = _Objective(model, build_loss(config), False, prior, config.prior_weight)
        objective.to(device).train()
        optimizer = _optimizer(objective.named_parameters(), config)
        params = [p for p in objective.parameters() if p.requires_grad]
        kw: dict[str, Any] = {}
        if size:
            kw = {"prior_seed": 0, "prior_rows": torch.arange(batch), "prior_n_rows": batch}

        def step(o: Any = objective, opt: Any = optimizer, ps: Any = params, k: Any = kw) -> None:
            b = step_batch
            out = o(b.x, b.subject, b.target, b.stimulus, **k)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(ps, 1.0)
            opt.step()
            float(out.loss.detach())

        t = _best(step, repeats, device)
        table.add(device, "joint training step", f"batch {batch}, {name}", t, "/step")


def bench_low_level(table: Table, device: str, n_kand: int, repeats: int) -> None:
    from brainalign.reconstruct import EmbeddingDecoder, LowLevelDecoder

    rng = np.random.default_rng(0)
    brain = rng.standard_normal((2000, 3000))
    images = rng.random((2000, 16, 16, 3), dtype=np.float32)
    alphas = list(np.logspace(0, 5, 8))
    t = _best(
        lambda: LowLevelDecoder(alpha=alphas, resolution=16, device=device).fit(brain, images),
        max(1, repeats - 2),
        device,
    )
    table.add(device, "low-level ridge fit", "2000 x 3000 -> 16 px, 8 alphas, 5-fold", t, "/fit")
    decoder = EmbeddingDecoder(_tiny_kandinsky(DIM)).to(device)
    emb = torch.randn(n_kand, DIM)
    init = rng.random((n_kand, 16, 16, 3), dtype=np.float32)
    t = _best(
        lambda: decoder(
            emb, init_image=init, strength=0.5, num_inference_steps=10, height=32, width=32
        ),
        repeats,
        device,
    )
    table.add(device, "tiny Kandinsky 2.2 img2img", "32 px, 10 steps, strength 0.5", t / n_kand,
              "/image")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images, one repeat")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core machine two threads of these "
        "small matrices were ~10x slower than one); 0: torch's default",
    )
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if available")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()

    if args.quick:
        n_prior, n_train, n_decode, epochs, n_kand, repeats = 8, 64, 32, 2, 2, 1
    else:
        n_prior, n_train, n_decode, epochs, n_kand, repeats = 64, 512, 64, 3, 4, 3
    devices = ["cpu"]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append("cuda")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices {devices}")
    print(f"prior: {n_prior} conditions per batch; stand-in decoder: {n_train} training images, "
          f"{epochs} epochs; Kandinsky: {n_kand} images per call; best of {repeats}\n")  # fmt: skip
    table = Table()
    for device in devices:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        bench_prior(table, device, n_prior, repeats)
        bench_joint_step(table, device, repeats)
        bench_image_decoder(table, device, n_train, n_decode, epochs, repeats)
        bench_low_level(table, device, n_kand, repeats)
        bench_kandinsky(table, device, n_kand, repeats)
    print("\nrss peak: the process's resident peak so far (cumulative); cuda peak: per workload.")


if __name__ == "__main__":
    main()
