"""Forward hooks: recorded activations equal the sub-modules' own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign.targets.extract import compute_features
from brainalign.targets.layers import LayerRecorder, check_layers, list_layers, record_layers
from brainalign.targets.pretrained import VisionExtractor, load_vision_model


def _inputs_of(model, name, x):
    """The input a sub-module receives, captured with a pre-hook (independent of our hooks)."""
    seen = {}
    module = dict(model.named_modules())[name]
    handle = module.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return module, seen["x"]


def test_hooks_equal_calling_the_submodule(counting_net, rng, device):
    net = counting_net.to(device)
    x = torch.from_numpy(rng.standard_normal((7, 3, 9, 8)).astype(np.float32)).to(device)
    with torch.inference_mode():
        acts = record_layers(net, x, ["conv1", "act", "conv2"], stop_early=False)
        for name in ("conv1", "act", "conv2"):
            module, inp = _inputs_of(net, name, x)
            torch.testing.assert_close(acts[name], module(inp), rtol=0, atol=0)
    assert acts["conv2"].shape == (7, 9, 4, 3)


def test_timm_layers_equal_direct_calls(rng):
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=7).eval()
    x = torch.from_numpy(rng.standard_normal((2, 3, 40, 48)).astype(np.float32))
    with torch.inference_mode():
        acts = record_layers(net, x, ["layer2.1", "layer3"])
        module, inp = _inputs_of(net, "layer3", x)
        torch.testing.assert_close(acts["layer3"], module(inp), rtol=0, atol=0)
        feats = net.forward_features(x)
        assert acts["layer3"].shape == (2, 256, 3, 3)
        assert feats.shape == (2, 512, 2, 2)


def test_stop_early_skips_later_layers(counting_net, rng):
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    calls = []
    counting_net.head.register_forward_hook(lambda *a: calls.append(1))
    record_layers(counting_net, x, "conv1", stop_early=True)
    assert calls == []
    record_layers(counting_net, x, "conv1", stop_early=False)
    assert calls == [1]


def test_tuple_outputs_and_unused_layers(rng):
    from torch import nn

    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, x + 1

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair = Pair()
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.pair(x)[1]

    x = torch.ones(3, 2)
    torch.testing.assert_close(record_layers(Net(), x, "pair")["pair"], x * 2)
    with pytest.raises(RuntimeError, match=r"were not called"):
        record_layers(Net(), x, "unused")


def test_unknown_layer_lists_and_suggests(counting_net):
    assert list_layers(counting_net) == ["conv1", "act", "conv2", "head"]
    with pytest.raises(
        ValueError, match=r"'conv3' does not exist in Net. Did you mean 'conv2' or 'conv1'"
    ):
        check_layers(counting_net, ["conv3"])
    with pytest.raises(ValueError, match=r"Available layers: conv1, act, conv2, head"):
        check_layers(counting_net, "nope")
    with pytest.raises(ValueError, match=r"twice"):
        check_layers(counting_net, ["act", "act"])
    with LayerRecorder(counting_net, ["act"]):
        assert len(counting_net.act._forward_hooks) == 1
    assert len(counting_net.act._forward_hooks) == 0  # hooks removed on exit


def test_list_layers_by_name():
    names = list_layers("efficientnet_lite0")
    assert names[:2] == ["conv_stem", "bn1"]
    assert "blocks.6.0" in names
    assert "classifier" in names
    leaves = list_layers("efficientnet_lite0", leaves_only=True)
    assert "blocks" not in leaves
    assert "conv_stem" in leaves


def test_pooled_layer_features_through_the_engine(counting_net, small_images, preprocess_16):
    vm = load_vision_model(counting_net, transform=preprocess_16)
    feats = compute_features(
        VisionExtractor(vm),
        small_images,
        ["conv2"],
        pooling="none",
        cache=False,
        device="cpu",
        verbose=False,
    )["conv2"]
    x = torch.stack(
        [preprocess_16(__import__("PIL.Image").Image.fromarray(i)) for i in small_images]
    )
    with torch.inference_mode():
        ref = counting_net.conv2(counting_net.act(counting_net.conv1(x))).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-6)
    assert feats.shape == (9, 9, 7, 7)
