"""Diffusion prior: brain embeddings → image embeddings of a decoder (DALL·E 2, MindEye).

A brain encoder's output lives near, not in, the image-embedding space that a diffusion decoder
was trained on. The prior is a conditional diffusion model over the *target* embeddings (pooled
``(n, d)`` or token-level ``(n, t, d)``), conditioned on the brain embedding: a transformer reads
``[condition tokens, timestep token, noisy target tokens]`` and predicts the clean target
``x_0`` (DALL·E 2's and MindEye's parameterisation), trained by

    loss = || f(x_t, t, c) - x_0 ||²,   x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,   t ~ U{0..T-1}

with the condition replaced by a learned null embedding with probability ``cond_drop_prob`` so
that sampling can use classifier-free guidance,
``x̂_0 = f(x_t, t, ∅) + s (f(x_t, t, c) - f(x_t, t, ∅))``. The noise schedule and the sampling
steps are diffusers schedulers (:class:`diffusers.DDPMScheduler` for training and ancestral
sampling, :class:`diffusers.DDIMScheduler` for deterministic few-step sampling); the timestep
embedding is diffusers' sinusoidal :class:`~diffusers.models.embeddings.Timesteps` +
:class:`~diffusers.models.embeddings.TimestepEmbedding`.

Defaults follow MindEye1's prior (depth 6, 100 timesteps, cosine schedule, condition dropout 0.2).
Saved as ``prior.safetensors`` + ``prior_config.json``.

Two ways to train it:

* **after the fact**, on fixed (brain embedding, target) pairs: :func:`train_prior`;
* **jointly with the encoder** (MindEye): :func:`build_joint_prior` builds the prior that a
  :class:`~brainalign.train.TrainConfig` with ``prior_weight > 0`` describes, and
  :func:`brainalign.train.fit` ``(..., prior=prior)`` minimises
  ``contrastive + prior_weight * prior_loss`` with the prior conditioned on the encoder's
  backbone output. The checkpoints of that run hold the prior;
  :func:`load_joint_prior` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from brainalign._utils.atomic import atomic_path, atomic_write
from brainalign._utils.validation import check_file, check_option

__all__ = [
    "DiffusionPrior",
    "PriorConfig",
    "PriorDraws",
    "build_joint_prior",
    "build_prior",
    "draw_prior_noise",
    "load_joint_prior",
    "load_prior",
    "prior_loss",
    "sample",
    "save_prior",
    "train_prior",
]

CONFIG_NAME = "prior_config.json"
WEIGHTS_NAME = "prior.safetensors"
_SCHEDULERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class PriorConfig:
    """Architecture and noise schedule of a :class:`DiffusionPrior`.

    Attributes
    ----------
    target_dim : int
        Width of a target embedding (CLIP ViT-L/14: 768; Kandinsky 2.2 / ViT-bigG: 1,280).
    n_target_tokens : int
        Tokens per target: 1 for pooled embeddings ``(n, d)`` (MindEye1: 257).
    cond_dim : int | None
        Width of a brain embedding; ``None``: ``target_dim``.
    n_cond_tokens : int
        Tokens per brain embedding (1 for ``(n, d)``).
    width : int
        Transformer width.
    depth : int
        Transformer layers.
    n_heads : int
        Attention heads (``width`` must divide by it).
    dropout : float
        Dropout inside the transformer.
    num_train_timesteps : int
        Diffusion steps T.
    beta_schedule : str
        A diffusers schedule: ``"squaredcos_cap_v2"`` (cosine, as DALL·E 2), ``"linear"`` …
    cond_drop_prob : float
        Probability of replacing the condition by the null embedding while training.
    target_scale : float
        Targets are multiplied by this before diffusion and divided after sampling
        (DALL·E 2 uses ``sqrt(target_dim)`` for unit-norm embeddings).
    """

    target_dim: int
    n_target_tokens: int = 1
    cond_dim: int | None = None
    n_cond_tokens: int = 1
    width: int = 768
    depth: int = 6
    n_heads: int = 12
    dropout: float = 0.0
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    cond_drop_prob: float = 0.2
    target_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("target_dim", "n_target_tokens", "n_cond_tokens", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PriorConfig.{name} must be a positive int, got {value!r}.")
        if self.width % self.n_heads:
            raise ValueError(
                f"PriorConfig.width ({self.width}) must be divisible by n_heads ({self.n_heads})."
            )
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(
                f"PriorConfig.cond_drop_prob must be in [0, 1), got {self.cond_drop_prob!r}."
            )

    @property
    def condition_dim(self) -> int:
        return self.target_dim if self.cond_dim is None else self.cond_dim

    def scheduler_config(self) -> dict[str, Any]:
        """The diffusers scheduler settings (the model predicts the clean sample)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "prediction_type": "sample",
            "clip_sample": False,
        }


