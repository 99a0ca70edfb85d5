"""Checkpoints that resume training exactly: weights, optimizer, schedule, EMA, RNGs, position.

A checkpoint is a folder ``<out_dir>/checkpoints/step-<step:08d>/`` with

* ``state.pt``: a ``torch.save`` dict (loadable with ``weights_only=True``) of the model's and
  the loss's state dicts, the optimizer, the learning-rate scheduler, the EMA, the random
  states of Python, NumPy and torch (per rank under ``torch.distributed``), the epoch, the
  global step, the number of batches already done in the epoch, and the trainer's bookkeeping;
* ``config.yaml``: the :class:`~brainalign.train.TrainConfig` it was trained with.

The folder is written under a temporary name and renamed when complete, so a killed process
never leaves a checkpoint that looks whole; :func:`latest_checkpoint` ignores the rest.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainalign._utils.errors import CorruptFileError

__all__ = [
    "CHECKPOINT_DIR",
    "get_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_DIR = "checkpoints"
STATE_NAME = "state.pt"
CONFIG_NAME = "config.yaml"
_PATTERN = re.compile(r"^step-(\d+)$")


# ------------------------------------------------------------------- RNG states
def get_rng_state() -> dict[str, Any]:
    """The random states of Python, NumPy's global generator and torch (CPU and CUDA)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": (version, tuple(internal), gauss),
        "numpy": (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states returned by :func:`get_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ save / load
def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under ``out_dir/checkpoints``, oldest (lowest step) first."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _PATTERN.match(path.name)
        if match and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The most recent complete checkpoint folder of a run, or ``None`` when there is none.

    Parameters
    ----------
    out_dir : path-like
        The run's ``TrainConfig.out_dir``.

    Returns
    -------
    path : Path | None
        ``out_dir/checkpoints/step-<step>``.
    """
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def save_checkpoint(
    out_dir: str | os.PathLike,
    state: dict[str, Any],
    *,
    step: int,
    config: Any = None,
    keep: int | None = None,
) -> Path:
    """Write ``state`` (and the config as YAML) as the checkpoint of ``step``, atomically.

    Parameters
    ----------
    out_dir : path-like
        The run folder; the checkpoint goes to ``out_dir/checkpoints/step-<step:08d>``.
    state : dict
        Anything ``torch.save`` writes and ``torch.load(weights_only=True)`` reads back
        (tensors, numbers, strings, lists, tuples, dicts).
    step : int
        Global optimisation step (names the folder).
    config : TrainConfig | None
        Written beside the state as ``config.yaml``.
    keep : int | None
        Keep only the ``keep`` most recent checkpoints (older folders are deleted).

    Returns
    -------
    path : Path
        The checkpoint folder.
    """
    root = Path(out_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{int(step):08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        with open(tmp / STATE_NAME, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if config is not None:
            config.to_yaml(tmp / CONFIG_NAME)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        for old in list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint folder (or its ``state.pt``) written by :func:`save_checkpoint`.

    Returns
    -------
    state : dict
        What was saved; ``state["config"]`` holds the :class:`~brainalign.train.TrainConfig`
        read from ``config.yaml`` when the folder has one.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    file = folder / STATE_NAME
    if not file.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {str(path.resolve())!r}: expected a folder holding {STATE_NAME} "
            "(find one with brainalign.train.latest_checkpoint(out_dir))."
        )
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CorruptFileError(f"Cannot read the checkpoint {str(file)!r}: {err}") from err
    if (folder / CONFIG_NAME).is_file():
        from brainalign.train.config import TrainConfig

        state["config"] = TrainConfig.from_yaml(folder / CONFIG_NAME)
    return state
