"""SubjectLinear routing against a per-row loop, and the freezing helpers."""

from __future__ import annotations

import pytest
import torch

from brainalign.models import (
    SubjectLinear,
    freeze_except_adapter,
    trainable_parameters,
    unfreeze,
)


def test_rows_are_routed_to_their_subject(device):
    torch.manual_seed(0)
    adapter = SubjectLinear({"a": 7, "b": 9, "c": 8}, 5).to(device).double()
    index = torch.tensor([2, 0, 1, 1, 0, 2, 2], device=device)
    x = torch.randn(7, 9, dtype=torch.float64, device=device)
    out = adapter(x, index)
    for i, k in enumerate(index.tolist()):
        subject = adapter.subjects[k]
        layer = adapter.layer(subject)
        n = adapter.in_features[subject]
        expected = x[i, :n] @ layer.weight.T + layer.bias  # a naive per-row product
        torch.testing.assert_close(out[i], expected, rtol=1e-12, atol=1e-12)
    # extra leading axes (M/EEG: samples × times × channels) are routed by the first axis
    x3 = torch.randn(7, 4, 9, dtype=torch.float64, device=device)
    out3 = adapter(x3, index)
    for i, k in enumerate(index.tolist()):
        layer = adapter.layer(adapter.subjects[k])
        n = layer.in_features
        torch.testing.assert_close(out3[i], x3[i, :, :n] @ layer.weight.T + layer.bias)


def test_identity_init_and_new_subjects_follow_device_and_dtype(device):
    adapter = SubjectLinear({"a": 6}, 6, bias=False, init="identity").to(device).double()
    layer = adapter.add_subject("b", 6)
    assert layer.weight.dtype == torch.float64
    assert layer.weight.device.type == device
    assert layer.bias is None
    torch.testing.assert_close(layer.weight, torch.eye(6, dtype=torch.float64, device=device))
    x = torch.randn(3, 2, 6, dtype=torch.float64, device=device)
    torch.testing.assert_close(adapter(x, torch.tensor([1, 0, 1], device=device)), x)
    assert adapter.subjects == ("a", "b")
    assert "layers.sub-b.weight" in adapter.state_dict()


def test_adapter_errors():
    adapter = SubjectLinear({"a": 6}, 4)
    with pytest.raises(ValueError, match="already has an adapter"):
        adapter.add_subject("a", 6)
    with pytest.raises(ValueError, match=r"non-empty strings without '\.'"):
        adapter.add_subject("", 6)
    with pytest.raises(ValueError, match="in_features must be positive, got 0"):
        adapter.add_subject("b", 0)
    with pytest.raises(
        ValueError, match=r"needs in_features == out_features \(4\), got 6 for subject .a."
    ):
        SubjectLinear({"a": 6}, 4, init="identity")
    with pytest.raises(ValueError, match="init must be 'default' or 'identity'"):
        SubjectLinear({"a": 6}, 4, init="zeros")
    with pytest.raises(ValueError, match=r"Unknown subject 'z'; known: \['a'\]"):
        adapter.layer("z")


def test_freeze_helpers_on_a_plain_module_say_what_is_wrong():
    with pytest.raises(TypeError, match="Linear has no per-subject adapter"):
        freeze_except_adapter(torch.nn.Linear(3, 3), "a")
    module = torch.nn.Linear(3, 3)
    assert trainable_parameters(module) == list(module.parameters())
    module.weight.requires_grad_(False)
    assert trainable_parameters(module) == [module.bias]
    assert len(unfreeze(module)) == 2
    assert module.weight.requires_grad
