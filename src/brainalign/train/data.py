"""Trials paired with their stimulus' target embedding, and a deterministic, shardable order.

:class:`BrainTargetDataset` holds the responses of one or several subjects (their feature counts
may differ), the stimulus of each trial and one target per stimulus. A batch is a
:class:`Batch`: the responses zero-padded at the end to the widest subject of the batch (the
encoders of :mod:`brainalign.models` ignore the padding), the subject id of each row, the
stimulus ids and the targets, ready for ``model(batch.x, batch.subject)``.

:func:`epoch_batches` gives the batches of an epoch from ``(seed, epoch)`` alone, with the
semantics of :class:`torch.utils.data.DistributedSampler`: one permutation of the dataset per
epoch, rank ``r`` of ``k`` takes positions ``r, r + k, r + 2k, …``, and cuts them into local
batches of ``batch_size / k``. The union of the ranks' ``i``-th batches is then exactly the
``i``-th batch of one process with ``batch_size`` (positions ``i·B … (i+1)·B - 1`` of the
permutation), so the data seen at a step does not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from brainalign._utils.validation import check_type

__all__ = ["Batch", "BrainTargetDataset", "epoch_batches", "epoch_permutation"]


@dataclass(frozen=True)
class Batch:
    """A batch of trials.

    Attributes
    ----------
    x : torch.Tensor, shape (n_samples, n_features, ...)
        Responses, zero-padded on the first feature axis to the widest subject of the batch.
    subject : list of str
        Subject id of each row.
    stimulus : torch.Tensor of int64, shape (n_samples,)
        Stimulus id of each row (a row of the dataset's ``targets``).
    target : torch.Tensor, shape (n_samples, *target_shape)
        Target embedding of each row's stimulus.
    index : torch.Tensor of int64, shape (n_samples,)
        Position of each row in the dataset.
    """

    x: torch.Tensor
    subject: list[str]
    stimulus: torch.Tensor
    target: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: Any) -> Batch:
        """The batch with its tensors on ``device``."""
        return Batch(
            self.x.to(device),
            self.subject,
            self.stimulus.to(device),
            self.target.to(device),
            self.index.to(device),
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory, so ``to(cuda, non_blocking=True)`` overlaps.

        ``DataLoader(pin_memory=True)`` calls this: torch pins only tensors, mappings,
        sequences and objects with this method, so without it a :class:`Batch` stays pageable.
        """
        return Batch(
            self.x.pin_memory(),
            self.subject,
            self.stimulus.pin_memory(),
            self.target.pin_memory(),
            self.index.pin_memory(),
        )


def _as_tensor(value: Any, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    else:
        try:
            tensor = torch.from_numpy(np.ascontiguousarray(np.asarray(value)))
        except TypeError as err:
            raise TypeError(
                f"{name!r} must be a numeric array, got {type(value).__name__}."
            ) from err
    if dtype is not None:
        return tensor.to(dtype)
    if tensor.is_floating_point():
        return tensor
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name!r} must hold real numbers, got {tensor.dtype}.")
    return tensor.to(torch.get_default_dtype())


class BrainTargetDataset(torch.utils.data.Dataset):
    """Trials of one or several subjects, each paired with its stimulus' target embedding.

    Parameters
    ----------
    brain : array-like, shape (n_trials, n_features, ...) | dict of str to array-like
        Responses: one array (one subject, named ``subject``), or ``{subject: array}`` whose
        arrays may have different feature counts (voxels, channels) but the same trailing
        shape (e.g. ``n_times``).
    stimulus_ids : array-like of int, shape (n_trials,) | dict of str to array-like
        The stimulus of each trial: a row of ``targets``; a dict when ``brain`` is one.
    targets : array-like, shape (n_stimuli, *target_shape)
        One target embedding per stimulus (e.g. CLIP image embeddings, ``(n_stimuli, 768)``).
    subject : str
        Subject id of a single array ``brain`` (the models name a single subject ``"0"``).
    dtype : torch.dtype
        Floating dtype of the responses and targets.

    Notes
    -----
    ``dataset[i]`` is a dict with ``x``, ``subject``, ``stimulus`` and ``target``;
    :meth:`collate` (or :meth:`batch` with indices) pads and stacks them into a :class:`Batch`.
    Trials are ordered subject by subject, in the order of the dict.
    """

    def __init__(
        self,
        brain: Any,
        stimulus_ids: Any,
        targets: Any,
        *,
        subject: str = "0",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(brain, Mapping):
            if not isinstance(stimulus_ids, Mapping) or set(stimulus_ids) != set(brain):
                got = list(stimulus_ids) if isinstance(stimulus_ids, Mapping) else "an array"
                raise ValueError(
                    "With 'brain' a dict {subject: responses}, 'stimulus_ids' must be a dict "
                    f"with the same subjects {list(brain)}, got {got}."
                )
            if not brain:
                raise ValueError("'brain' is an empty dict; give at least one subject.")
            brain_d = {str(s): _as_tensor(v, f"brain[{s!r}]", dtype) for s, v in brain.items()}
            ids_d = {str(s): _as_tensor(stimulus_ids[s], f"stimulus_ids[{s!r}]") for s in brain}
        else:
            check_type("subject", subject, str, "a subject id string")
            brain_d = {subject: _as_tensor(brain, "brain", dtype)}
            ids_d = {subject: _as_tensor(stimulus_ids, "stimulus_ids")}
        self.targets = _as_tensor(targets, "targets", dtype)
        if self.targets.ndim < 2:
            raise ValueError(
                f"'targets' must have shape (n_stimuli, *target_shape), got "
                f"{tuple(self.targets.shape)}; reshape a single vector with targets[None]."
            )
        n_stimuli = self.targets.shape[0]
        trailing = None
        for s, x in brain_d.items():
            if x.ndim < 2:
                raise ValueError(
                    f"The responses of subject {s!r} must have shape (n_trials, n_features, "
                    f"...), got {tuple(x.shape)}."
                )
            if trailing is None:
                trailing = tuple(x.shape[2:])
            elif tuple(x.shape[2:]) != trailing:
                raise ValueError(
                    f"Subjects must share the shape after the feature axis: subject {s!r} has "
                    f"{tuple(x.shape[2:])}, another {trailing}."
                )
            ids = ids_d[s]
            if ids.is_floating_point() and not torch.equal(ids, ids.round()):
                raise TypeError(
                    f"stimulus_ids of subject {s!r} must be integers (rows of targets)."
                )
            ids = ids_d[s] = ids.to(torch.long).reshape(-1)
            if ids.shape[0] != x.shape[0]:
                raise ValueError(
                    f"Subject {s!r} has {x.shape[0]} trials but {ids.shape[0]} stimulus ids; "
                    "give one stimulus id per trial."
                )
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_stimuli):
                raise ValueError(
                    f"stimulus_ids of subject {s!r} must be rows of 'targets' in [0, "
                    f"{n_stimuli}), got values in [{int(ids.min())}, {int(ids.max())}]."
                )
        self.brain = brain_d
        self.stimulus_ids = ids_d
        self.subjects: tuple[str, ...] = tuple(brain_d)
        counts = [x.shape[0] for x in brain_d.values()]
        if sum(counts) == 0:
            raise ValueError("The dataset has no trials.")
        # flat index -> (subject position, row)
        self._subject_of = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        self._row_of = torch.cat([torch.arange(n) for n in counts])

    # ----------------------------------------------------------------- sizes
    def __len__(self) -> int:
        return int(self._row_of.shape[0])

    @property
    def n_features(self) -> dict[str, int]:
        """Feature count (voxels, channels) of each subject."""
        return {s: int(x.shape[1]) for s, x in self.brain.items()}

    @property
    def target_shape(self) -> tuple[int, ...]:
        """Shape of one target."""
        return tuple(self.targets.shape[1:])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one trial after the feature axis (``()`` for fMRI, ``(n_times,)`` M/EEG)."""
        return tuple(next(iter(self.brain.values())).shape[2:])

    def trial_stimuli(self) -> torch.Tensor:
        """Stimulus id of every trial, in dataset order, shape ``(n_trials,)``."""
        return torch.cat([self.stimulus_ids[s] for s in self.subjects])

    def trial_subjects(self) -> list[str]:
        """Subject id of every trial, in dataset order."""
        return [self.subjects[int(i)] for i in self._subject_of]

    # --------------------------------------------------------------- batches
    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.subjects[int(self._subject_of[index])]
        row = int(self._row_of[index])
        stim = int(self.stimulus_ids[s][row])
        return {
            "x": self.brain[s][row],
            "subject": s,
            "stimulus": stim,
            "target": self.targets[stim],
            "index": int(index),
        }

    def batch(self, indices: Sequence[int] | torch.Tensor) -> Batch:
        """The :class:`Batch` of some trials (positions in the dataset), in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if idx.numel() == 0:
            raise ValueError("A batch needs at least one index.")
        subj_pos = self._subject_of[idx]
        rows = self._row_of[idx]
        present = torch.unique(subj_pos).tolist()
        width = max(self.brain[self.subjects[p]].shape[1] for p in present)
        first = self.brain[self.subjects[present[0]]]
        x = first.new_zeros((idx.numel(), width, *first.shape[2:]))
        stimulus = torch.empty(idx.numel(), dtype=torch.long)
        for p in present:
            s = self.subjects[p]
            where = torch.nonzero(subj_pos == p).reshape(-1)
            data = self.brain[s][rows[where]]
            x[where, : data.shape[1]] = data
            stimulus[where] = self.stimulus_ids[s][rows[where]]
        subject = [self.subjects[int(p)] for p in subj_pos]
        return Batch(x, subject, stimulus, self.targets[stimulus], idx)

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        """``collate_fn`` for a :class:`torch.utils.data.DataLoader` over this dataset."""
        return self.batch([item["index"] for item in items])


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` trials at ``epoch``, a function of ``(seed, epoch)`` only."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen)


def epoch_batches(
    n: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
    shuffle: bool = True,
) -> list[torch.Tensor]:
    """The local batches (dataset positions) of one rank at one epoch.

    Parameters
    ----------
    n : int
        Number of trials.
    batch_size : int
        Global batch size; each rank's batches have ``batch_size / world_size`` rows.
    seed, epoch : int
        Determine the permutation (:func:`epoch_permutation`).
    rank, world_size : int
        This process and the number of processes.
    drop_last : bool
        Drop the incomplete last batch. Otherwise the permutation is padded with its first
        positions to a multiple of ``world_size`` (as ``DistributedSampler`` does) and the last
        batch is shorter.
    shuffle : bool
        ``False``: the dataset order (validation).

    Returns
    -------
    batches : list of torch.Tensor of int64
        Each of shape ``(batch_size / world_size,)`` (the last one shorter unless
        ``drop_last``).
    """
    if batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} is the global batch size and must be divisible by the "
            f"world size {world_size}; use a multiple of {world_size}."
        )
    local = batch_size // world_size
    order = epoch_permutation(n, seed, epoch) if shuffle else torch.arange(n)
    if drop_last:
        order = order[: (n // batch_size) * batch_size]
    else:
        total = -(-n // world_size) * world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
    mine = order[rank::world_size]
    batches = list(torch.split(mine, local))
    return [b for b in batches if b.numel()]
