"""Per-subject adapters: one linear map per subject into a space the subjects share.

fMRI (MindEye2's "ridge"): ``Linear(n_voxels_s → hidden)`` for each subject ``s``, whose voxel
counts differ. M/EEG (brainmagick's subject layers): one ``C × C`` channel-mixing matrix per
subject, initialised to the identity. A new subject gets a new adapter
(:meth:`SubjectLinear.add_subject`), which can be trained alone first
(:func:`freeze_except_adapter`), then with everything else (:func:`unfreeze`).

A batch may mix subjects: rows are grouped by subject, each group goes through its own adapter,
and the results are put back in the batch's order. Inputs of subjects with fewer features are
padded at the end to the widest subject of the batch (the padding is ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from brainalign.models.base import check_subject_id

__all__ = ["SubjectLinear", "freeze_except_adapter", "trainable_parameters", "unfreeze"]


class SubjectLinear(nn.Module):
    """One :class:`torch.nn.Linear` per subject, applied to the last axis of each row.

    Parameters
    ----------
    in_features : dict of str to int
        Input size of each subject (voxels, channels), in index order.
    out_features : int
        Size of the shared space.
    bias : bool
        Whether each map has a bias.
    init : {"default", "identity"}
        ``"default"``: PyTorch's Linear initialisation; ``"identity"``: the identity matrix
        (needs ``in_features == out_features``; brainmagick's subject layers).

    Notes
    -----
    Weights are stored under ``layers.sub-<id>``. A subject absent from a batch gets no
    gradient in that step (with DDP, pass ``find_unused_parameters=True`` when batches need not
    contain every subject).
    """

    def __init__(
        self,
        in_features: Mapping[str, int],
        out_features: int,
        *,
        bias: bool = True,
        init: str = "default",
    ) -> None:
        super().__init__()
        if init not in ("default", "identity"):
            raise ValueError(f"init must be 'default' or 'identity', got {init!r}.")
        self.out_features = int(out_features)
        self.bias = bias
        self.init = init
        self.layers = nn.ModuleDict()
        self._in: dict[str, int] = {}
        for subject, n in in_features.items():
            self.add_subject(subject, n)

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject ids in index order."""
        return tuple(self._in)

    @property
    def in_features(self) -> dict[str, int]:
        """Input size of each subject."""
        return dict(self._in)

    def layer(self, subject: str) -> nn.Linear:
        """The adapter of one subject."""
        if subject not in self._in:
            raise ValueError(f"Unknown subject {subject!r}; known: {list(self._in)}.")
        return self.layers[f"sub-{subject}"]  # type: ignore[return-value]

    def add_subject(self, subject: str, in_features: int) -> nn.Linear:
        """Create the adapter of a new subject on the device and dtype of the existing ones."""
        check_subject_id(subject)
        if subject in self._in:
            raise ValueError(f"Subject {subject!r} already has an adapter; use another id.")
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features!r} for {subject!r}.")
        if self.init == "identity" and in_features != self.out_features:
            raise ValueError(
                f"An identity-initialised adapter needs in_features == out_features "
                f"({self.out_features}), got {in_features} for subject {subject!r}."
            )
        ref = next(self.parameters(), None)
        kw: dict[str, Any] = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
        layer = nn.Linear(int(in_features), self.out_features, bias=self.bias, **kw)
        if self.init == "identity":
            with torch.no_grad():
                nn.init.eye_(layer.weight)
                if layer.bias is not None:
                    layer.bias.zero_()
        self.layers[f"sub-{subject}"] = layer
        self._in[subject] = int(in_features)
        return layer

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Route each row through its subject's map.

        Parameters
        ----------
        x : Tensor, shape (n_samples, ..., n_features)
            ``n_features`` is the largest input size among the batch's subjects; narrower
            subjects' rows are padded at the end (the padding is not read).
        index : LongTensor, shape (n_samples,)
            Subject index of each row (see ``BrainEncoder.subject_index``).

        Returns
        -------
        Tensor, shape (n_samples, ..., out_features)
        """
        present = torch.unique(index).tolist()
        sizes = list(self._in.values())
        names = list(self._in)
        width = max(sizes[k] for k in present)
        if x.shape[-1] != width:
            found = {names[k]: sizes[k] for k in present}
            raise ValueError(
                f"The input has {x.shape[-1]} features on its last axis but the batch's "
                f"subjects have {found}; it must have {width} (the largest, with narrower "
                "subjects padded at the end). Check the subject ids and the input's axes."
            )
        if len(present) == 1:
            return self.layers[f"sub-{names[present[0]]}"](x)
        outputs, rows_all = [], []
        for k in present:
            rows = (index == k).nonzero().squeeze(1)
            layer = self.layers[f"sub-{names[k]}"]
            outputs.append(layer(x[rows][..., : sizes[k]]))
            rows_all.append(rows)
        order = torch.cat(rows_all)
        return torch.cat(outputs)[torch.argsort(order)]

    def extra_repr(self) -> str:
        return f"subjects={self._in}, out_features={self.out_features}, init={self.init!r}"


def _adapter(model: nn.Module) -> SubjectLinear:
    adapter = getattr(model, "adapter", None)
    if not isinstance(adapter, SubjectLinear):
        raise TypeError(
            f"{type(model).__name__} has no per-subject adapter (a SubjectLinear in "
            "'model.adapter'); use a brainalign encoder."
        )
    return adapter


def trainable_parameters(model: nn.Module, only_subject: str | None = None) -> list[nn.Parameter]:
    """Parameters to give an optimiser: all, or only one subject's adapter.

    Does not change ``requires_grad``; see :func:`freeze_except_adapter` for that.

    Parameters
    ----------
    model : BrainEncoder
    only_subject : str | None
        A subject id: return only that subject's adapter parameters.
    """
    if only_subject is None:
        return [p for p in model.parameters() if p.requires_grad]
    return list(_adapter(model).layer(only_subject).parameters())


def freeze_except_adapter(model: nn.Module, subject: str) -> list[nn.Parameter]:
    """Set ``requires_grad=False`` everywhere but in ``subject``'s adapter; return its parameters.

    The first stage of adding a subject to a pretrained model. BatchNorm layers still update
    their running statistics in train mode; call ``.eval()`` on them to keep them fixed.
    """
    keep = {id(p) for p in trainable_parameters(model, only_subject=subject)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


def unfreeze(model: nn.Module) -> list[nn.Parameter]:
    """Set ``requires_grad=True`` on every parameter (fine-tune everything); return them."""
    for p in model.parameters():
        p.requires_grad_(True)
    return list(model.parameters())
