"""The model registry: published recipes by name, built with one call.

==============  =================  ===========================================================
name            class              recipe
==============  =================  ===========================================================
``mindeye1``    FMRIEncoder        hidden 4096, stem LN/GELU/Dropout 0.5, post-LN blocks,
                                   projector 2048 wide (Scotti et al. 2023)
``mindeye2``    FMRIEncoder        per-subject ridge to 1024, MLP-Mixer blocks, projector as
                                   wide as a token (Scotti et al. 2024)
``brainmagick`` MEEGEncoder        spatial attention (270), subject layers, 10 dilated convs
                                   at 320 with GLUs, head to target_dim (Défossez et al. 2023)
``linear``      LinearEncoder      one linear map per subject to the target
==============  =================  ===========================================================

``build_model(name, **kwargs)`` overrides the recipe's defaults with ``kwargs`` (the family's
constructor arguments: ``n_voxels``/``target_dim``… for fMRI, ``n_channels``/``n_times``/
``sfreq``/``target_dim``… for M/EEG); ``build_model(name, recordings=...)`` infers the sizes
from :class:`~brainalign.io.Recording` s.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from brainalign._utils.validation import check_option, suggest
from brainalign.models.base import BrainEncoder, load_pretrained

__all__ = ["MODELS", "ModelSpec", "build_model", "load_pretrained"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered recipe: the class (``"module:Class"``) and its default arguments."""

    target: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def cls(self) -> type[BrainEncoder]:
        """The encoder class (its module is imported on first use)."""
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    @property
    def family(self) -> str:
        """``"fmri"`` or ``"meeg"``: which constructor signature the class takes."""
        return self.cls.family

    def build(self, *, recordings: Any = None, **kwargs: Any) -> BrainEncoder:
        """Build the model with the defaults overridden by ``kwargs``."""
        cls = self.cls
        allowed = _parameters(cls)
        unknown = [k for k in kwargs if k not in allowed]
        if unknown:
            raise TypeError(
                f"{cls.__name__} has no parameter {unknown[0]!r}.{suggest(unknown[0], allowed)} "
                f"Its parameters: {sorted(allowed)}."
            )
        args = {**self.defaults, **kwargs}
        if recordings is not None:
            return cls.from_recordings(recordings, **args)  # type: ignore[attr-defined]
        return cls(**args)


def _parameters(cls: type) -> set[str]:
    names = {p for p in inspect.signature(cls).parameters if p != "options"}
    config_class = getattr(cls, "config_class", None)
    if config_class is not None:  # MEEGEncoder takes its config's fields as **options
        names |= set(config_class.__dataclass_fields__)
    return names


MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "mindeye1": ModelSpec(
            "brainalign.models.fmri:FMRIEncoder",
            MappingProxyType(
                {
                    "hidden": 4096,
                    "n_blocks": 4,
                    "dropout": 0.15,
                    "block": "mlp",
                    "input_norm": True,
                    "input_dropout": 0.5,
                    "projector_hidden": 2048,
                }
            ),
            "MindEye1: voxels → 4096, 4 post-LN residual blocks, head to CLIP, projector 2048.",
        ),
        "mindeye2": ModelSpec(
            "brainalign.models.fmri:FMRIEncoder",
            MappingProxyType({"hidden": 1024, "n_blocks": 4, "dropout": 0.15, "block": "mixer"}),
            "MindEye2: per-subject ridge → 1024, 4 MLP-Mixer blocks, head, token-wide projector.",
        ),
        "brainmagick": ModelSpec(
            "brainalign.models.meeg:MEEGEncoder",
            MappingProxyType({"n_heads": 270, "hidden": 320, "depth": 10}),
            "brainmagick: spatial attention, subject layers, dilated conv stack with GLUs.",
        ),
        "linear": ModelSpec(
            "brainalign.models.linear:LinearEncoder",
            MappingProxyType({}),
            "One linear map per subject from the flattened response to the target.",
        ),
    }
)


def build_model(name: str, *, recordings: Any = None, **kwargs: Any) -> BrainEncoder:
    """Build a registered model.

    Parameters
    ----------
    name : {"mindeye1", "mindeye2", "brainmagick", "linear"}
        The recipe (see :data:`MODELS`).
    recordings : Recording | iterable of Recording | None
        Infer the input sizes (voxels per subject; channels, positions, sfreq, n_times) from
        these, through the class's ``from_recordings``.
    **kwargs
        Constructor arguments, overriding the recipe's defaults.

    Returns
    -------
    model : BrainEncoder
        In train mode, on the CPU, in float32.
    """
    check_option("name", name, MODELS)
    return MODELS[name].build(recordings=recordings, **kwargs)
