"""FMRIEncoder against MindEye1/MindEye2 written from their published recipes (PAPERS.md)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from brainalign.io import load_nifti_betas
from brainalign.models import FMRIEncoder, build_model


def mindeye_projector(dim: int, h: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, h),
        nn.LayerNorm(h), nn.GELU(), nn.Linear(h, h),
        nn.LayerNorm(h), nn.GELU(), nn.Linear(h, dim),
    )  # fmt: skip


class MindEye1Reference(nn.Module):
    """MindEye1: Linear → LN → GELU → Dropout(0.5); blocks x += Dropout(GELU(LN(Linear(x))))."""

    def __init__(self, n_voxels, h, n_blocks, n_tokens, dim, proj):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        self.lin0 = nn.Sequential(
            nn.Linear(n_voxels, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(0.5)
        )
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(0.15))
            for _ in range(n_blocks)
        )
        self.lin1 = nn.Linear(h, n_tokens * dim)
        self.projector = mindeye_projector(dim, proj)

    def forward(self, x):
        x = self.lin0(x)
        residual = x
        for block in self.mlp:
            x = block(x)
            x = x + residual
            residual = x
        x = self.lin1(x).reshape(len(x), self.n_tokens, self.dim)
        return x, self.projector(x)


class MindEye2Reference(nn.Module):
    """MindEye2 (seq_len 1): per-subject ridge; blocks x = LN→Linear→GELU→Dropout→Linear + x."""

    def __init__(self, n_voxels: list[int], h, n_blocks, n_tokens, dim):
        super().__init__()
        self.n_tokens, self.dim = n_tokens, dim
        self.ridge = nn.ModuleList(nn.Linear(n, h) for n in n_voxels)
        self.mixer_blocks1 = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(h),
                nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Dropout(0.15), nn.Linear(h, h)),
            )
            for _ in range(n_blocks)
        )
        self.backbone_linear = nn.Linear(h, n_tokens * dim)
        self.clip_proj = mindeye_projector(dim, dim)

    def forward(self, x, subj_idx):
        x = self.ridge[subj_idx](x)
        residual1 = x
        for block1 in self.mixer_blocks1:
            x = block1(x) + residual1
            residual1 = x
        backbone = self.backbone_linear(x).reshape(len(x), -1, self.dim)
        return backbone, self.clip_proj(backbone)


def copy_(dst: nn.Module, src: nn.Module) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def test_mindeye1_matches_reference():
    torch.manual_seed(0)
    model = build_model("mindeye1", n_voxels=11, target_shape=(3, 8), hidden=16, n_blocks=3)
    model.eval()
    assert model.config.projector_hidden == 2048
    ref = MindEye1Reference(11, 16, 3, 3, 8, 2048).eval()
    copy_(ref.lin0[0], model.adapter.layer("0"))
    copy_(ref.lin0[1], model.stem[0])
    for block, ours in zip(ref.mlp, model.blocks):
        copy_(block[0], ours.f[0])
        copy_(block[1], ours.f[1])
    copy_(ref.lin1, model.head)
    for a, b in zip(ref.projector, model.projector):
        if isinstance(a, nn.Linear | nn.LayerNorm):
            copy_(a, b)
    x = torch.randn(7, 11)
    out = model(x)
    expected = ref(x)
    torch.testing.assert_close(out.backbone, expected[0])
    torch.testing.assert_close(out.projected, expected[1])


def test_mindeye2_matches_reference_for_each_subject():
    torch.manual_seed(0)
    model = build_model("mindeye2", n_voxels={"01": 9, "02": 13}, target_shape=(4, 6), hidden=10)
    model.eval()
    ref = MindEye2Reference([9, 13], 10, 4, 4, 6).eval()
    for layer, subject in zip(ref.ridge, ["01", "02"]):
        copy_(layer, model.adapter.layer(subject))
    for block, ours in zip(ref.mixer_blocks1, model.blocks):
        copy_(block[0], ours.f[0])
        copy_(block[1][0], ours.f[1])
        copy_(block[1][3], ours.f[4])
    copy_(ref.backbone_linear, model.head)
    for a, b in zip(ref.clip_proj, model.projector):
        if isinstance(a, nn.Linear | nn.LayerNorm):
            copy_(a, b)
    for k, (subject, n) in enumerate([("01", 9), ("02", 13)]):
        x = torch.randn(5, n)
        out = model(x, subject)
        expected = ref(x, k)
        torch.testing.assert_close(out.backbone, expected[0])
        torch.testing.assert_close(out.projected, expected[1])


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_published_sizes_have_the_published_parameter_counts():
    """Full-size recipes, built on the meta device (no memory), against the analytic count."""
    ln = 2
    with torch.device("meta"):
        me1 = build_model("mindeye1", n_voxels=15724, target_shape=(257, 768))
        me2 = build_model("mindeye2", n_voxels={"01": 15724, "02": 14278}, target_shape=(256, 1664))
    proj1 = (
        ln * 768 + linear_params(768, 2048)
        + ln * 2048 + linear_params(2048, 2048)
        + ln * 2048 + linear_params(2048, 768)
    )  # fmt: skip
    expected1 = (
        linear_params(15724, 4096) + ln * 4096
        + 4 * (linear_params(4096, 4096) + ln * 4096)
        + linear_params(4096, 257 * 768) + proj1
    )  # fmt: skip
    assert sum(p.numel() for p in me1.parameters()) == expected1
    assert math.isclose(expected1 / 1e6, 947.6, abs_tol=0.1)  # MindEye1's ~940M backbone
    d = 1664
    proj2 = 3 * (ln * d + linear_params(d, d))
    expected2 = (
        linear_params(15724, 1024) + linear_params(14278, 1024)
        + 4 * (ln * 1024 + 2 * linear_params(1024, 1024))
        + linear_params(1024, 256 * d) + proj2
    )  # fmt: skip
    assert sum(p.numel() for p in me2.parameters()) == expected2


def test_defaults_are_mindeye2_and_options_are_stored():
    model = FMRIEncoder(5, target_dim=4)
    c = model.config
    assert (c.hidden, c.n_blocks, c.dropout, c.block) == (1024, 4, 0.15, "mixer")
    assert c.n_voxels == {"0": 5}
    assert c.target_shape == (4,)
    assert model(torch.randn(2, 5)).backbone.shape == (2, 4)
    model = FMRIEncoder(5, target_dim=4, n_subjects=3, hidden=8)
    assert model.subjects == ("0", "1", "2")


def test_missing_and_conflicting_arguments():
    with pytest.raises(ValueError, match=r"missing n_voxels, target_dim or target_shape") as err:
        FMRIEncoder()
    assert "from_recordings" in str(err.value)
    assert "(257, 768)" in str(err.value)
    with pytest.raises(ValueError, match=r"missing target_dim or target_shape"):
        FMRIEncoder(7)
    with pytest.raises(ValueError, match="either target_dim"):
        FMRIEncoder(7, target_dim=3, target_shape=(3,))
    with pytest.raises(ValueError, match=r"n_subjects=3 but 'n_voxels' lists 2"):
        FMRIEncoder({"a": 7, "b": 8}, target_dim=3, n_subjects=3)
    with pytest.raises(TypeError, match="'n_voxels' must be an int or a dict"):
        FMRIEncoder("7", target_dim=3)
    with pytest.raises(ValueError, match=r"positive for every subject, got \{'b': 0\}"):
        FMRIEncoder({"a": 7, "b": 0}, target_dim=3)
    with pytest.raises(ValueError, match="Allowed values are 'mixer', 'mlp', but got 'resnet'"):
        FMRIEncoder(7, target_dim=3, block="resnet")
    with pytest.raises(ValueError, match=r"'dropout' must lie in \[0, 1\), got 1.5"):
        FMRIEncoder(7, target_dim=3, dropout=1.5)
    with pytest.raises(ValueError, match=r"non-empty strings without '\.'"):
        FMRIEncoder({"sub.01": 7}, target_dim=3)
    with pytest.raises(ValueError, match=r"Unknown FMRIEncoderConfig fields \['hiden'\]"):
        FMRIEncoder.from_config({"n_voxels": {"a": 3}, "target_shape": [2], "hiden": 4})


def test_bad_inputs_and_subjects():
    model = FMRIEncoder({"01": 7, "02": 9}, target_dim=3, hidden=8).eval()
    with pytest.raises(ValueError, match=r"shape \(n_samples, n_voxels\), got \(7,\)"):
        model(torch.randn(7), "01")
    with pytest.raises(ValueError, match="'subject' is missing: the model has 2 subjects"):
        model(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"Unknown subject 'O1'.*Did you mean '01'"):
        model(torch.randn(2, 7), "O1")
    with pytest.raises(ValueError, match="gives 3 subjects but the batch has 2 rows"):
        model(torch.randn(2, 9), ["01", "02", "01"])
    with pytest.raises(TypeError, match="must hold integers"):
        model(torch.randn(2, 7), torch.zeros(2))
    with pytest.raises(ValueError, match=r"Subject indices must lie in \[0, 2\)"):
        model(torch.randn(2, 9), torch.tensor([0, 2]))
    with pytest.raises(
        ValueError, match=r"has 9 features .* subjects have \{'01': 7\}; it must have 7"
    ):
        model(torch.randn(2, 9), "01")
    with pytest.raises(ValueError, match="already has an adapter"):
        model.add_subject("01", 4)


def write_betas(path, rng, mask_shape, n_voxels, n_trials=6):
    mask = np.zeros(mask_shape, bool)
    mask.flat[rng.choice(mask.size, n_voxels, replace=False)] = True
    data = rng.normal(size=(*mask_shape, n_trials)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path / "betas.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), path / "mask.nii.gz")
    return path / "betas.nii.gz", path / "mask.nii.gz"


def test_from_recordings_reads_voxels_per_subject(tmp_path, rng):
    recs = []
    for subject, n in [("01", 7), ("02", 9)]:
        folder = tmp_path / subject
        folder.mkdir()
        betas, mask = write_betas(folder, rng, (3, 4, 5), n)
        recs.append(load_nifti_betas(betas, None, mask, subject=subject))
    model = FMRIEncoder.from_recordings(recs, target_dim=4, hidden=8)
    assert model.config.n_voxels == {"01": 7, "02": 9}
    same = build_model("mindeye2", recordings=[*recs, recs[0]], target_dim=4, hidden=8)
    assert same.config.n_voxels == {"01": 7, "02": 9}
    out = model(torch.as_tensor(recs[1].data), "02")
    assert out.backbone.shape == (6, 4)
    with pytest.raises(ValueError, match="Subject '01' has recordings with 7 and 5 features"):
        FMRIEncoder.from_recordings([recs[0], recs[0].select(features=np.arange(5))], target_dim=4)
    with pytest.raises(ValueError, match="'recordings' is empty"):
        FMRIEncoder.from_recordings([], target_dim=4)
    with pytest.raises(TypeError, match="must hold Recording objects"):
        FMRIEncoder.from_recordings([np.zeros((2, 3))], target_dim=4)
