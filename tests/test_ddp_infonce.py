"""Two CPU processes (gloo) give the same InfoNCE loss and gradients as one process on the global batch.

This proves the candidates are gathered across processes with gradients flowing back to their owner:
without gathering each process would only see half the negatives and the figures would differ.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from synthembed.losses.infonce import InfoNCELoss

WORLD = 2
LOCAL_BATCH = 3
DIM_IN, DIM_OUT = 8, 6


def _global_batch() -> list[torch.Tensor]:
    """Anchor, positive and two negative columns of raw features for the global batch."""
    generator = torch.Generator().manual_seed(123)
    return [torch.randn(WORLD * LOCAL_BATCH, DIM_IN, generator=generator) for _ in range(4)]


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM_IN, 16), nn.Tanh(), nn.Linear(16, DIM_OUT))


def _loss_and_grads(encoder: nn.Module, columns: list[torch.Tensor], loss: InfoNCELoss) -> torch.Tensor:
    batch = columns[0].shape[0]
    embeddings = encoder(torch.cat(columns))  # (4 * batch, dim)
    value = loss.compute_loss_from_embeddings(list(embeddings.split(batch)))
    value.backward()
    return value


def _worker(rank: int, port: int, out_dir: str, hard_negative_weight: float, gather: bool) -> None:
    """Run one rank, then leave with os._exit once both ranks have saved their results.

    Tearing down a DDP reducer and its gloo group in the normal way can deadlock (the group's destructor
    joins a worker thread that waits for the GIL held by the destructor), which hung a full test run.
    """
    import traceback

    try:
        _rank_body(rank, port, out_dir, hard_negative_weight, gather)
        torch.distributed.barrier()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _rank_body(rank: int, port: int, out_dir: str, hard_negative_weight: float, gather: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(_encoder())
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    local = [column[rows] for column in _global_batch()]
    loss = InfoNCELoss(nn.Identity(), hard_negative_weight=hard_negative_weight, gather_across_devices=gather)
    value = _loss_and_grads(model, local, loss).detach()
    torch.distributed.all_reduce(value)  # what the trainer logs: the mean over processes
    value /= WORLD
    grads = [p.grad.clone() for p in model.module.parameters()]  # already averaged by DDP
    torch.save({"loss": value, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
    _keep_alive.append(model)  # freed by os._exit, never by a destructor (see _worker)


_keep_alive: list[nn.Module] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_two_processes(tmp_path: Path, hard_negative_weight: float, gather: bool) -> list[dict]:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(_free_port(), str(tmp_path), hard_negative_weight, gather), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def _single_process(hard_negative_weight: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    encoder = _encoder()
    loss = InfoNCELoss(nn.Identity(), hard_negative_weight=hard_negative_weight)
    value = _loss_and_grads(encoder, _global_batch(), loss).detach()
    return value, [p.grad.clone() for p in encoder.parameters()]


@pytest.mark.parametrize("hard_negative_weight", [0.8])
def test_two_processes_equal_one_process(tmp_path: Path, hard_negative_weight: float) -> None:
    results = _run_two_processes(tmp_path, hard_negative_weight, gather=True)
    loss, grads = _single_process(hard_negative_weight)
    for result in results:
        torch.testing.assert_close(result["loss"], loss, rtol=1e-5, atol=1e-6)
        for got, expected in zip(result["grads"], grads):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_without_gathering_the_figures_differ(tmp_path: Path) -> None:
    """The control: local negatives only give another loss, so the equality above is not vacuous."""
    results = _run_two_processes(tmp_path, 0.0, gather=False)
    loss, _ = _single_process(0.0)
    assert not torch.allclose(results[0]["loss"], loss, rtol=1e-3)
