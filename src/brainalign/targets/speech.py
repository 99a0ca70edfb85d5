"""Speech targets at the brain's sampling rate: wav2vec 2.0 hidden layers and mel spectrograms.

Follows brainmagick (Défossez et al., 2023):

* **wav2vec 2.0**: the waveform is resampled to the model's rate (16 kHz), normalised to zero
  mean and unit variance (as ``Wav2Vec2FeatureExtractor(do_normalize=True)``), passed through the
  model with ``output_hidden_states=True``, and the hidden states ``layers`` are averaged —
  ``hidden_states[0]`` is the input of the first transformer layer, ``hidden_states[i]`` the
  output of layer ``i``; brainmagick averages 14–18 of wav2vec2-large-xlsr-53. The frames
  (~49.8 Hz) are then resampled to ``sfreq_out`` (e.g. the M/EEG's 120 Hz) by interpolation to
  ``round(duration · sfreq_out)`` samples (``"nearest"`` as brainmagick, or ``"linear"``).
* **mel spectrogram** (needs no weights): waveform normalised, Hann-windowed STFT (centred,
  reflect padding), power spectrum divided by the window's energy (torchaudio's
  ``normalized=True``), HTK mel filterbank without area normalisation (torchaudio's defaults:
  ``mel = 2595 · log10(1 + f / 700)``, triangles between ``n_mels + 2`` mel-spaced points),
  ``log10(mel + 1e-5)``; 40 mels, ``n_fft`` 512, hop 128 at 16 kHz, as brainmagick.

Segments must have equal durations to be batched; :func:`segment_features` cuts the features of
a whole recording into the windows the M/EEG epochs cover.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from brainalign._utils.errors import BrainAlignWarning
from brainalign._utils.optional import import_optional
from brainalign._utils.validation import check_option, check_positive, suggest
from brainalign.targets.base import Extractor, state_dict_sha256
from brainalign.targets.inputs import StimulusItem, load_audio_item

__all__ = [
    "MelExtractor",
    "SpeechModel",
    "Wav2Vec2Extractor",
    "compute_mel_spectrogram",
    "compute_speech_embeddings",
    "load_speech_model",
    "mel_filterbank",
    "resample_audio",
    "segment_features",
]

BRAINMAGICK_LAYERS = (14, 15, 16, 17, 18)
INTERPOLATIONS = ("nearest", "linear")


# --------------------------------------------------------------------------- signal helpers


def resample_audio(waveform: np.ndarray, sfreq: float, sfreq_new: float) -> np.ndarray:
    """Resample a waveform with a polyphase anti-aliasing filter (``scipy.signal.resample_poly``).

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,)
    sfreq, sfreq_new : float
        Current and new rates, Hz.

    Returns
    -------
    resampled : ndarray, shape (round(n_samples * sfreq_new / sfreq),), float32
    """
    from scipy.signal import resample_poly

    if sfreq == sfreq_new:
        return np.asarray(waveform, dtype=np.float32)
    ratio = Fraction(sfreq_new / sfreq).limit_denominator(10_000)
    out = resample_poly(np.asarray(waveform, dtype=np.float64), ratio.numerator, ratio.denominator)
    n_target = round(len(waveform) * sfreq_new / sfreq)
    out = out[:n_target] if len(out) >= n_target else np.pad(out, (0, n_target - len(out)))
    return out.astype(np.float32)


def _normalize_waveform(x: Any) -> Any:
    """Zero mean, unit variance per row of ``x``, ``(batch, n_samples)`` (as do_normalize)."""
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / (var + 1e-7).sqrt()


def _interpolate(x: Any, n_out: int, mode: str) -> Any:
    """Resample ``x`` ``(batch, n_dims, n_frames)`` to ``n_out`` samples along the last axis."""
    import torch.nn.functional as F

    if mode == "linear":
        return F.interpolate(x, size=n_out, mode="linear", align_corners=False)
    return F.interpolate(x, size=n_out, mode="nearest")


def mel_filterbank(
    n_freqs: int, sfreq: float, n_mels: int = 40, f_min: float = 0.0, f_max: float | None = None
) -> Any:
    """Triangular HTK mel filterbank without area normalisation.

    Parameters
    ----------
    n_freqs : int
        Number of STFT bins, ``n_fft // 2 + 1``, at frequencies ``linspace(0, sfreq / 2)``.
    sfreq : float
        Sampling rate, Hz.
    n_mels : int
        Number of filters.
    f_min, f_max : float
        Frequency range, Hz (``f_max`` defaults to ``sfreq / 2``).

    Returns
    -------
    fb : torch.Tensor, shape (n_freqs, n_mels)
        ``fb[k, m]``: weight of bin ``k`` in filter ``m`` (peak 1).
    """
    import torch

    f_max = sfreq / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sfreq / 2:
        raise ValueError(
            f"Need 0 <= f_min < f_max <= sfreq/2, got f_min={f_min}, f_max={f_max}, sfreq={sfreq}."
        )
    freqs = torch.linspace(0, sfreq / 2, n_freqs, dtype=torch.float64)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = torch.linspace(m_min, m_max, n_mels + 2, dtype=torch.float64)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1,)
    slopes = f_pts[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


def _mel_torch(
    x: Any,
    sfreq: float,
    n_mels: int,
    n_fft: int,
    hop_length: int,
    f_min: float,
    f_max: float | None,
    log: bool,
    eps: float,
) -> Any:
    """Mel spectrogram of ``x`` ``(batch, n_samples)`` → ``(batch, n_mels, n_frames)``."""
    import torch

    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        x,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    power = spec.abs() ** 2 / window.pow(2).sum()
    fb = mel_filterbank(n_fft // 2 + 1, sfreq, n_mels, f_min, f_max).to(x.device, x.dtype)
    mel = torch.einsum("bft,fm->bmt", power, fb)
    return torch.log10(mel + eps) if log else mel


def compute_mel_spectrogram(
    waveform: np.ndarray,
    sfreq: float,
    *,
    n_mels: int = 40,
    n_fft: int = 512,
    hop_length: int | None = None,
    f_min: float = 0.0,
    f_max: float | None = None,
    normalize_audio: bool = True,
    log: bool = True,
    eps: float = 1e-5,
) -> np.ndarray:
    """Log-mel spectrogram of a waveform (torch only; see the module docstring for the formula).

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,)
        Mono audio.
    sfreq : float
        Its sampling rate, Hz.
    n_mels, n_fft : int
        Filters and FFT size.
    hop_length : int | None
        Frame step in samples (``n_fft // 4`` by default).
    f_min, f_max : float
        Filterbank range, Hz.
    normalize_audio : bool
        Scale the waveform to zero mean and unit variance first (brainmagick).
    log : bool
        Return ``log10(mel + eps)`` rather than the mel power.
    eps : float
        Floor added before the logarithm.

    Returns
    -------
    mel : ndarray, shape (n_mels, 1 + n_samples // hop_length)
        Frames every ``hop_length / sfreq`` seconds, the first centred on sample 0.
    """
    import torch

    x = torch.as_tensor(np.asarray(waveform, dtype=np.float32))[None]
    if normalize_audio:
        x = _normalize_waveform(x)
    hop = hop_length or n_fft // 4
    out = _mel_torch(x, float(sfreq), n_mels, n_fft, hop, f_min, f_max, log, eps)
    return out[0].numpy()


def segment_features(
    features: np.ndarray,
    sfreq: float,
    onsets: Sequence[float],
    tmin: float,
    tmax: float,
    *,
    n_times: int | None = None,
) -> np.ndarray:
    """Cut features of a whole recording into the windows M/EEG epochs cover.

    Parameters
    ----------
    features : ndarray, shape (n_dims, n_samples)
        Sampled at ``sfreq``, sample 0 at time 0 of the audio.
    sfreq : float
        Their sampling rate, Hz (the brain's, e.g. 120).
    onsets : sequence of float
        Window anchors, seconds from the start of the audio (e.g. word onsets).
    tmin, tmax : float
        Window bounds relative to each onset, seconds (e.g. -0.5, 2.5).
    n_times : int | None
        Samples per window; ``round((tmax - tmin) * sfreq)`` by default (360 for 3 s at 120 Hz,
        the end excluded). Pass the M/EEG epochs' own count to match them exactly.

    Returns
    -------
    windows : ndarray, shape (n_windows, n_dims, n_times)
        Window ``i`` starts at sample ``round((onsets[i] + tmin) * sfreq)``; samples outside the
        audio are zero (with a ``BrainAlignWarning`` saying how many windows were padded).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"'features' must be (n_dims, n_samples), got shape {features.shape}.")
    if tmax <= tmin:
        raise ValueError(f"'tmax' ({tmax}) must be greater than 'tmin' ({tmin}).")
    n_times = round((tmax - tmin) * sfreq) if n_times is None else int(n_times)
    check_positive("n_times", n_times)
    n_dims, n_total = features.shape
    onset_arr = np.asarray(onsets, dtype=float)
    out = np.zeros((len(onset_arr), n_dims, n_times), dtype=features.dtype)
    n_padded = 0
    for i, onset in enumerate(onset_arr):
        start = round((onset + tmin) * sfreq)
        lo, hi = max(start, 0), min(start + n_times, n_total)
        if lo - start > 0 or start + n_times > hi:
            n_padded += 1
        if hi > lo:
            out[i, :, lo - start : hi - start] = features[:, lo:hi]
    if n_padded:
        warnings.warn(
            f"{n_padded} of {len(onsets)} windows extend beyond the audio "
            f"({n_total / sfreq:.3f} s); their missing samples were set to 0.",
            BrainAlignWarning,
            stacklevel=2,
        )
    return out


# --------------------------------------------------------------------------- models


@dataclass
class SpeechModel:
    """A wav2vec 2.0-style model (``transformers``) and its input rate.

    Attributes
    ----------
    module : transformers.Wav2Vec2Model (or compatible)
        Returns ``hidden_states`` with ``output_hidden_states=True``.
    sfreq : float
        Rate the model expects, Hz.
    name : str
    weights : str
    weights_sha256 : str
    """

    module: Any
    sfreq: float
    name: str
    weights: str
    weights_sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not self.weights_sha256:
            self.weights_sha256 = state_dict_sha256(self.module)

    @property
    def n_hidden_states(self) -> int:
        """``num_hidden_layers + 1`` (the input of the first layer, then each layer's output)."""
        return int(self.module.config.num_hidden_layers) + 1


def load_speech_model(model: Any, *, sfreq: float | None = None) -> SpeechModel:
    """Load a wav2vec 2.0-style speech model.

    Parameters
    ----------
    model : str | path-like | torch.nn.Module
        A folder saved by ``save_pretrained`` (``config.json`` + weights), a hub id such as
        ``"facebook/wav2vec2-large-xlsr-53"`` (downloads; needs a network), or a built model
        (e.g. ``transformers.Wav2Vec2Model(config)``).
    sfreq : float | None
        The model's input rate, Hz; read from the folder's ``preprocessor_config.json`` when
        present, else 16,000.

    Returns
    -------
    speech_model : SpeechModel
    """
    import torch

    if isinstance(model, torch.nn.Module):
        if not hasattr(model, "config"):
            raise TypeError(
                f"The speech model {type(model).__name__} has no 'config': pass a transformers "
                "model (e.g. Wav2Vec2Model) that returns hidden_states."
            )
        return SpeechModel(model.eval(), float(sfreq or 16_000), type(model).__name__, "module")
    transformers = import_optional("transformers", purpose="wav2vec 2.0 speech features")
    path = Path(str(model)).expanduser()
    local = path.is_dir()
    if not local and (path.suffix or str(model).startswith((".", "/", "~"))):
        raise FileNotFoundError(
            f"The speech model folder given as 'model' does not exist: {str(path.resolve())!r}. "
            "Pass a folder written by save_pretrained, or a hub id (needs a network)."
        )
    if local and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"The folder {str(path)!r} has no config.json; it is not a saved transformers model."
        )
    try:
        module = transformers.AutoModel.from_pretrained(
            str(path) if local else str(model), local_files_only=local
        )
    except OSError as err:
        where = f"the folder {str(path)!r}" if local else f"the hub id {model!r} (needs a network)"
        raise FileNotFoundError(f"Cannot load a speech model from {where}: {err}") from err
    if sfreq is None:
        sfreq = 16_000.0
        pre = path / "preprocessor_config.json"
        if local and pre.is_file():
            import json

            with open(pre, encoding="utf-8") as fh:
                sfreq = float(json.load(fh).get("sampling_rate", sfreq))
    return SpeechModel(module.eval(), float(sfreq), str(model), str(path if local else model))


class _AudioExtractor(Extractor):
    """Common loading: read, mix to mono, resample to the model's rate (warning once per rate)."""

    modality = "audio"

    def __init__(
        self, model_sfreq: float, sfreq_out: float, interpolation: str, sfreq: float | None
    ) -> None:
        self.model_sfreq = float(model_sfreq)
        self.sfreq_out = float(check_positive("sfreq_out", sfreq_out))
        self.interpolation = check_option("interpolation", interpolation, INTERPOLATIONS)
        self.sfreq = sfreq
        self._warned: set[float] = set()

    def stimulus_extra(self) -> str:
        return f"sfreq={self.sfreq}"

    def prepare(self, item: StimulusItem) -> Any:
        import torch

        wave, rate = load_audio_item(item, self.sfreq)
        if rate != self.model_sfreq:
            if rate not in self._warned:
                self._warned.add(rate)
                where = str(item.source) if isinstance(item.source, os.PathLike) else item.id
                warnings.warn(
                    f"Audio at {rate:g} Hz (first: {where}) was resampled to {self.model_sfreq:g} "
                    f"Hz, the rate {self.name} expects.",
                    BrainAlignWarning,
                    stacklevel=2,
                )
            wave = resample_audio(wave, rate, self.model_sfreq)
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))

    def _n_out(self, n_samples: int) -> int:
        return max(1, round(n_samples / self.model_sfreq * self.sfreq_out))

    def to(self, device: Any) -> None:
        module = getattr(self, "module", None)
        if module is not None:
            module.to(device).eval()