class DiffusionPrior(nn.Module):
    """Transformer predicting the clean target embedding ``x_0`` from ``(x_t, t, condition)``.

    Parameters
    ----------
    config : PriorConfig
        The architecture.

    Notes
    -----
    ``forward(x_t, t, cond, drop)``: ``x_t`` ``(n, n_target_tokens, target_dim)``, ``t`` ``(n,)``
    integer timesteps, ``cond`` ``(n, n_cond_tokens, cond_dim)``, ``drop`` ``(n,)`` bool (use
    the null condition) or ``None``; returns ``x̂_0`` with the shape of ``x_t``.
    """

    def __init__(self, config: PriorConfig) -> None:
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        super().__init__()
        self.config = config
        w = config.width
        self.cond_in = nn.Linear(config.condition_dim, w)
        self.null_cond = nn.Parameter(torch.zeros(config.n_cond_tokens, w))
        self.time_proj = Timesteps(w, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(w, w)
        self.x_in = nn.Linear(config.target_dim, w)
        n_tokens = config.n_cond_tokens + 1 + config.n_target_tokens
        self.pos = nn.Parameter(torch.randn(n_tokens, w) * 0.02)
        layer = nn.TransformerEncoderLayer(
            w, config.n_heads, 4 * w, config.dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.transformer = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(w)
        self.x_out = nn.Linear(w, config.target_dim)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        c = self.cond_in(cond)
        if drop is not None:
            c = torch.where(drop[:, None, None], self.null_cond.to(c.dtype).expand_as(c), c)
        temb = self.time_embed(self.time_proj(t).to(x_t.dtype))[:, None]
        h = torch.cat([c, temb, self.x_in(x_t)], dim=1) + self.pos
        h = self.transformer(h)
        return self.x_out(self.norm_out(h[:, -self.config.n_target_tokens :]))

    def loss(
        self,
        brain_emb: torch.Tensor,
        target_emb: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        rows: torch.Tensor | None = None,
        n_rows: int | None = None,
    ) -> torch.Tensor:
        """:func:`prior_loss` with a cached noise scheduler (what the training loop calls).

        Parameters
        ----------
        brain_emb, target_emb : tensor
            As in :func:`prior_loss`.
        generator : torch.Generator | None
            Source of the timesteps, noise and condition dropout.
        rows, n_rows : tensor of int64, int | None
            Draw for ``n_rows`` rows and use rows ``rows`` of the draws (one per row of the
            embeddings). :func:`brainalign.train.fit` passes the global batch size and each
            rank's positions in the global batch, so the draws of a sample do not depend on
            the number of processes.

        Returns
        -------
        loss : tensor, scalar
        """
        if (rows is None) != (n_rows is None):
            raise ValueError("Pass both 'rows' and 'n_rows', or neither.")
        scheduler = getattr(self, "_noise_scheduler", None)
        if scheduler is None:
            scheduler = self._noise_scheduler = _scheduler(self, "ddpm")
        draws = None
        if rows is not None:
            draws = draw_prior_noise(self, int(n_rows), generator=generator)  # type: ignore[arg-type]
            draws = PriorDraws(*(d[rows.to(d.device)] for d in draws))
        return prior_loss(
            self, brain_emb, target_emb, generator=generator, noise_scheduler=scheduler,
            draws=draws,
        )  # fmt: skip


def build_prior(
    config: PriorConfig | None = None, *, seed: int = 0, **kwargs: Any
) -> DiffusionPrior:
    """Build a :class:`DiffusionPrior` with seeded initial weights.

    Parameters
    ----------
    config : PriorConfig | None
        The configuration; or give its fields as keyword arguments
        (``build_prior(target_dim=768, n_target_tokens=257)``).
    seed : int
        Seed of the initialisation.
    """
    if config is None:
        config = PriorConfig(**kwargs)
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionPrior(config)


def _tokens(x: Any, n_tokens: int, dim: int, name: str, device: Any, dtype: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to(device=device, dtype=dtype)
    if t.ndim == 2 and n_tokens == 1:
        t = t[:, None]
    if t.ndim != 3 or t.shape[1:] != (n_tokens, dim):
        want = f"(n, {dim})" + ("" if n_tokens > 1 else f" or (n, 1, {dim})")
        if n_tokens > 1:
            want = f"(n, {n_tokens}, {dim})"
        raise ValueError(f"{name!r} must have shape {want} for this prior, got {tuple(t.shape)}.")
    return t


def _param(prior: DiffusionPrior) -> torch.Tensor:
    return next(prior.parameters())


def _scheduler(prior: DiffusionPrior, kind: str = "ddpm") -> Any:
    from diffusers import DDIMScheduler, DDPMScheduler

    check_option("scheduler", kind, _SCHEDULERS)
    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    return cls(**prior.config.scheduler_config())


class PriorDraws(NamedTuple):
    """The random draws of one :func:`prior_loss` evaluation.

    Attributes
    ----------
    timesteps : tensor of int64, shape (n,)
        Diffusion step ``t`` of each row, in ``[0, num_train_timesteps)``.
    noise : tensor, shape (n, n_target_tokens, target_dim)
        ``ε``.
    drop : tensor of bool, shape (n,)
        Rows whose condition is replaced by the null embedding.
    """

    timesteps: torch.Tensor
    noise: torch.Tensor
    drop: torch.Tensor


def draw_prior_noise(
    prior: DiffusionPrior,
    n: int,
    *,
    generator: torch.Generator | None = None,
    cond_drop_prob: float | None = None,
) -> PriorDraws:
    """Draw the timesteps, noise and condition dropout of ``n`` rows, in this order.

    On the generator's device (the prior's device without a generator); ``cond_drop_prob``
    ``None`` uses ``prior.config.cond_drop_prob``.
    """
    cfg = prior.config
    p = _param(prior)
    dev = generator.device if generator is not None else p.device
    t = torch.randint(0, cfg.num_train_timesteps, (n,), generator=generator, device=dev)
    shape = (n, cfg.n_target_tokens, cfg.target_dim)
    noise = torch.randn(shape, generator=generator, device=dev, dtype=p.dtype)
    prob = cfg.cond_drop_prob if cond_drop_prob is None else cond_drop_prob
    drop = torch.rand(n, generator=generator, device=dev) < prob
    return PriorDraws(t, noise, drop)


def prior_loss(
    prior: DiffusionPrior,
    brain_emb: Any,
    target_emb: Any,
    *,
    cond_drop_prob: float | None = None,
    generator: torch.Generator | None = None,
    noise_scheduler: Any = None,
    draws: PriorDraws | None = None,
) -> torch.Tensor:
    """MSE between the predicted and the true clean target embedding, at random timesteps.

    Parameters
    ----------
    prior : DiffusionPrior
        The network (in train mode while training).
    brain_emb : tensor, shape (n, cond_dim) or (n, n_cond_tokens, cond_dim)
        Condition: the brain encoder's output (keeps its gradient, so the prior can be trained
        jointly with the encoder, as MindEye does).
    target_emb : tensor, shape (n, target_dim) or (n, n_target_tokens, target_dim)
        The image embeddings to reach.
    cond_drop_prob : float | None
        Condition dropout; ``None`` uses ``prior.config.cond_drop_prob``.
    generator : torch.Generator | None
        Source of the timesteps, noise and dropout (seeded runs are reproducible).
    noise_scheduler : diffusers.DDPMScheduler | None
        The forward process; ``None`` builds one from the config.
    draws : PriorDraws | None
        Timesteps, noise and dropout drawn beforehand (:func:`draw_prior_noise`), one row per
        sample; ``None`` draws them here from ``generator``.

    Returns
    -------
    loss : tensor, scalar
    """
    cfg = prior.config
    p = _param(prior)
    x0 = _tokens(target_emb, cfg.n_target_tokens, cfg.target_dim, "target_emb", p.device, p.dtype)
    cond = _tokens(brain_emb, cfg.n_cond_tokens, cfg.condition_dim, "brain_emb", p.device, p.dtype)
    if x0.shape[0] != cond.shape[0]:
        raise ValueError(
            f"'brain_emb' has {cond.shape[0]} rows but 'target_emb' {x0.shape[0]}; pair them."
        )
    sched = noise_scheduler or _scheduler(prior, "ddpm")
    x0 = x0 * cfg.target_scale
    n = x0.shape[0]
    if draws is None:
        draws = draw_prior_noise(prior, n, generator=generator, cond_drop_prob=cond_drop_prob)
    elif draws.noise.shape != x0.shape:
        raise ValueError(
            f"'draws' hold noise of shape {tuple(draws.noise.shape)} for targets of shape "
            f"{tuple(x0.shape)}; draw one row per sample."
        )
    t, noise, drop = (d.to(p.device) for d in draws)
    noise = noise.to(x0.dtype)
    x_t = sched.add_noise(x0, noise, t)
    pred = prior(x_t, t, cond, drop)
    return torch.nn.functional.mse_loss(pred, x0)


@torch.no_grad()
def sample(
    prior: DiffusionPrior,
    brain_emb: Any,
    *,
    num_inference_steps: int | None = None,
    guidance_scale: float = 1.0,
    scheduler: str = "ddpm",
    eta: float = 0.0,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Sample target embeddings for brain embeddings.

    Parameters
    ----------
    prior : DiffusionPrior
        A trained prior (put in eval mode here and restored after).
    brain_emb : array-like or tensor, shape (n, cond_dim) or (n, n_cond_tokens, cond_dim)
        The conditions.
    num_inference_steps : int | None
        Denoising steps; ``None``: all ``num_train_timesteps``.
    guidance_scale : float
        Classifier-free guidance ``s`` (1: conditional model only, no extra pass).
    scheduler : {'ddpm', 'ddim'}
        Ancestral DDPM sampling, or DDIM (deterministic given the starting noise with ``eta=0``).
    eta : float
        DDIM's η.
    seed : int | None
        Seed of a CPU generator (the same samples on every device); ignored with ``generator``.
    generator : torch.Generator | None
        Source of the starting noise (and DDPM's noise).
    batch_size : int
        Conditions per forward pass.

    Returns
    -------
    embeddings : tensor, shape (n, target_dim) or (n, n_target_tokens, target_dim)
        On the prior's device; pooled when ``n_target_tokens == 1``.
    """
    cfg = prior.config
    p = _param(prior)
    cond = _tokens(brain_emb, cfg.n_cond_tokens, cfg.condition_dim, "brain_emb", p.device, p.dtype)
    if generator is None:
        generator = torch.Generator("cpu").manual_seed(0 if seed is None else int(seed))
    sched = _scheduler(prior, scheduler)
    sched.set_timesteps(num_inference_steps or cfg.num_train_timesteps, device=p.device)
    step_kw: dict[str, Any] = {"generator": generator}
    if scheduler == "ddim":
        step_kw["eta"] = eta
    was_training = prior.training
    prior.eval()
    outs = []
    try:
        for start in range(0, cond.shape[0], batch_size):
            c = cond[start : start + batch_size]
            n = c.shape[0]
            shape = (n, cfg.n_target_tokens, cfg.target_dim)
            x = torch.randn(shape, generator=generator, device=generator.device, dtype=p.dtype)
            x = x.to(p.device) * sched.init_noise_sigma
            guided = guidance_scale != 1.0
            for t in sched.timesteps:
                tt = torch.full((n,), int(t), device=p.device, dtype=torch.long)
                if guided:
                    drop = torch.arange(2 * n, device=p.device) >= n  # second half: null
                    both = prior(x.repeat(2, 1, 1), tt.repeat(2), c.repeat(2, 1, 1), drop)
                    x0_c, x0_u = both.chunk(2)
                    x0 = x0_u + guidance_scale * (x0_c - x0_u)
                else:
                    x0 = prior(x, tt, c)
                # a CPU generator with a CUDA prior: diffusers draws on the CPU and moves
                x = sched.step(x0, t, x, **step_kw).prev_sample
            outs.append(x / cfg.target_scale)
    finally:
        prior.train(was_training)
    out = torch.cat(outs)
    return out[:, 0] if cfg.n_target_tokens == 1 else out


def train_prior(
    prior: DiffusionPrior,
    brain_emb: Any,
    target_emb: Any,
    *,
    n_steps: int = 1000,
    batch_size: int = 64,
    lr: float = 3e-4,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> np.ndarray:
    """Fit the prior alone on fixed brain embeddings (AdamW, constant learning rate).

    For training jointly with the brain encoder, add :func:`prior_loss` (weighted, MindEye: 30)
    to the contrastive loss instead.

    Returns
    -------
    losses : ndarray, shape (n_steps,)
        The training loss at every step.
    """
    p = _param(prior)
    cfg = prior.config
    cond = _tokens(brain_emb, cfg.n_cond_tokens, cfg.condition_dim, "brain_emb", p.device, p.dtype)
    x0 = _tokens(target_emb, cfg.n_target_tokens, cfg.target_dim, "target_emb", p.device, p.dtype)
    gen = torch.Generator("cpu").manual_seed(seed)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=weight_decay)
    sched = _scheduler(prior, "ddpm")
    prior.train()
    losses = np.empty(n_steps)
    n = cond.shape[0]
    for step in range(n_steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen).to(p.device)
        loss = prior_loss(prior, cond[idx], x0[idx], generator=gen, noise_scheduler=sched)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.item()
    prior.eval()
    return losses


def save_prior(prior: DiffusionPrior, folder: str | os.PathLike) -> Path:
    """Write ``prior.safetensors`` and ``prior_config.json`` into ``folder``; return it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in prior.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "class": "DiffusionPrior"})
    with atomic_write(folder / CONFIG_NAME, "w") as fh:
        json.dump({"class": "DiffusionPrior", **dataclasses.asdict(prior.config)}, fh, indent=2)
    return folder


def load_prior(folder: str | os.PathLike, *, device: Any = "cpu") -> DiffusionPrior:
    """Load a prior written by :func:`save_prior` (weights checked key by key)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = check_file(folder / CONFIG_NAME, "folder", what="prior config file")
    weights = check_file(folder / WEIGHTS_NAME, "folder", what="prior weights file")
    with open(cfg_path, encoding="utf-8") as fh:
        raw = json.load(fh)
    raw.pop("class", None)
    fields = {f.name for f in dataclasses.fields(PriorConfig)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ValueError(f"{str(cfg_path)!r} has unknown prior settings {unknown}.")
    prior = DiffusionPrior(PriorConfig(**raw))
    state = load_file(str(weights))
    missing, unexpected = prior.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"The weights in {str(weights)!r} do not match the config {str(cfg_path)!r}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return prior.to(device).eval()


# ----------------------------------------------------------------- trained with the encoder
def _token_shape(shape: Any, name: str) -> tuple[int, int]:
    """``(D,)`` → 1 token of ``D``; ``(T, D)`` → ``T`` tokens of ``D``."""
    try:
        dims = tuple(int(n) for n in shape)
    except TypeError as err:
        raise TypeError(
            f"{name!r} must be a shape such as (768,) or (257, 768), got {shape!r}."
        ) from err
    if len(dims) == 1:
        return 1, dims[0]
    if len(dims) == 2:
        return dims[0], dims[1]
    raise ValueError(
        f"{name!r} must be (dim,) for pooled embeddings or (n_tokens, dim) for tokens, got "
        f"{dims}; the diffusion prior works on embedding vectors or token sequences."
    )


def build_joint_prior(
    config: Any,
    target_shape: Any,
    *,
    cond_shape: Any = None,
    seed: int | None = None,
) -> DiffusionPrior:
    """The prior that a training config trains jointly with the encoder (MindEye).

    Parameters
    ----------
    config : TrainConfig
        Its ``prior_kwargs`` (fields of :class:`PriorConfig`) set the architecture; the widths
        and token counts not given there come from the shapes.
    target_shape : tuple of int
        Shape of one target, ``(dim,)`` or ``(n_tokens, dim)`` (``train_data.target_shape``).
    cond_shape : tuple of int | None
        Shape of one backbone output; ``None``: ``target_shape`` (the encoders of
        :mod:`brainalign.models` regress their backbone onto the target's shape).
    seed : int | None
        Seed of the initial weights; ``None``: ``config.seed``.

    Returns
    -------
    prior : DiffusionPrior
        Pass it to ``brainalign.train.fit(..., prior=prior)`` with ``config.prior_weight > 0``.

    Examples
    --------
    >>> from brainalign.train import TrainConfig
    >>> config = TrainConfig(prior_weight=30.0, prior_kwargs={"width": 64, "depth": 2,
    ...                                                       "n_heads": 4})
    >>> prior = build_joint_prior(config, (768,))
    >>> prior.config.target_dim, prior.config.cond_dim, prior.config.depth
    (768, 768, 2)
    """
    kwargs = dict(getattr(config, "prior_kwargs", None) or {})
    fields = [f.name for f in dataclasses.fields(PriorConfig)]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        from brainalign._utils.validation import suggest

        raise ValueError(
            f"Unknown prior setting {unknown[0]!r} in TrainConfig.prior_kwargs."
            f"{suggest(unknown[0], fields)} Allowed: {', '.join(fields)}."
        )
    n_target, target_dim = _token_shape(target_shape, "target_shape")
    n_cond, cond_dim = _token_shape(
        target_shape if cond_shape is None else cond_shape, "cond_shape"
    )
    kwargs.setdefault("target_dim", target_dim)
    kwargs.setdefault("n_target_tokens", n_target)
    kwargs.setdefault("cond_dim", cond_dim)
    kwargs.setdefault("n_cond_tokens", n_cond)
    if seed is None:
        seed = int(getattr(config, "seed", 0))
    return build_prior(PriorConfig(**kwargs), seed=seed)


def load_joint_prior(
    checkpoint: Any, *, best: bool | None = None, device: Any = "cpu"
) -> DiffusionPrior | None:
    """The prior trained jointly with the encoder, from a training checkpoint.

    Parameters
    ----------
    checkpoint : path-like | dict
        A checkpoint folder written by :func:`brainalign.train.fit` (or the dict
        :func:`brainalign.train.load_checkpoint` returns).
    best : bool | None
        Load the weights of the best validation epoch (saved when the run had
        ``restore_best=True``); ``None``: when the run's config says ``restore_best``, as the
        encoder's weights are chosen by :func:`brainalign.pipelines.decode.evaluate_checkpoint`.
    device : str | torch.device
        Where to put the prior.

    Returns
    -------
    prior : DiffusionPrior | None
        In eval mode; ``None`` when the run trained no prior (``prior_weight == 0``).
    """
    if isinstance(checkpoint, dict):
        state = checkpoint
    else:
        from brainalign.train.checkpoint import load_checkpoint

        state = load_checkpoint(checkpoint)
    if state.get("prior") is None:
        return None
    raw = state.get("prior_config")
    if not isinstance(raw, dict):
        raise ValueError(
            "The checkpoint holds prior weights but no 'prior_config'; it was not written by "
            "brainalign.train.fit."
        )
    config = state.get("config")
    if best is None:
        best = bool(getattr(config, "restore_best", False))
    weights = state["prior"]
    if best and state.get("best_prior") is not None:
        weights = state["best_prior"]
    prior = DiffusionPrior(PriorConfig(**raw))
    prior.load_state_dict(weights)
    return prior.to(device).eval()
