"""The training loop: an explicit, resumable, distributed contrastive fit.

One step, as written in :func:`fit`::

    batch      = the step's trials (a function of seed, epoch and position: see epoch_batches)
    x          = batch.x, mixed within each subject by BiMixCo when the MindEye stage says so
    z          = normalize(model(x, subject).projected.flatten(1))   (n, D)
    t          = normalize(batch.target.flatten(1))                 (n, D)
    loss       = loss(z, t)           gathered over ranks under torch.distributed
    loss      += prior_weight * prior.loss(model(x, subject).backbone, batch.target)
                                      only with a diffusion prior trained jointly (below)
    loss      += regression_weight * mse(model(x, subject).backbone, batch.target)
                                      only with regression_weight > 0 (Benchetrit et al. 2024)
    AdamW step, clip the gradient norm, step the LR schedule, update the EMA

After each epoch the validation trials are encoded (with the EMA weights when there are some)
and scored by :func:`brainalign.evaluate.retrieval_metrics` (top-1/top-5, brain → target and
target → brain); training stops after ``patience`` epochs without a better brain → target
top-1. A checkpoint is written after each epoch and every ``checkpoint_every`` steps, and
``fit(..., resume=True)`` continues from the latest one with the same result, to the bit, as a
run that was never interrupted (random states, data position and schedules are all restored).

Under ``torch.distributed`` (``torchrun``), each rank takes its shard of every global batch,
the model and the loss's learnable scale are wrapped together in
:class:`~torch.nn.parallel.DistributedDataParallel`, and the losses gather the embeddings of
every rank, so a step on ``k`` ranks with ``B / k`` trials each equals a step of one process on
the ``B`` trials (with dropout off; BatchNorm statistics stay per rank).

**A diffusion prior trained jointly** (MindEye): with ``TrainConfig.prior_weight > 0`` and
``fit(..., prior=prior)`` (a :class:`brainalign.reconstruct.DiffusionPrior`, built by
:func:`brainalign.reconstruct.build_joint_prior`; this layer only calls its ``loss`` method),
each step adds ``prior_weight`` times the prior's loss: the prior, conditioned on the encoder's
*backbone* output (the projector feeds only the contrastive loss), denoises the step's target
embeddings at random diffusion steps. Its gradient reaches the encoder through the condition.
The prior's parameters sit in the objective module beside the model's (one optimizer, one
gradient clipping, one DDP wrapper), its weights and config are saved in every checkpoint, and
its random draws (timesteps, noise, condition dropout) come from a generator seeded by
``(seed, step)`` for the whole global batch, each rank taking its rows, so resumed and
distributed runs draw as an uninterrupted single process does. During BiMixCo's stage the
prior is conditioned on the mixed inputs' backbone and denoises the unmixed targets, as in
MindEye's code. The EMA averages the encoder only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from brainalign._utils.atomic import atomic_write
from brainalign._utils.device import resolve_device
from brainalign._utils.progress import logger, progress
from brainalign._utils.seeding import seed_everything
from brainalign.train.checkpoint import (
    get_rng_state,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from brainalign.train.config import TrainConfig
from brainalign.train.data import Batch, BrainTargetDataset, epoch_batches
from brainalign.train.ema import ModelEMA

__all__ = ["FitResult", "build_loss", "encode", "evaluate_retrieval", "fit"]

METRICS_NAME = "metrics.jsonl"
_LABELLED_LOSSES = ("clip", "siglip", "dcl")

Callback = Callable[[dict[str, Any]], Any]


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (the one passed in, trained in place; the best epoch's weights when
        ``restore_best``).
    loss : torch.nn.Module | None
        The loss module with its learned scale (``None`` for ``"mindeye"``).
    history : list of dict
        One entry per epoch: ``epoch``, ``step``, ``train_loss`` and the validation metrics
        (``val_top1_brain_to_target``, ``val_top5_brain_to_target``,
        ``val_top1_target_to_brain``, …).
    best_epoch : int | None
        Epoch (0-based) of the best validation top-1; ``None`` without validation.
    best_score : float | None
        That top-1.
    n_steps : int
        Optimisation steps done (in total, across resumes).
    stopped_early : bool
        Whether early stopping (or a callback) ended training before ``epochs``.
    ema : ModelEMA | None
        The moving average (``result.ema.copy_to(model)`` loads it).
    out_dir : Path | None
        The run folder.
    prior : torch.nn.Module | None
        The diffusion prior trained jointly (the best epoch's weights when ``restore_best``),
        or ``None``.
    """

    model: nn.Module
    loss: nn.Module | None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    n_steps: int = 0
    stopped_early: bool = False
    ema: ModelEMA | None = None
    out_dir: Path | None = None
    prior: nn.Module | None = None


