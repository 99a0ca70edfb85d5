"""CLIP image and text embeddings through open_clip, pooled or token by token.

Any open_clip architecture works: a built-in name (``"ViT-L-14"``; ``open_clip.list_models()``),
a configuration dictionary (e.g. a tiny test model), or a folder with ``open_clip_config.json``.
Weights come from a local file or folder (checked key by key), from a pretrained tag such as
``"openai"`` when the user has a network, or are a seeded random initialisation.

Outputs of the image tower:

``"image"``
    The pooled, projected embedding, ``(embed_dim,)``: exactly open_clip's ``encode_image``
    (not L2-normalised).
``"image_tokens"``
    Every token of the last block — class token first, then the patches in raster order —
    through the final LayerNorm (``ln_post``) and the projection, ``(1 + n_patches, embed_dim)``:
    MindEye's regression target (257 × 768 for ViT-L/14). Computed with open_clip's
    ``VisionTransformer.forward_intermediates``; the class token equals ``"image"`` for
    class-token pooling.
``"visual.<module>"``
    Any sub-module of the image tower, through forward hooks (see
    :mod:`brainalign.targets.layers`), e.g. ``"visual.transformer.resblocks.11"``.

and of the text tower, ``"text"``: open_clip's ``encode_text`` of the tokenised text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainalign._utils.errors import CorruptFileError
from brainalign._utils.progress import logger
from brainalign._utils.validation import check_option, suggest
from brainalign.targets.base import Extractor, describe_transform, state_dict_sha256
from brainalign.targets.inputs import StimulusItem, load_image_item, load_text_item

__all__ = [
    "ClipImageExtractor",
    "ClipModel",
    "ClipTextExtractor",
    "compute_clip_image_embeddings",
    "compute_clip_image_tokens",
    "compute_clip_text_embeddings",
    "load_clip",
    "normalize_tokens_by_cls",
]

IMAGE_OUTPUTS = ("image", "image_tokens")
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class ClipModel:
    """An open_clip model with its preprocessing, tokenizer and weights identity.

    Attributes
    ----------
    model : open_clip.CLIP
        In eval mode.
    preprocess : callable
        PIL image → tensor ``(3, height, width)`` (open_clip's evaluation transform).
    tokenizer : callable
        list of str → LongTensor ``(n, context_length)``.
    name : str
        The architecture's name (``"config:<hash>"`` for a configuration dictionary).
    weights : str
        Where the weights came from.
    weights_sha256 : str
        Checksum of the model's parameters and buffers.
    """

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[Any], Any]
    name: str
    weights: str
    weights_sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not self.weights_sha256:
            self.weights_sha256 = state_dict_sha256(self.model)


def _weights_error(name: str, weights: Any, tags: Sequence[str]) -> ValueError:
    tag_text = ", ".join(repr(t) for t in tags) if tags else "none known to open_clip"
    return ValueError(
        f"Invalid value for the 'weights' parameter of CLIP model {name!r}: {weights!r}. Pass a "
        "weights file or a folder holding one, a pretrained tag (needs a network; tags for this "
        f"model: {tag_text}){suggest(str(weights), tags)}, or 'random' for a seeded random "
        "initialisation."
    )


def _find_checkpoint(folder: Path) -> Path:
    files = sorted(p for p in folder.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise FileNotFoundError(
            f"The weights folder {str(folder)!r} must hold exactly one checkpoint "
            f"({', '.join(_CHECKPOINT_SUFFIXES)}) or an open_clip_config.json; found: {found}. "
            "Pass the checkpoint file itself."
        )
    return files[0]


def _load_checkpoint_checked(model: Any, path: Path) -> None:
    """open_clip's own loading (with its conversions), with clear errors on failure."""
    import open_clip

    from brainalign.targets.pretrained import load_state_dict_checked, read_state_dict

    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
        return
    except Exception as err:  # a damaged file or keys that disagree
        state = read_state_dict(path)  # raises CorruptFileError for a damaged file
        load_state_dict_checked(model, state, source=str(path))  # raises naming the keys
        raise CorruptFileError(
            f"open_clip could not load the weights file {str(path)!r}: {err}"
        ) from err


def load_clip(
    model: str | Mapping[str, Any],
    weights: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> ClipModel:
    """Build an open_clip model with its weights, preprocessing and tokenizer.

    Parameters
    ----------
    model : str | mapping
        An open_clip name (``"ViT-L-14"``; ``"ViT-L/14"`` is accepted), ``"local-dir:FOLDER"``
        (a folder with ``open_clip_config.json`` and its weights), or a configuration dictionary
        (``{"embed_dim", "vision_cfg", "text_cfg"}``, optionally wrapped as
        ``{"model_cfg": ..., "preprocess_cfg": ...}``).
    weights : path-like | str | None
        A checkpoint file (``.pt``/``.pth``/``.bin``/``.safetensors``) or a folder holding one
        (or holding an ``open_clip_config.json``); a pretrained tag such as ``"openai"`` or
        ``"laion2b_s32b_b82k"`` (downloads; needs a network); or ``"random"``. ``None`` is only
        valid with ``"local-dir:"`` names.
    seed : int
        Seed of the random initialisation (used before loading weights, and for ``"random"``).
    cache_dir : path-like | None
        Where open_clip stores downloaded weights.

    Returns
    -------
    clip : ClipModel
    """
    import open_clip
    import torch

    tmp: tempfile.TemporaryDirectory | None = None
    if isinstance(model, Mapping):
        cfg = dict(model)
        if "model_cfg" not in cfg:
            cfg = {"model_cfg": cfg}
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(cfg["model_cfg"])
        if missing:
            raise ValueError(
                f"The CLIP configuration dictionary lacks {sorted(missing)}; it needs "
                "'embed_dim', 'vision_cfg' and 'text_cfg' (as open_clip's JSON configs)."
            )
        text = json.dumps(cfg, sort_keys=True)
        name = "config:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        tmp = tempfile.TemporaryDirectory(prefix="brainalign-clip-")
        with open(Path(tmp.name) / "open_clip_config.json", "w", encoding="utf-8") as fh:
            fh.write(text)
        oc_name = f"local-dir:{tmp.name}"
    elif isinstance(model, str):
        name = oc_name = (
            model if model.startswith(("local-dir:", "hf-hub:")) else (model.replace("/", "-"))
        )
        if ":" not in oc_name and oc_name not in open_clip.list_models():
            raise ValueError(
                f"Unknown CLIP model {model!r}.{suggest(oc_name, open_clip.list_models())} "
                "See open_clip.list_models() for the architectures, or pass a configuration "
                "dictionary."
            )
    else:
        raise TypeError(
            "'model' must be an open_clip name or a configuration dict, got "
            f"{type(model).__name__}."
        )

    path: Path | None = None
    tag: str | None = None
    if weights is not None and weights != "random":
        candidate = Path(weights).expanduser()
        if candidate.is_dir():
            if (candidate / "open_clip_config.json").is_file():
                oc_name = name = f"local-dir:{candidate}"
            else:
                path = _find_checkpoint(candidate)
        elif candidate.is_file():
            path = candidate
        elif isinstance(weights, str) and ":" not in oc_name:
            tags = open_clip.list_pretrained_tags_by_model(oc_name)
            if weights not in tags:
                if any(sep in weights for sep in ("/", os.sep)) or candidate.suffix:
                    raise FileNotFoundError(
                        f"The weights file given as 'weights' does not exist: "
                        f"{str(candidate.resolve())!r}. Check the path."
                    )
                raise _weights_error(oc_name, weights, tags)
            tag = weights
        else:
            raise FileNotFoundError(
                f"The weights given as 'weights' do not exist: {str(candidate.resolve())!r}."
            )
    elif weights is None and not oc_name.startswith("local-dir:") and tmp is None:
        raise _weights_error(oc_name, weights, open_clip.list_pretrained_tags_by_model(oc_name))

    torch.manual_seed(seed)
    try:
        if tag is not None:
            try:
                net, _, preprocess = open_clip.create_model_and_transforms(
                    oc_name, pretrained=tag, cache_dir=None if cache_dir is None else str(cache_dir)
                )
            except RuntimeError as err:
                raise ConnectionError(
                    f"Could not download the CLIP weights {oc_name}/{tag}: {err}. This needs a "
                    "network; offline, pass a local weights file as 'weights'."
                ) from err
            source = f"open_clip tag {tag}"
        else:
            with _quiet_root_logger():  # open_clip warns "randomly initialised" before we load
                net, _, preprocess = open_clip.create_model_and_transforms(oc_name, pretrained=None)
            source = "random" if weights == "random" or weights is None else str(weights)
            if oc_name.startswith("local-dir:") and weights is not None and path is None:
                source = oc_name
            if path is not None:
                _load_checkpoint_checked(net, path)
                source = str(path)
        tokenizer = open_clip.get_tokenizer(oc_name)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if source == "random":
        source = f"random(seed={seed})"
    logger.info("Loaded CLIP %s with weights from %s", name, source)
    return ClipModel(net.eval(), preprocess, tokenizer, name, source)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence open_clip's root-logger warnings about weights we load ourselves right after."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def normalize_tokens_by_cls(tokens: np.ndarray) -> np.ndarray:
    """Divide every token by the norm of its image's class token (MindEye's target scaling).

    Parameters
    ----------
    tokens : ndarray, shape (n_images, n_tokens, embed_dim)
        Class token first.

    Returns
    -------
    scaled : ndarray, same shape (a new array)
    """
    tokens = np.asarray(tokens)
    norms = np.linalg.norm(tokens[:, :1, :].astype(np.float64), axis=-1, keepdims=True)
    return (tokens / norms).astype(tokens.dtype)


def _token_support_error(visual: Any) -> ValueError | None:
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        return ValueError(
            f"'image_tokens' needs an open_clip VisionTransformer image tower; this model has "
            f"{type(visual).__name__}. Record a layer instead, e.g. 'visual.<module>' (see "
            "list_layers(clip.model))."
        )
    if visual.attn_pool is not None or visual.final_ln_after_pool or visual.proj is None:
        return ValueError(
            "'image_tokens' is defined for towers whose tokens go through ln_post and the "
            "projection (no attentional pooler, final_ln_after_pool=False, a projection); this "
            "tower differs. Record a layer instead ('visual.<module>')."
        )
    return None


class ClipImageExtractor(Extractor):
    """Image embeddings, token outputs and hooked layers of a :class:`ClipModel`."""

    modality = "image"

    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip
        self.name = clip.name

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "clip-image",
            "model": self.clip.name,
            "weights_sha256": self.clip.weights_sha256,
            "preprocessing": describe_transform(self.clip.preprocess),
        }

    def default_outputs(self) -> list[str]:
        return ["image"]

    def check_outputs(self, outputs: Sequence[str]) -> list[str]:
        from brainalign.targets.layers import check_layers

        names = [outputs] if isinstance(outputs, str) else list(outputs)
        layers = [n for n in names if n not in IMAGE_OUTPUTS]
        for n in layers:
            if not n.startswith("visual."):
                raise ValueError(
                    f"Invalid CLIP image output {n!r}.{suggest(n, IMAGE_OUTPUTS)} Use 'image', "
                    "'image_tokens' or a layer of the image tower, 'visual.<module>' (see "
                    "brainalign.targets.list_layers(clip.model))."
                )
        if layers:
            check_layers(self.clip.model, layers)
        if "image_tokens" in names:
            err = _token_support_error(self.clip.model.visual)
            if err is not None:
                raise err
        return names

    def poolable(self, output: str) -> bool:
        return output not in IMAGE_OUTPUTS

    def prepare(self, item: StimulusItem) -> Any:
        return self.clip.preprocess(load_image_item(item))

    def to(self, device: Any) -> None:
        self.clip.model.to(device).eval()

    def _final(self, batch: Any, tokens: bool) -> dict[str, Any]:
        visual = self.clip.model.visual
        if not tokens:
            return {"image": self.clip.model.encode_image(batch)}
        out = visual.forward_intermediates(
            batch,
            indices=1,
            normalize_intermediates=True,  # ln_post on every token
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        toks = _cat_tokens([out["image_intermediates_prefix"][-1], out["image_intermediates"][-1]])
        return {"image": out["image_features"], "image_tokens": toks @ visual.proj}

    def forward(self, batch: Any, outputs: Sequence[str]) -> dict[str, Any]:
        from brainalign.targets.layers import LayerRecorder

        layers = [n for n in outputs if n not in IMAGE_OUTPUTS]
        finals = [n for n in outputs if n in IMAGE_OUTPUTS]
        result: dict[str, Any] = {}

        def run() -> None:
            if finals:
                result.update(self._final(batch, "image_tokens" in finals))
            else:
                self.clip.model.visual(batch)

        if layers:
            with LayerRecorder(self.clip.model, layers, stop_early=not finals) as rec:
                result.update(rec.run(run))
        else:
            run()
        return {n: result[n] for n in outputs}


def _cat_tokens(tensors: Sequence[Any]) -> Any:
    """Concatenate token tensors ``(n, n_tokens_i, width)`` along the token axis."""
    import torch

    return torch.cat(list(tensors), dim=1)


class ClipTextExtractor(Extractor):
    """Text embeddings (``"text"``: open_clip's ``encode_text``) of a :class:`ClipModel`."""

    modality = "text"

    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip
        self.name = clip.name

    def spec(self) -> dict[str, Any]:
        tok = self.clip.tokenizer
        return {
            "kind": "clip-text",
            "model": self.clip.name,
            "weights_sha256": self.clip.weights_sha256,
            "preprocessing": f"{type(tok).__name__}(context_length="
            f"{getattr(tok, 'context_length', None)})",
        }

    def default_outputs(self) -> list[str]:
        return ["text"]

    def check_outputs(self, outputs: Sequence[str]) -> list[str]:
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        for n in names:
            check_option("layers", n, ["text"])
        return names

    def prepare(self, item: StimulusItem) -> Any:
        return self.clip.tokenizer([load_text_item(item)])[0]

    def to(self, device: Any) -> None:
        self.clip.model.to(device).eval()

    def forward(self, batch: Any, outputs: Sequence[str]) -> dict[str, Any]:
        return {"text": self.clip.model.encode_text(batch)}


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def compute_clip_image_embeddings(
    images: Any,
    clip: ClipModel,
    *,
    normalize: bool = False,
    batch_size: int = 32,
    device: Any = "auto",
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """CLIP image embeddings, ``encode_image`` of open_clip's preprocessed images.

    Parameters
    ----------
    images : folder | sequence of paths / PIL images / arrays
        The stimuli (see :mod:`brainalign.targets.inputs`).
    clip : ClipModel
        From :func:`load_clip`.
    normalize : bool
        L2-normalise each embedding.
    batch_size, device, cache, cache_dir, verbose
        As in :func:`brainalign.targets.extract.compute_features`.

    Returns
    -------
    embeddings : ndarray, shape (n_images, embed_dim)
    """
    from brainalign.targets.extract import compute_features

    feats = compute_features(
        ClipImageExtractor(clip),
        images,
        ["image"],
        batch_size=batch_size,
        device=device,
        cache=cache,
        cache_dir=cache_dir,
        verbose=verbose,
    )["image"]
    return _l2(feats) if normalize else np.array(feats)


def compute_clip_image_tokens(
    images: Any,
    clip: ClipModel,
    *,
    normalize: str | None = None,
    batch_size: int = 32,
    device: Any = "auto",
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
    dtype: str = "float32",
    verbose: bool = False,
) -> np.ndarray:
    """Token outputs of the CLIP image tower through ``ln_post`` and the projection.

    Parameters
    ----------
    images : folder | sequence of paths / PIL images / arrays
        The stimuli.
    clip : ClipModel
        From :func:`load_clip`; its image tower must be an open_clip VisionTransformer.
    normalize : {None, "cls"}
        ``"cls"`` divides every token by the class token's norm (MindEye).
    dtype : {"float32", "float16"}
        Stored dtype (``float16`` halves the cache for large stimulus sets).
    batch_size, device, cache, cache_dir, verbose
        As in :func:`brainalign.targets.extract.compute_features`.

    Returns
    -------
    tokens : ndarray, shape (n_images, 1 + n_patches, embed_dim)
        Class token first (e.g. 257 × 768 for ViT-L/14 at 224 px).
    """
    from brainalign.targets.extract import compute_features

    check_option("normalize", normalize, [None, "cls"])
    feats = compute_features(
        ClipImageExtractor(clip),
        images,
        ["image_tokens"],
        batch_size=batch_size,
        device=device,
        cache=cache,
        cache_dir=cache_dir,
        dtype=dtype,
        verbose=verbose,
    )["image_tokens"]
    return normalize_tokens_by_cls(feats) if normalize == "cls" else np.array(feats)


def compute_clip_text_embeddings(
    texts: Any,
    clip: ClipModel,
    *,
    normalize: bool = False,
    batch_size: int = 64,
    device: Any = "auto",
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """CLIP text embeddings, ``encode_text`` of the tokenised texts.

    Parameters
    ----------
    texts : sequence of str | path to a .txt file (one text per line)
        The texts.
    clip : ClipModel
        From :func:`load_clip`.
    normalize : bool
        L2-normalise each embedding.
    batch_size, device, cache, cache_dir, verbose
        As in :func:`brainalign.targets.extract.compute_features`.

    Returns
    -------
    embeddings : ndarray, shape (n_texts, embed_dim)
    """
    from brainalign.targets.extract import compute_features

    feats = compute_features(
        ClipTextExtractor(clip),
        texts,
        ["text"],
        batch_size=batch_size,
        device=device,
        cache=cache,
        cache_dir=cache_dir,
        verbose=verbose,
    )["text"]
    return _l2(feats) if normalize else np.array(feats)
