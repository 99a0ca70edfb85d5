"""One contract, every registered model (braindecode-style; no skip list).

Shapes, gradients reaching every parameter, save/load, batch-of-one, mixed-subject routing,
float64, a new subject trained alone, config round trip, and the missing-argument message.
The only parameters allowed to miss a gradient are the adapters of subjects absent from the
batch (documented in SubjectLinear); every batch here holds every subject.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tests.models.models_testing import SIZES, make_batch, positions_3d, target_shape, tiny_model

from brainalign.models import (
    MODELS,
    BrainEncoder,
    EncoderOutput,
    build_model,
    freeze_except_adapter,
    load_pretrained,
    trainable_parameters,
    unfreeze,
)

SUBJECTS = ["02", "01", "02", "01", "01"]  # mixed, not sorted


def run(model, x, subjects, device):
    return model(x.to(device), subjects)


def test_output_shapes_and_types(name, device):
    model = tiny_model(name, device).train()
    x, _ = make_batch(name, SUBJECTS)
    out = run(model, x, SUBJECTS, device)
    assert isinstance(out, EncoderOutput)
    for t in out:
        assert t.shape == (len(SUBJECTS), *target_shape(name))
        assert t.dtype == torch.float32
        assert t.device.type == device
        assert torch.isfinite(t).all()  # the NaN padding was never read


def test_backward_reaches_every_parameter(name, device):
    model = tiny_model(name, device).train()
    x, _ = make_batch(name, SUBJECTS)
    out = run(model, x, SUBJECTS, device)
    (out.backbone.square().mean() + out.projected.square().mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


def test_save_load_round_trip(name, device, tmp_path):
    model = tiny_model(name, device).eval()
    x, _ = make_batch(name, SUBJECTS)
    expected = run(model, x, SUBJECTS, device)
    for fmt in ("safetensors", "pt"):
        model.save_pretrained(tmp_path / fmt, format=fmt)
        for loaded in (
            load_pretrained(tmp_path / fmt, map_location=device),
            type(model).from_pretrained(tmp_path / fmt, map_location=device),
        ):
            assert type(loaded) is type(model)
            assert not loaded.training
            assert loaded.config == model.config
            got = run(loaded, x, SUBJECTS, device)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_batch_of_one_equals_batch(name, device):
    model = tiny_model(name, device).eval()
    x, _ = make_batch(name, SUBJECTS)
    batched = run(model, x, SUBJECTS, device)
    for i, subject in enumerate(SUBJECTS):
        width = SIZES[subject]
        single = run(model, x[i : i + 1, :width], [subject], device)
        for a, b in zip(single, batched):
            torch.testing.assert_close(a[0], b[i], rtol=1e-5, atol=1e-6)


def test_mixed_subjects_equal_per_subject_calls(name, device):
    model = tiny_model(name, device).eval()
    x, rows = make_batch(name, SUBJECTS)
    batched = run(model, x, SUBJECTS, device)
    for subject in SIZES:
        idx = [i for i, s in enumerate(SUBJECTS) if s == subject]
        alone = run(model, torch.stack([rows[i] for i in idx]), subject, device)
        for a, b in zip(alone, batched):
            torch.testing.assert_close(a, b[idx], rtol=1e-5, atol=1e-6)
    # integer indices route like ids
    index = torch.tensor([model.subjects.index(s) for s in SUBJECTS])
    torch.testing.assert_close(run(model, x, index, device), batched, rtol=0, atol=0)


def test_float64(name, device):
    model = tiny_model(name, device).eval()
    x, _ = make_batch(name, SUBJECTS)
    out32 = run(model, x, SUBJECTS, device)
    model = model.double()
    out64 = run(model, x.double(), SUBJECTS, device)
    for a, b in zip(out64, out32):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a.float(), b, rtol=1e-4, atol=1e-5)
    model.train()
    run(model, x.double(), SUBJECTS, device).projected.sum().backward()
    assert all(p.grad.dtype == torch.float64 for p in model.parameters())


def test_new_subject_trains_only_its_adapter(name, device):
    model = tiny_model(name, device).train()
    family = MODELS[name].family
    if family == "fmri":
        layer = model.add_subject("03", 8)
        x = torch.randn(4, 8)
    else:
        layer = model.add_subject("03", positions_3d(8, seed=5))
        x = torch.randn(4, 8, model.config.n_times)
        assert len(model.config.sensor_positions["03"]) == 8  # in the config, so it is saved
    assert model.subjects == ("01", "02", "03")
    assert next(layer.parameters()).device.type == device
    params = freeze_except_adapter(model, "03")
    assert {id(p) for p in params} == {id(p) for p in layer.parameters()}
    assert trainable_parameters(model, only_subject="03") == list(layer.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-2, weight_decay=0.1)
    model(x.to(device), "03").projected.square().mean().backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    adapter_keys = {k for k in after if k.startswith("adapter.layers.sub-03.")}
    running = {k for k in after if "running_" in k or "num_batches" in k}
    assert adapter_keys
    assert adapter_keys <= changed
    assert changed - adapter_keys <= running  # BatchNorm statistics move in train mode
    assert len(unfreeze(model)) == len(list(model.parameters()))
    assert all(p.requires_grad for p in model.parameters())
    # the added subject survives a config round trip
    rebuilt = type(model).from_config(model.to_config().to_dict())
    assert rebuilt.subjects == model.subjects
    assert rebuilt.config == model.config


def test_config_round_trip(name):
    model = tiny_model(name)
    config = model.to_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, dataclasses.fields(config)[0].name, None)
    for source in (config, config.to_dict()):
        rebuilt = type(model).from_config(source)
        assert rebuilt.config == config
        shapes = {k: v.shape for k, v in rebuilt.state_dict().items()}
        assert shapes == {k: v.shape for k, v in model.state_dict().items()}


def test_missing_arguments_are_listed(name):
    spec = MODELS[name]
    expected = "n_voxels" if spec.family == "fmri" else "n_channels, n_times, sfreq, target_dim"
    with pytest.raises(ValueError, match=rf"cannot be built; missing {expected}") as info:
        build_model(name)
    assert "from_recordings" in str(info.value)
    assert issubclass(spec.cls, BrainEncoder)
