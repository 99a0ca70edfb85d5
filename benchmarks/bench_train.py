"""Training samples/s, peak memory and data-pipeline speed of the fMRI and M/EEG encoders.

Configurations (``--quick`` shrinks them so that the script runs in a minute or two):

* ``fmri``: the MindEye2 recipe with 4 subjects of 15,000 voxels, each through its own linear
  adapter into hidden 4,096 (MindEye2's paper width), 4 pre-LN residual MLP blocks, a head to a
  pooled 768 target (CLIP ViT-L/14) and the token-wide projector; batches 32 and 64 (CPU);
* ``meeg-pooled``: the brainmagick recipe (spatial attention to 270 virtual channels, subject
  layers, 10 dilated convs at 320 with GLUs), 4 subjects, 208 channels (KIT-like montage), 3 s at
  120 Hz = 360 samples, to a pooled 768 vector; batch 32 (CPU), 64 and 256 (CUDA);
* ``meeg-speech``: the same to a time-resolved target of 1,024 channels (wav2vec 2.0 large) at
  120 Hz (360 samples).

**Training step**: the step of :func:`brainalign.train.fit`, built from the loop's own pieces
(``_Objective``: the model, normalised projected output against the normalised targets,
``ClipLoss`` with the stimulus ids as labels; bf16 autocast on CUDA as ``fit`` does; backward;
gradient-norm clipping; the loop's AdamW with its parameter groups and LR schedule; reading the
loss and its logged terms each step), on one batch of mixed subjects already on the device.
``--optimizer fused`` also times ``AdamW(fused=True)`` with the same groups. Median of the timed
steps after the warm-up ones. Each configuration runs in a fresh subprocess; peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and, on the CPU, the peak resident set (``VmHWM``,
reset through ``/proc/self/clear_refs``; ``ru_maxrss`` where that is refused) above the resident
set before the model is built, after a tiny replica has paged in the code: weights, gradients,
AdamW's moments and the activations. ``state MiB`` is the analytic float32 training state, 16
bytes per trainable parameter.

**Data pipeline**: what the repository's data path delivers onto the device for arrays of these
sizes, a :class:`~brainalign.train.BrainTargetDataset` of random trials (4 subjects, one target
per stimulus) in ``epoch_batches`` order: ``loop`` is what ``fit`` does, ``data.batch(indices)
.to(device)`` in the training thread; ``loader`` is a ``DataLoader`` with those batches as its
``batch_sampler``, ``collate_fn=data.collate``, ``num_workers`` 0 and 2 (CUDA: 0 and 4) and
``pin_memory`` on CUDA, copied with ``non_blocking=True``. Samples/s from the median time between
two batches (the copy finished); ``÷ step`` divides it by the fastest step's samples/s at the
same batch size: above 1 the pipeline outruns the model. ``fit`` builds its batches in the
training thread, so there a batch costs ``1 / (1 + ratio)`` of a step. ``pinned`` says whether the
loader's batches arrive in pinned memory on CUDA.

Run::

    python benchmarks/bench_train.py --threads 1 --configs fmri --optimizer loop fused
    python benchmarks/bench_train.py --threads 1 --configs meeg-pooled meeg-speech
    python benchmarks/bench_train.py --quick                     # a minute or two
    python benchmarks/bench_train.py --json train.json           # CUDA when present (auto)

Measured with the two commands above on the development machine: 2 CPU cores (AVX2) shared with
other people's jobs (load average 4-6 during the runs), **no GPU**, torch 2.14.1, one torch thread
(with two, every OpenMP barrier waits for a descheduled thread: in a run with ``--threads 2`` the
fMRI forward + backward took 4.8 s instead of 2.6 s at batch 32, the loop's AdamW on the M/EEG
model 888 ms instead of 48 ms, and building one fMRI batch ~150 ms instead of ~1 ms). These are
the numbers of one run under contention: the step times drift by up to 2x between runs and the
pipeline rates by up to 10x; compare within a run::

    config       batch AdamW  params M adapt. M fwd+bwd ms  optim ms  samples/s  peak MiB state MiB
    fmri            32  loop     385.0    245.8       2565      3515        5.5      6621      5874
    fmri            32 fused     385.0    245.8       3033       733        8.5      5904      5874
    fmri            64  loop     385.0    245.8       3087      4530        7.9      6634      5874
    fmri            64 fused     385.0    245.8       2680       574       19.7      5934      5874
    meeg-pooled     32  loop       7.7      0.3      12592        48        2.5      1452       118
    meeg-speech     32  loop       7.9      0.3      13737        50        2.3      1721       120

    config       batch path    workers  first s  samples/s    MB/s   ÷ step
    fmri            32 loop          0     0.01       6132     387    721.6
    fmri            32 loader        0     0.02      17418    1099   2049.7
    fmri            32 loader        2     0.19       2724     172    320.6
    fmri            64 loop          0     0.01      36823    2322   1872.4
    fmri            64 loader        0     0.00      10212     644    519.3
    fmri            64 loader        2     0.19      11620     733    590.9
    meeg-pooled     32 loop          0     0.04       3757    1137   1483.9
    meeg-pooled     32 loader        0     0.01       2245     679    886.8
    meeg-pooled     32 loader        2     0.34        706     214    278.8
    meeg-speech     32 loop          0     0.10        366     649    158.1
    meeg-speech     32 loader        0     0.07        321     569    138.3
    meeg-speech     32 loader        2     0.85        399     708    172.0

What they say:

* On this CPU the model step is the limit everywhere: the slowest data path delivered 138x the
  step's samples/s, so the pipeline is not what limits training here.
* ``fit``'s AdamW was torch's default when the table was measured, which on the CPU is the
  per-parameter for-loop ("loop" rows): 3.5-4.5 s a step on the 385 M-parameter fMRI model
  against 0.6-0.7 s fused, the whole step 1.6-2.3x slower, with ~750 MiB more temporaries (peak
  6.5 GiB instead of 5.8). ``fit`` now builds the fused AdamW on CPU and CUDA, so its step is the
  "fused" rows and ``--optimizer loop`` times the same optimizer as ``fused``.
* The four 15,000 → 4,096 adapters are 64 % of the fMRI model (61.4 M parameters each); its
  training state is 5.7 GiB and its activations are small (peak - state ≈ 30-60 MiB at batch
  32-64). The M/EEG model is the opposite: 7.7 M parameters, but ~42-50 MiB of activations per
  sample (1.3-1.6 GiB at batch 32), so batch 256 on a GPU needs on the order of 11-13 GiB in
  float32 (less under bf16 autocast).
* Not measured here (no GPU): whether the pipeline keeps up with a GPU step. The speech target
  makes a sample 1.8 MB (300 KB of MEG, 1.5 MB of target), and the speech path moved only
  ~0.6-0.7 GB/s on this shared CPU; ``fit`` builds its batches synchronously in the training
  thread, and ``DataLoader(pin_memory=True)`` leaves a :class:`~brainalign.train.data.Batch`
  unpinned (torch pins tensors, mappings, sequences and objects with a ``pin_memory()`` method;
  ``Batch`` is a dataclass without one), so the host-to-device copies are pageable and
  synchronous. Run this script on the GPU machine and read the ``÷ step`` and ``pinned`` columns.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONFIGS = ("fmri", "meeg-pooled", "meeg-speech")
SIZES = ("full", "quick", "tiny")


# ------------------------------------------------------------------- set-ups
@dataclass(frozen=True)
class Setup:
    """One benchmarked model and the shape of its data.

    Attributes
    ----------
    name : str
        ``"fmri"``, ``"meeg-pooled"`` or ``"meeg-speech"``.
    recipe : str
        Registered recipe of :func:`brainalign.models.build_model`.
    model_kwargs : dict
        Its constructor arguments (overriding the recipe's defaults).
    n_features : dict of str to int
        Voxels or channels of each subject.
    sample_shape : tuple of int
        Shape of a trial after the feature axis: ``()`` fMRI, ``(n_times,)`` M/EEG.
    target_shape : tuple of int
        Shape of one target.
    """

    name: str
    recipe: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    n_features: dict[str, int] = field(default_factory=dict)
    sample_shape: tuple[int, ...] = ()
    target_shape: tuple[int, ...] = (768,)


def _kit_like_positions(n: int) -> np.ndarray:
    """The KIT-like helmet of ``bench_models.py`` (imported by path: one copy of it)."""
    spec = importlib.util.spec_from_file_location(
        "_bench_models", Path(__file__).with_name("bench_models.py")
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.kit_like_positions(n)  # type: ignore[no-any-return]


def build_setup(name: str, size: str = "full", n_subjects: int = 4) -> Setup:
    """The benchmarked configuration ``name`` at ``size`` (``"full"``, ``"quick"``, ``"tiny"``).

    * ``fmri``: the MindEye2 recipe (per-subject linear adapters, 4 pre-LN residual MLP blocks,
      head, token-wide projector) with ``n_subjects`` subjects of 15,000 voxels, hidden 4,096
      (MindEye2's paper width), to a pooled 768 target (CLIP ViT-L/14);
    * ``meeg-pooled``: the brainmagick recipe (spatial attention to 270, subject layers, 10
      dilated convs at 320 with GLUs), 208 channels (KIT-like), 3 s at 120 Hz = 360 samples,
      to a pooled 768 vector;
    * ``meeg-speech``: the same to a time-resolved target, 1,024 channels (wav2vec 2.0 large)
      at 120 Hz (360 samples).
    """
    if name not in CONFIGS:
        raise ValueError(f"Invalid config {name!r}; allowed: {', '.join(CONFIGS)}.")
    if size not in SIZES:
        raise ValueError(f"Invalid size {size!r}; allowed: {', '.join(SIZES)}.")
    subjects = [f"{k + 1:02d}" for k in range(n_subjects)]
    if name == "fmri":
        n_voxels, kwargs = {
            "full": (15000, {"hidden": 4096, "target_dim": 768}),
            "quick": (2000, {"hidden": 512, "target_dim": 768}),
            "tiny": (37, {"hidden": 16, "n_blocks": 1, "target_dim": 8}),
        }[size]
        # the tiny size gives the subjects different voxel counts, so that padding is exercised
        counts = {s: n_voxels - (3 * k if size == "tiny" else 0) for k, s in enumerate(subjects)}
        return Setup(
            name,
            "mindeye2",
            {**kwargs, "n_voxels": counts},
            counts,
            (),
            (kwargs["target_dim"],),
        )
    n_channels, n_times, small = {
        "full": (208, 360, {}),
        "quick": (64, 120, {"n_heads": 64, "hidden": 64}),
        "tiny": (7, 24, {"n_heads": 6, "hidden": 8, "depth": 2, "n_freqs": 4}),
    }[size]
    dim = {"full": 768, "quick": 768, "tiny": 8}[size]
    if name == "meeg-pooled":
        target: dict[str, Any] = {"target_dim": dim}
        target_shape: tuple[int, ...] = (dim,)
    else:
        speech = {"full": 1024, "quick": 256, "tiny": 5}[size]
        target = {"target_dim": speech, "n_target_times": n_times}
        target_shape = (speech, n_times)
    layout = _kit_like_positions(n_channels)
    kwargs = {
        "n_times": n_times,
        "sfreq": 120.0,
        "sensor_positions": {s: layout for s in subjects},
        **target,
        **small,
    }
    return Setup(
        name,
        "brainmagick",
        kwargs,
        {s: n_channels for s in subjects},
        (n_times,),
        target_shape,
    )


def make_dataset(setup: Setup, n_trials: int, n_stimuli: int | None = None, seed: int = 0) -> Any:
    """A :class:`~brainalign.train.BrainTargetDataset` of ``n_trials`` random trials.

    The trials are split evenly among the subjects; trial ``i`` shows stimulus
    ``i % n_stimuli`` (default: one stimulus per trial).
    """
    from brainalign.train.data import BrainTargetDataset

    gen = torch.Generator().manual_seed(seed)
    subjects = list(setup.n_features)
    n_stimuli = n_trials if n_stimuli is None else n_stimuli
    brain, ids, start = {}, {}, 0
    for k, s in enumerate(subjects):
        n = n_trials // len(subjects) + (k < n_trials % len(subjects))
        brain[s] = torch.randn(n, setup.n_features[s], *setup.sample_shape, generator=gen)
        ids[s] = torch.arange(start, start + n) % n_stimuli
        start += n
    targets = torch.randn(n_stimuli, *setup.target_shape, generator=gen)
    return BrainTargetDataset(brain, ids, targets)


# ------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory above a baseline: CUDA's allocator peak, or the CPU's peak resident set.

    On the CPU the resident high-water mark (``VmHWM``) is reset to the current resident set
    through ``/proc/self/clear_refs``; where that is refused, ``ru_maxrss`` is used, which is
    right only in a fresh process whose resident set has not been larger before (the benchmark
    measures each configuration in a fresh subprocess).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.base = torch.cuda.memory_allocated(device)
            return
        gc.collect()
        self.base = 1024 * (_status_kib("VmRSS") or 0)
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self.source = "VmHWM"
        except OSError:
            self.source = "ru_maxrss"

    def peak(self) -> int:
        """Bytes above the baseline at the highest point since construction."""
        if self.device.type == "cuda":
            sync(self.device)
            return max(0, int(torch.cuda.max_memory_allocated(self.device) - self.base))
        hwm = _status_kib("VmHWM") if self.source == "VmHWM" else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return max(0, int(1024 * hwm - self.base))


def _mixed_order(n: int, seed: int) -> torch.Tensor:
    from brainalign.train.data import epoch_permutation

    return epoch_permutation(n, seed, 0)


# --------------------------------------------------------------- model step
def measure_step(
    setup: Setup,
    batch_size: int,
    device: str | torch.device = "cpu",
    *,
    warmup: int = 3,
    steps: int = 5,
    optimizer: str = "loop",
    precision: str = "bf16",
    seed: int = 0,
) -> dict[str, Any]:
    """Time the training step of :func:`brainalign.train.fit` on one batch already on device.

    The step is the loop's, built from its own pieces: ``_Objective`` (model, normalised
    projected output against the normalised targets, :class:`~brainalign.losses.ClipLoss` with
    the stimulus ids as labels), bf16 autocast on CUDA when ``precision="bf16"``, backward,
    gradient-norm clipping to 1, the loop's AdamW (no decay on biases and norms) and LR
    schedule, and reading the loss and its logged terms (a device sync each step, as ``fit``
    does). ``optimizer="fused"`` replaces the loop's AdamW (PyTorch's default implementation)
    by the fused one with the same groups.

    Returns
    -------
    result : dict
        ``params`` (all), ``adapter_params`` (the per-subject adapters), ``trainable``,
        ``model_s`` (median forward + loss + backward), ``optim_s`` (median clip + AdamW +
        schedule + logging reads), ``step_s``, ``samples_per_s``, ``peak_bytes`` (above the
        batch already on the device: weights, gradients, AdamW moments, activations), ``loss``.
    """
    from brainalign.models import build_model
    from brainalign.train.config import TrainConfig
    from brainalign.train.loop import _Objective, _optimizer, _scheduler, build_loss

    if optimizer not in ("loop", "fused"):
        raise ValueError(f"Invalid optimizer {optimizer!r}; allowed: 'loop', 'fused'.")
    device = torch.device(device)
    data = make_dataset(setup, batch_size, seed=seed)
    batch = data.batch(_mixed_order(len(data), seed)).to(device)
    memory = PeakMemory(device)

    torch.manual_seed(seed)
    model = build_model(setup.recipe, **setup.model_kwargs).to(device)
    config = TrainConfig(
        model=setup.recipe, batch_size=batch_size, epochs=1, precision=precision,
        device=str(device), seed=seed,
    )  # fmt: skip
    loss = build_loss(config)
    objective = _Objective(model, loss, distributed=False).to(device)
    opt = _optimizer(objective.named_parameters(), config)
    if optimizer == "fused":
        groups = [
            {"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups
        ]
        opt = torch.optim.AdamW(groups, lr=config.lr, fused=True)
    scheduler = _scheduler(opt, config, max(1, warmup + steps))
    params = [p for p in objective.parameters() if p.requires_grad]
    use_bf16 = precision == "bf16" and device.type == "cuda"
    objective.train()

    def one_step() -> tuple[float, float, float]:
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = objective(batch.x, batch.subject, batch.target, batch.stimulus)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sync(device)
        middle = time.perf_counter()
        float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
        opt.step()
        scheduler.step()
        value = float(out.loss.detach())
        for key in ("align", "uniform", "accuracy_xy"):  # what fit logs every step
            term = getattr(out, key, None)
            if term is not None:
                float(term)
        sync(device)
        return middle - start, time.perf_counter() - middle, value

    for _ in range(warmup):
        one_step()
    times = np.array([one_step() for _ in range(steps)])
    model_s, optim_s = (float(v) for v in np.median(times[:, :2], axis=0))
    step_s = float(np.median(times[:, 0] + times[:, 1]))
    adapter = getattr(model, "adapter", None)
    return {
        "config": setup.name,
        "device": str(device),
        "batch": batch_size,
        "optimizer": optimizer,
        "precision": "bf16" if use_bf16 else "fp32",
        "params": sum(p.numel() for p in model.parameters()),
        "adapter_params": sum(p.numel() for p in adapter.parameters()) if adapter else 0,
        "trainable": sum(p.numel() for p in params),
        "model_s": model_s,
        "optim_s": optim_s,
        "step_s": step_s,
        "samples_per_s": batch_size / step_s,
        "peak_bytes": memory.peak(),
        "loss": float(times[-1, 2]) if steps else float("nan"),
        "threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------- data pipeline
def measure_pipeline(
    data: Any,
    batch_size: int,
    device: str | torch.device = "cpu",
    *,
    path: str = "loader",
    workers: int = 0,
    n_batches: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Samples/s that the repository's data path delivers onto ``device``.

    Parameters
    ----------
    data : BrainTargetDataset
        At least ``batch_size * (n_batches + 1)`` trials.
    path : {"loop", "loader"}
        ``"loop"``: what :func:`~brainalign.train.fit` does, ``data.batch(indices).to(device)``
        in the training thread (``epoch_batches`` order). ``"loader"``: a
        :class:`torch.utils.data.DataLoader` over the dataset with the same batches as its
        ``batch_sampler``, ``collate_fn=data.collate``, ``num_workers=workers`` and
        ``pin_memory`` on CUDA, copied with ``non_blocking=True``.
    workers : int
        DataLoader worker processes (``path="loader"`` only).
    n_batches : int
        Timed batches; one more is drawn first, and its time (worker start-up included) is
        reported as ``first_s``.

    Returns
    -------
    result : dict
        ``samples_per_s`` from the median time between two batches (copies onto the device
        finished), ``mean_samples_per_s`` over all the timed batches, ``first_s``,
        ``bytes_per_sample`` (response and target), ``pinned`` (whether the loader's batches
        arrived in pinned memory; ``None`` on the CPU).
    """
    from brainalign.train.data import epoch_batches

    if path not in ("loop", "loader"):
        raise ValueError(f"Invalid path {path!r}; allowed: 'loop', 'loader'.")
    device = torch.device(device)
    n = batch_size * (n_batches + 1)
    if len(data) < n:
        raise ValueError(f"The dataset has {len(data)} trials; this needs {n}.")
    order = epoch_batches(len(data), batch_size, seed=seed, epoch=0)[: n_batches + 1]
    cuda = device.type == "cuda"
    loader: Any
    if path == "loop":
        loader = (data.batch(b) for b in order)
    else:
        loader = torch.utils.data.DataLoader(
            data, batch_sampler=order, collate_fn=data.collate, num_workers=workers,
            pin_memory=cuda,
        )  # fmt: skip
    pinned = None
    start = time.perf_counter()
    stamps = []
    for batch in loader:
        if path == "loader" and cuda and pinned is None:
            pinned = bool(batch.x.is_pinned())
        if path == "loop":
            moved = batch.to(device)
        else:
            moved = type(batch)(
                batch.x.to(device, non_blocking=True), batch.subject,
                batch.stimulus.to(device, non_blocking=True),
                batch.target.to(device, non_blocking=True), batch.index,
            )  # fmt: skip
        sync(device)  # the step reads its loss each step: fit syncs once per batch anyway
        row_bytes = sum(t[0].numel() * t.element_size() for t in (moved.x, moved.target))
        del moved
        stamps.append(time.perf_counter())
    del loader
    intervals = np.diff(stamps)
    return {
        "path": path,
        "workers": workers if path == "loader" else 0,
        "device": str(device),
        "batch": batch_size,
        "samples_per_s": batch_size / float(np.median(intervals)),
        "mean_samples_per_s": batch_size * n_batches / (stamps[-1] - stamps[0]),
        "first_s": stamps[0] - start,
        "bytes_per_sample": int(row_bytes),
        "pinned": pinned,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- the script
def _step_in_subprocess(args: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--_step", json.dumps(args)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"The measuring subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _step_here(args: dict[str, Any]) -> dict[str, Any]:
    if args.get("threads"):
        torch.set_num_threads(int(args["threads"]))
    setup = build_setup(args["config"], args["size"], args["n_subjects"])
    if torch.device(args["device"]).type == "cpu":
        # page in the code (kernels, autograd, the loss) with a tiny replica first, so that the
        # peak resident set of the real run counts its tensors, not the library's first use
        tiny = build_setup(args["config"], "tiny", args["n_subjects"])
        measure_step(tiny, 8, "cpu", warmup=1, steps=1, optimizer=args["optimizer"])
        gc.collect()
    return measure_step(
        setup, args["batch"], args["device"], warmup=args["warmup"], steps=args["steps"],
        optimizer=args["optimizer"], precision=args["precision"],
    )  # fmt: skip


def _mib(n: float) -> float:
    return n / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models and arrays")
    parser.add_argument("--size", choices=SIZES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--fmri-batches", type=int, nargs="+", default=None,
                        help="default 32 64 (CPU), 32 64 256 (CUDA); quick: 16 32")  # fmt: skip
    parser.add_argument("--meeg-batches", type=int, nargs="+", default=None,
                        help="default 32 (CPU), 64 256 (CUDA); quick: 8")  # fmt: skip
    parser.add_argument("--n-subjects", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    parser.add_argument("--optimizer", nargs="+", default=["loop"], choices=("loop", "fused"),
                        help="loop: fit's AdamW (torch default); fused: fused=True")  # fmt: skip
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"),
                        help="bf16: autocast on CUDA as fit does (the CPU runs fp32)")  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="DataLoader workers to measure (default 0 2; CUDA 0 4)")  # fmt: skip
    parser.add_argument("--pipeline-batches", type=int, default=None,
                        help="timed batches of the pipeline (default 20; quick 10)")  # fmt: skip
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    parser.add_argument("--_step", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._step:
        print(json.dumps(_step_here(json.loads(args._step))))
        return

    from brainalign._utils.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    size = args.size or ("quick" if args.quick else "full")
    fmri_batches = args.fmri_batches or (
        [16, 32] if size != "full" else ([32, 64, 256] if cuda else [32, 64])
    )
    meeg_batches = args.meeg_batches or ([8] if size != "full" else ([64, 256] if cuda else [32]))
    workers = args.workers if args.workers is not None else ([0, 4] if cuda else [0, 2])
    n_batches = args.pipeline_batches or (20 if size == "full" else 10)
    machine = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "loadavg": os.getloadavg()[0],
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "size": size,
    }
    print(
        f"torch={machine['torch']} cpus={machine['cpus']} threads={machine['threads']} "
        f"device={device}{' (' + machine['gpu'] + ')' if cuda else ''} size={size} "
        f"subjects={args.n_subjects} warmup={args.warmup} steps={args.steps} "
        f"loadavg={machine['loadavg']:.1f}",
        flush=True,
    )
    batches = {c: fmri_batches if c == "fmri" else meeg_batches for c in args.configs}

    steps: list[dict[str, Any]] = []
    if not args.skip_steps:
        header = (
            f"{'config':<12} {'batch':>5} {'AdamW':>5} {'params M':>9} {'adapt. M':>8} "
            f"{'fwd+bwd ms':>10} {'optim ms':>9} {'samples/s':>10} {'peak MiB':>9} "
            f"{'state MiB':>9}"
        )
        print("\ntraining step (forward, ClipLoss, backward, clip, AdamW, schedule)")
        print(header)
        print("-" * len(header), flush=True)
        for config in args.configs:
            for batch in batches[config]:
                for optimizer in args.optimizer:
                    r = _step_in_subprocess({
                        "config": config, "size": size, "n_subjects": args.n_subjects,
                        "batch": batch, "device": str(device), "warmup": args.warmup,
                        "steps": args.steps, "optimizer": optimizer,
                        "precision": args.precision, "threads": args.threads,
                    })  # fmt: skip
                    steps.append(r)
                    print(
                        f"{config:<12} {batch:>5} {optimizer:>5} {r['params'] / 1e6:>9.1f} "
                        f"{r['adapter_params'] / 1e6:>8.1f} {1e3 * r['model_s']:>10.0f} "
                        f"{1e3 * r['optim_s']:>9.0f} {r['samples_per_s']:>10.1f} "
                        f"{_mib(r['peak_bytes']):>9.0f} {_mib(16 * r['trainable']):>9.0f}",
                        flush=True,
                    )

    pipeline: list[dict[str, Any]] = []
    if not args.skip_pipeline:
        best_step = {}
        for r in steps:
            key = (r["config"], r["batch"])
            best_step[key] = max(best_step.get(key, 0.0), r["samples_per_s"])
        header = (
            f"{'config':<12} {'batch':>5} {'path':<7} {'workers':>7} {'first s':>8} "
            f"{'samples/s':>10} {'MB/s':>7} {'÷ step':>8} {'pinned':>6}"
        )
        print(
            "\ndata pipeline (BrainTargetDataset → batches on the device); "
            "÷ step = pipeline samples/s over the fastest step's"
        )
        print(header)
        print("-" * len(header), flush=True)
        for config in args.configs:
            setup = build_setup(config, size, args.n_subjects)
            largest = max(batches[config])
            data = make_dataset(setup, largest * (n_batches + 1), n_stimuli=largest)
            for batch in batches[config]:
                runs = [("loop", 0)] + [("loader", w) for w in workers]
                for path, w in runs:
                    r = measure_pipeline(
                        data, batch, device, path=path, workers=w, n_batches=n_batches
                    )
                    r["config"] = config
                    step_rate = best_step.get((config, batch))
                    r["ratio_to_step"] = r["samples_per_s"] / step_rate if step_rate else None
                    pipeline.append(r)
                    ratio = f"{r['ratio_to_step']:>8.1f}" if step_rate else f"{'-':>8}"
                    pinned = "-" if r["pinned"] is None else ("yes" if r["pinned"] else "NO")
                    print(
                        f"{config:<12} {batch:>5} {path:<7} {r['workers']:>7} "
                        f"{r['first_s']:>8.2f} {r['samples_per_s']:>10.0f} "
                        f"{r['samples_per_s'] * r['bytes_per_sample'] / 1e6:>7.0f} {ratio} "
                        f"{pinned:>6}",
                        flush=True,
                    )
            del data
            gc.collect()
        slowest = [r for r in pipeline if r["ratio_to_step"] is not None]
        if slowest:
            worst = min(slowest, key=lambda r: r["ratio_to_step"])
            verdict = "faster than" if worst["ratio_to_step"] > 1 else "SLOWER than"
            print(
                f"\nslowest pipeline/step ratio: {worst['ratio_to_step']:.1f} "
                f"({worst['config']}, batch {worst['batch']}, {worst['path']}, "
                f"workers={worst['workers']}): the data path is {verdict} the model step. In "
                "fit the batch is built in the training thread, so its share of a step is "
                "1 / (1 + ratio)."
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "steps": steps, "pipeline": pipeline}, handle, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