class MelExtractor(_AudioExtractor):
    """Log-mel spectrogram resampled to ``sfreq_out``; output ``"mel"``: ``(n_mels, n_times)``.

    Parameters
    ----------
    sfreq_out : float
        Output rate, Hz (the brain's).
    n_mels, n_fft, hop_length, f_min, f_max, log, eps, normalize_audio
        As in :func:`compute_mel_spectrogram`.
    audio_sfreq : float
        Rate the audio is brought to before the STFT, Hz (16 kHz as brainmagick).
    interpolation : {"nearest", "linear"}
        Resampling of the frames to ``sfreq_out``.
    sfreq : float | None
        Rate of in-memory waveforms, Hz.
    """

    name = "mel"

    def __init__(
        self,
        sfreq_out: float = 120.0,
        *,
        n_mels: int = 40,
        n_fft: int = 512,
        hop_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        log: bool = True,
        eps: float = 1e-5,
        normalize_audio: bool = True,
        audio_sfreq: float = 16_000.0,
        interpolation: str = "nearest",
        sfreq: float | None = None,
    ) -> None:
        super().__init__(audio_sfreq, sfreq_out, interpolation, sfreq)
        self.params: dict[str, Any] = {
            "n_mels": int(n_mels),
            "n_fft": int(n_fft),
            "hop_length": int(hop_length or n_fft // 4),
            "f_min": float(f_min),
            "f_max": f_max,
            "log": bool(log),
            "eps": float(eps),
            "normalize_audio": bool(normalize_audio),
        }

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "mel",
            "model": "mel",
            "weights_sha256": None,
            "preprocessing": {
                **self.params,
                "audio_sfreq": self.model_sfreq,
                "sfreq_out": self.sfreq_out,
                "interpolation": self.interpolation,
            },
        }

    def default_outputs(self) -> list[str]:
        return ["mel"]

    def check_outputs(self, outputs: Sequence[str]) -> list[str]:
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        for n in names:
            check_option("layers", n, ["mel"])
        return names

    def forward(self, batch: Any, outputs: Sequence[str]) -> dict[str, Any]:
        p = self.params
        x = _normalize_waveform(batch) if p["normalize_audio"] else batch
        mel = _mel_torch(
            x,
            self.model_sfreq,
            p["n_mels"],
            p["n_fft"],
            p["hop_length"],
            p["f_min"],
            p["f_max"],
            p["log"],
            p["eps"],
        )
        return {"mel": _interpolate(mel, self._n_out(batch.shape[-1]), self.interpolation)}


