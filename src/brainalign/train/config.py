"""The training configuration: one frozen dataclass, read from and written to YAML.

Every field is checked when the config is built, and an error names the key, the value received
and the fix. ``from_yaml(path, overrides=["lr=1e-3", "model_kwargs.hidden=64"])`` reads a file
and applies ``key=value`` overrides (values are parsed as YAML: ``1e-3`` is a float, ``null`` is
``None``, ``[1, 2]`` a list); dotted keys reach into the dict fields (``model_kwargs``,
``loss_kwargs``, ``prior_kwargs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainalign._utils.atomic import atomic_write
from brainalign._utils.validation import check_file, check_option, suggest

__all__ = ["LOSSES", "PRECISIONS", "SCHEDULES", "TrainConfig"]

#: losses the loop knows: name -> what it is
LOSSES = {
    "clip": "InfoNCE with a learnable logit scale (brainalign.losses.ClipLoss)",
    "softclip": "SoftCLIP at a fixed temperature (brainalign.losses.SoftClipLoss)",
    "siglip": "sigmoid loss with learnable scale and bias (brainalign.losses.SigLipLoss)",
    "dcl": "decoupled contrastive loss (brainalign.losses.DCLLoss)",
    "mindeye": "MindEye's BiMixCo then SoftCLIP schedule by epoch (brainalign.losses.LossSchedule)",
}
SCHEDULES = ("cosine", "onecycle", "constant")
# the fields that hold dicts (dotted overrides reach into them)
_DICT_FIELDS = ("model_kwargs", "loss_kwargs", "prior_kwargs")
PRECISIONS = ("fp32", "bf16")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train an encoder (everything but the data and the model's weights).

    Attributes
    ----------
    model : str
        Registered recipe of :func:`brainalign.models.build_model` (``"mindeye2"``, …); used when
        :func:`~brainalign.train.fit` gets no model.
    model_kwargs : dict
        Its constructor arguments (``n_voxels``, ``target_dim``, ``hidden``, …).
    loss : {"clip", "softclip", "siglip", "dcl", "mindeye"}
        The contrastive loss (see :data:`LOSSES`); ``"mindeye"`` is BiMixCo for the first
        ``mix_fraction`` of the epochs then SoftCLIP with an annealed temperature.
    loss_kwargs : dict
        Arguments of the loss module (``init_logit_scale``, ``temperature`` …) or, for
        ``"mindeye"``, of :class:`~brainalign.losses.LossSchedule` (``mix_fraction`` …).
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW's decoupled weight decay.
    epochs : int
        Number of passes over the training data.
    batch_size : int
        Global batch size: summed over the ranks under ``torch.distributed`` (each rank takes
        ``batch_size / world_size``), so a config trains the same way on any number of GPUs.
    warmup : float in [0, 1)
        Fraction of the total steps of linear warm-up (``"cosine"``), or the rising fraction of
        ``"onecycle"`` (its ``pct_start``).
    schedule : {"cosine", "onecycle", "constant"}
        Learning-rate schedule after the warm-up.
    grad_clip : float | None
        Clip the global gradient norm to this value; ``None``: no clipping.
    precision : {"fp32", "bf16"}
        ``"bf16"``: autocast to bfloat16 on CUDA (the CPU always runs in float32).
    ema_decay : float in (0, 1) | None
        Keep an exponential moving average of the weights (validated and saved); ``None``: none.
    patience : int | None
        Stop after this many epochs without a better validation top-1; ``None``: never.
    seed : int
        Seed of the data order, the mixing draws and the dropout masks.
    out_dir : str | None
        Folder of the checkpoints and ``metrics.jsonl``; ``None``: nothing is written (and
        ``resume`` is impossible).
    log_every : int
        Append the step's metrics to ``metrics.jsonl`` every ``log_every`` steps.
    checkpoint_every : int | None
        Also checkpoint every this many steps (mid-epoch); checkpoints are always written at
        the end of each epoch when ``out_dir`` is set.
    keep_checkpoints : int
        Number of most recent checkpoints kept on disk.
    drop_last : bool
        Drop the last incomplete batch of each epoch (contrastive losses prefer full batches).
    restore_best : bool
        Load the weights of the best validation epoch at the end.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` … (under ``torch.distributed`` on CUDA,
        ``"auto"`` means the rank's ``LOCAL_RANK`` GPU).
    cpu_threads : int | None
        torch's intra-op threads while training (restored afterwards); ``None`` leaves torch's
        setting. Small models train faster on one thread: measured here, a MindEye-style
        encoder of 256 hidden units took 0.14 s per step on one thread and 0.6-1.4 s on two
        when another process shared the two cores (the threads wait for each other).
    prior_weight : float
        Weight of the diffusion prior's loss trained jointly with the encoder (MindEye: 30):
        each step adds ``prior_weight * prior_loss`` to the contrastive loss, where the prior is
        conditioned on the encoder's backbone output (not the projector's) and denoises the
        target embedding. ``0`` (the default): no prior, training exactly as without one. A
        positive weight needs the prior network passed to :func:`~brainalign.train.fit`
        (``prior=brainalign.reconstruct.build_joint_prior(config, target_shape)``).
    regression_weight : float
        Weight of a mean squared error between the encoder's backbone output and the target:
        each step adds ``regression_weight * mse`` to the contrastive loss (and to the prior's
        term, when there is one). The projector feeds the contrastive loss, the backbone the
        regression, as in Benchetrit et al. (2024), who train their MEG decoder on
        ``λ · CLIP + (1 - λ) · MSE`` (``regression_weight = (1 - λ) / λ``; the rate scales
        the whole loss). The contrastive loss only ranks; the regression also asks for the
        target's scale and every one of its dimensions, which regularises a decoder trained on
        few, noisy trials (measured on the default simulated fMRI dataset: see
        ``configs/decode_simulated_fmri.yaml``). ``0`` (the default): contrastive only. Under
        BiMixCo the regression's target is mixed like the inputs. A run resumes only with the
        weight it was trained with.
    prior_kwargs : dict
        The prior's architecture and noise schedule: fields of
        :class:`brainalign.reconstruct.PriorConfig` (``width``, ``depth``, ``n_heads``,
        ``num_train_timesteps``, ``cond_drop_prob`` …); its widths and token counts default to
        the targets' and the backbone's shapes. Read by ``build_joint_prior``.
    """

    model: str = "mindeye2"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "clip"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    lr: float = 3e-4
    weight_decay: float = 1e-2
    epochs: int = 10
    batch_size: int = 32
    warmup: float = 0.1
    schedule: str = "cosine"
    grad_clip: float | None = 1.0
    precision: str = "fp32"
    ema_decay: float | None = None
    patience: int | None = None
    seed: int = 0
    out_dir: str | None = None
    log_every: int = 1
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    drop_last: bool = True
    restore_best: bool = False
    device: str = "auto"
    cpu_threads: int | None = None
    prior_weight: float = 0.0
    regression_weight: float = 0.0
    prior_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _DICT_FIELDS:
            value = getattr(self, name)
            if value is None:
                value = {}
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise TypeError(
                    f"TrainConfig.{name} must be a dict with string keys, got {value!r:.80}; "
                    f"write it as a mapping in YAML ({name}: {{hidden: 64}})."
                )
            object.__setattr__(self, name, dict(value))
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(
                f"TrainConfig.model must be a registered model name, got {self.model!r}."
            )
        check_option("loss", self.loss, LOSSES)
        check_option("schedule", self.schedule, SCHEDULES)
        check_option("precision", self.precision, PRECISIONS)
        self._check_number("lr", positive=True)
        self._check_number("weight_decay", positive=False)
        self._check_int("epochs", minimum=1)
        self._check_int("batch_size", minimum=1)
        self._check_number("warmup", positive=False)
        if not self.warmup < 1:
            raise ValueError(
                f"TrainConfig.warmup is a fraction of the steps in [0, 1), got {self.warmup!r}."
            )
        self._check_number("grad_clip", positive=True, optional=True)
        self._check_number("ema_decay", positive=True, optional=True)
        if self.ema_decay is not None and not self.ema_decay < 1:
            raise ValueError(
                f"TrainConfig.ema_decay must lie in (0, 1) (e.g. 0.999), got {self.ema_decay!r}; "
                "use null to disable the moving average."
            )
        self._check_int("patience", minimum=1, optional=True)
        self._check_int("seed", minimum=0)
        self._check_int("log_every", minimum=1)
        self._check_int("checkpoint_every", minimum=1, optional=True)
        self._check_int("keep_checkpoints", minimum=1)
        self._check_int("cpu_threads", minimum=1, optional=True)
        self._check_number("prior_weight", positive=False)
        self._check_number("regression_weight", positive=False)
        for name in ("drop_last", "restore_best"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"TrainConfig.{name} must be true or false, got {getattr(self, name)!r}."
                )
        if self.out_dir is not None:
            if not isinstance(self.out_dir, str | Path):
                raise TypeError(
                    f"TrainConfig.out_dir must be a path or null, got {self.out_dir!r}."
                )
            object.__setattr__(self, "out_dir", str(self.out_dir))
        if not isinstance(self.device, str):
            raise TypeError(
                f"TrainConfig.device must be a string such as 'auto', got {self.device!r}."
            )

    def _check_number(self, name: str, *, positive: bool, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if not _is_number(value) or (value <= 0 if positive else value < 0):
            word = "a positive" if positive else "a non-negative"
            extra = " or null" if optional else ""
            raise ValueError(f"TrainConfig.{name} must be {word} number{extra}, got {value!r}.")
        object.__setattr__(self, name, float(value))

    def _check_int(self, name: str, *, minimum: int, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if not _is_int(value) or value < minimum:
            extra = " or null" if optional else ""
            raise ValueError(
                f"TrainConfig.{name} must be an integer >= {minimum}{extra}, got {value!r}."
            )

    # ------------------------------------------------------------------ dicts
    def to_dict(self) -> dict[str, Any]:
        """The fields as plain Python values (YAML/JSON ready)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], overrides: Iterable[str] = ()) -> TrainConfig:
        """Build a config from a dict (unknown keys are an error) and ``key=value`` overrides."""
        if not isinstance(values, Mapping):
            raise TypeError(f"A TrainConfig is built from a mapping, got {type(values).__name__}.")
        values = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in values.items()}
        for item in overrides:
            _apply_override(values, item)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise ValueError(
                f"Unknown TrainConfig key {unknown[0]!r}.{suggest(str(unknown[0]), names)} "
                f"Allowed keys: {', '.join(names)}."
            )
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------- YAML
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
        """Read a YAML file written by :meth:`to_yaml` (or by hand) and apply overrides.

        Parameters
        ----------
        path : path-like
            The YAML file; missing keys take their defaults.
        overrides : iterable of str
            ``"key=value"`` items applied in order, e.g. ``["lr=1e-3",
            "model_kwargs.hidden=64", "patience=null"]``.

        Returns
        -------
        config : TrainConfig
        """
        path = check_file(path, "path", what="YAML config")
        values = read_yaml_mapping(path)
        try:
            return cls.from_dict(values, overrides)
        except (TypeError, ValueError) as err:
            raise type(err)(f"In {str(path)!r}: {err}") from err

    def to_yaml(self, path: str | Path) -> Path:
        """Write the config as YAML, atomically; returns the path."""
        return write_yaml(self.to_dict(), path)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (empty file: ``{}``), or a clear error."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"Cannot parse the YAML config {str(path)!r}: {err}") from err
    if not isinstance(values, Mapping):
        raise ValueError(
            f"The YAML config {str(path)!r} must hold a mapping of keys to values, got "
            f"{type(values).__name__}."
        )
    return dict(values)


def write_yaml(values: Mapping[str, Any], path: str | Path) -> Path:
    """Write plain values as YAML (keys in order), atomically, creating the folder; the path."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as fh:
        yaml.safe_dump(dict(values), fh, sort_keys=False)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy / torch scalars
        return value.item()
    return value


def _apply_override(values: dict[str, Any], item: str) -> None:
    import yaml

    if not isinstance(item, str) or "=" not in item:
        raise ValueError(
            f"An override must be a string 'key=value' (e.g. 'lr=1e-3' or "
            f"'model_kwargs.hidden=64'), got {item!r}."
        )
    key, _, text = item.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ValueError(f"Cannot parse the value of the override {item!r}: {err}") from err
    parts = key.split(".")
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    if parts[0] not in names:
        raise ValueError(
            f"Unknown TrainConfig key {parts[0]!r} in the override {item!r}."
            f"{suggest(parts[0], names)} Allowed keys: {', '.join(names)}."
        )
    if len(parts) > 1 and parts[0] not in _DICT_FIELDS:
        raise ValueError(
            f"The override {item!r} uses a dotted key, but {parts[0]!r} is not a dict field; "
            "only model_kwargs.<name> and loss_kwargs.<name> take dots (and prior_kwargs.<name>)."
        )
    target = values
    for part in parts[:-1]:
        current = target.get(part)
        if current is None:
            current = {}
        elif not isinstance(current, Mapping):
            raise ValueError(f"Cannot set {key!r}: {part!r} holds {current!r}, not a mapping.")
        target[part] = current = dict(current)
        target = current
    target[parts[-1]] = value
