"""fit under torch.distributed (gloo, 2 CPU processes) equals one process on the global batch.

Each rank takes ``batch_size / 2`` trials of every global batch (DistributedSampler semantics),
the CLIP loss gathers the embeddings of both ranks and DDP averages the gradients (the learnable
logit scale included), so the weights after every step are those of one process training on the
whole batch. Dropout is off (its masks would differ); rounding differs (reduction order). With
a regression term (``regression_weight``), each rank's mean squared error over its rows, with
DDP's gradient average, is the mean over the global batch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
from tests.train.train_testing import dataset, tiny_model

from brainalign.train import TrainConfig, fit, latest_checkpoint, load_checkpoint

WORLD_SIZE = 2
# (run name, steps, regression_weight): one step, then a whole run (10 steps over 2 epochs,
# checkpoints written by rank 0), then a whole run with the regression term
RUNS = (("ddp1", 1, 0.0), ("ddp10", 10, 0.0), ("ddp10-regression", 10, 2.0))


def _config(out_dir: str | None, regression_weight: float = 0.0) -> TrainConfig:
    return TrainConfig(
        loss="clip", epochs=2, batch_size=16, lr=3e-3, warmup=0.2, ema_decay=0.9, seed=1,
        out_dir=out_dir, checkpoint_every=3, regression_weight=regression_weight,
    )  # fmt: skip


def _stop_after(steps: int):
    return lambda info: info["event"] == "step" and info["step"] >= steps


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        for name, steps, weight in RUNS:
            run_dir = str(Path(out_dir) / name)
            result = fit(tiny_model(dropout=0.0), dataset(), None, _config(run_dir, weight),
                         callbacks=[_stop_after(steps)], verbose=False)  # fmt: skip
            state = {
                "model": result.model.state_dict(),
                "loss": result.loss.state_dict(),
                "ema": result.ema.state_dict(),
                "steps": result.n_steps,
            }
            torch.save(state, Path(run_dir) / f"rank{rank}.pt")
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


def _load_ranks(run_dir: Path) -> list[dict]:
    return [torch.load(run_dir / f"rank{r}.pt") for r in range(WORLD_SIZE)]


def _assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_two_ranks_equal_one_process(tmp_path):
    torch.multiprocessing.spawn(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True
    )
    for name, steps, weight in RUNS:
        ranks = _load_ranks(tmp_path / name)
        torch.set_num_threads(1)
        single = fit(tiny_model(dropout=0.0), dataset(), None, _config(None, weight),
                     callbacks=[_stop_after(steps)], verbose=False)  # fmt: skip
        assert single.n_steps == steps
        assert all(r["steps"] == steps for r in ranks)
        for r in ranks:
            _assert_close(r["model"], single.model.state_dict(), 1e-5)
            _assert_close(r["loss"], single.loss.state_dict(), 1e-5)
            _assert_close(r["ema"], single.ema.state_dict(), 1e-5)
        # the ranks hold the same weights (DDP), bit for bit
        for key, value in ranks[0]["model"].items():
            assert torch.equal(ranks[1]["model"][key], value), key
    # rank 0 checkpointed the model and both ranks' random states
    state = load_checkpoint(latest_checkpoint(tmp_path / "ddp10"))
    assert len(state["rng"]) == WORLD_SIZE
    assert state["trainer"]["step"] == 10
    _assert_close(state["model"], _load_ranks(tmp_path / "ddp10")[0]["model"], 0.0)
