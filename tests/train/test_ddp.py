"""Data-parallel training on 2 CPU processes (gloo, via accelerate) equals one process on both ranks' data."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from actwm.models.world_model import WorldModel
from actwm.train import TrainConfig, train
from actwm.train.trainer import StepIndexer, Trainer, noise_generator
from tests.train.conftest import DictDataset

WORLD = 2
ACCUM = 2  # micro-batches per step: exercises no_sync + the final synchronised backward


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel.from_preset("wan2.1-tiny", "custom3")


def _cfg(out: str, **kw) -> TrainConfig:
    return TrainConfig(
        **{**dict(out=out, steps=2, batch_size=2, lr=1e-3, checkpoint_every=1, cpu=True, seed=5, log_every=1), **kw}
    )


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    ds = DictDataset(n=6, frames=5, size=16)
    trainer = Trainer(_cfg(f"{tmp}/grads", grad_accum=ACCUM), model=_model(), dataset=ds, progress=False)
    assert trainer.world == WORLD and trainer.rank == rank
    loss = trainer.backward(0)
    grads = {n: p.grad.detach().clone() for n, p in trainer.wm.named_parameters() if p.grad is not None}
    torch.save({"grads": grads, "loss": loss}, f"{tmp}/rank{rank}.pt")
    result = train(_cfg(f"{tmp}/run"), model=_model(), dataset=ds, progress=False)
    torch.save({"losses": result.losses}, f"{tmp}/losses{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_gloo_matches_single_process_average(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # after the all-reduce both ranks hold the same (averaged) gradients
    assert r0["grads"].keys() == r1["grads"].keys() and len(r0["grads"]) > 10
    for k in r0["grads"]:
        assert torch.equal(r0["grads"][k], r1["grads"][k]), k

    # one process, the union of both ranks' micro-batches, the same per-rank noise, averaged
    torch.set_num_threads(1)
    ds = DictDataset(n=6, frames=5, size=16)
    wm = _model()
    indexer = StepIndexer(len(ds), seed=5, batch_size=2, grad_accum=ACCUM, world=WORLD)
    losses = {}
    for rank in range(WORLD):
        for m in range(ACCUM):
            idx = indexer.indices(0, m, rank)
            video = torch.stack([ds[i]["video"] for i in idx]) * 2 - 1
            actions = torch.stack([ds[i]["actions"] for i in idx])
            losses[rank, m] = wm.loss(video, actions, None, generator=noise_generator(5, 0, m, rank))
    assert set(indexer.indices(0, 0, 0)).isdisjoint(indexer.indices(0, 0, 1))  # ranks sample different clips
    (sum(losses.values()) / (WORLD * ACCUM)).backward()
    ref = {n: p.grad for n, p in wm.named_parameters() if p.grad is not None}
    assert ref.keys() == r0["grads"].keys()
    for k, g in ref.items():
        assert torch.allclose(r0["grads"][k], g, rtol=0, atol=1e-6), (k, (r0["grads"][k] - g).abs().max())
    assert torch.allclose(r0["loss"], (losses[0, 0] + losses[0, 1]).detach() / ACCUM, atol=1e-6)

    # the full DDP run: identical reduced losses on both ranks, checkpoints written once
    l0 = torch.load(tmp_path / "losses0.pt", weights_only=True)["losses"]
    l1 = torch.load(tmp_path / "losses1.pt", weights_only=True)["losses"]
    assert l0 == l1 and len(l0) == 2
    loaded = WorldModel.load(tmp_path / "run" / "final")
    assert loaded.action_space.dim == 3
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "latest",
        "step-0000001",
        "step-0000002",
    ]