class Wav2Vec2Extractor(_AudioExtractor):
    """Hidden states of a wav2vec 2.0 model, averaged and resampled to ``sfreq_out``.

    Outputs: ``"hidden_states"`` — the mean of the hidden states ``layers`` — and
    ``"hidden_states.<i>"`` — one hidden state; each ``(hidden_size, n_times)``.

    Parameters
    ----------
    speech_model : SpeechModel
        From :func:`load_speech_model`.
    layers : sequence of int
        Indices into ``hidden_states`` averaged for ``"hidden_states"`` (brainmagick: 14–18).
    sfreq_out : float
        Output rate, Hz.
    normalize_audio : bool
        Zero mean, unit variance waveforms (wav2vec2's ``do_normalize``).
    interpolation : {"nearest", "linear"}
        Resampling of the frames to ``sfreq_out``.
    sfreq : float | None
        Rate of in-memory waveforms, Hz.
    """

    def __init__(
        self,
        speech_model: SpeechModel,
        layers: Sequence[int] = BRAINMAGICK_LAYERS,
        *,
        sfreq_out: float = 120.0,
        normalize_audio: bool = True,
        interpolation: str = "nearest",
        sfreq: float | None = None,
    ) -> None:
        self.speech_model = speech_model
        self.module = speech_model.module
        self.name = speech_model.name
        super().__init__(speech_model.sfreq, sfreq_out, interpolation, sfreq)
        n = speech_model.n_hidden_states
        self.layers = [int(i) for i in layers]
        bad = [i for i in self.layers if not -n <= i < n]
        if not self.layers or bad:
            raise ValueError(
                f"Invalid hidden-state indices {bad or 'none'} for {self.name}, which has {n} "
                f"hidden states (0 = input of the first layer, 1..{n - 1} = layer outputs)."
            )
        self.normalize_audio = normalize_audio

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "speech",
            "model": self.name,
            "weights_sha256": self.speech_model.weights_sha256,
            "preprocessing": {
                "model_sfreq": self.model_sfreq,
                "normalize": self.normalize_audio,
                "sfreq_out": self.sfreq_out,
                "interpolation": self.interpolation,
                "layers": self.layers,
            },
        }

    def default_outputs(self) -> list[str]:
        return ["hidden_states"]

    def _allowed(self) -> list[str]:
        return ["hidden_states"] + [
            f"hidden_states.{i}" for i in range(self.speech_model.n_hidden_states)
        ]

    def check_outputs(self, outputs: Sequence[str]) -> list[str]:
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        allowed = self._allowed()
        for n in names:
            if n not in allowed:
                raise ValueError(
                    f"Invalid speech output {n!r}.{suggest(n, allowed)} Use 'hidden_states' (the "
                    f"mean of layers {self.layers}) or 'hidden_states.<i>', i in 0.."
                    f"{self.speech_model.n_hidden_states - 1}."
                )
        return names

    def forward(self, batch: Any, outputs: Sequence[str]) -> dict[str, Any]:
        import torch

        x = _normalize_waveform(batch) if self.normalize_audio else batch
        hidden = self.module(x, output_hidden_states=True).hidden_states
        n_out = self._n_out(batch.shape[-1])
        result = {}
        for name in outputs:
            if name == "hidden_states":
                h = torch.stack([hidden[i] for i in self.layers]).mean(dim=0)
            else:
                h = hidden[int(name.split(".")[1])]
            result[name] = _interpolate(h.transpose(1, 2), n_out, self.interpolation)
        return result


