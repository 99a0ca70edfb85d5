"""Simulate M/EEG datasets (MEG-MASC-like listening, THINGS-EEG-like viewing), write, read back.

:func:`simulate_meeg_dataset` runs the whole workflow:

1. **Speech** (:func:`synthesize_speech`): an English text (by default a retelling of some of
   Aesop's fables, :data:`DEFAULT_TEXT`) is spoken word by word by eSpeak NG (the Debian/Ubuntu
   package ``espeak-ng``), each word trimmed of its silence, resampled to 16 kHz and
   concatenated with short seeded gaps into sound files of about ``sound_duration`` seconds.
   Word-by-word synthesis gives the exact onset of every word in its file.
2. **Features** on the recording's timeline (1 s of silence, the sound files separated by 1 s of
   silence, 3 s of silence) at ``sfreq``: the Hilbert envelope
   (:func:`~brainalign.data.simulate.meeg.compute_envelope`), the log-mel spectrogram
   (:func:`brainalign.targets.compute_mel_spectrogram`, 40 mels at 16 kHz, frames linearly
   interpolated to ``sfreq``), word-onset impulses and, when a ``speech_model`` is given, its
   hidden states (:func:`brainalign.targets.compute_speech_embeddings`).
3. **Recordings**: :func:`~brainalign.data.simulate.meeg.make_source_time_courses` and
   :func:`~brainalign.data.simulate.meeg.simulate_meeg_subject` for each subject, written by
   :func:`~brainalign.data.simulate.meeg.write_simulated_meeg` as BIDS with the audio and the
   ground truth.
4. **Read back** through the ordinary readers (:func:`brainalign.io.load_bids` for the noisy
   recordings, :func:`brainalign.io.load_meeg` for the noise-free ones,
   :func:`brainalign.io.load_audio` for the word stimuli) as brainmagick's windows (-0.5 to
   2.5 s around each word at 120 Hz, baseline before 0); the noise ceiling of every subject is
   computed on these windows and saved, and the manifest is written last.

:func:`simulate_meeg_images_dataset` does the same for a THINGS-EEG2-like experiment: natural
images (or the user's) shown in rapid serial visual presentation (100 ms on screen, one every
200 ms, repeated test images), each visual source responding to every image onset with its TRF
scaled by a linear read-out of one EfficientNet-Lite0 layer; written as BIDS with one
``events.tsv`` row per image onset and read back as -0.2 to 0.8 s windows at 100 Hz.

:func:`load_simulated_meeg` reads a dataset of either kind written earlier the same way (nothing
in it depends on how the data were made).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign._utils.errors import BrainAlignWarning
from brainalign._utils.progress import logger, progress
from brainalign._utils.validation import check_option, check_positive, suggest
from brainalign.data.simulate.meeg import (
    IMAGE_READ_OPTIONS,
    READ_OPTIONS,
    MEEGGroundTruth,
    MEEGNoise,
    NoiseCeiling,
    SourceSpec,
    check_output_folder,
    compute_envelope,
    compute_noise_ceiling,
    default_meeg_sources,
    default_visual_sources,
    make_event_time_courses,
    make_image_readouts,
    make_source_time_courses,
    quantize_pcm16,
    read_meeg_ground_truth,
    simulate_meeg_subject,
    word_onset_impulses,
    write_meeg_manifest,
    write_noise_ceiling,
    write_simulated_meeg,
    write_simulated_meeg_images,
)

__all__ = [
    "DEFAULT_TEXT",
    "SimulatedMEEG",
    "SpeechStimuli",
    "default_simulated_meeg",
    "load_simulated_meeg",
    "simulate_meeg_dataset",
    "simulate_meeg_images_dataset",
    "synthesize_speech",
]

#: Rate of the synthesised speech (the rate of wav2vec 2.0 and of brainmagick's mel features).
AUDIO_SFREQ = 16_000.0

#: Silence before the first sound, between sounds and after the last one, seconds.
_LEAD, _BETWEEN, _TAIL = 1.0, 1.0, 3.0

#: The default story: a plain retelling of some of Aesop's fables (public domain).
DEFAULT_TEXT = """\
A hungry fox saw some fine bunches of grapes hanging from a vine that was trained along a high
trellis. She did her best to reach them by jumping as high as she could into the air. But it was
all in vain, for they were just out of reach. So she gave up trying and walked away with an air
of dignity, saying that the grapes were sour and not worth the trouble.

A hare was making fun of a tortoise one day for being so slow. Do you ever get anywhere, he asked
with a mocking laugh. Yes, replied the tortoise, and I get there sooner than you think. I will
run you a race and prove it. The hare was much amused at the idea, but for the fun of the thing
he agreed. So the fox, who had consented to act as judge, marked the distance and started the
runners off. The hare was soon far out of sight, and to make the tortoise feel how silly it was
to race with a hare, he lay down beside the course to take a nap until the tortoise should catch
up. The tortoise meanwhile kept going slowly but steadily, and after a time passed the place
where the hare was sleeping. The hare slept on very peacefully, and when at last he did wake up,
the tortoise was near the goal. The hare now ran his swiftest, but he could not overtake the
tortoise in time. Slow and steady wins the race.

A shepherd boy tended his sheep at the foot of a mountain near a dark forest. It was lonely for
him all day, so he thought of a plan by which he could get a little company and some excitement.
He rushed down towards the village calling out wolf, wolf, and the villagers came out to meet
him. This pleased the boy so much that a few days afterwards he tried the same trick, and again
the villagers came to his help. But shortly after this a wolf actually did come out from the
forest and began to worry the sheep. The boy of course cried out wolf, wolf, still louder than
before. But this time the villagers, who had been fooled twice before, thought the boy was again
deceiving them, and nobody stirred to come to his help. So the wolf made a good meal off the
boy's flock. Nobody believes a liar, even when he speaks the truth.

A lion lay asleep in the forest, his great head resting on his paws. A timid little mouse came
upon him unexpectedly, and in her fright and haste to get away, ran across the lion's nose.
Roused from his nap, the lion laid his huge paw angrily on the tiny creature to kill her. Spare
me, begged the poor mouse. Please let me go and some day I will surely repay you. The lion was
much amused to think that a mouse could ever help him. But he was generous and finally let the
mouse go. Some days later, while stalking his prey in the forest, the lion was caught in the
toils of a hunter's net. Unable to free himself, he filled the forest with his angry roaring.
The mouse knew the voice and quickly found the lion struggling in the net. Running to one of the
great ropes that bound him, she gnawed it until it parted, and soon the lion was free. You
laughed when I said I would repay you, said the mouse. Now you see that even a mouse can help a
lion.

