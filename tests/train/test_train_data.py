"""BrainTargetDataset batches and the deterministic, shardable epoch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.train.train_testing import SIZES, TARGET_DIM, synthetic, tiny_model

from brainalign.train import BrainTargetDataset, epoch_batches


def test_batch_pads_and_pairs_targets():
    brain, ids, targets = synthetic(n_stimuli=6)
    ids["02"] = ids["02"][::-1].copy()
    data = BrainTargetDataset(brain, ids, targets)
    assert len(data) == 12
    assert data.n_features == SIZES
    assert data.target_shape == (TARGET_DIM,)
    batch = data.batch([7, 0, 11])  # 02 row 1, 01 row 0, 02 row 5
    assert batch.subject == ["02", "01", "02"]
    assert batch.x.shape == (3, 9)
    np.testing.assert_allclose(batch.x[0].numpy(), brain["02"][1], rtol=1e-6)
    np.testing.assert_allclose(batch.x[1, :7].numpy(), brain["01"][0], rtol=1e-6)
    assert torch.all(batch.x[1, 7:] == 0)
    assert batch.stimulus.tolist() == [4, 0, 0]
    np.testing.assert_allclose(batch.target.numpy(), targets[[4, 0, 0]], rtol=1e-6)
    # the models take the batch as is, and the padding does not matter
    model = tiny_model().eval()
    out = model(batch.x, batch.subject).projected
    alone = model(batch.x[1:2, :7], "01").projected
    torch.testing.assert_close(out[1:2], alone)
    # a DataLoader with collate gives the same batch
    loader = torch.utils.data.DataLoader(data, batch_size=12, collate_fn=data.collate)
    whole = next(iter(loader))
    torch.testing.assert_close(whole.x, data.batch(range(12)).x)


def test_single_array_and_errors():
    rng = np.random.default_rng(0)
    data = BrainTargetDataset(rng.normal(size=(8, 3)), np.arange(8) % 4, rng.normal(size=(4, 2)))
    assert data.subjects == ("0",)
    assert data.trial_stimuli().tolist() == [0, 1, 2, 3] * 2
    with pytest.raises(ValueError, match=r"rows of 'targets' in \[0, 4\), got values in \[0, 7\]"):
        BrainTargetDataset(rng.normal(size=(8, 3)), np.arange(8), rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match="8 trials but 7 stimulus ids"):
        BrainTargetDataset(rng.normal(size=(8, 3)), np.arange(7) % 4, rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match="same subjects"):
        BrainTargetDataset({"a": rng.normal(size=(2, 3))}, np.arange(2), rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match=r"\(n_stimuli, \*target_shape\)"):
        BrainTargetDataset(rng.normal(size=(2, 3)), np.arange(2), np.zeros(4))


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_union_is_the_single_process_batch(drop_last):
    n, batch_size, world = 23, 6, 3
    single = epoch_batches(n, batch_size, seed=4, epoch=2, drop_last=drop_last)
    ranks = [
        epoch_batches(n, batch_size, seed=4, epoch=2, rank=r, world_size=world, drop_last=drop_last)
        for r in range(world)
    ]
    assert all(len(r) == len(ranks[0]) for r in ranks)
    n_full = n // batch_size
    for i in range(n_full):
        union = torch.cat([r[i] for r in ranks])
        assert sorted(union.tolist()) == sorted(single[i].tolist())
        assert all(len(r[i]) == batch_size // world for r in ranks)
    if drop_last:
        assert len(single) == n_full
    else:  # every trial seen once per epoch, the padding repeats the first ones
        seen = torch.cat([torch.cat(r) for r in ranks]).tolist()
        assert set(seen) == set(range(n))
        assert len(seen) == 24


def test_order_depends_on_seed_and_epoch_only():
    a = epoch_batches(20, 4, seed=1, epoch=0)
    assert all(torch.equal(x, y) for x, y in zip(a, epoch_batches(20, 4, seed=1, epoch=0)))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(20, 4, seed=1, epoch=1)))
    assert not torch.equal(torch.cat(a), torch.cat(epoch_batches(20, 4, seed=2, epoch=0)))
    assert sorted(torch.cat(a).tolist()) == list(range(20))
    with pytest.raises(ValueError, match="divisible by the world size 3"):
        epoch_batches(20, 4, seed=0, epoch=0, world_size=3)


def test_a_dataloader_with_pin_memory_pins_every_tensor_of_a_batch(monkeypatch):
    """torch pins only objects with a ``pin_memory`` method; Batch has one (CPU-testable by
    recording the calls instead of page-locking, which needs an accelerator)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    from brainalign.train.data import Batch, BrainTargetDataset

    data = BrainTargetDataset(torch.randn(6, 4), torch.arange(6), torch.randn(6, 3))
    batch = data.batch([0, 3, 5])
    pinned: list[tuple[int, ...]] = []

    def fake_pin(self, *args, **kwargs):
        pinned.append(tuple(self.shape))
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    out = pin_memory(batch)
    assert isinstance(out, Batch)
    assert sorted(pinned) == sorted([(3, 4), (3,), (3, 3), (3,)])
    assert out.subject == batch.subject
    for name in ("x", "stimulus", "target", "index"):
        torch.testing.assert_close(getattr(out, name), getattr(batch, name))