# ------------------------------------------------------------------ the loss
def build_loss(config: TrainConfig, *, distributed: bool = False) -> nn.Module | None:
    """The loss module named by ``config.loss`` (``None`` for the ``"mindeye"`` schedule)."""
    from brainalign import losses

    classes = {
        "clip": losses.ClipLoss,
        "softclip": losses.SoftClipLoss,
        "siglip": losses.SigLipLoss,
        "dcl": losses.DCLLoss,
    }
    if config.loss == "mindeye":
        return None
    cls = classes[config.loss]
    try:
        return cls(**config.loss_kwargs, distributed=distributed)  # type: ignore[no-any-return]
    except TypeError as err:
        raise TypeError(
            f"TrainConfig.loss_kwargs {config.loss_kwargs} do not fit {cls.__name__}: {err}. "
            f"See help(brainalign.losses.{cls.__name__})."
        ) from err


def _build_schedule(config: TrainConfig) -> Any:
    if config.loss != "mindeye":
        return None
    from brainalign.losses import LossSchedule

    try:
        return LossSchedule(config.epochs, **config.loss_kwargs)
    except TypeError as err:
        raise TypeError(
            f"TrainConfig.loss_kwargs {config.loss_kwargs} do not fit LossSchedule (mix_fraction, "
            f"mix_temperature, soft_temperature_start, soft_temperature_end): {err}."
        ) from err


class JointOutput(NamedTuple):
    """What the objective returns when a term is added to the contrastive loss.

    ``loss`` is what is minimised, ``contrastive + prior_weight * prior + regression_weight *
    regression``; ``prior`` and ``regression`` are ``None`` when their weight is 0. ``align``,
    ``uniform`` and the accuracies are the contrastive loss's terms (as in
    :class:`~brainalign.losses.LossOutput`).
    """

    loss: torch.Tensor
    align: torch.Tensor | None
    uniform: torch.Tensor | None
    accuracy_xy: torch.Tensor | None
    accuracy_yx: torch.Tensor | None
    contrastive: torch.Tensor
    prior: torch.Tensor | None
    regression: torch.Tensor | None = None


class _Objective(nn.Module):
    """The model, the loss (and a jointly trained prior) in one module, so that DDP averages
    the gradients of the loss's scale and of the prior too."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None,
        distributed: bool,
        prior: nn.Module | None = None,
        prior_weight: float = 0.0,
        regression_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.distributed = distributed
        self.prior_weight = float(prior_weight)
        self.regression_weight = float(regression_weight)
        # registered last: without a prior the parameters (and their order) are unchanged
        self.prior = prior

    def forward(
        self,
        x: torch.Tensor,
        subject: list[str],
        target: torch.Tensor,
        labels: torch.Tensor,
        stage: Any = None,
        perm: torch.Tensor | None = None,
        betas: torch.Tensor | None = None,
        prior_seed: int | None = None,
        prior_rows: torch.Tensor | None = None,
        prior_n_rows: int | None = None,
    ) -> Any:
        output = self.model(x, subject)
        out = self._contrastive(_projected(output), target, labels, stage, perm, betas)
        if self.prior is None and not self.regression_weight:
            return out
        total = out.loss
        regression = None
        if self.regression_weight:
            regression = _regression_loss(_backbone(output), target, perm, betas)
            total = total + self.regression_weight * regression
        prior = None
        if self.prior is not None:
            generator = None
            if prior_seed is not None:
                generator = torch.Generator("cpu").manual_seed(int(prior_seed))
            module: Any = self.prior  # a DiffusionPrior: the loss method is duck-typed here
            prior = module.loss(
                _backbone(output).float(), target.float(), generator=generator, rows=prior_rows,
                n_rows=prior_n_rows,
            )  # fmt: skip
            total = total + self.prior_weight * prior
        return JointOutput(total, out.align, out.uniform, out.accuracy_xy, out.accuracy_yx,
                           out.loss, prior, regression)  # fmt: skip

    @property
    def terms(self) -> tuple[str, ...]:
        """The names of the loss's terms, logged apart when there is more than one."""
        extra: tuple[str, ...] = ("prior",) if self.prior is not None else ()
        if self.regression_weight:
            extra += ("regression",)
        return ("contrastive", *extra) if extra else ()

    def _contrastive(
        self,
        projected: torch.Tensor,
        target: torch.Tensor,
        labels: torch.Tensor,
        stage: Any,
        perm: torch.Tensor | None,
        betas: torch.Tensor | None,
    ) -> Any:
        z = F.normalize(projected.flatten(1).float(), dim=1)
        t = F.normalize(target.flatten(1).float(), dim=1)
        if z.shape != t.shape:
            raise ValueError(
                f"The model's output has {z.shape[1]} values per sample but the targets have "
                f"{t.shape[1]}; build the model with target_shape={tuple(target.shape[1:])}."
            )
        if stage is not None:
            return stage(z, t, perm=perm, betas=betas, distributed=self.distributed,
                         return_output=True)  # fmt: skip
        if self.loss is None:  # build_loss gives a loss module or a schedule, never neither
            raise RuntimeError("The objective has neither a loss nor a loss schedule.")
        if isinstance(self.loss, _labelled_types()):
            return self.loss(z, t, labels=labels, return_output=True)
        return self.loss(z, t, return_output=True)