One bright day in late autumn a family of ants were bustling about in the warm sunshine, drying
out the grain they had stored up during the summer, when a starving grasshopper, his fiddle
under his arm, came up and humbly begged for a bite to eat. What, cried the ants in surprise,
have you not stored anything away for the winter? What in the world were you doing all last
summer? I did not have time to store up any food, whined the grasshopper. I was so busy making
music that before I knew it the summer was gone. The ants shrugged their shoulders in disgust.
Making music, were you, they cried. Very well, now dance. And they turned their backs on the
grasshopper and went on with their work. There is a time for work and a time for play.

The north wind and the sun had a quarrel about which of them was the stronger. While they were
disputing with much heat and bluster, a traveler passed along the road wrapped in a cloak. Let
us agree, said the sun, that he is the stronger who can strip that traveler of his cloak. Very
well, growled the north wind, and at once sent a cold howling blast against the traveler. With
the first gust of wind the ends of the cloak whipped about his body. But he immediately wrapped
it closely around him, and the harder the wind blew, the tighter he held it to him. The north
wind tore angrily at the cloak, but all his efforts were in vain. Then the sun began to shine.
At first his beams were gentle, and in the pleasant warmth after the bitter cold of the north
wind, the traveler unfastened his cloak and let it hang loosely from his shoulders. The sun's
rays grew warmer and warmer. The man took off his cap and mopped his brow. At last he became so
heated that he pulled off his cloak and, to escape the blazing sunshine, threw himself down in
the welcome shade of a tree by the roadside. Gentleness and kind persuasion win where force and
bluster fail.

A crow, half dead with thirst, came upon a pitcher which had once been full of water. But when
the crow put its beak into the mouth of the pitcher, he found that only very little water was
left in it, and that he could not reach far enough down to get at it. He tried and he tried,
but at last had to give up in despair. Then a thought came to him, and he took a pebble and
dropped it into the pitcher. Then he took another pebble and dropped it in. One by one he kept
dropping pebbles into the pitcher, until at last he saw the water rise up near him. After
casting in a few more pebbles he was able to quench his thirst and save his life. Little by
little does the trick.

A dog was carrying a fine piece of meat home in his mouth. On his way he had to cross a plank
lying across a running brook. As he crossed, he looked down and saw his own shadow reflected in
the water beneath. Thinking it was another dog with another piece of meat, he made up his mind
to have that also. So he made a snap at the shadow in the water, but as he opened his mouth the
piece of meat fell out, dropped into the water and was never seen more. Beware lest you lose
the substance by grasping at the shadow.

