"""What every brain encoder shares: its output, its config, subject routing, saving and loading.

An encoder maps a batch of brain responses of one or several subjects to the shape of a target
(a CLIP vector, CLIP tokens, speech-model activations over time). It returns an
:class:`EncoderOutput` with two tensors shaped like the target: ``backbone`` (regressed onto the
target or fed to a diffusion prior) and ``projected`` (for the contrastive loss).

Its architecture is a frozen dataclass (:class:`ModelConfig`), saved as ``config.json`` beside
the weights (``model.safetensors`` or ``model.pt``) by :meth:`BrainEncoder.save_pretrained`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from brainalign._utils.atomic import atomic_path, atomic_write, file_sha256
from brainalign._utils.errors import ChecksumError, CorruptFileError
from brainalign._utils.validation import check_option, suggest

if TYPE_CHECKING:
    from brainalign.models.adapters import SubjectLinear

__all__ = ["BrainEncoder", "EncoderOutput", "ModelConfig", "load_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = {"safetensors": "model.safetensors", "pt": "model.pt"}
# class name -> module defining it, so that a saved model loads without importing every model
ENCODER_MODULES = {
    "FMRIEncoder": "brainalign.models.fmri",
    "MEEGEncoder": "brainalign.models.meeg",
    "LinearEncoder": "brainalign.models.linear",
}


class EncoderOutput(NamedTuple):
    """What an encoder returns; both fields are shaped ``(n_samples, *target_shape)``.

    Attributes
    ----------
    backbone : Tensor
        The regression output (MindEye: the input of the diffusion prior).
    projected : Tensor
        The backbone through the projector, for the contrastive loss (the same tensor when a
        model has no projector).
    """

    backbone: torch.Tensor
    projected: torch.Tensor


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the architecture dataclasses: JSON round trip with checked keys."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready Python values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build the config from :meth:`to_dict`'s output; unknown keys are an error."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} fields {unknown}.{suggest(unknown[0], names)} "
                f"Allowed fields: {names}."
            )
        return cls(**values)


def missing_error(model: str, missing: Mapping[str, str]) -> ValueError:
    """A ``ValueError`` listing every missing constructor argument with how to get it."""
    lines = "\n".join(f"  - {name}: {hint}" for name, hint in missing.items())
    return ValueError(f"{model} cannot be built; missing {', '.join(missing)}:\n{lines}")


def check_subject_id(subject: Any) -> str:
    """Subject ids are non-empty strings without dots (they name submodules)."""
    if not isinstance(subject, str) or not subject or "." in subject:
        raise ValueError(
            f"Subject ids must be non-empty strings without '.', got {subject!r}; use the "
            "label without the 'sub-' prefix, e.g. '01' (Recording.subject)."
        )
    return subject


def resolve_counts(
    name: str, value: int | Mapping[str, int], n_subjects: int | None
) -> dict[str, int]:
    """Turn ``n_voxels=15724, n_subjects=3`` or ``{"01": 15724, ...}`` into a subject dict.

    Integer counts with ``n_subjects`` name the subjects ``"0"``, ``"1"``, …; without
    ``n_subjects`` there is one subject, ``"0"``.
    """
    if isinstance(value, Mapping):
        counts = {check_subject_id(s): int(n) for s, n in value.items()}
        if not counts:
            raise ValueError(f"{name!r} is an empty dict; give at least one subject.")
        if n_subjects is not None and n_subjects != len(counts):
            raise ValueError(
                f"n_subjects={n_subjects} but {name!r} lists {len(counts)} subjects "
                f"{list(counts)}; drop n_subjects (it is inferred from the dict)."
            )
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        n = 1 if n_subjects is None else int(n_subjects)
        if n < 1:
            raise ValueError(f"'n_subjects' must be a positive integer, got {n_subjects!r}.")
        counts = {str(i): int(value) for i in range(n)}
    else:
        raise TypeError(
            f"{name!r} must be an int or a dict {{subject: int}}, got {type(value).__name__}."
        )
    bad = {s: n for s, n in counts.items() if n < 1}
    if bad:
        raise ValueError(f"{name!r} must be positive for every subject, got {bad}.")
    return counts


def resolve_target_shape(
    target_dim: int | None, target_shape: Sequence[int] | None
) -> tuple[int, ...] | None:
    """``target_dim=768`` → ``(768,)``; ``target_shape=(257, 768)`` unchanged; both → error."""
    if target_dim is not None and target_shape is not None:
        raise ValueError(
            f"Pass either target_dim ({target_dim!r}) or target_shape ({target_shape!r}), not "
            "both: target_dim=D is target_shape=(D,)."
        )
    if target_dim is not None:
        target_shape = (target_dim,)
    if target_shape is None:
        return None
    shape = tuple(int(n) for n in target_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"'target_shape' must be non-empty positive sizes, got {target_shape!r}.")
    return shape


TARGET_HINT = (
    "pass target_dim=768 for pooled CLIP ViT-L/14 vectors, or target_shape=(257, 768) for its "
    "tokens (MindEye1), (256, 1664) for OpenCLIP ViT-bigG/14 tokens (MindEye2); the shape of "
    "one row of your targets"
)


class BrainEncoder(nn.Module):
    """Base class: per-subject routing, config round trip, :meth:`save_pretrained`.

    Subclasses set ``config_class`` and ``family`` (``"fmri"`` or ``"meeg"``: which constructor
    signature they share), keep their architecture in ``self.config`` and their per-subject
    adapter in ``self.adapter`` (a :class:`~brainalign.models.adapters.SubjectLinear`).
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    family: ClassVar[str] = ""
    config: ModelConfig
    adapter: SubjectLinear

    # ---------------------------------------------------------------- subjects
    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject ids, in the order of their integer index."""
        return self.adapter.subjects

    def subject_index(self, subject: Any, n_samples: int, device: Any = None) -> torch.Tensor:
        """Integer index of each row's subject, shape ``(n_samples,)``.

        Parameters
        ----------
        subject : str | int | sequence | Tensor | None
            One id (or integer index) for the whole batch, or one per row (a list of ids, a
            NumPy array, an integer tensor). ``None`` when the model has one subject.
        n_samples : int
            Number of rows of the batch.
        device : torch.device | None
            Where to put the index.
        """
        subjects = self.subjects
        lookup = {s: i for i, s in enumerate(subjects)}

        def one(value: Any) -> int:
            if isinstance(value, str):
                if value not in lookup:
                    raise ValueError(
                        f"Unknown subject {value!r}; the model knows {list(subjects)}."
                        f"{suggest(value, subjects)} Add a subject with "
                        "model.add_subject(...)."
                    )
                return lookup[value]
            if isinstance(value, int | np.integer) and not isinstance(value, bool):
                if not 0 <= value < len(subjects):
                    raise ValueError(
                        f"Subject index {value} is out of range for the {len(subjects)} "
                        f"subjects {list(subjects)}."
                    )
                return int(value)
            raise TypeError(f"A subject must be an id (str) or an index (int), got {value!r}.")

        if subject is None:
            if len(subjects) != 1:
                raise ValueError(
                    f"'subject' is missing: the model has {len(subjects)} subjects "
                    f"{list(subjects)}; pass subject='{subjects[0]}' or one id per row."
                )
            subject = 0
        if isinstance(subject, torch.Tensor):
            if subject.dtype.is_floating_point or subject.dtype == torch.bool:
                raise TypeError(f"A subject tensor must hold integers, got {subject.dtype}.")
            index = subject.to(device=device, dtype=torch.long).reshape(-1)
            if index.numel() == 1:
                index = index.expand(n_samples)
            bad = (index < 0) | (index >= len(subjects))
            if bool(bad.any()):
                raise ValueError(
                    f"Subject indices must lie in [0, {len(subjects)}), got "
                    f"{index[bad][:5].tolist()}."
                )
        elif isinstance(subject, str | int | np.integer):
            index = torch.full((n_samples,), one(subject), dtype=torch.long, device=device)
        else:
            values = [one(v.item() if isinstance(v, np.generic) else v) for v in subject]
            index = torch.tensor(values, dtype=torch.long, device=device)
        if index.shape != (n_samples,):
            raise ValueError(
                f"'subject' gives {index.numel()} subjects but the batch has {n_samples} rows; "
                "pass one id for the batch or one per row."
            )
        return index

    # ----------------------------------------------------------------- configs
    def to_config(self) -> ModelConfig:
        """The frozen architecture dataclass (rebuild with :meth:`from_config`)."""
        return self.config

    @classmethod
    def from_config(cls, config: ModelConfig | Mapping[str, Any]) -> BrainEncoder:
        """A freshly initialised model from a config (or its :meth:`~ModelConfig.to_dict`)."""
        if isinstance(config, Mapping):
            config = cls.config_class.from_dict(config)
        if not isinstance(config, cls.config_class):
            raise TypeError(
                f"{cls.__name__}.from_config needs a {cls.config_class.__name__} or a dict, "
                f"got {type(config).__name__}."
            )
        kwargs = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return cls(**kwargs)

    # ------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path, *, format: str = "safetensors") -> Path:
        """Write ``config.json`` and the weights into ``directory``, each file atomically.

        The weights go first, then the config, which records the weights' file name, SHA-256
        and dtype; :meth:`from_pretrained` checks the checksum, so an interrupted overwrite is
        detected rather than loading a mismatched pair.

        Parameters
        ----------
        directory : path-like
            Created if needed.
        format : {"safetensors", "pt"}
            ``model.safetensors`` (needs the ``safetensors`` package) or ``model.pt``
            (``torch.save`` of the state dict).

        Returns
        -------
        directory : Path
        """
        check_option("format", format, WEIGHTS_NAMES)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        weights = directory / WEIGHTS_NAMES[format]
        with atomic_path(weights) as tmp:
            if format == "safetensors":
                from brainalign._utils.optional import import_optional

                st = import_optional(
                    "safetensors.torch", pip_name="safetensors", purpose="model.safetensors"
                )
                st.save_file(state, str(tmp), metadata={"format": "pt"})
            else:
                torch.save(state, tmp)
        dtypes = {str(p.dtype).removeprefix("torch.") for p in self.parameters()}
        meta = {
            "model_class": type(self).__name__,
            "config": self.config.to_dict(),
            "weights": weights.name,
            "sha256": file_sha256(weights),
            "dtype": dtypes.pop() if len(dtypes) == 1 else None,
        }
        with atomic_write(directory / CONFIG_NAME, "w") as fh:
            json.dump(meta, fh, indent=2)
        for other in WEIGHTS_NAMES.values():
            if other != weights.name:
                (directory / other).unlink(missing_ok=True)
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, map_location: Any = "cpu", check_sha256: bool = True
    ) -> BrainEncoder:
        """Load a model written by :meth:`save_pretrained`, in eval mode.

        Called on :class:`BrainEncoder` itself, it builds whichever class the directory holds.

        Parameters
        ----------
        directory : path-like
            Folder with ``config.json`` and the weights file it names.
        map_location : str | torch.device
            Device of the loaded weights.
        check_sha256 : bool
            Compare the weights with the checksum recorded in ``config.json``.
        """
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(
                f"No {CONFIG_NAME} in {str(directory.resolve())!r}: it is not a folder written "
                "by save_pretrained (or the save was interrupted before the config)."
            )
        try:
            meta = json.loads(config_path.read_text())
            name, config, weights_name = meta["model_class"], meta["config"], meta["weights"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorruptFileError(
                f"{str(config_path)!r} is not a brainalign model config ({err})."
            ) from err
        target = cls
        if name != cls.__name__:
            if cls is not BrainEncoder or name not in ENCODER_MODULES:
                raise ValueError(
                    f"{str(directory)!r} holds a {name}, not a {cls.__name__}; load it with "
                    "brainalign.models.load_pretrained(directory)."
                )
            target = getattr(importlib.import_module(ENCODER_MODULES[name]), name)
        weights = directory / weights_name
        if not weights.is_file():
            raise FileNotFoundError(
                f"The weights file {str(weights)!r} named in the config is missing."
            )
        if check_sha256 and meta.get("sha256") and file_sha256(weights) != meta["sha256"]:
            raise ChecksumError(
                f"{str(weights)!r} does not match the SHA-256 recorded in {CONFIG_NAME} (an "
                "interrupted save or a replaced file); save the model again."
            )
        model = target.from_config(config)
        try:
            if weights.suffix == ".safetensors":
                from brainalign._utils.optional import import_optional

                st = import_optional(
                    "safetensors.torch", pip_name="safetensors", purpose="model.safetensors"
                )
                state = st.load_file(str(weights), device=str(map_location))
            else:
                state = torch.load(weights, map_location=map_location, weights_only=True)
        except Exception as err:
            raise CorruptFileError(f"Cannot read the weights in {str(weights)!r}: {err}") from err
        if meta.get("dtype"):
            model.to(getattr(torch, meta["dtype"]))
        model.to(map_location)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CorruptFileError(
                f"The weights in {str(weights)!r} do not fit the architecture in "
                f"{CONFIG_NAME}: {err}"
            ) from err
        return model.eval()


def load_pretrained(directory: str | Path, **kwargs: Any) -> BrainEncoder:
    """Load any encoder saved by :meth:`BrainEncoder.save_pretrained` (see its options)."""
    return BrainEncoder.from_pretrained(directory, **kwargs)


def n_elements(shape: Sequence[int]) -> int:
    """Product of a shape's sizes."""
    return math.prod(shape)
