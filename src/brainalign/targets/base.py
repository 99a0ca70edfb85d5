"""The interface every feature extractor implements, used by the batched extraction engine.

An extractor turns one stimulus into a model input on the CPU (:meth:`Extractor.prepare`), and a
batch of inputs into named outputs on the device (:meth:`Extractor.forward`). What its features
depend on — model, weights checksum, preprocessing — is :meth:`Extractor.spec`, which keys the
cache together with the output name, the pooling and the stimuli.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from brainalign.targets.inputs import StimulusItem

__all__ = ["Extractor", "describe_transform", "state_dict_sha256"]


def state_dict_sha256(module: Any) -> str:
    """Hex SHA-256 of a module's parameters and buffers (names, dtypes, shapes and values).

    Identifies the weights whatever their origin (file, hub, random initialisation), so that
    the cache never mixes features of two different sets of weights.
    """
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(_tensor_bytes(t))
    return h.hexdigest()


def _tensor_bytes(t: Any) -> bytes:
    import torch

    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.reshape(-1).numpy().tobytes()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def describe_transform(transform: Any) -> str:
    """A stable text description of a preprocessing callable (its ``repr``, minus addresses).

    torchvision/timm transforms print their sizes, interpolation, mean and std, so the cache key
    changes whenever the preprocessing does. A custom function is described by its qualified
    name: give it a new name (or a ``__repr__``) when you change what it does.
    """
    if hasattr(transform, "__qualname__") and not hasattr(transform, "transforms"):
        text = f"{getattr(transform, '__module__', '')}.{transform.__qualname__}"
    else:
        text = repr(transform)
    return _ADDRESS.sub("", text)


class Extractor:
    """Base class of the feature extractors (CLIP, DNN layers, speech).

    Attributes
    ----------
    modality : {"image", "audio", "text"}
        The kind of stimuli it takes.
    name : str
        A short model name for messages.
    """

    modality = "image"
    name = "model"

    def spec(self) -> dict[str, Any]:
        """Model, weights checksum and preprocessing: what the features depend on."""
        raise NotImplementedError

    def default_outputs(self) -> list[str]:
        """Outputs computed when the user names none."""
        raise NotImplementedError

    def check_outputs(self, outputs: Sequence[str]) -> list[str]:
        """Validate the requested output names (raise ``ValueError`` with suggestions)."""
        raise NotImplementedError

    def poolable(self, output: str) -> bool:
        """Whether ``output`` is a raw layer activation that the pooling applies to."""
        return False

    def stimulus_extra(self) -> str:
        """Anything besides the stimuli's content that changes their meaning (e.g. ``sfreq``)."""
        return ""

    def prepare(self, item: StimulusItem) -> Any:
        """Load and preprocess one stimulus into a CPU tensor."""
        raise NotImplementedError

    def collate(self, prepared: list[Any]) -> Any:
        """Stack prepared stimuli into a batch (default: :func:`torch.stack`)."""
        import torch

        return torch.stack(prepared)

    def to(self, device: Any) -> None:
        """Move the model to ``device`` (and put it in eval mode)."""
        raise NotImplementedError

    def forward(self, batch: Any, outputs: Sequence[str]) -> dict[str, Any]:
        """Compute ``outputs`` for one batch, each ``(batch, ...)`` (called in inference mode)."""
        raise NotImplementedError