A man and his wife had the good fortune to possess a goose which laid a golden egg every day.
Lucky though they were, they soon began to think they were not getting rich fast enough. They
imagined that if the bird must be able to lay golden eggs, its insides must be made of gold. And
they thought that if they could get all that precious metal at once, they would get mighty rich
very soon. So the man and his wife decided to kill the bird. However, upon cutting the goose
open, they were shocked to find that its insides were like those of any other goose. Those who
have plenty want more and so lose all they have.
"""

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


# ----------------------------------------------------------------------------------------------
# Speech
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class SpeechStimuli:
    """Synthesised speech with the exact onset of every word.

    Attributes
    ----------
    sounds : dict of str to ndarray, shape (n_samples,)
        Sound name (``"story_000"``) to its float32 waveform at :attr:`sfreq`, peak 0.9, on
        the 16-bit grid (:func:`~brainalign.data.simulate.meeg.quantize_pcm16`) so that the WAV
        files hold exactly these values.
    sfreq : float
        Audio rate, Hz.
    words : DataFrame
        One row per spoken word, in order: ``stimulus_id`` (``"w00000"``…), ``sound`` (its sound
        name), ``onset`` (s into the sound, a whole number of samples), ``duration`` (s),
        ``word``, ``sentence`` (0-based index), ``word_index`` (0-based position in the
        sentence).
    voice : str
        The eSpeak NG voice.
    version : str
        ``espeak-ng --version``.
    """

    sounds: dict[str, np.ndarray]
    sfreq: float
    words: pd.DataFrame
    voice: str
    version: str

    @property
    def duration(self) -> float:
        """Total duration of the sounds, seconds."""
        return float(sum(len(w) for w in self.sounds.values()) / self.sfreq)


def _espeak(executable: str | None) -> str:
    exe = shutil.which(executable or "espeak-ng")
    if exe is None:
        raise FileNotFoundError(
            f"The speech synthesiser {executable or 'espeak-ng'!r} was not found on the PATH. "
            "Install eSpeak NG (Debian/Ubuntu: `apt-get install espeak-ng`; macOS: `brew "
            "install espeak-ng`) or pass its path as executable=."
        )
    return exe


def _sentences(text: str) -> list[list[str]]:
    """Sentences of ``text`` as lists of lower-case words (letters, digits, inner apostrophes)."""
    out = []
    for chunk in re.split(r"(?<=[.!?])\s+", " ".join(text.replace("’", "'").split())):
        words = _WORD_RE.findall(chunk.lower())
        if words:
            out.append(words)
    return out


def _synthesize_word(
    word: str, exe: str, voice: str, speed: int, tmp: Path, sfreq: float
) -> np.ndarray:
    import soundfile as sf

    from brainalign.targets.speech import resample_audio

    out = tmp / "word.wav"
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(int(speed)), "-z", "-w", str(out), "--stdin"],
        input=word.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        raise ValueError(
            f"espeak-ng failed to speak the word {word!r} with voice {voice!r} (exit code "
            f"{proc.returncode}): {proc.stderr.decode(errors='replace').strip()[:300]}. Check "
            "the voice name with `espeak-ng --voices`."
        )
    wave, rate = sf.read(out, dtype="float32", always_2d=False)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0:
        raise RuntimeError(f"espeak-ng produced silence for the word {word!r}.")
    loud = np.flatnonzero(np.abs(wave) > 0.02 * peak)
    start = max(int(loud[0]) - int(0.005 * rate), 0)
    stop = min(int(loud[-1]) + int(0.010 * rate) + 1, wave.size)
    return resample_audio(wave[start:stop], float(rate), sfreq)


def synthesize_speech(
    text: str | os.PathLike | None = None,
    *,
    duration: float = 60.0,
    seed: int | np.random.Generator | None = 0,
    voice: str = "en-us",
    speed: int = 160,
    word_gap: tuple[float, float] = (0.04, 0.12),
    sentence_gap: tuple[float, float] = (0.3, 0.5),
    sound_duration: float = 30.0,
    executable: str | None = None,
) -> SpeechStimuli:
    """Speak a text word by word with eSpeak NG, with the exact onset of every word.

    Parameters
    ----------
    text : str | os.PathLike | None
        The text itself (a ``str``) or a UTF-8 text file (a :class:`pathlib.Path`);
        :data:`DEFAULT_TEXT` by default. It is split into
        sentences at ``.``, ``!`` and ``?`` and into lower-case words (letters, digits and inner
        apostrophes; other punctuation is dropped).
    duration : float
        Seconds of speech to produce: whole sentences are spoken until the sounds last at least
        this long. A text that runs out starts again (with a ``BrainAlignWarning``).
    seed : int | numpy.random.Generator | None
        Draws the gaps.
    voice : str
        eSpeak NG voice (``espeak-ng --voices``).
    speed : int
        Words per minute of eSpeak NG.
    word_gap, sentence_gap : (float, float)
        Uniform ranges of the silences between words and between sentences, seconds.
    sound_duration : float
        A new sound file starts, at a sentence boundary, once the current one is this long.
    executable : str | None
        The ``espeak-ng`` program (found on the PATH by default).

    Returns
    -------
    speech : SpeechStimuli
        Sounds at 16 kHz; every word's audio starts exactly at its ``onset``: the synthesised
        word is cut 5 ms before its first sample above 2 % of its peak (or at its first sample),
        and silence (the gap) precedes it.

    Raises
    ------
    FileNotFoundError
        eSpeak NG is not installed.
    ValueError
        eSpeak NG cannot speak with ``voice``, or the text has no words.
    """
    from brainalign._utils.seeding import check_random_state

    check_positive("duration", duration)
    check_positive("sound_duration", sound_duration)
    for name, gap in (("word_gap", word_gap), ("sentence_gap", sentence_gap)):
        if len(gap) != 2 or not 0 <= gap[0] <= gap[1]:
            raise ValueError(
                f"{name!r} must be (min, max) seconds with 0 <= min <= max, got {gap}."
            )
    exe = _espeak(executable)
    if text is None:
        text = DEFAULT_TEXT
    elif isinstance(text, os.PathLike):
        text = Path(text).read_text(encoding="utf-8")
    sentences = _sentences(str(text))
    if not sentences:
        raise ValueError("The text has no words to speak; pass some English text.")
    rng = check_random_state(seed)
    version = subprocess.run([exe, "--version"], capture_output=True, check=False)
    sfreq = AUDIO_SFREQ
    cache: dict[str, np.ndarray] = {}
    sounds: dict[str, np.ndarray] = {}
    rows = []
    pieces: list[np.ndarray] = []
    n_current = 0
    total = 0
    sentence_index = 0
    wrapped = False
    with tempfile.TemporaryDirectory() as tmp:
        while total / sfreq < duration:
            words = sentences[sentence_index % len(sentences)]
            if sentence_index == len(sentences) and not wrapped:
                wrapped = True
                warnings.warn(
                    f"The text ({len(sentences)} sentences) lasts less than duration={duration:g} "
                    "s; it is spoken again from the start, so words and sentences repeat.",
                    BrainAlignWarning,
                    stacklevel=2,
                )
            name = f"story_{len(sounds):03d}"
            for position, word in enumerate(words):
                if word not in cache:
                    cache[word] = _synthesize_word(word, exe, voice, speed, Path(tmp), sfreq)
                gap = sentence_gap if position == 0 else word_gap
                n_gap = round(rng.uniform(*gap) * sfreq) if (position or n_current) else 0
                pieces.append(np.zeros(n_gap, dtype=np.float32))
                n_current += n_gap
                clip = cache[word]
                rows.append(
                    {
                        "sound": name,
                        "onset": n_current / sfreq,
                        "duration": len(clip) / sfreq,
                        "word": word,
                        "sentence": sentence_index,
                        "word_index": position,
                    }
                )
                pieces.append(clip)
                n_current += len(clip)
            sentence_index += 1
            if n_current / sfreq >= sound_duration or (total + n_current) / sfreq >= duration:
                tail = np.zeros(round(0.2 * sfreq), dtype=np.float32)
                sounds[name] = np.concatenate([*pieces, tail])
                total += len(sounds[name])
                pieces, n_current = [], 0
    words_table = pd.DataFrame(rows)
    words_table.insert(0, "stimulus_id", [f"w{i:05d}" for i in range(len(words_table))])
    peak = max(float(np.max(np.abs(w))) for w in sounds.values())
    sounds = {k: quantize_pcm16(0.9 / peak * w) for k, w in sounds.items()}
    return SpeechStimuli(
        sounds=sounds,
        sfreq=sfreq,
        words=words_table,
        voice=voice,
        version=version.stdout.decode(errors="replace").strip(),
    )


# ----------------------------------------------------------------------------------------------
# Features on the recording's timeline
# ----------------------------------------------------------------------------------------------


def _timeline(speech: SpeechStimuli, sfreq: float) -> tuple[np.ndarray, pd.DataFrame, int]:
    """Place the sounds on the recording: the audio at 16 kHz, the word events, n_times."""
    fa = speech.sfreq
    starts: dict[str, int] = {}
    t = _LEAD
    for name, wave in speech.sounds.items():
        t = np.ceil(t * sfreq - 1e-9) / sfreq  # on the brain's sample grid
        starts[name] = round(t * fa)
        t = (starts[name] + len(wave)) / fa + _BETWEEN
    end = (starts[name] + len(speech.sounds[name])) / fa
    n_times = int(np.ceil((end + _TAIL) * sfreq))
    audio = np.zeros(round(n_times * fa / sfreq), dtype=np.float32)
    for name, wave in speech.sounds.items():
        audio[starts[name] : starts[name] + len(wave)] = wave
    words = speech.words
    sample_in_sound = np.rint(words["onset"].to_numpy() * fa).astype(np.int64)
    onset = (words["sound"].map(starts).to_numpy() + sample_in_sound) / fa
    events = pd.DataFrame(
        {
            "onset": onset,
            "duration": words["duration"].to_numpy(),
            "trial_type": "word",
            "stimulus_id": words["stimulus_id"].to_numpy(),
            "word": words["word"].to_numpy(),
            "sound": [f"stimuli/audio/{s}.wav" for s in words["sound"]],
            "sound_onset": words["onset"].to_numpy(),
            "sentence": words["sentence"].to_numpy(),
            "word_index": words["word_index"].to_numpy(),
        }
    )
    return audio, events, n_times


def _speech_features(
    audio: np.ndarray,
    fa: float,
    sfreq: float,
    n_times: int,
    onsets: np.ndarray,
    speech_model: Any,
    device: Any,
) -> dict[str, np.ndarray]:
    from brainalign.targets.speech import (
        BRAINMAGICK_LAYERS,
        compute_mel_spectrogram,
        compute_speech_embeddings,
    )

    hop = 128
    mel = compute_mel_spectrogram(audio, fa, n_mels=40, n_fft=512, hop_length=hop)
    frame_times = np.arange(mel.shape[1]) * hop / fa
    times = np.arange(n_times) / sfreq
    mel_at = np.stack([np.interp(times, frame_times, row) for row in mel])
    features = {
        "envelope": compute_envelope(audio, fa, sfreq, n_times=n_times),
        "mel": mel_at,
        "word_onset": word_onset_impulses(onsets, sfreq, n_times),
    }
    if speech_model is not None:
        n_hidden = speech_model.n_hidden_states
        layers = BRAINMAGICK_LAYERS if n_hidden > max(BRAINMAGICK_LAYERS) else range(1, n_hidden)
        emb = compute_speech_embeddings(
            audio, fa, speech_model, layers=layers, sfreq_out=sfreq, device=device
        )
        emb = (
            emb[:, :n_times]
            if emb.shape[1] >= n_times
            else np.pad(emb, ((0, 0), (0, n_times - emb.shape[1])), mode="edge")
        )
        features["embedding"] = np.asarray(emb, dtype=np.float64)
    return features


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class SimulatedMEEG:
    """A simulated M/EEG dataset read back from disk.

    Attributes
    ----------
    root : Path
        The dataset folder (BIDS root and manifest data root).
    manifest : brainalign.io.manifest.Manifest
        Its ``manifest.yaml``.
    ground_truth : MEEGGroundTruth
        Sources, TRFs, features, gains, noise-free recordings, SNR and noise ceiling.
    recordings : dict of str to Recording
        Subject label to the noisy windows read by :func:`brainalign.io.load_bids` (``kind``
        ``"epochs"``, ``(n_words, n_channels, n_times)`` float32).
    clean_recordings : dict of str to Recording
        The same windows of the noise-free recordings (:func:`brainalign.io.load_meeg` on the
        derivative FIF files with the same events and preprocessing).
    stimuli : StimulusSet
        The words as audio segments (:func:`brainalign.io.load_audio` of
        ``stimuli/words.tsv``), ids matching the trial tables' ``stimulus_id``.
    """

    root: Path
    manifest: Any
    ground_truth: MEEGGroundTruth
    recordings: dict[str, Any]
    clean_recordings: dict[str, Any]
    stimuli: Any

    @property
    def modality(self) -> str:
        """``"meg"`` or ``"eeg"``."""
        return self.ground_truth.modality

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject labels."""
        return self.ground_truth.subjects

    @property
    def paradigm(self) -> str:
        """``"speech"`` or ``"images"``."""
        return self.ground_truth.paradigm

    @property
    def noise_ceiling(self) -> dict[str, NoiseCeiling] | None:
        """Per subject, the noise ceiling of :attr:`recordings`."""
        return self.ground_truth.noise_ceiling

    def feature_windows(self, feature: str, subject: str | None = None) -> np.ndarray:
        """A ground-truth feature cut into the windows of a subject's recording.

        Parameters
        ----------
        feature : str
            A key of ``ground_truth.features`` (``"envelope"``, ``"mel"``, ``"word_onset"``…).
        subject : str | None
            Whose trial table and window to use (the first subject by default).

        Returns
        -------
        windows : ndarray, shape (n_trials, n_dims, n_times)
            The feature, linearly interpolated to the recording's rate when it differs, cut by
            :func:`brainalign.targets.segment_features` at each trial's onset (``n_dims`` is 1
            for a one-dimensional feature).
        """
        from brainalign.targets.speech import segment_features

        truth = self.ground_truth
        if feature not in truth.features:
            raise ValueError(
                f"No feature {feature!r} in this simulation; it has {sorted(truth.features)}."
                f"{suggest(feature, truth.features)}"
            )
        subject = self.subjects[0] if subject is None else str(subject).removeprefix("sub-")
        if subject not in self.recordings:
            raise ValueError(
                f"No subject {subject!r}; subjects: {list(self.subjects)}."
                f"{suggest(subject, self.subjects)}"
            )
        rec = self.recordings[subject]
        feat = np.atleast_2d(truth.features[feature])
        if not np.isclose(rec.sfreq, truth.sfreq):
            t_in = np.arange(feat.shape[1]) / truth.sfreq
            t_out = np.arange(round(feat.shape[1] * rec.sfreq / truth.sfreq)) / rec.sfreq
            feat = np.stack([np.interp(t_out, t_in, row) for row in feat])
        return segment_features(
            feat,
            rec.sfreq,
            rec.trials["onset"].to_numpy(dtype=float),
            float(rec.times[0]),
            float(rec.times[-1]) + 1.0 / rec.sfreq,
            n_times=len(rec.times),
        )

    def __repr__(self) -> str:
        return (
            f"<SimulatedMEEG {self.modality} {len(self.subjects)} subjects, {len(self.stimuli)} "
            f"{'images' if self.paradigm == 'images' else 'words'}, "
            f"SNR {self.ground_truth.snr:g}: {str(self.root)!r}>"
        )


