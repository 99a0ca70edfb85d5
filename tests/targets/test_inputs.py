"""Stimulus inputs: the accepted forms, content hashes and named read errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from brainalign._utils.errors import CorruptFileError
from brainalign.targets.inputs import (
    collect_stimuli,
    hash_stimulus_set,
    load_audio_item,
    load_image_item,
    load_text_item,
)


def test_folder_lists_sorted_image_files_and_hashes_bytes(tmp_path, small_images):
    for i, img in enumerate(small_images[:3]):
        Image.fromarray(img).save(tmp_path / f"img{2 - i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    items = collect_stimuli(tmp_path, "image")
    assert [it.id for it in items] == ["img0.png", "img1.png", "img2.png"]
    raw = (tmp_path / "img0.png").read_bytes()
    assert items[0].content_hash == hashlib.sha256(raw).hexdigest()
    np.testing.assert_array_equal(np.asarray(load_image_item(items[2])), small_images[0])


def test_in_memory_forms_and_content_hashes(small_images):
    arrays = collect_stimuli(small_images[:2], "image")
    pils = collect_stimuli([Image.fromarray(i) for i in small_images[:2]], "image")
    assert [it.id for it in arrays] == ["#0", "#1"]
    assert arrays[0].content_hash != arrays[1].content_hash
    again = collect_stimuli([i.copy() for i in small_images[:2]], "image")
    assert [a.content_hash for a in arrays] == [a.content_hash for a in again]
    assert hash_stimulus_set(arrays) == hash_stimulus_set(again) != hash_stimulus_set(pils)
    stack = np.stack([small_images[0][:20, :24]] * 3)  # (3, 20, 24, 3)
    assert len(collect_stimuli(stack, "image")) == 3
    assert len(collect_stimuli(stack[0], "image")) == 1
    gray = collect_stimuli(np.zeros((5, 7, 8), dtype=np.uint8), "image")  # 5 gray images
    assert len(gray) == 5
    assert np.asarray(load_image_item(gray[0])).shape == (7, 8, 3)
    as_float = collect_stimuli([small_images[0] / 255.0], "image")
    np.testing.assert_array_equal(np.asarray(load_image_item(as_float[0])), small_images[0])


def test_texts_from_list_and_file(tmp_path):
    (tmp_path / "t.txt").write_text("a cat\n\na cup of coffee\n")
    items = collect_stimuli(str(tmp_path / "t.txt"), "text")
    assert [it.source for it in items] == ["a cat", "a cup of coffee"]
    assert collect_stimuli(["a cat"], "text")[0].content_hash == items[0].content_hash
    with pytest.raises(TypeError, match=r"must be strings"):
        collect_stimuli(["a", 3], "text")


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no image files"):
        collect_stimuli(tmp_path, "image")
    with pytest.raises(FileNotFoundError, match=r"missing.png"):
        collect_stimuli([tmp_path / "missing.png"], "image")
    with pytest.raises(ValueError, match=r"is empty"):
        collect_stimuli([], "image")
    with pytest.raises(TypeError, match="stimuli\\[0\\] is a dict"):
        collect_stimuli([{}], "image")
    with pytest.raises(ValueError, match=r"Invalid value for the 'modality'"):
        collect_stimuli([np.zeros(3)], "video")


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (item,) = collect_stimuli([bad], "image")
    with pytest.raises(CorruptFileError, match=r"broken.jpg"):
        load_image_item(item)


def test_bad_image_arrays():
    with pytest.raises(ValueError, match=r"channels-first"):
        load_image_item(collect_stimuli([np.zeros((3, 7, 8), dtype=np.uint8)], "image")[0])
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        load_image_item(collect_stimuli([np.full((7, 8, 3), 2.0)], "image")[0])


def test_audio_files_and_waveforms(tmp_path, rng):
    wave = rng.standard_normal((800, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "s.wav", wave, 8000, subtype="FLOAT")
    (item,) = collect_stimuli(tmp_path, "audio")
    loaded, rate = load_audio_item(item, None)
    assert rate == 8000
    np.testing.assert_allclose(loaded, wave.mean(axis=1), atol=1e-7)
    (mem,) = collect_stimuli([wave[:, 0]], "audio")
    with pytest.raises(ValueError, match=r"pass 'sfreq'"):
        load_audio_item(mem, None)
    (broken,) = collect_stimuli([_write(tmp_path / "bad.wav", b"RIFF\x00\x00junk")], "audio")
    with pytest.raises(CorruptFileError, match=r"bad.wav"):
        load_audio_item(broken, None)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


class _Set:
    """A minimal stimulus set: ``ids`` and ``load(id)`` (the protocol the extractors read)."""

    def __init__(self, content: dict, kind: str) -> None:
        self.content = content
        self.kind = kind
        self.n_loads = 0

    @property
    def ids(self):
        return list(self.content)

    def load(self, stimulus_id):
        self.n_loads += 1
        return self.content[stimulus_id]


def test_stimulus_set_protocol(rng, small_images, tmp_path):
    images = _Set(
        {f"img-{i}": Image.fromarray(im) for i, im in enumerate(small_images[:3])}, "image"
    )
    items = collect_stimuli(images, "image")
    assert [it.id for it in items] == ["img-0", "img-1", "img-2"]
    assert images.n_loads == 3  # hashed from its content ...
    np.testing.assert_array_equal(np.asarray(load_image_item(items[1])), small_images[1])
    assert images.n_loads == 4  # ... and read again only when used
    same = collect_stimuli([Image.fromarray(im) for im in small_images[:3]], "image")
    assert [a.content_hash for a in items] == [b.content_hash for b in same]
    wave = rng.standard_normal(160).astype(np.float32)
    audio = _Set({"w": (wave, 8000.0)}, "audio")
    (item,) = collect_stimuli(audio, "audio")
    loaded, rate = load_audio_item(item, None)
    assert rate == 8000.0
    np.testing.assert_array_equal(loaded, wave)
    other_rate = collect_stimuli([(wave, 16000.0)], "audio")[0]
    assert other_rate.content_hash != item.content_hash  # the rate is part of the content
    texts = _Set({"t1": "a cat"}, "text")
    assert load_text_item(collect_stimuli(texts, "text")[0]) == "a cat"
