"""The cached (GradCache) InfoNCE under DDP: two CPU processes (gloo) give the loss and gradients of one
process computing the plain InfoNCE on the global batch (gather, hard-negative weight, no_sync re-embedding)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from synthembed.losses.cached_infonce import CachedInfoNCELoss
from synthembed.losses.infonce import InfoNCELoss
from test_ddp_infonce import LOCAL_BATCH, WORLD, _encoder, _free_port, _global_batch

_keep_alive: list[nn.Module] = []


class _Embedder(nn.Module):
    """Feature dict -> {"sentence_embedding"}, the interface the losses call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _encoder()

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": self.net(features["input_ids"])}


def _worker(rank: int, port: int, out_dir: str) -> None:
    import traceback

    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(_Embedder())
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        columns = [{"input_ids": column[rows]} for column in _global_batch()]
        loss = CachedInfoNCELoss(model, hard_negative_weight=0.8, mini_batch_size=2)
        value = loss(columns, None)
        value.backward()
        value = value.detach()
        torch.distributed.all_reduce(value)
        value /= WORLD
        grads = [p.grad.clone() for p in model.module.parameters()]
        torch.save({"loss": value, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
        _keep_alive.append(model)
        torch.distributed.barrier()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


@pytest.mark.slow  # two spawned processes: ~15 s on an idle machine, more on a loaded one
def test_cached_loss_two_processes_equal_one_process_plain(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    single = _Embedder()
    columns = [{"input_ids": column} for column in _global_batch()]
    expected = InfoNCELoss(single, hard_negative_weight=0.8)(columns, None)
    expected.backward()
    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], expected.detach(), rtol=1e-5, atol=1e-6)
        for got, want in zip(result["grads"], [p.grad for p in single.parameters()]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