def compute_speech_embeddings(
    waveform: Any,
    sfreq: float | None,
    model: SpeechModel,
    *,
    layers: Sequence[int] = BRAINMAGICK_LAYERS,
    sfreq_out: float = 120.0,
    interpolation: str = "nearest",
    device: Any = "auto",
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """wav2vec 2.0 hidden states ``layers``, averaged, at ``sfreq_out`` for one recording.

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,) | path-like
        Mono audio, or an audio file.
    sfreq : float | None
        Rate of ``waveform``, Hz (``None`` for a file).
    model : SpeechModel
        From :func:`load_speech_model`.
    layers : sequence of int
        Hidden states to average (brainmagick: 14–18 of wav2vec2-large-xlsr-53).
    sfreq_out : float
        Output rate, Hz.
    interpolation : {"nearest", "linear"}
        Resampling of the frames to ``sfreq_out``.
    device, cache, cache_dir
        As in :func:`brainalign.targets.extract.compute_features`.

    Returns
    -------
    features : ndarray, shape (hidden_size, round(duration * sfreq_out))
        Cut it into M/EEG windows with :func:`segment_features`.
    """
    from brainalign.targets.extract import compute_features

    extractor = Wav2Vec2Extractor(
        model, layers, sfreq_out=sfreq_out, interpolation=interpolation, sfreq=sfreq
    )
    stimuli = [waveform] if isinstance(waveform, np.ndarray) else waveform
    out = compute_features(
        extractor,
        stimuli,
        ["hidden_states"],
        batch_size=1,
        device=device,
        cache=cache,
        cache_dir=cache_dir,
        verbose=False,
    )
    return np.array(out["hidden_states"][0])
