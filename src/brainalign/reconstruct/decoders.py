"""Image decoders: diffusers pipelines that turn image embeddings into images.

:class:`EmbeddingDecoder` wraps the pipelines whose denoiser is conditioned on an image embedding,
so that the output of a :mod:`~brainalign.reconstruct.prior` can be decoded directly:

* **Kandinsky 2.2** (:class:`diffusers.KandinskyV22Pipeline`, and
  :class:`~diffusers.KandinskyV22Img2ImgPipeline` built from the same components for a low-level
  start): ``image_embeds`` and ``negative_image_embeds`` of width ``unet.config.encoder_hid_dim``
  (1,280 for the released decoder, CLIP ViT-bigG/14 image embeddings);
* **Stable unCLIP** (:class:`diffusers.StableUnCLIPImg2ImgPipeline`): ``image_embeds`` of width
  ``image_normalizer.config.embedding_dim`` (1,024 for ``stable-diffusion-2-1-unclip``, OpenCLIP
  ViT-H/14), with the text prompt left empty.

The embedding width a pipeline expects is read from its configuration and checked against the
prior (or the embeddings) before anything runs. Weights come from a local folder
(``save_pretrained`` layout) or, with a network, a hub id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainalign._utils.validation import check_positive

__all__ = ["SUPPORTED_PIPELINES", "EmbeddingDecoder", "load_decoder", "random_kandinsky_pipeline"]

#: pipeline class name -> decoder kind
SUPPORTED_PIPELINES = {
    "KandinskyV22Pipeline": "kandinsky",
    "KandinskyV22Img2ImgPipeline": "kandinsky",
    "StableUnCLIPImg2ImgPipeline": "unclip",
}


class EmbeddingDecoder:
    """Decode image embeddings into images with a diffusers pipeline.

    Parameters
    ----------
    pipeline : diffusers.DiffusionPipeline
        One of :data:`SUPPORTED_PIPELINES`. Moving it to a device is left to the user
        (``decoder.to("cuda")``), as in diffusers.

    Attributes
    ----------
    kind : {'kandinsky', 'unclip'}
    embed_dim : int
        Width of the image embeddings the pipeline expects.

    Examples
    --------
    >>> hub_id = "kandinsky-community/kandinsky-2-2-decoder"  # needs a network once
    >>> decoder = EmbeddingDecoder.from_pretrained(hub_id)  # doctest: +SKIP
    >>> decoder.check_prior(prior)  # doctest: +SKIP
    >>> images = decoder(sample(prior, brain_emb), num_inference_steps=25)  # doctest: +SKIP
    """

    def __init__(self, pipeline: Any) -> None:
        name = type(pipeline).__name__
        if name not in SUPPORTED_PIPELINES:
            raise TypeError(
                f"EmbeddingDecoder needs a pipeline that takes image embeddings "
                f"({', '.join(SUPPORTED_PIPELINES)}), got {name}. Text-to-image pipelines "
                "cannot be conditioned on a brain-predicted image embedding."
            )
        self.pipeline = pipeline
        self.kind = SUPPORTED_PIPELINES[name]
        self.embed_dim = _expected_dim(pipeline, self.kind)
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)

    def __repr__(self) -> str:
        return (
            f"EmbeddingDecoder({type(self.pipeline).__name__}, kind={self.kind!r}, "
            f"embed_dim={self.embed_dim})"
        )

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        torch_dtype: Any = None,
        local_files_only: bool | None = None,
        **kwargs: Any,
    ) -> EmbeddingDecoder:
        """Load the pipeline from a folder (``save_pretrained`` layout) or a hub id.

        Parameters
        ----------
        path_or_id : path-like | str
            A local folder with ``model_index.json``, or a hub id such as
            ``"kandinsky-community/kandinsky-2-2-decoder"`` or
            ``"stabilityai/stable-diffusion-2-1-unclip"`` (needs a network the first time).
        torch_dtype : torch.dtype | None
            E.g. ``torch.float16`` on a GPU.
        local_files_only : bool | None
            ``None``: ``True`` for an existing folder, the hub otherwise.
        **kwargs
            Passed to :meth:`diffusers.DiffusionPipeline.from_pretrained`.
        """
        from diffusers import DiffusionPipeline

        path = Path(path_or_id).expanduser()
        if path.exists():
            if not (path / "model_index.json").is_file():
                raise FileNotFoundError(
                    f"{str(path)!r} holds no model_index.json; give a folder written by "
                    "pipeline.save_pretrained(...) or a hub id."
                )
            source: str = str(path)
            local = True if local_files_only is None else local_files_only
        else:
            source, local = str(path_or_id), bool(local_files_only)
        pipe = DiffusionPipeline.from_pretrained(
            source, torch_dtype=torch_dtype, local_files_only=local, **kwargs
        )
        return cls(pipe)

    def to(self, device: Any) -> EmbeddingDecoder:
        """Move the pipeline to ``device``; return ``self``."""
        self.pipeline.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    # ------------------------------------------------------------------------- checks

    def check_prior(self, prior: Any) -> None:
        """Raise a ``ValueError`` when the prior's output is not what the pipeline expects."""
        cfg = prior.config
        if cfg.target_dim != self.embed_dim:
            raise ValueError(
                f"The prior outputs {cfg.target_dim}-dimensional embeddings but the "
                f"{type(self.pipeline).__name__} decoder expects {self.embed_dim}-dimensional "
                "image embeddings; train the prior on the decoder's own image embeddings (e.g. "
                "the CLIP model its image encoder / prior was trained with)."
            )
        if cfg.n_target_tokens != 1:
            raise ValueError(
                f"The prior outputs {cfg.n_target_tokens} tokens per image but the "
                f"{type(self.pipeline).__name__} decoder takes one pooled embedding per image."
            )

    def check_embeddings(self, image_embeds: Any, name: str = "image_embeds") -> torch.Tensor:
        """Return ``image_embeds`` as a ``(n, embed_dim)`` tensor on the pipeline's device."""
        x = (
            image_embeds
            if isinstance(image_embeds, torch.Tensor)
            else torch.as_tensor(np.asarray(image_embeds))
        )
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(
                f"{name!r} must have shape (n_images, {self.embed_dim}), got {tuple(x.shape)}; "
                "token-level embeddings need a token-conditioned decoder."
            )
        if x.shape[1] != self.embed_dim:
            raise ValueError(
                f"{name!r} are {x.shape[1]}-dimensional but the {type(self.pipeline).__name__} "
                f"decoder expects {self.embed_dim}-dimensional image embeddings."
            )
        return x.to(self.device, self._dtype())

    def _dtype(self) -> torch.dtype:
        return self.pipeline.unet.dtype

    # ------------------------------------------------------------------------- decoding

    def __call__(
        self,
        image_embeds: Any,
        *,
        negative_image_embeds: Any = None,
        init_image: Any = None,
        strength: float = 0.3,
        num_inference_steps: int = 25,
        guidance_scale: float = 4.0,
        height: int = 512,
        width: int = 512,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        noise_level: int = 0,
        **kwargs: Any,
    ) -> np.ndarray:
        """Decode embeddings into images.

        Parameters
        ----------
        image_embeds : array-like or tensor, shape (n_images, embed_dim)
            E.g. :func:`~brainalign.reconstruct.prior.sample` output.
        negative_image_embeds : array-like | None
            Kandinsky's unconditional embeddings for classifier-free guidance; ``None``: zeros.
        init_image : array-like | None
            Low-level start ``(n_images, H, W, 3)`` (uint8 or float in [0, 1], see
            :mod:`~brainalign.reconstruct.lowlevel`): img2img from this image, noised to
            ``strength``. Kandinsky only.
        strength : float
            In (0, 1]: fraction of the denoising applied to ``init_image`` (1: ignore it).
        num_inference_steps, guidance_scale, height, width
            As in the pipeline (``height``/``width`` in pixels).
        seed : int | None
            Seed of a CPU generator (deterministic across runs); ignored with ``generator``.
        generator : torch.Generator | None
            Source of the noise.
        noise_level : int
            Stable unCLIP: noise added to the image embeddings (0 = none).
        **kwargs
            Passed to the pipeline call.

        Returns
        -------
        images : ndarray of float32, shape (n_images, height, width, 3)
            In [0, 1].
        """
        from diffusers import KandinskyV22Img2ImgPipeline, KandinskyV22Pipeline

        emb = self.check_embeddings(image_embeds)
        n = emb.shape[0]
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(0 if seed is None else int(seed))
        common = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "height": height,
            "width": width,
            "generator": generator,
            "output_type": "np",
            **kwargs,
        }
        if self.kind == "unclip":
            if init_image is not None:
                raise ValueError(
                    "A low-level start ('init_image') needs a Kandinsky 2.2 decoder; Stable "
                    "unCLIP's 'image' is the image to *embed*, not a starting point. Load "
                    "'kandinsky-community/kandinsky-2-2-decoder' or drop 'init_image'."
                )
            if negative_image_embeds is not None:
                raise ValueError("'negative_image_embeds' is for Kandinsky decoders only.")
            out = self.pipeline(
                prompt=[""] * n, image_embeds=emb, noise_level=noise_level, **common
            )
            return np.asarray(out.images, dtype=np.float32)
        neg = (
            torch.zeros_like(emb)
            if negative_image_embeds is None
            else self.check_embeddings(negative_image_embeds, "negative_image_embeds")
        )
        if neg.shape[0] != n:
            raise ValueError(
                f"'negative_image_embeds' has {neg.shape[0]} rows but 'image_embeds' {n}."
            )
        components = self.pipeline.components
        pipe: Any
        if init_image is None:
            pipe = (
                self.pipeline
                if isinstance(self.pipeline, KandinskyV22Pipeline)
                else KandinskyV22Pipeline(**components)
            )
            out = pipe(image_embeds=emb, negative_image_embeds=neg, **common)
        else:
            check_positive("strength", strength)
            if strength > 1:
                raise ValueError(f"'strength' must be in (0, 1], got {strength!r}.")
            image = _init_images(init_image, n, self.device, self._dtype())
            pipe = (
                self.pipeline
                if isinstance(self.pipeline, KandinskyV22Img2ImgPipeline)
                else KandinskyV22Img2ImgPipeline(**components)
            )
            pipe.set_progress_bar_config(disable=True)
            out = pipe(
                image=image, image_embeds=emb, negative_image_embeds=neg, strength=strength,
                **common,
            )  # fmt: skip
        return np.asarray(out.images, dtype=np.float32)