def _regression_loss(
    backbone: torch.Tensor,
    target: torch.Tensor,
    perm: torch.Tensor | None,
    betas: torch.Tensor | None,
) -> torch.Tensor:
    """Mean squared error between the backbone output and the target, per value.

    Under BiMixCo the inputs were mixed, ``betas * x + (1 - betas) * x[perm]``; the target is
    mixed with the same coefficients (mixup of a regression), not left unmixed.
    """
    if backbone.shape != target.shape:  # F.mse_loss would broadcast (n, D) against (n, 1, D)
        raise ValueError(
            f"regression_weight needs the model's backbone output shaped like the targets, got "
            f"{tuple(backbone.shape)} for targets {tuple(target.shape)}; build the model with "
            f"target_shape={tuple(target.shape[1:])}, or set regression_weight=0."
        )
    target = target.float()
    if perm is not None and betas is not None:
        coef = betas.to(target).reshape((-1,) + (1,) * (target.ndim - 1))
        target = coef * target + (1 - coef) * target[perm]
    return F.mse_loss(backbone.float(), target)


def _labelled_types() -> tuple[type, ...]:
    from brainalign import losses

    return (losses.ClipLoss, losses.SigLipLoss, losses.DCLLoss)


def _backbone(output: Any) -> torch.Tensor:
    """The regression output that conditions the prior (the tensor itself for plain models)."""
    backbone = getattr(output, "backbone", None)
    if backbone is None:
        return _projected(output)
    return backbone  # type: ignore[no-any-return]


def _projected(output: Any) -> torch.Tensor:
    projected = getattr(output, "projected", None)
    if projected is None:
        if isinstance(output, torch.Tensor):
            return output
        raise TypeError(
            f"The model must return an EncoderOutput (or a tensor), got {type(output).__name__}."
        )
    return projected  # type: ignore[no-any-return]


def _within_subject_perm(subject: Sequence[str], rng: np.random.Generator) -> torch.Tensor:
    """A permutation that only swaps rows of the same subject (their voxels differ)."""
    ids = np.asarray(subject)
    perm = np.arange(len(ids))
    for s in dict.fromkeys(ids.tolist()):
        rows = np.flatnonzero(ids == s)
        perm[rows] = rows[rng.permutation(len(rows))]
    return torch.from_numpy(perm)