def _read_back(
    root: Path,
    truth: MEEGGroundTruth,
    reader: dict[str, Any],
    options: dict[str, Any],
    verbose: bool,
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Noisy windows by load_bids, noise-free ones by load_meeg, the stimuli (words by
    load_audio, images by load_images)."""
    from brainalign.io import load_audio, load_bids, load_images, load_meeg, read_bids_events

    recordings, clean = {}, {}
    for subject in progress(truth.subjects, desc="reading subjects", verbose=verbose):
        recordings[subject] = load_bids(root, subject=subject, **reader, **options)
        events = read_bids_events(truth.files[subject]["events"])
        clean[subject] = load_meeg(
            truth.clean_path(subject), events=events, subject=subject, **options
        )
    if truth.paradigm == "images":
        return recordings, clean, load_images(root / "stimuli" / "images.tsv")
    return recordings, clean, load_audio(root / "stimuli" / "words.tsv")


def load_simulated_meeg(folder: str | os.PathLike, *, verbose: bool = False) -> SimulatedMEEG:
    """Read a dataset written by :func:`simulate_meeg_dataset`.

    The recordings are read by :func:`brainalign.io.load_bids` with the reader options and the
    preprocessing of its ``manifest.yaml`` (brainmagick's windows: -0.5 to 2.5 s around each word
    at 120 Hz, baseline before 0; the robust scaling and clamping the manifest lists are left to
    the training data pipeline).

    Parameters
    ----------
    folder : path-like
        The dataset folder.
    verbose : bool
        Show progress.

    Returns
    -------
    dataset : SimulatedMEEG

    Raises
    ------
    FileNotFoundError
        The folder holds no complete simulated dataset (no ``manifest.yaml``: the simulation
        was interrupted, or this is another folder).
    """
    from brainalign.io import load_manifest

    root = Path(folder).expanduser()
    manifest_path = root / "manifest.yaml"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{str(root)!r} holds no complete simulated M/EEG dataset: {str(manifest_path)!r} "
            "is missing (it is written last, so an interrupted simulation lacks it). Run "
            "simulate_meeg_dataset (brainalign simulate meeg) again."
        )
    manifest = load_manifest(manifest_path)
    truth = read_meeg_ground_truth(root)
    prep = manifest.preprocessing
    options: dict[str, Any] = {
        "tmin": prep.tmin,
        "tmax": prep.tmax,
        "baseline": None if prep.baseline is None else tuple(prep.baseline),
        "sfreq": prep.sfreq,
        "stimulus_column": "stimulus_id",
    }
    reader = dict(manifest.reader.options) if manifest.reader is not None else {}
    recordings, clean, stimuli = _read_back(root, truth, reader, options, verbose)
    return SimulatedMEEG(root, manifest, truth, recordings, clean, stimuli)


#: Version of the default cached M/EEG dataset's folder name; bump it when its content changes.
_DEFAULT_VERSION = 1


def default_simulated_meeg(
    cache_dir: str | os.PathLike | None = None,
    *,
    duration: float = 300.0,
    verbose: bool = True,
) -> SimulatedMEEG:
    """The default simulated MEG speech dataset (seed 0), generated once and cached.

    Two subjects listen to ``duration`` seconds of the default story (592 words for 300 s),
    208-channel MEG at SNR 0.1: :func:`simulate_meeg_dataset` with its defaults. About a minute
    on 2 CPU cores the first time.

    Parameters
    ----------
    cache_dir : path-like | None
        Folder holding cached datasets; default ``$BRAINALIGN_CACHE/simulated`` (or
        ``~/.cache/brainalign/simulated``). The dataset is the sub-folder
        ``meg-speech-v<version>-<duration>s-seed0``, generated under a temporary name and
        renamed when complete (concurrent callers never see a partial folder).
    duration : float
        Seconds of speech (shorter datasets for quick runs and tests).
    verbose : bool
        Progress while generating.

    Returns
    -------
    dataset : SimulatedMEEG
    """
    from brainalign.data.simulate._common import MANIFEST_NAME, generate_atomically

    check_positive("duration", duration)
    if not np.isfinite(duration):
        raise ValueError(f"'duration' must be a finite number of seconds, got {duration!r}.")
    if cache_dir is None:
        from brainalign.targets.cache import default_cache_dir

        root = default_cache_dir().parent / "simulated"
    else:
        root = Path(cache_dir).expanduser()
    dest = root / f"meg-speech-v{_DEFAULT_VERSION}-{float(duration):g}s-seed0"
    if not (dest / MANIFEST_NAME).is_file():
        dest, _ = generate_atomically(
            dest,
            lambda tmp: simulate_meeg_dataset(
                tmp, seed=0, duration=float(duration), overwrite=True, verbose=verbose
            ),
            # a folder without a manifest is a broken leftover, never a finished dataset
            if_exists="replace",
        )
    return load_simulated_meeg(dest)


def simulate_meeg_dataset(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    n_subjects: int = 2,
    modality: str = "meg",
    duration: float = 300.0,
    snr: float = 0.1,
    sfreq: float = 200.0,
    snr_band: tuple[float, float] = (0.5, 30.0),
    n_channels: int | None = None,
    text: str | os.PathLike | None = None,
    speech_model: Any = None,
    sources: Sequence[SourceSpec] | None = None,
    noise: MEEGNoise | None = None,
    n_dipoles_per_patch: int = 7,
    variability: float = 1.0,
    top_k: int = 10,
    device: Any = "auto",
    overwrite: bool = False,
    verbose: bool = True,
) -> SimulatedMEEG:
    """Simulate a MEG-MASC-like (or EEG) dataset of subjects listening to speech.

    See the module docstring for the steps and :mod:`brainalign.data.simulate.meeg` for the
    model. Every subject hears the same speech; the result is the same for the same arguments
    (the FIF files differ only in their file ids and timestamps).

    Parameters
    ----------
    out : path-like
        The dataset folder to create (empty or new; or an earlier simulation with
        ``overwrite=True``).
    seed : int
        Seeds the speech gaps, the feature weights and every subject.
    n_subjects : int
        Number of subjects (``"01"``, ``"02"``…).
    modality : {"meg", "eeg"}
        MEG: 208 point magnetometers on the KIT helmet (MEG-MASC's system), FIF. EEG: a standard
        montage per subject (biosemi64, easycap-M1, GSN-HydroCel-64 in turn), BrainVision.
    duration : float
        Seconds of speech (the recording adds 1 s of silence between sound files and about 4 s
        at the ends).
    snr : float
        Sensor-level SNR in ``snr_band`` (see :func:`~brainalign.data.simulate.meeg.compute_snr`).
    sfreq : float
        Sampling rate of the simulated recordings, Hz (read back at 120 Hz).
    snr_band : (float, float)
        Band of the SNR, Hz.
    n_channels : int | None
        Sensors per subject (MEG: 208 by default; EEG: the whole montage).
    text : str | os.PathLike | None
        The text to speak, or a :class:`pathlib.Path` to a UTF-8 text file
        (:data:`DEFAULT_TEXT` by default).
    speech_model : SpeechModel | str | path-like | torch.nn.Module | None
        A wav2vec 2.0-style model (anything :func:`brainalign.targets.load_speech_model` takes):
        its hidden states (brainmagick's layers 14-18 averaged; the outputs of all its layers for
        a model with fewer) become the ``"embedding"`` feature that drives the language sources.
    sources : sequence of SourceSpec | None
        The sources (:func:`~brainalign.data.simulate.meeg.default_meeg_sources` by default).
    noise : MEEGNoise | None
        Noise settings.
    n_dipoles_per_patch : int
        Dipoles per source patch (1 to 7).
    variability : float
        Scale of the per-subject jitter (0: identical geometry and gains).
    top_k : int
        ``k`` of the retrieval noise ceiling.
    device : str
        Device of the speech model.
    overwrite : bool
        Replace an earlier simulation in ``out``.
    verbose : bool
        Log the steps and show progress bars.

    Returns
    -------
    dataset : SimulatedMEEG
        Read back from ``out``.
    """
    check_option("modality", modality, ("meg", "eeg"))
    check_positive("n_subjects", n_subjects)
    check_positive("sfreq", sfreq)
    check_positive("snr", snr)
    if int(n_subjects) != n_subjects:
        raise ValueError(f"'n_subjects' must be a whole number, got {n_subjects!r}.")
    if not 0 < snr_band[0] < snr_band[1] < sfreq / 2:
        raise ValueError(
            f"'snr_band' must be (low, high) with 0 < low < high < sfreq/2 = {sfreq / 2:g} Hz, "
            f"got {tuple(snr_band)!r}."
        )
    root = check_output_folder(out, overwrite=overwrite)
    if modality == "eeg":  # mne-bids writes BIDS EEG as BrainVision through pybv
        from brainalign._utils.optional import import_optional

        import_optional("pybv", purpose="writing simulated EEG as BrainVision (BIDS EEG)")
    children = np.random.SeedSequence(int(seed)).spawn(2 + int(n_subjects))
    speech_rng, weights_rng = (np.random.default_rng(c) for c in children[:2])
    subject_rngs = [np.random.default_rng(c) for c in children[2:]]

    logger.info("synthesising %.0f s of speech with espeak-ng", duration)
    speech = synthesize_speech(text, duration=duration, seed=speech_rng)
    audio, events, n_times = _timeline(speech, sfreq)
    model = None
    if speech_model is not None:
        from brainalign.targets.speech import SpeechModel, load_speech_model

        model = (
            speech_model
            if isinstance(speech_model, SpeechModel)
            else load_speech_model(speech_model)
        )
    logger.info("computing speech features at %g Hz", sfreq)
    features = _speech_features(
        audio, speech.sfreq, sfreq, n_times, events["onset"].to_numpy(), model, device
    )
    chosen = tuple(default_meeg_sources(features) if sources is None else sources)
    time_courses = make_source_time_courses(features, sfreq, chosen, seed=weights_rng)

    def subjects():
        for i in progress(range(int(n_subjects)), desc="simulating subjects", verbose=verbose):
            yield simulate_meeg_subject(
                time_courses,
                modality=modality,
                subject=f"{i + 1:02d}",
                subject_index=i,
                seed=subject_rngs[i],
                snr=snr,
                snr_band=snr_band,
                n_channels=n_channels,
                noise=noise,
                n_dipoles_per_patch=n_dipoles_per_patch,
                variability=variability,
            )

    words = speech.words.rename(columns={"sound": "sound_name"})
    words.insert(1, "file", [f"audio/{s}.wav" for s in words["sound_name"]])
    parameters = {
        "seed": int(seed),
        "n_subjects": int(n_subjects),
        "duration": float(duration),
        "speech_duration": speech.duration,
        "audio_sfreq": speech.sfreq,
        "voice": speech.voice,
        "espeak": speech.version,
        "text": "DEFAULT_TEXT" if text is None else "user text",
        "n_channels": n_channels,
        "n_dipoles_per_patch": int(n_dipoles_per_patch),
        "variability": float(variability),
        "speech_model": None if model is None else model.name,
        "timeline": {"lead": _LEAD, "between_sounds": _BETWEEN, "tail": _TAIL},
    }
    write_simulated_meeg(
        root,
        subjects(),
        time_courses,
        events=events,
        features=features,
        sounds={f"stimuli/audio/{k}.wav": (v, speech.sfreq) for k, v in speech.sounds.items()},
        words=words,
        parameters=parameters,
        overwrite=overwrite,
    )
    return _finish(root, READ_OPTIONS, top_k, int(seed), verbose)


# ----------------------------------------------------------------------------------------------
# The image paradigm (THINGS-EEG-like rapid serial visual presentation)
# ----------------------------------------------------------------------------------------------

#: Silence before the first sequence and after the last image, seconds.
_IMAGE_LEAD, _IMAGE_TAIL = 1.0, 1.5


def _rsvp_design(
    n_images: int,
    *,
    n_test: int,
    n_test_repetitions: int,
    n_train_repetitions: int,
    sequence_length: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Which images are test images, and the shuffled presentations in sequences."""
    test = np.zeros(n_images, dtype=bool)
    test[rng.choice(n_images, n_test, replace=False)] = True
    shown = np.concatenate(
        [
            np.repeat(np.flatnonzero(test), n_test_repetitions),
            np.repeat(np.flatnonzero(~test), n_train_repetitions),
        ]
    )
    order = shown[rng.permutation(shown.size)]
    seen = np.zeros(n_images, dtype=np.int64)
    repetition = np.empty(order.size, dtype=np.int64)
    for position, i in enumerate(order):
        repetition[position] = seen[i]
        seen[i] += 1
    k = np.arange(order.size)
    design = pd.DataFrame(
        {
            "image_index": order,
            "split": np.where(test[order], "test", "train"),
            "repetition": repetition,
            "sequence": k // sequence_length,
            "sequence_position": k % sequence_length,
        }
    )
    return test, design


def _whole_samples(name: str, seconds: float, sfreq: float) -> int:
    n = round(seconds * sfreq)
    if n < 1 or abs(seconds * sfreq - n) > 1e-6:
        raise ValueError(
            f"'{name}' ({seconds:g} s) must be a positive whole number of samples at sfreq="
            f"{sfreq:g} Hz (a multiple of {1 / sfreq:g} s), so that every image onset falls on "
            "a sample."
        )
    return int(n)


def simulate_meeg_images_dataset(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    n_subjects: int = 2,
    modality: str = "eeg",
    images: Any = None,
    n_images: int | None = 200,
    n_test_images: int = 20,
    n_test_repetitions: int = 10,
    n_train_repetitions: int = 2,
    soa: float = 0.2,
    image_duration: float = 0.1,
    sequence_length: int = 20,
    sequence_gap: float = 1.0,
    snr: float = 0.1,
    sfreq: float = 200.0,
    snr_band: tuple[float, float] = (0.5, 30.0),
    n_channels: int | None = None,
    image_size: int = 128,
    sources: Sequence[SourceSpec] | None = None,
    onset_response: float = 1.0,
    noise: MEEGNoise | None = None,
    n_dipoles_per_patch: int = 7,
    variability: float = 1.0,
    top_k: int = 10,
    feature_cache_dir: str | os.PathLike | None = None,
    device: Any = "auto",
    overwrite: bool = False,
    verbose: bool = True,
) -> SimulatedMEEG:
    """Simulate a THINGS-EEG-like (or MEG) dataset of subjects viewing images in rapid sequences.

    1. **Images**: the natural images of :func:`brainalign.pipelines.stimuli.build_stimulus_set`
       (faces, non-faces and photograph crops from scikit-image and scikit-learn) or the user's
       ``images``, and their EfficientNet-Lite0 features at the layers the sources read
       (:func:`brainalign.pipelines.simulate_fmri.compute_layer_features`: grid-pooled 4 × 4,
       cached on disk).
    2. **Design** (THINGS-EEG2's rapid serial visual presentation): ``n_test_images`` test
       images shown ``n_test_repetitions`` times each and the other (training) images
       ``n_train_repetitions`` times, in one seeded random order, in sequences of
       ``sequence_length`` images, one every ``soa`` seconds (on the screen for
       ``image_duration``), the sequences ``sequence_gap`` seconds apart.
    3. **Sources** (:func:`~brainalign.data.simulate.meeg.default_visual_sources`: early visual
       cortex at the occipital pole, lateral occipital and ventral occipito-temporal cortex):
       each responds to every image onset with its gamma TRF (early layer → ~100 ms, late layer
       → ~220 ms), of height ``onset_response + readout``, the read-out a linear read-out of its
       layer's features, z-scored over the images, with subject-specific weights
       (:func:`~brainalign.data.simulate.meeg.make_image_readouts`,
       :func:`~brainalign.data.simulate.meeg.make_event_time_courses`).
    4. **Recordings**: as the speech paradigm
       (:func:`~brainalign.data.simulate.meeg.simulate_meeg_subject`: EEG montages that differ
       between subjects, or the KIT MEG helmet; background brain activity, sensor and line
       noise at the requested SNR), written as BIDS
       (:func:`~brainalign.data.simulate.meeg.write_simulated_meeg_images`) with one
       ``events.tsv`` row per image onset (``stimulus_id``, ``image``, ``split``,
       ``repetition``…), the images under ``stimuli/images`` and the ground truth.
    5. **Read back** by :func:`brainalign.io.load_bids` as THINGS-EEG2's windows (-0.2 to
       0.8 s around each image onset at 100 Hz, baseline before 0), the noise-free ones by
       :func:`brainalign.io.load_meeg` and the images by :func:`brainalign.io.load_images`; the
       noise ceiling of each subject on these windows is saved, then the manifest.

    The same arguments give the same files (the FIF files differ only in their file ids and
    timestamps).

    Parameters
    ----------
    out : path-like
        The dataset folder (empty or new; or an earlier simulation with ``overwrite=True``).
    seed : int
        Seeds the images, the design, the read-outs and every subject.
    n_subjects : int
        Number of subjects (``"01"``, ``"02"``…).
    modality : {"eeg", "meg"}
        EEG: a standard montage per subject (biosemi64, easycap-M1, GSN-HydroCel-64 in turn; a
        random subset of ``n_channels`` electrodes), BrainVision. MEG: point magnetometers on
        the KIT helmet, FIF.
    images : path-like | StimulusSet | DataFrame | None
        Your own images (a folder or a table, see :func:`brainalign.io.load_images`) instead of
        the built-in natural images.
    n_images : int | None
        Number of distinct images (at least ``n_test_images + 1``); with ``images``, that many
        drawn from them (``None``: all).
    n_test_images : int
        Images shown ``n_test_repetitions`` times (``split == "test"``).
    n_test_repetitions, n_train_repetitions : int
        Presentations of each test image and of each training image.
    soa : float
        Stimulus onset asynchrony, seconds (a whole number of samples at ``sfreq``).
    image_duration : float
        How long each image stays on the screen, seconds (``0 < image_duration <= soa``; only
        written to the events: the sources respond to onsets).
    sequence_length : int
        Images per sequence.
    sequence_gap : float
        Seconds from the end of a sequence (its last onset plus ``soa``) to the next one.
    snr : float
        Sensor-level SNR in ``snr_band``
        (:func:`~brainalign.data.simulate.meeg.compute_snr`), achieved exactly.
    sfreq : float
        Sampling rate of the simulated recordings, Hz (read back at 100 Hz).
    snr_band : (float, float)
        Band of the SNR, Hz.
    n_channels : int | None
        Sensors per subject (EEG: the whole montage by default; MEG: 208).
    image_size : int
        Side of the images and of the network's input, pixels.
    sources : sequence of SourceSpec | None
        The sources, each ``feature`` an EfficientNet-Lite0 layer
        (:func:`brainalign.targets.list_layers`); the default sources by default.
    onset_response : float
        The part of every response that all images share, in units of the read-out's SD
        (0: responses are the read-out alone, of either sign).
    noise : MEEGNoise | None
        Noise settings.
    n_dipoles_per_patch : int
        Dipoles per source patch (1 to 7).
    variability : float
        Scale of the per-subject differences (geometry, gains, read-out weights).
    top_k : int
        ``k`` of the retrieval noise ceiling (at most the number of presentations minus 1).
    feature_cache_dir : path-like | None
        Folder of the network-feature cache (brainalign's cache folder by default).
    device : str
        Where the network runs.
    overwrite : bool
        Replace an earlier simulation in ``out``.
    verbose : bool
        Log the steps and show progress bars.

    Returns
    -------
    dataset : SimulatedMEEG
        Read back from ``out``; ``ground_truth.image_readouts()`` holds the layer features,
        weights and read-outs.
    """
    import tempfile

    from brainalign.data.simulate._common import child_rng

    check_option("modality", modality, ("meg", "eeg"))
    for name, value in (
        ("n_subjects", n_subjects),
        ("n_test_images", n_test_images),
        ("n_test_repetitions", n_test_repetitions),
        ("n_train_repetitions", n_train_repetitions),
        ("sequence_length", sequence_length),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"'{name}' must be a positive integer, got {value!r}.")
    if n_images is not None and (
        isinstance(n_images, bool)
        or not isinstance(n_images, int | np.integer)
        or n_images <= n_test_images
    ):
        raise ValueError(
            f"'n_images' must be an integer above n_test_images={n_test_images} (the others are "
            f"training images), got {n_images!r}."
        )
    check_positive("sfreq", sfreq)
    check_positive("snr", snr)
    check_positive("onset_response", onset_response, strict=False)
    check_positive("sequence_gap", sequence_gap, strict=False)
    soa_n = _whole_samples("soa", soa, sfreq)
    gap_n = round(sequence_gap * sfreq)
    if not 0 < image_duration <= soa:
        raise ValueError(
            f"'image_duration' must be in (0, soa={soa:g}] seconds, got {image_duration!r}."
        )
    if not 0 < snr_band[0] < snr_band[1] < sfreq / 2:
        raise ValueError(
            f"'snr_band' must be (low, high) with 0 < low < high < sfreq/2 = {sfreq / 2:g} Hz, "
            f"got {tuple(snr_band)!r}."
        )
    specs = tuple(default_visual_sources() if sources is None else sources)
    if not specs:
        raise ValueError("'sources' is empty; give at least one SourceSpec.")
    from brainalign.targets import list_layers

    known = list_layers("efficientnet_lite0")
    layers = list(dict.fromkeys(s.feature for s in specs))
    for layer in layers:
        if layer not in known:
            raise ValueError(
                f"A source reads out the layer {layer!r}, which EfficientNet-Lite0 lacks."
                f"{suggest(layer, known)} See brainalign.targets.list_layers('efficientnet_lite0')."
            )
    root = check_output_folder(out, overwrite=overwrite)
    if modality == "eeg":
        from brainalign._utils.optional import import_optional

        import_optional("pybv", purpose="writing simulated EEG as BrainVision (BIDS EEG)")

    from brainalign.pipelines.simulate_fmri import compute_layer_features
    from brainalign.pipelines.stimuli import build_stimulus_set

    with tempfile.TemporaryDirectory() as tmp:
        stimuli = build_stimulus_set(
            Path(tmp) / "stimuli",
            images=images,
            n_stimuli=n_images,
            image_size=image_size,
            seed=int(seed),
            verbose=verbose,
        )
        n = len(stimuli)
        if n <= n_test_images:
            raise ValueError(
                f"There are {n} images but n_test_images={n_test_images}; keep some for "
                "training (n_test_images < number of images)."
            )
        logger.info("computing EfficientNet-Lite0 features of %d images: %s", n, layers)
        layer_features = compute_layer_features(
            stimuli,
            layers,
            image_size=image_size,
            cache_dir=feature_cache_dir,
            device=device,
            verbose=verbose,
        )
        test, design = _rsvp_design(
            n,
            n_test=int(n_test_images),
            n_test_repetitions=int(n_test_repetitions),
            n_train_repetitions=int(n_train_repetitions),
            sequence_length=int(sequence_length),
            rng=child_rng(int(seed), "rsvp-design"),
        )
        if len(design) <= top_k:
            raise ValueError(
                f"'top_k' ({top_k}) must be below the number of presentations ({len(design)})."
            )
        lead_n = round(_IMAGE_LEAD * sfreq)
        samples = (
            lead_n
            + design["sequence"].to_numpy() * (int(sequence_length) * soa_n + gap_n)
            + design["sequence_position"].to_numpy() * soa_n
        )
        n_times = int(samples[-1] + soa_n + round(_IMAGE_TAIL * sfreq))
        onsets = samples / float(sfreq)
        table = stimuli.table.copy()
        table["split"] = np.where(test, "test", "train")
        names = [Path(p).name for p in table["path"]]
        index = design["image_index"].to_numpy()
        events = pd.DataFrame(
            {
                "onset": onsets,
                "duration": float(image_duration),
                "trial_type": "image",
                "stimulus_id": table["stimulus_id"].astype(str).to_numpy()[index],
                "image": [f"stimuli/images/{names[i]}" for i in index],
                "category": table["category"].astype(str).to_numpy()[index],
                **{c: design[c].to_numpy() for c in design.columns if c != "image_index"},
            }
        )
        readouts = make_image_readouts(
            layer_features,
            specs,
            stimulus_ids=table["stimulus_id"].astype(str).tolist(),
            n_subjects=int(n_subjects),
            seed=child_rng(int(seed), "readouts"),
            variability=variability,
        )
        shared = make_event_time_courses(
            onset_response + readouts.shared_values[:, index], onsets, sfreq, n_times, specs
        )

        def subjects():
            for i in progress(range(int(n_subjects)), desc="simulating subjects", verbose=verbose):
                time_courses = make_event_time_courses(
                    onset_response + readouts.values[i][:, index], onsets, sfreq, n_times, specs
                )
                yield simulate_meeg_subject(
                    time_courses,
                    modality=modality,
                    subject=f"{i + 1:02d}",
                    subject_index=i,
                    seed=child_rng(int(seed), "subject", i),
                    snr=snr,
                    snr_band=snr_band,
                    n_channels=n_channels,
                    noise=noise,
                    n_dipoles_per_patch=n_dipoles_per_patch,
                    variability=variability,
                )

        parameters = {
            "seed": int(seed),
            "n_subjects": int(n_subjects),
            "n_images": n,
            "n_test_images": int(n_test_images),
            "n_test_repetitions": int(n_test_repetitions),
            "n_train_repetitions": int(n_train_repetitions),
            "n_presentations": len(events),
            "soa": float(soa),
            "image_duration": float(image_duration),
            "sequence_length": int(sequence_length),
            "sequence_gap": float(sequence_gap),
            "image_size": int(image_size),
            "images": "user images" if images is not None else "natural images",
            "network": "efficientnet_lite0 (grid-pooled 4 x 4)",
            "onset_response": float(onset_response),
            "n_channels": n_channels,
            "n_dipoles_per_patch": int(n_dipoles_per_patch),
            "variability": float(variability),
            "timeline": {"lead": _IMAGE_LEAD, "tail": _IMAGE_TAIL},
        }
        write_simulated_meeg_images(
            root,
            subjects(),
            shared,
            events=events,
            images=table,
            layer_features=layer_features,
            readouts=readouts,
            features={"image_onset": word_onset_impulses(onsets, sfreq, n_times)},
            parameters=parameters,
            overwrite=overwrite,
        )
    return _finish(root, IMAGE_READ_OPTIONS, top_k, int(seed), verbose)


def _finish(
    root: Path, read_options: dict[str, Any], top_k: int, seed: int, verbose: bool
) -> SimulatedMEEG:
    """Read a written dataset back, save its noise ceiling and manifest."""
    from brainalign.io import load_manifest

    logger.info("reading the recordings back and computing the noise ceiling")
    truth = read_meeg_ground_truth(root)
    options = {**read_options, "stimulus_column": "stimulus_id"}
    reader = {"task": truth.task, "datatype": truth.modality}
    recordings, clean, stimuli = _read_back(root, truth, reader, options, verbose)
    ceilings = {
        s: compute_noise_ceiling(
            clean[s].data, recordings[s].data, top_k=top_k, ch_names=recordings[s].ch_names
        )
        for s in truth.subjects
    }
    write_noise_ceiling(root, ceilings, settings={**options, "reader": "load_bids"})
    write_meeg_manifest(root, split_seed=seed)
    manifest = load_manifest(root / "manifest.yaml")
    truth = read_meeg_ground_truth(root)
    for s, c in ceilings.items():
        logger.info(
            "sub-%s: SNR %.3g, correlation ceiling %.3f, top-%d ceiling %.3f (chance %.3f)",
            s,
            truth.snr_achieved[s],
            c.mean_correlation,
            c.top_k,
            c.top_k_accuracy,
            c.top_k / c.n_segments,
        )
    return SimulatedMEEG(root, manifest, truth, recordings, clean, stimuli)