def _init_images(init_image: Any, n: int, device: Any, dtype: Any) -> torch.Tensor:
    """``(n, 3, H, W)`` in [0, 1]; the pipeline's image processor resizes and rescales it."""
    from brainalign.reconstruct.metrics import as_image_tensor

    x = as_image_tensor(init_image, "init_image", device=device)
    if x.shape[0] != n:
        raise ValueError(f"'init_image' has {x.shape[0]} images but 'image_embeds' has {n} rows.")
    return x.to(dtype)


def _expected_dim(pipeline: Any, kind: str) -> int:
    if kind == "kandinsky":
        cfg = pipeline.unet.config
        if cfg.get("encoder_hid_dim") is None:
            raise ValueError(
                "The Kandinsky UNet has no 'encoder_hid_dim' in its config; it is not an "
                "image-embedding-conditioned UNet."
            )
        return int(cfg["encoder_hid_dim"])
    return int(pipeline.image_normalizer.config["embedding_dim"])


def load_decoder(path_or_id: str | os.PathLike, **kwargs: Any) -> EmbeddingDecoder:
    """Shortcut for :meth:`EmbeddingDecoder.from_pretrained`."""
    return EmbeddingDecoder.from_pretrained(path_or_id, **kwargs)


def random_kandinsky_pipeline(embedding_dim: int, *, seed: int = 0) -> Any:
    """A Kandinsky 2.2 decoder pipeline of tiny components with random weights.

    For tests, benchmarks and demonstrations of the wiring where no pretrained weights can be
    had: the real diffusers classes (``UNet2DConditionModel`` taking image embeddings of width
    ``embedding_dim``, a ``VQModel`` and a DDPM scheduler) at toy sizes. **Its images are
    noise.** Save it with ``save_pretrained`` and load it through
    :meth:`EmbeddingDecoder.from_pretrained` as a real one.

    Parameters
    ----------
    embedding_dim : int
        Width of the image embeddings the UNet takes.
    seed : int
        Seed of the random weights (the same seed gives the same pipeline).

    Returns
    -------
    pipeline : diffusers.KandinskyV22Pipeline
    """
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    check_positive("embedding_dim", embedding_dim)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=8, addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64),
        layers_per_block=1, encoder_hid_dim=int(embedding_dim),
        encoder_hid_dim_type="image_proj", cross_attention_dim=16, attention_head_dim=4,
        resnet_time_scale_shift="scale_shift", class_embed_type=None,
    )  # fmt: skip
    torch.manual_seed(seed)
    movq = VQModel(
        block_out_channels=[32, 32],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], in_channels=3,
        out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        norm_type="spatial", num_vq_embeddings=12, vq_embed_dim=4,
    )  # fmt: skip
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
        clip_sample=False, prediction_type="epsilon", variance_type="learned_range",
    )  # fmt: skip
    return KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)
