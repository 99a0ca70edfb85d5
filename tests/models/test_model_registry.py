"""The registry, and what save_pretrained / from_pretrained do with damaged or foreign folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tests.models.models_testing import tiny_model

from brainalign._utils.errors import ChecksumError, CorruptFileError
from brainalign.models import (
    MODELS,
    BrainEncoder,
    FMRIEncoder,
    LinearEncoder,
    MEEGEncoder,
    build_model,
    load_pretrained,
)


def test_registry_names_classes_and_families():
    assert set(MODELS) == {"mindeye1", "mindeye2", "brainmagick", "linear"}
    assert MODELS["mindeye1"].cls is FMRIEncoder
    assert MODELS["mindeye1"].family == "fmri"
    assert MODELS["brainmagick"].cls is MEEGEncoder
    assert MODELS["brainmagick"].family == "meeg"
    assert MODELS["linear"].cls is LinearEncoder
    me1 = build_model("mindeye1", n_voxels=5, target_dim=4, hidden=8)
    assert (me1.config.block, me1.config.input_dropout, me1.config.projector_hidden) == (
        "mlp",
        0.5,
        2048,
    )
    with pytest.raises(TypeError):
        MODELS["linear"].defaults["x"] = 1  # read-only


def test_registry_errors():
    with pytest.raises(ValueError, match=r"Invalid value for the 'name' parameter.*mindeye3.*Did"):
        build_model("mindeye3")
    with pytest.raises(TypeError, match=r"FMRIEncoder has no parameter 'hiden'\. Did you mean"):
        build_model("mindeye2", n_voxels=5, target_dim=3, hiden=8)
    with pytest.raises(TypeError, match="MEEGEncoder has no parameter 'n_head'"):
        build_model("brainmagick", n_head=3)


def test_save_writes_config_and_checksum(tmp_path):
    model = tiny_model("mindeye2").double()
    model.save_pretrained(tmp_path, format="pt")
    assert (tmp_path / "model.pt").is_file()
    model.save_pretrained(tmp_path)  # switching format removes the other weights file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_class"] == "FMRIEncoder"
    assert meta["dtype"] == "float64"
    assert meta["config"] == model.config.to_dict()
    loaded = load_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float64
    with pytest.raises(ValueError, match="Invalid value for the 'format' parameter"):
        model.save_pretrained(tmp_path, format="onnx")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No config\.json in"):
        load_pretrained(tmp_path)
    model = tiny_model("linear")
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a LinearEncoder, not a MEEGEncoder"):
        MEEGEncoder.from_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-8])
    with pytest.raises(ChecksumError, match="does not match the SHA-256"):
        load_pretrained(tmp_path)
    with pytest.raises(CorruptFileError, match="Cannot read the weights"):
        load_pretrained(tmp_path, check_sha256=False)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["target_shape"] = [9, 9]
    weights.write_bytes(data)
    meta["sha256"] = None
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="do not fit the architecture"):
        BrainEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="is not a brainalign model config"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**meta, "weights": "gone.pt"}))
    with pytest.raises(FileNotFoundError, match=r"gone\.pt"):
        load_pretrained(tmp_path)


def test_importing_models_is_cheap():
    code = "import sys, brainalign.models as m; m.__all__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
