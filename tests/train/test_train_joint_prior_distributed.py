"""fit with a jointly trained prior under torch.distributed (gloo, 2 CPU processes) equals one
process on the global batch: DDP wraps the objective (model, loss scale and prior), and the
prior's draws are those of the whole global batch, each rank taking its rows.

Dropout is off in the encoder and the prior; rounding differs (reduction order). The key part
of the attention's input bias is left out of the comparison: softmax ignores a shift of every
score of a query, so its true gradient is zero, and AdamW turns the rounding noise it gets
instead into steps of up to ``lr`` whose sign depends on the reduction order.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
from tests.train.train_testing import dataset, tiny_model

from brainalign.reconstruct import build_joint_prior
from brainalign.train import TrainConfig, fit

WORLD_SIZE = 2
STEPS = 4
PRIOR = {"width": 32, "depth": 1, "n_heads": 4, "num_train_timesteps": 20}


def _config() -> TrainConfig:
    return TrainConfig(
        loss="clip", epochs=1, batch_size=16, lr=3e-3, warmup=0.2, seed=1, prior_weight=2.0,
        prior_kwargs=PRIOR,
    )  # fmt: skip


def _stop(info: dict) -> bool:
    return info["event"] == "step" and info["step"] >= STEPS


def _fit() -> object:
    config = _config()
    prior = build_joint_prior(config, dataset().target_shape)
    return fit(tiny_model(dropout=0.0), dataset(), None, config, prior=prior, callbacks=[_stop],
               verbose=False)  # fmt: skip


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        result = _fit()
        state = {
            "model": result.model.state_dict(),
            "prior": result.prior.state_dict(),
            "history": result.history,
        }
        torch.save(state, Path(out_dir) / f"rank{rank}.pt")
        # no rank tears the group down while the other still talks to it (a rank that
        # destroyed first made its peer abort under load: 'terminate called without an
        # active exception')
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_with_a_prior_equal_one_process(tmp_path):
    torch.multiprocessing.spawn(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    torch.set_num_threads(1)
    single = _fit()
    assert single.n_steps == STEPS
    width = PRIOR["width"]
    for r in ranks:
        for part, reference in (("model", single.model), ("prior", single.prior)):
            expected = reference.state_dict()
            assert r[part].keys() == expected.keys()
            for key in expected:
                got, want = r[part][key], expected[key]
                if key.endswith("self_attn.in_proj_bias"):  # [query, key, value]: no key part
                    keep = torch.ones(3 * width, dtype=torch.bool)
                    keep[width : 2 * width] = False
                    got, want = got[keep], want[keep]
                torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=f"{part}.{key}")
    for key, value in ranks[0]["prior"].items():
        assert torch.equal(ranks[1]["prior"][key], value), key
