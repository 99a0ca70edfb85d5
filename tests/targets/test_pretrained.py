"""Vision models: the packaged EfficientNet-Lite0, weights checks, preprocessing, names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign._utils.errors import CorruptFileError
from brainalign.targets.extract import extract_features
from brainalign.targets.pretrained import (
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
    load_vision_model,
    read_state_dict,
)


@pytest.fixture(scope="module")
def lite0():
    return load_vision_model("efficientnet_lite0")


def test_packaged_weights_load_with_every_key_matched(lite0):
    file_state = torch.load(
        efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True
    )
    model_state = lite0.module.state_dict()
    assert len(file_state) == len(model_state) == 296
    for (fk, fv), (mk, mv) in zip(file_state.items(), model_state.items()):
        assert fv.shape == mv.shape, (fk, mk)
        torch.testing.assert_close(mv, fv, rtol=0, atol=0)
    # the pairing is right where the names say so
    assert next(iter(file_state)) == "_conv_stem.weight"
    assert next(iter(model_state)) == "conv_stem.weight"
    assert list(file_state)[-2:] == ["_fc.weight", "_fc.bias"]
    assert list(model_state)[-2:] == ["classifier.weight", "classifier.bias"]
    assert lite0.name == "efficientnet_lite0"
    assert len(lite0.weights_sha256) == 64


def test_preprocessing_is_the_tensorflow_lite_pipeline(lite0):
    normalize = lite0.transform.transforms[-1]
    np.testing.assert_allclose(normalize.mean.tolist(), EFFICIENTNET_LITE0_MEAN, rtol=1e-6)
    np.testing.assert_allclose(normalize.std.tolist(), EFFICIENTNET_LITE0_STD, rtol=1e-6)
    from PIL import Image

    out = lite0.transform(Image.new("RGB", (300, 200), (127, 0, 255)))
    assert out.shape == (3, 224, 224)
    np.testing.assert_allclose(out[:, 100, 100], [0.0, -127 / 128, 1.0], atol=1e-6)


def test_classifies_real_images(natural_images, tmp_path):
    """chelsea → a cat (ImageNet 281–285), coffee → espresso (967) / cup (968)."""
    feats = extract_features(
        "efficientnet_lite0",
        ["classifier"],
        natural_images[:2],
        cache_dir=tmp_path,
        device="cpu",
        verbose=False,
    )
    logits = feats["classifier"]
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert set(top5[0]) & set(range(281, 286))
    assert set(top5[1]) & {967, 968}
    top1 = logits.argmax(1)
    assert 281 <= top1[0] <= 285  # tiger cat
    assert top1[1] == 967  # espresso


def test_state_dict_errors_name_the_keys(tmp_path):
    import timm

    r18 = timm.create_model("resnet18", pretrained=False, num_classes=10)
    torch.save(r18.state_dict(), tmp_path / "r18_10.pth")
    with pytest.raises(
        ValueError,
        match=r"shape-mismatched keys: fc.weight \(file \(10, 512\), "
        r"model \(1000, 512\)\)",
    ):
        load_vision_model("resnet18", tmp_path / "r18_10.pth")
    with pytest.raises(ValueError, match=r"missing keys: layer1.2.conv1.weight"):
        load_vision_model("resnet34", tmp_path / "r18_10.pth")
    r34 = timm.create_model("resnet34", pretrained=False)
    torch.save({"state_dict": r34.state_dict()}, tmp_path / "r34.pt")
    with pytest.raises(ValueError, match=r"unexpected keys: layer1.2.conv1.weight"):
        load_vision_model("resnet18", tmp_path / "r34.pt")
    # by position (the packaged layout): counts and every pair's shape are checked
    with pytest.raises(ValueError, match=r"hold 122 tensors but EfficientNet has 296"):
        load_efficientnet_lite0(tmp_path / "r18_10.pth")
    state = read_state_dict(efficientnet_lite0_weights_path())
    state["_fc.weight"] = state["_fc.weight"][:999]
    torch.save(state, tmp_path / "lite0_bad.pth")
    with pytest.raises(
        ValueError,
        match=r"classifier.weight \(1000, 1280\) <- _fc.weight "
        r"\(999, 1280\)",
    ):
        load_efficientnet_lite0(tmp_path / "lite0_bad.pth")


def test_missing_and_corrupt_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.pth"):
        load_vision_model("resnet18", tmp_path / "nope.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CorruptFileError, match=r"garbage.pth"):
        load_vision_model("resnet18", tmp_path / "garbage.pth")
    raw = efficientnet_lite0_weights_path().read_bytes()
    (tmp_path / "truncated.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match=r"truncated.pth"):
        load_efficientnet_lite0(tmp_path / "truncated.pth")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CorruptFileError, match=r"not a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_names_weights_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match=r"Did you mean 'efficientnet_lite0'"):
        load_vision_model("efficientnet_lite00")
    with pytest.raises(ValueError, match=r"Pass a weights file .* 'hub' .* 'random'"):
        load_vision_model("resnet18")
    rand = load_vision_model("resnet18", "random", seed=3)
    assert load_vision_model("resnet18", "random", seed=3).weights_sha256 == rand.weights_sha256
    assert load_vision_model("resnet18", "random", seed=4).weights_sha256 != rand.weights_sha256
    torch.save(rand.module.state_dict(), tmp_path / "r18.pth")
    loaded = load_vision_model("timm:resnet18", tmp_path / "r18.pth")
    assert loaded.weights_sha256 == rand.weights_sha256
    assert loaded.name == "timm:resnet18"
    assert loaded.transform.transforms[-1].mean.tolist() == pytest.approx([0.485, 0.456, 0.406])
    tv = load_vision_model("torchvision:squeezenet1_0", "random")
    assert tv.name == "torchvision:squeezenet1_0"
    assert "Resize(size=256" in repr(tv.transform)
    with pytest.raises(TypeError, match=r"must be a name or a torch.nn.Module"):
        load_vision_model(3)
