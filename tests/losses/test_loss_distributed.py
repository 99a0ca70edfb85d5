"""Every loss under torch.distributed (gloo, 2 CPU processes) equals one process on the full batch.

The equality checked (the convention of ``brainalign.losses.distributed``), with ``k`` ranks:

* the mean over ranks of the returned losses equals the full-batch loss;
* a rank's gradient for its own embeddings is ``k`` times the full-batch gradient of those rows;
* the mean over ranks of the gradient of a replicated parameter (logit scale, bias) equals the
  full-batch gradient;
* end to end, DDP's averaged model gradients equal the single-process gradients.

The ranks hold different batch sizes (5 and 4), and the labels repeat across ranks.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from brainalign.losses import (
    align_uniform_loss,
    clip_loss,
    dcl_loss,
    gather_with_grad,
    hard_negative_loss,
    mixco_loss,
    siglip_loss,
    soft_clip_loss,
)

WORLD_SIZE = 2
SIZES = [5, 4]
N, D = sum(SIZES), 6
LABELS = torch.tensor([0, 3, 1, 0, 2, 3, 1, 4, 0])
LOCAL_PERMS = [torch.tensor([1, 2, 3, 4, 0]), torch.tensor([1, 0, 3, 2])]
BETAS = torch.linspace(0.2, 1.0, N, dtype=torch.float64)
TOL = {"atol": 1e-10, "rtol": 1e-10}

# name -> loss(x, y, params, batch, distributed); ``batch`` holds labels/perm/betas of the call
Case = Callable[[torch.Tensor, torch.Tensor, dict, dict, bool], torch.Tensor]
CASES: dict[str, Case] = {
    "clip": lambda x, y, p, b, d: clip_loss(x, y, p["scale"], distributed=d),
    "clip-one-way": lambda x, y, p, b, d: clip_loss(
        x, y, p["scale"], symmetric=False, distributed=d
    ),
    "clip-smoothing": lambda x, y, p, b, d: clip_loss(
        x, y, p["scale"], label_smoothing=0.1, distributed=d
    ),
    "clip-labels": lambda x, y, p, b, d: clip_loss(
        x, y, p["scale"], labels=b["labels"], distributed=d
    ),
    "clip-labels-chunked": lambda x, y, p, b, d: clip_loss(
        x, y, p["scale"], labels=b["labels"], chunk_size=2, label_smoothing=0.2, distributed=d
    ),
    "siglip": lambda x, y, p, b, d: siglip_loss(x, y, p["scale"], p["bias"], distributed=d),
    "siglip-labels-chunked": lambda x, y, p, b, d: siglip_loss(
        x, y, p["scale"], p["bias"], labels=b["labels"], chunk_size=3, distributed=d
    ),
    "softclip": lambda x, y, p, b, d: soft_clip_loss(x, y, 0.1, distributed=d),
    "mixco": lambda x, y, p, b, d: mixco_loss(
        x, y, 0.1, perm=b["perm"], betas=b["betas"], chunk_size=3, distributed=d
    ),
    "dcl": lambda x, y, p, b, d: dcl_loss(x, y, p["scale"], distributed=d),
    "dcl-weighted-labels": lambda x, y, p, b, d: dcl_loss(
        x, y, p["scale"], labels=b["labels"], weight_sigma=0.5, distributed=d
    ),
    "hard-negatives-none-drawn": lambda x, y, p, b, d: hard_negative_loss(
        x, y, p["scale"], labels=b["labels"], n_hard=2, n_mix=0, n_query_mix=0, distributed=d
    ),
    "align-uniform": lambda x, y, p, b, d: align_uniform_loss(x, y, distributed=d),
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(N, D, generator=gen, dtype=torch.float64), dim=1)
    y = torch.nn.functional.normalize(torch.randn(N, D, generator=gen, dtype=torch.float64), dim=1)
    return x, y


def _params() -> dict[str, torch.Tensor]:
    return {
        "scale": torch.tensor(6.0, dtype=torch.float64, requires_grad=True),
        "bias": torch.tensor(-2.0, dtype=torch.float64, requires_grad=True),
    }


def _batch(rank: int | None) -> dict[str, torch.Tensor]:
    """Labels, permutation and coefficients of one rank (``None``: the concatenated batch)."""
    if rank is None:
        offsets = [0, SIZES[0]]
        perm = torch.cat([p + o for p, o in zip(LOCAL_PERMS, offsets)])
        return {"labels": LABELS, "perm": perm, "betas": BETAS}
    start = sum(SIZES[:rank])
    rows = slice(start, start + SIZES[rank])
    return {"labels": LABELS[rows], "perm": LOCAL_PERMS[rank], "betas": BETAS[rows]}


def _run(case: Case, x, y, batch, distributed):
    x = x.clone().requires_grad_()
    y = y.clone().requires_grad_()
    params = _params()
    loss = case(x, y, params, batch, distributed)
    loss.backward()
    grads = {name: p.grad for name, p in params.items() if p.grad is not None}
    return {"loss": loss.detach(), "x": x.grad, "y": y.grad, **grads}


def _model_grads(inputs, targets, distributed):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, D).double()
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    embeddings = torch.nn.functional.normalize(model(inputs), dim=1)
    clip_loss(embeddings, targets, 8.0, distributed=distributed, chunk_size=3).backward()
    return [p.grad.clone() for p in model.parameters()]


def _model_data():
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(N, 5, generator=gen, dtype=torch.float64)
    targets = torch.nn.functional.normalize(torch.randn(N, D, generator=gen, dtype=torch.float64))
    return inputs, targets


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        start = sum(SIZES[:rank])
        rows = slice(start, start + SIZES[rank])
        x, y = _data()
        results = {
            name: _run(case, x[rows], y[rows], _batch(rank), True) for name, case in CASES.items()
        }
        # the gather itself: rank r's rows enter everyone's sum(w * gathered)
        local = x[rows].clone().requires_grad_()
        weights = torch.arange(N * D, dtype=torch.float64).reshape(N, D)
        gathered = gather_with_grad(local)
        (weights * gathered).sum().backward()
        results["gather"] = {"value": gathered.detach(), "x": local.grad}
        inputs, targets = _model_data()
        results["ddp"] = {"grads": _model_grads(inputs[rows], targets[rows], True)}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
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


def test_distributed_equals_single_process(tmp_path):
    torch.multiprocessing.spawn(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    x, y = _data()
    starts = [0, SIZES[0]]
    for name, case in CASES.items():
        full = _run(case, x, y, _batch(None), False)
        mean_loss = sum(r[name]["loss"] for r in ranks) / WORLD_SIZE
        torch.testing.assert_close(mean_loss, full["loss"], **TOL, msg=f"{name}: loss")
        for rank, result in enumerate(ranks):
            rows = slice(starts[rank], starts[rank] + SIZES[rank])
            for key in ("x", "y"):
                torch.testing.assert_close(
                    result[name][key], WORLD_SIZE * full[key][rows], **TOL, msg=f"{name}: {key}"
                )
        for key in ("scale", "bias"):
            assert (key in full) == all(key in r[name] for r in ranks), name
            if key in full:
                mean_grad = sum(r[name][key] for r in ranks) / WORLD_SIZE
                torch.testing.assert_close(mean_grad, full[key], **TOL, msg=f"{name}: {key}")
    weights = torch.arange(N * D, dtype=torch.float64).reshape(N, D)
    for rank, result in enumerate(ranks):
        rows = slice(starts[rank], starts[rank] + SIZES[rank])
        torch.testing.assert_close(result["gather"]["value"], x, atol=0, rtol=0)
        torch.testing.assert_close(result["gather"]["x"], WORLD_SIZE * weights[rows], **TOL)
    inputs, targets = _model_data()
    single = _model_grads(inputs, targets, False)
    for result in ranks:
        for grad, expected in zip(result["ddp"]["grads"], single, strict=True):
            torch.testing.assert_close(grad, expected, **TOL)
