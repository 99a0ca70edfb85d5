"""Activations of named layers of any torch module, captured with forward hooks.

Works for timm and torchvision networks, open_clip towers and a user's own ``nn.Module``: a layer
is any sub-module, named as in ``model.named_modules()`` (e.g. ``"blocks.3"``,
``"visual.transformer.resblocks.11"``). A hook stores the sub-module's output; when a module
returns a tuple or list (e.g. attention blocks), its first tensor is kept. A module called several
times in one forward pass keeps its first output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from brainalign._utils.validation import suggest

__all__ = [
    "LayerRecorder",
    "check_layers",
    "list_layers",
    "record_layers",
]

_N_SHOWN = 40


def list_layers(model: Any, *, leaves_only: bool = False) -> list[str]:
    """Return the names of the layers whose activations can be recorded.

    Parameters
    ----------
    model : torch.nn.Module | str
        A module, or a model name understood by
        :func:`brainalign.targets.pretrained.load_vision_model` (built without weights).
    leaves_only : bool
        Only modules without children (convolutions, norms, activations).

    Returns
    -------
    names : list of str
        In the order of ``model.named_modules()``.

    Examples
    --------
    >>> list_layers("efficientnet_lite0")[:3]  # doctest: +SKIP
    ['conv_stem', 'bn1', 'bn1.drop']
    """
    if isinstance(model, str):
        from brainalign.targets.pretrained import build_vision_architecture

        model = build_vision_architecture(model)
    return [
        name
        for name, module in model.named_modules()
        if name and (not leaves_only or next(module.children(), None) is None)
    ]


def check_layers(model: Any, layers: str | Iterable[str]) -> list[str]:
    """Check that every name in ``layers`` is a sub-module of ``model``; return them as a list.

    Raises
    ------
    ValueError
        Naming the missing layer, the closest names and (some of) the available ones.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("'layers' is empty: name at least one layer (see list_layers(model)).")
    available = list_layers(model)
    known = set(available)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"Layer names must be strings, got {name!r}.")
        if name not in known:
            shown = ", ".join(available[:_N_SHOWN])
            more = f" … ({len(available) - _N_SHOWN} more)" if len(available) > _N_SHOWN else ""
            raise ValueError(
                f"The layer {name!r} does not exist in {type(model).__name__}."
                f"{suggest(name, available)} "
                f"Available layers: {shown}{more}. List them all with "
                "brainalign.targets.list_layers(model)."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"'layers' names a layer twice: {names}.")
    return names


class _StopForward(Exception):
    """Raised by a hook once every requested layer has fired (ends the forward pass early)."""


def _first_tensor(output: Any, name: str) -> Any:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, list | tuple):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(
        f"The layer {name!r} returned {type(output).__name__}, not a tensor; pick another layer "
        "(e.g. one of its children)."
    )


class LayerRecorder:
    """Context manager that records the outputs of ``layers`` during forward passes.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    layers : sequence of str
        Sub-module names (checked with :func:`check_layers`).
    stop_early : bool
        End each forward pass as soon as every layer has fired (saves the later layers'
        compute; the model's own output is then not computed). Use :meth:`run`.

    Attributes
    ----------
    outputs : dict of str to torch.Tensor
        The last forward pass's activations, ``(n, ...)``, detached.
    """

    def __init__(self, model: Any, layers: Sequence[str], *, stop_early: bool = True) -> None:
        self.model = model
        self.layers = check_layers(model, layers)
        self.stop_early = stop_early
        self.outputs: dict[str, Any] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            if name in self.outputs:
                return
            self.outputs[name] = _first_tensor(output, name).detach()
            if self.stop_early and len(self.outputs) == len(self.layers):
                raise _StopForward

        return hook

    def __enter__(self) -> LayerRecorder:
        modules = dict(self.model.named_modules())
        self._handles = [
            modules[name].register_forward_hook(self._hook(name)) for name in self.layers
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def run(self, forward: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call ``forward(*args, **kwargs)`` and return the recorded activations."""
        self.outputs = {}
        with contextlib.suppress(_StopForward):
            forward(*args, **kwargs)
        missing = [name for name in self.layers if name not in self.outputs]
        if missing:
            raise RuntimeError(
                f"The layers {missing} were not called during the forward pass; they exist but "
                "the model does not use them for this input."
            )
        return dict(self.outputs)


def record_layers(
    model: Any, inputs: Any, layers: str | Sequence[str], *, stop_early: bool = True
) -> dict[str, Any]:
    """Run ``model(inputs)`` once and return the activations of ``layers``.

    Parameters
    ----------
    model : torch.nn.Module
        The network (put it in eval mode yourself, as for any forward pass).
    inputs : torch.Tensor
        A batch, e.g. ``(n, 3, height, width)``.
    layers : str | sequence of str
        Sub-module names.
    stop_early : bool
        Stop the forward pass after the last requested layer.

    Returns
    -------
    activations : dict of str to torch.Tensor
        ``(n, ...)`` per layer.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    with LayerRecorder(model, names, stop_early=stop_early) as rec:
        return rec.run(model, inputs)
