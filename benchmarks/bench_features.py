"""Images per second for feature extraction, cache cold and warm (EfficientNet-Lite0).

Stimuli: seeded 224 × 224 crops of scikit-image's natural images, written as PNG files (so the
timings include decoding). Rows:

* ``plain loop``   — reference: PIL decode + the model's transform + ``model(x)`` in batches,
  no hooks, no cache, nothing written;
* ``cold``         — :func:`brainalign.targets.extract_features` into an empty cache: hashing,
  decoding, forward with hooks, pooling, streaming the features into the cache file;
* ``warm``         — the same call again: hashing the files and loading (and verifying the
  sha256 of) the cache entry, no forward pass.

Run ``python benchmarks/bench_features.py`` (200 images) or ``--quick`` (48); each row is the
best of ``--repeat`` runs (2), since shared CPUs make single timings noisy. On a machine with
CUDA every row is repeated on the GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_crops(folder: Path, n_images: int, size: int = 224, seed: int = 0) -> list[Path]:
    from PIL import Image
    from skimage import data

    sources = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
        data.colorwheel(),
        data.retina(),
        np.stack([data.camera()] * 3, -1),
        np.stack([data.moon()] * 3, -1),
    ]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_images):
        img = sources[i % len(sources)]
        y = rng.integers(0, img.shape[0] - size + 1)
        x = rng.integers(0, img.shape[1] - size + 1)
        path = folder / f"crop{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(img[y : y + size, x : x + size, :3])).save(path)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], device: str, batch_size: int) -> float:
    import torch
    from PIL import Image

    from brainalign.targets import load_vision_model

    vm = load_vision_model("efficientnet_lite0")
    model = vm.module.to(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            x = torch.stack(
                [vm.transform(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]]
            )
            model(x.to(device)).cpu()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return time.perf_counter() - start


def ours(paths: list[Path], cache_dir: Path, device: str, batch_size: int, layers: list[str]):
    from brainalign.targets import extract_features

    start = time.perf_counter()
    feats = extract_features(
        "efficientnet_lite0",
        layers,
        paths,
        cache_dir=cache_dir,
        device=device,
        batch_size=batch_size,
        verbose=False,
    )
    return time.perf_counter() - start, feats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="48 images instead of 200")
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    n = args.n_images or (48 if args.quick else 200)

    import torch

    from brainalign.targets import load_vision_model

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    layers = ["blocks.5", "classifier"]
    t0 = time.perf_counter()
    load_vision_model("efficientnet_lite0")
    t_load = time.perf_counter() - t0
    print(
        f"EfficientNet-Lite0, {n} PNG crops of 224 px, batch {args.batch_size}, layers "
        f"{layers} (avg pooling); torch {torch.__version__}, {torch.get_num_threads()} CPU "
        f"threads; model + weights checksum load: {t_load:.2f} s (counted in ours)"
    )
    print(f"{'device':<8} {'run':<12} {'seconds':>9} {'images/s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crops"
        folder.mkdir()
        paths = make_crops(folder, n)
        for device in devices:
            plain_loop(paths[: args.batch_size], device, args.batch_size)  # warm-up kernels
            best = {"plain loop": float("inf"), "cold": float("inf"), "warm": float("inf")}
            for r in range(args.repeat):  # interleaved, so load from others hits all rows
                best["plain loop"] = min(
                    best["plain loop"], plain_loop(paths, device, args.batch_size)
                )
                cache = Path(tmp) / f"cache-{device}-{r}"  # empty: cold
                t, cold = ours(paths, cache, device, args.batch_size, layers)
                best["cold"] = min(best["cold"], t)
                t, warm = ours(paths, cache, device, args.batch_size, layers)
                best["warm"] = min(best["warm"], t)
                if any(cold.from_cache.values()) or not all(warm.from_cache.values()):
                    raise RuntimeError("the cold run hit the cache or the warm run missed it")
            for run, t in best.items():
                print(f"{device:<8} {run:<12} {t:9.2f} {n / t:10.1f}")


if __name__ == "__main__":
    main()
