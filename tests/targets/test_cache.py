"""The feature cache: keys, hits, misses, invalidation, corruption, interrupted writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainalign._utils.errors import BrainAlignWarning
from brainalign.targets.cache import FeatureCache, default_cache_dir, make_cache_key
from brainalign.targets.extract import compute_features
from brainalign.targets.pretrained import VisionExtractor, load_vision_model

KEY = "ab" * 32


def _extract(net, images, cache_dir, preprocess, layers=("conv2",), **kw):
    vm = load_vision_model(net, transform=preprocess)
    return compute_features(
        VisionExtractor(vm),
        images,
        list(layers),
        cache_dir=Path(cache_dir) / "cache",
        device="cpu",
        batch_size=4,
        verbose=False,
        **kw,
    )


def test_key_is_stable_and_order_free():
    a = make_cache_key({"model": "m", "layer": "x", "pooling": {"method": "avg", "g": 2}})
    b = make_cache_key({"pooling": {"g": 2, "method": "avg"}, "layer": "x", "model": "m"})
    c = make_cache_key({"model": "m", "layer": "y", "pooling": {"method": "avg", "g": 2}})
    assert a == b != c
    assert len(a) == 64


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "features"
    monkeypatch.delenv("BRAINALIGN_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "brainalign" / "features"


def test_writer_round_trip_with_header(tmp_path, rng):
    cache = FeatureCache(tmp_path)
    data = rng.standard_normal((7, 8, 9)).astype(np.float32)
    with cache.writer(KEY, data.shape, "float32", {"layer": "x"}) as w:
        w.append(data[:3])
        w.append(data[3:])
    loaded = cache.load(KEY)
    np.testing.assert_array_equal(loaded, data)
    assert isinstance(loaded, np.memmap)
    assert not loaded.flags.writeable
    header = json.loads(cache.path(KEY).with_suffix(".json").read_text())
    assert header["shape"] == [7, 8, 9]
    assert header["dtype"] == "<f4"
    assert header["spec"] == {"layer": "x"}
    from brainalign._utils.atomic import file_sha256

    assert header["sha256"] == file_sha256(cache.path(KEY))  # hashed while writing, correct


def test_writer_refuses_wrong_rows(tmp_path):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=r"per-stimulus shape"), cache.writer(KEY, (4, 3)) as w:
        w.append(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"received 2 of 4 rows"), cache.writer(KEY, (4, 3)) as w:
        w.append(np.zeros((2, 3)))
    assert not list(tmp_path.rglob("*.npy"))
    assert not list(tmp_path.rglob("*.tmp"))
    assert cache.load(KEY) is None


def test_second_run_hits_without_calling_the_model(
    tmp_path, counting_net, small_images, preprocess_16
):
    first = _extract(counting_net, small_images, tmp_path, preprocess_16)
    n_calls = counting_net.n_forward
    assert n_calls == 3  # 9 images in batches of 4
    second = _extract(counting_net, small_images, tmp_path, preprocess_16)
    assert counting_net.n_forward == n_calls
    assert second.from_cache == {"conv2": True}
    assert first.from_cache == {"conv2": False}
    np.testing.assert_array_equal(first["conv2"], second["conv2"])
    # the same images given as files with other names still hit: the key is the content
    # (written as PNG, the pixels are the same but the bytes differ from arrays -> miss);
    # as files twice under different names -> the second run hits.
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for i, img in enumerate(small_images):
            Image.fromarray(img).save(tmp_path / folder / f"{folder}{i}.png")
    _extract(counting_net, str(tmp_path / "a"), tmp_path, preprocess_16)
    n_calls = counting_net.n_forward
    renamed = _extract(counting_net, str(tmp_path / "b"), tmp_path, preprocess_16)
    assert counting_net.n_forward == n_calls
    assert renamed.from_cache["conv2"]
    assert renamed.stimulus_ids[0] == "b0.png"


def test_miss_on_changed_layer_preprocessing_bytes_pooling_weights(
    tmp_path, counting_net, make_net, small_images, preprocess_16, preprocess_12
):
    _extract(counting_net, small_images, tmp_path, preprocess_16)
    calls = counting_net.n_forward

    def recomputed(**kw) -> bool:
        nonlocal calls
        net = kw.pop("net", counting_net)
        before = net.n_forward
        _extract(
            net, kw.pop("images", small_images), tmp_path, kw.pop("preprocess", preprocess_16), **kw
        )
        return net.n_forward > before

    assert recomputed(layers=("conv1",))
    assert recomputed(preprocess=preprocess_12)
    changed = [img.copy() for img in small_images]
    changed[4][0, 0, 0] ^= 1  # one bit of one pixel
    assert recomputed(images=changed)
    assert recomputed(images=small_images[::-1])  # order matters
    assert recomputed(pooling="grid")
    assert recomputed(dtype="float16")
    assert recomputed(net=make_net(seed=1))  # other weights, same architecture
    assert not recomputed()  # and the original is still cached


def test_corrupt_entry_is_detected_rebuilt_and_warned(
    tmp_path, counting_net, small_images, preprocess_16
):
    good = _extract(counting_net, small_images, tmp_path, preprocess_16)
    path = good.cache_paths["conv2"]
    expected = np.array(good["conv2"])
    del good
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # flip a byte in the data, size unchanged
    path.write_bytes(bytes(raw))
    calls = counting_net.n_forward
    with pytest.warns(BrainAlignWarning, match=r"sha256 differs"):
        again = _extract(counting_net, small_images, tmp_path, preprocess_16)
    assert counting_net.n_forward > calls
    np.testing.assert_array_equal(again["conv2"], expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FeatureCache(tmp_path / "cache").load(path.stem) is not None  # rebuilt, valid


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "bytes, its header says"),
        ("header_garbage", "header .* is damaged"),
        ("no_header", "header is missing"),
        ("no_array", "array file is missing"),
    ],
)
def test_damaged_entries_are_never_used(tmp_path, rng, damage, message):
    cache = FeatureCache(tmp_path)
    with cache.writer(KEY, (7, 8)) as w:
        w.append(rng.standard_normal((7, 8)))
    npy = cache.path(KEY)
    header = npy.with_suffix(".json")
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-16])
    elif damage == "header_garbage":
        header.write_text("{not json")
    elif damage == "no_header":
        header.unlink()
    else:
        npy.unlink()
    with pytest.warns(BrainAlignWarning, match=message):
        assert cache.load(KEY) is None
    assert not npy.exists()
    assert not header.exists()


def test_shape_mismatch_with_header_detected_without_verify(tmp_path):
    cache = FeatureCache(tmp_path, verify=False)
    with cache.writer(KEY, (6, 4)) as w:
        w.append(np.ones((6, 4)))
    npy = cache.path(KEY)
    np.save(npy, np.ones((4, 6), dtype=np.float32))  # same size, other shape
    with pytest.warns(BrainAlignWarning, match=r"differ from the header"):
        assert cache.load(KEY) is None


_KILLED_WRITER = """
import sys, time
import numpy as np
from brainalign.targets.cache import FeatureCache
cache = FeatureCache(sys.argv[1])
with cache.writer(sys.argv[2], (1000, 64)) as w:
    w.append(np.ones((10, 64)))
    open(sys.argv[3], "w").close()
    time.sleep(60)
"""


def test_killed_write_leaves_no_valid_looking_entry(tmp_path):
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path / "cache"), KEY, str(marker)]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the writer process died early"
            assert time.monotonic() < deadline, "the writer never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    files = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files
    assert all(name.endswith(".tmp") for name in files)
    cache = FeatureCache(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(KEY) is None
    with cache.writer(KEY, (3, 2)) as w:  # the next write succeeds
        w.append(np.zeros((3, 2)))
    assert cache.load(KEY).shape == (3, 2)


def test_cache_off_writes_nothing(tmp_path, counting_net, small_images, preprocess_16):
    out = _extract(counting_net, small_images, tmp_path, preprocess_16, cache=False)
    assert out.cache_paths == {"conv2": None}
    assert not list(tmp_path.rglob("*"))
    assert out["conv2"].shape == (9, 9)
