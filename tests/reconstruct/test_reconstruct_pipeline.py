"""reconstruct_from_decoding: a run's jointly trained prior, the low-level start, diffusers.

One tiny simulated dataset (60 images of 64 px, 2 subjects, 12 test images) is decoded twice:
once as usual and once with a diffusion prior trained jointly with the encoder
(``train.prior_weight > 0``). ``decode_simulated_fmri`` does not build the prior network itself
(the training layer cannot import the reconstruction one), so the run with a prior goes through
``fit`` with the prior that ``build_joint_prior`` makes from the run's own config.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainalign.data.simulate.fmri import FMRISimulationConfig
from brainalign.pipelines.decode import DecodeConfig, decode_simulated_fmri
from brainalign.pipelines.reconstruct import (
    SAMPLE_DEFAULTS,
    _backbone_outputs,
    _prepared,
    _resize,
    _target_unscaler,
    reconstruct_from_decoding,
    reconstruct_run,
)
from brainalign.pipelines.simulate_fmri import simulate_fmri_dataset
from brainalign.reconstruct import (
    EmbeddingDecoder,
    build_joint_prior,
    load_image_decoder,
    load_joint_prior,
    random_kandinsky_pipeline,
    sample,
)

N_TEST = 12
CONFIG = {
    "val_fraction": 0.15,
    "ridge_alphas": [10.0, 100.0, 1000.0],
    "n_draws": 3,
    "n_bootstrap": 20,
    "train": {
        "model": "mindeye2",
        "model_kwargs": {"hidden": 48, "n_blocks": 1, "dropout": 0.1, "projector_hidden": 32},
        "lr": 3e-3,
        "epochs": 6,
        "batch_size": 32,
        "restore_best": True,
        "device": "cpu",
    },
}
PRIOR = {"prior_weight": 1.0, "prior_kwargs": {"width": 32, "depth": 1, "n_heads": 4}}
# small and fast: 16 px reconstructions, 3 epochs of the stand-in decoder
FAST = {"image_size": 16, "epochs": 3, "n_bootstrap": 20, "device": "cpu", "verbose": False}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("BRAINALIGN_CACHE", str(tmp_path_factory.mktemp("cache")))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sim") / "ds"
    yield simulate_fmri_dataset(
        out, n_stimuli=60, n_subjects=2, n_test=N_TEST, snr=2.0, resolution_mm=8, image_size=64,
        seed=3, config=FMRISimulationConfig(train_overlap=1.0), verbose=False,
    )  # fmt: skip
    torch.set_num_threads(before)
    mp.undo()


def _decode(dataset, folder, **train):
    config = DecodeConfig.from_dict({**CONFIG, "train": {**CONFIG["train"], **train}})
    return decode_simulated_fmri(dataset, config=config, out_dir=folder, verbose=False)


@pytest.fixture(scope="module")
def plain_run(dataset, tmp_path_factory):
    return _decode(dataset, tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def prior_run(dataset, tmp_path_factory):
    import brainalign.train.loop as loop

    real_fit = loop.fit

    def fit_with_prior(model, train, val=None, config=None, **kwargs):
        if config.prior_weight > 0:
            kwargs.setdefault("prior", build_joint_prior(config, train.target_shape))
        return real_fit(model, train, val, config, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "fit", fit_with_prior)
        return _decode(dataset, tmp_path_factory.mktemp("prior"), **PRIOR)


def test_the_joint_prior_of_a_run_is_used(prior_run, dataset, tmp_path):
    assert "train_prior_loss" in prior_run.history[-1]
    recon = reconstruct_from_decoding(prior_run, dataset, out_dir=tmp_path, **FAST)
    assert "prior trained jointly" in recon.method
    assert set(recon.images) == {"01", "02", "ceiling"}
    assert (recon.metrics["method"] == recon.method).sum() == 2 * 3  # 2 subjects x 3 metrics
    # the same images, step by step: backbone -> joint prior (DDIM, seed 0) -> stand-in
    prior = load_joint_prior(prior_run.checkpoint)
    backbone = _backbone_outputs(prior_run.model, _prepared(prior_run, dataset))
    standin = load_image_decoder(next(tmp_path.glob("image_decoder-*")))
    for sub in ("01", "02"):
        emb = sample(prior, backbone[sub], seed=0, **SAMPLE_DEFAULTS).numpy()
        np.testing.assert_allclose(recon.images[sub], standin.decode(emb), atol=1e-6)
    # without the prior, the decoded (projected) embeddings are drawn directly
    direct = reconstruct_from_decoding(prior_run, dataset, prior=None, out_dir=tmp_path, **FAST)
    assert "drawn directly" in direct.method
    np.testing.assert_allclose(
        direct.images["01"], standin.decode(prior_run.embeddings["contrastive"]["01"]), atol=1e-6
    )
    np.testing.assert_array_equal(direct.images["ceiling"], recon.images["ceiling"])
    # the ridge embeddings have no joint prior
    ridge = reconstruct_from_decoding(prior_run, dataset, model="ridge", out_dir=tmp_path, **FAST)
    assert "ridge embeddings drawn directly" in ridge.method


def test_reconstruct_run_reads_the_prior_from_the_checkpoint(prior_run, tmp_path):
    recon = reconstruct_run(prior_run.out_dir, out_dir=tmp_path, epochs=2, verbose=False)
    assert "prior trained jointly" in recon.method
    assert (tmp_path / "reconstructions.png").is_file()


def test_a_run_without_a_prior_draws_directly(plain_run, dataset, tmp_path):
    auto = reconstruct_from_decoding(plain_run, dataset, out_dir=tmp_path, **FAST)
    assert auto.method == "contrastive embeddings drawn directly"
    assert auto.low_level_images == {}
    # an explicit (here untrained) prior is conditioned on the encoder's backbone
    prior = build_joint_prior(plain_run.config.train.replace(**PRIOR), (1280,))
    given = reconstruct_from_decoding(
        plain_run, dataset, prior=prior, sample_kwargs={"num_inference_steps": 3},
        out_dir=tmp_path, **FAST,
    )  # fmt: skip
    assert "through the given prior (DDIM, 3 steps" in given.method
    assert not np.allclose(given.images["01"], auto.images["01"])


def test_low_level_start_of_the_standin_is_the_documented_blend(plain_run, dataset, tmp_path):
    base = reconstruct_from_decoding(plain_run, dataset, out_dir=tmp_path, **FAST)
    low = reconstruct_from_decoding(
        plain_run, dataset, low_level=True, strength=0.6, low_level_resolution=8,
        out_dir=tmp_path, **FAST,
    )  # fmt: skip
    assert "pixel blend" in low.method
    assert "strength=0.6" in low.method
    for sub in ("01", "02"):
        blurry = low.low_level_images[sub]
        assert blurry.shape == (N_TEST, 8, 8, 3)
        expected = 0.4 * _resize(blurry, 16) + 0.6 * base.images[sub]
        np.testing.assert_allclose(low.images[sub], expected, atol=1e-6)
    # the ceiling is the decoder's drawing of the true embedding alone
    np.testing.assert_array_equal(low.images["ceiling"], base.images["ceiling"])
    # the same starts given back (no refit), another strength; 1: the start is ignored
    again = reconstruct_from_decoding(
        plain_run, dataset, low_level=low.low_level_images, strength=0.3, out_dir=tmp_path,
        **FAST,
    )  # fmt: skip
    expected = 0.7 * _resize(low.low_level_images["02"], 16) + 0.3 * base.images["02"]
    np.testing.assert_allclose(again.images["02"], expected, atol=1e-6)
    assert "strength=0.3" in again.method
    full = reconstruct_from_decoding(
        plain_run, dataset, low_level=low.low_level_images, strength=1.0, out_dir=tmp_path,
        **FAST,
    )  # fmt: skip
    np.testing.assert_allclose(full.images["01"], base.images["01"], atol=1e-6)
    # the blurry starts resemble the seen images more than chance (PixCorr > 0)
    seen = _resize(low.seen, 8)
    corr = np.corrcoef(low.low_level_images["01"].ravel(), seen.ravel())[0, 1]
    assert corr > 0.2


def test_low_level_img2img_with_a_tiny_kandinsky_pipeline(plain_run, dataset, tmp_path):
    """The init-image path end to end on a real diffusers pipeline (random weights: noise)."""
    dim = plain_run.targets.shape[1]
    decoder = EmbeddingDecoder(random_kandinsky_pipeline(dim))
    kw = dict(decoder=decoder, decoder_kwargs={"num_inference_steps": 4, "height": 32,
              "width": 32}, low_level_resolution=8, n_bootstrap=10, image_size=16,
              device="cpu", verbose=False)  # fmt: skip
    low = reconstruct_from_decoding(plain_run, dataset, low_level=True, strength=0.5, **kw)
    assert "img2img from the blurry image, strength=0.5" in low.method
    assert low.decoder_label == "diffusers decoder KandinskyV22Pipeline"
    assert low.images["01"].shape == (N_TEST, 16, 16, 3)
    assert low.metrics["value"].notna().all()
    again = reconstruct_from_decoding(plain_run, dataset, low_level=True, strength=0.5, **kw)
    np.testing.assert_array_equal(low.images["01"], again.images["01"])
    # the start and the strength are used
    plain = reconstruct_from_decoding(plain_run, dataset, **kw)
    stronger = reconstruct_from_decoding(plain_run, dataset, low_level=True, strength=1.0, **kw)
    assert not np.allclose(low.images["01"], plain.images["01"])
    assert not np.allclose(low.images["01"], stronger.images["01"])
    np.testing.assert_array_equal(plain.images["ceiling"], low.images["ceiling"])
    # the embeddings reach the decoder on the targets' own scale
    unscale = _target_unscaler(plain_run)
    with np.load(plain_run.out_dir / "preprocessing.npz") as stats:
        mean = stats["target_mean"]
    rows = [list(plain_run.stimulus_ids).index(s) for s in plain_run.test_ids]
    assert not np.allclose(unscale(plain_run.targets[rows]).mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(unscale(np.zeros((1, dim)))[0], mean, rtol=1e-6)


@pytest.mark.parametrize("strength", [0, 0.0, -0.2, 1.5, "0.5", True, float("nan")])
def test_strength_is_checked(plain_run, dataset, strength):
    with pytest.raises(ValueError, match=r"'strength' must be in \(0, 1\]: the share of"):
        reconstruct_from_decoding(plain_run, dataset, low_level=True, strength=strength, **FAST)


def test_other_errors(plain_run, dataset):
    with pytest.raises(TypeError, match=r"'low_level' must be True, False or a dict"):
        reconstruct_from_decoding(plain_run, dataset, low_level="yes", **FAST)
    blurry = {"01": np.zeros((N_TEST, 4, 4, 3))}
    with pytest.raises(ValueError, match=r"blurry images for subjects \['01'\], not for '02'"):
        reconstruct_from_decoding(plain_run, dataset, low_level=blurry, **FAST)
    blurry = {s: np.zeros((N_TEST, 4, 4)) for s in ("01", "02")}
    with pytest.raises(ValueError, match=r"must have shape \(n_test=12, r, r, 3\)"):
        reconstruct_from_decoding(plain_run, dataset, low_level=blurry, **FAST)
    with pytest.raises(ValueError, match=r"'prior' must be 'auto', a DiffusionPrior or None"):
        reconstruct_from_decoding(plain_run, dataset, prior="joint", **FAST)
    with pytest.raises(TypeError, match=r"'decoder' must be an EmbeddingDecoder"):
        reconstruct_from_decoding(plain_run, dataset, decoder=3, **FAST)


def test_the_standin_learns_from_a_seeded_subset_of_the_training_images(
    plain_run, dataset, monkeypatch
):
    import brainalign.pipelines.reconstruct as recon

    seen = []
    original = recon._image_decoder

    def spy(targets, ids, *args, **kwargs):
        seen.append((np.asarray(targets).copy(), list(ids)))
        return original(targets, ids, *args, **kwargs)

    monkeypatch.setattr(recon, "_image_decoder", spy)
    train_ids = [s for s in plain_run.stimulus_ids if s not in set(plain_run.test_ids)]
    row = {s: i for i, s in enumerate(plain_run.stimulus_ids)}
    for _ in range(2):
        reconstruct_from_decoding(plain_run, dataset, decoder_images=10, **FAST)
    reconstruct_from_decoding(plain_run, dataset, decoder_images=None, **FAST)
    (t1, ids1), (_, ids2), (_, ids_all) = seen
    assert len(ids1) == 10
    assert ids1 == ids2  # seeded: the same draw every time
    assert set(ids1) <= set(train_ids)
    assert ids1 == sorted(ids1, key=train_ids.index)
    np.testing.assert_array_equal(t1, plain_run.targets[[row[s] for s in ids1]])
    assert ids_all == train_ids  # None: every training image
    for bad in (0, -3, 2.5, 10.0, True, "abc", float("nan"), [5]):
        with pytest.raises(ValueError, match=r"'decoder_images' must be an integer >= 1 \(how"):
            reconstruct_from_decoding(plain_run, dataset, decoder_images=bad, **FAST)
