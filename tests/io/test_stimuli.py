"""Stimulus sets: image folders and tables, audio files and segments, texts, trial resolution."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from scipy.signal import resample_poly

from brainalign._utils.errors import BrainAlignWarning, CorruptFileError
from brainalign.io.recording import Recording, make_trial_table
from brainalign.io.stimuli import (
    StimulusSet,
    load_audio,
    load_images,
    load_texts,
    resolve_stimuli,
)

# ------------------------------------------------------------------------------------------------
# images


def _write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def image_folder(tmp_path, rng):
    """Nested folders of images in several formats and sizes, plus files that are not stimuli."""
    root = tmp_path / "images"
    arrays = {
        "cats/tabby.png": rng.integers(0, 256, size=(7, 8, 3), dtype=np.uint8),
        "cats/siamese.bmp": rng.integers(0, 256, size=(9, 10, 3), dtype=np.uint8),
        "dogs/small/pug.tif": rng.integers(0, 256, size=(11, 12, 3), dtype=np.uint8),
        "dogs/grey.PNG": rng.integers(0, 256, size=(8, 9), dtype=np.uint8),  # mode L
        "top.webp": rng.integers(0, 256, size=(10, 7, 3), dtype=np.uint8),
        "dogs/photo.jpg": rng.integers(0, 256, size=(12, 13, 3), dtype=np.uint8),
    }
    for rel, array in arrays.items():
        _write_image(root / rel, array)
    rgba = rng.integers(0, 256, size=(7, 9, 4), dtype=np.uint8)
    _write_image(root / "cats" / "alpha.png", rgba)
    arrays["cats/alpha.png"] = rgba
    # not stimuli: a text file, macOS metadata, a hidden folder
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "cats" / "._tabby.png").write_bytes(b"\x00\x05\x16\x07")
    _write_image(root / ".thumbs" / "tabby.png", arrays["cats/tabby.png"])
    return root, arrays


def test_load_images_folder_ids_categories_and_pixels(image_folder):
    root, arrays = image_folder
    stimuli = load_images(root)
    # sorted by relative path; hidden files, hidden folders and .txt skipped
    expected = ["alpha", "siamese", "tabby", "grey", "photo", "pug", "top"]
    assert stimuli.ids.tolist() == expected
    assert list(stimuli) == expected
    assert len(stimuli) == 7
    assert stimuli.kind == "image"
    table = stimuli.table
    assert table["category"].tolist() == ["cats", "cats", "cats", "dogs", "dogs", "small", ""]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in table["path"])
    for rel, array in arrays.items():
        stem = Path(rel).stem
        img = stimuli[stem]
        assert isinstance(img, Image.Image)
        assert img.mode == "RGB"
        assert img.size == (array.shape[1], array.shape[0])  # PIL: (width, height)
        got = np.asarray(img)
        if rel.endswith(".jpg"):
            continue  # lossy; the size check above is enough
        if rel.endswith(".webp"):
            # lossy by default in PIL; compare with PIL's own decoding of the same file
            np.testing.assert_array_equal(got, np.asarray(Image.open(root / rel).convert("RGB")))
        elif array.ndim == 2:
            np.testing.assert_array_equal(got, np.repeat(array[..., None], 3, axis=2))
        else:
            np.testing.assert_array_equal(got, array[..., :3])


def test_load_images_relative_ids_and_non_recursive(image_folder):
    root, _ = image_folder
    stimuli = load_images(root, id_from="relative")
    assert "dogs/small/pug.tif" in stimuli
    assert "cats/tabby.png" in stimuli
    assert stimuli.load("dogs/grey.PNG").size == (9, 8)
    top = load_images(root, recursive=False)
    assert top.ids.tolist() == ["top"]
    assert top.table["category"].tolist() == [""]
    only_png = load_images(root, extensions=[".png"])
    assert only_png.ids.tolist() == ["alpha", "tabby", "grey"]


def test_load_images_folder_errors(image_folder, tmp_path):
    root, arrays = image_folder
    _write_image(root / "dogs" / "tabby.png", arrays["cats/tabby.png"])
    with pytest.raises(ValueError, match=r"1 file stems appear more than once.*'tabby'.*relative"):
        load_images(root)
    assert "dogs/tabby.png" in load_images(root, id_from="relative")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No file with the extensions.*empty"):
        load_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"folder or table.*does_not_exist"):
        load_images(tmp_path / "does_not_exist")
    with pytest.raises(ValueError, match=r"takes a folder of images.*tabby\.png.*Pass its folder"):
        load_images(root / "cats" / "tabby.png")
    with pytest.raises(ValueError, match=r"'id_from' parameter.*'stem', 'relative'.*'name'"):
        load_images(root, id_from="name")


@pytest.fixture
def corrupt_folder(tmp_path, rng):
    root = tmp_path / "corrupt"
    _write_image(root / "good.png", rng.integers(0, 256, size=(7, 8, 3), dtype=np.uint8))
    _write_image(root / "full.png", rng.integers(0, 256, size=(9, 10, 3), dtype=np.uint8))
    data = (root / "full.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "full.png").unlink()
    return root


def test_corrupt_image_is_reported_on_load_or_check(corrupt_folder):
    stimuli = load_images(corrupt_folder)  # lazy: indexing does not decode
    assert stimuli.ids.tolist() == ["good", "truncated"]
    assert stimuli.load("good").size == (8, 7)
    with pytest.raises(CorruptFileError, match=r"truncated\.png.*check=True"):
        stimuli.load("truncated")
    with pytest.raises(CorruptFileError, match=r"Cannot decode the image file.*truncated\.png"):
        load_images(corrupt_folder, check=True)
    (corrupt_folder / "truncated.png").write_text("this is not a PNG")
    with pytest.raises(CorruptFileError, match=r"truncated\.png.*UnidentifiedImageError"):
        load_images(corrupt_folder, check=True)


def test_load_images_from_tables(image_folder, tmp_path):
    root, _ = image_folder
    table = pd.DataFrame(
        {
            "stimulus_id": ["001", "002", "NA"],
            "path": ["cats/tabby.png", "dogs/small/pug.tif", str(root / "top.webp")],
            "label": [3, 1, 2],
        }
    )
    # CSV next to the images: relative paths are taken from the table's folder
    table.to_csv(root / "stimuli.csv", index=False)
    from_csv = load_images(root / "stimuli.csv")
    assert from_csv.ids.tolist() == ["001", "002", "NA"]  # strings, leading zeros kept
    assert from_csv.table["label"].tolist() == [3, 1, 2]
    assert from_csv.table["category"].tolist() == ["", "", ""]
    assert from_csv["002"].size == (12, 11)
    # TSV elsewhere with absolute paths, and a category column
    tsv = table.assign(path=[str(root / p) for p in table["path"]], category=["c", "d", "t"])
    tsv.to_csv(tmp_path / "stimuli.tsv", sep="\t", index=False)
    from_tsv = load_images(tmp_path / "stimuli.tsv")
    assert from_tsv.table["category"].tolist() == ["c", "d", "t"]
    pd.testing.assert_series_equal(from_tsv.table["path"], from_csv.table["path"])
    # DataFrame with relative paths and root; the user's table is not modified
    before = table.copy()
    from_df = load_images(table, root=root)
    pd.testing.assert_frame_equal(table, before)
    assert from_df.table["path"].tolist() == from_csv.table["path"].tolist()


def test_load_images_table_errors(image_folder, tmp_path):
    root, _ = image_folder
    missing = pd.DataFrame(
        {"stimulus_id": ["a", "b", "c"], "path": ["cats/tabby.png", "cats/nope.png", "x/y.jpg"]}
    )
    with pytest.raises(FileNotFoundError, match=r"2 files listed in the 'path' column.*nope\.png"):
        load_images(missing, root=root)
    with pytest.raises(ValueError, match=r"lacks the columns \['path'\]"):
        load_images(pd.DataFrame({"stimulus_id": ["a"], "file": ["a.png"]}))
    dup = pd.DataFrame({"stimulus_id": ["a", "a"], "path": ["cats/tabby.png"] * 2})
    with pytest.raises(ValueError, match=r"unique, but 1 appear more than once: 'a'"):
        load_images(dup, root=root)


def test_stimulus_set_container(image_folder):
    root, _ = image_folder
    stimuli = load_images(root)
    sub = stimuli.subset(["top", "tabby"])
    assert sub.ids.tolist() == ["top", "tabby"]
    assert sub.table["category"].tolist() == ["", "cats"]
    assert len(stimuli) == 7  # unchanged
    np.testing.assert_array_equal(stimuli.index_of(["top", "alpha"]), [6, 0])
    with pytest.raises(ValueError, match=r"2 ids are not in this image stimulus set.*'cat', 'x'"):
        stimuli.subset(["tabby", "cat", "x"])
    with pytest.raises(ValueError, match=r"more than once: 'top'"):
        stimuli.subset(["top", "top"])
    with pytest.raises(KeyError, match=r"No stimulus with id 'taby'.*Did you mean 'tabby'"):
        stimuli["taby"]
    with pytest.raises(TypeError, match=r"looked up by their id.*stimuli.ids\[i\]"):
        stimuli[0]
    assert 0 not in stimuli
    # read-only ids, table returned as a copy
    with pytest.raises(ValueError, match="read-only"):
        stimuli.ids[0] = "x"
    table = stimuli.table
    table.loc[0, "category"] = "changed"
    assert stimuli.table.loc[0, "category"] == "cats"
    assert repr(stimuli) == "<StimulusSet image, 7 stimuli>"


def test_stimulus_set_constructor_errors():
    with pytest.raises(ValueError, match=r"'kind' parameter.*'image', 'audio', 'text'"):
        StimulusSet(pd.DataFrame(), "video")
    with pytest.raises(ValueError, match=r"kind 'text' needs the columns.*lacks \['source'"):
        StimulusSet(pd.DataFrame({"stimulus_id": ["a"], "text": ["x"]}), "text")
    table = pd.DataFrame(
        {"stimulus_id": ["a", None], "text": ["x", "y"], "source": "s", "category": ""}
    )
    with pytest.raises(ValueError, match=r"1 rows without a 'stimulus_id' \(rows '1'\)"):
        StimulusSet(table, "text")
    with pytest.raises(ValueError, match="'sfreq' is only for audio"):
        StimulusSet(table.iloc[:1], "text", sfreq=100.0)
    with pytest.raises(TypeError, match="'table' must be a pandas DataFrame"):
        StimulusSet({"stimulus_id": ["a"]}, "text")


def test_real_images_from_scikit_image(tmp_path):
    """Real photographs shipped with scikit-image, in the formats they come in."""
    import skimage
    import skimage.data

    shipped = Path(skimage.__file__).parent / "data"
    names = {
        "people/astronaut.png": skimage.data.astronaut,
        "animals/chelsea.png": skimage.data.chelsea,
        "objects/coffee.png": skimage.data.coffee,
        "objects/camera.png": skimage.data.camera,  # greyscale
        "objects/rocket.jpg": skimage.data.rocket,
    }
    for rel in names:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shipped / Path(rel).name, tmp_path / rel)
    stimuli = load_images(tmp_path, check=True)
    assert stimuli.ids.tolist() == ["chelsea", "camera", "coffee", "rocket", "astronaut"]
    assert stimuli.table["category"].tolist() == ["animals"] + ["objects"] * 3 + ["people"]
    for rel, reader in names.items():
        reference = reader()
        if reference.ndim == 2:
            reference = np.repeat(reference[..., None], 3, axis=2)
        got = np.asarray(stimuli[Path(rel).stem])
        assert got.shape == reference.shape
        if rel.endswith(".jpg"):
            # the same JPEG; decoders may differ by a few grey levels
            assert np.abs(got.astype(int) - reference).mean() < 2
        else:
            np.testing.assert_array_equal(got, reference)


# ------------------------------------------------------------------------------------------------
# audio


def _sine(freq: float, sfreq: float, duration: float, n_channels: int = 1) -> np.ndarray:
    t = np.arange(round(duration * sfreq)) / sfreq
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    if n_channels == 1:
        return wave.astype(np.float32)
    gains = np.linspace(1.0, 0.2, n_channels)
    return (wave[:, None] * gains).astype(np.float32)


def _peak_hz(wave: np.ndarray, sfreq: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sfreq)[np.argmax(spectrum)])


@pytest.fixture
def audio_folder(tmp_path):
    root = tmp_path / "audio"
    (root / "tones").mkdir(parents=True)
    waves = {
        "tones/a440.wav": (_sine(440, 16000, 1.0), 16000),
        "tones/b1000.flac": (_sine(1000, 22050, 0.7, n_channels=2), 22050),
        "c300.wav": (_sine(300, 44100, 0.5), 44100),
    }
    for rel, (wave, sfreq) in waves.items():
        subtype = "FLOAT" if rel.endswith(".wav") else "PCM_24"
        sf.write(root / rel, wave, sfreq, subtype=subtype)
    return root, waves


def test_load_audio_files_native_rate(audio_folder):
    root, waves = audio_folder
    with pytest.warns(BrainAlignWarning, match=r"1 audio file\(s\) have more than one channel"):
        stimuli = load_audio(root)
    assert stimuli.kind == "audio"
    assert stimuli.ids.tolist() == ["c300", "a440", "b1000"]
    assert stimuli.sfreq is None  # three different rates
    table = stimuli.table
    assert table["file_sfreq"].tolist() == [44100.0, 16000.0, 22050.0]
    assert table["sfreq"].tolist() == [44100.0, 16000.0, 22050.0]
    np.testing.assert_allclose(table["duration"], [0.5, 1.0, 0.7])
    assert table["onset"].tolist() == [0.0, 0.0, 0.0]
    assert table["n_channels"].tolist() == [1, 1, 2]
    wave, sfreq = stimuli["a440"]
    assert sfreq == 16000.0
    assert wave.dtype == np.float32
    assert wave.shape == (16000,)
    np.testing.assert_array_equal(wave, waves["tones/a440.wav"][0])  # FLOAT WAV is exact
    stereo, sfreq = stimuli["b1000"]
    reference, _ = sf.read(root / "tones/b1000.flac", dtype="float32")
    assert reference.shape == (round(0.7 * 22050), 2)
    np.testing.assert_allclose(stereo, reference.mean(axis=1), atol=1e-7)
    assert _peak_hz(stereo, sfreq) == pytest.approx(1000, abs=2)


def test_load_audio_resamples_and_says_so(audio_folder):
    root, waves = audio_folder
    files = [root / "c300.wav", root / "tones" / "a440.wav"]
    with pytest.warns(BrainAlignWarning, match=r"44100 Hz.*resample_poly\(up=160, down=441\)"):
        stimuli = load_audio(files, sfreq=16000)
    assert stimuli.sfreq == 16000.0
    assert stimuli.table["sfreq"].tolist() == [16000.0, 16000.0]
    wave, sfreq = stimuli["c300"]
    assert sfreq == 16000.0
    expected = resample_poly(waves["c300.wav"][0], 160, 441)
    assert wave.shape == expected.shape == (8000,)
    np.testing.assert_allclose(wave, expected, rtol=1e-5, atol=1e-6)
    assert _peak_hz(wave, sfreq) == pytest.approx(300, abs=2)
    # the 16 kHz file is not touched
    np.testing.assert_array_equal(stimuli["a440"][0], waves["tones/a440.wav"][0])


def test_load_audio_inexact_ratio_reports_the_rate_obtained(audio_folder):
    root, _ = audio_folder
    # 16001 / 44100 has no ratio with a denominator <= 1000: the closest one is used
    with pytest.warns(BrainAlignWarning, match=r"closest ratio"):
        stimuli = load_audio({"tone": root / "c300.wav"}, sfreq=16001)
    wave, sfreq = stimuli["tone"]
    assert sfreq == stimuli.sfreq
    assert sfreq != 16001
    assert sfreq == pytest.approx(16001, rel=1e-3)
    assert len(wave) == pytest.approx(0.5 * sfreq, abs=1)
    assert _peak_hz(wave, sfreq) == pytest.approx(300, abs=2)


def test_load_audio_segments_table(audio_folder):
    root, waves = audio_folder
    segments = pd.DataFrame(
        {
            "stimulus_id": ["w0", "w1", "w2", "whole"],
            "file": ["tones/a440.wav", "tones/a440.wav", "c300.wav", "c300.wav"],
            "onset": [0.0, 0.25, 0.1, np.nan],
            "duration": [0.25, 0.75, 0.2, np.nan],
            "word": ["the", "cat", "sat", "all"],
        }
    )
    segments.to_csv(root / "segments.csv", index=False)
    stimuli = load_audio(root / "segments.csv")
    table = stimuli.table
    assert table["word"].tolist() == ["the", "cat", "sat", "all"]
    assert table["onset"].tolist() == [0.0, 0.25, 0.1, 0.0]
    np.testing.assert_allclose(table["duration"], [0.25, 0.75, 0.2, 0.5])
    a440, c300 = waves["tones/a440.wav"][0], waves["c300.wav"][0]
    np.testing.assert_array_equal(stimuli["w0"][0], a440[:4000])
    np.testing.assert_array_equal(stimuli["w1"][0], a440[4000:16000])  # to the very end
    np.testing.assert_array_equal(stimuli["w2"][0], c300[4410:13230])
    np.testing.assert_array_equal(stimuli["whole"][0], c300)
    # a DataFrame with 'path' instead of 'file', resolved against root
    alias = segments.rename(columns={"file": "path"}).iloc[:1]
    assert load_audio(alias, root=root)["w0"][0].shape == (4000,)


@pytest.mark.parametrize(
    ("onset", "duration", "match"),
    [
        (
            0.75,
            0.5,
            r"'w': onset 0\.75 s, duration 0\.5 s \(ends at 1\.25 s\).*a440\.wav.*lasts 1 s "
            r"\(16000 samples at 16000 Hz\)",
        ),
        (-0.1, 0.2, r"onset -0\.1 s"),
        (0.2, 0.0, r"duration 0 s"),
        (1.5, np.nan, r"onset 1\.5 s, duration -0\.5 s"),
    ],
)
def test_audio_segment_outside_the_file(audio_folder, onset, duration, match):
    root, _ = audio_folder
    segments = pd.DataFrame(
        {
            "stimulus_id": ["ok", "w"],
            "file": "tones/a440.wav",
            "onset": [0.0, onset],
            "duration": [1.0, duration],
        }
    )
    with pytest.raises(ValueError, match=r"1 audio segments do not fit in their file") as info:
        load_audio(segments, root=root)
    assert info.match(match)
    assert "'ok'" not in str(info.value)


def test_audio_errors(audio_folder, tmp_path):
    root, _ = audio_folder
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(CorruptFileError, match=r"Cannot read the audio file.*broken\.wav"):
        load_audio([bad])
    with pytest.raises(FileNotFoundError, match=r"1 files listed in the 'file' column.*gone\.wav"):
        load_audio([tmp_path / "gone.wav"])
    with pytest.raises(ValueError, match="'sfreq' must be positive"):
        load_audio(root, sfreq=0)
    with pytest.raises(ValueError, match=r"lacks the columns \['file'\]"):
        load_audio(pd.DataFrame({"stimulus_id": ["a"], "onset": [0.0]}))


# ------------------------------------------------------------------------------------------------
# texts


def test_load_texts_from_mapping_list_file_and_table(tmp_path):
    mapping = load_texts({"s1": "A cat sat.", 2: "Un chien."})
    assert mapping.ids.tolist() == ["s1", "2"]
    assert mapping["2"] == "Un chien."
    assert mapping.table["source"].tolist() == ["<mapping>", "<mapping>"]
    listed = load_texts(["zero", "one"])
    assert listed.ids.tolist() == ["0", "1"]
    assert listed["1"] == "one"
    path = tmp_path / "sentences.txt"
    path.write_text("the first sentence\nla deuxième phrase\n\n", encoding="utf-8")
    from_file = load_texts(path)
    assert from_file.ids.tolist() == ["0", "1"]
    assert from_file["1"] == "la deuxième phrase"
    assert from_file.table["source"].iloc[0] == str(path.resolve())
    table = pd.DataFrame({"stimulus_id": ["x", "y"], "text": ["NA", "null"], "pos": ["N", "J"]})
    table.to_csv(tmp_path / "words.tsv", sep="\t", index=False)
    words = load_texts(tmp_path / "words.tsv")
    assert [words[i] for i in words] == ["NA", "null"]  # not parsed as missing values
    assert words.table["pos"].tolist() == ["N", "J"]


def test_load_texts_errors(tmp_path):
    path = tmp_path / "holes.txt"
    path.write_text("one\n\nthree\n")
    with pytest.raises(ValueError, match=r"holes\.txt.*empty lines.*'1'"):
        load_texts(path)
    with pytest.raises(ValueError, match=r"1 stimuli have no text.*'b'"):
        load_texts({"a": "fine", "b": 3})
    with pytest.raises(TypeError, match="'texts_or_file' must be a mapping"):
        load_texts(42)
    with pytest.raises(FileNotFoundError, match=r"'texts_or_file' does not exist.*nope\.txt"):
        load_texts(tmp_path / "nope.txt")


# ------------------------------------------------------------------------------------------------
# trials ↔ stimuli


def test_resolve_stimuli_joins_without_modifying(rng):
    stimuli = load_texts({f"s{i}": f"text {i}" for i in range(7)})
    ids = rng.choice(stimuli.ids, size=9)
    trials = make_trial_table(9, stimulus_id=ids)
    before = trials.copy()
    out = resolve_stimuli(trials, stimuli)
    pd.testing.assert_frame_equal(trials, before)
    assert "stimulus_index" not in trials.columns
    assert out["stimulus_index"].dtype == np.int64
    np.testing.assert_array_equal(stimuli.ids[out["stimulus_index"]], ids)
    pd.testing.assert_frame_equal(out.drop(columns="stimulus_index"), before)
    recording = Recording(rng.normal(size=(9, 8)), trials, modality="eeg", kind="trials")
    pd.testing.assert_frame_equal(resolve_stimuli(recording, stimuli), out)


def test_resolve_stimuli_lists_missing_ids():
    stimuli = load_texts({f"img{i:02d}": "x" for i in range(7)})
    ids = [f"img{i:02d}" for i in range(7)] + [f"other{i}" for i in range(25)] + ["other0"]
    trials = make_trial_table(len(ids), stimulus_id=ids)
    with pytest.raises(ValueError, match=r"26 trials show 25 stimulus ids") as info:
        resolve_stimuli(trials, stimuli)
    message = str(info.value)
    assert "'other0', 'other1'" in message
    assert "'other19' … and 5 more" in message
    assert "'other20'" not in message
    assert "isin(stimuli.ids)" in message
    with pytest.raises(ValueError, match=r"'img5'\. Did you mean 'img05'"):
        resolve_stimuli(make_trial_table(1, stimulus_id=["img5"]), stimuli)
    with pytest.raises(ValueError, match="no 'stimulus_id' column"):
        resolve_stimuli(pd.DataFrame({"onset": [0.0]}), stimuli)
    with pytest.raises(TypeError, match="'stimuli' must be a StimulusSet"):
        resolve_stimuli(trials, {"img00": "x"})


def test_importing_the_module_loads_no_decoder():
    code = (
        "import sys, brainalign.io.stimuli\n"
        "print(','.join(m for m in ('PIL', 'soundfile', 'scipy.signal') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_warning_without_resampling_or_mixdown(audio_folder):
    root, _ = audio_folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stimuli = load_audio(root / "tones" / "a440.wav", sfreq=16000)
    assert stimuli.ids.tolist() == ["a440"]
    assert stimuli.sfreq == 16000.0