# -------------------------------------------------------------- optimisation
def _optimizer(params: Iterable[tuple[str, nn.Parameter]], config: TrainConfig) -> Any:
    """AdamW; no weight decay on biases, norms and scalars (MindEye's grouping)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    params_all = decay + no_decay
    # the fused kernel updates every tensor in one pass: on the CPU torch's default loops over
    # the parameters one by one, 5-6x slower for a MindEye-size model (benchmarks/bench_train.py)
    fused = bool(params_all) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params_all
    )
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, fused=fused or None)


class _WarmupCosine:
    """Linear warm-up to 1 over ``warmup`` steps, then a half cosine to 0 (or constant)."""

    def __init__(self, warmup: int, total: int, cosine: bool) -> None:
        self.warmup, self.total, self.cosine = warmup, total, cosine

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if not self.cosine:
            return 1.0
        progress_ = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


def _scheduler(optimizer: Any, config: TrainConfig, total: int) -> Any:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total,
            pct_start=max(config.warmup, 1e-6),
            anneal_strategy="cos",
            cycle_momentum=False,
        )
    lam = _WarmupCosine(int(config.warmup * total), total, config.schedule == "cosine")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lam)


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def encode(
    model: nn.Module, data: BrainTargetDataset, *, batch_size: int = 256, device: Any = None
) -> torch.Tensor:
    """The model's projected embeddings of every trial, flattened, in dataset order.

    Parameters
    ----------
    model : torch.nn.Module
        An encoder of :mod:`brainalign.models` (run in eval mode, then put back).
    data : BrainTargetDataset
        The trials.
    batch_size : int
        Trials per forward pass.
    device : torch.device | None
        Where to run; ``None``: the model's device.

    Returns
    -------
    embeddings : torch.Tensor, shape (n_trials, prod(target_shape))
        Float32, on the CPU, not normalised.
    """
    if device is None:
        device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for idx in torch.arange(len(data)).split(batch_size):
            batch = data.batch(idx).to(device)
            out.append(_projected(model(batch.x, batch.subject)).flatten(1).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def evaluate_retrieval(
    model: nn.Module,
    data: BrainTargetDataset,
    *,
    ks: Sequence[int] = (1, 5),
    batch_size: int = 256,
    device: Any = None,
) -> dict[str, float]:
    """Top-k retrieval of the trials' stimuli among the dataset's stimuli, both directions.

    Brain embeddings of repeated stimuli are averaged (MindEye's protocol); the gallery holds
    the targets of the stimuli that have trials.

    Returns
    -------
    metrics : dict of str to float
        ``top{k}_brain_to_target`` and ``top{k}_target_to_brain`` for each ``k`` not larger
        than the number of stimuli.
    """
    from brainalign.evaluate.retrieval import retrieval_metrics

    brain = encode(model, data, batch_size=batch_size, device=device)
    stimuli = data.trial_stimuli()
    unique = torch.unique(stimuli)
    ks = tuple(k for k in ks if k <= len(unique)) or (1,)
    result = retrieval_metrics(
        brain.numpy(),
        data.targets[unique].flatten(1).float().numpy(),
        ks=ks,
        brain_ids=stimuli.numpy(),
        stimulus_ids=unique.numpy(),
        n_bootstrap=0,
    )
    names = {"brain_to_stimulus": "brain_to_target", "stimulus_to_brain": "target_to_brain"}
    return {
        f"top{k}_{short}": float(result.metrics[direction][f"top{k}"])
        for direction, short in names.items()
        for k in ks
    }


# ------------------------------------------------------------------ helpers
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(config: TrainConfig, world_size: int) -> torch.device:
    if config.device == "auto" and world_size > 1 and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return resolve_device(config.device)


def _check_data(data: Any, name: str) -> BrainTargetDataset:
    if not isinstance(data, BrainTargetDataset):
        raise TypeError(
            f"{name!r} must be a brainalign.train.BrainTargetDataset, got {type(data).__name__}; "
            "build one with BrainTargetDataset(brain, stimulus_ids, targets)."
        )
    return data


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _all_ranks_mean(value: torch.Tensor, world_size: int) -> float:
    value = value.detach()
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / world_size
    return float(value)


def _all_ranks_means(values: Sequence[torch.Tensor], world_size: int) -> list[float]:
    """:func:`_all_ranks_mean` of several scalars in one reduction."""
    stacked = torch.stack([v.detach().float() for v in values])
    if world_size > 1:
        dist.all_reduce(stacked)
        stacked = stacked / world_size
    return [float(v) for v in stacked.cpu()]


def _check_prior(prior: Any, config: TrainConfig, train_data: BrainTargetDataset) -> None:
    if config.prior_weight > 0 and prior is None:
        raise ValueError(
            f"TrainConfig.prior_weight={config.prior_weight} trains a diffusion prior with the "
            "encoder, but fit got no prior: pass prior=brainalign.reconstruct."
            "build_joint_prior(config, train_data.target_shape) (the training layer does not "
            "build reconstruction models), or set prior_weight=0."
        )
    if prior is None:
        return
    if config.prior_weight == 0:
        raise ValueError(
            "fit got a prior but TrainConfig.prior_weight=0, so it would not be trained; set "
            "prior_weight (MindEye: 30) or drop the prior."
        )
    if not isinstance(prior, nn.Module) or not callable(getattr(prior, "loss", None)):
        raise TypeError(
            f"'prior' must be an nn.Module with a loss(condition, target, generator=, rows=, "
            f"n_rows=) method (brainalign.reconstruct.DiffusionPrior), got "
            f"{type(prior).__name__}."
        )


def _prior_seed(seed: int, step: int) -> int:
    """Seed of a step's prior draws: a function of the run's seed and the global step."""
    return int(np.random.SeedSequence([seed, step, 0x5052]).generate_state(1)[0])


def _prior_config(prior: nn.Module) -> dict[str, Any] | None:
    import dataclasses

    config = getattr(prior, "config", None)
    if config is not None and dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return None


# --------------------------------------------------------------------- fit
def fit(
    model: nn.Module | None,
    train_data: BrainTargetDataset,
    val_data: BrainTargetDataset | None = None,
    config: TrainConfig | None = None,
    *,
    prior: nn.Module | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    verbose: bool = True,
) -> FitResult:
    """Train an encoder contrastively on (trial, stimulus target) pairs.

    Parameters
    ----------
    model : torch.nn.Module | None
        An encoder of :mod:`brainalign.models` (``model(x, subject)`` returning an
        :class:`~brainalign.models.EncoderOutput` shaped like the targets), trained in place
        and moved to ``config.device``; ``None`` builds
        ``build_model(config.model, **config.model_kwargs)``.
    train_data : BrainTargetDataset
        Training trials; batches may mix subjects.
    val_data : BrainTargetDataset | None
        Validation trials, scored by retrieval after each epoch (early stopping needs them).
    config : TrainConfig | None
        The settings (defaults when ``None``).
    prior : torch.nn.Module | None
        A diffusion prior to train jointly, with ``config.prior_weight > 0`` (MindEye); build
        it with ``brainalign.reconstruct.build_joint_prior(config, train_data.target_shape)``.
        Trained in place and moved to the device; ``None`` without ``prior_weight``. On resume,
        its weights come from the checkpoint.
    resume : bool
        Continue from :func:`~brainalign.train.latest_checkpoint` of ``config.out_dir`` (from
        scratch when there is none). The result equals an uninterrupted run's.
    callbacks : sequence of callable
        Each is called as ``callback(info)`` after every step (``info["event"] == "step"``)
        and epoch (``"epoch"``), with ``step``, ``epoch``, ``batch`` (batches done in the
        epoch), ``metrics`` and ``model``. Returning ``True`` stops training (as early
        stopping does); an exception propagates (the last checkpoint stays resumable).
    verbose : bool
        Show a tqdm bar (rank 0 only) and log each epoch.

    Returns
    -------
    result : FitResult

    Notes
    -----
    ``metrics.jsonl`` in ``out_dir`` gets one JSON object per ``log_every`` steps (``step``,
    ``epoch``, ``loss``, ``align``, ``uniform``, ``acc_brain_to_target``, ``lr``,
    ``grad_norm``) and one per epoch with the validation metrics (``"event": "epoch"``). With a
    prior, ``loss`` is the total minimised, and each step record adds ``contrastive_loss`` and
    ``prior_loss`` (the epoch records ``train_contrastive_loss`` and ``train_prior_loss``); the
    checkpoints hold ``prior`` (its state dict), ``prior_config`` and, with ``restore_best``,
    ``best_prior`` (:func:`brainalign.reconstruct.load_joint_prior` reads them).
    """
    threads = getattr(config, "cpu_threads", None)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _fit(
            model,
            train_data,
            val_data,
            config,
            prior=prior,
            resume=resume,
            callbacks=callbacks,
            verbose=verbose,
        )
    finally:
        torch.set_num_threads(before)


def _fit(
    model: nn.Module | None,
    train_data: BrainTargetDataset,
    val_data: BrainTargetDataset | None = None,
    config: TrainConfig | None = None,
    *,
    prior: nn.Module | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    verbose: bool = True,
) -> FitResult:
    """The body of :func:`fit` (which sets and restores the thread count)."""
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"'config' must be a TrainConfig, got {type(config).__name__}.")
    train_data = _check_data(train_data, "train_data")
    if val_data is not None:
        val_data = _check_data(val_data, "val_data")
    out_dir = Path(config.out_dir) if config.out_dir is not None else None
    if resume and out_dir is None:
        raise ValueError("resume=True needs TrainConfig.out_dir, the folder of the checkpoints.")
    if config.patience is not None and val_data is None:
        raise ValueError(
            f"TrainConfig.patience={config.patience} needs validation data: pass val_data, or "
            "set patience=None."
        )
    _check_prior(prior, config, train_data)
    rank, world_size = _dist_info()
    distributed = world_size > 1
    main = rank == 0
    device = _device(config, world_size)
    if model is None:
        from brainalign.models import build_model

        model = build_model(config.model, **config.model_kwargs)
    model.to(device)
    loss_module = build_loss(config, distributed=distributed)
    schedule = _build_schedule(config)
    if prior is not None:
        prior.to(device)
    objective = _Objective(
        model, loss_module, distributed, prior, config.prior_weight, config.regression_weight
    ).to(device)
    terms = objective.terms
    optimizer = _optimizer(objective.named_parameters(), config)

    batches0 = epoch_batches(
        len(train_data), config.batch_size, seed=config.seed, epoch=0, rank=rank,
        world_size=world_size, drop_last=config.drop_last,
    )  # fmt: skip
    steps_per_epoch = len(batches0)
    if steps_per_epoch == 0:
        raise ValueError(
            f"No training batch: {len(train_data)} trials and batch_size={config.batch_size} "
            "with drop_last=True; lower batch_size or set drop_last=False."
        )
    total_steps = config.epochs * steps_per_epoch
    scheduler = _scheduler(optimizer, config, total_steps)
    ema = ModelEMA(model, config.ema_decay) if config.ema_decay is not None else None
    use_bf16 = config.precision == "bf16" and device.type == "cuda"
    if config.precision == "bf16" and not use_bf16:
        logger.info("precision='bf16' runs in float32 on %s (autocast is used on CUDA).", device)

    subjects = getattr(model, "subjects", ())
    if distributed:
        kwargs: dict[str, Any] = {"device_ids": [device.index]} if device.type == "cuda" else {}
        wrapped: nn.Module = nn.parallel.DistributedDataParallel(
            objective, find_unused_parameters=len(subjects) > 1, **kwargs
        )
    else:
        wrapped = objective

    seed_everything(config.seed + rank)
    trainer: dict[str, Any] = {
        "epoch": 0, "batch": 0, "step": 0, "best_score": None, "best_epoch": None,
        "bad_epochs": 0, "history": [], "stopped": False, "train_loss_sum": 0.0,
    }  # fmt: skip
    trainer.update({f"{name}_loss_sum": 0.0 for name in terms})
    best_state: dict[str, torch.Tensor] | None = None
    best_prior: dict[str, torch.Tensor] | None = None
    metrics_path = out_dir / METRICS_NAME if out_dir is not None else None

    checkpoint = latest_checkpoint(out_dir) if resume and out_dir is not None else None
    if resume and checkpoint is None:
        logger.info("No checkpoint in %s; training from scratch.", out_dir)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, map_location=device)
        if (state.get("prior") is not None) != (prior is not None):
            raise ValueError(
                f"The checkpoint {str(checkpoint)!r} was written "
                + ("with" if prior is None else "without")
                + " a jointly trained prior, and this fit has "
                + ("none" if prior is None else "one")
                + "; resume with the run's own config (its prior_weight) and prior."
            )
        saved = state.get("config")
        saved_weight = getattr(saved, "regression_weight", config.regression_weight)
        if saved_weight != config.regression_weight:
            # the loss would change mid-run, and the new term's running sums start mid-epoch
            raise ValueError(
                f"The checkpoint {str(checkpoint)!r} was trained with regression_weight="
                f"{saved_weight}, and this fit has regression_weight={config.regression_weight}; "
                "resume with the run's own config, or train a new run in another out_dir."
            )
        if prior is not None:
            try:
                prior.load_state_dict(state["prior"])
            except RuntimeError as err:
                raise ValueError(
                    f"The prior in {str(checkpoint)!r} does not fit the prior passed to fit "
                    f"(build it from the run's config, prior_kwargs included): {err}"
                ) from err
            best_prior = state.get("best_prior")
        model.load_state_dict(state["model"])
        if loss_module is not None and state.get("loss") is not None:
            loss_module.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        trainer.update(state["trainer"])
        best_state = state.get("best_model")
        rng = state["rng"]
        set_rng_state(rng[rank] if rank < len(rng) else rng[0])
        if main:
            logger.info("Resuming from %s (epoch %d, step %d).", checkpoint,
                        trainer["epoch"], trainer["step"])  # fmt: skip
    if main and metrics_path is not None:
        out_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        kept = [r for r in _read_metrics(metrics_path) if r.get("step", 0) <= trainer["step"]]
        with atomic_write(metrics_path, "w") as fh:
            for record in kept if checkpoint is not None else []:
                fh.write(json.dumps(record) + "\n")
        config.to_yaml(out_dir / "config.yaml")  # type: ignore[operator]

    def _write(record: dict[str, Any]) -> None:
        if main and metrics_path is not None:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _save() -> None:
        if out_dir is None:
            return
        rngs = [get_rng_state()]
        if distributed:
            rngs = [None] * world_size  # type: ignore[list-item]
            dist.all_gather_object(rngs, get_rng_state())
        if main:
            state = {
                "model": model.state_dict(),
                "loss": loss_module.state_dict() if loss_module is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "trainer": dict(trainer),
                "best_model": best_state,
                "rng": rngs,
            }
            if prior is not None:
                state["prior"] = prior.state_dict()
                state["prior_config"] = _prior_config(prior)
                state["best_prior"] = best_prior
            save_checkpoint(out_dir, state, step=trainer["step"], config=config,
                            keep=config.keep_checkpoints)  # fmt: skip
        if distributed:
            dist.barrier()

    def _notify(info: dict[str, Any]) -> bool:
        stop = False
        for callback in callbacks:
            stop = bool(callback(info)) or stop
        return stop

    params = [p for p in objective.parameters() if p.requires_grad]
    objective.train()
    bar = None
    if verbose and main:
        bar = progress(range(total_steps), desc="fit", total=total_steps, initial=trainer["step"])
    stop = trainer["stopped"]
    epoch = trainer["epoch"]
    while epoch < config.epochs and not stop:
        stage = schedule.at(epoch) if schedule is not None else None
        batches = epoch_batches(len(train_data), config.batch_size, seed=config.seed,
                                epoch=epoch, rank=rank, world_size=world_size,
                                drop_last=config.drop_last)  # fmt: skip
        for b in range(trainer["batch"], len(batches)):
            batch: Batch = train_data.batch(batches[b]).to(device)
            x, perm, betas = batch.x, None, None
            if stage is not None and stage.mix_inputs:
                from brainalign.losses import mixco

                rng = np.random.default_rng([config.seed, epoch, b, rank])
                perm = _within_subject_perm(batch.subject, rng)
                x, perm, betas, _ = mixco(x, perm=perm, seed=rng)
            prior_kw: dict[str, Any] = {}
            if prior is not None:  # the global batch's draws; this rank's rows of them
                rows = torch.arange(len(batch)) * world_size + rank
                prior_kw = {"prior_seed": _prior_seed(config.seed, trainer["step"]),
                            "prior_rows": rows, "prior_n_rows": config.batch_size}  # fmt: skip
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = wrapped(x, batch.subject, batch.target, batch.stimulus, stage, perm, betas,
                              **prior_kw)  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if config.grad_clip is not None:
                grad_norm = float(nn.utils.clip_grad_norm_(params, config.grad_clip))
            else:
                grad_norm = float("nan")
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            trainer["step"] += 1
            trainer["batch"] = b + 1
            loss_value, *term_values = _all_ranks_means(
                (out.loss, *(getattr(out, name) for name in terms)), world_size
            )
            trainer["train_loss_sum"] += loss_value
            record = {"event": "step", "step": trainer["step"], "epoch": epoch, "loss": loss_value}
            for name, value in zip(terms, term_values, strict=True):
                trainer[f"{name}_loss_sum"] += value
                record[f"{name}_loss"] = value
            if trainer["step"] % config.log_every == 0:
                for key, name in (("align", "align"), ("uniform", "uniform"),
                                  ("accuracy_xy", "acc_brain_to_target")):  # fmt: skip
                    value = getattr(out, key)
                    if value is not None:
                        record[name] = _all_ranks_mean(value, world_size)
                record["lr"] = float(optimizer.param_groups[0]["lr"])
                record["grad_norm"] = grad_norm
                if stage is not None:
                    record["stage"] = stage.loss
                    record["temperature"] = stage.temperature
                _write(record)
            if bar is not None:
                bar.update(1)  # type: ignore[attr-defined]
                bar.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch)  # type: ignore[attr-defined]
            if (
                config.checkpoint_every is not None
                and trainer["step"] % config.checkpoint_every == 0
                and b + 1 < len(batches)
            ):
                _save()
            info = {"event": "step", "step": trainer["step"], "epoch": epoch,
                    "batch": b + 1, "metrics": record, "model": model}  # fmt: skip
            if _notify(info):
                stop = True
                break
        if stop and trainer["batch"] < len(batches):
            trainer["stopped"] = True
            _save()
            break
        # ---------------------------------------------------------- epoch end
        entry: dict[str, Any] = {
            "event": "epoch",
            "epoch": epoch,
            "step": trainer["step"],
            "train_loss": trainer["train_loss_sum"] / max(1, len(batches)),
        }
        for name in terms:
            entry[f"train_{name}_loss"] = trainer[f"{name}_loss_sum"] / max(1, len(batches))
        if val_data is not None:
            context = ema.swapped(model) if ema is not None else contextlib.nullcontext()
            with context:
                val = evaluate_retrieval(model, val_data, batch_size=max(config.batch_size, 64),
                                         device=device)  # fmt: skip
            entry.update({f"val_{k}": v for k, v in val.items()})
            score = val["top1_brain_to_target"]
            if trainer["best_score"] is None or score > trainer["best_score"]:
                trainer["best_score"], trainer["best_epoch"] = score, epoch
                trainer["bad_epochs"] = 0
                if config.restore_best:
                    source = ema.state_dict() if ema is not None else model.state_dict()
                    best_state = {k: v.detach().clone() for k, v in source.items()}
                    if prior is not None:
                        best_prior = {k: v.detach().clone() for k, v in prior.state_dict().items()}
            else:
                trainer["bad_epochs"] += 1
            if config.patience is not None and trainer["bad_epochs"] >= config.patience:
                stop = True
        trainer["history"].append(entry)
        _write(entry)
        if verbose and main:
            shown = {k: round(v, 4) for k, v in entry.items() if isinstance(v, float)}
            logger.info("epoch %d: %s", epoch, shown)
        if _notify({"event": "epoch", "step": trainer["step"], "epoch": epoch,
                    "batch": len(batches), "metrics": entry, "model": model}):  # fmt: skip
            stop = True
        epoch += 1
        trainer.update(epoch=epoch, batch=0, train_loss_sum=0.0, stopped=stop)
        trainer.update({f"{name}_loss_sum": 0.0 for name in terms})
        _save()
    if bar is not None:
        bar.close()  # type: ignore[attr-defined]
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
        if prior is not None and best_prior is not None:
            prior.load_state_dict(best_prior)
    if prior is not None:
        prior.eval()
    return FitResult(
        model=model,
        loss=loss_module,
        history=list(trainer["history"]),
        best_epoch=trainer["best_epoch"],
        best_score=trainer["best_score"],
        n_steps=trainer["step"],
        stopped_early=bool(trainer["stopped"]) and epoch < config.epochs,
        ema=ema,
        out_dir=out_dir,
        prior=prior,
    )
